"""Every layer, model and training test runs on one intra-op thread (see ``one_thread``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread_for_maha(one_thread):
    yield
