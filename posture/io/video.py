"""Video files as a stream of timestamped RGB frames, checked before the work starts.

Why a module of its own: a sitting recorded to a file is watched exactly like a live one (one
:class:`~posture.sitting.session.Session`), but a file can be wrong in ways a camera cannot: missing, empty,
not a video at all, or cut short (an interrupted download or copy). Each of those is a
:class:`~posture.cli.UserError` naming the file, found by :func:`probe_video` before minutes of
analysis, not a decoder's traceback at the end.

Reading goes through OpenCV's FFmpeg backend (mp4, mov, m4v, avi, webm, mkv). Frames are decoded
one at a time and handed on, so a video of hours costs the memory of one frame; ``fps`` subsamples
(a frame is *grabbed* to move on and only *retrieved*, i.e. converted, when it is kept).

A truncated file is the subtle case. OpenCV opens an mp4 cut in half only when its index sits at
the start; an avi or webm cut in half opens and announces its full frame count, then simply stops
early. So :func:`probe_video` also reads the last frame the file declares (a seek, cheap), and the
reader checks after the stream ends that it delivered what was declared.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from posture.cli import UserError
from posture.runtime.native_output import native_stderr_silenced

log = logging.getLogger(__name__)

#: File name endings read as videos (OpenCV's FFmpeg backend reads these containers).
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".webm", ".mkv")
#: Frames a video may deliver short of the count it declares and still count as whole: containers
#: estimate the count from the duration, which can be off by a frame or two.
MISSING_FRAMES_TOLERATED = 2
#: ...or this share of them, whichever is more.
MISSING_SHARE_TOLERATED = 0.02


@dataclass(frozen=True)
class VideoInfo:
    """What a video file declares about itself."""

    path: Path
    #: Frames per second as the container states it (0.0: it does not say).
    fps: float
    #: Frames the container declares (``None``: it does not say, e.g. some live-recorded webm files).
    frame_count: int | None
    width: int
    height: int

    @property
    def duration(self) -> float | None:
        """Seconds, from the declared frame count and rate (``None`` when either is unknown)."""
        if self.frame_count is None or self.fps <= 0:
            return None
        return self.frame_count / self.fps

    def expected_frames(self, fps: float | None) -> int | None:
        """About how many frames reading at ``fps`` keeps (for a progress bar's total)."""
        if self.frame_count is None:
            return None
        if fps is None or self.fps <= 0 or fps >= self.fps:
            return self.frame_count
        return max(1, math.ceil(self.frame_count * fps / self.fps))


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: its number in the file, its time in seconds from the start, its pixels (RGB)."""

    index: int
    time: float
    rgb: np.ndarray


#: FFmpeg reports a damaged file on the process's own stderr ("moov atom not found", "invalid len"), beside
#: the one ``error:`` line this project prints: it is silenced while a video is opened and read.
_quiet_decoder = native_stderr_silenced


def _open(path: Path) -> cv2.VideoCapture:
    # An absolute path: FFmpeg reads "name:rest" as a protocol ("concat:", "http:"); "/abs/name:rest" is a file.
    with _quiet_decoder():
        return cv2.VideoCapture(str(path.resolve()), cv2.CAP_FFMPEG)


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Check that ``path`` is a whole video OpenCV can read, and say what it declares; a
    :class:`UserError` naming the file otherwise (missing, empty, not a video, truncated)."""
    target = Path(path)
    if not target.exists():
        raise UserError(f"{target}: no such file")
    if not target.is_file():
        raise UserError(f"{target}: not a regular file (a folder, a device or a pipe), so not a video")
    if target.suffix.lower() not in VIDEO_EXTENSIONS:
        raise UserError(
            f"{target}: not a video file this command reads (its name ends in {target.suffix or 'nothing'}; "
            f"videos end in {', '.join(VIDEO_EXTENSIONS)}); for photos use python -m posture.predict"
        )
    if target.stat().st_size == 0:
        raise UserError(f"{target}: the file is empty (0 bytes)")
    capture = _open(target)
    try:
        if not capture.isOpened():
            raise UserError(f"{target}: not a video OpenCV can read (damaged, cut short, or not a video at all)")
        info = _declared(target, capture)
        with _quiet_decoder():
            first = capture.read()[0]
        if not first:
            raise UserError(f"{target}: the video holds no frame that can be decoded (damaged or empty)")
        if info.frame_count is not None and info.frame_count > 1:
            last = info.frame_count - 1 - _tolerated(info.frame_count)
            with _quiet_decoder():
                reached = last <= 0 or (capture.set(cv2.CAP_PROP_POS_FRAMES, last) and capture.grab())
            if not reached:
                raise UserError(_truncated(info, None))
    finally:
        capture.release()
    return info


def _declared(path: Path, capture: cv2.VideoCapture) -> VideoInfo:
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    count = float(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    # A still image read as a "video" declares a count of -2**63; a stream without one, 0 or -1.
    known = math.isfinite(count) and 0 < count < 2**40
    return VideoInfo(
        path=path,
        fps=fps if math.isfinite(fps) and 0 < fps < 10_000 else 0.0,
        frame_count=int(count) if known else None,
        width=width,
        height=height,
    )


def _tolerated(frame_count: int) -> int:
    return max(MISSING_FRAMES_TOLERATED, int(frame_count * MISSING_SHARE_TOLERATED))


def _truncated(info: VideoInfo, delivered: int | None) -> str:
    declared = f"{info.frame_count} frames" + (f" ({info.duration:.1f} s)" if info.duration else "")
    got = f"only {delivered} could be decoded" if delivered is not None else "its last frames cannot be decoded"
    return f"{info.path}: the video is damaged or cut short: it declares {declared} but {got}"


class VideoReader:
    """The frames of one video file, in order, at most ``fps`` per second of video (``None``: all).

    Iterate once; afterwards :attr:`frames_read` counts the frames decoded from the file and
    :attr:`frames_kept` the ones handed on. A file that ends well before the frame count it declares
    raises a :class:`UserError` at the end of the iteration (:func:`probe_video` catches most earlier).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float | None = None) -> None:
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise UserError(f"--fps must be a number above 0, got {fps}")
        self.info = probe_video(path)
        self.fps = fps
        self.frames_read = 0
        self.frames_kept = 0

    @property
    def path(self) -> Path:
        return self.info.path

    def __iter__(self) -> Iterator[VideoFrame]:
        capture = _open(self.info.path)
        if not capture.isOpened():
            raise UserError(f"{self.info.path}: the video can no longer be opened")
        step = 1.0 / self.fps if self.fps is not None else 0.0
        due, previous = 0.0, -math.inf
        try:
            while True:
                with _quiet_decoder():
                    if not capture.grab():
                        break
                time = self._time(capture, previous)
                self.frames_read += 1
                previous = time
                if time + 1e-6 < due:
                    continue
                with _quiet_decoder():
                    ok, bgr = capture.retrieve()
                if not ok or bgr is None:
                    break
                due = (math.floor(time / step + 1e-6) + 1) * step if step else 0.0
                self.frames_kept += 1
                yield VideoFrame(self.frames_read - 1, time, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        finally:
            capture.release()
        if self._ended_early(previous):
            raise UserError(_truncated(self.info, self.frames_read))

    def _ended_early(self, last_time: float) -> bool:
        """Fewer frames than declared *and* an end before the declared duration: a variable-rate video
        (a phone's, a browser's recording) may miss one of the two, a truncated one misses both."""
        declared, duration = self.info.frame_count, self.info.duration
        if declared is None or self.frames_read >= declared - _tolerated(declared):
            return False
        return duration is None or last_time + _tolerated(declared) / self.info.fps < duration

    def _time(self, capture: cv2.VideoCapture, previous: float) -> float:
        """The frame's own timestamp (variable-rate videos have one), or its number over the rate when the
        container gives none that moves forward."""
        stamp = float(capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
        if math.isfinite(stamp) and stamp > previous:
            return stamp
        rate = self.info.fps if self.info.fps > 0 else 30.0
        return max(self.frames_read / rate, previous + 1.0 / rate)


__all__ = ["VIDEO_EXTENSIONS", "VideoFrame", "VideoInfo", "VideoReader", "probe_video"]
