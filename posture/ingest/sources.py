"""Find the images in a labeling team's drop and decide each one's label and subject.

Nothing here opens an image: this stage only walks the tree and reads CSVs, so every file can be
accounted for (a candidate, a rejection or a counted skip) before the expensive decoding starts.
"""

from __future__ import annotations

import logging
import math
import os
import posixpath
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from posture.cli import UserError
from posture.data.cva import PLAUSIBLE_CVA_DEG, craniovertebral_angle, label_from_cva, plausible_cva
from posture.data.labels import CLASS_NAMES, normalise_label_text
from posture.io.csvcells import restore_frame
from posture.io.filenames import text_name
from posture.io.formats import IMAGE_EXTENSIONS, LABELS_NAME, UNSUPPORTED_IMAGE_FORMATS
from posture.io.walk import is_hidden_or_system, walk_files

log = logging.getLogger(__name__)


FILENAME_COLUMNS = ("filename", "file", "path", "image", "image_path", "filepath", "file_name")
LABEL_COLUMNS = ("label", "class", "category")
CVA_COLUMNS = ("cva_deg", "cva")
KEYPOINT_COLUMNS = ("ear_x", "ear_y", "c7_x", "c7_y")
#: Values of an optional ``view`` column for which the ear and C7 keypoints give the CVA. The angle
#: is defined in the sagittal plane, so only a profile shows it: in a front view the 2-D angle
#: measures nothing, and in an oblique one foreshortening inflates it (a rendered 35° reads 85°).
#: A row without a view is taken as a side view, as CVA keypoints are normally marked on one.
SIDE_VIEWS = frozenset({"side", "lateral", "profile", "sagittal", "left", "right"})


@dataclass(frozen=True)
class Candidate:
    """An image file that has a label and a subject and now needs decoding."""

    source_path: str  # POSIX path relative to SRC, as posture.io.filenames.text_name writes it
    abs_path: Path
    label: str
    subject: str
    source: str
    cva_deg: float | None = None
    keypoints: tuple[float, float, float, float] | None = None  # ear_x, ear_y, c7_x, c7_y (source pixels)
    #: Where the subject came from: "csv", "pattern", "folder" or "file" (none known: leak risk).
    subject_from: str = "csv"
    pattern_missed: bool = False  # --subject-pattern was given but did not match this name


@dataclass(frozen=True)
class Rejection:
    """One line of ``rejected.csv``; ``is_file`` is False for a CSV row that names no usable file."""

    path: str
    reason: str
    detail: str
    is_file: bool = True


@dataclass
class Scan:
    candidates: list[Candidate] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    skipped_files: dict[str, list[str]] = field(default_factory=dict)  # kind -> names (text_name), for the report
    refused: set[str] = field(default_factory=set)  # walked files already rejected (real names)
    files_found: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LabelRow:
    """What one CSV row says about one file, before subjects are decided."""

    csv_path: str
    label: str | None
    raw_label: str
    cva_deg: float | None
    keypoints: tuple[float, float, float, float] | None
    subject: str | None
    source: str | None
    problem: str = ""  # why ``label`` is None
    reason: str = "unknown_label"  # the rejected.csv reason when ``label`` is None
    derived_disagrees: bool = False  # an explicit label contradicted the angle


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def walk_tree(src: Path) -> tuple[Scan, list[str], set[str]]:
    """Every entry under ``src``: a :class:`Scan` holding the rejections (special files, loops,
    links out, unsupported formats), skips and total, plus the image and the non-image paths.

    The walk itself (:func:`posture.io.walk.walk_files`) is shared with the labeling tool, so both
    agree on which files are photos that may be read.
    """
    walk = walk_files(src)
    result = Scan(
        rejections=[Rejection(text_name(r.rel), r.reason, r.detail) for r in walk.refused],
        skipped=Counter(walk.skip_counts),
        files_found=walk.total,
        refused={r.rel for r in walk.refused},
    )
    for kind, names in walk.skipped.items():
        result.skipped_files[kind] = [text_name(n) for n in names]
    images: list[str] = []
    non_images: set[str] = set()
    for rel in walk.files:
        unsupported = UNSUPPORTED_IMAGE_FORMATS.get(os.path.splitext(rel)[1].lower())
        if unsupported:
            result.rejections.append(Rejection(text_name(rel), "unsupported_format", unsupported))
            result.refused.add(rel)
        elif is_image_name(rel):
            images.append(rel)
        else:
            result.skipped["non_image"] += 1
            non_images.add(rel)
    return result, images, non_images


