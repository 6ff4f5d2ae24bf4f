"""Shared test settings: offline, quiet, deterministic, and small enough for 2 cores."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest  # noqa: E402

# Fixtures shared across test files: a stand-in BlazePose, and one torch thread on 2 shared cores.
from _finetune_helpers import one_torch_thread  # noqa: E402, F401
from _pose_helpers import fake_blazepose  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _isolated_feature_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read or write the user's real feature cache."""
    monkeypatch.setenv("POSTURE_CACHE", str(tmp_path_factory.getbasetemp() / "feature-cache"))
