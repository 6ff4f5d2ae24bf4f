"""bench/memory.py's mechanics: what it measures and how it reports, on small inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bench.memory import MAX_ABOVE_IDLE_MB, markdown, sampled_peak, tree_rss_mb, upscaled, variants


def test_the_sampler_sees_a_child_process_grow_and_nothing_once_it_is_gone() -> None:
    grow = "import sys, time; sys.stdin.readline(); block = b'x' * (300 * 2**20); time.sleep(0.5)"
    child = subprocess.Popen([sys.executable, "-c", grow], stdin=subprocess.PIPE, text=True)
    assert child.stdin is not None
    idle = tree_rss_mb(child.pid)
    with sampled_peak(child.pid) as peak:
        child.stdin.write("go\n")
        child.stdin.flush()
        child.wait()
    assert peak["peak_mb"] - idle > 250 and tree_rss_mb(child.pid) == 0.0


def test_pictures_are_the_size_asked_for_and_never_share_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sources = []
    for i in range(3):
        path = tmp_path / f"s{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
        sources.append(path)
    (big,) = upscaled(sources, tmp_path / "big", megapixels=2.0, count=1)
    assert abs(Image.open(big).width * Image.open(big).height - 2e6) < 2e4
    small = variants(sources, tmp_path / "small", count=12)
    pixels = {np.asarray(Image.open(p)).tobytes() for p in small}
    assert len(small) == 12 and len(pixels) == 12


def test_the_report_says_which_bars_were_met() -> None:
    def peak(idle: float, big: float, key: str) -> dict:
        return {"measure": key, "idle": {key: idle}, "big": {key: big}, "above_idle_mb": big - idle}

    result = {
        "machine": {"cpu_count": 2, "platform": "linux", "load_average_at_start": (1.0, 1.0, 1.0)},
        "run": "a run",
        "pictures": {},
        "app": {
            "idle_mb": 1500.0,
            "one_batch": {"peak_mb": 1700.0, "above_idle_mb": 200.0},
            "two_batches_at_once": {"peak_mb": 1500.0 + MAX_ABOVE_IDLE_MB + 1, "above_idle_mb": MAX_ABOVE_IDLE_MB + 1},
        },
        "predict": {"workers=1": peak(1000.0, 1100.0, "process_peak_mb")},
        "throughput": {
            "photos": 10,
            "rounds": [
                {
                    "1": {
                        "photos_per_s": 20.0,
                        "first_answer_s": 3.0,
                        "wall_s": 9.0,
                        "cpu_ms_per_photo": 50.0,
                        "cores_busy": 1.0,
                        "other_programs_cores": 0.1,
                    }
                }
            ],
            "speedup": 1.9,
            "speedup_per_round": [1.9],
            "identical_answers": True,
        },
    }
    text = markdown(result)
    assert text.count("**met**") == 3 and text.count("**not met**") == 1
    assert "**1.90×**" in text and "identical to one process's: **yes**" in text
