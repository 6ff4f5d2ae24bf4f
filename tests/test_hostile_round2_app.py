"""Issue 27, hostile inputs round two, the app's part: untrusted names as text on both pages (items 2
and 3), malformed API calls (10), size messages and chunked bodies (14), class answers for photos
the labeling tool cannot open (16) and a health check that follows the app's port (17).

Each hostile input is built here, as a labeling team, a run folder or a visitor would send it.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from _label_helpers import make_photos
from _markup_helpers import NAME_PAYLOADS, PAYLOADS, assert_text_not_markup, shown_text
from _serving_helpers import AppServer, finetune_metrics, make_run, photo, served
from app.card import model_card
from app.config import AppConfig
from app.demo import Handlers
from app.label import LabelPage
from app.label_session import LabelConfig, LabelSession
from app.safe_text import html_text, markdown_text
from posture.inference.predict import Prediction, Predictor
from posture.io.labelstore import UNUSABLE, LabelRecord, LabelStore, read_labels
from posture.runs.checkpoint import update_config

REPO = Path(__file__).resolve().parents[1]
LINE_BREAKS = "two\nlines\r\n# heading\n- item\u2028> quote"


def _png_bytes(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo(seed, (60, 80))).save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------ text, never markup


@pytest.mark.parametrize("value", [*PAYLOADS, *NAME_PAYLOADS])
def test_markdown_text_reads_as_itself(value: str) -> None:
    assert_text_not_markup(f"- **Name:** {markdown_text(value)} · more", value)


def test_line_breaks_stay_on_their_line_as_visible_escapes() -> None:
    shown = markdown_text(LINE_BREAKS)
    assert "\n" not in shown and "\r" not in shown and "\u2028" not in shown
    assert_text_not_markup(f"- {shown}", "two\\x0alines\\x0d\\x0a# heading\\x0a- item\\u2028> quote")


def test_html_text_escapes_tags_for_toasts() -> None:
    assert html_text("<img src=http://127.0.0.2:9/x> & more") == "&lt;img src=http://127.0.0.2:9/x&gt; &amp; more"


# ------------------------------------------------------------------- item 3: the public demo


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose classes, training record and real-photo evaluation carry the payloads, as the
    values of a labeling team's CSV travel through ingest, finetune and evaluate into the run."""
    run = make_run(tmp_path_factory.mktemp("hostile-card") / "run")
    sources = [{"name": value, "synthetic": False, "photos": 4, "subjects": 2} for value in PAYLOADS]
    update_config(
        run,
        classes=[PAYLOADS[0], PAYLOADS[1]],
        trained_on={
            "kind": "real",
            "dataset": PAYLOADS[3],
            "photos": 28,
            "subjects": 14,
            "sources": sources,
            "splits": {"train": {"photos": 20, "subjects": 10, "used": 20, "used_subjects": 10}},
        },
    )
    report = {
        **finetune_metrics(val_correct=7, n=8)["val"],
        "split": PAYLOADS[5],
        "created": "2026-01-01T00:00:00",
        "coverage": 1.0,
        "calibration": {},
        "data_provenance": {"kind": "real", "dataset": PAYLOADS[3], "photos": 8, "subjects": 4},
        "by_source": [{"source": value, "balanced_accuracy": 0.5, "n": 4} for value in (*PAYLOADS, LINE_BREAKS)],
    }
    (run / "eval_real").mkdir()
    (run / "eval_real" / "report.json").write_text(json.dumps(report))
    return run


def test_the_model_card_shows_classes_sources_and_data_sets_as_text(hostile_run: Path) -> None:
    card = model_card(Predictor.from_run(hostile_run, backend="torch"))
    assert_text_not_markup(card, *PAYLOADS, f"{PAYLOADS[0]}, {PAYLOADS[1]}")
    assert "two\\x0alines" in shown_text(card)  # a line break in a source cannot start a heading or a list
    assert "<h1" not in card and "<blockquote" not in card


