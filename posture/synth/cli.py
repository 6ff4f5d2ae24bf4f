"""Command line for the sample-data generator: a thin shell over :func:`posture.synth.drop`."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from posture.cli import add_logging_flags, setup_logging
from posture.cva import DEFAULT_CVA_THRESHOLD_DEG
from posture.synth.drop import DEFAULT_MARGIN_DEG, VIEWS, SynthConfig, generate


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
    parser.add_argument("out", type=Path, help="output folder (must be empty or absent unless --overwrite)")
    parser.add_argument("--n", type=int, default=500, help="number of pictures (default: 500)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed and options, same bytes")
    parser.add_argument("--view", choices=VIEWS, default="mixed",
                        help="side: profile, as clinicians measure CVA (seated at a desk or standing); oblique: 25-55° "
                             "off the profile towards the face; front: a laptop webcam facing the user; mixed: "
                             "45%% side, 15%% oblique, 40%% front, per picture (default)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_CVA_THRESHOLD_DEG,
                        help="label forward_head when CVA < this many degrees (default: %(default)s)")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN_DEG,
                        help="exclusion band: no CVA within this many degrees of the threshold, so labels are not "
                             "coin flips; published thresholds range 48-53 deg (default: %(default)s; 0 = each class uniform "
                             "up to the threshold)")
    parser.add_argument("--cva-range", type=float, nargs=2, metavar=("MIN", "MAX"), default=(30.0, 68.0),
                        help="CVA range in degrees the classes are drawn from (default: 30 68)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("MIN", "MAX"), default=(320, 480),
                        help="width and height are each drawn from MIN..MAX pixels (default: 320 480)")
    parser.add_argument("--subjects", type=int, default=None,
                        help="number of distinct people, pictures spread evenly (default: --per-subject decides)")
    parser.add_argument("--per-subject", type=int, nargs=2, metavar=("MIN", "MAX"), default=(5, 10),
                        help="pictures per person when --subjects is not given (default: 5 10)")
    parser.add_argument("--workers", type=int, default=2, help="processes rendering in parallel (default: 2); "
                                                                "does not change the output")
    parser.add_argument("--overwrite", action="store_true",
                        help="reuse a non-empty OUT: its labels.csv and previously generated images are replaced")
    add_logging_flags(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    return SynthConfig(out=args.out, n=args.n, seed=args.seed, view=args.view, threshold=args.threshold,
                       margin=args.margin, cva_min=args.cva_range[0], cva_max=args.cva_range[1],
                       size=tuple(args.size), subjects=args.subjects, per_subject=tuple(args.per_subject),
                       workers=args.workers, overwrite=args.overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    start = time.perf_counter()
    frame = generate(config_from_args(args), progress=not args.quiet)
    counts = frame.groupby(["label", "view"]).size()
    print(f"{len(frame)} pictures of {frame['subject'].nunique()} subjects in {args.out} "
          f"({time.perf_counter() - start:.1f} s)")
    print(counts.to_string())
    return 0
