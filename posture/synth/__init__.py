"""Procedural sample data: upper-body pictures whose craniovertebral angle is known exactly.

No real photo set may ship with the project, so its default dataset is drawn here: a posed 3-D
figure (ellipsoids for trunk, neck, head, ears, hair, face) seen through a pinhole camera from the
side (how clinicians measure CVA) or the front (a laptop webcam). ``python -m posture.synth OUT``
writes a labeling team's drop: ``OUT/<label>/*.jpg`` and ``OUT/labels.csv``.

Modules: ``scene`` (figure, pose, camera sampling), ``render`` (ray casting, background, camera
flaws), ``drop`` (plan, workers, files: the labeling-team drop), ``cli`` (argparse shell).
"""

from posture.synth.drop import COLUMNS, LABELS_NAME, SynthConfig, generate, plan, render_job

__all__ = ["COLUMNS", "LABELS_NAME", "SynthConfig", "generate", "plan", "render_job"]
