"""``python -m app.healthcheck``: exit 0 when the web demo running as this user answers, else 1.

Why not ask a fixed address: the Docker image's health check used to probe
``http://127.0.0.1:7860``, so a container started with another ``--port`` reported *unhealthy*
while the demo served. The demo writes where it listens (:data:`SERVER_NAME`, its probe URL)
into its private runtime folder (:mod:`app.scratch`) as it starts, and this command reads every
such record whose owner still runs and asks each server for ``/gradio_api/info``: healthy when
at least one demo runs and every running one answers. It imports neither torch nor Gradio, so a
check costs a fraction of a second.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from app.scratch import owned_dirs
from posture.io.fileio import atomic_write_json

#: In the demo's private folder: ``{"url": "http://127.0.0.1:7860/"}``, where a local client reaches it.
SERVER_NAME = "server.json"
#: The prefix of the demo's private folders (:func:`app.scratch.private_gradio_temp`).
APP_PREFIX = "posture-app-"


def probe_url(host: str, port: int) -> str:
    """Where a client on this machine reaches a server bound to ``host:port`` (a wildcard means loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name
    return f"http://{host}:{port}/"


def record_server(work_dir: Path, host: str, port: int) -> None:
    """Write where the demo started in ``work_dir`` listens, for :func:`check`."""
    atomic_write_json(Path(work_dir) / SERVER_NAME, {"url": probe_url(host, port)})


def running_servers(parent: str | os.PathLike[str] | None = None) -> list[str]:
    """The probe URLs of the demos whose owner still runs, from their private folders under ``parent``."""
    urls = []
    for folder, alive in owned_dirs(APP_PREFIX, parent):
        try:
            url = json.loads((folder / SERVER_NAME).read_text(encoding="utf-8"))["url"] if alive else None
        except (OSError, ValueError, KeyError, TypeError):
            continue  # starting: the record is not written yet
        if isinstance(url, str) and url.startswith("http://"):
            urls.append(url)
    return urls


def answers(url: str, timeout_s: float) -> bool:
    """Whether the server at ``url`` answers; asked directly, never through a proxy the environment names."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url + "gradio_api/info", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError, ValueError):
        return False


def check(parent: str | os.PathLike[str] | None = None, timeout_s: float = 4.0) -> tuple[bool, str]:
    """(healthy, one line saying why)."""
    urls = running_servers(parent)
    if not urls:
        return False, "no running posture web demo found (none has recorded where it listens yet)"
    silent = [url for url in urls if not answers(url, timeout_s)]
    if silent:
        return False, f"not answering: {', '.join(silent)}"
    return True, f"answering: {', '.join(urls)}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.healthcheck",
        description="Exit 0 when the posture web demo (python -m app) running as this user answers, 1 "
        "otherwise; it finds the port the demo was started with. The Docker image's HEALTHCHECK.",
    )
    parser.add_argument("--timeout", type=float, default=4.0, help="seconds to wait for an answer")
    args = parser.parse_args(argv)
    healthy, why = check(timeout_s=args.timeout)
    print(f"{'healthy' if healthy else 'unhealthy'}: {why}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