class _StubPredictor:
    """Answers every photo with ``prediction``; a run folder's classes and words reach the note through it."""

    uses_image = uses_pose = False
    upright = None

    def __init__(self, prediction: Prediction) -> None:
        self.prediction = prediction
        self.class_names = [PAYLOADS[0], PAYLOADS[1]]

    def analyse(self, rgb: Any) -> Any:
        return SimpleNamespace(rgb=rgb, landmarks=None, geometry=None, reason=None)

    def predict_analysed(self, analyses: list[Any]) -> list[Prediction]:
        return [self.prediction for _ in analyses]


@pytest.mark.parametrize(
    "prediction",
    [
        Prediction(PAYLOADS[0], 0.9, {PAYLOADS[0]: 0.9, PAYLOADS[1]: 0.1}, explanation=" ".join(PAYLOADS[1:])),
        Prediction(None, None, None, reason=" ".join(PAYLOADS)),
    ],
    ids=["label and explanation", "cannot assess"],
)
def test_the_answer_shows_labels_explanations_and_reasons_as_text(prediction: Prediction, tmp_path: Path) -> None:
    handlers = Handlers(_StubPredictor(prediction), AppConfig(cam=False), tmp_path)  # type: ignore[arg-type]
    _, _, note = handlers.classify(_png_bytes(), explain=True)
    words = [prediction.label, prediction.explanation] if prediction.assessed else [prediction.reason]
    assert_text_not_markup(note, *[w for w in words if w])


def test_the_batch_table_shows_visitors_file_names_as_text(hostile_run: Path, tmp_path: Path) -> None:
    """Its cells and headers (``p_<class>``) are plain strings, which Gradio renders as text (the browser
    test sees it); a column of ``markdown`` or ``html`` would render a visitor's file name."""
    import gradio as gr

    from app.demo import build_demo

    page = build_demo(Predictor.from_run(hostile_run, backend="torch"), AppConfig(cam=False), tmp_path)
    (table,) = [b for b in page.blocks.values() if isinstance(b, gr.Dataframe)]
    assert set(table.datatype if isinstance(table.datatype, list) else [table.datatype]) == {"str"}
    cards = [b.value for b in page.blocks.values() if isinstance(b, gr.Markdown) and "### The model" in str(b.value)]
    assert len(cards) == 1
    assert_text_not_markup(cards[0], *PAYLOADS)


# ------------------------------------------------------------------ item 2: the labeling page


def _hostile_photos(root: Path) -> tuple[Path, list[str], str]:
    """Photos whose relative paths carry the payloads (folders give them their slashes), one that
    cannot be stored (a line break) and so is left out, with back-ticks that closed the old code span."""
    names = [
        "a<img src=https:/127.0.0.2:9/title>b.jpg",
        "[a link](https:/127.0.0.2:9/link).jpg",
        "`` ` <img src=https:/127.0.0.2:9/tick> `.jpg",
        "&lt;b&gt; \"q\" 'q' *s* _u_.jpg",
    ]
    left_out = "`<img src=https:/127.0.0.2:9/left>`\n.jpg"
    make_photos(root, [*names, left_out])
    return root, sorted(names), "`<img src=https:/127.0.0.2:9/left>`\\x0a.jpg"


def test_the_labeling_page_shows_file_names_as_text(tmp_path: Path) -> None:
    images, names, left_out = _hostile_photos(tmp_path / "photos")
    page = LabelPage(LabelSession(LabelConfig(images=images, out=tmp_path / "labels.csv", labeler="ann")))
    try:
        out = page.load()
        seen = []
        while out[5]["file"] is not None:
            seen.append(out[5]["file"])
            assert_text_not_markup(out[1], out[5]["file"], left_out)  # the title and the "left out" list
            out = page.answer_class(out[5], "normal")
            assert_text_not_markup(out[4], f"Saved {seen[-1]}: normal.")
        assert sorted(seen) == names
        assert_text_not_markup(out[1], left_out)
    finally:
        page.session.close()


