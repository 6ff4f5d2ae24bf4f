"""How far two labelers agree on the same photos: Cohen's kappa, CVA differences, the disputed files.

Why kappa and not plain percent agreement: with a lopsided class balance two labelers agree a lot
by chance alone; kappa subtracts that chance agreement, so 0 means "no better than guessing" and
1 means perfect agreement. The mean absolute CVA difference says how reproducible the clicks are
in degrees, which matters because a 2° wobble flips labels near the threshold.

``unusable`` answers take part in kappa as a category of their own (agreeing that a photo is
unusable is agreement); the CVA comparison uses only files where both labelers placed points.

``python -m posture.agreement A.csv B.csv`` compares two labelers' CSVs (the labeling tool's or
any ``filename,label[,cva_deg|ear_x,ear_y,c7_x,c7_y]`` CSV); one CSV shared by several labelers
works with ``--labeler-a NAME --labeler-b NAME``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from posture.cli import UserError, add_logging_flags, add_options, config_from_args, option, run_main, setup_logging
from posture.data.cva import craniovertebral_angle
from posture.data.labels import normalise_label_text, resolve_label
from posture.io.fileio import atomic_write_json, check_text_file
from posture.io.labelstore import LabelRecord, read_labels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Disagreement:
    """One image the two labelers labeled differently."""

    filename: str
    label_a: str
    label_b: str
    cva_a: float | None
    cva_b: float | None


@dataclass
class AgreementReport:
    """Agreement between labeler A and labeler B on the files both labeled."""

    name_a: str
    name_b: str
    n_a: int
    n_b: int
    n_common: int
    labels: list[str]
    kappa: float | None  # None when undefined (no common files, or both used one single label)
    percent_agreement: float | None
    #: ``confusion[i][j]``: files A labeled ``labels[i]`` and B labeled ``labels[j]``.
    confusion: list[list[int]]
    n_cva_common: int
    mean_abs_cva_diff: float | None
    max_abs_cva_diff: float | None
    disagreements: list[Disagreement] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format_text(self, max_listed: int = 20) -> str:
        """A short human summary (what the CLI prints)."""

        def fmt(v: float | None, spec: str) -> str:
            return "undefined" if v is None else format(v, spec)

        lines = [
            f"labeler A: {self.name_a} ({self.n_a} files)   labeler B: {self.name_b} ({self.n_b} files)",
            f"labeled by both: {self.n_common}   only A: {len(self.only_a)}   only B: {len(self.only_b)}",
            f"Cohen's kappa: {fmt(self.kappa, '.3f')}   raw agreement: "
            f"{'undefined' if self.percent_agreement is None else f'{self.percent_agreement:.1%}'}",
            f"CVA on {self.n_cva_common} files with an angle from both: mean |A-B| "
            f"{fmt(self.mean_abs_cva_diff, '.2f')}°, max {fmt(self.max_abs_cva_diff, '.2f')}°",
        ]
        if self.labels and self.n_common:
            width = max(len(x) for x in self.labels + ["A \\ B"])
            lines.append("confusion (rows A, columns B):")
            lines.append("  " + "A \\ B".ljust(width) + "".join(f"  {x:>{width}}" for x in self.labels))
            for name, row in zip(self.labels, self.confusion, strict=True):
                lines.append("  " + name.ljust(width) + "".join(f"  {n:>{width}}" for n in row))
        if self.disagreements:
            lines.append(f"disagreements ({len(self.disagreements)}):")
            for d in self.disagreements[:max_listed]:
                cva = ""
                if d.cva_a is not None or d.cva_b is not None:
                    cva = f"  (CVA {fmt(d.cva_a, '.1f')}° vs {fmt(d.cva_b, '.1f')}°)"
                lines.append(f"  {d.filename}: {d.label_a} vs {d.label_b}{cva}")
            if len(self.disagreements) > max_listed:
                lines.append(f"  ... and {len(self.disagreements) - max_listed} more")
        return "\n".join(lines)


def _canonical(label: str) -> str:
    """``Turtle neck`` and ``forward_head`` are the same answer; unknown words (``unusable``) stay as they are."""
    return resolve_label(label) or normalise_label_text(label)


def record_cva(rec: LabelRecord) -> float | None:
    """The stored angle, or the one the stored points imply (for keypoint-only CSVs)."""
    if rec.cva_deg is not None:
        return rec.cva_deg
    if rec.has_points:
        try:
            return craniovertebral_angle(rec.ear_x, rec.ear_y, rec.c7_x, rec.c7_y)  # type: ignore[arg-type]
        except ValueError:
            return None
    return None


def agreement_from_records(
    a: Mapping[str, LabelRecord], b: Mapping[str, LabelRecord], name_a: str = "A", name_b: str = "B"
) -> AgreementReport:
    """Compare two ``filename -> answer`` mappings (see :func:`posture.io.labelstore.read_labels`)."""
    from sklearn.metrics import cohen_kappa_score

    common = sorted(set(a) & set(b))
    labels_a = [_canonical(a[f].label) for f in common]
    labels_b = [_canonical(b[f].label) for f in common]
    labels = sorted(set(labels_a) | set(labels_b))
    kappa: float | None = None
    percent: float | None = None
    confusion: list[list[int]] = []
    if common:
        percent = sum(x == y for x, y in zip(labels_a, labels_b, strict=True)) / len(common)
        pairs = Counter(zip(labels_a, labels_b, strict=True))
        confusion = [[pairs[(ra, cb)] for cb in labels] for ra in labels]
        if len(labels) > 1:  # with a single label in play, chance agreement is 1 and kappa is 0/0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = float(cohen_kappa_score(labels_a, labels_b, labels=labels, replace_undefined_by=math.nan))
            kappa = None if math.isnan(value) else value
    diffs = []
    disagreements = []
    for f in common:
        cva_a, cva_b = record_cva(a[f]), record_cva(b[f])
        if cva_a is not None and cva_b is not None:
            diffs.append(abs(cva_a - cva_b))
        label_a, label_b = _canonical(a[f].label), _canonical(b[f].label)
        if label_a != label_b:
            disagreements.append(Disagreement(f, label_a, label_b, cva_a, cva_b))
    # Most useful first: the largest angle gaps, then the class-only disputes by name.
    disagreements.sort(
        key=lambda d: (-(abs(d.cva_a - d.cva_b)) if d.cva_a is not None and d.cva_b is not None else 0.0, d.filename)
    )
    return AgreementReport(
        name_a=name_a,
        name_b=name_b,
        n_a=len(a),
        n_b=len(b),
        n_common=len(common),
        labels=labels,
        kappa=kappa,
        percent_agreement=percent,
        confusion=confusion,
        n_cva_common=len(diffs),
        mean_abs_cva_diff=(sum(diffs) / len(diffs)) if diffs else None,
        max_abs_cva_diff=max(diffs) if diffs else None,
        disagreements=disagreements,
        only_a=sorted(set(a) - set(b)),
        only_b=sorted(set(b) - set(a)),
    )


def labeler_agreement(
    csv_a: str | os.PathLike[str],
    csv_b: str | os.PathLike[str] | None = None,
    labeler_a: str | None = None,
    labeler_b: str | None = None,
) -> AgreementReport:
    """Agreement between the answers in force in two label CSVs (or two labelers in one CSV).

    Later rows for a file supersede earlier ones, exactly as ingest and the labeling tool read them.
    """
    path_b = csv_a if csv_b is None else csv_b
    if csv_b is None and (labeler_a is None or labeler_b is None):
        raise UserError("with a single CSV, name both labelers (--labeler-a NAME --labeler-b NAME)")
    for path in {Path(csv_a), Path(path_b)}:
        check_text_file(path, "a label CSV")  # binary data would otherwise read as a CSV without answers
    a = read_labels(csv_a, labeler=labeler_a)
    b = read_labels(path_b, labeler=labeler_b)
    name_a = labeler_a or Path(csv_a).name
    name_b = labeler_b or Path(path_b).name
    for name, answers in ((name_a, a), (name_b, b)):
        if not answers:
            log.warning("%s has no answers%s", name, "" if labeler_a is None else " (check the labeler names)")
    return agreement_from_records(a, b, name_a=name_a, name_b=name_b)


@dataclass(frozen=True)
class AgreementConfig:
    """What ``python -m posture.agreement`` compares; each field is also the command's option."""

    csv_a: Path = field(
        metadata=option("first labeler's CSV (app.label output or filename,label[,cva_deg] CSV)", positional=True)
    )
    csv_b: Path | None = field(
        default=None,
        metadata=option("second labeler's CSV (omit when both labelers share csv_a)", positional=True, nargs="?"),
    )
    labeler_a: str | None = field(default=None, metadata=option("only use rows of this labeler from csv_a"))
    labeler_b: str | None = field(default=None, metadata=option("only use rows of this labeler from csv_b (or csv_a)"))
    json_path: Path | None = field(
        default=None, metadata=option("also write the full report as JSON here", flag="--json", metavar="JSON")
    )
    max_listed: int = field(default=20, metadata=option("disagreements to list"))

    def __post_init__(self) -> None:
        if self.max_listed < 0:
            raise UserError(f"--max-listed must be >= 0, got {self.max_listed}")
        for path in (self.csv_a, self.csv_b):
            if path is not None and not Path(path).is_file():
                raise UserError(f"{path}: no such file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m posture.agreement",
        description="Compare two labelers: Cohen's kappa on the files both labeled, the mean absolute "
        "difference of their craniovertebral angles, and the list of images they disagree on. "
        "Later rows for the same file supersede earlier ones.",
    )
    add_options(parser, AgreementConfig)
    add_logging_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    cfg = config_from_args(AgreementConfig, args)
    report = labeler_agreement(cfg.csv_a, cfg.csv_b, cfg.labeler_a, cfg.labeler_b)
    print(report.format_text(max_listed=cfg.max_listed))
    if cfg.json_path:
        atomic_write_json(cfg.json_path, report.to_dict())
        log.info("wrote %s", cfg.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
