"""Hostile text for the pages' tests, and what a page makes of a Markdown string.

The payloads are what a labeling team's file names and CSV cells, a run folder or a visitor can
hold: a tag that makes the browser fetch another host, a Markdown link and image, back-ticks that
close a code span early, entities, quotes, emphasis, Gradio's ``$$`` LaTeX and a bare URL.
Hosts are 127.0.0.2, port 9 (discard): nothing answers, and a browser test sees every attempt.
"""

from __future__ import annotations

import html
import re

#: Tags, links, back-ticks, entities, quotes: one value each, as a CSV cell or a visitor may send them.
PAYLOADS = [
    "<img src=http://127.0.0.2:9/img>",
    "[a link](http://127.0.0.2:9/link)",
    "![an image](http://127.0.0.2:9/md-img)",
    "`` ` <img src=http://127.0.0.2:9/tick> `",
    "&lt;b&gt; &amp; &#60;i&#62;",
    "\"double\" 'single' *stars* _under_ $$x^2$$",
    "http://127.0.0.2:9/bare www.example.org",
]
#: The same kinds of payload without a ``/``, which no file name can hold: ``https:127.0.0.2:9`` still
#: names another host (a scheme other than the page's needs no slashes).
NAME_PAYLOADS = [
    "<img src=https:127.0.0.2:9>",
    "[a link](https:127.0.0.2:9)",
    "`` ` <img src=https:127.0.0.2:9> `",
    "&lt;b&gt; &amp; \"q\" 'q' *s*",
]


def render(markdown: str) -> str:
    """The HTML a CommonMark renderer with GitHub's tables and strikethrough makes of ``markdown``
    (Gradio renders Markdown in the browser with marked: the browser tests check that one)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


def shown_text(markdown: str) -> str:
    """The text a reader sees: the rendered HTML without its tags, entities decoded."""
    return html.unescape(re.sub(r"<[^>]*>", "", render(markdown)))


def assert_text_not_markup(markdown: str, *values: str) -> None:
    """Every value reads as itself in the rendered ``markdown``, which holds no tag, link, image, code
    span, LaTeX or bare URL that a value brought in."""
    rendered = render(markdown)
    for tag in ("<img", "<a ", "<code", "<script"):  # emphasis is checked by the values' stars and underscores
        assert tag not in rendered, (tag, rendered)
    assert not re.search(r"(?i)\b(?:https?|ftp)://|\bwww\.", markdown), markdown  # what marked links bare
    assert "$$" not in markdown, markdown  # Gradio renders $$...$$ as LaTeX
    text = shown_text(markdown)
    for value in values:
        assert value in text, (value, text)
