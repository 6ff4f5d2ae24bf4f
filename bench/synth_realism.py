"""How close are the synthetic pictures to photographs, as a pose model reads them?

The demo model is trained on ``posture.synth`` pictures alone; it can only carry over to real photos
if BlazePose reads the synthetic people as it reads people, and if the geometry it measures there
follows the rendered craniovertebral angle the way it follows posture in photographs. This bench
measures exactly that, with the product's own landmark stage and geometry:

* BlazePose detection (and assessment) rate per view;
* the correlation of each geometry feature with the rendered CVA, per view;
* each feature's distribution per class, synthetic vs ``../shared/data/real``, as a plot
  (``bench/results/synth_realism_features.png``) and as per-class medians in the table.

    python -m bench.synth_realism                 # 150 pictures per view (side, oblique, front), seed 7
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import RESULTS, machine, write_results
from posture.data.labels import CLASS_NAMES
from posture.io.formats import MANIFEST_NAME

log = logging.getLogger("bench.synth_realism")
DEFAULT_REAL = Path(__file__).resolve().parent.parent / ".." / "shared" / "data" / "real"
PLOT_NAME = "synth_realism_features.png"
VIEWS = ("side", "oblique", "front")
#: What issue 15 asks: BlazePose finds a person in this share of every view's pictures, and on side
#: views the measured ear-shoulder angle follows the rendered CVA at least this well.
TARGET_FOUND, TARGET_SIDE_R = 0.95, 0.7


def geometry_table(root: Path, frame: pd.DataFrame, cache: Path) -> pd.DataFrame:
    """Every geometry feature of every photo (NaN when it cannot be assessed), plus ``found``."""
    from posture.models.features import FeatureCache, frame_paths
    from posture.pose.geometry import FEATURES, posture_features
    from posture.pose.landmarks import detect_landmarks

    paths, shas = frame_paths(root, frame)
    marks = detect_landmarks(paths, shas, FeatureCache(cache), progress=False)
    names = list(FEATURES)
    rows = []
    for lm, shape in zip(marks.landmarks, marks.shapes, strict=True):
        values, _ = posture_features(lm, names, shape)
        rows.append(
            {
                "found": lm is not None,
                "assessed": values is not None,
                **dict(zip(names, values if values is not None else [np.nan] * len(names), strict=True)),
            }
        )
    return pd.concat([frame.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def synthetic(n: int, seed: int, work: Path) -> pd.DataFrame:
    from posture.synth.drop import SynthConfig, generate

    frames = []
    for view in VIEWS:
        out = work / f"synth_{view}"
        labels = generate(SynthConfig(out=out, n=n, seed=seed, view=view, overwrite=True))
        labels = labels.rename(columns={"filename": "path"})
        labels["root"] = str(out)
        frames.append(labels)
    return pd.concat(frames, ignore_index=True)


def by_subject_interval(
    part: pd.DataFrame, statistic: Callable[[pd.DataFrame], float], n_boot: int = 1000, seed: int = 0
) -> list[float] | None:
    """95 % bootstrap interval of ``statistic`` resampling synthetic *people*, not pictures.

    The pictures of one generated person share their build, clothes and room, so they are not
    independent: a bar read off 300 pictures of 45 people can be missed or met by chance, and the
    interval says by how much. ``None`` with fewer than two people.
    """
    groups = [frame.index.to_numpy() for _, frame in part.groupby("subject")]
    if len(groups) < 2:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        rows = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        value = statistic(part.loc[rows])
        if np.isfinite(value):
            values.append(value)
    return [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)]


def _r_with_cva(frame: pd.DataFrame, feature: str) -> float:
    """Pearson r of ``feature`` with the rendered CVA over the assessed pictures (NaN when undefined)."""
    ok = frame[frame["assessed"]]
    if len(ok) < 4 or ok[feature].std() == 0 or ok["cva_deg"].std() == 0:
        return float("nan")
    return float(np.corrcoef(ok[feature], ok["cva_deg"])[0, 1])


def summarise(synth: pd.DataFrame, real: pd.DataFrame | None) -> dict[str, Any]:
    from posture.pose.geometry import FEATURES

    out: dict[str, Any] = {"views": {}, "medians": {}}
    for view, part in synth.groupby("view"):
        ok = part[part["assessed"]]
        out["views"][str(view)] = {
            "pictures": int(len(part)),
            "person_found": round(float(part["found"].mean()), 4),
            "person_found_interval": by_subject_interval(part, lambda f: float(f["found"].mean())),
            "assessed": round(float(part["assessed"].mean()), 4),
            "ear_shoulder_r_interval": by_subject_interval(part, lambda f: _r_with_cva(f, "ear_shoulder_angle")),
            "r_with_cva": {f: (round(_r_with_cva(part, f), 3) if len(ok) > 3 else None) for f in FEATURES},
        }
    for f in FEATURES:
        row = {f"synth {lbl}": round(float(synth.loc[synth["label"] == lbl, f].median()), 3) for lbl in CLASS_NAMES}
        if real is not None:
            row.update(
                {f"real {lbl}": round(float(real.loc[real["label"] == lbl, f].median()), 3) for lbl in CLASS_NAMES}
            )
        out["medians"][f] = row
    from posture.pose.geometry import DEFAULT_FEATURES

    groups = [synth.assign(group="synth " + synth["view"].astype(str))]
    if real is not None:
        groups.append(real.assign(group="real " + real["source"].astype(str)))
    both = pd.concat(groups, ignore_index=True)
    out["default_by_group"] = {
        f"{g} {lbl}": {f: round(float(part[f].median()), 3) for f in DEFAULT_FEATURES}
        for (g, lbl), part in both.groupby(["group", "label"])
    }
    if real is not None:
        out["real"] = {
            "photos": int(len(real)),
            "person_found": round(float(real["found"].mean()), 4),
            "assessed": round(float(real["assessed"].mean()), 4),
        }
    return out


def plot(synth: pd.DataFrame, real: pd.DataFrame | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from posture.pose.geometry import FEATURES

    names = list(FEATURES)
    cols = 4
    fig, axes = plt.subplots((len(names) + cols - 1) // cols, cols, figsize=(4 * cols, 2.6 * ((len(names) + 3) // 4)))
    for ax, name in zip(axes.flat, names, strict=False):
        groups = [("synth", synth, "-"), ("real", real, "--")] if real is not None else [("synth", synth, "-")]
        for kind, frame, style in groups:
            for label, colour in (("forward_head", "tab:red"), ("normal", "tab:blue")):
                values = frame.loc[frame["label"] == label, name].dropna()
                if len(values) > 1:
                    ax.hist(
                        values,
                        bins=25,
                        histtype="step",
                        density=True,
                        linestyle=style,
                        color=colour,
                        label=f"{kind} {label}",
                    )
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle("geometry per class: synthetic (solid) vs real photos (dashed)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _interval(values: list[float] | None, digits: int = 2) -> str:
    return "" if not values else f" [{values[0]:.{digits}f}, {values[1]:.{digits}f}]"


def bars_sentence(views: dict[str, dict[str, Any]]) -> str:
    """Issue 15's two bars, met or not, with the by-person interval that says whether it is close."""
    worst_view = min(views, key=lambda v: views[v]["person_found"])
    worst = views[worst_view]
    side = views.get("side", {})
    r = side.get("r_with_cva", {}).get("ear_shoulder_angle")

    def inside(interval: list[float] | None, bar: float) -> str:
        return (
            "; the bar lies inside it, so the verdict is within sampling noise"
            if interval and (interval[0] <= bar <= interval[1])
            else ""
        )

    found_ci = worst.get("person_found_interval")
    r_ci = side.get("ear_shoulder_r_interval")
    return (
        f"**Bars (issue 15):** person found in ≥ {TARGET_FOUND:.0%} of every view: "
        f"{'met' if worst['person_found'] >= TARGET_FOUND else 'not met'} (lowest {worst['person_found']:.1%}, "
        f"{worst_view}{_interval(found_ci, 3)}{inside(found_ci, TARGET_FOUND)}); side-view ear–shoulder angle "
        "(shoulders' midpoint to ears' midpoint) "
        f"vs rendered CVA r ≥ {TARGET_SIDE_R}: {'met' if r is not None and r >= TARGET_SIDE_R else 'not met'} "
        f"(r = {r if r is not None else 'n/a'}{_interval(r_ci)}{inside(r_ci, TARGET_SIDE_R)}). "
        "Intervals: 95 % bootstraps over the generated people."
    )


