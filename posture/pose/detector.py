"""Body landmarks (MediaPipe BlazePose) and the head-and-shoulders crop built on them.

Why crop at all: the photos a posture model meets differ far more in *framing* than in posture.
A webcam shows a face filling half the frame, a physio photo a whole body standing in a room, a
phone video a person and her living room. A frozen ImageNet backbone describes the whole scene,
so a head trained on two capture sessions learns those sessions (room, camera distance, light)
and calls every photo of a third session one class. Cropping every photo to the same region, a
square around the ears, eyes, nose, mouth and shoulders, makes the backbone look at the evidence
the label is about (the head's position over the shoulders) at about the same scale everywhere.
Measured on the real photos in ``bench/real_photos.py``.

Why BlazePose: ``mediapipe==0.10.21`` ships its pose detector and landmark models inside the
wheel, so it works offline, it is fast on a CPU (about 40 ms a photo on 2 cores), and it finds
ears and shoulders from the front and from the side. It is an optional dependency: its wheel
pins ``numpy<2``, which the rest of the stack outgrew, so it is installed with ``--no-deps``
(``requirements-pose.txt``). Its graph runs fine on numpy 2 and protobuf 6 (not 7).

When no person is found (a drawing, a crop with no shoulders), the crop falls back to the whole
photo; :attr:`PoseDetector.misses` counts those. (A run that *reads* the landmarks, the zoo's
``pose`` extractor and its fusions, answers "cannot assess" instead: :mod:`posture.pose.geometry`.)

BlazePose measures one person, the most prominent. When a photo shows more, the answer says so
(:func:`other_people`, from the faces BlazeFace, shipped in the same wheel, finds): which person
was measured and that the others were not. BlazeFace finds faces seen from the front or at an
angle; a second person seen in strict profile often goes unnoticed.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from albumentations.augmentations.crops.transforms import BaseCrop

from posture.cli import UserError
from posture.pose.geometry import HEAD_AND_SHOULDERS
from posture.runtime.native_output import native_stderr_silenced

log = logging.getLogger(__name__)

# HEAD_AND_SHOULDERS (posture.pose.geometry): the landmarks the crop frames.
#: Side of the crop square as a multiple of the landmarks' extent; 1.8 keeps the neck and some
#: chest in view (1.3 cut too tight on side views and scored worse on the real photos).
DEFAULT_CROP_SCALE = 1.8
#: Smallest crop side, in pixels, accepted as a real detection rather than a fluke.
MIN_CROP_SIDE = 16
#: Landmarks below this visibility do not shape the crop (BlazePose guesses hidden ones).
MIN_VISIBILITY = 0.3
INSTALL_HINT = "pip install --no-deps -r requirements-pose.txt"


def load_solution(name: str) -> Any:
    """A MediaPipe solution module (``pose``, ``face_detection``), or a :class:`UserError` that says
    how to install MediaPipe."""
    import importlib

    try:
        if "mediapipe" in sys.modules:
            return importlib.import_module(f"mediapipe.python.solutions.{name}")
        with native_stderr_silenced():
            return importlib.import_module(f"mediapipe.python.solutions.{name}")
    except ImportError as exc:
        raise UserError(
            f"body landmarks (the 'pose' models and --crop pose) need MediaPipe BlazePose, which is not "
            f"installed ({exc}); install it with `{INSTALL_HINT}`, or use a CNN-only model meanwhile "
            f"(--model efficientnet_lite0)"
        ) from None


def load_blazepose() -> Any:
    """MediaPipe's pose solution module, or a :class:`UserError` that says how to install it."""
    return load_solution("pose")


def pose_available() -> bool:
    """True when :func:`load_blazepose` would succeed (tests and the bench ask before using it)."""
    try:
        load_blazepose()
    except UserError:
        return False
    return True


