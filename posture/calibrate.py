"""``python -m posture.calibrate``: Fit a run's probability calibration and decision threshold on a split.

The command's face; the work is in :mod:`posture.inference.calibrate`."""

import sys

from posture.cli import run_main
from posture.inference.calibrate import main

if __name__ == "__main__":
    sys.exit(run_main(main))