def test_the_labeling_page_shows_model_guesses_and_earlier_labels_as_text(tmp_path: Path) -> None:
    images = make_photos(tmp_path / "photos", ["a.jpg"])
    guess = Prediction(PAYLOADS[0], 0.8, {PAYLOADS[0]: 0.8, PAYLOADS[2]: 0.2})
    predictor = SimpleNamespace(predict=lambda path: guess, positive_class=PAYLOADS[0], threshold=None)
    csv = tmp_path / "labels.csv"
    store = LabelStore(csv)  # a label CSV written by another tool holds a label this page never offers
    store.append(LabelRecord("a.jpg", PAYLOADS[1], labeler="ann"))
    store.close()
    page = LabelPage(LabelSession(LabelConfig(images=images, out=csv, labeler="ann"), predictor=predictor))
    try:
        out = page._goto("a.jpg")
        assert_text_not_markup(out[3], PAYLOADS[0].replace("_", " "), PAYLOADS[2].replace("_", " "))
        assert_text_not_markup(out[1], PAYLOADS[1])
    finally:
        page.session.close()


def test_the_labeling_header_shows_the_folders_and_labeler_as_text(tmp_path: Path) -> None:
    import gradio as gr

    from app.label import build_app

    images = make_photos(tmp_path / NAME_PAYLOADS[0], ["a.jpg"])
    session = LabelSession(LabelConfig(images=images, out=tmp_path / f"{NAME_PAYLOADS[1]}.csv", labeler="*ann*"))
    try:
        demo = build_app(session)
        header = next(b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown))
        assert_text_not_markup(header, NAME_PAYLOADS[0], NAME_PAYLOADS[1], "*ann*")
    finally:
        session.close()


# ------------------------------------------------- item 16: no class for a photo nobody saw


def test_a_photo_that_cannot_be_opened_gets_no_class_only_unusable(tmp_path: Path) -> None:
    images = make_photos(tmp_path / "photos", ["a.jpg", "b.jpg"])
    (images / "a.jpg").write_bytes(b"\xff\xd8 not a whole jpeg")  # damaged in the labeling team's drop
    csv = tmp_path / "labels.csv"
    page = LabelPage(LabelSession(LabelConfig(images=images, out=csv, labeler="ann")))
    try:
        out = page.load()
        assert out[5]["file"] == "a.jpg" and "cannot be opened" in out[1]
        for label in ("forward_head", "normal"):  # the f and n keys
            out = page.answer_class(out[5], label)
            assert out[5]["file"] == "a.jpg", "the page moved on as if it had saved"
            assert "Not saved" in out[4] and "cannot be opened" in shown_text(out[4])
            assert "a.jpg" not in (read_labels(csv) if csv.exists() else {})
        with pytest.raises(ValueError, match="cannot be opened"):
            page.session.answer_points("a.jpg", (10.0, 10.0), (20.0, 40.0))
        out = page.answer_class(out[5], UNUSABLE)  # the s key: the one answer that fits
        assert read_labels(csv)["a.jpg"].label == UNUSABLE and out[5]["file"] == "b.jpg"
        page.answer_class(out[5], "normal")
        assert read_labels(csv)["b.jpg"].label == "normal"
    finally:
        page.session.close()


# ---------------------------------------------------------- item 14: sizes that read differently


def test_an_inline_image_one_byte_over_the_cap_reads_larger_than_the_cap() -> None:
    from app.limits import InlineDataError, decode_data_url, parse_size

    cap = parse_size("15mb")
    url = "data:image/png;base64," + "A" * 20_971_522  # 15,728,641 bytes once decoded
    with pytest.raises(InlineDataError) as exc:
        decode_data_url(url, cap)
    size, limit = re.findall(r"is (.+?), larger than the (.+?) an upload", str(exc.value))[0]
    assert size != limit, str(exc.value)
    assert (size, limit) == ("15,728,641 bytes", "15,728,640 bytes")


@pytest.mark.parametrize(
    ("sizes", "texts"),
    [
        ((15 * 2**20 + 100_000, 15 * 2**20), ["15.1 MB", "15 MB"]),
        ((150_000, 100_000), ["146 KB", "98 KB"]),
        ((307_201, 300 * 1024), ["307,201 bytes", "307,200 bytes"]),
        ((500,), ["500 bytes"]),
    ],
)
def test_sizes_print_with_the_precision_that_tells_them_apart(sizes: tuple[int, ...], texts: list[str]) -> None:
    from app.limits import format_sizes

    assert format_sizes(*sizes) == texts


