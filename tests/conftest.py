"""Shared test settings and fixtures: offline, quiet, deterministic, and small enough for 2 cores."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from _pose_helpers import FakeDetector  # noqa: E402
from _serving_helpers import REAL_DATA  # noqa: E402
from posture.io.formats import MANIFEST_NAME  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_feature_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read or write the user's real feature cache."""
    monkeypatch.setenv("POSTURE_CACHE", str(tmp_path_factory.getbasetemp() / "feature-cache"))


@pytest.fixture
def one_torch_thread():
    """Tests run beside other suites on 2 shared cores, where 2 torch threads spin against each other
    (measured 5-10x slower than 1). Results do not depend on it; only test time does."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def restore_logging():
    """The CLI configures the root logger (basicConfig(force=True)), a benchmark quiets named loggers
    (``posture`` to ERROR); put both back for later tests, whose warnings would vanish otherwise."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: lg.level for name, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    yield
    for name, lg in list(logging.root.manager.loggerDict.items()):
        if isinstance(lg, logging.Logger):
            lg.setLevel(levels.get(name, logging.NOTSET))
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


@pytest.fixture
def fake_blazepose(monkeypatch: pytest.MonkeyPatch) -> type[FakeDetector]:
    """Every part of the product that would build a BlazePose graph gets a FakeDetector instead."""
    import posture.pose.detector as pose

    monkeypatch.setattr(pose, "PoseDetector", FakeDetector)
    monkeypatch.setattr(pose, "load_blazepose", lambda: None)
    monkeypatch.setattr(pose, "pose_available", lambda: True)
    return FakeDetector


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``real_data`` need ``../shared/data/real``. Without it they are skipped on a
    developer's machine but fail under ``CI=true``: CI must never go green by skipping the only
    tests that look at real people."""
    if item.get_closest_marker("real_data") is None or (REAL_DATA / MANIFEST_NAME).is_file():
        return
    problem = f"{REAL_DATA.resolve()} is absent (the real photos, see SOURCES.md there)"
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{problem}; CI=true, so the tests of real photos must run", pytrace=False)
    pytest.skip(problem)
