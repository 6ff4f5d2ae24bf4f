"""``python -m posture.predict``: Answer photos with a trained run: the label, its confidence, what the model read.

The command's face; the work is in :mod:`posture.inference.predict`."""

import sys

from posture.cli import run_main
from posture.inference.predict import main

if __name__ == "__main__":
    sys.exit(run_main(main))
