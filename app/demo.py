"""The web demo: a photo in, the posture label, its confidence and where the model looked out.

Privacy and robustness decide most of the shape here:

- Uploads are decoded by :mod:`app.uploads` (through :func:`posture.io.images.open_rgb`: EXIF, 16-bit,
  CMYK, pixel limit).
  Gradio's cache lives in a private temp folder (:mod:`app.scratch`) that is removed at exit and,
  after a crash, at the next start. While serving, :mod:`app.janitor` deletes each upload a few
  minutes after its last use (the page sends the same upload again with every click, and
  visitors' identical uploads share one file, so a request must never delete what it read) and
  each overlay seconds after it was shown. Only ``--flagging DIR`` keeps anything.
- A broken, non-image or oversized upload becomes one friendly message in the page; the server
  keeps serving. Byte size is capped by Gradio (``max_file_size``) for uploads and by
  :mod:`app.limits` for images sent inline and for request bodies; pixels by us.
- One shared :class:`~posture.inference.predict.Predictor` answers every request; the queue's concurrency
  limit keeps a burst of visitors from oversubscribing a small CPU.
- For a pose-based run the visitor may first calibrate with an upright photo of themselves: the
  reference (a few geometry numbers, never the photo) lives in that browser session's ``gr.State``
  and is applied per request (:meth:`Predictor.with_reference_geometry`), so no visitor sees or
  uses another's calibration. A photo the run cannot assess gets that answer and the reason.
- For a pose-based run the Live tab watches the visitor's webcam as a sitting (:mod:`app.live`,
  :mod:`app.live_page`): one session object per browser tab, freed when the tab closes; frames
  stay in memory and the page gets its pictures inline, so no frame is ever written to disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.card import model_card
from app.config import AppConfig
from app.janitor import CacheJanitor, KeepFor, sweep_period
from app.limits import BodySizeLimit
from app.live import LIVE_DIR
from app.safe_text import html_text
from app.safe_text import markdown_text as md
from app.uploads import UploadError, read_upload
from posture.cli import UserError
from posture.inference.predict import Prediction, Predictor, Prepared
from posture.io.csvcells import write_csv
from posture.io.images import MODEL_MAX_SIDE
from posture.pose.drawing import draw_landmarks
from posture.runs.checkpoint import find_latest_run

log = logging.getLogger(__name__)

DEMO_COMMAND = (
    "python -m posture.synth data/raw-sample --n 500 --seed 0 && "
    "python -m posture.ingest data/raw-sample --out data/sample && "
    "python -m posture.finetune --data data/sample --out models/sample && "
    "python -m posture.calibrate --run models/sample --data data/sample --threshold-policy none"
)


def resolve_run(config: AppConfig) -> Path:
    """``--run`` if given, else the newest run under ``models/``; a helpful error when there is none."""
    if config.run_dir is not None:
        return Path(config.run_dir)
    latest = find_latest_run(config.models_dir)
    if latest is None:
        raise UserError(
            f"no trained run under {config.models_dir}/ and no --run given; make the sample one "
            f"with:\n  {DEMO_COMMAND}\nthen start the demo with `python -m app --run models/sample`"
        )
    log.info("using the newest run: %s", latest)
    return latest


#: What the label shows for a photo a pose-based run cannot assess.
CANNOT_ASSESS = "cannot assess"
NOT_MEASURED = (
    "No person could be measured in the upright photo: {reason}. Use a photo that shows the face and "
    "both shoulders, well lit and not cut off."
)


def label_value(pred: Prediction) -> dict[str, Any]:
    """The decided label plus every class's confidence, in the form :class:`DecidedLabel` shows."""
    if not pred.assessed or pred.probabilities is None:
        return {"label": CANNOT_ASSESS, "confidences": []}
    ranked = sorted(pred.probabilities.items(), key=lambda kv: kv[1], reverse=True)
    return {"label": pred.label, "confidences": [{"label": c, "confidence": p} for c, p in ranked]}


