"""Every sweep test gets its own codesign cache (corpus tokens, model files) under the session's tmp dir."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CODESIGN_CACHE", str(tmp_path_factory.getbasetemp() / "codesign-cache"))
