"""Issue 27, items 2 and 3, in a real browser: names and CSV values with tags, entities, back-ticks and
quotes render as text on the web demo and the labeling page, and make the browser fetch nothing.

The demo serves a run made the way a labeling team's drop becomes one (ingest, finetune, evaluate
on it as real photos) from a CSV whose ``source`` and ``subject`` cells and a data-set folder whose
name carry the payloads; its batch tab gets files whose names carry what an upload's name can
hold. The labeling tool gets photos whose paths carry them, and one it must leave out. Every
request the page makes is recorded: none may leave the app's own origin.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from _finetune_helpers import small_config
from _label_helpers import make_photos
from _markup_helpers import PAYLOADS
from _serving_helpers import CHROMIUM, AppServer, chromium_page, served, write_photo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"),
]

#: The data set's folder (its name is the card's "on <data set>"): no slash, another host all the same.
DATASET_NAME = "<img src=https:127.0.0.2:9>"
#: Upload names keep what Gradio's upload leaves in a name (it strips < > : " / \\ | ? * ` $ ! { }).
UPLOAD_NAMES = ["&lt;img src=https127.0.0.29&gt; [a link](https127.0.0.29) 'q' #h.png", "_u_ (p) &amp; ~x~ #1.png"]
#: Photo paths for the labeling tool (folders give them slashes) and a name it leaves out (a line break).
LABEL_PATHS = [
    "a<img src=https:/127.0.0.2:9/title>b.jpg",
    "[a link](https:/127.0.0.2:9/link).jpg",
    "`` ` <img src=https:/127.0.0.2:9/tick> `.jpg",
    "&lt;b&gt; \"q\" 'q' *s* _u_.jpg",
]
LEFT_OUT = "`<img src=https:/127.0.0.2:9/left>`\n.jpg"
LEFT_OUT_SHOWN = "`<img src=https:/127.0.0.2:9/left>`\\x0a.jpg"


def _hostile_run(root: Path) -> Path:
    """Drop → ingest → finetune → evaluate, with the payloads in the CSV's ``source`` and ``subject``."""
    from posture.inference.evaluate import EvalConfig, evaluate
    from posture.ingest.config import IngestConfig
    from posture.ingest.pipeline import ingest
    from posture.training.finetune import run_finetune

    names = [f"p{i:02d}.jpg" for i in range(28)]
    drop = make_photos(root / "drop", names, size=(64, 64))
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "label", "subject", "source"])
        for i, name in enumerate(names):
            label = "forward_head" if i % 2 else "normal"
            writer.writerow([name, label, f"{PAYLOADS[i % 7]} s{i % 14}", PAYLOADS[i % 7]])
    data = root / DATASET_NAME
    ingest(IngestConfig(src=drop, out=data, labels=(root / "labels.csv",)))
    run = root / "run"
    run_finetune(small_config(data, run, root / "cache", epochs=2))
    evaluate(EvalConfig(run=run, data=data, split="all", out=run / "eval_real", gradcam=False, top_k=0, device="cpu"))
    return run


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    run = _hostile_run(tmp_path_factory.mktemp("hostile-drop"))
    with served(run, tmp_path_factory.mktemp("hostile-demo"), "--examples", "0", "--no-cam") as app:
        yield app


def _recording(page: Any) -> list[str]:
    """Every URL the page asks for, from now on."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    return urls


def _elsewhere(urls: list[str], server: AppServer) -> list[str]:
    own = urlsplit(server.url).netloc
    return [u for u in urls if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != own]


def _assert_nothing_rendered(page: Any) -> None:
    """No element a payload could have made: a link or an image to the payloads' hosts, LaTeX."""
    targets = page.evaluate(
        "() => [...document.querySelectorAll('a[href], img[src], iframe[src], source[src]')]"
        ".map(e => new URL(e.href || e.src, document.baseURI).hostname)"
    )
    assert not [host for host in targets if host in ("127.0.0.2", "www.example.org")], targets
    assert page.locator(".katex").count() == 0


def test_the_demo_shows_data_and_upload_names_as_text_and_fetches_nothing(demo: AppServer, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    uploads = [write_photo(tmp_path / name, seed=i) for i, name in enumerate(UPLOAD_NAMES)]
    with chromium_page(1280, 1600) as page:
        urls = _recording(page)
        page.goto(demo.url, wait_until="load")
        card = page.locator(".prose").filter(has_text="The model").last
        expect(card).to_be_visible(timeout=60_000)
        for value in (*PAYLOADS, DATASET_NAME):  # the card: sources, the data set, as the CSV wrote them
            expect(card).to_contain_text(value, use_inner_text=False)
        assert "<img" in (card.text_content() or "")  # a tag, shown as its characters

        page.get_by_role("tab", name="Batch").click()
        page.locator("input[type=file][multiple]").set_input_files([str(p) for p in uploads])
        uploaded = page.locator("table.file-preview").first  # the upload list: name and extension apart
        for name in UPLOAD_NAMES:
            expect(uploaded).to_contain_text(name.removesuffix(".png"), timeout=60_000, use_inner_text=False)
        page.get_by_role("button", name="Classify all").click()
        table = page.locator(".table-wrap")  # the Results table (Gradio's Dataframe)
        for name in UPLOAD_NAMES:
            expect(table).to_contain_text(name, timeout=120_000, use_inner_text=False)
        page.wait_for_timeout(1000)  # any image a payload made would be requested by now
        _assert_nothing_rendered(page)
        page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
    assert not _elsewhere(urls, demo), _elsewhere(urls, demo)
    assert any(demo.url in u for u in urls)  # the recording worked


def test_the_labeling_page_shows_names_as_text_and_fetches_nothing(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    images = make_photos(tmp_path / DATASET_NAME, [*LABEL_PATHS, LEFT_OUT])
    out = tmp_path / "labels.csv"
    with (
        served(
            None,
            tmp_path / "tmp",
            "--images",
            str(images),
            "--out",
            str(out),
            "--labeler",
            "*ann*",
            module="app.label",
            private_prefix="posture-label-",
        ) as server,
        chromium_page(1400, 1000) as page,
    ):
        urls = _recording(page)
        page.goto(server.url, wait_until="load")
        info = page.locator("#lbl-info")
        expect(info).to_contain_text(LEFT_OUT_SHOWN, timeout=60_000, use_inner_text=False)
        expect(page.locator("body")).to_contain_text(DATASET_NAME, use_inner_text=False)  # the header
        for path in sorted(LABEL_PATHS):  # each title, then the saved message, as the labeler goes
            expect(info).to_contain_text(path, timeout=60_000, use_inner_text=False)
            page.keyboard.press("n")
            expect(page.locator("#lbl-message")).to_contain_text(
                f"Saved {path}: normal.", timeout=60_000, use_inner_text=False
            )
        expect(info).to_contain_text("Done", timeout=60_000)
        page.wait_for_timeout(1000)
        _assert_nothing_rendered(page)
        page.screenshot(path=str(tmp_path / "label.png"), full_page=True)
    assert not _elsewhere(urls, server), _elsewhere(urls, server)
