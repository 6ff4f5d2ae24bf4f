"""The live loop of the desktop camera: newest frame → landmarks → answer → overlay, never a backlog.

Why a reader thread and a one-slot mailbox (:class:`NewestFrame`): a webcam delivers 30 frames a
second whether or not the loop keeps up, and OpenCV's capture queues what is not read. A loop that
reads frames itself, one per analysis, falls behind by a little more every second and ends up
answering for the posture of a minute ago. Here a thread reads every frame as it comes and keeps only
the newest; the loop takes whatever is newest when it is ready, so frames it has no time for are
dropped (and counted), never queued, and an answer is never older than one analysis.

The loop drives the one :class:`~posture.sitting.session.Session` (the same as for a video file or the web
demo's Live tab); what it shows goes through a *display*: :class:`WindowDisplay` (a small OpenCV
window with the landmarks and the state drawn on the frame) or :class:`TerminalDisplay` (one status
line). Both take keys: ``c`` calibrate, ``p`` pause / resume, ``q`` quit. Frames exist only in memory,
one or two at a time; nothing but numbers and words leaves the loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

import cv2
import numpy as np

from posture.cli import UserError
from posture.sitting.session import FORWARD, NOT_ASSESSED, FrameResult, Session

log = logging.getLogger(__name__)

#: Consecutive failed reads after which the camera counts as gone (unplugged, taken by another program).
MAX_READ_FAILURES = 10
#: Seconds between two tries after a failed read.
RETRY_SECONDS = 0.05
#: Longest side of the picture the window shows.
WINDOW_SIDE = 720
KEYS_HELP = "keys: c calibrate, p pause/resume, q quit"


class NewestFrame:
    """A one-slot mailbox between a producer thread and the loop (module docstring).

    :meth:`put` replaces what is there (counted in :attr:`dropped`); :meth:`take` waits for a frame
    and empties the slot. :attr:`most_held` is the largest backlog it ever had: one, by construction.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: tuple[np.ndarray, float] | None = None
        self._closed = False
        self.offered = 0
        self.taken = 0
        self.dropped = 0
        self.most_held = 0

    def put(self, frame: np.ndarray, stamp: float) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = (frame, stamp)
            self.offered += 1
            self.most_held = max(self.most_held, 1)
            self._cond.notify()

    def take(self, timeout: float) -> tuple[np.ndarray, float] | None:
        """The newest frame and its time, or ``None`` when none came within ``timeout`` seconds."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            if item is not None:
                self.taken += 1
            return item

    def close(self) -> None:
        """No more frames will come (the producer ended)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        """Closed and empty: the loop has had every frame it will get."""
        with self._cond:
            return self._closed and self._item is None

    @property
    def pending(self) -> int:
        with self._cond:
            return int(self._item is not None)


class Capture(Protocol):
    """What the loop needs of a ``cv2.VideoCapture``."""

    def read(self) -> tuple[bool, Any]: ...

    def release(self) -> None: ...


class CameraReader:
    """Reads ``capture`` on its own thread into ``holder``, stamping each frame with ``clock()``; closes
    the holder when the camera stops giving frames (:data:`MAX_READ_FAILURES` failed reads in a row)."""

    def __init__(self, capture: Capture, holder: NewestFrame, clock: Callable[[], float]) -> None:
        self.capture, self.holder, self.clock = capture, holder, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera-reader", daemon=True)
        self.error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop reading and wait for the thread (a capture must not be released while it reads)."""
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                ok, frame = self.capture.read()
                if not ok or frame is None:
                    failures += 1
                    if failures >= MAX_READ_FAILURES:
                        break
                    self._stop.wait(RETRY_SECONDS)
                    continue
                failures = 0
                self.holder.put(frame, self.clock())
        except cv2.error as exc:  # a camera unplugged mid-read, on some back-ends
            self.error = str(exc).strip().splitlines()[-1]
        finally:
            self.holder.close()


@contextlib.contextmanager
def _opencv_quiet() -> Iterator[None]:
    """OpenCV logs its own warnings when a camera index does not open; the command says it once, itself."""
    before = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(before)


def open_camera(index: int) -> cv2.VideoCapture:
    """``cv2.VideoCapture(index)``, or a :class:`UserError` when there is no such camera."""
    with _opencv_quiet():
        capture = cv2.VideoCapture(int(index))
        opened = capture.isOpened()
    if not opened:
        capture.release()
        raise UserError(
            f"camera {index} cannot be opened: there is no camera with that number, or another program is using it"
        )
    return capture


def apply_key(key: str, session: Session) -> bool:
    """Act on a key press; ``False`` when it asks to quit."""
    key = key.lower()
    if key in ("q", "\x1b"):
        return False
    if key == "c":
        session.calibrate()
        log.info("calibrating: sit upright for %.0f s", session.config.baseline_seconds)
    elif key == "p":
        if session.paused:
            session.resume()
        else:
            session.pause()
        log.info("%s", "paused" if session.paused else "watching again")
    return True


def status_line(result: FrameResult) -> str:
    """The state in a few words, as the window's caption and the terminal's status line show it."""
    state = result.state.replace("_", " ")
    message = result.reason if result.state == NOT_ASSESSED and result.reason else result.message
    words = message if state in message else (f"{state}: {message}" if message else state)
    return words + (f" | p(forward head) {result.smoothed:.2f}" if result.smoothed is not None else "")


class Display(Protocol):
    def show(self, rgb: np.ndarray, analysis: Any, result: FrameResult) -> None: ...

    def poll_key(self) -> str | None: ...

    def close(self) -> None: ...


class TerminalDisplay:
    """One status line on ``stream``: rewritten in place on a terminal, a new line per change otherwise;
    a bell and a line of its own for an alert. Keys come from the terminal when stdin is one."""

    def __init__(self, stream: TextIO | None = None, keys: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last: str | None = None
        self._width = 0
        self._keys = _TerminalKeys() if keys else None

    def show(self, rgb: np.ndarray, analysis: Any, result: FrameResult) -> None:
        line = status_line(result)
        if result.alert:
            self._newline()
            self.stream.write(f"\a{clock_text(result.time)} alert: {result.message}\n")
            self._last = None
        elif self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        elif result.state != self._last:
            self.stream.write(f"{clock_text(result.time)} {line}\n")
        self._last = result.state
        self.stream.flush()

    def _newline(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self._width = 0

    def poll_key(self) -> str | None:
        return self._keys.poll() if self._keys is not None else None

    def close(self) -> None:
        self._newline()
        self.stream.flush()
        if self._keys is not None:
            self._keys.close()


class _TerminalKeys:
    """Single key presses from a terminal without Enter (cbreak mode, restored on close; Ctrl-C still
    interrupts). No keys when stdin is not a terminal, or on a system without termios."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._saved: Any = None
        try:
            import termios
            import tty

            if sys.stdin.isatty():
                self._fd = sys.stdin.fileno()
                self._saved = termios.tcgetattr(self._fd)
                tty.setcbreak(self._fd)
        except (ImportError, OSError, ValueError):
            self._fd = None

    def poll(self) -> str | None:
        if self._fd is None or not select.select([self._fd], [], [], 0)[0]:
            return None
        return os.read(self._fd, 1).decode("utf-8", "replace") or None

    def close(self) -> None:
        if self._fd is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._fd = None


