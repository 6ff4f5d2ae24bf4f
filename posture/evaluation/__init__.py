"""Scoring without a model: metrics and intervals, plots, the probability calibration's fitting, and
the provenance of what was scored. What scores *with* the Predictor lives above, in
:mod:`posture.inference`."""
