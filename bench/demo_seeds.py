"""Is the README demo's score on real photos robust, or one lucky seed?

The demo model is trained on ``posture.synth`` pictures alone, and ``bench/evaluate_real.py`` shows
that the real-photo target (issue 25: balanced accuracy >= 0.92 overall and >= 0.80 on every
source) holds only for decision thresholds inside a narrow band. This bench runs the README's demo
commands, exactly as written there, for several generator seeds (nothing else changes) and scores
each run on ``../shared/data/real`` as ``bench/evaluate_real.py`` does, with the threshold the
demo stores and, side by side on a copy of the same run, with the Youden threshold that
``posture.calibrate`` fits by default. Writes ``bench/results/demo_seeds.json|md``.

    python -m bench.demo_seeds                    # seeds 0-6, about 1.5 min each on 2 cores
    python -m bench.demo_seeds --seeds 0,3
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.common import machine, write_results
from bench.evaluate_real import (
    DEFAULT_REAL,
    TARGET_OVERALL,
    TARGET_PER_SOURCE,
    meets_target_at,
    run_variant,
    shown,
    target_met,
)
from posture.runs.checkpoint import read_config

log = logging.getLogger("bench.demo_seeds")
ROOT = Path(__file__).resolve().parent.parent
#: The demo's working paths as the README writes them, and the names they get under the bench's folder.
DEMO_PATHS = {"data/raw-sample": "raw-sample", "data/sample": "sample", "models/sample": "run"}
COMPARED_POLICY = "youden"


def demo_steps(readme: str) -> list[list[str]]:
    """The README demo's ``python -m posture...`` commands (install and app left out), as argv lists."""
    block = re.search(r"<!-- demo-command:start -->\s*```bash\n(.*?)```", readme, re.S)
    if block is None:
        raise ValueError("README.md has no demo-command block")
    steps = [shlex.split(part) for part in block.group(1).split("&&")]
    return [s[2:] for s in steps if len(s) > 2 and s[:2] == ["python", "-m"] and s[2].startswith("posture.")]


def for_seed(steps: list[list[str]], seed: int, work: Path) -> list[list[str]]:
    """The demo's commands with ``--seed`` set and its paths moved under ``work``."""
    out = []
    for step in steps:
        args = [str(work / DEMO_PATHS[a]) if a in DEMO_PATHS else a for a in step]
        if "--seed" in args:
            args[args.index("--seed") + 1] = str(seed)
        elif args[0] == "posture.synth":
            args += ["--seed", str(seed)]
        out.append(args)
    return out


def run_steps(steps: list[list[str]]) -> None:
    for step in steps:
        proc = subprocess.run([sys.executable, "-m", *step], cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"{shlex.join(step)} failed ({proc.returncode}): {tail}")


def score(name: str, run: Path, real: Path, n_boot: int) -> dict[str, Any]:
    """One real-photo evaluation, reduced to what the table shows."""
    v = run_variant(name, run, real, run / "eval_real", top_k=0, n_boot=n_boot)
    worst = min((s for s in v["by_source"] if s["balanced_accuracy"] is not None), key=lambda s: s["balanced_accuracy"])
    return {
        "balanced_accuracy": v["balanced_accuracy"],
        "roc_auc": v["roc_auc"],
        "worst_source": worst["source"],
        "worst_balanced_accuracy": worst["balanced_accuracy"],
        "by_source": {s["source"]: s["balanced_accuracy"] for s in v["by_source"]},
        "met": target_met(v["balanced_accuracy"], [s["balanced_accuracy"] for s in v["by_source"]]),
        "window": v["target_window"],
        "positive_class": v["positive_class"],
    }


def compared_threshold(run: Path, data: Path, work: Path) -> float | None:
    """The threshold ``posture.calibrate --threshold-policy COMPARED_POLICY`` fits for this run (on a copy).

    Its temperature is fitted on the same validation pictures as the demo's, so the two differ only
    in the threshold, and the demo run's real-photo predictions answer for both.
    """
    other = work / f"run_{COMPARED_POLICY}"
    shutil.copytree(run, other, ignore=shutil.ignore_patterns("eval*"))
    run_steps(
        [["posture.calibrate", "--run", str(other), "--data", str(data), "--threshold-policy", COMPARED_POLICY, "-q"]]
    )
    mine, theirs = read_config(run)["calibration"], read_config(other)["calibration"]
    if mine["temperature"] != theirs["temperature"]:
        raise RuntimeError(f"temperatures differ ({mine['temperature']} vs {theirs['temperature']}): not comparable")
    return theirs["threshold"]


def one_seed(steps: list[list[str]], seed: int, work: Path, real: Path, n_boot: int) -> dict[str, Any]:
    start = time.perf_counter()
    run_steps(for_seed(steps, seed, work))
    demo_seconds = time.perf_counter() - start
    run, data = work / DEMO_PATHS["models/sample"], work / DEMO_PATHS["data/sample"]
    demo = score(f"seed {seed}", run, real, n_boot)
    threshold = compared_threshold(run, data, work)
    predictions = pd.read_csv(run / "eval_real" / "predictions.csv", dtype={"subject": str, "source": str, "path": str})
    used = 0.5 if threshold is None else float(threshold)
    compared = {"threshold": used, "met": meets_target_at(predictions, demo["positive_class"], used)}
    return {"seed": seed, "demo_seconds": round(demo_seconds, 1), "demo": demo, COMPARED_POLICY: compared}


