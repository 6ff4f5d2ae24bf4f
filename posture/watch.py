"""``python -m posture.watch``: Watch a sitting (video files or a camera), with a baseline, a timeline, alerts.

The command's face; the work is in :mod:`posture.sitting.watch`."""

import sys

from posture.cli import run_main
from posture.sitting.watch import main

if __name__ == "__main__":
    sys.exit(run_main(main))