def test_a_chunked_body_over_the_cap_gets_413_even_when_the_app_swallows_the_error() -> None:
    """FastAPI reads a body inside ``try``, and answers 400 "error parsing the body" whatever failed."""
    import httpx

    from app.limits import BodySizeLimit

    async def reads_like_fastapi(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        try:
            more = True
            while more:
                more = (await receive()).get("more_body", False)
            status = 200
        except Exception:  # noqa: BLE001 - what FastAPI does
            status = 400
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    async def chunks():  # type: ignore[no-untyped-def]  # no Content-Length
        for _ in range(10):
            yield b"x" * 300

    async def statuses() -> list[int]:
        transport = httpx.ASGITransport(app=BodySizeLimit(reads_like_fastapi, max_body_bytes=1000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return [(await http.post("/gradio_api/queue/join", content=body)).status_code for body in (chunks(), b"x")]

    assert asyncio.run(statuses()) == [413, 200]


# ------------------------------------------- item 10 (and 14) against the served demo, as probed


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    run = make_run(tmp_path_factory.mktemp("hostile-api") / "run")
    with served(run, tmp_path_factory.mktemp("hostile-api-server"), "--examples", "0", "--no-cam") as app:
        yield app


def _leaks(text: str, server: AppServer) -> list[str]:
    """What an answer must never hold: the request's bulk, the server's folders, a traceback."""
    found = [word for word in ("aaaaaaaaaa", "Traceback", "/etc/passwd", "object at 0x") if word in text]
    return found + [path for path in (str(REPO), str(server.tmp), os.getcwd(), sys.prefix) if path in text]


def _log_growth(server: AppServer, before: int) -> str:
    with open(server.log_path, "rb") as log:
        log.seek(before)
        return log.read().decode("utf-8", "replace")


@pytest.mark.slow
def test_a_19_mb_file_path_gets_a_short_answer_and_one_short_log_line(server: AppServer) -> None:
    from app.api_errors import MALFORMED

    before = server.log_path.stat().st_size
    reference = {"path": "/x/" + "a" * 19_000_000, "meta": {"_type": "gradio.FileData"}}
    kind, answer = server.call("classify", [reference, True])
    assert (kind, answer) == ("error", MALFORMED)
    written = _log_growth(server, before)
    assert len(written) < 1000 and len(written.splitlines()) == 1 and "Traceback" not in written, written[:2000]
    assert server.proc.poll() is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "data",
    [
        [],  # too few inputs: Gradio's message lists Python object reprs
        [123, "zz"],  # wrong types
        [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, True],  # a file nobody uploaded
        [{"path": "/srv/" + "a" * 100_000 + ".png", "meta": {"_type": "gradio.FileData"}}, True],
    ],
    ids=["too few inputs", "wrong types", "a file nobody uploaded", "a long path"],
)
def test_malformed_calls_get_a_generic_answer_and_one_bounded_log_line(server: AppServer, data: list[Any]) -> None:
    from app.api_errors import MALFORMED

    before = server.log_path.stat().st_size
    kind, answer = server.call("classify", data)
    assert (kind, answer) == ("error", MALFORMED)  # nothing of the request, no folder, no repr
    written = _log_growth(server, before)  # may name what was asked for, bounded, on one line
    assert len(written.splitlines()) == 1 and len(written) < 1000 and "Traceback" not in written, written[:2000]


@pytest.mark.slow
def test_gradios_own_refusals_get_the_same_answer_and_no_traceback(server: AppServer, tmp_path: Path) -> None:
    """The batch's file-type check is Gradio's: its ``gr.Error`` printed a traceback for every such call."""
    from app.api_errors import MALFORMED

    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    before = server.log_path.stat().st_size
    assert server.call("classify_batch", [[server.upload(notes)]]) == ("error", MALFORMED)
    written = _log_growth(server, before)
    assert len(written.splitlines()) == 1 and "Traceback" not in written, written[:2000]


@pytest.mark.slow
def test_malformed_http_requests_never_echo_the_request_or_reveal_paths(server: AppServer) -> None:
    import httpx

    api = server.url + "gradio_api/"
    bulk = "a" * 200_000
    requests = [
        ("POST", "call/classify", {"json": {"data": bulk}}),  # FastAPI's 422 echoed the field whole
        ("POST", "queue/join", {"json": {"data": [1], "fn_index": bulk, "session_hash": "x"}}),
        ("POST", "call/classify", {"content": b"{" + bulk.encode(), "headers": {"content-type": "application/json"}}),
        ("POST", "call/no-such-endpoint", {"json": {"data": []}}),  # logged a 60-line traceback
        ("POST", "run/classify", {"json": {"data": [123, True]}}),
        ("GET", "file=/etc/passwd", {}),
        ("GET", "file=" + "a" * 5000, {}),
    ]
    for method, path, kwargs in requests:
        before = server.log_path.stat().st_size
        response = httpx.request(method, api + path, timeout=60, **kwargs)
        written = _log_growth(server, before)
        assert response.status_code >= 400 and len(response.content) < 300, (path[:40], response.text[:300])
        assert not _leaks(response.text, server), (path[:40], response.text[:300])
        assert len(written) < 1000 and "Traceback" not in written, (path[:40], written[:2000])
    assert server.proc.poll() is None


@pytest.mark.slow
def test_a_chunked_body_over_the_cap_gets_413_like_one_with_a_length(server: AppServer) -> None:
    import httpx

    from app.limits import BODY_SLACK_BYTES, base64_length, parse_size

    over = base64_length(parse_size("15mb")) + BODY_SLACK_BYTES + 1024

    def chunks() -> Iterator[bytes]:
        for _ in range(over // 65536 + 1):
            yield b"a" * 65536

    url = server.url + "gradio_api/call/classify"
    headers = {"content-type": "application/json"}
    assert httpx.post(url, content=b"a" * over, headers=headers, timeout=120).status_code == 413
    assert httpx.post(url, content=chunks(), headers=headers, timeout=120).status_code == 413
    assert server.proc.poll() is None


# --------------------------------------------------- item 17: the image's health check follows --port


def _dockerfile() -> str:
    return (REPO / "Dockerfile").read_text().replace("\\\n", " ")


def _healthcheck_command() -> list[str]:
    """The Dockerfile's HEALTHCHECK command, as Docker runs it (exec form), with this interpreter."""
    (command,) = re.findall(r"^HEALTHCHECK .*?\bCMD (\[.*\])\s*$", _dockerfile(), re.MULTILINE)
    argv = json.loads(command)
    return [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]


def _health(server: AppServer) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(server.tmp)}  # where the app keeps its private folder
    return subprocess.run(_healthcheck_command(), cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_the_image_runs_as_a_non_root_user_with_a_health_check() -> None:
    users = re.findall(r"^USER\s+(\S+)", _dockerfile(), re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert "7860" not in " ".join(_healthcheck_command())  # no port of its own: it reads the app's


@pytest.mark.slow
def test_the_health_check_follows_the_port_the_app_was_started_with(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    server = AppServer(run, tmp_path / "tmp", "--examples", "0", "--no-cam")  # a free port, not 7860
    assert server.port != 7860
    before = _health(server)
    try:
        server.wait_ready()
        healthy = _health(server)
    finally:
        server.stop()
    after = _health(server)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert f":{server.port}/" in healthy.stdout
    assert before.returncode != 0 and after.returncode != 0, (before.stdout, after.stdout)


@pytest.mark.parametrize(
    ("host", "url"),
    [("0.0.0.0", "http://127.0.0.1:8000/"), ("::", "http://[::1]:8000/"), ("10.0.0.5", "http://10.0.0.5:8000/")],
)
def test_the_health_check_asks_where_a_local_client_reaches_the_app(host: str, url: str) -> None:
    from app.healthcheck import probe_url

    assert probe_url(host, 8000) == url
