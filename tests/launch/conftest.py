"""Fixtures for the launcher tests: site variables fixed so renders are stable."""

from __future__ import annotations

import pytest
from launchtest_util import SITE_ENV, UNSET


@pytest.fixture
def site_env(monkeypatch):
    for k, v in SITE_ENV.items():
        monkeypatch.setenv(k, v)
    for k in UNSET:
        monkeypatch.delenv(k, raising=False)
    return dict(SITE_ENV)