def to_markdown(p: dict[str, Any]) -> str:
    lines = [
        "# Synthetic pictures as BlazePose reads them, next to real photos",
        "",
        f"`python -m bench.synth_realism`: {p['n']} pictures per view (seed {p['seed']}); the product's "
        "landmark stage and geometry. Plot: `bench/results/" + PLOT_NAME + "`.",
        "",
        "| view | person found [95% by person] | assessed |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {v} | {s['person_found']:.2f}{_interval(s.get('person_found_interval'))} | {s['assessed']:.2f} |"
        for v, s in p["summary"]["views"].items()
    ]
    if "real" in p["summary"]:
        r = p["summary"]["real"]
        lines.append(f"| real photos ({r['photos']}) | {r['person_found']:.2f} | {r['assessed']:.2f} |")
    views = list(p["summary"]["views"])
    lines += [
        "",
        "Correlation with the rendered CVA (assessed pictures) and per-class medians:",
        "",
        "| feature | " + " | ".join(f"r ({v})" for v in views) + " | synth fh | synth normal | real fh | real normal |",
        "|---|" + "---:|" * (len(views) + 4),
    ]
    for f, med in p["summary"]["medians"].items():
        rs = [p["summary"]["views"][v]["r_with_cva"][f] for v in views]
        lines.append(
            f"| {f} | "
            + " | ".join("n/a" if r is None else f"{r:.2f}" for r in rs)
            + " | "
            + " | ".join(
                str(med.get(k, "n/a"))
                for k in ("synth forward_head", "synth normal", "real forward_head", "real normal")
            )
            + " |"
        )
    lines += ["", bars_sentence(p["summary"]["views"])]
    default = p["summary"].get("default_by_group", {})
    if default:
        names = list(next(iter(default.values())))
        lines += [
            "",
            "The default features' medians per synthetic view and per real source (what a model trained on "
            "the synthetic pictures must carry over):",
            "",
            "| group, class | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        lines += [f"| {g} | " + " | ".join(f"{v[n]:.2f}" for n in names) + " |" for g, v in default.items()]
    lines += ["", f"Machine: {p['machine']['cpu_count']} cores."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=150, help="pictures per view (default %(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="synth seed (default %(default)s)")
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL, help="real photo folder (default: shared)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("posture").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="posture-synth-realism-") as tmp:
        work = Path(tmp)
        labels = synthetic(args.n, args.seed, work)
        parts = [geometry_table(Path(str(root)), part, work / "cache") for root, part in labels.groupby("root")]
        synth = pd.concat(parts, ignore_index=True)
        real = None
        if (args.real / MANIFEST_NAME).is_file():
            real = geometry_table(args.real, pd.read_csv(args.real / MANIFEST_NAME), work / "cache")
    summary = summarise(synth, real)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(synth, real, RESULTS / PLOT_NAME)
    payload = {"n": args.n, "seed": args.seed, "summary": summary, "machine": machine()}
    paths = write_results("synth_realism", payload, to_markdown(payload))
    log.info("wrote %s and %s", ", ".join(map(str, paths)), RESULTS / PLOT_NAME)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
