"""What is swept from the web demo's private folder, and when.

Why not delete an upload as soon as a request has read it: the page keeps the uploaded photo's
server path and sends it again with every click ("check again", toggling the explanation), and
Gradio stores identical uploads (same bytes, same name) from different visitors at one path. A
deletion at request end broke the next click and every other visitor's request in flight (40
identical uploads at concurrency 8: 31 errors).

So files are deleted by age since their last use instead, by a background sweep:

- **uploads** (and anything the demo does not know to be shown-once, e.g. the batch CSV a visitor
  downloads later) live ``upload_max_age_s`` (default 300 s, ``--keep-uploads``) after their
  last use: each upload and each request that reads the file restarts its clock (:meth:`touch`);
- **images shown in the page** (Grad-CAM overlays, landmark drawings) are fetched by the browser
  right after the answer, so they live only ``output_max_age_s`` (default 30 s, ``--keep-outputs``);
- files Gradio keeps on purpose (the examples) stay.

A sweep runs every third of the shorter age (at most 10 s), so an overlay is gone at most about
40 s after it was made and a photo about 5 minutes after it was last checked; all of it goes
with the folder when the server stops (:mod:`app.scratch`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

#: ``path → seconds it may outlive its last use`` (``None``: keep), as of one sweep.
KeepFor = Callable[[str], "float | None"]


class CacheJanitor:
    """Deletes files under ``roots`` once unused for as long as ``policy`` allows.

    ``policy`` is asked once per sweep for a fresh ``keep_for(path)`` (paths are real paths), so it
    can look at what the server knows at that moment. ``on_delete`` receives the deleted paths, so
    the owner can forget them too.
    """

    def __init__(
        self,
        roots: Sequence[str | os.PathLike[str]],
        policy: Callable[[], KeepFor],
        period_s: float = 10.0,
        on_delete: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.policy = policy
        self.period_s = float(period_s)
        self.on_delete = on_delete
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def touch(path: str, when: float | None = None) -> None:
        """Restart ``path``'s clock (it was just used); a file swept meanwhile is no error."""
        with contextlib.suppress(OSError):
            os.utime(path, None if when is None else (when, when))

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete what has outlived its allowance, and folders left empty; returns the deleted files."""
        now = time.time() if now is None else now
        keep_for = self.policy()
        deleted: list[str] = []
        for root in self.roots:
            for folder, _, files in os.walk(root):
                emptied = False
                for name in files:
                    path = os.path.join(folder, name)
                    try:
                        info = os.lstat(path)
                        allowance = keep_for(path)
                        if allowance is not None and now - max(info.st_mtime, info.st_ctime) > allowance:
                            os.unlink(path)
                            deleted.append(path)
                            emptied = True
                    except OSError:
                        continue  # gone already, or not ours to delete
                # Only folders this sweep emptied: an empty one may be an upload about to land in it.
                if emptied and Path(folder) != root:
                    with contextlib.suppress(OSError):
                        os.rmdir(folder)  # succeeds only when nothing else is left in it
        if deleted and self.on_delete is not None:
            self.on_delete(deleted)
        return deleted

    def start(self) -> None:
        """Sweep every ``period_s`` in a background thread until :meth:`stop`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="posture-cache-janitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - a failed sweep must not end the sweeping
                log.exception("sweeping the private folder failed; trying again in %.0f s", self.period_s)


def sweep_period(*ages_s: float) -> float:
    """A third of the shortest age, between 1 and 10 seconds."""
    return min(10.0, max(1.0, min(ages_s) / 3))
