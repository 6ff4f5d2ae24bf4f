"""bench/serve.py on a pose-based run (the default model): it times BlazePose too, without a cache.

A regression test: the serving benchmark fed a pose run to a CNN-only code path and stopped with
"pose reads no pixels" once the default model became posture geometry.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _pose_helpers import needs_pose, real_fold
from _serving_helpers import REAL_DATA

needs_real = pytest.mark.real_data


@needs_pose
@needs_real
@pytest.mark.slow
def test_serving_bench_times_a_pose_run_with_blazepose_in_the_loop(tmp_path, one_torch_thread) -> None:
    from bench.serve import ServeBenchConfig, bench_in_process, in_process_rows, prepare_run
    from posture.training.finetune import FinetuneConfig, run_finetune

    manifest = pd.read_csv(REAL_DATA / "manifest.csv")
    split = np.where(np.arange(len(manifest)) % 4 == 0, "val", "train")
    data = real_fold(tmp_path / "fold", REAL_DATA, split)
    run = tmp_path / "run"
    run_finetune(FinetuneConfig(data=data, out=run, epochs=2, aug_views=0, progress=False, workers=2))
    cfg = ServeBenchConfig(run=run, repeats=2, batch_size=4)
    served, _ = prepare_run(cfg, tmp_path / "work")  # a copy with model.onnx beside it
    images = [REAL_DATA / p for p in manifest["path"][:6]]

    result = bench_in_process(cfg, served, images, threads=1)

    blazepose = result["bare_blazepose"]
    assert blazepose["n"] == 2 and blazepose["p50_ms"] > 0
    # The plumbing ratio is taken over BlazePose + the head, not the microsecond head alone.
    e2e = result["predictor_e2e"]["onnx"]["p50_ms"]
    bare = blazepose["p50_ms"] + result["forward_batch1"]["onnx"]["p50_ms"]
    assert result["ratios"]["predictor_e2e_over_bare_p50"] == pytest.approx(e2e / bare)
    rows = in_process_rows("1", result, batch_size=4)
    assert any("bare BlazePose" in row for row in rows)
