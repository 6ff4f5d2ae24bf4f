"""Malformed API calls get a short generic answer and one bounded log line, never the request or a path.

Why a module of its own: Gradio answers a call it cannot process with the exception's text and
prints the whole traceback. Probing the demo showed what that costs: a file reference whose
``path`` was a 19 MB string wrote about 20 MB to the server log and sent the same 19 MB back; a
call with too few inputs answered with Python object reprs; a wrong file reference named the
server's folders; an unknown endpoint logged a 60-line traceback; a field of the wrong type came
back whole inside FastAPI's 422 answer. Both pages (the demo, the labeling tool) close the same
three doors:

- :class:`GuardedBlocks`: an exception while Gradio processes an event (checking and
  preprocessing the inputs, the app's function, postprocessing) becomes ``gr.Error`` with
  :data:`MALFORMED` and one log line. A ``gr.Error`` raised by this package's code passes
  unchanged: it is a message written for the person, with nothing of the request in it; one
  raised by Gradio's own checks (which may quote the request, and print a traceback) does not.
- :func:`exception_handlers`: FastAPI's request validation (422) and HTTP errors answer a fixed
  sentence for their status instead of echoing the request (``File not allowed: <path>``).
- :class:`RequestErrors`: an exception that escapes a route answers 500 with a fixed sentence.

Log lines name the endpoint, the exception's type, where it was raised and at most
:data:`LOG_CHARS` characters of its message, on one line.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

import gradio as gr
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.limits import Receive, Scope, Send, send_text

log = logging.getLogger(__name__)

#: What a call Gradio could not process gets back (the page shows it in its error box).
MALFORMED = "This request could not be processed. If you called the API yourself, check its inputs."
#: What a request gets back when a route failed.
SERVER_ERROR = "The server could not answer this request."
#: At most this many characters of an exception's message go to the log.
LOG_CHARS = 200
#: HTTP errors: the sentence each status answers with (others: the status's standard phrase).
_STATUS_TEXT = {
    400: "Malformed request.",
    422: "Malformed request.",
    403: "Not allowed.",
    404: "Not found.",
    503: "The server is busy; please try again in a moment.",
}


def clip(text: object, limit: int = LOG_CHARS) -> str:
    """``text`` for a log line: one line (``repr`` escapes), at most ``limit`` characters of it."""
    text = str(text)
    more = f" ... ({len(text)} characters)" if len(text) > limit else ""
    return repr(text[:limit]) + more


def describe(exc: BaseException) -> str:
    """``ValueError at file.py:12: 'message'``, bounded, for one log line."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{where}: {clip(exc)}"


def raised_here(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by this package's code (``app.*``), not by a library's."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", "")) if tb is not None else ""
    return module.partition(".")[0] == __name__.partition(".")[0]


class GuardedBlocks(gr.Blocks):
    """``gr.Blocks`` whose events answer :data:`MALFORMED` (and log one line) instead of an exception's text."""

    async def process_api(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return await super().process_api(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure but our own messages answers the same sentence
            if isinstance(exc, gr.Error) and raised_here(exc):
                raise
            block_fn = args[0] if args else kwargs.get("block_fn")
            log.warning("call to %s failed: %s", clip(getattr(block_fn, "api_name", block_fn), 80), describe(exc))
            raise gr.Error(MALFORMED, title="Request not processed", print_exception=False) from None


def _status_text(status: int) -> str:
    try:
        return _STATUS_TEXT.get(status) or HTTPStatus(status).phrase
    except ValueError:  # a status http.HTTPStatus does not know
        return "Error."


async def _validation_error(request: Request, exc: Exception) -> Response:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    fields = [(error.get("loc"), error.get("type")) for error in errors[:3]]  # never error["input"]
    log.warning(
        "malformed request to %s: %d problem(s), e.g. %s", clip(request.url.path, 80), len(errors), clip(fields)
    )
    return JSONResponse({"detail": _status_text(422)}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    headers = exc.headers if isinstance(exc, HTTPException) else None
    return JSONResponse({"detail": _status_text(status)}, status_code=status, headers=headers)


def exception_handlers() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    """FastAPI ``exception_handlers`` that answer fixed sentences instead of the request's content."""
    return {RequestValidationError: _validation_error, HTTPException: _http_error}


class RequestErrors:
    """ASGI middleware: an exception escaping a route answers 500 with :data:`SERVER_ERROR` and logs one line."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception as exc:  # noqa: BLE001 - the client gets a sentence, the log one line
            log.warning("request to %s failed: %s", clip(scope.get("path", ""), 80), describe(exc))
            if not started:
                await send_text(send, 500, SERVER_ERROR)


def guarded_app_kwargs(*middleware: Middleware) -> dict[str, Any]:
    """``Blocks.launch(app_kwargs=...)`` with the guards above, then ``middleware`` (outermost first)."""
    return {"middleware": [Middleware(RequestErrors), *middleware], "exception_handlers": exception_handlers()}


__all__ = [
    "MALFORMED",
    "SERVER_ERROR",
    "GuardedBlocks",
    "RequestErrors",
    "clip",
    "exception_handlers",
    "guarded_app_kwargs",
]
