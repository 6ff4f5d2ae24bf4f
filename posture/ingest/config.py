"""What an ingest run is asked to do, and what it hands back.

The configuration is one frozen dataclass so that a test, the CLI and a notebook all describe a
run the same way, and so that ``summary.json`` can record exactly the settings that made a dataset.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from posture.cli import UserError, option
from posture.data.cva import DEFAULT_CVA_THRESHOLD_DEG
from posture.data.labels import CLASS_NAMES, DEFAULT_LABEL_ALIASES, normalise_label_text
from posture.io.filenames import text_name
from posture.io.images import DEFAULT_MAX_PIXELS
from posture.io.walk import DEFAULT_MAX_BYTES

DEFAULT_RATIOS: tuple[float, float, float] = (0.7, 0.15, 0.15)
DEFAULT_MAX_SIDE = 1024
DEFAULT_MIN_SIDE = 64
#: Both the perceptual and the difference hash (64 bits each) must be within this many bits.
#: Re-saved JPEGs and resized copies land at 0-2 and video/burst frames of one pose at 0-5, while
#: different head positions of one person in one room (../shared/data/real, neckpose) start at 6.
DEFAULT_NEAR_DUP_THRESHOLD = 5
IMAGE_FORMATS = ("jpg", "png")


def validate_ratios(ratios: Any) -> tuple[float, float, float]:
    """Three non-negative train/val/test shares summing to 1 (a little rounding slack allowed)."""
    values = tuple(float(r) for r in ratios)
    if len(values) != 3 or any(r < 0 for r in values) or values[0] <= 0:
        raise UserError(f"ratios must be three non-negative numbers train,val,test with train > 0, not {ratios}")
    total = sum(values)
    if abs(total - 1.0) > 0.011:
        raise UserError(f"ratios must sum to 1, not {total:g}")
    return (values[0] / total, values[1] / total, values[2] / total)


def parse_ratios(text: str) -> tuple[float, float, float]:
    try:
        return validate_ratios([float(x) for x in text.split(",")])
    except ValueError:
        raise UserError(f"--ratios wants three numbers like 0.7,0.15,0.15, not {text!r}") from None


def parse_label_map(text: str) -> dict[str, str]:
    """``forward=forward_head,ok=normal`` or the path of a JSON object with the same mapping."""
    path = Path(text)
    if text.endswith(".json") or path.is_file():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"--label-map {text}: cannot read JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise UserError(f'--label-map {text}: wants a JSON object {{"name": "class"}}')
        pairs = [(str(k), str(v)) for k, v in raw.items()]
    else:
        pairs = []
        for item in filter(None, (s.strip() for s in text.split(","))):
            name, sep, cls = item.partition("=")
            if not sep or not name.strip():
                raise UserError(f"--label-map wants name=class pairs like forward=forward_head, not {item!r}")
            pairs.append((name.strip(), cls.strip()))
    mapping = {}
    for name, cls in pairs:
        target = normalise_label_text(cls)
        if target not in CLASS_NAMES:
            raise UserError(f"--label-map: {name!r} maps to {cls!r}, which is not one of {', '.join(CLASS_NAMES)}")
        mapping[name] = target
    return mapping


@dataclass(frozen=True)
class IngestConfig:
    """Settings of one ``posture.ingest`` run (the CLI flags map one to one onto these fields)."""

    src: Path = field(
        metadata=option("folder handed over by the labeling team (read only)", positional=True, metavar="SRC")
    )
    out: Path = field(metadata=option("dataset folder to create (e.g. data/mydrop)", aliases=("-o",)))
    #: Label CSVs. Labels come from the first; each further one (another labeler) is compared with
    #: it and the agreement (Cohen's kappa, CVA difference) is reported as a warning.
    labels: tuple[Path, ...] = field(
        default=(),
        metadata=option(
            "labels CSV (default: SRC/labels.csv if present, else class folders); give it twice to compare two "
            "labelers",
            repeat=True,
            metavar="CSV",
        ),
    )
    #: Extra ``name -> class`` spellings, layered over :data:`posture.data.labels.DEFAULT_LABEL_ALIASES`.
    label_map: Mapping[str, str] | None = field(
        default=None,
        metadata=option(
            "extra label names: 'forward=forward_head,ok=normal' or a JSON file {name: class}",
            parse=parse_label_map,
            metavar="MAP",
        ),
    )
    cva_threshold: float = field(
        default=DEFAULT_CVA_THRESHOLD_DEG,
        metadata=option("craniovertebral angle below which a photo is forward_head", metavar="DEG"),
    )
    subject_pattern: str | None = field(
        default=None,
        metadata=option("regex on the file name; group 1 (or (?P<subject>...)) is the subject id", metavar="REGEX"),
    )
    ratios: tuple[float, float, float] = field(
        default=DEFAULT_RATIOS,
        metadata=option(
            "train,val,test shares",
            parse=parse_ratios,
            metavar="TR,VA,TE",
            default_text=",".join(f"{r:g}" for r in DEFAULT_RATIOS),
        ),
    )
    seed: int = field(default=0, metadata=option("seed of the split"))
    max_side: int = field(
        default=DEFAULT_MAX_SIDE,
        metadata=option(  # 0 keeps the original size
            "downscale images whose long side exceeds this; 0 keeps sizes", metavar="PX"
        ),
    )
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS, metadata=option("reject images with more pixels (decompression bombs)", metavar="N")
    )
    max_bytes: int = field(
        default=DEFAULT_MAX_BYTES,
        metadata=option(  # larger files are rejected unread
            "reject larger files without reading them (too_large)",
            metavar="N",
            default_text=f"{DEFAULT_MAX_BYTES}, {DEFAULT_MAX_BYTES // 2**20} MiB",
        ),
    )
    min_side: int = field(
        default=DEFAULT_MIN_SIDE,
        metadata=option("reject images whose short side, as stored (after --max-side), is below this", metavar="PX"),
    )
    near_dup_threshold: int = field(
        default=DEFAULT_NEAR_DUP_THRESHOLD,
        metadata=option(
            "max phash and dhash Hamming distance (of 64) for a near-duplicate; -1 finds exact copies only",
            metavar="BITS",
        ),
    )
    image_format: str = field(
        default="jpg",
        metadata=option("re-encoded image format (JPEG quality 95)", flag="--format", choices=IMAGE_FORMATS),
    )
    jpeg_quality: int = 95
    source_name: str | None = field(
        default=None, metadata=option("value of the manifest's source column (default: SRC's folder name)")
    )
    workers: int | None = field(
        default=None,
        metadata=option(  # None: one per CPU core
            "decoding processes (default: one per CPU core)"
        ),
    )
    overwrite: bool = field(default=False, metadata=option("replace a DST that holds a dataset from another SRC"))
    progress: bool = field(default=True, metadata=option("no progress bar"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "src", Path(self.src))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "labels", tuple(Path(p) for p in self.labels))
        if self.image_format not in IMAGE_FORMATS:
            raise UserError(f"--format must be one of {', '.join(IMAGE_FORMATS)}, not {self.image_format!r}")
        object.__setattr__(self, "ratios", validate_ratios(self.ratios))
        if self.max_side < 0 or self.min_side < 1 or self.max_pixels < 1 or self.max_bytes < 1:
            raise UserError("--max-side must be >= 0, --min-side, --max-pixels and --max-bytes >= 1")
        if self.max_side and self.max_side < self.min_side:
            raise UserError(f"--max-side {self.max_side} is smaller than --min-side {self.min_side}")
        if self.workers is not None and self.workers < 1:
            raise UserError("--workers must be at least 1")
        if not 1 <= self.jpeg_quality <= 100:
            raise UserError("JPEG quality must be within 1..100")

    @property
    def source(self) -> str:
        """The manifest's ``source`` value: ``source_name`` or SRC's folder name (as printable text)."""
        return text_name(self.source_name or Path(os.path.realpath(self.src)).name)

    @property
    def n_workers(self) -> int:
        return self.workers or os.cpu_count() or 1

    def aliases(self) -> dict[str, str]:
        """The label spellings in force: the project's defaults overridden by ``label_map``."""
        table = dict(DEFAULT_LABEL_ALIASES)
        for name, cls in (self.label_map or {}).items():
            table[normalise_label_text(name)] = cls
        return table

    def describe(self) -> dict[str, Any]:
        """The settings that shape the dataset, for ``summary.json`` (no machine-specific paths)."""
        return {
            "labels": [str(p) for p in self.labels],
            "label_map": dict(self.label_map or {}),
            "cva_threshold": self.cva_threshold,
            "subject_pattern": self.subject_pattern,
            "ratios": list(self.ratios),
            "seed": self.seed,
            "max_side": self.max_side,
            "max_pixels": self.max_pixels,
            "max_bytes": self.max_bytes,
            "min_side": self.min_side,
            "near_dup_threshold": self.near_dup_threshold,
            "image_format": self.image_format,
            "jpeg_quality": self.jpeg_quality,
        }


@dataclass
class IngestResult:
    """What :func:`posture.ingest.ingest` produced; the same content as the files in ``out``."""

    out: Path
    manifest: pd.DataFrame
    rejected: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def kept(self) -> int:
        return len(self.manifest)

    @property
    def warnings(self) -> list[str]:
        return list(self.summary.get("warnings", []))
