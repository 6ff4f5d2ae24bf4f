"""Native libraries' own output kept off the user's terminal.

Why here: MediaPipe (BlazePose) and FFmpeg (through OpenCV, reading a video) print from C++ straight
to file descriptor 2, past Python's logging, notices that alarm a user and say nothing they can act
on. Both the pose room and the video reader need the same guard."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Hide what MediaPipe's C++ side prints while it loads and starts (on protobuf 6 a harmless
    ``AttributeError ... GetPrototype`` it recovers from, then TFLite and absl start-up notices),
    which would only alarm a user. Errors still surface: as Python exceptions."""
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (some embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
