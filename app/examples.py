"""Example photos for the demo page, drawn by the synthetic generator at start-up.

Why generated and not shipped: the project may not redistribute real photos, and images do not
belong in git. A handful of seeded synthetic pictures (both classes, side and front views) is
enough to show a visitor what to upload; they live in the app's private temp folder and vanish
with it.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def make_examples(out_dir: Path, n: int = 4, seed: int = 7) -> list[tuple[str, str]]:
    """Render ``n`` synthetic photos into ``out_dir``; returns ``(path, caption)`` pairs.

    Returns an empty list (and logs why) when the generator is unavailable or fails: examples
    are a convenience and must never stop the demo from starting.
    """
    if n <= 0:
        return []
    try:
        from posture.synth import SynthConfig, generate

        frame = generate(SynthConfig(out=Path(out_dir), n=n, seed=seed, workers=1, size=(256, 384), overwrite=True))
    except Exception as exc:  # noqa: BLE001 - any generator problem only costs the examples
        log.warning("no example photos (%s: %s)", type(exc).__name__, exc)
        return []
    out = []
    for row in frame.itertuples(index=False):
        caption = f"synthetic {row.view} view, CVA {row.cva_deg:.0f}° ({row.label})"
        out.append((str(Path(out_dir) / str(row.filename)), caption))
    return out