class Handlers:
    """The app's behaviour without the page: each method is what one button does.

    ``forget`` is called with every uploaded file once it has been read; the app passes a
    function that restarts the file's keep-alive clock (:meth:`app.janitor.CacheJanitor.touch`):
    the janitor deletes it once unused for ``upload_max_age_s``, not at request end, because the
    same file serves the visitor's next click and other visitors' identical uploads.
    """

    def __init__(
        self, predictor: Predictor, config: AppConfig, work_dir: Path, forget: Callable[[str], None] | None = None
    ) -> None:
        self.predictor = predictor
        self.config = config
        self.work_dir = Path(work_dir)
        self.forget = forget or (lambda path: None)
        self._explain: Callable[..., np.ndarray] | None = None
        self.cam_note = ""
        if config.cam:
            try:
                from posture.inference.cam import explain

                self._explain = explain
            except ImportError as exc:  # optional: the label still works without it
                self.cam_note = f"(Grad-CAM is unavailable here: {exc})"

    def _read(self, source: str | bytes | None) -> contextlib.AbstractContextManager[np.ndarray]:
        """An upload decoded at the size the model needs (:data:`posture.io.images.MODEL_MAX_SIDE`): a
        49-megapixel JPEG costs a few megabytes, not 150, and the page shows back what was measured."""
        return read_upload(source, self.config.max_pixels, self.forget, max_side=MODEL_MAX_SIDE)

    @property
    def can_explain(self) -> bool:
        return self._explain is not None

    def classify(
        self, source: str | bytes | None, explain: bool = True, reference: Sequence[float] | None = None
    ) -> tuple[dict[str, Any], np.ndarray, str]:
        """One photo → (label value, explanation picture or the photo itself, a short note).

        ``reference``: this visitor's calibration (:meth:`calibrate`), or ``None``.
        """
        predictor = self.predictor_for(reference)
        with self._read(source) as rgb:
            analysis = predictor.analyse(rgb)
            pred = predictor.predict_analysed([analysis])[0]
            if not pred.assessed:
                shown = draw_landmarks(rgb, analysis.landmarks) if analysis.landmarks is not None else rgb
                return label_value(pred), shown, f"**Cannot assess this photo:** {md(pred.reason)}."
            note = f"**{md(pred.label)}** with {pred.confidence:.0%} confidence."
            if reference is not None:
                note += " (Calibrated with your upright photo.)"
            if pred.explanation:
                note += f"\n\n{md(pred.explanation[0].upper() + pred.explanation[1:])}"
            shown = rgb
            if explain and predictor.uses_image and self._explain is not None and pred.label is not None:
                try:
                    shown = self._explain(predictor, analysis.rgb, class_index=predictor.class_names.index(pred.label))
                    note += "\n\nWarm colours mark the regions that drove the CNN's answer."
                except Exception:  # noqa: BLE001 - the answer stands even if its explanation fails
                    log.exception("Grad-CAM failed; showing the plain photo")
                    note += " (The explanation could not be drawn for this photo.)"
            elif explain and predictor.uses_image:
                note += f" {self.cam_note}"
            if explain and predictor.uses_pose:
                shown = draw_landmarks(shown, analysis.landmarks)
                note += "\n\nThe dots are the body landmarks the answer was read from."
        return label_value(pred), shown, note

    def predictor_for(self, reference: Sequence[float] | None) -> Predictor:
        """The shared predictor, or a per-request copy calibrated to this visitor's reference."""
        if reference is None or not self.predictor.uses_pose:
            return self.predictor
        return self.predictor.with_reference_geometry(reference)

    @property
    def can_calibrate(self) -> bool:
        return self.predictor.uses_pose and self.predictor.upright is not None

    def calibrate(self, source: str | bytes | None) -> tuple[list[float], np.ndarray, str]:
        """An upright photo of the visitor → (their reference geometry, the landmarks found, a note)."""
        if not self.can_calibrate:
            raise UploadError("This model reads no posture geometry, so it needs no calibration.")
        with self._read(source) as rgb:
            analysis = self.predictor.analyse(rgb)
            if analysis.geometry is None:
                raise UploadError(NOT_MEASURED.format(reason=analysis.reason or "no person found"))
            reference = [float(v) for v in analysis.geometry]
            shown = draw_landmarks(rgb, analysis.landmarks, caption="your upright reference")
        return (
            reference,
            shown,
            (
                "**Calibrated.** Photos from this camera are now judged against this upright "
                "photo of you (kept in this browser tab only; Reset forgets it)."
            ),
        )

    def classify_many(self, sources: Sequence[str] | None, chunk: int = 16) -> tuple[list[list[Any]], str, str]:
        """Several files → table rows, a CSV file to download and a summary; bad files become rows.

        One photo at a time is decoded (at the model's size) and reduced to the network's inputs
        before the next is read, and ``chunk`` of those are answered together: a batch holds at
        most one photo's pixels, however many and however large the photos are.
        """
        sources = list(sources or [])
        if not sources:
            raise UploadError("Please add one or more photos first.")
        if len(sources) > self.config.max_batch_files:
            for source in sources:
                self.forget(source)
            raise UploadError(f"Please send at most {self.config.max_batch_files} photos at a time.")
        names = self.predictor.class_names
        rows: list[list[Any]] = []
        for start in range(0, len(sources), chunk):
            good: list[tuple[int, Prepared]] = []
            for source in sources[start : start + chunk]:
                row: list[Any] = [Path(source).name, "", None] + [None] * len(names) + [""]
                try:
                    with self._read(source) as rgb:
                        good.append((len(rows), self.predictor.prepared(self.predictor.analyse(rgb))))
                except UploadError as exc:
                    row[-1] = str(exc)
                rows.append(row)
            preds = self.predictor.predict_prepared([item for _, item in good]) if good else []
            for (row_index, _), pred in zip(good, preds, strict=True):
                if not pred.assessed or pred.probabilities is None or pred.confidence is None:
                    rows[row_index][1] = CANNOT_ASSESS
                    rows[row_index][-1] = str(pred.reason)
                    continue
                rows[row_index][1:3] = [pred.label, round(pred.confidence, 4)]
                rows[row_index][3 : 3 + len(names)] = [round(pred.probabilities[c], 4) for c in names]
        csv_path = self._write_csv(rows)
        unassessed = sum(1 for r in rows if r[1] == CANNOT_ASSESS)
        failed = sum(1 for r in rows if r[-1]) - unassessed
        summary = f"{len(rows) - failed - unassessed} of {len(rows)} photos classified"
        summary += (
            "".join(
                part
                for part, n in (
                    (f"; {failed} could not be read", failed),
                    (f"; {unassessed} could not be assessed", unassessed),
                )
                if n
            )
            + "."
        )
        return rows, str(csv_path), summary

    def table_headers(self) -> list[str]:
        return ["file", "label", "confidence"] + [f"p_{c}" for c in self.predictor.class_names] + ["note"]

    def _write_csv(self, rows: list[list[Any]]) -> Path:
        out_dir = self.work_dir / "batch"
        out_dir.mkdir(parents=True, exist_ok=True)  # swept by the janitor like uploads
        path = out_dir / f"posture-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.csv"
        # File names come from visitors: csvcells keeps "=cmd.png" from running as a spreadsheet formula.
        write_csv(pd.DataFrame(rows, columns=self.table_headers()), path)
        return path


