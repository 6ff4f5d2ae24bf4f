"""File names as text that every CSV, JSON file and terminal can hold, and back, losslessly.

Why: a name on disk is bytes. A zip made on Windows gives Latin-1 names (``caf\\xe9.jpg``) that
are not UTF-8, so Python hands them over with surrogate escapes that no UTF-8 writer accepts; a
name may also hold a line break or a tab that corrupts a line-based file or a terminal. Every
recorded name (``manifest.csv``'s ``source_path``, ``rejected.csv``, ``summary.json``, the report)
goes through :func:`text_name`, which leaves ordinary names alone and writes the rest with
backslash escapes, as Python's ``repr`` does: a byte that is not UTF-8 and a control character
become ``\\xHH``, a backslash becomes ``\\\\``. :func:`real_name` undoes it exactly, so the
original file can always be found again: ``SRC / real_name(source_path)``.
"""

from __future__ import annotations

import re

_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})")


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if ch == "\\":
        return "\\\\"
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's surrogate escape of the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF:  # any other lone surrogate: UTF-8 cannot hold it either
        return f"\\u{code:04x}"
    return ch


def text_name(name: str) -> str:
    """``name`` (as ``os`` functions return it) as printable UTF-8-safe text; plain names unchanged."""
    if name.isprintable() and "\\" not in name and name.isascii():
        return name
    return "".join(_escape_char(ch) for ch in name)


def _unescape(match: re.Match[str]) -> str:
    token = match.group(1)
    if token == "\\":
        return "\\"
    code = int(token[1:], 16)
    if token[0] == "x" and code >= 0x80:
        return chr(0xDC00 + code)  # back to the surrogate escape of the original byte
    return chr(code)


def real_name(text: str) -> str:
    """The name :func:`text_name` was given (usable with ``open``, ``os.stat``, ``Path``)."""
    return _ESCAPE.sub(_unescape, text) if "\\" in text else text


def needs_escape(name: str) -> bool:
    """True when the name cannot be written as it is (control characters, bytes that are not UTF-8, ``\\``)."""
    return text_name(name) != name