def window_available() -> bool:
    """Whether this OpenCV can open a window here (the headless build and a session without a display cannot)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        with _opencv_quiet():
            cv2.namedWindow(WindowDisplay.title, cv2.WINDOW_AUTOSIZE)
    except cv2.error:
        return False
    return True


class WindowDisplay:
    """A small OpenCV window: the frame with the landmarks BlazePose found and the state written on it, a
    red frame around it during an alert. Closing the window quits like ``q``."""

    title = "posture: watching (c calibrate, p pause, q quit)"

    def __init__(self) -> None:
        from posture.pose.drawing import draw_landmarks

        self._draw = draw_landmarks
        self._alert_until = -1.0
        self._closed = False

    def show(self, rgb: np.ndarray, analysis: Any, result: FrameResult) -> None:
        landmarks = getattr(analysis, "landmarks", None)
        picture = self._draw(rgb, landmarks, caption=status_line(result), max_side=WINDOW_SIDE)
        bgr = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
        if result.alert:
            self._alert_until = result.time + 5.0
            sys.stderr.write(f"\a{clock_text(result.time)} alert: {result.message}\n")
        if result.time <= self._alert_until or result.state == FORWARD and result.forward_for > 0:
            colour = (0, 0, 255) if result.time <= self._alert_until else (0, 140, 255)
            cv2.rectangle(bgr, (0, 0), (bgr.shape[1] - 1, bgr.shape[0] - 1), colour, 6)
        cv2.imshow(self.title, bgr)

    def poll_key(self) -> str | None:
        code = cv2.waitKey(1)
        try:
            if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                return "q"
        except cv2.error:
            return "q"
        return chr(code & 0xFF) if code >= 0 else None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(self.title)


@dataclass(frozen=True)
class LiveStats:
    """What the loop did with the camera's frames: every frame read was analysed or dropped."""

    frames_read: int
    frames_analysed: int
    frames_dropped: int
    most_held: int
    seconds: float


def run_live(
    capture: Capture,
    session: Session,
    display: Display,
    on_row: Callable[[FrameResult], None],
    *,
    clock: Callable[[], float] = time.monotonic,
    max_fps: float | None = None,
) -> LiveStats:
    """Watch ``capture`` until it ends, ``q`` is pressed or Ctrl-C (module docstring); each row goes to
    ``on_row``. ``max_fps``: analyse at most this many frames a second (the rest are dropped), to leave
    the CPU to other work. Times are seconds since the loop started."""
    start = clock()
    holder = NewestFrame()
    reader = CameraReader(capture, holder, lambda: clock() - start)
    analysed = skipped = 0
    due = 0.0
    reader.start()
    try:
        while True:
            key = display.poll_key()
            if key is not None and not apply_key(key, session):
                break
            item = holder.take(timeout=0.05)
            if item is None:
                if holder.finished:
                    break
                continue
            frame, stamp = item
            if max_fps is not None and stamp < due:
                skipped += 1
                continue
            due = stamp + 1.0 / max_fps if max_fps is not None else 0.0
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            result, analysis = session.update_frame(rgb, stamp)
            analysed += 1
            on_row(result)
            display.show(rgb, analysis, result)
    except KeyboardInterrupt:
        log.info("stopped (Ctrl-C)")
    finally:
        reader.stop()
        display.close()
    if reader.error:
        log.warning("the camera stopped: %s", reader.error)
    return LiveStats(
        frames_read=holder.offered,
        frames_analysed=analysed,
        frames_dropped=holder.dropped + skipped + holder.pending,
        most_held=holder.most_held,
        seconds=clock() - start,
    )


def clock_text(seconds: float) -> str:
    """``hh:mm:ss`` of a time in seconds (where in a video or a sitting something happened)."""
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


__all__ = [
    "KEYS_HELP",
    "CameraReader",
    "LiveStats",
    "NewestFrame",
    "TerminalDisplay",
    "WindowDisplay",
    "apply_key",
    "clock_text",
    "open_camera",
    "run_live",
    "status_line",
    "window_available",
]
