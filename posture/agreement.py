"""``python -m posture.agreement``: How far two labelers agree, and the photos they disagree on.

The command's face; the work is in :mod:`posture.data.agreement`."""

import sys

from posture.cli import run_main
from posture.data.agreement import main

if __name__ == "__main__":
    sys.exit(run_main(main))
