"""Where the defaults of ``posture.finetune`` come from, as data: the pick of
:mod:`posture.training.selection` on the real photos and its nested score. Kept apart from the selection code
because every run records it (``config.json`` ``defaults``) while the selection itself trains runs, so
``posture.finetune`` can read it without importing what imports ``posture.finetune``."""

from __future__ import annotations

from typing import Any

#: The procedure applied to all of ``../shared/data/real`` (``python -m bench.real_photos``,
#: bench/results/real_photos.md): where the defaults of ``posture.finetune`` come from, and the nested
#: score of the procedure (a test checks these against the committed results).
DEFAULTS_CHOSEN: dict[str, Any] = {
    "procedure": (
        "posture.training.selection: leave-one-source-out over the training sources, each candidate trained by "
        "posture.finetune and answered by the Predictor; score: the mean of the balanced accuracy averaged over "
        "sources and with every person weighing the same, a photo that cannot be assessed counted wrong; a more "
        "elaborate candidate must beat the simpler ones by more than 0.01"
    ),
    "data": "../shared/data/real: 492 photos, 7 sources, 63 people",
    "grid": "geometry",
    "pick": "head_2d_person",
    "nested": {"mean_over_sources": 0.841, "mean_over_people": 0.853, "worst_source": 0.786, "coverage": 0.980},
    "results": "bench/results/real_photos.md",
}
