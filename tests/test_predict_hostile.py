"""``python -m posture.predict`` against what an attacker or a careless labeling team hands it (issue 27,
items 6, 9, 12 and 14): unreadable upright photos, huge photos, many photos, two people in one photo,
files that are not images. Every hostile input is built here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _hostile_helpers import (
    ADDRESS,
    one_error_line,
    peak_rss_mb,
    plain_jpeg,
    png_bomb,
    train_fake_pose_run,
    train_real_pose_run,
)
from _pose_helpers import needs_pose, pose_photo
from _serving_helpers import make_run, write_photo
from posture.cli import run_main
from posture.inference.predict import Predictor, main
from posture.io.images import MODEL_MAX_SIDE, load_rgb_array, open_rgb

REPO = Path(__file__).resolve().parents[1]


def predict_command(run: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "posture.predict", "--run", str(run), *args]


@pytest.fixture(scope="module")
def pose_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_fake_pose_run(tmp_path_factory.mktemp("hostile"))[1]


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("cnn") / "run")


# ------------------------------------------------------------------ item 6: --upright with a bad photo


def _unreadable(kind: str, folder: Path) -> Path:
    path = folder / {"html": "me.jpg", "bomb": "me.png"}.get(kind, f"me-{kind}.jpg")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "html":
        path.write_text("<!DOCTYPE html><html><body>Sign in to see this photo</body></html>")
    elif kind == "bomb":
        path.write_bytes(png_bomb())
    elif kind == "fifo":
        os.mkfifo(path)  # nobody ever writes to it: a reader that opens it waits forever
    return path  # "missing": never created


@pytest.mark.parametrize("kind", ["empty", "html", "bomb", "fifo", "missing"])
def test_an_unreadable_upright_photo_is_one_error_line_and_exit_2(
    kind: str, pose_run: Path, tmp_path: Path, capsys, fake_blazepose
) -> None:
    upright = _unreadable(kind, tmp_path)
    photo = tmp_path / "photo.png"
    Image.fromarray(pose_photo("normal", 3)).save(photo)
    assert run_main(main, ["--run", str(pose_run), "--upright", str(upright), str(photo)]) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert str(upright) in line and "cannot be read" in line and not ADDRESS.search(line), line
    assert captured.out == ""


# ------------------------------------------------------------------ item 14: messages


def test_a_file_that_is_not_an_image_is_named_not_shown_as_a_memory_address(cnn_run: Path, tmp_path: Path) -> None:
    page = tmp_path / "photo.jpg"
    page.write_text("<!DOCTYPE html><html><body>404</body></html>")
    with pytest.raises(Exception) as caught:
        open_rgb(page.read_bytes())
    assert "object at" not in str(caught.value) and "<!DOCTYPE" in str(caught.value)
    done = subprocess.run(predict_command(cnn_run, "--json", str(page)), cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 1
    record = json.loads(done.stdout)
    assert "photo.jpg" in record["error"] and "not_an_image" in record["error"], record
    assert not ADDRESS.search(done.stdout + done.stderr), done.stderr


@pytest.mark.slow
def test_a_photo_between_pillows_warning_and_its_limit_prints_no_raw_warning(cnn_run: Path, tmp_path: Path) -> None:
    """Pillow warns between ~89 and ~179 megapixels; ours (120) decides, and says nothing raw."""
    big = plain_jpeg(tmp_path / "big.jpg", megapixels=100)
    done = subprocess.run(predict_command(cnn_run, str(big)), cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "big.jpg\t" in done.stdout, done.stderr


# ------------------------------------------------------------------ item 9: memory and workers


def test_a_huge_photo_is_decoded_at_the_size_the_model_needs_and_a_normal_one_as_before(
    cnn_run: Path, tmp_path: Path
) -> None:
    big = plain_jpeg(tmp_path / "big.jpg", megapixels=20)
    predictor = Predictor.from_run(cnn_run, backend="torch")
    analysed = predictor.analyse(big)
    assert max(analysed.rgb.shape[:2]) == MODEL_MAX_SIDE
    assert analysed.rgb.shape[1] / analysed.rgb.shape[0] == pytest.approx(4 / 3, rel=0.01)
    for size in [(96, 72), (MODEL_MAX_SIDE, 700)]:  # up to the model's size: the very same pixels
        path = write_photo(tmp_path / f"p{size[0]}.png", seed=2, size=size)
        np.testing.assert_array_equal(predictor.analyse(path).rgb, load_rgb_array(path))
        assert predictor.predict(path) == predictor.predict(load_rgb_array(path))


@pytest.mark.slow
def test_sixteen_100_megapixel_photos_cost_memory_by_the_batch_not_by_the_photos(cnn_run: Path, tmp_path: Path) -> None:
    """The probe: 16 photos of 100 megapixels peaked at 6.3 GB; the bar is 1 GB above the same
    command's peak on 16 small photos."""
    big = plain_jpeg(tmp_path / "big" / "p00.jpg", megapixels=100)
    for i in range(1, 16):
        shutil.copyfile(big, tmp_path / "big" / f"p{i:02d}.jpg")
    for i in range(16):
        write_photo(tmp_path / "small" / f"p{i:02d}.png", seed=i)
    small_peak, _ = peak_rss_mb(predict_command(cnn_run, "--workers", "1", str(tmp_path / "small")), REPO)
    big_peak, done = peak_rss_mb(predict_command(cnn_run, "--workers", "1", str(tmp_path / "big")), REPO)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 16, done.stderr
    assert big_peak - small_peak < 1024, (small_peak, big_peak)


