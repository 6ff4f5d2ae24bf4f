"""The web demo's Live tab, without the page: one sitting per browser tab, fed the tab's webcam frames.

Why this shape:

- **One session object.** Each tab gets a :class:`posture.sitting.session.Session` (baseline, smoothing,
  alerts, pause, the record) over the app's trained run, with a BlazePose graph of its own in video
  mode (:class:`posture.pose.detector.PoseDetector` ``video=True``: it tracks the tab's person from frame to
  frame, so it cannot be shared). The run's network and backend are shared, as for photos.
- **Frames stay in memory.** A frame arrives as bytes inside the request, is decoded, analysed,
  drawn on and dropped; what goes back to the page is HTML with the drawing inline (a ``data:`` URL),
  never a file, and nothing logs a frame. The record holds numbers and words only; its CSV is
  written, into the app's private folder, only when the visitor asks for it.
- **Each tab frees its own.** :class:`LiveSessions` knows every open sitting by the tab's Gradio
  session; the page releases a tab's sitting (and closes its BlazePose graph) when the tab closes
  or its state expires.
- **Time is the server's clock** when a frame is analysed (injectable, so tests drive it): frames
  that arrive while the last one is still being analysed are dropped by Gradio's stream (it keeps
  only the newest), so what is analysed is always close to now.

The page itself (components, the beep) is :mod:`app.live_page`.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from app.live_timeline import Timeline
from posture.inference.predict import Predictor
from posture.io.csvcells import write_csv
from posture.pose.drawing import draw_landmarks
from posture.sitting.session import (
    CALIBRATING,
    FORWARD,
    NOT_ASSESSED,
    PAUSED,
    UPRIGHT,
    FrameResult,
    Session,
    WatchConfig,
)

log = logging.getLogger(__name__)

#: Under the app's private folder: the CSVs visitors asked for (swept like the batch tab's).
LIVE_DIR = "live"
#: Longest side of the picture sent back with the landmarks drawn.
OVERLAY_SIDE = 480
#: How long the alert banner stays after an alert (seconds of the sitting).
ALERT_SHOWN_SECONDS = 8.0
#: The timeline is redrawn at most this often (seconds), and at every change of state or alert.
TIMELINE_EVERY = 1.0
#: The frame rate shown is measured over the last this many seconds.
RATE_WINDOW = 5.0
#: The colour of the state's headline.
STATE_TEXT_COLOURS = {UPRIGHT: "#2e7d32", FORWARD: "#e65100", CALIBRATING: "#1565c0"}
#: The columns of a sitting's CSV: :meth:`FrameResult.to_dict`'s, in its order.
CSV_COLUMNS = list(FrameResult(0.0, None, None, None, NOT_ASSESSED, None).to_dict())


class LiveError(ValueError):
    """Something the visitor should read (no frames yet, too many sittings open)."""


@dataclass
class LiveView:
    """What the page shows after one frame; ``None``: leave that part as it is (nothing changed)."""

    overlay: str | None
    status: str
    timeline: str | None
    alert: str | None
    result: FrameResult | None = None


class LiveSession:
    """One browser tab's sitting. Thread-safe: frames and button clicks arrive on different threads."""

    def __init__(
        self, predictor: Predictor, watch: WatchConfig, detector: Any, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.detector = detector
        self.predictor = predictor.with_detector(detector)
        self.watch = watch
        self.clock = clock
        self.closed = False
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        self.session = Session(self.predictor, self.watch)
        self.timeline = Timeline()
        self.started: float | None = None
        self.frames = 0
        self._recent: deque[float] = deque()
        self._alert_until: float | None = None
        self._alert_message = ""
        self.alerts = 0
        self._timeline_at = -float("inf")
        self._last_state: str | None = None
        self._alert_sent: str | None = None

    # -- the stream ----------------------------------------------------------------------------------
    def frame(self, rgb: np.ndarray, muted: bool = False) -> LiveView:
        """Analyse one webcam frame now; the view of the sitting afterwards."""
        with self._lock:
            if self.closed:
                raise LiveError("This live session was closed; reload the page to start a new one.")
            now = self.clock()
            if self.started is None:
                self.started = now
            t = now - self.started
            result, analysis = self.session.update_frame(rgb, t)
            shown, landmarks = (rgb, None) if analysis is None else (analysis.rgb, analysis.landmarks)
            self._count(now)
            self.timeline.add(t, result.smoothed, result.state, result.alert)
            if result.alert:
                self.alerts += 1
                self._alert_until, self._alert_message = t + ALERT_SHOWN_SECONDS, result.message
            redraw = result.alert or result.state != self._last_state or t - self._timeline_at >= TIMELINE_EVERY - 1e-9
            if redraw:
                self._timeline_at = t
            self._last_state = result.state
            alert = alert_html(self.alerts, self._alert_message if self._alert_active(t) else None, muted)
            changed_alert = alert if alert != self._alert_sent else None
            self._alert_sent = alert
            return LiveView(
                overlay=overlay_html(draw_landmarks(shown, landmarks, caption=headline(result), max_side=OVERLAY_SIDE)),
                status=self._status_html(result),
                timeline=self.timeline.svg(self.watch.enter_forward, self.watch.leave_forward) if redraw else None,
                alert=changed_alert,
                result=result,
            )

    def _alert_active(self, t: float) -> bool:
        return self._alert_until is not None and t <= self._alert_until

    def _count(self, now: float) -> None:
        self.frames += 1
        self._recent.append(now)
        while self._recent and now - self._recent[0] > RATE_WINDOW:
            self._recent.popleft()

    @property
    def frame_rate(self) -> float:
        """Frames analysed per second over the last :data:`RATE_WINDOW` seconds."""
        if len(self._recent) < 2 or self._recent[-1] <= self._recent[0]:
            return 0.0
        return (len(self._recent) - 1) / (self._recent[-1] - self._recent[0])

    def _status_html(self, result: FrameResult) -> str:
        colour = STATE_TEXT_COLOURS.get(result.state, "#424242")
        lines = [
            f'<div class="live-state" style="font-size:1.6em;font-weight:bold;color:{colour}">'
            f"{html.escape(headline(result))}</div>"
        ]
        detail = result.deviation or (result.reason if result.state == NOT_ASSESSED else None)
        if detail:
            lines.append(f"<p>{html.escape(detail[0].upper() + detail[1:])}.</p>")
        if result.smoothed is not None:
            lines.append(
                f"<p>p(forward head), smoothed: {result.smoothed:.2f} (forward head above "
                f"{self.watch.enter_forward:.2f}, upright again below {self.watch.leave_forward:.2f}).</p>"
            )
        lines.append(f"<p>{html.escape(self._baseline_sentence())}</p>")
        lines.append(f"<p>{html.escape(summary_sentence(self.session.summary()))}</p>")
        return (
            f'<div class="live-status" data-state="{html.escape(result.state)}" data-frames="{self.frames}" '
            f'data-fps="{self.frame_rate:.2f}" data-alerts="{self.alerts}">{"".join(lines)}'
            f'<p class="live-rate">{self.frames} frames analysed, {self.frame_rate:.1f} per second.</p></div>'
        )

    def _baseline_sentence(self) -> str:
        source = self.session.baseline_source
        if source is not None:
            return f"Baseline: your own upright posture ({source})."
        return (
            f"No baseline yet: press “Sit upright for {self.watch.baseline_seconds:.0f} s”, or the most upright "
            f"stretch of your first {self.watch.auto_baseline_after:.0f} s becomes it."
        )

    # -- the controls --------------------------------------------------------------------------------
    def calibrate(self) -> str:
        """Start the "sit upright" step: the next few seconds of frames become the baseline."""
        with self._lock:
            self.session.calibrate()
            if self.session.paused:
                self.session.resume()
        return (
            f"Sit upright and look at the screen for {self.watch.baseline_seconds:.0f} seconds: the countdown "
            "shows beside the picture. From then on you are compared with yourself."
        )

    def toggle_pause(self) -> bool:
        """Pause (frames are ignored, the clock stops) or resume; whether it is paused now."""
        with self._lock:
            if self.session.paused:
                self.session.resume()
            else:
                self.session.pause()
            return self.session.paused

    def reset(self) -> None:
        """Forget this sitting (record, baseline, timeline) and start a new one with the same camera."""
        with self._lock:
            self._start()

    def write_csv(self, folder: Path) -> tuple[Path, int]:
        """The sitting's rows (numbers and words, never a frame) as a CSV file in ``folder``; (path, rows)."""
        with self._lock:
            rows = [r.to_dict() for r in self.session.rows]
        if not rows:
            raise LiveError("Nothing has been watched yet: start the webcam first.")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"posture-sitting-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.csv"
        write_csv(pd.DataFrame(rows, columns=CSV_COLUMNS), path)
        return path, len(rows)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return self.session.summary()

    def close(self) -> None:
        """Free the BlazePose graph; later frames are refused."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self.session.rows.clear()
        self.detector.close()


class LiveSessions:
    """The open sittings of one app, one per browser tab (Gradio session), at most ``max_open`` at once.

    ``detector_factory`` makes each tab's BlazePose graph (default: :class:`posture.pose.detector.PoseDetector`
    in video mode, looked up at call time so tests can stand it in).
    """

    def __init__(
        self,
        predictor: Predictor,
        watch: WatchConfig,
        max_open: int = 8,
        clock: Callable[[], float] = time.monotonic,
        detector_factory: Callable[[], Any] | None = None,
    ) -> None:
        Session(predictor, watch)  # a run that reads no geometry cannot be watched: say so now, not per tab
        self.predictor = predictor
        self.watch = watch
        self.max_open = int(max_open)
        self.clock = clock
        self.detector_factory = detector_factory or _video_detector
        self._open: dict[str, LiveSession] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> LiveSession:
        """The sitting of the tab ``key``, opened on its first use."""
        with self._lock:
            live = self._open.get(key)
            if live is not None:
                return live
            if len(self._open) >= self.max_open:
                raise LiveError(
                    f"{self.max_open} live sessions are open on this server already; please try again later."
                )
            live = LiveSession(self.predictor, self.watch, self.detector_factory(), self.clock)
            self._open[key] = live
            count = len(self._open)
        log.info("live session opened (%d open)", count)
        return live

    def release(self, live: LiveSession | None) -> None:
        """Close this sitting and forget it (a tab's state expired); ``None`` and repeats are no-ops."""
        if live is None:
            return
        with self._lock:
            keys = [k for k, v in self._open.items() if v is live]
            for key in keys:
                del self._open[key]
            count = len(self._open)
        live.close()
        if keys:
            log.info("live session closed (%d open)", count)

    def release_key(self, key: str | None) -> None:
        """Close the sitting of tab ``key``, if it has one (the tab was closed)."""
        with self._lock:
            live = self._open.get(key) if key is not None else None
        self.release(live)

    def close_all(self) -> None:
        with self._lock:
            everything = list(self._open.values())
        for live in everything:
            self.release(live)

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)


