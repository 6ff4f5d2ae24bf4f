"""Command line: ``python -m posture.ingest SRC --out DST [options]`` (a thin shell over ``ingest()``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from posture.cli import add_logging_flags, add_options, config_from_args, run_main, setup_logging
from posture.data.labels import CLASS_NAMES
from posture.ingest.config import IngestConfig
from posture.ingest.pipeline import ingest
from posture.ingest.report import format_summary
from posture.io.filenames import text_name

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
        prog="python -m posture.ingest",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        description="Turn a folder of posture photos into a clean, de-duplicated, subject-split dataset "
        "with a manifest and a report of every file that was left out and why. SRC is never modified.",
    )
    add_options(p, IngestConfig)
    add_logging_flags(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    result = ingest(config_from_args(IngestConfig, args, progress=args.progress and not args.quiet))
    print(format_summary(result.summary, CLASS_NAMES))
    print(f"\nwrote {text_name(str(result.out))}")
    return 0 if result.kept else 1


if __name__ == "__main__":
    sys.exit(run_main(main))
