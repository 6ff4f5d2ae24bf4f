"""The web demo (``python -m app``): its handlers, and the live server called with gradio_client."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _markup_helpers import shown_text
from _serving_helpers import CLASSES, AppServer, make_run, photo, write_photo
from app.card import model_card
from app.demo import DEMO_COMMAND, AppConfig, Handlers, resolve_run
from app.uploads import UploadError, decode_upload
from posture.cli import UserError, run_main
from posture.inference.predict import Predictor


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(
        tmp_path_factory.mktemp("app") / "run",
        calibration={"temperature": 1.5, "threshold": 0.4, "positive_class": "forward_head", "policy": "youden"},
    )


@pytest.fixture(scope="module")
def handlers(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Handlers:
    predictor = Predictor.from_run(run, backend="torch")
    return Handlers(predictor, AppConfig(max_pixels=1_000_000), tmp_path_factory.mktemp("work"))


def _jpeg_bytes(seed: int = 0, size: tuple[int, int] = (90, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo(seed, size)).save(buffer, format="JPEG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------ handlers


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "upload a photo"),
        (b"", "empty"),
        (b"%PDF-1.4 this is a document", "not an image"),
        (_jpeg_bytes()[:-400], "damaged or incomplete"),
    ],
)
def test_bad_uploads_get_a_message_a_person_can_act_on(data: bytes | None, message: str) -> None:
    with pytest.raises(UploadError, match=message):
        decode_upload(data, max_pixels=1_000_000)


def test_too_many_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("RGB", (1200, 1000)).save(big)  # tiny file, 1.2 megapixels
    with pytest.raises(UploadError, match="at most 1 megapixels"):
        decode_upload(str(big), max_pixels=1_000_000)


def _data_url(data: bytes, mime: str = "image/png") -> str:
    import base64

    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _inline(url: str) -> object:
    """What the component receives for an API call that sends the image inline instead of uploading it."""
    from gradio.data_classes import FileData

    return FileData(path="inline.png", url=url)


def test_inline_data_obeys_the_byte_cap_and_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    import gradio as gr

    from app.components import UploadedImage

    image = UploadedImage()
    image.max_bytes = 100_000
    decoded: list[int] = []
    real = base64.b64decode
    monkeypatch.setattr(base64, "b64decode", lambda *a, **k: decoded.append(1) or real(*a, **k))
    with pytest.raises(gr.Error, match="larger than the 98 KB"):
        image.preprocess(_inline(_data_url(b"\0" * 150_000)))
    assert decoded == []  # judged by the base64 text's length alone
    small = _jpeg_bytes()
    assert image.preprocess(_inline(_data_url(small, "image/jpeg"))) == small


def test_inline_data_obeys_the_pixel_cap(handlers: Handlers) -> None:
    from app.components import UploadedImage

    buffer = io.BytesIO()
    Image.new("RGB", (1200, 1000)).save(buffer, format="PNG")  # a few kB, 1.2 megapixels
    data = UploadedImage().preprocess(_inline(_data_url(buffer.getvalue())))
    with pytest.raises(UploadError, match="at most 1 megapixels"):
        handlers.classify(data, explain=False)


@pytest.mark.parametrize(
    "url",
    [
        "data:image/png;base64,abc",
        "data:image/png;base64",
        "data:image/png,%89PNG",
        "data:;base64,@@@@",
        "data:image/png;base64,AAAA=AAA",
        "data:" + "image/png" * 40,
    ],
)
def test_a_malformed_data_url_gets_a_friendly_message(url: str) -> None:
    import gradio as gr

    from app.components import UploadedImage

    with pytest.raises(gr.Error, match="inline image") as exc:
        UploadedImage().preprocess(_inline(url))
    assert "FileData" not in str(exc.value) and "data:" not in str(exc.value)[:10]


def test_the_body_limit_refuses_big_requests_even_chunked_but_not_uploads() -> None:
    import asyncio

    import httpx

    from app.limits import BodySizeLimit

    async def echo(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b"x" * 300

    async def statuses() -> list[int]:
        transport = httpx.ASGITransport(app=BodySizeLimit(echo, max_body_bytes=1000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return [
                (await http.post(path, content=body)).status_code
                for path, body in [
                    ("/gradio_api/queue/join", chunks()),
                    ("/gradio_api/queue/join", b"x" * 3000),
                    ("/gradio_api/queue/join", b"x" * 900),
                    ("/gradio_api/upload", b"x" * 3000),
                ]
            ]

    assert asyncio.run(statuses()) == [413, 413, 200, 200]


def test_classify_returns_the_decided_label_both_confidences_and_an_overlay(handlers: Handlers, tmp_path: Path) -> None:
    forgotten: list[str] = []
    handlers.forget = forgotten.append
    path = str(write_photo(tmp_path / "p.png", seed=4, size=(90, 60)))
    value, shown, note = handlers.classify(path, explain=True)
    expected = handlers.predictor.predict(photo(4, (90, 60)))
    assert value["label"] == expected.label and value["label"] in shown_text(note)
    assert {c["label"] for c in value["confidences"]} == set(CLASSES)
    assert {c["label"]: c["confidence"] for c in value["confidences"]} == pytest.approx(expected.probabilities)
    assert shown.shape == (90, 60, 3) and shown.dtype == np.uint8  # Grad-CAM at the photo's own size
    assert forgotten == [path]  # the upload is released as soon as it has been read


def test_classify_without_explanation_shows_the_photo_and_still_forgets_bad_uploads(
    handlers: Handlers, tmp_path: Path
) -> None:
    forgotten: list[str] = []
    handlers.forget = forgotten.append
    _, shown, _ = handlers.classify(_jpeg_bytes(1), explain=False)
    assert shown.shape == (90, 60, 3)  # the photo itself (H×W of photo(size=(90, 60)))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"GIF89a but not really")
    with pytest.raises(UploadError):
        handlers.classify(str(bad), explain=False)
    assert forgotten == [str(bad)]


def test_an_upload_swept_meanwhile_asks_to_add_the_photo_again(handlers: Handlers, tmp_path: Path) -> None:
    with pytest.raises(UploadError, match="no longer on the server.*add it again"):
        handlers.classify(str(tmp_path / "swept.png"), explain=False)


def test_a_failing_explanation_still_returns_the_answer(handlers: Handlers, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> np.ndarray:
        raise RuntimeError("no gradient")

    monkeypatch.setattr(handlers, "_explain", broken)
    value, shown, note = handlers.classify(_jpeg_bytes(2), explain=True)
    assert value["label"] in CLASSES and shown.shape == (90, 60, 3) and "could not be drawn" in note


def test_batch_gives_one_row_per_file_and_a_csv(handlers: Handlers, tmp_path: Path) -> None:
    good = [str(write_photo(tmp_path / f"g{i}.png", seed=i)) for i in range(2)]
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    rows, csv_path, summary = handlers.classify_many([good[0], str(bad), good[1]])
    assert [r[0] for r in rows] == ["g0.png", "notes.txt", "g1.png"]
    assert rows[0][1] in CLASSES and rows[1][-1] and not rows[2][-1]
    assert summary.startswith("2 of 3")
    import pandas as pd

    table = pd.read_csv(csv_path)
    assert list(table.columns) == handlers.table_headers() and len(table) == 3
    with pytest.raises(UploadError):
        handlers.classify_many([])
    forgotten: list[str] = []
    capped = Handlers(handlers.predictor, AppConfig(max_batch_files=2), tmp_path / "work", forget=forgotten.append)
    with pytest.raises(UploadError, match="at most 2 photos"):
        capped.classify_many(good + [str(bad)])
    assert forgotten == good + [str(bad)]  # refused uploads are released too


def test_batch_csv_cells_cannot_run_as_spreadsheet_formulas(handlers: Handlers, tmp_path: Path) -> None:
    """A file named ``=cmd.png`` must not become a live formula when the CSV is opened in a spreadsheet."""
    import csv

    names = ["=cmd.png", "+sum.png", "-2.png", "@at.png", "plain.png"]
    paths = [str(write_photo(tmp_path / name, seed=i)) for i, name in enumerate(names)]
    rows, csv_path, _ = handlers.classify_many(paths)
    assert [r[0] for r in rows] == names  # the page's table shows the names as they are
    with open(csv_path, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))[1:]
    assert [r[0] for r in table] == ["'=cmd.png", "'+sum.png", "'-2.png", "'@at.png", "plain.png"]
    for row in table:  # numbers stay numbers
        assert row[1] in CLASSES and 0.0 <= float(row[2]) <= 1.0
        assert all(0.0 <= float(cell) <= 1.0 for cell in row[3 : 3 + len(CLASSES)])


def test_model_card_names_architecture_classes_and_threshold(handlers: Handlers) -> None:
    card = model_card(handlers.predictor)
    for text in ("efficientnet_lite0", "forward_head, normal", "0.40"):
        assert text in shown_text(card)
    # this run records neither its training data nor a real-photo evaluation: no score is headlined
    assert "not recorded" in card and "accuracy on real photos not measured" in card
    assert "%" not in card


def test_without_a_run_the_app_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(UserError) as exc:
        resolve_run(AppConfig(models_dir=tmp_path / "models"))
    assert DEMO_COMMAND in str(exc.value)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f"&& {DEMO_COMMAND} &&" in readme  # the hint is the README demo's own commands
    older = make_run(tmp_path / "models" / "a")
    newer = make_run(tmp_path / "models" / "b")
    os.utime(older / "model.safetensors", (1_000_000, 1_000_000))
    assert resolve_run(AppConfig(models_dir=tmp_path / "models")) == newer


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("truncated weights", "model.safetensors"),
        ("config that is not JSON", "config.json"),
        ("more classes than the weights", "3 classes"),
    ],
)
def test_a_damaged_run_stops_the_app_with_one_error_line(
    damage: str,
    named: str,
    run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil
    import signal

    from app.__main__ import main
    from test_predict import DAMAGES

    monkeypatch.setattr(signal, "signal", lambda *args: None)  # main() installs a SIGTERM handler
    broken = Path(shutil.copytree(run, tmp_path / "run"))
    DAMAGES[damage][0](broken)
    assert run_main(main, ["--run", str(broken)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], err


def test_the_model_card_survives_damaged_score_files(run: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(run, tmp_path / "run"))
    (copy / "metrics.json").write_text('{"val_accuracy": 0.8')
    (copy / "eval").mkdir()
    (copy / "eval" / "report.json").write_bytes(b"\xff\xfe not json")
    card = model_card(Predictor.from_run(copy, backend="torch"))
    assert "accuracy on real photos not measured" in card and "%" not in card


def test_cli_help_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from app.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "127.0.0.1" in capsys.readouterr().out
    assert run_main(main, ["--port", "0"]) == 2
    assert run_main(main, ["--concurrency", "0"]) == 2
    capsys.readouterr()
    assert run_main(main, ["--max-file-size", "15 parsecs"]) == 2
    assert "--max-file-size" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- live server


@pytest.fixture(scope="module")
def server(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    app = AppServer(run, tmp_path_factory.mktemp("server"), "--max-file-size", "300kb", "--examples", "2", "--no-cam")
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


@pytest.fixture()
def client(server: AppServer, tmp_path: Path):  # type: ignore[no-untyped-def]
    from gradio_client import Client

    return Client(server.url, verbose=False, download_files=str(tmp_path / "downloads"))


@pytest.mark.slow
def test_served_app_returns_the_label(client, tmp_path: Path, run: Path) -> None:  # type: ignore[no-untyped-def]
    from gradio_client import handle_file

    path = write_photo(tmp_path / "person.png", seed=8)
    value, overlay, note = client.predict(handle_file(str(path)), False, api_name="/classify")
    expected = Predictor.from_run(run, backend="torch").predict(path)
    assert value["label"] == expected.label
    assert {c["label"] for c in value["confidences"]} == set(CLASSES)
    assert Path(overlay).is_file() and expected.label in shown_text(note)


@pytest.mark.slow
def test_malformed_and_oversized_uploads_get_errors_and_the_server_keeps_serving(
    client, server: AppServer, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from gradio_client import handle_file

    not_image = tmp_path / "report.jpg"
    not_image.write_bytes(b"%PDF-1.4 definitely not a photo")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(_jpeg_bytes(2, (200, 150))[:-800])
    for bad, message in [(not_image, "not an image"), (truncated, "damaged or incomplete")]:
        with pytest.raises(Exception, match=message):
            client.predict(handle_file(str(bad)), False, api_name="/classify")
    huge = tmp_path / "huge.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)).save(huge)
    assert huge.stat().st_size > 300_000
    with pytest.raises(ValueError, match="maximum file size"):  # refused by Gradio's max_file_size before our code runs
        client.predict(handle_file(str(huge)), False, api_name="/classify")
    good = write_photo(tmp_path / "fine.png", seed=9)
    value, _, _ = client.predict(handle_file(str(good)), False, api_name="/classify")
    assert value["label"] in CLASSES
    assert server.proc.poll() is None


@pytest.mark.slow
def test_inline_data_urls_obey_the_upload_cap_and_bad_ones_get_a_message(server: AppServer, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (400, 400, 3), dtype=np.uint8)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) > 300_000  # over this server's --max-file-size 300kb
    huge = _data_url(buffer.getvalue())
    assert server.call("classify", [{"path": "inline.png", "url": huge}, False]) == ("refused", 413)
    just_over = _data_url(rng.integers(0, 255, 320_000, dtype=np.uint8).tobytes())  # fits the body, not the cap
    kind, answer = server.call("classify", [{"path": "inline.png", "url": just_over}, False])
    assert kind == "error" and "larger than the 300 KB" in answer, (kind, answer)
    kind, answer = server.call("classify", [{"path": "inline.png", "url": "data:image/png;base64,abc"}, False])
    assert kind == "error" and "inline image" in answer and "FileData" not in answer
    good = _data_url(_jpeg_bytes(3), "image/jpeg")
    kind, answer = server.call("classify", [{"path": "inline.jpg", "url": good}, False])
    assert kind == "complete" and answer[0]["label"] in CLASSES
    log = server.log_path.read_text()
    assert "ComponentProcessingError" not in log and "binascii" not in log


@pytest.mark.slow
def test_the_same_upload_can_be_checked_again_with_the_explanation_toggled(server: AppServer, tmp_path: Path) -> None:
    """The page uploads a photo once and sends the same reference with every click."""
    ref = server.upload(write_photo(tmp_path / "again.png", seed=11))
    answers = [server.call("classify", [ref, explain]) for explain in (False, True, False, False)]
    assert [kind for kind, _ in answers] == ["complete"] * 4, answers
    assert len({answer[0]["label"] for _, answer in answers}) == 1


@pytest.mark.slow
def test_identical_uploads_from_many_visitors_at_once_all_succeed(server: AppServer, tmp_path: Path) -> None:
    """Same bytes, same name: Gradio stores them at one path, which no visitor may delete under another."""
    from collections import Counter
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file

    path = write_photo(tmp_path / "same.png", seed=12)

    def visitor(i: int) -> list[str]:
        client = Client(server.url, verbose=False, download_files=str(tmp_path / f"downloads-{i}"))
        outcomes = []
        for _ in range(5):
            try:
                value, _, _ = client.submit(handle_file(str(path)), False, api_name="/classify").result(timeout=180)
                outcomes.append("ok" if value["label"] in CLASSES else f"odd answer {value}")
            except Exception as exc:  # noqa: BLE001 - counted and shown below
                outcomes.append(f"{type(exc).__name__}: {exc}")
        return outcomes

    with ThreadPoolExecutor(8) as pool:
        outcomes = [o for visits in pool.map(visitor, range(8)) for o in visits]
    assert outcomes == ["ok"] * 40, Counter(outcomes)
    assert server.proc.poll() is None


def _wait_until(condition, timeout: float = 90.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``condition`` until it holds; bounded, so a regression fails instead of hanging."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return bool(condition())


@pytest.mark.slow
def test_a_killed_apps_folder_is_removed_at_the_next_start(run: Path, tmp_path: Path) -> None:
    """SIGKILL skips every clean-up; the next start removes the dead app's folder and its photos."""
    import signal

    first = AppServer(run, tmp_path / "srv", "--examples", "0", "--no-cam")
    try:
        first.wait_ready()
        (killed,) = first.private_dirs()
        ref = first.upload(write_photo(tmp_path / "private-photo-7c1e.png", seed=13))
        assert first.call("classify", [ref, True])[0] == "complete"
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=60)
    finally:
        first.stop()
    assert [p for p in (killed / "gradio").rglob("*") if p.is_file()]  # photo and overlay, left by the kill
    second = AppServer(run, tmp_path / "srv", "--examples", "0", "--no-cam")
    try:
        second.wait_ready()
        assert not killed.exists() and len(second.private_dirs()) == 1
    finally:
        second.stop()
    assert second.private_dirs() == []


