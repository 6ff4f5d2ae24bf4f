"""posture: tell a forward-head ("turtle neck") posture from a normal one in a photo or a video.

The top level holds the commands (``python -m posture.X``: ingest, synth, finetune, calibrate,
evaluate, predict, export, agreement, watch), each a face over the rooms below it, lowest first:
runtime, io, pose, data, models, evaluation, runs, inference, training, sitting. The stages talk
through files on disk; ``docs/architecture.md`` is the map.
"""

__version__ = "0.1.0"
