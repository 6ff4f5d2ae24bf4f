"""``python tests/_kill_ingest_at.py RECORD SIGNAL POINT START ARGS...``: ``python -m posture.ingest ARGS``
that sends itself SIGNAL (``SIGKILL`` or ``SIGTERM``) at POINT, after writing the processes it has
started (pid and start time, JSON) to RECORD, so a test can check that none of them outlives it.

POINT: ``decoding`` (the first decoded image is back, the workers still have most of the drop
queued), ``decoded`` (every image is back, the worker pool still open) or ``writing`` (the first
table is written into the staging folder, the pool closed). START: ``fork``, or ``forkserver``:
a thread runs before ingest starts, so its workers come from a forkserver (as in a web app).

A deterministic kill at points a kill from outside hits only by luck. Only this throw-away
process is patched; the code under test is unchanged.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import psutil


def _die(record: str, signum: int) -> None:
    started = [{"pid": p.pid, "create_time": p.create_time()} for p in psutil.Process().children(recursive=True)]
    with open(record, "w") as fh:
        json.dump(started, fh)
    os.kill(os.getpid(), signum)
    raise SystemExit(f"still alive after signal {signum}")


def main() -> int:
    record, point, start, argv = sys.argv[1], sys.argv[3], sys.argv[4], sys.argv[5:]
    signum = int(signal.Signals[sys.argv[2]])
    import posture.ingest.pipeline as pipeline
    from posture.cli import run_main
    from posture.ingest.__main__ import main as ingest_main

    real_decode, real_write = pipeline.decode_all, pipeline.atomic_write_csv

    def decode_all(*args: Any, **kwargs: Any) -> Iterator[Any]:
        total = len(args[0])  # the decode tasks
        for n, result in enumerate(real_decode(*args, **kwargs), start=1):
            if (point == "decoding" and n == 1) or (point == "decoded" and n == total):
                _die(record, signum)
            yield result

    def atomic_write_csv(*args: Any, **kwargs: Any) -> None:
        if point == "writing":
            _die(record, signum)
        real_write(*args, **kwargs)

    pipeline.decode_all = decode_all  # type: ignore[assignment]
    pipeline.atomic_write_csv = atomic_write_csv  # type: ignore[assignment]
    if start == "forkserver":
        threading.Thread(target=threading.Event().wait, name="caller-thread", daemon=True).start()
    return run_main(ingest_main, argv)


if __name__ == "__main__":
    sys.exit(main())