# --------------------------------------------------------------------------- label CSVs


def _pick_column(columns: list[str], choices: tuple[str, ...]) -> str | None:
    return next((c for c in choices if c in columns), None)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_label_csv(path: Path, aliases: Mapping[str, str], cva_threshold: float) -> list[LabelRow]:
    """Rows of a labeling CSV; the label comes from keypoints, else the angle, else the label text.

    Keypoints beat an angle and an angle beats a typed label because they are measurements the
    threshold turns into a label the same way for every labeler. Keypoints on rows whose ``view``
    column says front/back are kept but give no angle: the CVA exists only in a side view.
    """
    try:
        frame = restore_frame(pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the labels CSV ({exc})") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    columns = list(frame.columns)
    name_col = _pick_column(columns, FILENAME_COLUMNS)
    if name_col is None:
        raise UserError(f"{path}: no file-name column (one of {', '.join(FILENAME_COLUMNS)})")
    label_col = _pick_column(columns, LABEL_COLUMNS)
    cva_col = _pick_column(columns, CVA_COLUMNS)
    kp_present = [c for c in KEYPOINT_COLUMNS if c in columns]
    if kp_present and len(kp_present) != len(KEYPOINT_COLUMNS):
        missing = sorted(set(KEYPOINT_COLUMNS) - set(kp_present))
        raise UserError(f"{path}: keypoint columns incomplete, missing {', '.join(missing)}")
    if not (label_col or cva_col or kp_present):
        raise UserError(
            f"{path}: needs a label column ({', '.join(LABEL_COLUMNS)}), a cva_deg column "
            f"or keypoint columns ({', '.join(KEYPOINT_COLUMNS)})"
        )
    table = {normalise_label_text(k): v for k, v in aliases.items()}
    rows = []
    not_side: dict[str, int] = {}  # view -> rows whose keypoints cannot give the angle
    for record in frame.to_dict("records"):
        csv_path = str(record[name_col]).strip()
        if not csv_path:
            continue
        raw_label = str(record.get(label_col, "")).strip() if label_col else ""
        typed = table.get(normalise_label_text(raw_label)) if raw_label else None
        cva = _number(record[cva_col]) if cva_col else None
        keypoints: tuple[float, float, float, float] | None = None
        view = str(record.get("view", "")).strip()  # "" without a view column: taken as a side view
        problem = ""
        if kp_present:
            ear_x, ear_y, c7_x, c7_y = (_number(record[c]) for c in KEYPOINT_COLUMNS)
            if ear_x is not None and ear_y is not None and c7_x is not None and c7_y is not None:
                keypoints = (ear_x, ear_y, c7_x, c7_y)
                if not keypoints_measure_cva(view):
                    not_side[view] = not_side.get(view, 0) + 1
                else:
                    try:
                        cva = craniovertebral_angle(*keypoints)
                    except ValueError as exc:
                        keypoints, cva, problem = None, None, f"keypoints: {exc}"
        reason = "unknown_label"
        if cva is not None and not plausible_cva(cva):
            lo, hi = PLAUSIBLE_CVA_DEG
            where = "the keypoints give" if keypoints is not None else "cva_deg is"
            problem, reason = (
                f"{where} a CVA of {cva:g}°, outside the physical range {lo:g}..{hi:g}°",
                "implausible_label",
            )
            label = None
        else:
            label = label_from_cva(cva, cva_threshold) if cva is not None else typed
        if label is None and not problem:
            if raw_label:
                problem = f"label {raw_label!r} is not one of the known names for {', '.join(CLASS_NAMES)}"
            elif keypoints is not None:
                problem = (
                    f"ear/C7 keypoints measure the CVA only on a side view, and this row's view is "
                    f"{view!r}; give it a label or cva_deg"
                )
            else:
                problem = "no label, angle or keypoints in the CSV row"
        rows.append(
            LabelRow(
                csv_path=csv_path,
                label=label,
                raw_label=raw_label,
                cva_deg=None if cva is None else round(float(cva), 3),
                keypoints=keypoints,
                subject=(str(record.get("subject", "")).strip() or None),
                source=(str(record.get("source", "")).strip() or None),
                problem=problem,
                reason=reason,
                derived_disagrees=bool(typed and cva is not None and typed != label),
            )
        )
    if not_side:
        views = ", ".join(f"{v} {n}" for v, n in sorted(not_side.items()))
        log.info(
            "%s: %d row(s) have ear/C7 keypoints on a view that is not a profile (%s); the keypoints measure "
            "the CVA only on a side view, so their label comes from cva_deg or the label column",
            path.name,
            sum(not_side.values()),
            views,
        )
    return rows


def keypoints_measure_cva(view: object) -> bool:
    """Whether a row's ``view`` lets its ear and C7 keypoints measure the CVA (see :data:`SIDE_VIEWS`)."""
    text = "" if view is None else str(view).strip().lower()
    return text in ("", "nan") or text in SIDE_VIEWS  # pandas reads an empty cell as NaN: "nan"


def _normalise_csv_path(text: str, root: Path, known: set[str]) -> str | None:
    """The CSV path relative to ``root``, or None when it leads outside (``..``, absolute, symlink).

    Paths the walk already found (``known``) are inside by construction and skip the syscalls.
    """
    text = text.replace("\\", "/")
    if not os.path.isabs(text):
        rel = posixpath.normpath(text)
        if rel in known:
            return rel
    resolved = Path(os.path.normpath(Path(text) if os.path.isabs(text) else root / text))
    if not _inside(resolved, root):
        return None
    if resolved.exists() and not _inside(resolved.resolve(), root):
        return None
    return resolved.relative_to(root).as_posix()


# --------------------------------------------------------------------------- labels and subjects


def folder_label(rel: str, aliases: Mapping[str, str]) -> str | None:
    """The class named by the top-most folder of ``rel`` that names one."""
    table = {normalise_label_text(k): v for k, v in aliases.items()}
    for part in rel.split("/")[:-1]:
        label = table.get(normalise_label_text(part))
        if label is not None:
            return label
    return None


def folder_subject(rel: str, aliases: Mapping[str, str]) -> str | None:
    """The folders around a file that are not class folders (``normal/anna/x.jpg`` -> ``anna``)."""
    table = {normalise_label_text(k) for k in aliases}
    parts = [p for p in rel.split("/")[:-1] if normalise_label_text(p) not in table]
    return "/".join(parts) or None


def compile_subject_pattern(pattern: str | None) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise UserError(f"--subject-pattern {pattern!r} is not a valid regular expression: {exc}") from None
    if compiled.groups == 0:
        raise UserError(f"--subject-pattern {pattern!r} needs a group, e.g. '^(.+?)-\\d+' or '(?P<subject>...)'")
    return compiled


def pattern_subject(name: str, pattern: re.Pattern[str]) -> str | None:
    match = pattern.search(name)
    if match is None:
        return None
    value = match.group("subject") if "subject" in pattern.groupindex else match.group(1)
    return value or None


def _match_csv_rows(
    rows: list[LabelRow], root: Path, images: list[str], non_images: set[str], result: Scan
) -> dict[str, LabelRow]:
    """Pair CSV rows with walked files; rows naming nothing usable become row rejections.

    A file the CSV names explicitly is decoded even with an unusual extension; a bare file name
    matches a file in any folder when it is unique there; a file named twice takes its last row
    (a labeling tool appends a relabel rather than editing the earlier line).
    """
    image_set = set(images)
    by_name: dict[str, list[str]] = {}
    for rel in images:
        by_name.setdefault(posixpath.basename(rel), []).append(rel)
    by_path: dict[str, LabelRow] = {}
    disagreements = relabelled = 0
    for row in rows:
        normalised = _normalise_csv_path(row.csv_path, root, image_set)
        if normalised is None:
            result.rejections.append(
                Rejection(row.csv_path, "outside_root", "the labels CSV names a file outside SRC", is_file=False)
            )
            continue
        rel = normalised
        if rel not in image_set and "/" not in rel and len(by_name.get(rel, [])) == 1:
            rel = by_name[rel][0]
        if rel in result.refused:
            continue  # the file has its rejection already (unsupported format, FIFO, loop...)
        if rel in non_images:
            non_images.discard(rel)
            result.skipped["non_image"] -= 1
            images.append(rel)
            image_set.add(rel)
        if rel not in image_set:
            result.rejections.append(
                Rejection(
                    row.csv_path, "missing_file", "listed in the labels CSV but not found under SRC", is_file=False
                )
            )
            continue
        if rel in by_path:
            relabelled += by_path[rel].label != row.label
            disagreements -= by_path[rel].derived_disagrees
        by_path[rel] = row  # the last row wins: labeling tools append corrections
        disagreements += row.derived_disagrees
    if relabelled:
        result.warnings.append(
            f"{relabelled} file(s) appear more than once in the labels CSV with different labels; the last row wins"
        )
    if disagreements:
        result.warnings.append(
            f"{disagreements} CSV label(s) disagree with the label derived from the angle/keypoints; the angle wins"
        )
    return by_path


def scan(
    src: Path,
    label_csvs: tuple[Path, ...],
    aliases: Mapping[str, str],
    cva_threshold: float,
    subject_pattern: str | None,
    source: str,
) -> Scan:
    """Walk ``src``, attach labels (CSV first, then folder names) and subjects to each image."""
    root = src.resolve()
    pattern = compile_subject_pattern(subject_pattern)
    result, images, non_images = walk_tree(root)

    if len(label_csvs) > 1:  # several labelers: report their agreement, take the labels from the first
        from posture.data.agreement import labeler_agreement

        for other in label_csvs[1:]:
            report = labeler_agreement(label_csvs[0], other)
            log.info("labeler agreement, %s vs %s:\n%s", label_csvs[0], other, report.format_text())
            result.warnings.append(
                f"labelers {label_csvs[0].name} and {other.name}: Cohen's kappa "
                f"{'undefined' if report.kappa is None else f'{report.kappa:.3f}'} on "
                f"{report.n_common} common files, {len(report.disagreements)} disagreement(s)"
            )
        label_csvs = label_csvs[:1]
    csv_path = label_csvs[0] if label_csvs else (root / LABELS_NAME if (root / LABELS_NAME).is_file() else None)
    by_path: dict[str, LabelRow] = {}
    if csv_path is not None:
        if not csv_path.is_file():
            raise UserError(f"--labels {csv_path}: no such file")
        log.info("labels from %s", csv_path)
        rows = read_label_csv(csv_path, aliases, cva_threshold)
        by_path = _match_csv_rows(rows, root, images, non_images, result)

    for rel in sorted(images):
        shown = text_name(rel)  # what every report records; rel is what the file system wants
        row = by_path.get(rel)
        if row is not None and row.label is None:
            result.rejections.append(Rejection(shown, row.reason, row.problem))
            continue
        label = row.label if row is not None else folder_label(rel, aliases)
        if label is None:
            detail = (
                "not listed in the labels CSV, and no folder names a class"
                if by_path
                else "no folder on its path names a class (see --label-map)"
            )
            result.rejections.append(Rejection(shown, "unknown_label", detail))
            continue
        subject, subject_from, missed = row.subject if row is not None else None, "csv", False
        if subject is None and pattern is not None:
            subject, subject_from = pattern_subject(posixpath.basename(shown), pattern), "pattern"
            missed = subject is None
        if subject is None:
            subject, subject_from = folder_subject(shown, aliases), "folder"
        if subject is None:
            subject, subject_from = posixpath.splitext(shown)[0], "file"
        result.candidates.append(
            Candidate(
                source_path=shown,
                abs_path=root / rel,
                label=label,
                subject=subject,
                source=(row.source if row is not None and row.source else source),
                cva_deg=row.cva_deg if row is not None else None,
                keypoints=row.keypoints if row is not None else None,
                subject_from=subject_from,
                pattern_missed=missed,
            )
        )
    if non_images:  # what is left of them: those the CSV named are decoded after all
        result.skipped_files["non_image"] = sorted(text_name(n) for n in non_images)
    _warn_empty_class_folders(root, aliases, result)
    return result


def subject_warnings(kept: list[Candidate]) -> list[str]:
    """Warnings about the subjects of the images that made it into the dataset."""
    warnings = []
    missed = sum(c.pattern_missed for c in kept)
    if missed:
        warnings.append(
            f"--subject-pattern did not match {missed} kept file name(s); their subject falls "
            "back to the folder or the file"
        )
    subjectless = sum(c.subject_from == "file" for c in kept)
    if subjectless:
        warnings.append(
            f"{subjectless} kept image(s) have no subject (no CSV subject column, no --subject-pattern match, "
            "no person folder): each counts as its own subject, so frames of one person can leak across "
            "splits; pass --subject-pattern"
        )
    return warnings


def _warn_empty_class_folders(root: Path, aliases: Mapping[str, str], result: Scan) -> None:
    used = {c.source_path.split("/")[0] for c in result.candidates}
    table = {normalise_label_text(k) for k in aliases}
    for entry in sorted(root.iterdir()):
        if (
            entry.is_dir()
            and not entry.is_symlink()
            and not is_hidden_or_system(entry.name)
            and normalise_label_text(entry.name) in table
            and entry.name not in used
        ):
            result.warnings.append(f"class folder {text_name(entry.name)}/ holds no usable image")