def build_demo(
    predictor: Predictor, config: AppConfig, work_dir: Path, examples: Sequence[tuple[str, str]] = ()
) -> Any:
    """The Gradio Blocks page; ``work_dir`` is the app's private scratch folder."""
    import gradio as gr

    from app.api_errors import GuardedBlocks
    from app.components import DecidedLabel, UploadedImage
    from app.live_page import live_tab, release_on_unload

    demo: Any = None

    def forget(path: str) -> None:
        """An upload was just read: its clock restarts (deleting it is the janitor's job, see Handlers)."""
        if demo is not None and path in demo.upload_file_set:
            CacheJanitor.touch(path)

    handlers = Handlers(predictor, config, work_dir, forget=forget)

    def classify(
        source: str | bytes | None, explain: bool, reference: list[float] | None = None
    ) -> tuple[Any, Any, str]:
        try:
            value, shown, note = handlers.classify(source, explain, reference)
        except UploadError as exc:
            raise gr.Error(html_text(exc), title="Cannot classify this upload", print_exception=False) from None
        return value, shown_file(shown, work_dir), note

    def calibrate(source: str | bytes | None) -> tuple[Any, Any, str]:
        try:
            reference, shown, note = handlers.calibrate(source)
        except UploadError as exc:
            raise gr.Error(html_text(exc), title="Cannot calibrate with this photo", print_exception=False) from None
        return reference, shown_file(shown, work_dir), note

    def reset() -> tuple[None, None, str]:
        return None, None, "Calibration forgotten: photos are judged on their own again."

    def classify_many(sources: list[str] | None) -> tuple[Any, Any, str]:
        try:
            rows, csv_path, summary = handlers.classify_many(sources)
        except UploadError as exc:
            raise gr.Error(html_text(exc), title="Nothing to classify", print_exception=False) from None
        if any(r[-1] for r in rows):
            gr.Warning(summary)
        return rows, csv_path, summary

    title = "Posture check: forward head or normal?"
    # GuardedBlocks: a malformed API call gets a short generic answer and one bounded log line.
    with GuardedBlocks(title=title, analytics_enabled=False) as page:  # its cache is swept by app.janitor
        gr.Markdown(
            f"# {title}\nUpload a photo of a person seen from the side or the front (or use the webcam). "
            f"Photos are deleted {_duration(config.upload_max_age_s)} after you last checked them; "
            "nothing is stored."
        )
        # This browser session's upright reference (numbers only), for runs that can be calibrated. A page
        # with a gr.State keeps a session channel busy (Playwright's "networkidle" never comes), so the
        # other runs' pages carry none.
        reference = gr.State(None) if handlers.can_calibrate else None
        with gr.Tab("Photo"):
            if reference is not None:
                with gr.Accordion("Optional: calibrate with an upright photo of yourself", open=False):
                    gr.Markdown(
                        "Sit (or stand) upright in front of the same camera and add that photo: later photos "
                        "are judged by how far your head moved from it, which removes the effect of the "
                        "camera's height. It is kept in this browser tab only."
                    )
                    with gr.Row():
                        upright = UploadedImage(
                            sources=["upload", "webcam"], label="Upright photo", height=240, elem_id="upright"
                        )
                        upright.max_bytes = config.max_file_bytes
                        upright_shown = gr.Image(
                            label="Reference landmarks",
                            interactive=False,
                            format="jpeg",
                            height=240,
                            elem_id="upright_shown",
                        )
                    with gr.Row():
                        calibrate_button = gr.Button("Calibrate", elem_id="calibrate")
                        reset_button = gr.Button("Reset calibration", elem_id="reset")
                    calibration_note = gr.Markdown(elem_id="calibration_note")
                calibrate_button.click(
                    calibrate, [upright], [reference, upright_shown, calibration_note], api_name="calibrate"
                )
                reset_button.click(reset, None, [reference, upright_shown, calibration_note], api_name="reset")
            with gr.Row():
                with gr.Column():
                    image = UploadedImage(sources=["upload", "webcam"], label="Photo", height=380, elem_id="photo")
                    image.max_bytes = config.max_file_bytes
                    can_show = handlers.can_explain or predictor.uses_pose
                    explain = gr.Checkbox(
                        value=can_show, label="Show where the model looked", interactive=can_show, elem_id="explain"
                    )
                    button = gr.Button("Check posture", variant="primary", elem_id="check")
                    if examples:
                        gr.Examples(
                            [[path] for path, _ in examples],
                            inputs=[image],
                            example_labels=[caption for _, caption in examples],
                            label="Synthetic examples",
                        )
                with gr.Column():
                    label = DecidedLabel(num_top_classes=len(predictor.class_names), label="Posture", elem_id="label")
                    overlay = gr.Image(
                        label="Where the model looked", interactive=False, format="jpeg", height=380, elem_id="overlay"
                    )
                    note = gr.Markdown(elem_id="note")
            button.click(
                classify,
                [image, explain] + ([reference] if reference is not None else []),
                [label, overlay, note],
                api_name="classify",
            )
            if config.flagging_dir is not None:
                flagger = gr.CSVLogger()
                flagger.setup([image, label], str(config.flagging_dir))
                flag = gr.Button("Flag this answer as wrong")

                def flag_answer(*payloads: Any) -> None:
                    flagger.flag(list(payloads))
                    gr.Info(f"Saved to {config.flagging_dir} for review. Thank you.")

                # api_name=False: a private endpoint in gradio 5 and 6 (6's type hint leaves False out)
                flag.click(flag_answer, [image, label], None, preprocess=False, api_name=False)  # type: ignore[arg-type]
        with gr.Tab("Batch"):
            files = gr.File(file_count="multiple", file_types=["image"], label="Photos")
            run_batch = gr.Button("Classify all", variant="primary")
            summary = gr.Markdown()
            table = gr.Dataframe(headers=handlers.table_headers(), interactive=False, label="Results")
            download = gr.File(label="Results as CSV", interactive=False)
            run_batch.click(classify_many, [files], [table, download, summary], api_name="classify_batch")
        live_sessions = live_tab(predictor, config, work_dir)
        if live_sessions is not None:
            page.unload(release_on_unload(live_sessions))  # a closed tab's sitting and BlazePose graph go at once
        gr.Markdown(model_card(predictor))
    demo = page  # from now on `forget` sees the page's upload set
    demo.queue(default_concurrency_limit=config.concurrency, max_size=config.max_queue)
    return demo


