"""``python -m posture.synth OUT --n N --seed S``: see :mod:`posture.synth.cli`."""

import sys

from posture.cli import run_main
from posture.synth.cli import main

if __name__ == "__main__":
    sys.exit(run_main(main))
