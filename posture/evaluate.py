"""``python -m posture.evaluate``: Score a run on a dataset: confusion matrix, metrics, plots, the worst mistakes.

The command's face; the work is in :mod:`posture.inference.evaluate`."""

import sys

from posture.cli import run_main
from posture.inference.evaluate import main

if __name__ == "__main__":
    sys.exit(run_main(main))
