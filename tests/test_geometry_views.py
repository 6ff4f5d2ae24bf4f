"""Geometry that does not move when the camera does: views, the body's own frame, 3-D view
augmentation, the frame's cues, centimetres, and landmarks that are guesses rather than a person."""

from __future__ import annotations

import numpy as np
import pytest

from _pose_helpers import frontal_landmarks
from posture.pose.geometry import (
    FEATURE_SETS,
    FEATURES,
    VIEWS,
    assess,
    augment_landmarks,
    check_feature_names,
    compute_features,
    metric_scales,
    phrase,
    rotate_view,
    view_of,
)
from posture.pose.geometry import LANDMARK_INDEX as I

BODY = list(FEATURE_SETS["body"])
CAMERA = ["world_head_drop", "world_nose_forward", "world_neck_tilt"]


def person(drop: float = 0.3) -> np.ndarray:
    """A frontal person whose 3-D head comes forward as it drops (hips seen, so the torso has an axis)."""
    lm = frontal_landmarks(400, 300, drop)
    lm[[I["left_hip"], I["right_hip"]], 5] = 0.0  # hips at the world origin's height, shoulders above them
    return lm


@pytest.mark.parametrize(("yaw", "pitch", "roll"), [(40.0, 0.0, 0.0), (0.0, 25.0, 0.0), (75.0, -15.0, 8.0)])
def test_a_rotated_skeleton_gives_the_same_body_frame_geometry(yaw: float, pitch: float, roll: float) -> None:
    lm = person()
    turned = rotate_view(lm, yaw, pitch, roll)
    np.testing.assert_allclose(compute_features(turned, BODY), compute_features(lm, BODY), atol=1e-3)
    # ...while the photo itself shows the person from elsewhere, and a camera higher or lower sees the
    # head elsewhere along its own axes
    assert not np.allclose(
        compute_features(turned, ["shoulders_over_face"]), compute_features(lm, ["shoulders_over_face"])
    )
    if pitch:
        assert not np.allclose(compute_features(turned, CAMERA), compute_features(lm, CAMERA), atol=1e-3)


def test_views_follow_the_turn_of_the_shoulders() -> None:
    lm = person()
    assert [view_of(rotate_view(lm, yaw)) for yaw in (0.0, 10.0, 40.0, 85.0)] == [
        "front",
        "front",
        "oblique",
        "side",
    ]
    assert set(VIEWS) == {"front", "oblique", "side"}


def test_3d_view_augmentation_is_seeded_moves_the_camera_and_keeps_the_body_frame() -> None:
    lm = person()
    a = augment_landmarks(lm, np.random.default_rng(5), view3d=30.0)
    b = augment_landmarks(lm, np.random.default_rng(5), view3d=30.0)
    np.testing.assert_array_equal(a, b)
    flat = augment_landmarks(lm, np.random.default_rng(5))
    assert not np.allclose(a[:, 4:7], flat[:, 4:7])  # the 3-D turn changes the world landmarks
    views = np.stack(
        [compute_features(augment_landmarks(lm, np.random.default_rng(s), 0.0, 30.0), BODY) for s in range(20)]
    )
    np.testing.assert_allclose(views, np.tile(compute_features(lm, BODY), (20, 1)), atol=1e-3)


def test_frame_features_read_the_framing_and_the_others_do_not() -> None:
    lm = frontal_landmarks(400, 300, drop=0.3)
    lm[I["nose"], 0] += 3.0  # turned a little, so "the way the face points" is not a tie
    framed = [n for n, f in FEATURES.items() if f.frame]
    others = [n for n, f in FEATURES.items() if not f.frame]
    assert {"face_size", "eyes_down_the_photo", "shoulders_above_bottom"} <= set(framed)
    moved = lm.copy()
    moved[:, :2] = moved[:, :2] * 0.5 + np.array([40.0, 10.0])  # a camera further away, another framing
    np.testing.assert_allclose(
        compute_features(lm, others, (300, 400)), compute_features(moved, others, (300, 400)), atol=1e-5
    )
    near, far = compute_features(lm, ["face_size"], (300, 400)), compute_features(moved, ["face_size"], (300, 400))
    assert near[0] == pytest.approx(2 * far[0])
    assert np.isnan(compute_features(lm, ["face_size"])).all()  # without the photo's size it cannot be read


def test_feature_sets_expand_in_place_and_unknown_names_say_what_is_known() -> None:
    assert check_feature_names(["head", "head_height"]) == ("world_head_drop", "world_nose_forward", "head_height")
    assert len(check_feature_names(["landmarks"])) == 66
    with pytest.raises(ValueError, match="frontal"):
        check_feature_names(["no_such_thing"])


def test_explanations_speak_in_centimetres_and_degrees() -> None:
    lm = person()
    scales = metric_scales(lm)
    value = compute_features(lm, ["world_head_drop"])[0]
    text = phrase("world_head_drop", value, scales)
    expected = value * scales["shoulder widths"] * 100
    assert text == f"nose {expected:.0f} cm above the shoulders"
    assert "shoulder widths" not in text and "3-D" not in text
    assert phrase("body_neck_flexion", 21.4, scales).startswith("neck 21° forward")


def test_shoulders_guessed_below_a_head_and_neck_crop_cannot_be_assessed() -> None:
    # BlazePose on a photo cut off below the chin: shoulders invented at the bottom edge, visibility 0.75
    lm = frontal_landmarks(400, 300, drop=0.0)
    lm[[I["left_shoulder"], I["right_shoulder"]], 1] = 299.0
    lm[[I["left_shoulder"], I["right_shoulder"]], 3] = 0.75
    assert "shoulders are not visible" in assess(lm, (300, 400))
    lm[[I["left_shoulder"], I["right_shoulder"]], 3] = 0.99
    lm[[I["left_shoulder"], I["right_shoulder"]], 1] = 303.0  # seen, but just past the bottom edge
    assert "shoulders are not visible" in assess(lm, (300, 400))


def test_shoulders_on_the_face_are_not_a_person() -> None:
    # A relief or a drawing: BlazePose puts the shoulders beside the mouth, a face's width apart
    lm = frontal_landmarks(400, 300, drop=0.0)
    mouth_y = lm[I["mouth_left"], 1]
    lm[I["left_shoulder"], :2] = (lm[I["left_ear"], 0], mouth_y - 20)
    lm[I["right_shoulder"], :2] = (lm[I["right_ear"], 0], mouth_y - 20)
    assert "do not look like a person" in assess(lm, (300, 400))


def test_a_head_slumped_below_the_shoulder_line_is_still_a_person() -> None:
    lm = frontal_landmarks(400, 300, drop=0.0)
    face = [I[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "mouth_left", "mouth_right")]
    lm[face, 1] += lm[I["left_shoulder"], 1] + 5 - lm[I["mouth_left"], 1]  # the mouth sinks below the shoulder line
    assert lm[I["left_eye"], 1] < lm[I["left_shoulder"], 1]  # ...the eyes stay above it
    assert assess(lm, (300, 400)) is None
