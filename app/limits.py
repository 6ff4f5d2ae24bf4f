"""How big an upload may be, whichever way it arrives: as a file, inline in a request, or as a body.

Why a module of its own: Gradio enforces ``max_file_size`` on ``/gradio_api/upload`` only. An API
call may instead carry the image inline as a ``data:`` URL inside its JSON, and nothing bounded
that: a 100 MB inline image took the server from 1.2 to 4 GB while its base64 was parsed, copied
and decoded. So the same byte cap applies at two more doors:

- :class:`BodySizeLimit` refuses any other request whose body exceeds what the largest allowed
  image needs in base64 (plus room for the JSON around it) with ``413``, before the body is read;
- :func:`decode_data_url` measures an inline image by its base64 length *before* decoding it,
  and turns a malformed URL into a sentence for the person who sent it (:class:`InlineDataError`).

The pixel cap (``--max-megapixels``) is checked by :func:`posture.io.images.open_rgb` from the image
header, before any pixel is decoded, for inline data as for files.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

DEFAULT_MAX_FILE_SIZE = "15mb"
#: Multipliers as Gradio reads ``max_file_size`` (binary units), so both caps agree to the byte.
_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|mb|gb)?\s*$", re.IGNORECASE)
#: Room for the JSON around an inline image (other inputs, the session hash, ...).
BODY_SLACK_BYTES = 64 * 1024
#: ``data:<media type>[;base64],`` comes first; a header longer than this is not a data URL we accept.
_MAX_HEADER = 256


class InlineDataError(ValueError):
    """An inline image we will not decode; the message is meant for the person who sent it."""


def parse_size(text: str | int) -> int:
    """``"15mb"`` → bytes (``b``, ``kb``, ``mb``, ``gb``; binary units, as Gradio counts them)."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size; write e.g. 15mb, 500kb or 2000000")
    return int(match.group(1)) * _UNITS[(match.group(2) or "b").lower()]


def format_sizes(*sizes: int) -> list[str]:
    """Byte counts in the unit a person expects (the smallest one's: MB, KB), with as many decimals as it
    takes for different sizes to read differently, and exact counts in bytes where two decimals do not:
    a photo one byte over a 15 MB cap is "15,728,641 bytes, larger than the 15,728,640 bytes", never
    "15 MB, larger than the 15 MB". A size that is a whole number of units prints without decimals."""
    smallest = min(sizes)
    for unit in ("MB", "KB"):
        scale = _UNITS[unit.lower()]
        if smallest < scale:
            continue
        for decimals in range(3):
            if len({round(n / scale, decimals) for n in sizes}) == len(set(sizes)):
                return [f"{n // scale} {unit}" if n % scale == 0 else f"{n / scale:.{decimals}f} {unit}" for n in sizes]
        break
    return [f"{n:,} bytes" for n in sizes]


def format_size(n_bytes: int) -> str:
    """One byte count in the unit a person expects, matching :func:`parse_size` (``15mb`` → ``15 MB``)."""
    return format_sizes(n_bytes)[0]


def base64_length(n_bytes: int) -> int:
    """Characters of base64 that encode ``n_bytes`` (4 for every 3, padded)."""
    return 4 * math.ceil(n_bytes / 3)


def decode_data_url(url: str, max_bytes: int) -> bytes:
    """The bytes of a ``data:[<type>];base64,<data>`` URL, refused by size before decoding."""
    comma = url.find(",", 0, _MAX_HEADER)
    if not url.startswith("data:") or comma < 0:
        raise InlineDataError("The inline image is not a valid data URL. Please upload the photo as a file.")
    if not url[5:comma].lower().endswith(";base64"):
        raise InlineDataError("The inline image is not base64-encoded. Please upload the photo as a file.")
    n_chars = len(url) - comma - 1
    size = n_chars * 3 // 4 - url.endswith("=") - url.endswith("==")  # no copy of a huge string
    if size > max_bytes:
        raise InlineDataError(
            "The inline image is {}, larger than the {} an upload may be. Please send a smaller photo.".format(
                *format_sizes(size, max_bytes)
            )
        )
    try:
        return base64.b64decode(url[comma + 1 :], validate=True)
    except (binascii.Error, ValueError):
        raise InlineDataError(
            "The inline image is damaged (its base64 data is not valid). Please upload the photo as a file."
        ) from None


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: a request body larger than ``max_body_bytes`` gets ``413`` and is not read on.

    ``exempt``: path suffixes with their own, streaming limit (Gradio's ``/upload``, which writes
    to disk as it reads and stops at ``max_file_size``). The declared ``Content-Length`` is checked
    first; a body that lies about it or is chunked is counted as it arrives.
    """

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        max_body_bytes: int,
        exempt: tuple[str, ...] = ("/upload",),
    ) -> None:
        self.app = app
        self.max_body_bytes = int(max_body_bytes)
        self.exempt = exempt

    @classmethod
    def for_images(cls, max_image_bytes: int) -> dict[str, Any]:
        """Keyword arguments for a body that may carry one image of ``max_image_bytes`` inline."""
        return {"max_body_bytes": base64_length(max_image_bytes) + BODY_SLACK_BYTES}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).endswith(self.exempt):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(send)
            return
        received = 0
        too_large = started = False

        async def counted_receive() -> MutableMapping[str, Any]:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            if too_large and not started:
                # The app answered a body it could not read to the end: FastAPI turns any failure
                # while reading into 400 "error parsing the body". The answer is ours, 413.
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        # The body's size is counted as it arrives (chunked, or lying about its length).
        with contextlib.suppress(_BodyTooLarge):
            await self.app(scope, counted_receive, guarded_send)
        if too_large and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        await send_text(
            send,
            413,
            f"Request too large: at most {format_size(self.max_body_bytes)} per request. Upload photos as "
            "files (the upload limit applies).",
        )


async def send_text(send: Send, status: int, text: str) -> None:
    """Answer an ASGI request with ``status`` and a short plain-text body."""
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
