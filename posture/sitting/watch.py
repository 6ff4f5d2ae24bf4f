"""``python -m posture.watch``: watch a sitting in a video file, or live at the desktop camera.

Why a command: people who care about a forward head sit at a laptop for hours. One photo's answer
does not help them; a record of the sitting does (when the head came forward, for how long, how
often an alert would have come), and so does a monitor at the camera that says so only when it
lasts. Both are the one :class:`~posture.sitting.session.Session` over the same Predictor as photos, with a
BlazePose that tracks the person from frame to frame (``PoseDetector(video=True)``), and the same
options (:class:`~posture.sitting.session.WatchConfig`'s fields, generated here as ``--alert-after``, ...).

- ``python -m posture.watch VIDEO... [--fps N]``: every video (checked first: a missing, empty,
  damaged or cut-short file is one ``error:`` line before any work) is read frame by frame
  (:mod:`posture.io.video`) and its record written to ``watch/<name>/`` (``--out``): ``frames.csv``
  (a row per analysed frame), ``summary.json`` and ``timeline.png`` (:mod:`posture.sitting.record`).
  ``--json``: one JSON object per analysed frame on stdout as it is analysed.
- ``python -m posture.watch --camera 0``: the live loop (:mod:`posture.sitting.camera`): a window, or one status
  line in the terminal; keys ``c`` calibrate, ``p`` pause / resume, ``q`` quit; Ctrl-C ends it the
  same way, with the summary (and the record, with ``--out``).

Frames are never written or logged: the record holds numbers and words only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from posture.cli import UserError, add_logging_flags, add_options, config_from_args, option, run_main, setup_logging
from posture.io.video import VIDEO_EXTENSIONS, VideoReader, probe_video
from posture.sitting.camera import clock_text
from posture.sitting.record import SittingRecord, check_record_folder, recording
from posture.sitting.session import FrameResult, Session, WatchConfig

log = logging.getLogger(__name__)

#: Where records go without ``--out``.
DEFAULT_OUT = "watch"


@dataclass(frozen=True)
class WatchCommand:
    """The command's own options (the sitting's are :class:`WatchConfig`'s)."""

    videos: tuple[str, ...] = field(
        default=(),
        metadata=option(
            f"video files to watch ({', '.join(e.lstrip('.') for e in VIDEO_EXTENSIONS)})",
            positional=True,
            metavar="VIDEO",
            nargs="*",
        ),
    )
    camera: int | None = field(
        default=None, metadata=option("watch this camera live instead (0: the first one)", metavar="INDEX")
    )
    run: str | None = field(
        default=None,
        metadata=option("trained pose-based run folder", default_text="the newest run under models/", flag="--run"),
    )
    fps: float | None = field(
        default=None,
        metadata=option(
            "analyse at most this many frames per second (a video: a subsample of its frames; the camera: frames in "
            "between are dropped, leaving the CPU to other work)",
            default_text="every frame of a video; as many as keep up with the camera",
        ),
    )
    out: str | None = field(
        default=None,
        metadata=option(
            "folder for the records: a video's goes into OUT/<its name>/; the camera's, only when --out is given, "
            "into OUT/camera-<date>-<time>/",
            default_text=f"{DEFAULT_OUT}/ for videos",
        ),
    )
    as_json: bool = field(
        default=False,
        metadata=option(
            "one JSON object per analysed frame on stdout (time, label or null with a reason, state, smoothed, "
            "alert, message, ...)",
            flag="--json",
        ),
    )
    overwrite: bool = field(default=False, metadata=option("replace a record already in the output folder"))
    calibrate: bool = field(
        default=False,
        metadata=option(
            "start with the 'sit upright' step: the first --baseline-seconds of assessed frames become your "
            "baseline (otherwise it is learnt from your most upright stretch)"
        ),
    )
    no_window: bool = field(
        default=False, metadata=option("camera: one status line in the terminal instead of a window")
    )
    progress: bool = field(default=True, metadata=option("no progress bar while a video is read"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "videos", tuple(self.videos))
        if bool(self.videos) == (self.camera is not None):
            raise UserError("give video files or --camera INDEX (one of the two)")
        if self.camera is not None and self.camera < 0:
            raise UserError("--camera must be 0 or more")
        if self.fps is not None and not (0 < self.fps < float("inf")):
            raise UserError("--fps must be a number above 0")


def resolve_run(run: str | None, models_dir: str | Path = "models") -> Path:
    """``--run`` if given, else the newest run under ``models/`` (as the web demo does)."""
    from posture.runs.checkpoint import find_latest_run

    if run is not None:
        return Path(run)
    latest = find_latest_run(models_dir)
    if latest is None:
        raise UserError(
            f"no trained run under {models_dir}/ and no --run given; train a pose-based one with "
            "`python -m posture.finetune --data DS --out models/RUN --model pose`"
        )
    log.info("using the newest run: %s", latest)
    return latest


def stream_predictor(run: str | Path) -> Any:
    """A Predictor for one stream: the run's own, with a BlazePose in tracking (video) mode that is this
    stream's alone (its tracking state belongs to one sequence of frames)."""
    from posture.inference.predict import Predictor
    from posture.pose import detector as pose

    return Predictor.from_run(run, detector=pose.PoseDetector(video=True))


class _Rows:
    """Where a sitting's rows go as they come: the record (if any) and, with ``as_json``, a JSON line each."""

    def __init__(self, record: SittingRecord | None, stream: TextIO, as_json: bool, source: dict[str, Any]) -> None:
        self.record, self.stream, self.as_json, self.source = record, stream, as_json, source

    def __call__(self, row: FrameResult) -> None:
        if self.record is not None:
            self.record.add(row)
        if self.as_json:
            print(json.dumps({**self.source, **row.to_dict()}), file=self.stream, flush=True)


def watch_video(
    path: str | Path,
    predictor: Any,
    config: WatchConfig,
    *,
    fps: float | None = None,
    out: str | Path | None = None,
    as_json: bool = False,
    calibrate: bool = False,
    stream: TextIO | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Watch one video file and return its summary (:meth:`Session.summary` plus the video's numbers).

    ``predictor``: this stream's own (:func:`stream_predictor`). ``out``: the folder its record
    replaces (``None``: none written). ``as_json``: a JSON line per analysed frame on ``stream``;
    otherwise a line per alert. Memory does not grow with the video's length: frames are read one at
    a time and rows written as they come. A damaged file is a :class:`UserError` naming it.
    """
    stream = stream or sys.stdout
    reader = VideoReader(path, fps)
    session = Session(predictor, config, keep_rows=0)
    if calibrate:
        session.calibrate()
    name = reader.path.name
    last = 0.0

    def watch(record: SittingRecord | None) -> dict[str, Any]:
        nonlocal last
        rows = _Rows(record, stream, as_json, {"video": name})
        bar = tqdm(total=reader.info.expected_frames(fps), desc=name, unit="frame", disable=None if progress else True)
        with bar:
            for frame in reader:
                result = session.update(frame.rgb, frame.time)
                rows(result)
                last = frame.time
                if result.alert and not as_json:
                    bar.write(f"{name} {clock_text(result.time)} alert: {result.message}", file=stream)
                bar.update()
        return {
            "video": name,
            "duration_seconds": round(max(last, reader.info.duration or 0.0), 2),
            "frames_read": reader.frames_read,
            "frames_analysed": reader.frames_kept,
            "video_fps": round(reader.info.fps, 3),
            "analysed_fps": fps,
            "run": str(predictor.run_dir) if getattr(predictor, "run_dir", None) else None,
            **session.summary(),
            "config": asdict(config),
        }

    return _recorded(watch, out, config, f"{name}: posture over time")


def watch_camera(
    capture: Any,
    predictor: Any,
    config: WatchConfig,
    display: Any,
    *,
    out: str | Path | None = None,
    as_json: bool = False,
    calibrate: bool = False,
    fps: float | None = None,
    stream: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Watch a camera until it ends, ``q`` or Ctrl-C (:func:`posture.sitting.camera.run_live`); returns the summary.

    ``out``: the folder a record is written into (``None``: none)."""
    from posture.sitting.camera import run_live

    stream = stream or sys.stdout
    session = Session(predictor, config, keep_rows=0)
    if calibrate:
        session.calibrate()

    def watch(record: SittingRecord | None) -> dict[str, Any]:
        rows = _Rows(record, stream, as_json, {})
        stats = run_live(capture, session, display, rows, clock=clock, max_fps=fps)
        if stats.frames_read == 0:
            raise UserError("the camera opened but gave no frames (is another program using it?)")
        return {**asdict(stats), "seconds": round(stats.seconds, 1), **session.summary(), "config": asdict(config)}

    return _recorded(watch, out, config, "camera: posture over time")


def _recorded(
    watch: Callable[[SittingRecord | None], dict[str, Any]], out: str | Path | None, config: WatchConfig, title: str
) -> dict[str, Any]:
    """``watch(record)``, its summary finishing a record that replaces ``out`` once whole; or ``watch(None)``."""
    if out is None:
        return watch(None)
    with recording(out, config, title=title) as record:
        summary = watch(record)
        record.finish(summary)
        return summary


def summary_text(summary: dict[str, Any], name: str) -> str:
    """A few lines a person reads: how long, how much of it upright / forward / not assessed, alerts."""
    share = summary["share"]
    lines = [
        f"{name}: watched {_duration(summary['watched_seconds'])} ({summary['frames']} frames analysed)",
        f"  upright {share['upright']:.0%}, forward head {share['forward_head']:.0%}, "
        f"not assessed {share['not_assessed']:.0%}; longest forward stretch "
        f"{_duration(summary['longest_forward_seconds'])}; alerts: {summary['alerts']}",
        f"  baseline: {summary['baseline'] or 'none yet (too little assessed time)'}",
    ]
    if "frames_dropped" in summary:
        lines.append(
            f"  camera frames: {summary['frames_read']} read, {summary['frames_analysed']} analysed, "
            f"{summary['frames_dropped']} dropped (the loop takes the newest)"
        )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def record_folders(videos: Sequence[str], out: str | None) -> list[Path]:
    """``OUT/<video name>/`` per video; two videos of the same name would share one, so that is refused."""
    root = Path(out if out is not None else DEFAULT_OUT)
    folders = [root / Path(v).stem for v in videos]
    seen: dict[Path, str] = {}
    for video, folder in zip(videos, folders, strict=True):
        if folder in seen:
            raise UserError(
                f"{seen[folder]} and {video} would both write their record to {folder}; rename one, or watch them "
                "one at a time with different --out folders"
            )
        seen[folder] = video
    return folders


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m posture.watch",
        description="Watch a sitting: a video file, or you at the camera. Every frame goes through the run's "
        "Predictor (BlazePose tracking the person); the answers are compared with your own upright baseline (the "
        "--calibrate step, or your most upright stretch), smoothed, and an alert comes only when a forward head "
        f"lasts (--alert-after), then not again before --cooldown. Videos: a record per video in {DEFAULT_OUT}/"
        "<name>/ (frames.csv, a row per analysed frame; summary.json; timeline.png) and a short summary. The "
        "camera: a window with the landmarks and the state (or, with --no-window or without a display, one "
        "status line); keys c calibrate, p pause/resume, q quit; Ctrl-C ends with the summary. Frames are never "
        "written. Exit code 0, or 2 with one error line for a usage mistake (a missing, empty, damaged or "
        "cut-short video, no camera, a run that reads no posture geometry).",
        epilog="examples:\n"
        "  python -m posture.watch --run models/pose sitting.mp4 --fps 5\n"
        "  python -m posture.watch sitting.mp4 --json --alert-after 20 > frames.jsonl\n"
        "  python -m posture.watch --camera 0 --calibrate --out watch/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(parser, WatchCommand)
    add_options(parser, WatchConfig)
    add_logging_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    cfg = config_from_args(WatchCommand, args)
    config = config_from_args(WatchConfig, args)
    if cfg.camera is not None:
        return _main_camera(cfg, config)
    for video in cfg.videos:  # every file checked before any is watched
        probe_video(video)
    folders = record_folders(cfg.videos, cfg.out)
    for folder in folders:
        check_record_folder(folder, cfg.overwrite, f"--out {cfg.out or DEFAULT_OUT}")
    run = resolve_run(cfg.run)
    for video, folder in zip(cfg.videos, folders, strict=True):
        summary = watch_video(
            video,
            stream_predictor(run),
            config,
            fps=cfg.fps,
            out=folder,
            as_json=cfg.as_json,
            calibrate=cfg.calibrate,
            progress=cfg.progress,
        )
        _report(summary, Path(video).name, folder, cfg.as_json)
    return 0


def _main_camera(cfg: WatchCommand, config: WatchConfig) -> int:
    from posture.sitting.camera import TerminalDisplay, WindowDisplay, open_camera, window_available

    predictor = stream_predictor(resolve_run(cfg.run))
    Session(predictor, config)  # a run that reads no geometry is refused before the camera turns on
    folder = None
    if cfg.out is not None:
        folder = Path(cfg.out) / time.strftime("camera-%Y%m%d-%H%M%S")
        check_record_folder(folder, cfg.overwrite, f"--out {cfg.out}")
    assert cfg.camera is not None
    capture = open_camera(cfg.camera)
    try:
        if not cfg.no_window and window_available():
            display: Any = WindowDisplay()
        else:
            if not cfg.no_window:
                log.info("no window can be shown here (no display, or OpenCV without one): a status line instead")
            display = TerminalDisplay()
        log.info("watching camera %d; %s", cfg.camera, "keys: c calibrate, p pause/resume, q quit; Ctrl-C ends")
        summary = watch_camera(
            capture,
            predictor,
            config,
            display,
            out=folder,
            as_json=cfg.as_json,
            calibrate=cfg.calibrate,
            fps=cfg.fps,
        )
    finally:
        capture.release()
    _report(summary, f"camera {cfg.camera}", folder, cfg.as_json)
    return 0


def _report(summary: dict[str, Any], name: str, folder: Path | None, as_json: bool) -> None:
    text = summary_text(summary, name) + (f"\n  record: {folder}/" if folder is not None else "")
    if as_json:  # stdout holds the frames' JSON lines only
        log.info("%s", text)
    else:
        print(text, flush=True)


if __name__ == "__main__":
    sys.exit(run_main(main))
