"""``python -m posture.export``: Export a run to ONNX and check it against the eager model.

The command's face; the work is in :mod:`posture.inference.export`."""

import sys

from posture.cli import run_main
from posture.inference.export import main

if __name__ == "__main__":
    sys.exit(run_main(main))
