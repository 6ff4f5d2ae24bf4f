"""Where the code runs: the device (CUDA, MPS or CPU), the processes of a distributed run, worker
processes that die with their owner, and native libraries' start-up noise kept off the terminal.
The lowest room: it imports nothing of posture but :mod:`posture.cli`."""
