"""Real data lives beside the checkout in ../shared/data; tests that need it skip with the reason."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tradefm.events import Kind

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


def kinds(table, snapshot: bool | None = None) -> Counter:
    """Event kinds of a canonical table by name, of all rows or of the (non-)snapshot ones."""
    k = table.column("kind").to_numpy()
    s = table.column("snapshot").to_numpy(zero_copy_only=False)
    sel = np.ones(len(k), bool) if snapshot is None else s == snapshot
    return Counter(Kind(int(v)).name for v in k[sel])


def random_orders(market, times: np.ndarray, rng: np.random.Generator, default_mid: float, tick: int,
                  ticks: tuple[int, int], lots: tuple[int, int]) -> None:
    """Random limit orders around the mid (``ticks`` away, some marketable; ``lots`` of 100) and cancels of random
    resting ones, at ``times``, into a :class:`~tradefm.generation.Market`: a cheap, consistent flow for tests."""
    live: list[int] = []
    for t in times:
        mid = market.mid() or default_mid
        if rng.random() < 0.6 or not live:
            side = 1 if rng.random() < 0.5 else -1
            price = round(mid / tick) * tick - side * int(rng.integers(*ticks)) * tick
            market.limit(int(t), side, price, int(rng.integers(*lots)) * 100)
            if market.holds(market.last_id):
                live.append(market.last_id)
        else:
            oid = live.pop(int(rng.integers(len(live))))
            if market.holds(oid):
                side, price, left = market.book.order(oid)
                market.cancel(int(t), side, price, left, oid)