def launch(config: AppConfig) -> None:
    """Load the run, build the page and serve it until interrupted; the scratch folder goes with it."""
    from starlette.middleware import Middleware

    from app.api_errors import guarded_app_kwargs
    from app.healthcheck import record_server
    from app.scratch import private_gradio_temp

    run = resolve_run(config)
    predictor = Predictor.from_run(run, backend=config.backend, threads=config.request_threads)
    log.info("serving %s with the %s backend", run, predictor.backend_name)
    with private_gradio_temp("posture-app-") as work_dir:  # Gradio's uploads and outputs go in here
        examples = make_examples_safely(work_dir / "examples", config.n_examples)
        demo = build_demo(predictor, config, work_dir, examples)
        janitor = CacheJanitor(
            [work_dir / name for name in ("gradio", "batch", SHOWN_DIR, LIVE_DIR)],
            policy=retention(demo, config, work_dir),
            period_s=sweep_period(config.upload_max_age_s, config.output_max_age_s),
            on_delete=lambda paths: forget_files(demo, paths),
        )
        body_limit = Middleware(BodySizeLimit, **BodySizeLimit.for_images(config.max_file_bytes))
        record_server(work_dir, config.host, config.port)  # for `python -m app.healthcheck` (Docker)
        janitor.start()
        try:
            demo.launch(
                server_name=config.host,
                server_port=config.port,
                share=False,
                max_file_size=config.max_file_bytes,
                allowed_paths=[str(work_dir / "examples")],
                app_kwargs=guarded_app_kwargs(body_limit),
                show_error=False,  # an exception's text never reaches the visitor; gr.Error messages do
                footer_links=["api"],
                run_history=False,
                enable_monitoring=False,
                mcp_server=False,
                ssr_mode=False,
            )
        finally:
            janitor.stop()


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} minutes" if seconds >= 120 else f"{seconds:.0f} seconds"


