"""Command line for the sample-data generator: a thin shell over :func:`posture.synth.drop`."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from posture.cli import add_logging_flags, add_options, config_from_args, setup_logging
from posture.synth.drop import SynthConfig, generate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m posture.synth",
        description="Generate procedural pictures of people with forward-head and normal posture, laid out "
        "like a labeling team's drop: OUT/forward_head/*.jpg, OUT/normal/*.jpg and OUT/labels.csv "
        "(filename, label, cva_deg, subject, ear_x, ear_y, c7_x, c7_y, view). The craniovertebral "
        "angle (CVA) of each picture is sampled and rendered exactly; labels come from a clinical "
        "threshold with an exclusion band, as studies do. Same seed and options give the same bytes.",
        epilog="ear/c7 are the projected tragus and C7 in image pixels. On side views the 2-D angle between "
        "them equals cva_deg (within a degree); on oblique and front views they are still the projected "
        "points, but their 2-D angle is not the CVA. Example: python -m posture.synth data/raw-sample --n 500 --seed 0",
    )
    add_options(parser, SynthConfig)
    add_logging_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    start = time.perf_counter()
    frame = generate(config_from_args(SynthConfig, args), progress=not args.quiet)
    counts = frame.groupby(["label", "view"]).size()
    print(
        f"{len(frame)} pictures of {frame['subject'].nunique()} subjects in {args.out} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    print(counts.to_string())
    return 0
