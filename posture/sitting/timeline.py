"""The picture of a sitting: posture over time, with the thresholds and the alerts.

Why a picture: the numbers of :meth:`posture.sitting.session.Session.summary` say how much of a sitting was
spent with the head forward; the timeline says *when*: the slump after lunch, the stretch before an
alert, the minutes the camera saw nobody. It shows the smoothed p(forward head) as a line against
the two thresholds of the hysteresis, the state as coloured bands behind it (upright, forward head,
not assessed, calibrating, paused), and each alert as a red mark.

:class:`Timeline` keeps a bounded summary of the rows, not the rows: at most ``capacity`` bins, two
neighbours merged whenever it fills, so a day at the camera costs the same memory as a minute and
the picture never holds more points than it has pixels. Drawn with ``matplotlib.figure.Figure`` and
the Agg canvas like :mod:`posture.evaluation.plots` (no pyplot, no GUI backend).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from posture.io.fileio import atomic_path
from posture.sitting.session import (
    CALIBRATING,
    FORWARD,
    NOT_ASSESSED,
    PAUSED,
    STATES,
    UPRIGHT,
    FrameResult,
    WatchConfig,
)

#: Bins a timeline keeps at most (a 2,000-pixel-wide picture needs no more).
CAPACITY = 2048
STATE_COLOURS = {
    UPRIGHT: "#b9e4c0",
    FORWARD: "#f4b6b0",
    NOT_ASSESSED: "#dddddd",
    CALIBRATING: "#b8d4f0",
    PAUSED: "#f3e3a6",
}
STATE_NAMES = {
    UPRIGHT: "upright",
    FORWARD: "forward head",
    NOT_ASSESSED: "not assessed",
    CALIBRATING: "calibrating",
    PAUSED: "paused",
}


@dataclass
class _Bin:
    start: float
    end: float
    smoothed_sum: float = 0.0
    smoothed_n: int = 0
    states: list[int] = field(default_factory=lambda: [0] * len(STATES))

    def merge(self, other: _Bin) -> _Bin:
        return _Bin(
            self.start,
            other.end,
            self.smoothed_sum + other.smoothed_sum,
            self.smoothed_n + other.smoothed_n,
            [a + b for a, b in zip(self.states, other.states, strict=True)],
        )

    @property
    def state(self) -> str:
        return STATES[int(np.argmax(self.states))]

    @property
    def smoothed(self) -> float:
        return self.smoothed_sum / self.smoothed_n if self.smoothed_n else float("nan")


class Timeline:
    """A bounded record of a sitting for its picture (module docstring): feed it every row with :meth:`add`."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 2:
            raise ValueError("a timeline needs room for at least 2 bins")
        self.capacity = capacity
        self.bins: list[_Bin] = []
        self.alerts: list[float] = []
        #: Frames a bin holds before the next one starts (doubles whenever the bins are merged).
        self._per_bin = 1
        self._in_last = 0

    def add(self, row: FrameResult) -> None:
        if row.alert:
            self.alerts.append(row.time)
        if not self.bins or self._in_last >= self._per_bin:
            if len(self.bins) >= self.capacity:
                self._halve()
            self.bins.append(_Bin(row.time, row.time))
            self._in_last = 0
        last = self.bins[-1]
        last.end = row.time
        last.states[STATES.index(row.state)] += 1
        if row.smoothed is not None and row.state in (UPRIGHT, FORWARD):
            last.smoothed_sum += row.smoothed
            last.smoothed_n += 1
        self._in_last += 1

    def _halve(self) -> None:
        pairs = [self.bins[i : i + 2] for i in range(0, len(self.bins), 2)]
        self.bins = [pair[0].merge(pair[1]) if len(pair) == 2 else pair[0] for pair in pairs]
        self._per_bin *= 2
        self._in_last = sum(self.bins[-1].states)

    @property
    def duration(self) -> float:
        return self.bins[-1].end - self.bins[0].start if self.bins else 0.0


def _bands(timeline: Timeline) -> dict[str, list[tuple[float, float]]]:
    """``state -> [(start, width)]``: neighbouring bins of the same state joined, each band reaching the next."""
    out: dict[str, list[tuple[float, float]]] = {s: [] for s in STATES}
    bins = timeline.bins
    i = 0
    while i < len(bins):
        j = i
        while j + 1 < len(bins) and bins[j + 1].state == bins[i].state:
            j += 1
        end = bins[j + 1].start if j + 1 < len(bins) else bins[j].end
        out[bins[i].state].append((bins[i].start, max(end - bins[i].start, 1e-3)))
        i = j + 1
    return out


def plot_timeline(
    timeline: Timeline, path: str | os.PathLike[str], config: WatchConfig, title: str = "Sitting"
) -> Path:
    """Write the timeline PNG (module docstring) to ``path`` atomically; returns ``path``."""
    minutes = timeline.duration > 180
    scale = 60.0 if minutes else 1.0
    fig = Figure(figsize=(10, 3.2))
    ax = fig.add_subplot()
    for state, spans in _bands(timeline).items():
        if spans:
            ax.broken_barh([(s / scale, w / scale) for s, w in spans], (-0.05, 1.1), facecolors=STATE_COLOURS[state])
    times = np.array([(b.start + b.end) / 2 / scale for b in timeline.bins])
    values = np.array([b.smoothed for b in timeline.bins])
    ax.plot(times, values, color="#333333", linewidth=1.2, label="p(forward head), smoothed")
    ax.axhline(config.enter_forward, color="#c0392b", linestyle="--", linewidth=0.9, label="turns forward above")
    ax.axhline(config.leave_forward, color="#27ae60", linestyle="--", linewidth=0.9, label="turns upright below")
    for i, t in enumerate(timeline.alerts):
        ax.axvline(t / scale, color="#c0392b", linewidth=1.5, label="alert" if i == 0 else None)
    if len(timeline.alerts):
        ax.plot(np.array(timeline.alerts) / scale, [1.05] * len(timeline.alerts), "v", color="#c0392b", clip_on=False)
    ax.set_ylim(-0.03, 1.03)  # a line at 0 or 1 stays visible inside the frame
    if timeline.bins:
        ax.set_xlim(timeline.bins[0].start / scale, max(timeline.bins[-1].end, timeline.bins[0].start + 1) / scale)
    ax.set_xlabel("minutes" if minutes else "seconds")
    ax.set_ylabel("p(forward head)")
    ax.set_title(title, pad=14)  # above the alerts' marks
    seen = [s for s, spans in _bands(timeline).items() if spans]
    handles, _ = ax.get_legend_handles_labels()
    handles += [Patch(facecolor=STATE_COLOURS[s], label=STATE_NAMES[s]) for s in seen]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return Path(path)


__all__ = ["CAPACITY", "STATE_COLOURS", "Timeline", "plot_timeline"]
