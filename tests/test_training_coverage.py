"""A pose run knows what it was trained on: geometry outside that range, or a view it never saw, is
"cannot assess", not a head's extrapolation. And the training options the procedure chooses among:
every person weighing the same, a second (synthetic) training source, 3-D view augmentation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from _pose_helpers import FakeDetector, frontal_landmarks, make_pose_dataset
from posture.cli import UserError
from posture.inference.predict import Predictor
from posture.pose.geometry import rotate_view
from posture.training.finetune import FinetuneConfig, run_finetune, training_weights


class Showing(FakeDetector):
    """A stand-in BlazePose that sees the same given person in every photo."""

    def __init__(self, landmarks: np.ndarray) -> None:
        super().__init__()
        self.landmarks = landmarks

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        return self.landmarks


@pytest.fixture
def frontal_run(tmp_path, fake_blazepose, one_torch_thread):
    data = make_pose_dataset(tmp_path / "data")
    out = tmp_path / "run"
    run_finetune(FinetuneConfig(data=str(data), out=str(out), workers=0, progress=False, device="cpu"))
    return data, out


def test_a_pose_run_records_the_range_and_views_it_was_trained_on(frontal_run) -> None:
    _, out = frontal_run
    coverage = json.loads((out / "config.json").read_text())["pose"]["coverage"]
    assert coverage["views"] == {"front": 20}  # the stand-in shows every training photo from the front
    for low, high in coverage["range"].values():
        assert low < high


def test_a_view_the_run_never_saw_cannot_be_assessed(frontal_run) -> None:
    _, out = frontal_run
    photo = np.full((300, 400, 3), 128, np.uint8)
    profile = rotate_view(frontal_landmarks(400, 300, 0.3), 80.0)
    answer = Predictor.from_run(out, detector=Showing(profile)).predict(photo)
    assert answer.label is None and answer.view == "side"
    assert "not trained on side views" in answer.reason


def test_geometry_beyond_the_training_range_cannot_be_assessed_and_says_which(frontal_run) -> None:
    _, out = frontal_run
    photo = np.full((300, 400, 3), 128, np.uint8)
    inside = Predictor.from_run(out, detector=Showing(frontal_landmarks(400, 300, 0.3))).predict(photo)
    assert inside.label is not None and inside.view == "front"
    far = frontal_landmarks(400, 300, 0.3)
    far[:, 5] *= 4.0  # a head four times further above the shoulders than any training photo
    answer = Predictor.from_run(out, detector=Showing(far)).predict(photo)
    assert answer.label is None and "outside what the model was trained on" in answer.reason
    assert "nose" in answer.reason and "trained on" in answer.reason


def test_an_upright_reference_outside_the_range_still_calibrates_into_it(frontal_run) -> None:
    _, out = frontal_run
    photo = np.full((300, 400, 3), 128, np.uint8)
    shifted = frontal_landmarks(400, 300, 0.0)
    shifted[:, 5] *= 4.0  # this camera makes everyone look taller: the upright photo too
    predictor = Predictor.from_run(out, detector=Showing(shifted))
    calibrated = predictor.with_reference([photo])
    assert predictor.predict(photo).label is None
    assert calibrated.predict(photo).label == "normal"


def test_every_person_weighs_the_same_with_balance_person() -> None:
    train = pd.DataFrame({"subject": ["a"] * 6 + ["b", "c"], "source": ["s1"] * 6 + ["s2", "s2"]})
    targets = torch.tensor([0, 0, 0, 1, 1, 1, 0, 1])
    cfg = FinetuneConfig.__new__(FinetuneConfig)
    cfg.balance, cfg.session_column, cfg.extra_weight = "person", "source", 0.5
    w = training_weights(train, targets, cfg, 2)
    assert w is not None
    keys = list(zip(train["subject"], targets.tolist(), strict=True))
    per_cell = {k: sum(float(w[i]) for i, kk in enumerate(keys) if kk == k) for k in set(keys)}
    assert len(set(round(v, 6) for v in per_cell.values())) == 1  # a's 3 photos of a class weigh what b's one does


def test_extra_data_joins_training_with_its_share_of_the_weight(tmp_path, fake_blazepose, one_torch_thread) -> None:
    data = make_pose_dataset(tmp_path / "data")
    extra = make_pose_dataset(tmp_path / "extra", per_class={"train": 6, "val": 0, "test": 0})
    out = tmp_path / "run"
    metrics = run_finetune(
        FinetuneConfig(
            data=str(data),
            out=str(out),
            workers=0,
            progress=False,
            device="cpu",
            extra_data=str(extra),
            extra_weight=0.25,
        )
    )
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["extra_data"] == str(extra) and config["pose"]["coverage"]["views"]["front"] == 20 + 12
    assert metrics["val"]["n"] == 8  # validation and test stay the dataset's own
    train = pd.concat(
        [
            pd.read_csv(data / "manifest.csv").query("split == 'train'").assign(extra=False),
            pd.read_csv(extra / "manifest.csv").assign(extra=True),
        ],
        ignore_index=True,
    )
    targets = torch.tensor([0 if lbl == "forward_head" else 1 for lbl in train["label"]])
    cfg = FinetuneConfig(data=str(data), out=str(out), extra_data=str(extra), extra_weight=0.25)
    w = training_weights(train, targets, cfg, 2)
    assert w is not None
    extra_rows = train["extra"].to_numpy()
    assert float(w[extra_rows].sum()) == pytest.approx(0.25 * float(w[~extra_rows].sum()), rel=1e-5)
    with pytest.raises(UserError, match="--extra-data"):
        FinetuneConfig(data=str(data), out=str(out), extra_data=str(extra), model="efficientnet_lite0", unfreeze="1")


def test_3d_view_augmentation_is_an_option_and_refuses_impossible_turns(
    tmp_path, fake_blazepose, one_torch_thread
) -> None:
    data = make_pose_dataset(tmp_path / "data")
    out = tmp_path / "run"
    run_finetune(FinetuneConfig(data=str(data), out=str(out), workers=0, progress=False, device="cpu", aug_view3d=30.0))
    assert json.loads((out / "config.json").read_text())["training"]["aug_view3d"] == 30.0
    with pytest.raises(UserError, match="aug-view3d"):
        FinetuneConfig(data=str(data), out=str(out), aug_view3d=120.0)
