"""File names and constants of the on-disk dataset format, importable without torch.

``posture.data`` (which needs torch) re-exports these; light tools such as ``posture.ingest`` and
its worker processes import them from here so that starting them does not load torch.
"""

from __future__ import annotations

MANIFEST_NAME = "manifest.csv"
CLASSES_NAME = "classes.json"
REQUIRED_COLUMNS = ("path", "label", "split")
SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
