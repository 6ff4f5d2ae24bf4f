"""The files an ingest leaves behind (manifest, rejections, summary) and the table a person reads.

Column order and row order are fixed here, so two runs over the same drop write byte-identical
files and a ``diff`` of two manifests shows only real changes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from posture import __version__
from posture.ingest.dedup import Duplicate
from posture.io.formats import SPLITS

MANIFEST_COLUMNS = (
    "path",
    "label",
    "split",
    "subject",
    "sha256",
    "width",
    "height",
    "source_path",
    "source",
    "source_sha256",
    "orig_width",
    "orig_height",
)
OPTIONAL_COLUMNS = ("cva_deg", "ear_x", "ear_y", "c7_x", "c7_y")
REJECTED_COLUMNS = ("path", "reason", "detail")
#: The reasons a file can be rejected for (besides ``duplicate_of:<kept path>``).
REASONS = (
    "empty_file",
    "not_an_image",
    "corrupt",
    "too_large",
    "too_small",
    "unknown_label",
    "missing_file",
    "outside_root",
    "unreadable",
    "not_a_regular_file",
    "symlink_loop",
    "implausible_label",
    "unsupported_format",
)
SKIP_KINDS = ("hidden_system", "non_image", "symlinked_folder")
SUMMARY_FORMAT = "posture.ingest/1"
#: Skipped files the printed report names per kind (summary.json lists them all).
SHOW_SKIPPED = 10


def manifest_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Rows sorted by path; optional angle/keypoint columns only when some row has them."""
    columns = list(MANIFEST_COLUMNS)
    for col in OPTIONAL_COLUMNS:
        if any(r.get(col) is not None for r in rows):
            columns.append(col)
    frame = pd.DataFrame(list(rows), columns=columns)
    return frame.sort_values("path", kind="stable").reset_index(drop=True)


def rejected_frame(rows: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(REJECTED_COLUMNS))
    return frame.sort_values(["path", "reason"], kind="stable").reset_index(drop=True)


def split_table(manifest: pd.DataFrame, classes: Sequence[str]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        part = manifest[manifest["split"] == split] if len(manifest) else manifest
        counts = Counter(part["label"]) if len(part) else Counter()
        table[split] = {c: int(counts.get(c, 0)) for c in classes}
        table[split]["total"] = int(len(part))
        table[split]["subjects"] = int(part["subject"].nunique()) if len(part) else 0
    return table


def imbalance_warning(manifest: pd.DataFrame, classes: Sequence[str], min_ratio: float = 0.5) -> str | None:
    """A warning when the rarest class has less than ``min_ratio`` of the commonest one's images."""
    if not len(manifest):
        return None
    counts = [int((manifest["label"] == c).sum()) for c in classes]
    if max(counts) == 0:
        return None
    if min(counts) == 0:
        missing = [c for c, n in zip(classes, counts, strict=True) if n == 0]
        return f"no {', '.join(missing)} image kept: a classifier cannot learn a class it never sees"
    if min(counts) / max(counts) < min_ratio:
        desc = ", ".join(f"{c} {n}" for c, n in zip(classes, counts, strict=True))
        return (
            f"class imbalance: {desc} (ratio {min(counts) / max(counts):.2f} < {min_ratio}); "
            "consider class weights or balanced sampling"
        )
    return None


def build_summary(
    *,
    src: str,
    source: str,
    settings: dict[str, Any],
    files_found: int,
    manifest: pd.DataFrame,
    reason_counts: Mapping[str, int],
    duplicates: Sequence[Duplicate],
    label_conflicts: int,
    skipped: Mapping[str, int],
    csv_rows_rejected: int,
    warnings: Sequence[str],
    classes: Sequence[str],
    skipped_files: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """``summary.json``: the counts that account for every input file, and the run's settings.

    ``files_found == kept + rejected + duplicates + skipped``; CSV rows that name no usable file
    are counted apart because they are not files. ``skipped_files`` names every skipped file by
    kind (a hidden folder once, ending in ``/``), so nothing is left out without a trace.
    """
    skip = {k: int(skipped.get(k, 0)) for k in SKIP_KINDS}
    return {
        "format": SUMMARY_FORMAT,
        "posture_version": __version__,
        "src": src,
        "source": source,
        "config": settings,
        "counts": {
            "files_found": files_found,
            "kept": len(manifest),
            "rejected": sum(reason_counts.values()),
            "duplicates": len(duplicates),
            "skipped": sum(skip.values()),
            "csv_rows_rejected": csv_rows_rejected,
        },
        "rejected_by_reason": dict(reason_counts),
        "duplicates": {
            "exact": sum(d.kind == "exact" for d in duplicates),
            "near": sum(d.kind == "near" for d in duplicates),
            "label_conflicts": label_conflicts,
        },
        "skipped": skip,
        "skipped_files": {k: sorted(v) for k, v in sorted((skipped_files or {}).items()) if v},
        "splits": split_table(manifest, classes),
        "subjects": int(manifest["subject"].nunique()) if len(manifest) else 0,
        "warnings": list(warnings),
    }


def format_summary(summary: dict[str, Any], classes: Sequence[str]) -> str:
    """The human-readable report printed at the end of a run."""
    c = summary["counts"]
    reasons = ", ".join(f"{k} {v}" for k, v in summary["rejected_by_reason"].items() if v)
    dup = summary["duplicates"]
    skip = summary["skipped"]
    lines = [
        f"ingest {summary['source']}: {c['files_found']} files found",
        f"  kept               {c['kept']:>6}",
        f"  rejected           {c['rejected']:>6}" + (f"   ({reasons})" if reasons else ""),
        f"  duplicates         {c['duplicates']:>6}   (exact {dup['exact']}, near {dup['near']}, "
        f"label conflicts {dup['label_conflicts']})",
        f"  skipped            {c['skipped']:>6}   (hidden/system {skip['hidden_system']}, "
        f"non-image {skip['non_image']}, symlinked folders {skip['symlinked_folder']})",
    ]
    for kind, names in summary.get("skipped_files", {}).items():
        shown = ", ".join(names[:SHOW_SKIPPED]) + (
            f", ... {len(names) - SHOW_SKIPPED} more in summary.json" if len(names) > SHOW_SKIPPED else ""
        )
        lines.append(f"    {kind.replace('_', ' ')}: {shown}")
    if c["csv_rows_rejected"]:
        lines.append(f"  CSV rows rejected  {c['csv_rows_rejected']:>6}   (missing or outside SRC)")
    header = ["split", *classes, "total", "subjects"]
    widths = [max(8, len(h)) for h in header]
    lines += ["", "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    totals = {k: 0 for k in header[1:]}
    for split, row in summary["splits"].items():
        values = [split, *[str(row[k]) for k in header[1:]]]
        lines.append("  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)))
        for k in header[1:]:
            totals[k] += row[k]
    lines.append(
        "  ".join(v.ljust(w) for v, w in zip(["total", *[str(totals[k]) for k in header[1:]]], widths, strict=True))
    )
    if summary["warnings"]:
        lines += ["", f"warnings ({len(summary['warnings'])}):"] + [f"  - {w}" for w in summary["warnings"]]
    return "\n".join(lines)
