"""python -m posture.calibrate — fit a run's temperature and decision threshold on its validation split.

Usage::

    python -m posture.calibrate --run models/RUN --data data/DS [--split val] [--threshold-policy youden]

Why it is a step of its own: it is the one command after training that changes what a run answers
(the Predictor, the CLI and the web app read ``config.json`` ``calibration``). Evaluation only
reads a run, so scoring it on another data set (real photos, say) can never move its threshold
behind the user's back, and a report always says which calibration it scored.

Both numbers are fitted on the *validation* split, through the same
:class:`~posture.inference.predict.Predictor` that answers users (see :mod:`posture.evaluation.calibration` for why a
temperature and a threshold). When the run re-drew validation from whole people or sessions
(``--val-group``), the same re-drawn photos are used, so the threshold sees new people as
training's early stopping did. The test split is never touched: ``posture.evaluate`` refuses to
score the rows a calibration was fitted on.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from posture.cli import UserError, add_logging_flags, add_options, config_from_args, option, run_main, setup_logging
from posture.data.datasets import regroup_validation
from posture.evaluation.calibration import (
    POLICY_HELP,
    ThresholdPolicy,
    calibration_record,
    choose_threshold,
    fit_temperature,
)
from posture.inference.predict import Predictor, softmax
from posture.inference.scoring import load_eval_frame, score_rows
from posture.io.formats import BACKENDS
from posture.runs.checkpoint import CONFIG_NAME, update_config

log = logging.getLogger(__name__)


@dataclass
class CalibrateConfig:
    """One calibration: which run, fitted on which split of which data, with which threshold rule.

    Each field is also the command's option of that name (:func:`posture.cli.option`).
    """

    run: Path = field(metadata=option("trained run folder (models/RUN)"))
    data: Path = field(metadata=option("the ingested dataset folder (manifest.csv with splits) to fit on"))
    split: str = field(
        default="val", metadata=option("split to fit on (val is re-drawn as training re-drew it with --val-group)")
    )
    threshold_policy: str = field(
        default="youden",
        metadata=option(f"how the forward_head threshold is chosen: {POLICY_HELP}", metavar="POLICY"),
    )
    batch_size: int = field(default=32, metadata=option("photos per forward pass"))
    device: str = field(default="auto", metadata=option("auto | cpu | cuda | mps"))
    backend: str = field(default="auto", metadata=option("inference engine (see posture.predict)", choices=BACKENDS))

    def __post_init__(self) -> None:
        ThresholdPolicy.parse(self.threshold_policy)  # a bad policy fails before any work
        if self.batch_size < 1:
            raise UserError("--batch-size must be >= 1")


def fitting_rows(predictor: Predictor, data: Path, split: str) -> pd.DataFrame:
    """The rows of ``split`` to fit on, re-drawn as training re-drew them (``--val-group``)."""
    frame, has_splits = load_eval_frame(data, predictor.class_names)
    if not has_splits:
        raise UserError(
            f"{data} has no splits (no manifest.csv with a split column); calibration is fitted on a "
            "validation split: point --data at the ingested dataset the run was trained on"
        )
    training = predictor.config.get("training") or {}
    group = str(training.get("val_group") or "none")
    if group != "none" and split == "val":  # the validation photos the run itself used
        frame = regroup_validation(frame, group, seed=int(training.get("seed", 0)))
    rows = frame[frame["split"] == split].reset_index(drop=True)
    if rows.empty:
        present = ", ".join(sorted(frame["split"].dropna().unique()))
        raise UserError(f"no rows in split {split!r} of {data} (it has: {present}); choose one with --split")
    return rows


def fit_calibration(
    predictor: Predictor, data: Path, rows: pd.DataFrame, policy: ThresholdPolicy, split: str, batch_size: int = 32
) -> dict[str, Any]:
    """The ``calibration`` record fitted on ``rows`` (nothing is written)."""
    scored = score_rows(predictor, data, rows, batch_size, desc=f"scoring {split}")
    if len(scored.y) == 0:
        raise UserError(
            f"none of the {len(rows)} photos of split {split!r} could be read and assessed; "
            "nothing to fit a calibration on"
        )
    names = predictor.class_names
    positive = predictor.positive_class
    temperature = fit_temperature(scored.logits, scored.y)
    threshold = None
    if len(names) == 2:
        pos = names.index(positive)
        threshold = choose_threshold(scored.y == pos, softmax(scored.logits, temperature)[:, pos], policy)
    elif policy.kind != "none":
        log.warning("threshold policies apply to two-class runs only; using argmax")
    record = calibration_record(temperature, threshold, positive, policy, split, len(scored.y))
    return {**record, "data": str(data)}


def calibrate(cfg: CalibrateConfig) -> tuple[dict[str, Any], Predictor]:
    """Fit, store in the run's ``config.json``, and return the record with a predictor that uses it."""
    from posture.runtime.device import resolve_device

    predictor = Predictor.from_run(cfg.run, backend=cfg.backend, device=resolve_device(cfg.device))
    rows = fitting_rows(predictor, Path(cfg.data), cfg.split)
    policy = ThresholdPolicy.parse(cfg.threshold_policy)
    record = fit_calibration(predictor, Path(cfg.data), rows, policy, cfg.split, cfg.batch_size)
    update_config(cfg.run, calibration=record)
    threshold = record["threshold"]
    log.info(
        "calibration on %s of %s (n=%d): temperature %.3f, threshold %s (%s); stored in %s",
        cfg.split,
        cfg.data,
        record["n"],
        record["temperature"],
        "argmax" if threshold is None else f"{threshold:.4f}",
        policy,
        Path(cfg.run) / CONFIG_NAME,
    )
    return record, predictor.with_calibration(record)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m posture.calibrate",
        description="Fit a trained run's temperature (honest confidences) and decision threshold on the "
        "validation split of its dataset and store them in the run's config.json, where "
        "prediction, the web app and posture.evaluate use them. The only command after training "
        "that changes what a run answers; run it again to refit.",
        epilog="examples:\n  python -m posture.calibrate --run models/sample --data data/sample\n"
        "  python -m posture.calibrate --run models/sample --data data/sample --threshold-policy recall:0.9",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(parser, CalibrateConfig)
    add_logging_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    record, _ = calibrate(config_from_args(CalibrateConfig, args))
    threshold = record["threshold"]
    print(
        f"{args.run}: temperature {record['temperature']:.3f}, threshold "
        f"{'argmax' if threshold is None else f'{threshold:.3f}'} for {record['positive_class']} "
        f"({record['policy']}, fitted on {record['fitted_on']} "
        f"n={record['n']}); stored in {Path(args.run) / CONFIG_NAME}"
    )
    return 0


__all__ = ["CalibrateConfig", "calibrate", "fit_calibration", "fitting_rows", "main"]

if __name__ == "__main__":
    raise SystemExit(run_main(main))
