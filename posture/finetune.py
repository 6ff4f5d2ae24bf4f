"""``python -m posture.finetune``: Train a new head on a frozen extractor of the zoo.

The command's face; the work is in :mod:`posture.training.finetune`."""

import sys

from posture.cli import run_main
from posture.training.finetune import main

if __name__ == "__main__":
    sys.exit(run_main(main))
