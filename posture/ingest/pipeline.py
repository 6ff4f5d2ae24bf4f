"""``ingest()``: a labeling team's folder in, a clean, split, documented dataset out.

The whole dataset is built in a hidden staging folder beside ``out`` and moved into place at the
end, so an interrupted run leaves the previous dataset (or nothing) and can simply be rerun; the
source folder is only ever read. A lock file beside ``out`` (``.<out>.lock``) keeps a second
ingest into the same folder out while one runs: it would otherwise take the first one's staging
folder for an interrupted run's leftovers and delete it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from posture.cli import UserError
from posture.data.labels import CLASS_NAMES
from posture.ingest.config import IngestConfig, IngestResult
from posture.ingest.decode import Decoded, DecodeSettings, DecodeTask, decode_all
from posture.ingest.dedup import Duplicate, HashedImage, find_duplicates
from posture.ingest.report import (
    REASONS,
    SUMMARY_FORMAT,
    build_summary,
    imbalance_warning,
    manifest_frame,
    rejected_frame,
)
from posture.ingest.sources import Candidate, Scan, scan, subject_warnings
from posture.ingest.split import assign_splits
from posture.io.fileio import (
    LockHeld,
    atomic_write_csv,
    atomic_write_json,
    check_writable_output,
    exclusive_lock,
    read_json,
    remove_stale_staging,
    staged_folder,
)
from posture.io.formats import CLASSES_NAME, MANIFEST_NAME, REJECTED_NAME, SUMMARY_NAME

log = logging.getLogger(__name__)


def ingest(config: IngestConfig) -> IngestResult:
    """Run the whole ingest described by ``config`` and return what was written to ``config.out``."""
    src, out = _check_paths(config)
    try:
        with exclusive_lock(out.parent / f".{out.name}.lock"):
            return _ingest_locked(config, src, out)
    except LockHeld as exc:
        raise UserError(
            f"another ingest (process {exc.holder or '?'}) is writing to --out {config.out}; "
            "wait for it to finish, or choose another --out"
        ) from None


def _ingest_locked(config: IngestConfig, src: Path, out: Path) -> IngestResult:
    _check_out(config, src, out)
    found = scan(src, config.labels, config.aliases(), config.cva_threshold, config.subject_pattern, config.source)
    log.info("%d files under %s: %d images to decode", found.files_found, src, len(found.candidates))

    with staged_folder(out) as staging:
        result = _build(config, found, staging)
    result.out = out
    return result


@dataclass
class _Rejected:
    """Every file left out so far (the ``rejected.csv`` rows) and the count per file reason."""

    rows: list[tuple[str, str, str]]
    counts: dict[str, int]
    csv_rows: int  # rows of a labels CSV that named no usable file (not counted as files)

    @classmethod
    def from_scan(cls, found: Scan) -> _Rejected:
        rejected = cls(
            [(r.path, r.reason, r.detail) for r in found.rejections],
            {r: 0 for r in REASONS},
            sum(not r.is_file for r in found.rejections),
        )
        for r in found.rejections:
            if r.is_file:
                rejected.counts[r.reason] = rejected.counts.get(r.reason, 0) + 1
        return rejected

    def add(self, path: str, reason: str, detail: str) -> None:
        self.rows.append((path, reason, detail))
        self.counts[reason] = self.counts.get(reason, 0) + 1


def _hashed(decoded: Decoded, candidate: Candidate) -> HashedImage:
    """What de-duplication compares of one decoded image (hashes, size, label, where it came from)."""
    d = decoded
    return HashedImage(
        d.index,
        candidate.source_path,
        candidate.label,
        d.orig_width * d.orig_height,
        d.source_sha256,
        d.phash,
        d.dhash,
        d.flat,
    )


def _build(config: IngestConfig, found: Scan, staging: Path) -> IngestResult:
    """Decode, de-duplicate, split and write everything into ``staging``."""
    candidates: list[Candidate] = found.candidates
    names = _assign_names(candidates, config.image_format)
    folders = sorted({staging / posixpath.dirname(n) for n in names})
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    rejected = _Rejected.from_scan(found)
    good = _decode_checked(config, candidates, names, staging, rejected)
    duplicates = find_duplicates([_hashed(d, candidates[d.index]) for d in good], config.near_dup_threshold)
    for dup in duplicates.values():  # listed in rejected.csv; counted in summary.json's duplicates
        rejected.rows.append(_duplicate_row(dup, candidates))
        (staging / names[dup.key]).unlink()

    kept_items = sorted((d for d in good if d.index not in duplicates), key=lambda d: candidates[d.index].source_path)
    rows = [_manifest_row(names[d.index], candidates[d.index], d) for d in kept_items]
    warnings = list(found.warnings) + subject_warnings([candidates[d.index] for d in kept_items])
    splits, split_warnings = assign_splits(
        [r["subject"] for r in rows], [r["label"] for r in rows], config.ratios, config.seed, CLASS_NAMES
    )
    for row, split in zip(rows, splits, strict=True):
        row["split"] = split
    for folder in folders:
        if not any(folder.iterdir()):
            folder.rmdir()  # a class whose every image was rejected
    manifest = manifest_frame(rows)
    conflicts = sum(d.label_conflict for d in duplicates.values())
    warnings += split_warnings + _dataset_warnings(manifest, conflicts)
    for w in warnings:
        log.warning("warning: %s", w)

    summary = build_summary(
        src=os.path.realpath(config.src),
        source=config.source,
        settings=config.describe(),
        files_found=found.files_found,
        manifest=manifest,
        reason_counts=rejected.counts,
        duplicates=list(duplicates.values()),
        label_conflicts=conflicts,
        skipped=found.skipped,
        skipped_files=found.skipped_files,
        csv_rows_rejected=rejected.csv_rows,
        warnings=warnings,
        classes=CLASS_NAMES,
    )
    rejected_df = rejected_frame(rejected.rows)
    atomic_write_csv(staging / MANIFEST_NAME, manifest)
    atomic_write_csv(staging / REJECTED_NAME, rejected_df)
    atomic_write_json(staging / CLASSES_NAME, list(CLASS_NAMES))
    atomic_write_json(staging / SUMMARY_NAME, summary)
    return IngestResult(out=staging, manifest=manifest, rejected=rejected_df, summary=summary)


def _decode_checked(
    config: IngestConfig, candidates: list[Candidate], names: list[str], staging: Path, rejected: _Rejected
) -> list[Decoded]:
    """Decode every candidate into ``staging`` (in worker processes); the images that decoded and whose
    keypoints land on the photo, with every other one recorded in ``rejected`` and its file removed."""
    base = str(staging)
    tasks = [DecodeTask(i, str(c.abs_path), f"{base}/{names[i]}") for i, c in enumerate(candidates)]
    settings = DecodeSettings(
        config.max_pixels, config.min_side, config.max_side, config.image_format, config.jpeg_quality, config.max_bytes
    )
    good = []
    for d in list(decode_all(tasks, settings, config.n_workers, config.progress)):
        keypoints = candidates[d.index].keypoints
        if d.ok and keypoints is not None:  # clicks must land on the photo
            problem = _keypoints_outside(keypoints, d.orig_width, d.orig_height)
            if problem:
                d = replace(d, reason="implausible_label", detail=problem)
        if d.ok:
            good.append(d)
        else:
            rejected.add(candidates[d.index].source_path, d.reason, d.detail)
            (staging / names[d.index]).unlink(missing_ok=True)  # a write that failed half-way
    return good


def _dataset_warnings(manifest: pd.DataFrame, conflicts: int) -> list[str]:
    """What the person who handed over the drop should check about the dataset as a whole."""
    warnings = []
    if conflicts:
        warnings.append(
            f"{conflicts} duplicate(s) carry a different label than the copy kept: check them "
            f"(LABEL CONFLICT in {REJECTED_NAME})"
        )
    imbalance = imbalance_warning(manifest, CLASS_NAMES)
    if imbalance:
        warnings.append(imbalance)
    if not len(manifest):
        warnings.append("no image was kept: see rejected.csv")
    return warnings


def _keypoints_outside(points: tuple[float, float, float, float], width: int, height: int) -> str:
    """Why ear/C7 points (original pixels) cannot be clicks on a ``width`` x ``height`` photo, or ``""``."""
    ex, ey, cx, cy = points
    if all(0 <= x <= width for x in (ex, cx)) and all(0 <= y <= height for y in (ey, cy)):
        return ""
    return f"keypoints ear ({ex:g}, {ey:g}), C7 ({cx:g}, {cy:g}) lie outside the {width}x{height} image"


def _duplicate_row(dup: Duplicate, candidates: list[Candidate]) -> tuple[str, str, str]:
    me, kept = candidates[dup.key], candidates[dup.kept_key]
    detail = (
        "exact copy (same file bytes)"
        if dup.kind == "exact"
        else f"near copy (phash {dup.phash_distance}, dhash {dup.dhash_distance} bits apart)"
    )
    if dup.label_conflict:
        detail += f"; LABEL CONFLICT: {me.label} here, {kept.label} in the kept file"
    return me.source_path, f"duplicate_of:{kept.source_path}", detail


def _safe_stem(source_path: str) -> str:
    stem = Path(source_path).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-") or "image"


def _assign_names(candidates: list[Candidate], ext: str) -> list[str]:
    """``images/<label>/<stem>.<ext>`` for each candidate, decided before decoding so workers write in place.

    Candidates come in source-path order, so the names are deterministic; a clash (same stem in
    two folders, ``a.png`` beside ``a.jpg``) gets a suffix from the source path's hash.
    """
    taken: set[str] = set()
    names = []
    for cand in candidates:
        stem = _safe_stem(cand.source_path)
        rel = f"images/{cand.label}/{stem}.{ext}"
        if rel.lower() in taken:  # lower(): case-insensitive file systems
            tag = hashlib.sha256(cand.source_path.encode()).hexdigest()[:8]
            rel = f"images/{cand.label}/{stem}-{tag}.{ext}"
            n = 1
            while rel.lower() in taken:
                n += 1
                rel = f"images/{cand.label}/{stem}-{tag}-{n}.{ext}"
        taken.add(rel.lower())
        names.append(rel)
    return names


def _manifest_row(rel: str, cand: Candidate, d: Decoded) -> dict[str, Any]:
    row: dict[str, Any] = {
        "path": rel,
        "label": cand.label,
        "split": "",
        "subject": cand.subject,
        "sha256": d.sha256,
        "width": d.width,
        "height": d.height,
        "source_path": cand.source_path,
        "source": cand.source,
        "source_sha256": d.source_sha256,
        "orig_width": d.orig_width,
        "orig_height": d.orig_height,
        "cva_deg": cand.cva_deg,
    }
    if cand.keypoints is not None:  # labelers clicked on the original; scale to the stored image
        sx, sy = d.width / d.orig_width, d.height / d.orig_height
        ex, ey, cx, cy = cand.keypoints
        row.update(ear_x=round(ex * sx, 2), ear_y=round(ey * sy, 2), c7_x=round(cx * sx, 2), c7_y=round(cy * sy, 2))
    return row


def _check_paths(config: IngestConfig) -> tuple[Path, Path]:
    """Refuse set-ups that would read our own output or destroy something that is not ours."""
    src = Path(os.path.realpath(config.src))  # realpath, not resolve(): a symlink loop must not raise
    if not src.is_dir():
        raise UserError(f"{config.src}: no such folder")
    out = Path(os.path.realpath(config.out))
    if out == src or src in out.parents:
        raise UserError(f"--out {config.out} lies inside the source folder; choose a folder outside it")
    if out in src.parents:
        raise UserError(f"--out {config.out} contains the source folder; replacing it would delete the source")
    check_writable_output(out, f"--out {config.out}")  # before decoding, not at its end
    return src, out


def _check_out(config: IngestConfig, src: Path, out: Path) -> None:
    """Under the lock: clear an interrupted run's leftovers, refuse to replace what is not ours."""
    remove_stale_staging(out)
    if out.exists():
        if not out.is_dir():
            raise UserError(f"--out {config.out} is a file, not a folder")
        if any(out.iterdir()):
            summary_path = out / SUMMARY_NAME
            previous = _read_summary(summary_path)
            if previous is None:
                raise UserError(
                    f"--out {config.out} is not empty and holds no ingested dataset; choose a new or empty folder"
                )
            same = previous.get("src") == str(src) and previous.get("source") == config.source
            if not same and not config.overwrite:
                raise UserError(
                    f"--out {config.out} holds a dataset ingested from {previous.get('src')}; "
                    "pass --overwrite to replace it"
                )
            log.info("replacing the dataset in %s", out)


def _read_summary(path: Path) -> dict[str, Any] | None:
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == SUMMARY_FORMAT else None
