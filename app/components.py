"""Two thin variants of Gradio components, so the app — not Gradio — decides what an upload means.

Why: ``gr.Image`` opens every upload with PIL *before* our function runs, so a corrupt file, a
non-image or a decompression bomb fails inside Gradio with a generic error, and EXIF, 16-bit
and CMYK handling would differ from training. :class:`UploadedImage` hands over the uploaded
file's path untouched and the app decodes it with :func:`posture.images.open_rgb` (the same
decoder ingest and training use), turning problems into a message the user can read.

``gr.Label`` always headlines the most probable class; with a calibrated decision threshold the
decided class can be the less probable one, so :class:`DecidedLabel` accepts the decision.

Both set ``is_template = True``: Gradio then renders them with the parent's front-end code.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.components.label import LabelConfidence, LabelData


class UploadedImage(gr.Image):
    """``gr.Image`` whose value is the uploaded file's path (or raw bytes for inline data URLs)."""

    is_template = True

    def preprocess(self, payload: Any) -> str | bytes | None:  # type: ignore[override]
        if payload is None:
            return None
        url = getattr(payload, "url", None)
        if url and str(url).startswith("data:"):
            from gradio_client.utils import decode_base64_to_binary

            return decode_base64_to_binary(str(url))[0]
        path = getattr(payload, "path", None)
        if not path:
            raise gr.Error("The upload arrived without a file; please try again.")
        return str(path)


class DecidedLabel(gr.Label):
    """``gr.Label`` that headlines the given ``label`` instead of re-deriving it as the argmax."""

    is_template = True

    def postprocess(self, value: Any) -> LabelData | dict | None:  # type: ignore[override]
        if isinstance(value, dict) and "label" in value and isinstance(value.get("confidences"), list):
            return LabelData(label=value["label"],
                             confidences=[LabelConfidence(label=c["label"], confidence=c["confidence"])
                                          for c in value["confidences"]])
        return super().postprocess(value)