#: Set once this process has built a BlazePose graph. Process-wide on purpose, like torch's CUDA
#: state: MediaPipe leaves state behind, even after ``close()``, that a forked child cannot use
#: (a DataLoader worker forked afterwards aborts when it runs its own graph), so from then on
#: workers must start from a fresh interpreter (:func:`worker_start_method`).
_GRAPHS_BUILT = threading.Event()


def worker_start_method() -> str | None:
    """How processes that run BlazePose should start: ``None`` (the platform's default, a fast
    fork) while this process has not built a graph, else ``"forkserver"`` (or ``"spawn"``).

    Why: a notebook that predicts and then trains, or a test session, has run BlazePose before
    ``posture.finetune`` starts its landmark workers; forked, they die with "DataLoader worker
    exited unexpectedly". The command line never has, and keeps the fork.
    """
    if not _GRAPHS_BUILT.is_set():
        return None
    import multiprocessing

    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class PoseDetector:
    """One BlazePose graph, safe to share between threads and to pickle.

    The graph is built on first use (so DataLoader workers each build their own after they
    start), guarded by a lock (a MediaPipe graph is not re-entrant, and the web app answers
    several requests at once), and dropped when pickled. Answers are cached by the pixels'
    digest, because the training pipeline crops the same photo once per augmented view.

    ``video=True`` is for one stream of frames (a webcam, a video file): BlazePose then tracks the
    person from frame to frame instead of searching every frame afresh (about 48 frames per second
    here against 28), nothing is cached (no two frames are alike), and the face detector behind
    :meth:`faces` runs on every ``faces_every``-th frame only, the others reusing its last answer
    (people do not come and go between two frames). One detector per stream: tracking state is the
    stream's own.
    """

    def __init__(
        self,
        model_complexity: int = 1,
        min_confidence: float = 0.5,
        cache_size: int = 512,
        *,
        video: bool = False,
        faces_every: int = 15,
    ) -> None:
        self.model_complexity = int(model_complexity)
        self.min_confidence = float(min_confidence)
        self.video = bool(video)
        self.cache_size = 0 if self.video else int(cache_size)
        self.faces_every = max(1, int(faces_every)) if self.video else 1
        self.misses = 0
        self._graph: Any = None
        self._faces: Any = None
        self._face_calls = 0
        self._last_faces = np.zeros((0, 5), np.float32)
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray | None] = OrderedDict()
        self._face_cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_graph=None, _faces=None, _lock=None, _cache=OrderedDict(), _face_cache=OrderedDict())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _ensure_graph(self) -> Any:
        if self._graph is None:
            pose = load_blazepose()
            _GRAPHS_BUILT.set()
            self._graph = pose.Pose(
                static_image_mode=not self.video,
                model_complexity=self.model_complexity,
                min_detection_confidence=self.min_confidence,
            )
        return self._graph

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        """Landmarks of the most prominent person, ``None`` if nobody is found: a ``33×7`` float32
        array of ``(x, y, z, visibility)`` with x, y (and z, BlazePose's depth) in pixels, then the
        3-D world landmarks ``(x, y, z)`` in metres (hips at the origin, camera-aligned axes)."""
        rgb = np.ascontiguousarray(image, dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an H×W×3 uint8 RGB array, got shape {rgb.shape}")
        key = hashlib.blake2b(rgb.tobytes(), digest_size=16).hexdigest() + str(rgb.shape) if self.cache_size else ""
        with self._lock:
            if key and key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            if self._graph is None:  # building the graph and its first run print TFLite/absl notices
                with native_stderr_silenced():
                    result = self._ensure_graph().process(rgb)
            else:
                result = self._graph.process(rgb)
            landmarks = None
            if result.pose_landmarks is not None:
                h, w = rgb.shape[:2]
                world = result.pose_world_landmarks.landmark
                landmarks = np.array(
                    [
                        [p.x * w, p.y * h, p.z * w, p.visibility, q.x, q.y, q.z]
                        for p, q in zip(result.pose_landmarks.landmark, world, strict=True)
                    ],
                    dtype=np.float32,
                )
            else:
                self.misses += 1
            if key:
                self._cache[key] = landmarks
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            return landmarks

    @property
    def version(self) -> str:
        """What decides the landmarks this detector returns: part of every landmark-cache key."""
        return detector_version(self.model_complexity, self.min_confidence)

    def faces(self, image: np.ndarray) -> np.ndarray:
        """Every face BlazeFace finds (its full-range model, for people up to about 5 m away):
        a ``K×5`` float32 array of ``(x_min, y_min, x_max, y_max, score)`` in pixels.

        Why a second model: BlazePose in MediaPipe's solutions API follows one person, the most
        prominent, and says nothing of anyone else; a face detector finds them all, so a photo of
        two people can say which one was measured and that another was there (:func:`other_people`).
        """
        rgb = np.ascontiguousarray(image, dtype=np.uint8)
        key = "faces" + hashlib.blake2b(rgb.tobytes(), digest_size=16).hexdigest() if self.cache_size else ""
        with self._lock:
            self._face_calls += 1
            if self._faces is not None and (self._face_calls - 1) % self.faces_every:
                return self._last_faces  # a stream: the faces of a few frames ago still stand
            if key and key in self._face_cache:
                self._face_cache.move_to_end(key)
                return self._face_cache[key]
            if self._faces is None:
                with native_stderr_silenced():
                    self._faces = load_solution("face_detection").FaceDetection(
                        model_selection=1, min_detection_confidence=self.min_confidence
                    )
                    _GRAPHS_BUILT.set()
                    result = self._faces.process(rgb)
            else:
                result = self._faces.process(rgb)
        h, w = rgb.shape[:2]
        boxes = [
            (box.xmin * w, box.ymin * h, (box.xmin + box.width) * w, (box.ymin + box.height) * h, d.score[0])
            for d in result.detections or []
            for box in [d.location_data.relative_bounding_box]
        ]
        found = np.array(boxes, np.float32).reshape(-1, 5)
        with self._lock:
            self._last_faces = found
            if key:
                self._face_cache[key] = found
                if len(self._face_cache) > self.cache_size:
                    self._face_cache.popitem(last=False)
        return found

    def close(self) -> None:
        with self._lock:
            for graph in (self._graph, self._faces):
                if graph is not None:
                    graph.close()
            self._graph = self._faces = None


def detector_version(model_complexity: int = 1, min_confidence: float = 0.5) -> str:
    """``blazepose-<mediapipe version>-c<complexity>-p<confidence>`` (no graph is built)."""
    try:
        from importlib.metadata import version

        mp_version = version("mediapipe")
    except Exception:  # noqa: BLE001 - not installed: the key still names the settings
        mp_version = "unknown"
    return f"blazepose-{mp_version}-c{int(model_complexity)}-p{float(min_confidence):g}"


#: BlazePose's face landmarks (nose, eyes, ears, mouth): where the measured person's face is.
FACE_LANDMARKS = slice(0, 11)
#: A face smaller than this fraction of the measured person's is a poster, a screen or someone far
#: behind, not a second sitter whose posture could have been the one asked about.
OTHER_FACE_MIN_SCALE = 0.35


@dataclass(frozen=True)
class OtherPeople:
    """Who else a photo shows beside the person BlazePose measured."""

    count: int
    #: Where the measured person is among everyone found: ``"left"``, ``"right"`` or ``"middle"`` (of the photo).
    measured_at: str = "middle"

    def sentence(self) -> str | None:
        """The note for the person who reads the answer, or ``None`` when nobody else was found."""
        if not self.count:
            return None
        where = "in the middle" if self.measured_at == "middle" else f"on the {self.measured_at}"
        others = "the other was" if self.count == 1 else f"the {self.count} others were"
        return (
            f"{self.count + 1} people are in this photo: the person {where} was measured (the one the "
            f"landmarks mark); {others} not."
        )


def other_people(landmarks: np.ndarray, faces: np.ndarray) -> OtherPeople:
    """Count the faces in ``faces`` (:meth:`PoseDetector.faces`) that belong to someone other than the
    person ``landmarks`` describe, and are of a size that makes them a person in the scene.

    A face is the measured person's own when its centre lies within one head of their face
    landmarks (seen from the side, the detector may frame the back of the head, beside the ear).
    """
    face = landmarks[FACE_LANDMARKS, :2].astype(np.float64)
    low, high = face.min(axis=0), face.max(axis=0)
    size = max(float((high - low).max()), 1.0)
    others = []
    for x0, y0, x1, y1, _ in faces.astype(np.float64):
        side = max(x1 - x0, y1 - y0)
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        reach = max(side, size)
        own = bool(np.all(centre >= low - reach) and np.all(centre <= high + reach))
        if not own and side >= OTHER_FACE_MIN_SCALE * size:
            others.append(float(centre[0]))
    if not others:
        return OtherPeople(0)
    x = float(face[:, 0].mean())
    return OtherPeople(len(others), "left" if x < min(others) else "right" if x > max(others) else "middle")


def crop_box(
    image_shape: tuple[int, ...], landmarks: np.ndarray | None, scale: float = DEFAULT_CROP_SCALE
) -> tuple[int, int, int, int]:
    """The head-and-shoulders square for these landmarks, or the whole photo when there is none."""
    found = head_shoulder_box(landmarks, image_shape, scale)
    return found if found is not None else (0, 0, int(image_shape[1]), int(image_shape[0]))


def head_shoulder_box(
    landmarks: np.ndarray | None, shape: tuple[int, ...], scale: float = DEFAULT_CROP_SCALE
) -> tuple[int, int, int, int] | None:
    """The crop square ``(x_min, y_min, x_max, y_max)`` around head and shoulders, clipped to the
    photo; ``None`` when the landmarks are missing, too few are visible, or the box is tiny."""
    if landmarks is None:
        return None
    points = landmarks[list(HEAD_AND_SHOULDERS.values())]
    visible = points[points[:, 3] >= MIN_VISIBILITY, :2]
    if len(visible) < 3:
        return None
    (x0, y0), (x1, y1) = visible.min(axis=0), visible.max(axis=0)
    side = max(x1 - x0, y1 - y0) * float(scale)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    h, w = shape[:2]
    box = (
        int(max(0.0, cx - side / 2)),
        int(max(0.0, cy - side / 2)),
        int(min(float(w), cx + side / 2)),
        int(min(float(h), cy + side / 2)),
    )
    if box[2] - box[0] < MIN_CROP_SIDE or box[3] - box[1] < MIN_CROP_SIDE:
        return None
    return box


class PoseCrop(BaseCrop):
    """Albumentations step: crop to :func:`head_shoulder_box`, or keep the whole photo.

    It runs first in every pipeline of a run whose preprocessing says ``crop="pose"``, so
    training, evaluation, the CLI and the web app all see the same crop. Being a crop transform,
    it carries masks along, which is how Grad-CAM finds where the model's input came from.
    """

    def __init__(self, scale: float = DEFAULT_CROP_SCALE, detector: PoseDetector | None = None, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.scale = float(scale)
        self.detector = detector if detector is not None else PoseDetector()

    def box(self, image: np.ndarray) -> tuple[int, int, int, int]:
        """The crop this step applies to ``image`` (the whole photo when nobody is found)."""
        return crop_box(image.shape, self.detector.detect(image), self.scale)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return {"crop_coords": self.box(data["image"])}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale",)


__all__ = [
    "HEAD_AND_SHOULDERS",
    "DEFAULT_CROP_SCALE",
    "PoseDetector",
    "PoseCrop",
    "crop_box",
    "detector_version",
    "head_shoulder_box",
    "load_blazepose",
    "load_solution",
    "other_people",
    "OtherPeople",
    "pose_available",
    "INSTALL_HINT",
]
