"""``python -m app.label``: click the ear's tragus and C7 on each photo; get the CVA, the label and a CSV.

The page shows the next photo this labeler has not answered. Click the tragus, then C7: the
points, the line, the horizontal and the craniovertebral angle are drawn, with the label the
angle implies (forward head below ``--threshold``). *Accept* saves and moves on; *Redo points*
clears the clicks; *Skip (unusable)* saves the label ``unusable`` (``posture.ingest`` rejects those
files with ``unknown_label``); *Previous* steps back through the answers (answering again
supersedes the old row). *Forward head* / *Normal* save a class without points (quick mode).
Keys: Enter or a = accept, r = redo, s = skip, p or ← = previous, f = forward head, n = normal.

Every answer is appended to ``--out`` at once and durably (see :mod:`posture.io.labelstore`), so the
tool can be closed or killed at any time; reopening the same folder and CSV continues where it
stopped. With ``--run models/RUN`` the model's guess is shown beside the photo, and
``--order uncertainty`` puts the photos the model is least sure about first.

``python -m posture.ingest SRC --labels labels.csv --cva-threshold T`` takes the CSV as it is;
it derives labels from the stored points at its own threshold, so pass the ``--threshold`` used here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.label_overlay import draw_points, placeholder
from app.label_session import LabelConfig, LabelSession
from app.safe_text import markdown_text as md
from app.scratch import CACHE_SWEEP, private_gradio_temp, stop_on_sigterm
from posture.cli import add_logging_flags, add_options, config_from_args, run_main, setup_logging
from posture.data.labels import FORWARD_HEAD, NORMAL
from posture.io.labelstore import UNUSABLE

log = logging.getLogger(__name__)

#: Keyboard shortcuts: key -> button elem_id. Ignored while typing in a text field.
SHORTCUTS = {
    "Enter": "lbl-accept",
    "a": "lbl-accept",
    "r": "lbl-redo",
    "s": "lbl-skip",
    "p": "lbl-prev",
    "ArrowLeft": "lbl-prev",
    "f": "lbl-forward",
    "n": "lbl-normal",
}

_SHORTCUT_JS = """
<script>
document.addEventListener('keydown', (e) => {
  const t = e.target;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable)) return;
  const keys = %s;
  const id = keys[e.key];
  if (!id) return;
  const el = document.getElementById(id);
  const btn = el && (el.tagName === 'BUTTON' ? el : el.querySelector('button'));
  if (btn) { e.preventDefault(); btn.click(); }
});
</script>
"""

_CSS = """
#lbl-image img { cursor: crosshair; }
#lbl-image { max-height: 80vh; }
"""


def _new_tab_state() -> dict[str, Any]:
    """Per-browser-tab state: the image on screen and the clicks so far (original pixels)."""
    return {"file": None, "points": []}


class LabelPage:
    """Event handlers of the page; each returns the full set of outputs so the page never goes stale."""

    def __init__(self, session: LabelSession) -> None:
        self.session = session

    # outputs: image, instructions, progress, model, message, state
    def _render(self, state: dict[str, Any], message: str = "") -> tuple[Any, ...]:
        s = self.session
        filename = state["file"]
        progress = s.progress().format()
        if filename is None:
            done = placeholder("All images are labeled. Use Previous to review.")
            text = "### Done\nEvery image in the folder has an answer from you." + self._left_out_text()
            return (done, text, progress, "", message, state)
        view = s.view(filename)
        points = [tuple(p) for p in state["points"]]
        label, cva = None, None
        if len(points) == 2:
            try:
                cva, label = s.measure(points[0], points[1])
            except ValueError:
                cva = None
        shown = draw_points(
            view.display, [view.to_display(*p) for p in points], s.config.threshold if len(points) == 2 else None, label
        )
        index = s.files.index(filename) + 1
        lines = [f"### {md(filename)}  ({index} of {len(s.files)})"]
        previous = s.answer(filename)
        if previous is not None:
            lines.append(
                f"Answered before: **{md(previous.label)}**"
                + ("" if previous.cva_deg is None else f" (CVA {previous.cva_deg:.1f}°)")
                + " — a new answer replaces it."
            )
        if view.error:
            lines.append(f"This file cannot be opened ({md(view.error)}): press **Skip (unusable)**.")
        elif len(points) == 0:
            lines.append("Click the ear's **tragus**.")
        elif len(points) == 1:
            lines.append("Now click **C7** (the bump at the base of the neck).")
        elif label is not None:
            warn = "  ⚠ the ear is below C7: check the clicks." if cva is not None and cva < 0 else ""
            lines.append(
                f"CVA **{cva:.1f}°** → **{label.replace('_', ' ')}** (threshold {s.config.threshold:g}°). "
                f"Accept (Enter) or redo (r).{warn}"
            )
        else:
            lines.append("The two points coincide: redo them.")
        return (shown, "\n\n".join(lines) + self._left_out_text(), progress, self._model_text(filename), message, state)

    def _left_out_text(self, most: int = 8) -> str:
        """The files this session cannot show or save, with the reason: visible, so none is lost silently.

        Names (and reasons, which quote names) are shown as text, never as markup: a file name may
        hold tags, links or back-ticks (:func:`app.safe_text.markdown_text`).
        """
        skipped = self.session.skipped
        if not skipped:
            return ""
        lines = [f"- {md(name)}: {md(reason)}" for name, reason in skipped[:most]]
        if len(skipped) > most:
            lines.append(f"- … and {len(skipped) - most} more (listed in the log)")
        return f"\n\n**Left out of this session ({len(skipped)}):**\n" + "\n".join(lines)

    def _model_text(self, filename: str) -> str:
        pred = self.session.predict(filename)
        if pred is None:
            return ""
        probs = " · ".join(f"{md(k.replace('_', ' '))} {v:.0%}" for k, v in pred.probabilities.items())
        return f"**Model's guess:** {md(pred.label.replace('_', ' '))} ({pred.confidence:.0%})  \n{probs}"

    def _goto(self, filename: str | None, message: str = "") -> tuple[Any, ...]:
        """Show ``filename``; an answered one comes back with its stored points for review."""
        state = _new_tab_state()
        state["file"] = filename
        if filename is not None:
            rec = self.session.answer(filename)
            if rec is not None and rec.has_points:
                state["points"] = [[rec.ear_x, rec.ear_y], [rec.c7_x, rec.c7_y]]
        outputs = self._render(state, message)
        self.session.prefetch(self.session.next_pending(skip=filename))  # decode the next photo meanwhile
        return outputs

    def load(self) -> tuple[Any, ...]:
        return self._goto(self.session.next_pending())

    def click(self, state: dict[str, Any], evt: Any) -> tuple[Any, ...]:
        if state["file"] is None or evt is None or evt.index is None:
            return self._render(state)
        view = self.session.view(state["file"])
        if view.error:
            return self._render(state)
        x, y = evt.index[0], evt.index[1]
        points = [] if len(state["points"]) >= 2 else list(state["points"])  # a third click starts over
        ox, oy = view.to_original(float(x), float(y))
        points.append([round(ox, 1), round(oy, 1)])  # the CSV's precision, so the shown angle is the saved one
        return self._render({**state, "points": points})

    def accept(self, state: dict[str, Any]) -> tuple[Any, ...]:
        filename = state["file"]
        if filename is None:
            return self._render(state)
        if len(state["points"]) < 2:
            return self._render(state, "Click the tragus and C7 first (or use the class buttons).")
        (ex, ey), (cx, cy) = state["points"]
        try:
            rec = self.session.answer_points(filename, (ex, ey), (cx, cy))
        except ValueError as exc:
            return self._render(state, f"Not saved: {md(exc)}.")
        return self._goto(
            self.session.next_pending(), f"Saved {md(filename)}: {md(rec.label)} (CVA {rec.cva_deg:.1f}°)."
        )

    def answer_class(self, state: dict[str, Any], label: str) -> tuple[Any, ...]:
        filename = state["file"]
        if filename is None:
            return self._render(state)
        try:
            self.session.answer_class(filename, label)
        except ValueError as exc:
            return self._render(state, f"Not saved: {md(exc)}.")
        return self._goto(self.session.next_pending(), f"Saved {md(filename)}: {md(label)}.")

    def redo(self, state: dict[str, Any]) -> tuple[Any, ...]:
        return self._render({**state, "points": []})

    def previous(self, state: dict[str, Any]) -> tuple[Any, ...]:
        target = self.session.previous_of(state["file"])
        if target is None:
            return self._render(state, "Nothing answered before this one.")
        return self._goto(target)


def build_app(session: LabelSession):  # type: ignore[no-untyped-def]
    """The Gradio Blocks page over a session (launch it with :func:`launch_kwargs`)."""
    import gradio as gr

    from app.api_errors import GuardedBlocks

    page = LabelPage(session)
    cfg = session.config
    # GuardedBlocks: a malformed API call gets a short generic answer and one bounded log line.
    with GuardedBlocks(title="posture · labeling", analytics_enabled=False, delete_cache=CACHE_SWEEP) as demo:
        gr.Markdown(f"## Posture labeling — {md(cfg.images)}  →  {md(cfg.out)}  ·  labeler **{md(cfg.labeler)}**")
        progress = gr.Markdown(elem_id="lbl-progress")
        with gr.Row():
            with gr.Column(scale=3):
                image = gr.Image(
                    type="numpy",
                    interactive=False,
                    show_label=False,
                    elem_id="lbl-image",
                    buttons=[],
                    format="png",
                    height=640,
                )
            with gr.Column(scale=1, min_width=260):
                info = gr.Markdown(elem_id="lbl-info")
                with gr.Row():
                    accept = gr.Button("Accept (Enter)", variant="primary", elem_id="lbl-accept")
                    redo = gr.Button("Redo points (r)", elem_id="lbl-redo")
                with gr.Row():
                    skip = gr.Button("Skip – unusable (s)", variant="stop", elem_id="lbl-skip")
                    prev = gr.Button("← Previous (p)", elem_id="lbl-prev")
                gr.Markdown("Quick mode, when the points cannot be placed:")
                with gr.Row():
                    forward = gr.Button("Forward head (f)", elem_id="lbl-forward")
                    normal = gr.Button("Normal (n)", elem_id="lbl-normal")
                model = gr.Markdown(elem_id="lbl-model")
                message = gr.Markdown(elem_id="lbl-message")
        state = gr.State(_new_tab_state())
        outputs = [image, info, progress, model, message, state]

        def on_click(st, evt):  # type: ignore[no-untyped-def]
            return page.click(st, evt)

        # Gradio finds the event payload by the annotation; set it as a real class, since this
        # module's string annotations cannot see the local ``gr``.
        on_click.__annotations__ = {"st": dict, "evt": gr.SelectData}

        demo.load(page.load, inputs=None, outputs=outputs)
        image.select(on_click, inputs=[state], outputs=outputs)
        accept.click(page.accept, inputs=[state], outputs=outputs)
        redo.click(page.redo, inputs=[state], outputs=outputs)
        prev.click(page.previous, inputs=[state], outputs=outputs)
        skip.click(lambda st: page.answer_class(st, UNUSABLE), inputs=[state], outputs=outputs)
        forward.click(lambda st: page.answer_class(st, FORWARD_HEAD), inputs=[state], outputs=outputs)
        normal.click(lambda st: page.answer_class(st, NORMAL), inputs=[state], outputs=outputs)
    return demo


def launch_kwargs(config: LabelConfig) -> dict[str, Any]:
    """Arguments for ``Blocks.launch``: local only, no SSR (no Node needed), shortcuts injected, and
    malformed requests answered with a fixed sentence (:mod:`app.api_errors`)."""
    import json

    from app.api_errors import guarded_app_kwargs

    return {
        "app_kwargs": guarded_app_kwargs(),
        "show_error": False,
        "server_name": config.host,
        "server_port": config.port,
        "ssr_mode": False,
        "share": False,
        "head": _SHORTCUT_JS % json.dumps(SHORTCUTS),
        "css": _CSS,
        "footer_links": [],
    }


def load_predictor(run: Path | None):  # type: ignore[no-untyped-def]
    if run is None:
        return None
    from posture.inference.predict import Predictor

    return Predictor.from_run(run)


def build_parser() -> argparse.ArgumentParser:
    """Options generated from :class:`~app.label_session.LabelConfig`: each is defined once, beside its field."""
    parser = argparse.ArgumentParser(
        prog="python -m app.label",
        description="Label side-view photos the clinical way: click the ear's tragus and C7; the "
        "craniovertebral angle (CVA) decides the label (forward head below --threshold). "
        "Answers are appended to --out as they are given; rerun the same command to resume. "
        "The CSV (filename,label,cva_deg,ear_x,ear_y,c7_x,c7_y,labeler,timestamp; points in "
        "original pixels after EXIF rotation) is read by `python -m posture.ingest --labels CSV`, "
        "which recomputes labels from the points with its --cva-threshold: give it the same threshold. "
        "Keys: Enter/a accept, r redo, s skip (unusable), p/← previous, f forward head, n normal.",
    )
    add_options(parser, LabelConfig)
    add_logging_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    if not args.verbose:  # Gradio's HTTP client logs every local request at INFO
        logging.getLogger("httpx").setLevel(logging.WARNING)
    config = config_from_args(LabelConfig, args)
    config.check_paths()  # before the run's model loads: a missing folder is the first thing to hear about
    session = LabelSession(config, predictor=load_predictor(config.run))
    stop_on_sigterm()
    try:
        log.info("%s", session.progress().format().replace("**", ""))
        # The PNG copies of the photos shown go to a private folder, never the shared /tmp/gradio.
        with private_gradio_temp("posture-label-"):
            build_app(session).launch(**launch_kwargs(config))
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