def _band(window: dict[str, Any]) -> str:
    return "none" if window["low"] is None else f"{window['low']:.3f}–{window['high']:.3f}"


def to_markdown(payload: dict[str, Any]) -> str:
    rows, n = payload["seeds"], len(payload["seeds"])
    held = sum(r["demo"]["met"] for r in rows)
    held_other = sum(r[COMPARED_POLICY]["met"] for r in rows)
    lines = [
        "# The README demo across generator seeds, scored on real photos",
        "",
        (
            f"`python -m bench.demo_seeds`: the README's demo commands as written there, `posture.synth --seed` "
            f"varied, each run scored on `{payload['real']}` as `bench/evaluate_real.py` does (stored calibration, "
            "nothing fitted on the real photos). Target: balanced accuracy "
            f">= {TARGET_OVERALL:.2f} overall and >= {TARGET_PER_SOURCE:.2f} on every source. The threshold "
            "band is the range of thresholds on p(forward_head) for which the target holds."
        ),
        "",
        f"**The target held at {held} of {n} seeds with the demo's command** (`{payload['demo_calibrate']}`); "
        f"at {held_other} of {n} with the {COMPARED_POLICY.capitalize()} threshold fitted on the same run's "
        "validation pictures.",
        "",
        (
            "| seed | balanced acc. | worst source | ROC AUC | threshold band | demo: threshold, target | "
            f"{COMPARED_POLICY}: threshold, target | per source (demo) |"
        ),
        "|---:|---:|---|---:|---|---|---|---|",
    ]
    for r in rows:
        d, o = r["demo"], r[COMPARED_POLICY]
        per = ", ".join(f"{k} {v:.2f}" for k, v in d["by_source"].items() if v is not None)
        lines.append(
            f"| {r['seed']} | {d['balanced_accuracy']:.2f} | {d['worst_source']} {d['worst_balanced_accuracy']:.2f} | "
            f"{d['roc_auc']:.3f} | {_band(d['window'])} | {d['window']['threshold']:.3f}, "
            f"{'met' if d['met'] else 'not met'} | {o['threshold']:.3f}, "
            f"{'met' if o['met'] else 'not met'} | {per} |"
        )
    widths = [
        r["demo"]["window"]["high"] - r["demo"]["window"]["low"] for r in rows if r["demo"]["window"]["low"] is not None
    ]
    worst = sorted({r["demo"]["worst_source"] for r in rows})
    aucs = [r["demo"]["roc_auc"] for r in rows]
    lines += [
        "",
        (
            f"Reading: ROC AUC is {min(aucs):.3f}–{max(aucs):.3f} at every seed, so the geometry carries over from "
            "the synthetic pictures; whether the target holds is decided by where the threshold falls in a band "
            + (f"{min(widths):.3f}–{max(widths):.3f} wide, " if widths else "")
            + "set by the real sources' different offsets (the worst source: "
            + ", ".join(worst)
            + "). A threshold fitted on ~70 synthetic validation pictures moves with their noise; the balanced "
            "training's own boundary (argmax) is the steadier choice."
        ),
        "",
        (
            f"Machine: {payload['machine']['cpu_count']} cores; demo commands took "
            f"{min(r['demo_seconds'] for r in rows):.0f}–{max(r['demo_seconds'] for r in rows):.0f} s per seed."
        ),
    ]
    return "\n".join(lines)


def parse_seeds(text: str) -> list[int]:
    """``0-6`` or ``0,3,5``."""
    if re.fullmatch(r"\d+-\d+", text):
        lo, hi = map(int, text.split("-"))
        return list(range(lo, hi + 1))
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: give a range such as 0-6 or a list such as 0,3") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=parse_seeds, default="0-6", help="generator seeds (default 0-6)")
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL, help="real photo folder (default: shared)")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples per evaluation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("posture").setLevel(logging.WARNING)
    if not (args.real / "manifest.csv").is_file():
        log.info("skipped: no real photos (manifest.csv) at %s", args.real)
        return 0
    steps = demo_steps((ROOT / "README.md").read_text())
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix=f"posture-demo-seed{seed}-") as tmp:
            rows.append(one_seed(steps, seed, Path(tmp), args.real, args.bootstrap))
        d = rows[-1]["demo"]
        log.info(
            "seed %d: balanced accuracy %.2f, worst %s %.2f, target %s",
            seed,
            d["balanced_accuracy"],
            d["worst_source"],
            d["worst_balanced_accuracy"],
            "met" if d["met"] else "not met",
        )
    calibrate = next((s for s in steps if s[0] == "posture.calibrate"), [])
    payload = {
        "real": shown(args.real),
        "demo_steps": [shlex.join(s) for s in steps],
        "demo_calibrate": "python -m " + shlex.join(calibrate),
        "seeds": rows,
        "machine": machine(),
    }
    paths = write_results("demo_seeds", payload, to_markdown(payload))
    log.info("wrote %s", ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
