"""``python tests/_kill_in_final_write.py POINT ARGS...``: ``python -m posture.finetune ARGS``, SIGKILLed
during its final write of the run folder.

POINT: ``staging`` (just before the first file lands in the staging folder beside ``--out``) or
``swap`` (just after the previous ``--out`` was renamed aside, before the finished staging folder
takes its place). A deterministic crash at points a random kill almost never hits. Only this
throw-away process is patched; the code under test is unchanged.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

STAGING_TAG, TRASH_TAG = ".partial-", ".old-"  # posture.io.fileio's names, spelled out for older versions too


def main() -> int:
    point, argv = sys.argv[1], sys.argv[2:]
    real_replace, real_rename = os.replace, os.rename

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if point == "staging" and STAGING_TAG in os.fspath(dst):
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)

    def rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        real_rename(src, dst, *args, **kwargs)
        if point == "swap" and TRASH_TAG in os.path.basename(os.fspath(dst)):
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace, os.rename = replace, rename
    from posture.cli import run_main
    from posture.training.finetune import main as finetune_main

    return run_main(finetune_main, argv)


if __name__ == "__main__":
    sys.exit(main())
