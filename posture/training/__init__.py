"""The pieces of ``python -m posture.finetune``: head training on cached features, the optional
unfreeze phase on images, resume state, distributed set-up and the run's report files.

:mod:`posture.finetune` wires them together; each module here does one job.
"""
