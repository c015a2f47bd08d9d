from __future__ import annotations

import pytest

from miniagents.promising.sentinels import DEFAULT


@pytest.fixture(params=[True, False, DEFAULT], ids=["start_asap", "lazy", "default"])
def start_asap(request: pytest.FixtureRequest) -> object:
    """Run a test with start_asap True, False and DEFAULT (SPEC §10)."""
    return request.param
