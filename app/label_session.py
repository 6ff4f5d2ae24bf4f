"""What the labeling tool does, without the web page: which image is next, where a click lands, what is saved.

Why separate from the Gradio page: every rule a labeler relies on (resume where they stopped,
later answers supersede earlier ones, clicks land on original-image pixels, model-guided order)
is tested here directly; the page in :mod:`app.label` only forwards clicks and button presses.

Coordinates: the page shows a downscaled copy of the photo (EXIF orientation applied by
:func:`posture.io.images.open_rgb`, exactly as ``posture.ingest`` sees it); clicks arrive in display
pixels and are stored in original pixels, mapping pixel centres (``(x + 0.5) * scale - 0.5``).
"""

from __future__ import annotations

import getpass
import logging
import os
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from posture.cli import UserError, option
from posture.data.cva import DEFAULT_CVA_THRESHOLD_DEG, craniovertebral_angle, label_from_cva
from posture.data.labels import CLASS_NAMES
from posture.io.filenames import needs_escape, text_name
from posture.io.formats import CONFIG_NAME, IMAGE_EXTENSIONS
from posture.io.images import ImageDecodeError, open_rgb
from posture.io.labelstore import UNUSABLE, LabelRecord, LabelStore
from posture.io.walk import walk_files

log = logging.getLogger(__name__)

ORDERS = ("name", "uncertainty")
UNSTORABLE_NAME = (
    "unsupported_name: the name holds a line break, a control character, a backslash or bytes "
    "that are not UTF-8, which the label CSV cannot hold; rename the file and restart"
)


def default_labeler() -> str:
    """The login name, so rows carry *someone* even when ``--labeler`` is forgotten."""
    try:
        return getpass.getuser() or "labeler"
    except Exception:  # no passwd entry in some containers
        return "labeler"


@dataclass
class LabelConfig:
    """Everything ``python -m app.label`` is told; each field with an :func:`~posture.cli.option` is
    also the command's option of that name. Values are checked when built, the paths when a
    session opens them (:meth:`check_paths`)."""

    images: Path = field(metadata=option("folder of photos to label (searched recursively)"))
    out: Path = field(metadata=option("label CSV to append to (created if missing)"))
    threshold: float = field(
        default=DEFAULT_CVA_THRESHOLD_DEG, metadata=option("CVA in degrees below which a photo is forward head")
    )
    labeler: str = field(
        default_factory=default_labeler,
        metadata=option(
            "your name, stored in every row; resume and agreement are per labeler", default_text="login name"
        ),
    )
    run: Path | None = field(
        default=None, metadata=option("a trained run (models/RUN) whose guess is shown beside the photo")
    )
    order: str = field(
        default="name",
        metadata=option(
            "name: folder order; uncertainty: least certain model guesses first, needs --run", choices=ORDERS
        ),
    )
    display_max: int = field(
        default=960,
        metadata=option("longest side of the shown copy in pixels; clicks are mapped back to the original"),
    )
    host: str = field(default="127.0.0.1", metadata=option("address to serve on; 127.0.0.1 is this machine only"))
    port: int | None = field(default=None, metadata=option("port", default_text="Gradio's, usually 7860"))

    def __post_init__(self) -> None:
        """Turn every value a user can get wrong on the command line into one clear error."""
        if not 0.0 < float(self.threshold) < 90.0:
            raise UserError(f"--threshold {self.threshold}: the CVA threshold must be between 0 and 90 degrees")
        if not self.labeler or any(c in self.labeler for c in ',\n\r"'):
            raise UserError(f"--labeler {self.labeler!r}: use a plain name (no commas, quotes or line breaks)")
        if self.order not in ORDERS:
            raise UserError(f"--order {self.order}: choose one of {', '.join(ORDERS)}")
        if self.order == "uncertainty" and self.run is None:
            raise UserError("--order uncertainty needs a model: add --run models/RUN")
        if self.display_max < 64:
            raise UserError(f"--display-max {self.display_max}: too small to click on")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise UserError(f"--port {self.port}: choose 1-65535")

    def check_paths(self) -> None:
        """Check what the paths name, when a session is about to use them: a config may be built
        (and its values checked) before the folder exists, but no session starts on a missing one."""
        if not Path(self.images).is_dir():
            raise UserError(f"{self.images}: not a folder of images")
        if self.run is not None and not (Path(self.run) / CONFIG_NAME).is_file():
            raise UserError(f"--run {self.run}: not a trained run (no config.json)")
        if Path(self.out).is_dir():
            raise UserError(f"--out {self.out}: is a folder; give a CSV file name")


