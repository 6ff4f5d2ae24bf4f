"""Watching a sitting: the session (baseline, smoothing, alerts, statistics) every stream goes
through, the timeline and the record of a sitting, the desktop camera loop, and the video and
camera watch behind ``python -m posture.watch``."""
