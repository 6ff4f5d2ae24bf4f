"""``python tests/_kill_at_rename.py N before|after ARGS...``: ``python -m posture.finetune ARGS``, SIGKILLed
just before or just after its N-th rename into ``.resume/``.

A deterministic crash at the exact points a random kill rarely hits: between the writes of one
epoch's resume state. Only this throw-away process is patched; the code under test is unchanged.
"""

from __future__ import annotations

import os
import signal
import sys

RESUME_PART = os.sep + ".resume" + os.sep


def main() -> int:
    nth, when, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    real_replace, seen = os.replace, []

    def replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        if RESUME_PART not in os.fspath(dst):
            return real_replace(src, dst, *args, **kwargs)
        seen.append(dst)
        if len(seen) == nth and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)
        if len(seen) == nth and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return None

    os.replace = replace
    from posture.cli import run_main
    from posture.training.finetune import main as finetune_main

    return run_main(finetune_main, argv)


if __name__ == "__main__":
    sys.exit(main())
