"""posture: tell a forward-head ("turtle neck") posture from a normal one in a photo.

The package is a chain of stages that talk through files on disk (see DESIGN.md):
synth → ingest → data/transforms → models → finetune → evaluate → predict/export → app.
"""

__version__ = "0.1.0"
