"""File names and constants every stage shares, defined once and importable without torch.

``posture.data.datasets`` (which needs torch) re-exports the dataset's; light tools such as
``posture.ingest`` and its worker processes import them from here so that starting them does not
load torch. The names are the contracts between stages (``docs/architecture.md``, Formats).
"""

from __future__ import annotations

# A dataset (posture.ingest's output)
MANIFEST_NAME = "manifest.csv"
CLASSES_NAME = "classes.json"
REJECTED_NAME = "rejected.csv"
SUMMARY_NAME = "summary.json"
REQUIRED_COLUMNS = ("path", "label", "split")
SPLITS = ("train", "val", "test")
#: A labeling team's CSV inside a drop (posture.synth writes one; posture.ingest reads it by default).
LABELS_NAME = "labels.csv"

# A run (posture.finetune's output, read by evaluate, predict, export and the app)
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.json"
HISTORY_NAME = "history.csv"
#: The exported graph beside the weights (written by ``python -m posture.export``).
ONNX_NAME = "model.onnx"
#: ``posture.evaluate``'s folder inside a run, and its report there.
EVAL_DIR = "eval"
REPORT_NAME = "report.json"

#: Engines that can run a network: ONNX Runtime or eager PyTorch (``auto`` picks per device/run).
BACKENDS = ("auto", "torch", "onnx")


def _pillow_reads(module: str) -> bool:
    """Whether the installed Pillow has the optional decoder ``module`` (AVIF: Pillow >= 11.3)."""
    from PIL import features

    try:
        return bool(features.check_module(module))
    except ValueError:  # a Pillow too old to know the name
        return False


_AVIF = _pillow_reads("avif")
#: Photos every stage reads (``.jfif`` is JPEG under an old Windows name).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif") + (
    (".avif",) if _AVIF else ()
)
#: Image files that are not read, with the reason ``posture.ingest`` reports (``unsupported_format``)
#: instead of passing them over as non-images: a person who handed over an iPhone's HEIC photos
#: must learn that they were left out, and why.
UNSUPPORTED_IMAGE_FORMATS: dict[str, str] = {
    ".heic": "HEIC/HEIF photo (iPhone): no decoder installed here; export it as JPEG",
    ".heif": "HEIC/HEIF photo (iPhone): no decoder installed here; export it as JPEG",
    ".ico": "Windows icon, not a photo",
    ".cur": "Windows cursor, not a photo",
    ".jxl": "JPEG XL photo: no decoder installed here; export it as JPEG",
    ".svg": "vector drawing, not a photo",
    ".psd": "Photoshop document: export it as JPEG or PNG",
    **{
        ext: "camera RAW file: develop and export it as JPEG"
        for ext in (".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf", ".srw", ".pef")
    },
    **({} if _AVIF else {".avif": "AVIF photo: this Pillow cannot decode it (Pillow >= 11.3 can); export it as JPEG"}),
}
