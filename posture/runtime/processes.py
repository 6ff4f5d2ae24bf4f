"""Whether a process still runs, and worker processes that die with the process they work for.

Why: a command killed with SIGKILL (or a plain ``kill``) runs no clean-up code, so anything it
started or owned must be tied to it by the kernel. Pool workers get the kernel's parent-death
signal (Linux ``prctl(PR_SET_PDEATHSIG)``); leftovers named after their owner's process id (a
staging folder) are stale once that process is gone, which :func:`process_alive` answers.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import threading
import time

import psutil

#: ``<linux/prctl.h>``: the signal a process receives when the thread that created it exits.
PR_SET_PDEATHSIG = 1


def process_alive(pid: int) -> bool:
    """True while process ``pid`` runs; a zombie (dead, not yet reaped by its parent) counts as gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, ValueError):
        return False
    except psutil.AccessDenied:  # someone else's live process
        return True


def die_with(owner: int) -> None:
    """Pool initialiser: end this worker the moment process ``owner`` ends, however it ends.

    Why: a pool's workers block on their task queue, whose write end they hold themselves, so a
    parent killed by SIGKILL or SIGTERM left them running as orphans (holding whatever they had
    inherited, the output folder's lock included, until someone found and killed them). Two
    ways, because a worker's parent is not always ``owner``:

    * the kernel's parent-death signal (Linux), SIGKILL since a worker has nothing to clean up:
      instant, for workers ``owner`` forks or spawns itself (sent when the thread that started
      the worker exits: the pool's workers are started by the thread that uses the pool);
    * a watchdog thread that waits on ``owner`` and ends the worker: for workers a forkserver
      starts, which never notices ``owner``'s death, since it hands each worker the very pipe
      whose closing would tell it.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    threading.Thread(target=_exit_when_gone, args=(owner,), name=f"die-with-{owner}", daemon=True).start()


def _exit_when_gone(owner: int) -> None:
    """Wait until process ``owner`` has ended, then end this process at once (no clean-up to run)."""
    try:
        handle = os.pidfd_open(owner)  # Linux 5.3+: readable once the process has ended
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd here: look every second instead
        while process_alive(owner):
            time.sleep(1.0)
        os._exit(1)
    select.select([handle], [], [])
    os._exit(1)