@pytest.mark.slow
def test_overlays_and_uploads_are_deleted_soon_after_their_last_use(run: Path, tmp_path: Path) -> None:
    """Overlays go seconds after they were shown, uploads (and batch CSVs) soon after their last use;
    here with short --keep-outputs / --keep-uploads so the test takes seconds."""
    import httpx

    photo_path = write_photo(tmp_path / "private-photo-9d2f.png", seed=14)
    app = AppServer(run, tmp_path / "srv", "--examples", "0", "--no-cam", "--keep-outputs", "2", "--keep-uploads", "6")
    try:
        app.wait_ready()
        (folder,) = app.private_dirs()
        ref = app.upload(photo_path)
        kind, (_, overlay, _) = app.call("classify", [ref, True])
        assert kind == "complete" and httpx.get(overlay["url"], timeout=30).status_code == 200
        assert app.call("classify_batch", [[app.upload(photo_path)]])[0] == "complete"
        assert _wait_until(lambda: httpx.get(overlay["url"], timeout=30).status_code != 200)
        records = ("owner.json", "server.json")  # who made the folder and where it listens: no visitor's data
        assert _wait_until(lambda: not [p for p in folder.rglob("*") if p.is_file() and p.name not in records])
        kind, message = app.call("classify", [ref, False])  # the page still holds the swept upload
        assert kind == "error" and "no longer on the server" in message and "add it again" in message
        assert app.proc.poll() is None
    finally:
        app.stop()


@pytest.mark.slow
def test_stopping_the_server_removes_its_private_folder(server: AppServer) -> None:
    """Runs last in this file: stops the shared server (SIGTERM, as ``docker stop`` does)."""
    assert len(server.private_dirs()) == 1
    server.stop()
    assert server.private_dirs() == []
