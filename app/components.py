"""Two thin variants of Gradio components, so the app — not Gradio — decides what an upload means.

Why: ``gr.Image`` opens every upload with PIL *before* our function runs, so a corrupt file, a
non-image or a decompression bomb fails inside Gradio with a generic error, and EXIF, 16-bit
and CMYK handling would differ from training. :class:`UploadedImage` hands over the uploaded
file's path untouched and the app decodes it with :func:`posture.io.images.open_rgb` (the same
decoder ingest and training use), turning problems into a message the user can read.

``gr.Label`` always headlines the most probable class; with a calibrated decision threshold the
decided class can be the less probable one, so :class:`DecidedLabel` accepts the decision.

An API call may send the image inline (a ``data:`` URL) instead of uploading it; that path obeys
the same byte cap as uploads, measured before decoding (:func:`app.limits.decode_data_url`), and a
malformed URL becomes a message, not Gradio's processing error with an object's repr.

Both set ``is_template = True``: Gradio then renders them with the parent's front-end code.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.components.label import LabelConfidence, LabelData

from app.limits import DEFAULT_MAX_FILE_SIZE, InlineDataError, decode_data_url, parse_size


class UploadedImage(gr.Image):
    """``gr.Image`` whose value is the uploaded file's path (or raw bytes for inline data URLs).

    ``max_bytes`` caps inline data; the app sets it to its ``--max-file-size`` (an attribute, not a
    constructor argument, because Gradio sends every constructor argument to the page).
    """

    is_template = True
    max_bytes: int = parse_size(DEFAULT_MAX_FILE_SIZE)

    def preprocess(self, payload: Any) -> str | bytes | None:  # type: ignore[override]
        if payload is None:
            return None
        url = getattr(payload, "url", None)
        if isinstance(url, str) and url.startswith("data:"):
            try:
                return decode_data_url(url, self.max_bytes)
            except InlineDataError as exc:
                raise gr.Error(str(exc), title="Cannot read this upload", print_exception=False) from None
        path = getattr(payload, "path", None)
        if not path:
            raise gr.Error("The upload arrived without a file; please try again.", print_exception=False)
        return str(path)


class DecidedLabel(gr.Label):
    """``gr.Label`` that headlines the given ``label`` instead of re-deriving it as the argmax."""

    is_template = True

    def postprocess(self, value: Any) -> LabelData | dict | None:
        if isinstance(value, dict) and "label" in value and isinstance(value.get("confidences"), list):
            return LabelData(
                label=value["label"],
                confidences=[
                    LabelConfidence(label=c["label"], confidence=c["confidence"]) for c in value["confidences"]
                ],
            )
        return super().postprocess(value)
