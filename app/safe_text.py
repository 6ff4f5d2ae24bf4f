"""Text that came from data, a run folder or a visitor, made safe to show in a Gradio page as itself.

Why a module of its own: Gradio renders a ``gr.Markdown`` value as Markdown with inline HTML
allowed (its sanitiser keeps ``<img src=...>`` and links, so the browser contacts whatever host
they name), and the message of a toast (``gr.Error``, ``gr.Warning``, ``gr.Info``) as HTML. File
names, the ``source`` and ``subject`` values of a labeling team's CSV, class and feature names
from a run's ``config.json`` and the labels in a label CSV all reach those places. Each such value
goes through one of the two functions here, so it reaches the screen as the very characters it
holds, and the page's own Markdown (bold, lists) stays ours.

* :func:`markdown_text` backslash-escapes every ASCII punctuation character (CommonMark lets any
  of them be escaped, and then none can open a tag, an entity, a code span, a link, an autolink,
  emphasis, a list, a table cell or Gradio's ``$$`` LaTeX), and writes line breaks and other
  control characters as visible ``\\xHH`` escapes, so a value stays on its line.
* :func:`html_text` escapes ``&``, ``<`` and ``>`` for the HTML of a toast.
"""

from __future__ import annotations

import html
import re
import string

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
#: C0 and C1 controls (line breaks, tabs, escape, ...) and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def markdown_text(value: object) -> str:
    """``value`` as Markdown that renders exactly ``str(value)``, on one line, with no markup of its own."""
    return _PUNCTUATION.sub(r"\\\1", _CONTROL.sub(_visible, str(value)))


def html_text(value: object) -> str:
    """``value`` as HTML text (for toasts, which Gradio renders as HTML)."""
    return html.escape(str(value), quote=False)


__all__ = ["html_text", "markdown_text"]
