"""The web demo's batch tab against a batch of huge photos (issue 27, item 8).

The probe: 16 uploads of a 49-megapixel plain JPEG (575 KB each) in one batch took the app from
1.5 to 4 GB, two such batches at once to 6.6 GB. Uploads are now decoded at the size the model
needs and reduced to the network's inputs one at a time, so a batch holds one photo's pixels.
"""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from _hostile_helpers import plain_jpeg
from _serving_helpers import make_run
from app.config import AppConfig
from app.demo import Handlers
from posture.inference.predict import Predictor
from posture.io.images import MODEL_MAX_SIDE, load_rgb_array


@pytest.fixture(scope="module")
def handlers(tmp_path_factory: pytest.TempPathFactory) -> Handlers:
    run = make_run(tmp_path_factory.mktemp("batch") / "run")
    return Handlers(Predictor.from_run(run, backend="torch"), AppConfig(), tmp_path_factory.mktemp("work"))


@pytest.mark.slow
def test_a_batch_of_sixteen_49_megapixel_uploads_holds_one_photo_at_a_time(handlers: Handlers, tmp_path: Path) -> None:
    first = plain_jpeg(tmp_path / "up" / "p00.jpg", megapixels=49)
    uploads = [str(first)] + [str(shutil.copyfile(first, tmp_path / "up" / f"p{i:02d}.jpg")) for i in range(1, 16)]
    tracemalloc.start()  # numpy's arrays (every decoded photo becomes one) are traced
    try:
        rows, _, summary = handlers.classify_many(uploads)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary == "16 of 16 photos classified." and all(row[1] for row in rows)
    # one 49-megapixel photo decoded whole is 147 MB; sixteen were 2.3 GB
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB traced at the peak"


def test_a_batch_answers_as_the_photo_tab_does_and_at_the_models_size(handlers: Handlers, tmp_path: Path) -> None:
    big = plain_jpeg(tmp_path / "big.jpg", megapixels=6, seed=4)
    rows, _, _ = handlers.classify_many([str(big)])
    value, shown, _ = handlers.classify(str(big), explain=False)
    assert rows[0][1] == value["label"] and max(shown.shape[:2]) == MODEL_MAX_SIDE
    single = handlers.predictor.predict(load_rgb_array(big, max_side=MODEL_MAX_SIDE))
    assert rows[0][2] == round(single.confidence, 4)
    np.testing.assert_allclose(rows[0][3:5], [round(single.probabilities[c], 4) for c in ("forward_head", "normal")])