#: Under the private folder: the pictures the page shows, one file per answer (:func:`shown_file`).
SHOWN_DIR = "shown"


def shown_file(image: np.ndarray, work_dir: Path) -> str:
    """The picture an answer shows, as a JPEG file of its own, for the output ``gr.Image``.

    Why not hand Gradio the array: it names cached pictures by their content and rewrites an
    existing one in place, so two visitors getting the same picture at once (the same photo
    checked) raced, and one browser received a truncated file. A file of our own with a unique
    name is copied into the cache under that name, atomically, never rewritten.
    """
    from PIL import Image

    folder = work_dir / SHOWN_DIR
    folder.mkdir(exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.jpeg"
    Image.fromarray(np.ascontiguousarray(image)).save(path, format="JPEG", quality=90)
    return str(path)


def retention(demo: Any, config: AppConfig, work_dir: Path) -> Callable[[], KeepFor]:
    """The janitor's policy for this page: how long each file of the private folder may outlive its last use.

    Pictures the page shows (:func:`shown_file` and their copies in the output ``gr.Image`` blocks:
    overlays, landmark drawings) get ``output_max_age_s``; what Gradio keeps on purpose (examples)
    stays; everything else, uploads and the batch CSV among them, gets ``upload_max_age_s``.
    Gradio's own bookkeeping decides, read afresh at each sweep.
    """
    import gradio as gr

    shown_dir = os.path.realpath(work_dir / SHOWN_DIR) + os.sep

    def real(paths: Any) -> set[str]:
        return {os.path.realpath(p) for p in set(paths)}

    def snapshot() -> KeepFor:
        blocks = list(demo.blocks.values())
        kept = set().union(*(real(getattr(b, "keep_in_cache", ())) for b in blocks))
        uploads = real(demo.upload_file_set)
        shown = (
            set().union(*(real(b.temp_files) for b in blocks if isinstance(b, gr.Image) and b.interactive is False))
            - uploads
        )

        def keep_for(path: str) -> float | None:
            if path in kept:
                return None
            if path in shown or path.startswith(shown_dir):
                return config.output_max_age_s
            return config.upload_max_age_s

        return keep_for

    return snapshot


def forget_files(demo: Any, paths: Sequence[str]) -> None:
    """Drop deleted files from Gradio's sets of files it made, which would otherwise only grow."""
    gone = set(paths)
    for files in list(demo.temp_file_sets):
        files -= {p for p in set(files) if os.path.realpath(p) in gone}


def make_examples_safely(out_dir: Path, n: int) -> list[tuple[str, str]]:
    from app.examples import make_examples

    return make_examples(out_dir, n)
