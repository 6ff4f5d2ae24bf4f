"""Watch a sitting: frames in, a posture state that does not flicker, an alert only when a forward head lasts.

Why a session object: people who care about a forward head sit at a laptop for hours; they are not
helped by one photo's answer, nor by a monitor that beeps at every glance at the keyboard. Posture
monitors people actually use watch a stream, compare the person with *their own* upright baseline,
and alert only when bad posture lasts. Within one sitting (one person, one camera) the evidence is far
stronger than across people: the baseline removes what the camera's height and the person's build add
to every number. So :class:`Session` is the one place that turns answers into a sitting, and every way
of watching uses it: a video file, the desktop camera (``python -m posture.watch``), the web demo's
Live tab, the session benchmark.

Per frame (:meth:`Session.update`, with the frame's own timestamp, so a test drives it with a fake clock):

1. the same :class:`~posture.inference.predict.Predictor` as for photos analyses it (landmarks, geometry, or why
   it cannot be assessed);
2. the **main person**: the shoulders' place and size are compared with the sitting's running anchor;
   a frame that jumps (someone walking past, BlazePose switching to them) is not assessed and changes
   nothing; a jump that lasts ``camera_moved_seconds`` means the camera moved: the anchor and the
   baseline are dropped and the person is asked to calibrate again;
3. the **baseline**: during :meth:`Session.calibrate`'s step (``baseline_seconds`` of assessed frames of the
   person sitting upright) frames are collected, not scored; without that step, once
   ``auto_baseline_after`` seconds have been assessed, the person's own most upright stretch becomes
   the baseline. From then on the Predictor answers relative to it (``with_reference_geometry``);
4. **smoothing with hysteresis**: p(forward head) is averaged over time (time constant
   ``smoothing_seconds``); the state turns to forward head above ``enter_forward`` and back below
   ``leave_forward``, so one glance away flips nothing;
5. **alerts**: forward head for ``alert_after`` seconds raises an alert; the next comes no sooner than
   ``cooldown`` seconds later, and only while the head is still (or again) forward;
6. **statistics**: the time spent upright, forward and not assessed, the longest forward stretch,
   the alerts (:meth:`Session.summary`); :meth:`Session.pause` stops the clock.

What it tells the person is in their terms: how far the head has moved from their own baseline, in
centimetres or degrees (BlazePose's world landmarks are metric), and for how long. Frames are never
kept: a row holds numbers and words only.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from posture.cli import UserError, option

#: The states a sitting can be in, as rows and the timeline name them.
UPRIGHT, FORWARD, NOT_ASSESSED, CALIBRATING, PAUSED = "upright", "forward_head", "not_assessed", "calibrating", "paused"
STATES = (UPRIGHT, FORWARD, NOT_ASSESSED, CALIBRATING, PAUSED)


@dataclass(frozen=True)
class WatchConfig:
    """How a sitting is watched; every field is a ``python -m posture.watch`` option."""

    alert_after: float = field(
        default=30.0, metadata=option("forward head for this many seconds raises an alert", metavar="SECONDS")
    )
    cooldown: float = field(
        default=120.0, metadata=option("no second alert sooner than this many seconds after one", metavar="SECONDS")
    )
    smoothing_seconds: float = field(
        default=3.0,
        metadata=option(
            "time constant of the average of p(forward head): a glance away shorter than this flips nothing",
            metavar="SECONDS",
        ),
    )
    enter_forward: float = field(
        default=0.6, metadata=option("the smoothed p(forward head) above which the state turns to forward head")
    )
    leave_forward: float = field(
        default=0.4,
        metadata=option(
            "the smoothed p(forward head) below which a forward head turns back to upright (the gap is the hysteresis)"
        ),
    )
    baseline_seconds: float = field(
        default=5.0,
        metadata=option(
            "seconds of assessed frames the 'sit upright' step collects for the baseline", metavar="SECONDS"
        ),
    )
    auto_baseline_after: float = field(
        default=60.0,
        metadata=option(
            "without the step, the most upright stretch becomes the baseline once this many seconds were assessed",
            metavar="SECONDS",
        ),
    )
    auto_baseline_window: float = field(
        default=10.0,
        metadata=option(
            "the most upright stretch is the window of this many seconds with the lowest mean p(forward head)",
            metavar="SECONDS",
        ),
    )
    jump_distance: float = field(
        default=0.6,
        metadata=option(
            "shoulders that moved more than this many shoulder widths are not the main person (or the camera moved)",
            metavar="WIDTHS",
        ),
    )
    jump_size: float = field(
        default=0.35,
        metadata=option(
            "shoulders whose size changed by more than this ratio are not the main person either", metavar="RATIO"
        ),
    )
    camera_moved_seconds: float = field(
        default=4.0,
        metadata=option(
            "a jump that lasts this many seconds is the camera moving, not someone walking past", metavar="SECONDS"
        ),
    )
    lost_after: float = field(
        default=3.0,
        metadata=option(
            "after this many seconds without an assessed frame the state is 'not assessed'", metavar="SECONDS"
        ),
    )
    max_frame_gap: float = field(
        default=2.0,
        metadata=option(
            "a gap between frames longer than this (a dropped stream, a pause) counts for this long only",
            metavar="SECONDS",
        ),
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            if math.isnan(getattr(self, f.name)):
                raise UserError(f"--{f.name.replace('_', '-')} must be a number, not nan")
        if not 0.0 <= self.leave_forward <= self.enter_forward <= 1.0:
            raise UserError("--leave-forward must be <= --enter-forward, both between 0 and 1")
        for name in (
            "alert_after",
            "cooldown",
            "smoothing_seconds",
            "baseline_seconds",
            "auto_baseline_after",
            "jump_distance",
            "jump_size",
            "camera_moved_seconds",
            "lost_after",
        ):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be >= 0")
        if self.max_frame_gap <= 0 or self.auto_baseline_window <= 0:
            raise UserError("--max-frame-gap and --auto-baseline-window must be above 0")


@dataclass
class FrameResult:
    """What the sitting says after one frame: the frame's own answer and the smoothed state."""

    time: float
    label: str | None
    reason: str | None
    p_forward: float | None
    state: str
    smoothed: float | None
    alert: bool = False
    message: str = ""
    deviation: str | None = None
    forward_for: float = 0.0
    view: str | None = None
    event: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("time", "p_forward", "smoothed", "forward_for"):
            if out[key] is not None:
                out[key] = round(float(out[key]), 3)
        return out


