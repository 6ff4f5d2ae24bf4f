"""The Live tab's timeline: the smoothed p(forward head) and the state of a sitting, drawn as it grows.

Why a record of its own instead of redrawing :attr:`posture.sitting.session.Session.rows`: a sitting lasts
hours at several frames a second, and the page redraws the timeline every second. So
:class:`Timeline` keeps at most ``max_points`` points, one per time step: when it fills up, pairs
of neighbours merge and the step doubles, so the whole sitting stays on the plot at a resolution
that coarsens with its length, and each redraw costs the same however long it has been watched.
An alert is never merged away.

The drawing is an inline SVG (a few kilobytes of text, no picture file anywhere).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from posture.sitting.session import NOT_ASSESSED
from posture.sitting.timeline import STATE_COLOURS  # the saved timeline.png's colours: one look for a sitting

#: The plot's size in SVG units (it scales with the page).
WIDTH, HEIGHT, MARGIN = 640, 150, 28
#: The time axis spans at least this long, so the first seconds do not fill the whole width.
MIN_SPAN = 60.0


@dataclass
class Point:
    """One time step of the sitting: its last smoothed p(forward head), state, and whether an alert came."""

    time: float
    smoothed: float | None
    state: str
    alert: bool = False


class Timeline:
    """A sitting's points, at most ``max_points``, one per ``step`` seconds (the step doubles as it fills)."""

    def __init__(self, max_points: int = 600, step: float = 0.5) -> None:
        if max_points < 2 or step <= 0:
            raise ValueError("a timeline needs at least 2 points and a positive step")
        self.max_points = int(max_points)
        self.step = float(step)
        self.points: list[Point] = []
        #: When the sitting began (a point stands for the end of its step, so the first one moves on).
        self.start: float | None = None

    def add(self, time: float, smoothed: float | None, state: str, alert: bool = False) -> None:
        """Record a frame's result; frames within one step update that step's point."""
        if self.start is None:
            self.start = time
        last = self.points[-1] if self.points else None
        if last is not None and int(time // self.step) == int(last.time // self.step):
            last.time, last.smoothed, last.state, last.alert = time, smoothed, state, last.alert or alert
            return
        self.points.append(Point(time, smoothed, state, alert))
        if len(self.points) > self.max_points:
            self._coarsen()

    def _coarsen(self) -> None:
        """Merge neighbours pairwise (the later one stands for both; an alert in either is kept)."""
        merged = []
        for i in range(0, len(self.points) - 1, 2):
            first, second = self.points[i], self.points[i + 1]
            merged.append(Point(second.time, second.smoothed, second.state, first.alert or second.alert))
        if len(self.points) % 2:
            merged.append(self.points[-1])
        self.points = merged
        self.step *= 2

    def svg(self, enter: float, leave: float) -> str:
        """The timeline as inline SVG: state bands, the smoothed p(forward head) line, the thresholds
        ``enter`` and ``leave`` (the hysteresis) and a red mark at each alert."""
        points = self.points
        start = self.start if self.start is not None else 0.0
        seconds = (points[-1].time - start) if points else 0.0
        span = max(MIN_SPAN, seconds)
        plot_w, plot_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN

        def x(t: float) -> float:
            return MARGIN + (t - start) / span * plot_w

        def y(p: float) -> float:
            return MARGIN + (1.0 - p) * plot_h

        parts = [
            f'<rect x="{MARGIN}" y="{MARGIN}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#9e9e9e"/>'
        ]
        for here, after in zip(points, points[1:] + points[-1:], strict=True):
            right = x(after.time) if after is not here else x(here.time) + 1
            parts.append(
                f'<rect x="{x(here.time):.1f}" y="{MARGIN}" width="{max(right - x(here.time), 0.5):.1f}" '
                f'height="{plot_h}" fill="{STATE_COLOURS.get(here.state, STATE_COLOURS[NOT_ASSESSED])}" '
                'shape-rendering="crispEdges"/>'
            )
        for level, name in ((enter, "enter"), (leave, "leave")):
            parts.append(
                f'<line class="threshold-{name}" x1="{MARGIN}" x2="{WIDTH - MARGIN}" y1="{y(level):.1f}" '
                f'y2="{y(level):.1f}" stroke="#757575" stroke-dasharray="4 3"/>'
            )
        line = " ".join(f"{x(p.time):.1f},{y(p.smoothed):.1f}" for p in points if p.smoothed is not None)
        if line:
            parts.append(f'<polyline points="{line}" fill="none" stroke="#d84315" stroke-width="2"/>')
        for p in points:
            if p.alert:
                parts.append(
                    f'<line class="alert-mark" x1="{x(p.time):.1f}" x2="{x(p.time):.1f}" y1="{MARGIN}" '
                    f'y2="{HEIGHT - MARGIN}" stroke="#c62828" stroke-width="2"/>'
                )
        parts += [
            f'<text x="{MARGIN}" y="{MARGIN - 8}" font-size="12">p(forward head), smoothed</text>',
            f'<text x="{MARGIN - 4}" y="{y(1.0) + 4:.1f}" font-size="10" text-anchor="end">1</text>',
            f'<text x="{MARGIN - 4}" y="{y(0.0) + 4:.1f}" font-size="10" text-anchor="end">0</text>',
            f'<text x="{WIDTH - MARGIN}" y="{HEIGHT - 8}" font-size="11" text-anchor="end">'
            f"{html.escape(_clock(seconds))} watched</text>",
        ]
        legend = ", ".join(f"{name}: {colour}" for name, colour in (("upright", "green"), ("forward head", "orange")))
        return (
            f'<svg class="live-timeline" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
            f'data-points="{len(points)}" data-seconds="{seconds:.1f}" data-alerts="{sum(p.alert for p in points)}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>Timeline of this sitting ({legend} '
            f"background; red marks: alerts)</title>{''.join(parts)}</svg>"
        )


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


__all__ = ["Point", "Timeline"]