def scan_images(root: str | os.PathLike[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The photos under ``root`` a labeler can be shown, and the files left out, each with a reason.

    The folder is walked exactly as ``posture.ingest`` walks it (:func:`posture.io.walk.walk_files`):
    hidden and system entries are skipped, and FIFOs, devices, symlink loops and links out of the
    folder are left out with their reason, so no photo the labeler answers is one ingest refuses,
    and the page never blocks on a file that is not a regular file.

    Names the answer file cannot hold (a line break, a control character, bytes that are not
    UTF-8, a backslash, which ingest reads as a folder separator) are left out too, so one such
    file can never block a session; names are given as :func:`posture.io.filenames.text_name` text.
    """
    walk = walk_files(root)
    found, left_out = [], [(text_name(r.rel), f"{r.reason}: {r.detail}") for r in walk.refused]
    for rel in walk.files:
        if os.path.splitext(rel)[1].lower() not in IMAGE_EXTENSIONS:
            continue
        if needs_escape(rel):
            left_out.append((text_name(rel), UNSTORABLE_NAME))
        else:
            found.append(rel)
    return found, sorted(left_out)


def list_images(root: str | os.PathLike[str]) -> list[str]:
    """Image files under ``root`` as ``/``-separated relative paths, sorted; hidden entries skipped."""
    return scan_images(root)[0]


@dataclass(frozen=True)
class ImageView:
    """One photo as shown: the downscaled display copy and how it maps to original pixels."""

    filename: str
    display: np.ndarray
    original_size: tuple[int, int]  # (width, height) after EXIF orientation
    error: str | None = None

    @property
    def scale(self) -> tuple[float, float]:
        """Original pixels per display pixel along x and y (they differ slightly after rounding)."""
        return (self.original_size[0] / self.display.shape[1], self.original_size[1] / self.display.shape[0])

    def to_original(self, x: float, y: float) -> tuple[float, float]:
        """A click in display pixels → the same spot in original pixels (pixel centres, clamped)."""
        sx, sy = self.scale
        w, h = self.original_size
        return (min(max((x + 0.5) * sx - 0.5, 0.0), w - 1.0), min(max((y + 0.5) * sy - 0.5, 0.0), h - 1.0))

    def to_display(self, x: float, y: float) -> tuple[float, float]:
        sx, sy = self.scale
        return ((x + 0.5) / sx - 0.5, (y + 0.5) / sy - 0.5)


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    per_label: dict[str, int]

    @property
    def remaining(self) -> int:
        return self.total - self.done

    def format(self) -> str:
        parts = [f"**{self.done} / {self.total} done**"]
        for name in (*CLASS_NAMES, UNUSABLE):
            parts.append(f"{name.replace('_', ' ')}: {self.per_label.get(name, 0)}")
        parts.append(f"{self.remaining} to go")
        return " · ".join(parts)


def uncertainty_order(
    files: Sequence[str], predictions: dict[str, Any], positive_class: str, threshold: float | None
) -> list[str]:
    """Hardest first: the smallest distance of the positive probability from the decision threshold.

    Images the model could not read go last (they still need a human answer, usually *unusable*).
    """
    cut = 0.5 if threshold is None else float(threshold)

    def key(f: str) -> tuple[int, float, str]:
        pred = predictions.get(f)
        if pred is None:
            return (1, 0.0, f)
        return (0, abs(float(pred.probabilities.get(positive_class, 0.0)) - cut), f)

    return sorted(files, key=key)


class LabelSession:
    """One labeler working through one folder into one CSV; safe to share between browser tabs."""

    def __init__(self, config: LabelConfig, predictor: Any | None = None) -> None:
        config.check_paths()
        self.config = config
        self.root = Path(config.images)
        self.files, self.skipped = scan_images(self.root)
        for name, reason in self.skipped:
            log.warning("%s: left out (%s)", name, reason)
        if not self.files:
            raise UserError(f"{self.root}: no images found (.jpg, .png, .webp, ... files, searched recursively)")
        self.store = LabelStore(config.out)
        self.predictor = predictor
        self.predictions: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._views: OrderedDict[str, ImageView] = OrderedDict()
        # One background decoder: while the labeler clicks, the next photo is decoded and scaled,
        # so *accept* shows it at once even for 12-megapixel phone photos.
        self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="label-prefetch")
        self._inflight: dict[str, Future[ImageView]] = {}
        self._file_set = set(self.files)
        # Only this labeler's rows count as done, so two people can label the same folder into one CSV.
        self._answers = self.store.latest(labeler=config.labeler)
        stray = [f for f in self._answers if f not in self._file_set]
        if stray:
            log.warning(
                "%d answered file(s) in %s are not in %s (moved or deleted?)", len(stray), config.out, self.root
            )
        if config.order == "uncertainty" and predictor is not None:
            self.predict_all()
            self.files = uncertainty_order(self.files, self.predictions, predictor.positive_class, predictor.threshold)
        log.info(
            "%s: %d images, %d already labeled by %s",
            self.root,
            len(self.files),
            len([f for f in self._answers if f in self._file_set]),
            config.labeler,
        )

    # -- navigation ---------------------------------------------------------------------------
    def answers(self) -> dict[str, LabelRecord]:
        with self._lock:
            return dict(self._answers)

    def answer(self, filename: str) -> LabelRecord | None:
        with self._lock:
            return self._answers.get(filename)

    def next_pending(self, skip: str | None = None) -> str | None:
        """The first image in the session's order that this labeler has not answered (other than ``skip``)."""
        with self._lock:
            return next((f for f in self.files if f not in self._answers and f != skip), None)

    def previous_of(self, filename: str | None) -> str | None:
        """The answer given before ``filename`` (or the latest answer when ``filename`` is unanswered)."""
        with self._lock:
            answered = [f for f in self._answers if f in self._file_set]
        if filename in answered:
            idx = answered.index(filename)
            return answered[idx - 1] if idx > 0 else None
        return answered[-1] if answered else None

    def progress(self) -> Progress:
        with self._lock:
            labels = [r.label for f, r in self._answers.items() if f in self._file_set]
        return Progress(done=len(labels), total=len(self.files), per_label=dict(Counter(labels)))

    # -- images -------------------------------------------------------------------------------
    def prefetch(self, filename: str | None) -> Future[ImageView] | None:
        """Start decoding ``filename`` in the background (no-op when cached or already under way)."""
        if filename is None:
            return None
        with self._lock:
            if filename in self._views:
                return None
            future = self._inflight.get(filename)
            if future is None:
                future = self._prefetcher.submit(self._load_view, filename)
                self._inflight[filename] = future
            return future

    def view(self, filename: str) -> ImageView:
        """Decode and downscale once; a few recent views are kept, since every click redraws."""
        with self._lock:
            cached = self._views.get(filename)
            if cached is not None:
                self._views.move_to_end(filename)
                return cached
            future = self._inflight.get(filename)
        if future is not None:
            try:
                return future.result()
            except Exception:  # a failed background load is simply retried here, in the open
                with self._lock:
                    self._inflight.pop(filename, None)
        return self._load_view(filename)

    def _load_view(self, filename: str) -> ImageView:
        try:
            img = open_rgb(self.root / filename)  # reads regular files only: a FIFO swapped in cannot block
            # Longest side = display_max, up or down: big photos load fast, small ones get big
            # enough to click precisely (the browser never enlarges a Gradio image itself).
            f = self.config.display_max / max(img.size)
            shown = (
                img
                if f == 1
                else img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))), Image.Resampling.LANCZOS)
            )
            view = ImageView(filename, np.asarray(shown), img.size)
        except (ImageDecodeError, OSError) as exc:
            from app.label_overlay import placeholder

            log.warning("%s: cannot open (%s)", filename, exc)
            view = ImageView(filename, placeholder(f"cannot open {filename}: {exc}"), (640, 400), error=str(exc))
        with self._lock:
            self._views[filename] = view
            self._inflight.pop(filename, None)
            while len(self._views) > 4:
                self._views.popitem(last=False)
        return view

    def predict(self, filename: str) -> Any | None:
        """The model's guess for one image (cached); ``None`` without ``--run`` or for unreadable files."""
        if self.predictor is None:
            return None
        if filename not in self.predictions:
            try:
                self.predictions[filename] = self.predictor.predict(self.root / filename)
            except (ImageDecodeError, OSError, ValueError) as exc:
                log.warning("%s: no prediction (%s)", filename, exc)
                return None
        return self.predictions[filename]

    def predict_all(self, batch_size: int = 32) -> None:
        """Score every image once (for ``--order uncertainty``); unreadable files are left out."""
        from tqdm import tqdm

        for start in tqdm(range(0, len(self.files), batch_size), desc="model scores", unit="batch"):
            batch = self.files[start : start + batch_size]
            try:
                preds = self.predictor.predict_many([self.root / f for f in batch])  # type: ignore[union-attr]
                self.predictions.update(zip(batch, preds, strict=True))
            except (ImageDecodeError, OSError, ValueError):
                for f in batch:  # one bad file must not cost the whole batch its scores
                    self.predict(f)

    # -- answers ------------------------------------------------------------------------------
    def measure(self, ear: tuple[float, float], c7: tuple[float, float]) -> tuple[float, str]:
        """CVA (degrees) and the label it implies at this session's threshold."""
        cva = craniovertebral_angle(ear[0], ear[1], c7[0], c7[1])
        return cva, label_from_cva(cva, self.config.threshold)

    def _append(self, record: LabelRecord) -> LabelRecord:
        if record.filename not in self._file_set:
            raise ValueError(f"{record.filename} is not an image of this session")
        with self._lock:
            saved = self.store.append(record)
            self._answers.pop(saved.filename, None)
            self._answers[saved.filename] = saved
        log.info(
            "%s -> %s%s", saved.filename, saved.label, "" if saved.cva_deg is None else f" (CVA {saved.cva_deg:.1f}°)"
        )
        return saved

    def answer_points(self, filename: str, ear: tuple[float, float], c7: tuple[float, float]) -> LabelRecord:
        """Save an angle answer; ``ear`` and ``c7`` are original-image pixels.

        Points are rounded to the CSV's 0.1 px first, so the stored angle is exactly the one the
        stored points give (ingest may recompute it).
        """
        self._require_readable(filename)
        ear = (round(float(ear[0]), 1), round(float(ear[1]), 1))
        c7 = (round(float(c7[0]), 1), round(float(c7[1]), 1))
        cva, label = self.measure(ear, c7)
        return self._append(
            LabelRecord(filename, label, round(cva, 2), ear[0], ear[1], c7[0], c7[1], self.config.labeler)
        )

    def answer_class(self, filename: str, label: str) -> LabelRecord:
        """Save a class-only answer (quick mode) or :data:`UNUSABLE` (skip).

        A class is refused for a file this session cannot open: nobody saw that photo, so only
        *unusable* can be said of it.
        """
        if label not in (*CLASS_NAMES, UNUSABLE):
            raise ValueError(f"unknown label {label!r}")
        if label != UNUSABLE:
            self._require_readable(filename)
        return self._append(LabelRecord(filename, label, labeler=self.config.labeler))

    def _require_readable(self, filename: str) -> None:
        """Raise ``ValueError`` when ``filename`` cannot be opened (a class or points would describe nothing seen)."""
        if filename in self._file_set and self.view(filename).error:
            raise ValueError(f"{filename} cannot be opened, so it cannot be given a class; press Skip (unusable)")

    def close(self) -> None:
        self._prefetcher.shutdown(wait=True, cancel_futures=True)
        self.store.close()
