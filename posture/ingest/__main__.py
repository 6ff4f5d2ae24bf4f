"""Command line: ``python -m posture.ingest SRC --out DST [options]`` (a thin shell over ``ingest()``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from posture.cli import add_logging_flags, run_main, setup_logging
from posture.cva import DEFAULT_CVA_THRESHOLD_DEG
from posture.images import DEFAULT_MAX_PIXELS
from posture.ingest.config import (DEFAULT_MAX_SIDE, DEFAULT_MIN_SIDE, DEFAULT_NEAR_DUP_THRESHOLD, IMAGE_FORMATS,
                                   IngestConfig, parse_label_map, parse_ratios)
from posture.ingest.pipeline import ingest
from posture.ingest.report import format_summary
from posture.filenames import text_name
from posture.labels import CLASS_NAMES
from posture.walk import DEFAULT_MAX_BYTES

EPILOG = """\
inputs (SRC):
  class folders   SRC/forward_head/*.jpg, SRC/normal/*.jpg (names such as turtle_neck, slouch,
                  good, upright are understood; add your own with --label-map)
  labels CSV      --labels FILE or SRC/labels.csv with a file-name column (filename or path,
                  relative to SRC) and one of: label | cva_deg | ear_x,ear_y,c7_x,c7_y
                  (keypoints beat cva_deg beats label; CVA < --cva-threshold = forward_head).
                  Optional columns: subject, source, view (keypoints of a front/back view
                  give no angle: CVA is measured from the side).
subjects:
  Splits keep each subject (person/session) in one split. Subjects come from the CSV subject
  column, else --subject-pattern on the file name, else the non-class folders on the path, else
  each file is its own subject (a warning: frames of one person may then leak across splits).
outputs (DST):
  images/<label>/*.jpg, manifest.csv, rejected.csv, classes.json, summary.json.
  Every file under SRC ends up in exactly one place: a manifest row, a rejected.csv row
  (empty_file, not_an_image, corrupt, too_large, too_small, unknown_label, implausible_label,
  missing_file, outside_root, unreadable, not_a_regular_file, symlink_loop, unsupported_format,
  duplicate_of:<kept file>), or a skip listed by name in summary.json and the report
  (hidden/system files such as .DS_Store, Thumbs.db, ._*, dot-folders; non-image extensions).
  implausible_label: a CVA outside 0..90 degrees, or keypoints outside the photo.
  unsupported_format: HEIC/HEIF, ICO, JPEG XL, camera RAW, ... (.jfif is read as JPEG).
  --min-side applies to the image as stored, after --max-side downscaling.
example:
  python -m posture.ingest ../shared/data/real --out data/real \\
      --labels ../shared/data/real/manifest.csv
  python -m posture.ingest photos/ --out data/photos --subject-pattern '^(.+?)-\\d+\\.'
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m posture.ingest", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Turn a folder of posture photos into a clean, de-duplicated, subject-split dataset "
                    "with a manifest and a report of every file that was left out and why. SRC is never modified.")
    p.add_argument("src", type=Path, help="folder handed over by the labeling team (read only)")
    p.add_argument("--out", "-o", type=Path, required=True, help="dataset folder to create (e.g. data/mydrop)")
    p.add_argument("--labels", type=Path, action="append", default=[], metavar="CSV",
                   help="labels CSV (default: SRC/labels.csv if present, else class folders)")
    p.add_argument("--label-map", type=parse_label_map, default=None, metavar="MAP",
                   help="extra label names: 'forward=forward_head,ok=normal' or a JSON file {name: class}")
    p.add_argument("--cva-threshold", type=float, default=DEFAULT_CVA_THRESHOLD_DEG, metavar="DEG",
                   help="craniovertebral angle below which a photo is forward_head (default %(default)s)")
    p.add_argument("--subject-pattern", metavar="REGEX",
                   help="regex on the file name; group 1 (or (?P<subject>...)) is the subject id")
    p.add_argument("--ratios", type=parse_ratios, default=(0.7, 0.15, 0.15), metavar="TR,VA,TE",
                   help="train,val,test shares (default 0.7,0.15,0.15)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default %(default)s)")
    p.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, metavar="PX",
                   help="downscale images whose long side exceeds this; 0 keeps sizes (default %(default)s)")
    p.add_argument("--min-side", type=int, default=DEFAULT_MIN_SIDE, metavar="PX",
                   help="reject images whose short side, as stored (after --max-side), is below this "
                        "(default %(default)s)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="reject images with more pixels (decompression bombs; default %(default)s)")
    p.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, metavar="N",
                   help="reject larger files without reading them (default %(default)s, 256 MiB)")
    p.add_argument("--near-dup-threshold", type=int, default=DEFAULT_NEAR_DUP_THRESHOLD, metavar="BITS",
                   help="max phash and dhash Hamming distance (of 64) for a near-duplicate; "
                        "-1 finds exact copies only (default %(default)s)")
    p.add_argument("--format", dest="image_format", choices=IMAGE_FORMATS, default="jpg",
                   help="re-encoded image format (JPEG quality 95; default %(default)s)")
    p.add_argument("--source-name", help="value of the manifest's source column (default: SRC's folder name)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per CPU core)")
    p.add_argument("--overwrite", action="store_true", help="replace a DST that holds a dataset from another SRC")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_logging_flags(p)
    return p


def config_from_args(args: argparse.Namespace) -> IngestConfig:
    return IngestConfig(
        src=args.src, out=args.out, labels=tuple(args.labels), label_map=args.label_map,
        cva_threshold=args.cva_threshold, subject_pattern=args.subject_pattern, ratios=args.ratios, seed=args.seed,
        max_side=args.max_side, max_pixels=args.max_pixels, max_bytes=args.max_bytes, min_side=args.min_side,
        near_dup_threshold=args.near_dup_threshold, image_format=args.image_format, source_name=args.source_name,
        workers=args.workers, overwrite=args.overwrite, progress=not args.no_progress and not args.quiet,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    result = ingest(config_from_args(args))
    print(format_summary(result.summary, CLASS_NAMES))
    print(f"\nwrote {text_name(str(result.out))}")
    return 0 if result.kept else 1


if __name__ == "__main__":
    sys.exit(run_main(main))
