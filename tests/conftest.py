"""Real data lives beside the checkout in ../shared/data; tests that need it skip with the reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(os.environ.get("TRADEFM_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
FIXTURES = Path(__file__).parent / "fixtures"


def data_file(rel: str) -> Path:
    """A file under ../shared/data, or skip the test saying what is missing and where it comes from."""
    path = DATA / rel
    if not path.exists():
        pytest.skip(f"real data not found: {path} (see the README's Data section)")
    return path


@pytest.fixture
def shared_data() -> Path:
    if not DATA.exists():
        pytest.skip(f"real data folder not found: {DATA}")
    return DATA
