"""Shared test settings: offline, quiet, deterministic, and small enough for 2 cores."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_feature_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read or write the user's real feature cache."""
    monkeypatch.setenv("POSTURE_CACHE", str(tmp_path_factory.getbasetemp() / "feature-cache"))