def _mixed_folder(folder: Path, n: int = 20) -> list[str]:
    """Photos with a broken file and an empty one among them (errors must keep their place too)."""
    for i in range(n):
        write_photo(folder / f"p{i:02d}.png", seed=i, size=(60 + 7 * i, 80))
    (folder / "p05b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    (folder / "p12b.jpg").write_bytes(b"")
    return [str(folder), str(folder / "missing.png")]


@pytest.mark.slow
def test_workers_give_the_same_answers_in_input_order_as_one_process(cnn_run: Path, tmp_path: Path) -> None:
    inputs = _mixed_folder(tmp_path / "photos")
    runs = {
        n: subprocess.run(predict_command(cnn_run, "--json", "--workers", n, *inputs), cwd=REPO, capture_output=True)
        for n in ("1", "2", "3")
    }
    assert {done.returncode for done in runs.values()} == {1}  # two unreadable files and a missing one
    assert runs["2"].stdout == runs["1"].stdout and runs["3"].stdout == runs["1"].stdout
    records = [json.loads(line) for line in runs["1"].stdout.splitlines()]
    assert [r["path"] for r in records] == sorted(r["path"] for r in records[:-1]) + [inputs[-1]]
    assert [bool(r.get("error")) for r in records].count(True) == 3


# ------------------------------------------------------------------ with the real BlazePose


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return train_real_pose_run(tmp_path_factory.mktemp("real"))


def _front_pictures(raw: Path) -> list[Path]:
    import pandas as pd

    labels = pd.read_csv(raw / "labels.csv")
    return [raw / f for f in labels[labels["view"] == "front"]["filename"]]


def two_people(left: Path, right: Path, out: Path) -> Path:
    """Two people side by side in one photo, as a camera pointed at two desks would show them."""
    a = Image.open(left).convert("RGB")
    b = Image.open(right).convert("RGB").resize(a.size)
    Image.fromarray(np.concatenate([np.asarray(a), np.asarray(b)], axis=1)).save(out, quality=92)
    return out


@needs_pose
@pytest.mark.slow
def test_a_photo_of_two_people_says_which_one_was_measured(real_run: tuple[Path, Path], tmp_path: Path) -> None:
    raw, run = real_run
    front = _front_pictures(raw)
    pair = two_people(front[0], front[1], tmp_path / "two.jpg")
    predictor = Predictor.from_run(run)
    answer = predictor.predict(pair)
    assert answer.others == 1
    note = answer.explanation if answer.assessed else answer.reason
    assert "2 people are in this photo" in note and "was measured" in note, note
    alone = predictor.predict(front[0])
    assert alone.others == 0 and "people" not in (alone.explanation or alone.reason or "")
    done = subprocess.run(predict_command(run, str(pair)), cwd=REPO, capture_output=True, text=True)
    assert "2 people are in this photo" in done.stdout, done.stderr
    done = subprocess.run(predict_command(run, "--json", str(pair)), cwd=REPO, capture_output=True, text=True)
    assert json.loads(done.stdout)["others"] == 1


@needs_pose
@pytest.mark.slow
def test_workers_after_an_upright_photo_built_a_graph_here_answer_as_one_process(
    real_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """MediaPipe's state does not survive a fork: once --upright ran BlazePose in the main process,
    workers must start fresh, and still answer exactly as one process does."""
    raw, run = real_run
    photos = sorted(raw.glob("*/*.jpg"))[:24]
    upright = sorted((raw / "normal").glob("*.jpg"))[0]
    out = {
        n: subprocess.run(
            predict_command(run, "--upright", str(upright), "--workers", n, *map(str, photos)),
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        for n in ("1", "2")
    }
    assert out["1"].returncode == 0 and out["2"].returncode == 0, out["2"].stderr
    assert out["2"].stdout == out["1"].stdout and len(out["1"].stdout.splitlines()) == len(photos)


def test_other_people_counts_faces_of_someone_else_of_a_meaningful_size() -> None:
    from posture.pose.detector import other_people

    landmarks = np.zeros((33, 7), np.float32)
    landmarks[:11, :2] = np.array([[300, 200], [290, 190], [310, 190], [280, 195], [320, 195]] * 2 + [[300, 215]])
    own_beside_the_ear = [240, 170, 290, 220, 0.9]  # a profile's detector box can frame the back of the head
    someone_else = [520, 180, 560, 220, 0.8]
    a_poster_far_behind = [60, 40, 68, 48, 0.7]
    faces = np.array([own_beside_the_ear, someone_else, a_poster_far_behind], np.float32)
    found = other_people(landmarks, faces)
    assert (found.count, found.measured_at) == (1, "left")
    assert "2 people" in (found.sentence() or "") and other_people(landmarks, faces[:1]).sentence() is None