@dataclass
class _Anchor:
    """Where the main person's shoulders have been: a running median of place (photo fractions) and size."""

    places: deque[tuple[float, float, float]] = field(default_factory=lambda: deque(maxlen=30))
    jump_since: float | None = None
    jump_places: list[tuple[float, float, float]] = field(default_factory=list)

    def median(self) -> tuple[float, float, float] | None:
        if not self.places:
            return None
        x, y, w = np.median(np.array(self.places), axis=0)
        return float(x), float(y), float(w)


def shoulder_place(landmarks: np.ndarray, shape: tuple[int, int]) -> tuple[float, float, float]:
    """The shoulders' midpoint (x, y as fractions of the frame) and their width (fraction of the frame's width)."""
    h, w = shape
    left, right = np.asarray(landmarks[11, :2], float), np.asarray(landmarks[12, :2], float)
    mid = (left + right) / 2
    return float(mid[0] / w), float(mid[1] / h), float(max(np.linalg.norm(left - right) / w, 1e-6))


class Session:
    """One sitting of one person at one camera (module docstring). Not thread-safe: one stream each.

    ``predictor``: a pose-based :class:`~posture.inference.predict.Predictor` (give it a detector in video
    mode for a stream; :func:`posture.pose.detector.PoseDetector` ``video=True`` tracks the person between frames).
    """

    def __init__(self, predictor: Any, config: WatchConfig | None = None, keep_rows: int | None = None) -> None:
        if not getattr(predictor, "uses_pose", False):
            raise UserError(
                f"{predictor.config.get('architecture')} reads no posture geometry; watching a sitting needs a "
                "pose-based run (--model pose or CNN+pose), whose baseline is the person's own geometry"
            )
        self.base = predictor
        self.predictor = predictor
        self.config = config or WatchConfig()
        #: The sitting's rows, oldest first: all of them, or the latest ``keep_rows`` (a long video or a day at the
        #: camera whose rows are written out as they come keeps none, so its memory does not grow with its length).
        self.rows: list[FrameResult] = []
        self.keep_rows = keep_rows
        self._frames = 0
        self.paused = False
        self._calibrating = False
        self._baseline_frames: list[np.ndarray] = []
        self._baseline_start: float | None = None
        self.baseline: np.ndarray | None = None
        self.baseline_source: str | None = None
        self._anchor = _Anchor()
        self._smoothed: float | None = None
        self._state = NOT_ASSESSED
        self._last_time: float | None = None
        self._last_assessed: float | None = None
        self._forward_since: float | None = None
        self._last_alert: float | None = None
        self._history: list[tuple[float, float, np.ndarray]] = []  # (time, p_forward, geometry) before a baseline
        self._durations = dict.fromkeys(STATES, 0.0)
        self._longest_forward = 0.0
        self._alerts = 0
        self._events: list[tuple[float, str]] = []

    # -- controls -------------------------------------------------------------------------------------
    def calibrate(self) -> None:
        """Start the "sit upright for a few seconds" step: the next ``baseline_seconds`` of assessed frames
        become the baseline (an earlier baseline is dropped)."""
        self._calibrating = True
        self._baseline_frames = []
        self._baseline_start = None

    def pause(self) -> None:
        """Stop watching: frames are ignored and the clock stops until :meth:`resume`."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._last_time = None  # the pause is not a gap between frames

    def set_baseline(self, geometry: Sequence[float] | np.ndarray, source: str = "given") -> None:
        """Use this raw geometry as the person's upright baseline (a calibration saved from before)."""
        self.baseline = np.asarray(geometry, np.float64)
        self.baseline_source = source
        self.predictor = self.base.with_reference_geometry(self.baseline)
        self._smoothed = None

    # -- the stream -----------------------------------------------------------------------------------
    def update(self, rgb: np.ndarray, time: float) -> FrameResult:
        """Analyse one frame taken at ``time`` (seconds, any origin, increasing) and update the sitting."""
        return self.update_frame(rgb, time)[0]

    def update_frame(self, rgb: np.ndarray, time: float) -> tuple[FrameResult, Any]:
        """:meth:`update`, also handing back the Predictor's analysis of the frame (``None`` while paused,
        when nothing is analysed), so a display can draw the landmarks the answer was read from."""
        if self.paused:
            result = FrameResult(time, None, "paused", None, PAUSED, self._smoothed)
            self._record(result)
            return result, None
        analysis = self.base.analyse(rgb, within_training=False)
        return self.update_analysis(analysis, time), analysis

    def update_analysis(self, analysis: Any, time: float) -> FrameResult:
        """As :meth:`update`, for a frame the Predictor has analysed already (the app draws the same landmarks)."""
        cfg = self.config
        dt = 0.0 if self._last_time is None else min(max(time - self._last_time, 0.0), cfg.max_frame_gap)
        self._durations[self._state] += dt
        if self._state == FORWARD and self._forward_since is not None:
            self._longest_forward = max(self._longest_forward, time - self._forward_since)
        self._last_time = time
        event = None
        reason = analysis.reason
        if reason is None and analysis.landmarks is not None:
            event = self._check_person(analysis.landmarks, analysis.rgb.shape[:2], time)
            if event == "another_person":
                reason = "someone else, or the camera moved: the main person's shoulders jumped"
        geometry = analysis.geometry if reason is None else None
        if geometry is not None and self._calibrating:
            return self._collect_baseline(analysis, geometry, time, event)
        label = p_forward = deviation = None
        if geometry is not None:
            answer = self.predictor.predict_analysed([self._recheck(analysis)])[0]
            if answer.label is not None and answer.probabilities is not None:
                label = answer.label
                p_forward = float(answer.probabilities.get(FORWARD, 0.0))
                deviation = self.deviation(geometry, analysis.landmarks)
                self._last_assessed = time
                if self.baseline is None:
                    self._learn_baseline(dt, p_forward, geometry)
                self._smooth(p_forward, dt)
            else:
                reason = answer.reason
        self._advance_state(time)
        alert, message = self._maybe_alert(time)
        result = FrameResult(
            time=time,
            label=label,
            reason=reason,
            p_forward=p_forward,
            state=self._state,
            smoothed=self._smoothed,
            alert=alert,
            message=message or self._status_message(),
            deviation=deviation,
            forward_for=(time - self._forward_since) if self._forward_since is not None else 0.0,
            view=analysis.view,
            event=event,
        )
        self._record(result)
        return result

    def _record(self, result: FrameResult) -> None:
        self._frames += 1
        self.rows.append(result)
        if self.keep_rows is not None and len(self.rows) > 2 * self.keep_rows + 64:  # trimmed now and then: O(1) a row
            del self.rows[: len(self.rows) - self.keep_rows]

    def _recheck(self, analysis: Any) -> Any:
        """The analysis with the run's coverage check (:meth:`~posture.inference.predict.Predictor.outside_training`)
        applied the sitting's way: before a baseline exists, as for a photo; once the person's own upright
        baseline anchors the numbers, only a view the run never saw is refused, since a head further from
        the baseline than any training photo is an answer, not an extrapolation to an unknown camera."""
        from dataclasses import replace

        if analysis.geometry is None or analysis.view is None:
            return analysis
        if self.baseline is None:
            reason = self.predictor.outside_training(analysis.geometry, analysis.view)
        else:
            views = (self.predictor.coverage or {}).get("views") or {}
            reason = (
                self.predictor.outside_training(analysis.geometry, analysis.view)
                if views and analysis.view not in views
                else None
            )
        return analysis if reason is None else replace(analysis, geometry=None, reason=reason)

    def _collect_baseline(self, analysis: Any, geometry: np.ndarray, time: float, event: str | None) -> FrameResult:
        if self._baseline_start is None:
            self._baseline_start = time
        self._baseline_frames.append(np.asarray(geometry, np.float64))
        self._state = CALIBRATING
        remaining = self.config.baseline_seconds - (time - self._baseline_start)
        if remaining <= 0 and self._baseline_frames:
            self._calibrating = False
            self.set_baseline(np.median(np.stack(self._baseline_frames), axis=0), "calibration step")
            self._state = NOT_ASSESSED
            message = "baseline set: your upright posture is the reference from now on"
        else:
            message = f"sit upright: calibrating, {max(0.0, remaining):.0f} s left"
        result = FrameResult(
            time, None, None, None, CALIBRATING, None, message=message, view=analysis.view, event=event
        )
        self._record(result)
        return result

    def _learn_baseline(self, dt: float, p_forward: float, geometry: np.ndarray) -> None:
        """Without a calibration step: once ``auto_baseline_after`` seconds have been assessed (pauses and
        gaps do not count), the most upright stretch of them becomes the baseline."""
        cfg = self.config
        seen = (self._history[-1][0] + dt) if self._history else 0.0
        self._history.append((seen, p_forward, np.asarray(geometry, np.float64)))
        if seen < cfg.auto_baseline_after:
            return
        time = self._last_time or 0.0
        times = np.array([t for t, _, _ in self._history])
        probs = np.array([p for _, p, _ in self._history])
        best, best_mean = None, math.inf
        for start in times:
            window = (times >= start) & (times < start + cfg.auto_baseline_window)
            if times[window][-1] - start < cfg.auto_baseline_window * 0.5:
                break
            if probs[window].mean() < best_mean:
                best, best_mean = window, float(probs[window].mean())
        if best is not None:
            stack = np.stack([g for g, keep in zip((g for _, _, g in self._history), best, strict=True) if keep])
            self.set_baseline(np.median(stack, axis=0), "most upright stretch")
            self._events.append((time, "baseline learnt from the most upright stretch"))
        self._history = []

    def _check_person(self, landmarks: np.ndarray, shape: tuple[int, int], time: float) -> str | None:
        """``None`` for the main person; ``"another_person"`` for a frame that jumped; ``"camera_moved"``
        once a jump has lasted (anchor and baseline are then dropped)."""
        cfg = self.config
        place = shoulder_place(landmarks, shape)
        anchor = self._anchor.median()
        if anchor is None:
            self._anchor.places.append(place)
            return None
        moved = math.hypot(place[0] - anchor[0], place[1] - anchor[1]) / anchor[2]
        resized = abs(math.log(place[2] / anchor[2]))
        if moved <= cfg.jump_distance and resized <= math.log1p(cfg.jump_size):
            self._anchor.places.append(place)
            self._anchor.jump_since, self._anchor.jump_places = None, []
            return None
        if self._anchor.jump_since is None:
            self._anchor.jump_since = time
        self._anchor.jump_places.append(place)
        if time - self._anchor.jump_since < cfg.camera_moved_seconds:
            return "another_person"
        self._anchor = _Anchor(places=deque(self._anchor.jump_places[-30:], maxlen=30))
        self.baseline, self.baseline_source, self.predictor = None, None, self.base
        self._smoothed, self._history = None, []
        self._events.append((time, "the camera moved: calibrate again"))
        return "camera_moved"

    def _smooth(self, p: float, dt: float) -> None:
        tau = self.config.smoothing_seconds
        if self._smoothed is None or tau <= 0:
            self._smoothed = p
            return
        weight = 1.0 - math.exp(-dt / tau) if dt > 0 else 1.0 / 8
        self._smoothed += weight * (p - self._smoothed)

    def _advance_state(self, time: float) -> None:
        cfg = self.config
        lost = self._last_assessed is None or time - self._last_assessed > cfg.lost_after
        if lost or self._smoothed is None:
            new = NOT_ASSESSED
        elif self._state == FORWARD:
            new = UPRIGHT if self._smoothed <= cfg.leave_forward else FORWARD
        else:
            new = FORWARD if self._smoothed >= cfg.enter_forward else UPRIGHT
        if new == FORWARD and self._state != FORWARD:
            self._forward_since = time
        elif new != FORWARD:
            if self._forward_since is not None:
                self._longest_forward = max(self._longest_forward, time - self._forward_since)
            self._forward_since = None
        self._state = new

    def _maybe_alert(self, time: float) -> tuple[bool, str]:
        cfg = self.config
        if self._forward_since is None:
            return False, ""
        lasted = time - self._forward_since
        if lasted < cfg.alert_after:
            return False, ""
        if self._last_alert is not None and time - self._last_alert < cfg.cooldown:
            return False, ""
        self._last_alert = time
        self._alerts += 1
        self._events.append((time, "alert"))
        return True, f"forward head for {_duration(lasted)}: sit back and lift your head"

    def _status_message(self) -> str:
        if self._state == FORWARD and self._forward_since is not None:
            return f"forward head for {_duration(self._last_time - self._forward_since if self._last_time else 0.0)}"
        if self._state == UPRIGHT:
            return "upright"
        return "not assessed"

    # -- in the person's terms ------------------------------------------------------------------------
    def deviation(self, geometry: np.ndarray | None, landmarks: np.ndarray | None, top: int = 2) -> str | None:
        """How far the head sits from the person's own baseline, in centimetres or degrees: the features
        that moved most (relative to how much they vary in training), e.g. "nose 4 cm lower than your
        upright baseline"."""
        from posture.pose.geometry import FEATURES, metric_scales

        if geometry is None or self.baseline is None or landmarks is None:
            return None
        names = self.base.pose_features
        delta = np.asarray(geometry, np.float64) - self.baseline
        spread = self._spread(len(names))
        order = np.argsort(-np.abs(delta) / spread)[:top]
        scales = metric_scales(landmarks)
        parts = []
        for i in order:
            feature = FEATURES[names[i]]
            value = float(delta[i])
            if feature.unit == "degrees":
                amount = f"{abs(value):.0f}°"
            elif feature.unit in scales:
                amount = f"{abs(value) * scales[feature.unit] * 100:.0f} cm"
            else:
                amount = f"{abs(value):.2f} {feature.unit}"
            parts.append(f"{feature.name.replace('_', ' ')} {amount} {'more' if value > 0 else 'less'}")
        return "; ".join(parts) + " than your upright baseline"

    def _spread(self, n: int) -> np.ndarray:
        model = getattr(self.base, "model", None)
        try:
            std = model.feature_norm.std[-n:].double().numpy() if model is not None else np.ones(n)
        except ValueError:
            std = np.ones(n)
        return np.where(std > 0, std, 1.0)

    # -- the record -----------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Shares of time upright / forward head / not assessed (of the watched time, calibration and
        pauses excluded), the longest forward stretch, alerts, the baseline and the events."""
        watched = sum(self._durations[s] for s in (UPRIGHT, FORWARD, NOT_ASSESSED))
        longest = self._longest_forward
        if self._forward_since is not None and self._last_time is not None:
            longest = max(longest, self._last_time - self._forward_since)
        return {
            "frames": self._frames,
            "watched_seconds": round(watched, 1),
            "share": {
                s: round(self._durations[s] / watched, 4) if watched else 0.0 for s in (UPRIGHT, FORWARD, NOT_ASSESSED)
            },
            "longest_forward_seconds": round(longest, 1),
            "alerts": self._alerts,
            "baseline": self.baseline_source,
            "events": [{"time": round(t, 2), "event": e} for t, e in self._events],
        }


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


__all__ = [
    "FrameResult",
    "Session",
    "WatchConfig",
    "STATES",
    "UPRIGHT",
    "FORWARD",
    "NOT_ASSESSED",
    "CALIBRATING",
    "PAUSED",
    "shoulder_place",
]
