"""The Live tab's page: the browser's webcam streamed to the tab's sitting (:mod:`app.live`).

How the stream behaves (Gradio 6's ``.stream()``, read in its queue): the page grabs a frame every
``stream_every`` seconds and posts it; the server keeps only the newest frame of a stream (each post
replaces the one before), and the stream's loop analyses whichever is newest when the last analysis
is done. So a frame that cannot be analysed in time is dropped, never queued, and what the page
shows stays close to now however slow the machine. ``concurrency_limit`` bounds how many webcams
are analysed at once (the others wait in the queue, and the page says so), and ``time_limit`` ends
each turn after :data:`TURN_SECONDS`: the page then rejoins the queue by itself, so waiting tabs
take turns instead of waiting forever. The tab's sitting lives on between turns.

The frame arrives as a ``data:`` URL inside the request; :class:`app.components.UploadedImage`
measures it against the upload cap and hands its bytes over, which are decoded in memory with the
pixel cap (:func:`app.uploads.decode_upload`). No frame and no drawing is ever written to disk.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import gradio as gr

from app.components import UploadedImage
from app.config import AppConfig
from app.live import LIVE_DIR, LiveError, LiveSession, LiveSessions
from app.safe_text import html_text
from app.uploads import UploadError, decode_upload
from posture.inference.predict import Predictor
from posture.io.images import MODEL_MAX_SIDE

log = logging.getLogger(__name__)

#: Each stream's turn (seconds) before it rejoins the queue (``time_limit``).
TURN_SECONDS = 60
#: A tab's sitting is forgotten this long after its last frame or click (``gr.State`` time to live);
#: a closed tab's at once.
IDLE_SECONDS = 3600

#: The alert's sound: a short two-tone beep made in the browser (Web Audio), no audio file. Runs when
#: the alert component loads and after each update; beeps once per new alert unless muted.
#: ``data-beeps`` on the component counts the beeps played (for people and tests checking it).
BEEP_JS = """
let heard = null;
let audio = null;
function beep() {
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    if (audio.state === "suspended") { audio.resume(); }
    [[880, 0], [660, 0.18]].forEach(([hz, at]) => {
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.frequency.value = hz;
      gain.gain.setValueAtTime(0.25, audio.currentTime + at);
      gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + at + 0.16);
      tone.connect(gain).connect(audio.destination);
      tone.start(audio.currentTime + at);
      tone.stop(audio.currentTime + at + 0.17);
    });
    element.dataset.beeps = String(Number(element.dataset.beeps || 0) + 1);
  } catch (err) {
    console.warn("the alert could not play a sound", err);
  }
}
function listen() {
  const banner = element.querySelector("[data-alert]");
  if (!banner) { return; }
  const count = Number(banner.dataset.alert);
  if (heard !== null && count > heard && banner.dataset.sound === "on" && banner.classList.contains("live-alert")) {
    beep();
  }
  heard = count;
}
listen();
watch("value", listen);
"""

PRIVACY = (
    "**Frames stay in memory.** Each webcam frame is analysed in this server's memory and dropped: none is "
    "written to disk, logged or sent anywhere else. This tab keeps only numbers and words about your "
    "sitting (the state, the smoothed probability, alerts), and forgets them when you close the tab. "
    "“Download this session (CSV)” writes those rows, never a picture."
)


def live_tab(predictor: Predictor, config: AppConfig, work_dir: Path) -> LiveSessions | None:
    """Build the Live tab inside the current ``gr.Blocks``; the app's open sittings, ``None`` for a
    run that reads no posture geometry (the tab then explains why)."""
    with gr.Tab("Live"):
        if not predictor.uses_pose:
            gr.Markdown(
                "**Live watching needs a pose-based run** (`--model pose` or a `CNN+pose` fusion): a sitting "
                "is judged against your own upright posture, which only posture geometry can hold. This run "
                f"({predictor.config.get('architecture')}) reads pixels only."
            )
            return None
        sessions = LiveSessions(
            predictor, config.watch_config, max_open=max(8, 4 * config.live_sessions), clock=time.monotonic
        )
        _live_components(sessions, config, work_dir)
        return sessions


def _live_components(sessions: LiveSessions, config: AppConfig, work_dir: Path) -> None:
    watch = config.watch_config
    gr.Markdown(
        "Watch a sitting: turn on your webcam and press record. Bad posture is only called when it "
        f"**lasts**: an alert comes after {watch.alert_after:.0f} s of forward head (then at most every "
        f"{watch.cooldown:.0f} s). Start with “Sit upright for {watch.baseline_seconds:.0f} s” so you are "
        f"compared with your own upright posture.\n\n{PRIVACY}"
    )
    live = gr.State(None, time_to_live=IDLE_SECONDS, delete_callback=sessions.release)
    with gr.Row():
        with gr.Column():
            camera = UploadedImage(
                sources=["webcam"], streaming=True, label="Your webcam", height=360, elem_id="live_camera"
            )
            camera.max_bytes = config.max_file_bytes
            with gr.Row():
                calibrate = gr.Button(f"Sit upright for {watch.baseline_seconds:.0f} s", elem_id="live_calibrate")
                pause = gr.Button("Pause", elem_id="live_pause")
                reset = gr.Button("New sitting", elem_id="live_reset")
            mute = gr.Checkbox(False, label="Mute the alert sound", elem_id="live_mute")
            download = gr.Button("Download this session (CSV)", elem_id="live_download")
            csv_file = gr.File(label="This session as CSV", interactive=False, elem_id="live_csv")
            note = gr.Markdown(elem_id="live_note")
        with gr.Column():
            alert = gr.HTML(elem_id="live_alert", js_on_load=BEEP_JS)
            status = gr.HTML("<p>Waiting for the webcam.</p>", elem_id="live_status")
            overlay = gr.HTML(elem_id="live_overlay")
    timeline = gr.HTML(elem_id="live_timeline")

    def on_frame(frame: bytes | str | None, state: LiveSession | None, muted: bool, request: gr.Request) -> Any:
        """One webcam frame → (picture, status, timeline, alert, the tab's sitting); unchanged parts skipped."""
        if frame is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), state
        current = _session(sessions, state, request)
        try:
            rgb = decode_upload(frame, config.max_pixels, max_side=MODEL_MAX_SIDE)
        except UploadError as exc:
            message = f'<p class="live-error">This frame could not be read: {html_text(exc)}</p>'
            return gr.skip(), message, gr.skip(), gr.skip(), current
        try:
            view = current.frame(rgb, muted=bool(muted))
        except LiveError as exc:  # the tab's sitting was closed meanwhile (the tab went, or its state expired)
            raise gr.Error(html_text(exc), title="Live watching stopped", print_exception=False) from None
        return (_or_skip(view.overlay), view.status, _or_skip(view.timeline), _or_skip(view.alert), current)

    def start_baseline(state: LiveSession | None, request: gr.Request) -> tuple[LiveSession, str]:
        current = _session(sessions, state, request)
        return current, current.calibrate()

    def toggle_pause(state: LiveSession | None, request: gr.Request) -> tuple[LiveSession, Any, str]:
        current = _session(sessions, state, request)
        paused = current.toggle_pause()
        text = "Paused: frames are ignored and the clock stops until you resume." if paused else "Watching again."
        return current, gr.Button(value="Resume" if paused else "Pause"), text

    def new_sitting(state: LiveSession | None, request: gr.Request) -> tuple[LiveSession, Any, str]:
        current = _session(sessions, state, request)
        current.reset()
        return current, gr.Button(value="Pause"), "A new sitting started: the record and the baseline are gone."

    def download_csv(state: LiveSession | None, request: gr.Request) -> tuple[LiveSession, str, str]:
        current = _session(sessions, state, request)
        try:
            path, rows = current.write_csv(work_dir / LIVE_DIR)
        except LiveError as exc:
            raise gr.Error(html_text(exc), title="Nothing to download", print_exception=False) from None
        return current, str(path), f"This sitting's {rows} rows, one per frame analysed; no picture is in the file."

    camera.stream(
        on_frame,
        [camera, live, mute],
        [overlay, status, timeline, alert, live],
        stream_every=1.0 / config.live_fps,
        time_limit=TURN_SECONDS,
        concurrency_limit=config.live_sessions,
        concurrency_id="live",
        show_progress="hidden",
        api_name="live_frame",
    )
    calibrate.click(start_baseline, [live], [live, note], api_name="live_calibrate")
    pause.click(toggle_pause, [live], [live, pause, note], api_name="live_pause")
    reset.click(new_sitting, [live], [live, pause, note], api_name="live_reset")
    download.click(download_csv, [live], [live, csv_file, note], api_name="live_download")


def _session(sessions: LiveSessions, state: LiveSession | None, request: gr.Request) -> LiveSession:
    """The tab's sitting: the one its state holds, else the one its Gradio session opened (or a new one)."""
    if state is not None and not state.closed:
        return state
    try:
        return sessions.get(str(request.session_hash))
    except LiveError as exc:
        raise gr.Error(html_text(exc), title="Live watching is busy", print_exception=False) from None


def _or_skip(value: str | None) -> Any:
    return gr.skip() if value is None else value


def release_on_unload(sessions: LiveSessions) -> Any:
    """The function for ``Blocks.unload``: a closed tab's sitting is closed at once."""

    def release(request: gr.Request) -> None:
        sessions.release_key(str(request.session_hash))

    return release