def _video_detector() -> Any:
    from posture.pose import detector as pose

    return pose.PoseDetector(video=True)


# -- what the page shows ------------------------------------------------------------------------------
def headline(result: FrameResult) -> str:
    """The state in a few words, for the status line and the picture's caption."""
    if result.state == CALIBRATING:
        return result.message[0].upper() + result.message[1:] if result.message else "Calibrating"
    if result.state == FORWARD:
        return result.message[0].upper() + result.message[1:] if result.message else "Forward head"
    if result.state == UPRIGHT:
        return "Upright"
    if result.state == PAUSED:
        return "Paused"
    return "Not assessed"


def summary_sentence(summary: dict[str, Any]) -> str:
    """:meth:`Session.summary` in one sentence."""
    share = summary["share"]
    watched = summary["watched_seconds"]
    if not watched:
        return "Nothing watched yet."
    return (
        f"Watched {_minutes(watched)}: upright {share[UPRIGHT]:.0%}, forward head {share[FORWARD]:.0%}, "
        f"not assessed {share[NOT_ASSESSED]:.0%}; longest forward stretch "
        f"{_minutes(summary['longest_forward_seconds'])}; {summary['alerts']} alert"
        f"{'' if summary['alerts'] == 1 else 's'}."
    )


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def overlay_html(rgb: np.ndarray) -> str:
    """The picture as an ``<img>`` whose JPEG travels inside the HTML: no file is written for it."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="JPEG", quality=80)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f'<img class="live-overlay" alt="the last frame analysed, with the landmarks read from it" '
        f'src="data:image/jpeg;base64,{data}" style="max-width:100%;height:auto">'
    )


def alert_html(count: int, message: str | None, muted: bool) -> str:
    """The alert banner (``message`` ``None``: hidden). ``data-alert`` counts alerts so the page beeps
    once per new one, unless ``data-sound`` is off."""
    sound = "off" if muted else "on"
    if message is None:
        return f'<div class="live-alert-none" data-alert="{count}" data-sound="{sound}"></div>'
    return (
        f'<div class="live-alert" role="alert" data-alert="{count}" data-sound="{sound}" '
        f'style="background:#c62828;color:#fff;padding:12px 16px;border-radius:8px;font-size:1.3em;'
        f'font-weight:bold">{html.escape(message[0].upper() + message[1:])}</div>'
    )


__all__ = [
    "ALERT_SHOWN_SECONDS",
    "LIVE_DIR",
    "LiveError",
    "LiveSession",
    "LiveSessions",
    "LiveView",
    "alert_html",
    "headline",
    "overlay_html",
    "summary_sentence",
]
