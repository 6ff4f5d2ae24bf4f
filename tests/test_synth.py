"""The sample-data generator: a drop others can ingest, honest labels, and no shortcut for a model."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from _pose_helpers import needs_pose
from posture.cli import UserError, run_main
from posture.data.cva import craniovertebral_angle, label_from_cva
from posture.data.labels import CLASS_NAMES, FORWARD_HEAD
from posture.synth import COLUMNS, LABELS_NAME, SynthConfig, generate, plan, render_job
from posture.synth.cli import main as synth_main

SMALL = (64, 96)  # pixels per side: enough for the geometry, cheap on 2 cores


def _config(out: Path, **kw) -> SynthConfig:
    kw.setdefault("n", 40)
    kw.setdefault("size", SMALL)
    kw.setdefault("workers", 1)
    return SynthConfig(out=out, **kw)


@pytest.fixture(scope="module")
def drop(tmp_path_factory: pytest.TempPathFactory) -> tuple[SynthConfig, pd.DataFrame]:
    config = _config(tmp_path_factory.mktemp("synth") / "drop", n=60, seed=0)
    return config, generate(config)


def _read_csv(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / LABELS_NAME, dtype={"subject": str})


def test_drop_layout_and_csv_schema(drop) -> None:
    config, frame = drop
    on_disk = _read_csv(config.out)
    assert list(on_disk.columns) == list(COLUMNS)
    assert list(COLUMNS) == ["filename", "label", "cva_deg", "subject", "ear_x", "ear_y", "c7_x", "c7_y", "view"]
    assert len(on_disk) == config.n == len(frame)
    pd.testing.assert_frame_equal(on_disk, frame, check_dtype=False)
    assert on_disk["filename"].is_unique
    for row in on_disk.itertuples():
        assert row.filename.split("/")[0] == row.label  # ImageFolder layout: folder == label
        with Image.open(config.out / row.filename) as img:
            assert img.format == "JPEG"
            assert SMALL[0] <= min(img.size) and max(img.size) <= SMALL[1]
    written = sorted(p.relative_to(config.out).as_posix() for p in config.out.rglob("*.jpg"))
    assert written == sorted(on_disk["filename"])
    assert {p.name for p in config.out.iterdir()} == {LABELS_NAME, *CLASS_NAMES}


def test_labels_follow_threshold_with_exclusion_band(drop) -> None:
    config, frame = drop
    assert all(
        label_from_cva(c, config.threshold) == lab for c, lab in zip(frame["cva_deg"], frame["label"], strict=True)
    )
    assert (abs(frame["cva_deg"] - config.threshold) >= config.margin - 1e-3).all()
    assert frame["cva_deg"].between(config.cva_min, config.cva_max).all()
    assert 0.35 < (frame["label"] == FORWARD_HEAD).mean() < 0.65


def test_custom_threshold_and_no_margin() -> None:
    config = SynthConfig(out=Path("unused"), n=300, threshold=53.0, margin=0.0, seed=4)
    jobs = plan(config)
    cva = np.array([j.cva_deg for j in jobs])
    assert all(j.label == label_from_cva(j.cva_deg, 53.0) for j in jobs)
    assert (np.abs(cva - 53.0) < 2.0).any()  # no band: angles near the threshold do occur


def test_side_view_landmarks_reproduce_the_angle(drop) -> None:
    config, frame = drop
    side = frame[frame["view"] == "side"]
    assert len(side) >= 10
    for row in side.itertuples():
        measured = craniovertebral_angle(row.ear_x, row.ear_y, row.c7_x, row.c7_y)
        assert measured == pytest.approx(row.cva_deg, abs=1.0)
        with Image.open(config.out / row.filename) as img:
            w, h = img.size
        assert 0 <= row.ear_x < w and 0 <= row.ear_y < h and 0 <= row.c7_x < w and 0 <= row.c7_y < h
        assert row.ear_y < row.c7_y  # the ear is above C7


def test_subjects_have_several_pictures_of_both_classes(drop) -> None:
    _, frame = drop
    per_subject = frame.groupby("subject")["label"].agg(["size", "nunique"])
    assert len(per_subject) >= 4
    assert (per_subject["size"] >= 5).all()
    assert (per_subject["nunique"] == 2).all()


def test_views(drop, tmp_path: Path) -> None:
    _, frame = drop
    assert set(frame["view"]) == {"side", "oblique", "front"}
    for view in ("front", "oblique"):
        only = generate(_config(tmp_path / view, n=6, view=view))
        assert set(only["view"]) == {view}


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    one = _config(tmp_path / "one", n=10, seed=3, workers=1)
    two = _config(tmp_path / "two", n=10, seed=3, workers=2)
    other = _config(tmp_path / "other", n=10, seed=4, workers=1)
    for config in (one, two, other):
        generate(config)
    files = sorted(p.relative_to(one.out) for p in one.out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two.out) for p in two.out.rglob("*") if p.is_file())
    for rel in files:
        assert (one.out / rel).read_bytes() == (two.out / rel).read_bytes(), rel
    assert (one.out / LABELS_NAME).read_bytes() != (other.out / LABELS_NAME).read_bytes()


def test_classes_not_separable_by_global_pixel_statistics() -> None:
    """Appearance, light, scale and framing are drawn independently of the label: only posture tells."""
    config = _config(Path("unused"), n=120, seed=11)
    features, is_fwd, cva = [], [], []
    for job in plan(config):
        data, _, mask = render_job(config, job)
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64) / 255.0
        grey = rgb.mean(axis=-1)
        h, w = grey.shape
        features.append([*rgb.reshape(-1, 3).mean(axis=0), grey.mean(), grey.std(), w / h, w * h, mask.mean()])
        is_fwd.append(job.label == FORWARD_HEAD)
        cva.append(job.cva_deg)
    x, y = np.array(features), np.array(is_fwd)
    model = make_pipeline(StandardScaler(), LogisticRegression())
    auc = cross_val_score(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0), scoring="roc_auc")
    assert auc.mean() < 0.7, auc
    assert roc_auc_score(y, -np.array(cva)) == 1.0  # the geometry separates them perfectly


def test_refuses_non_empty_out_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "drop"
    generate(_config(out, n=12, seed=1))
    with pytest.raises(UserError, match="not empty"):
        generate(_config(out, n=6, seed=2))
    (out / "notes.txt").write_text("keep me")
    frame = generate(_config(out, n=6, seed=2, overwrite=True))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == sorted(frame["filename"])
    assert (out / "notes.txt").read_text() == "keep me"  # only files the generator made are replaced
    assert len(_read_csv(out)) == 6


def test_crash_leaves_no_csv_pointing_at_missing_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import posture.synth.drop as gen

    real_work = gen._work
    calls = []

    def flaky(args):
        calls.append(args)
        if len(calls) == 4:
            raise RuntimeError("power cut")
        return real_work(args)

    monkeypatch.setattr(gen, "_work", flaky)
    out = tmp_path / "drop"
    with pytest.raises(RuntimeError, match="power cut"):
        generate(_config(out, n=6))
    assert not (out / LABELS_NAME).exists()


def test_cli_writes_drop_and_reports_user_errors(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    argv = [str(out), "--n", "5", "--seed", "2", "--size", "64", "80", "--view", "side", "--workers", "1", "-q"]
    assert run_main(synth_main, argv) == 0
    assert len(_read_csv(out)) == 5
    assert "5 pictures" in capsys.readouterr().out
    assert run_main(synth_main, argv) == 2  # not empty now
    assert run_main(synth_main, [str(tmp_path / "x"), "--threshold", "80", "-q"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("error: ") for line in errors), errors
    with pytest.raises(SystemExit) as exc:
        synth_main(["--help"])
    assert exc.value.code == 0
    assert "craniovertebral" in capsys.readouterr().out


def test_labelled_keypoints_lie_where_the_picture_shows_them() -> None:
    """C7 on the back of the neck's outline, the tragus on the head, in every rendered picture."""
    config = _config(Path("unused"), n=24, seed=5, size=(160, 200), view="mixed")
    for job in plan(config):
        _, points, mask = render_job(config, job)
        h, w = mask.shape
        ex, ey = round(points["ear_x"]), round(points["ear_y"])
        assert 0 <= ex < w and 0 <= ey < h and mask[ey, ex], (job, points)
        if job.view == "side":
            cx, cy = round(points["c7_x"]), round(points["c7_y"])
            around = mask[max(cy - 3, 0) : cy + 4, max(cx - 3, 0) : cx + 4]
            assert around.any() and not around.all(), (job, points)  # figure on one side, background behind


@needs_pose
@pytest.mark.slow
def test_blazepose_finds_the_labelled_ear_on_side_views() -> None:
    """Measured, not assumed: BlazePose's ear landmark sits next to the labelled tragus (the ear's
    centre is a little behind its front edge), and it finds the person in nearly every picture."""
    from posture.pose.detector import PoseDetector  # MediaPipe loads only when this test runs

    config = _config(Path("unused"), n=24, seed=3, size=(320, 480), view="side")
    detector = PoseDetector()
    offsets, found = [], 0
    for job in plan(config):
        data, points, _ = render_job(config, job)
        landmarks = detector.detect(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
        if landmarks is None:
            continue
        found += 1
        xy = landmarks[:, :2]
        face = float(np.linalg.norm((xy[2] + xy[5]) / 2 - (xy[9] + xy[10]) / 2))
        label = np.array([points["ear_x"], points["ear_y"]])
        offsets.append(min(float(np.linalg.norm(xy[i] - label)) for i in (7, 8)) / face)
    assert found >= 0.85 * config.n
    assert np.median(offsets) < 0.7 and max(offsets) < 1.3, offsets
