"""The engine replaying a recorded day and checking its book against the venue's own book, row by row.

Venue-neutral on purpose: the rows come from a reader (LOBSTER's orderbook file), and a reader uses this check
to find what its file leaves out (LOBSTER's reveals), so the book must not depend on any reader."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
from tqdm.auto import tqdm

from ..events import EventDay, InputError
from . import engine as E
from .orderbook import Counters, OrderBook


@dataclass(frozen=True)
class ReplayReport:
    source: str
    symbol: str
    levels: int
    rows: int
    matched_rows: int
    first_mismatch: int | None  # 0-based message index, None when every row matched
    reveals: int
    counters: Counters

    @property
    def exact(self) -> bool:
        return self.matched_rows == self.rows

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "exact": self.exact}


def event_arrays(day: EventDay, snapshot: bool) -> list[np.ndarray]:
    t = day.table.filter(day.table.column("snapshot").to_numpy() == snapshot)
    return [t.column(c).to_numpy().astype(np.int64) for c in ("kind", "side", "price", "size", "order_id")]


def check_rows(day: EventDay, rows: Iterable[np.ndarray], levels: int, *, source: str, symbol: str,
               rows_source: str, progress: bool = False) -> tuple[ReplayReport, np.ndarray]:
    """Replay ``day`` (its snapshot, then its events) against ``rows``: blocks of book states, row i the book
    after event i, per level ``ask price, ask size, bid price, bid size``, ``levels`` levels per side.

    Returns the report and the reveals as rows of (event index, side, price, size)."""
    book = OrderBook(replay=True, depth=levels)
    book.apply_many(*event_arrays(day, snapshot=True))
    cols = event_arrays(day, snapshot=False)
    stats = np.zeros(4, dtype=np.int64)
    stats[E.R_FIRST_BAD] = -1
    found, done = [], 0
    bar = tqdm(total=len(cols[0]), desc=f"replay {symbol} L{levels}", unit="msg", disable=not progress)
    for block in rows:
        n = len(block)
        book._reserve(n + block.shape[1])
        out = np.zeros((n * block.shape[1] // 2, 4), dtype=np.int64)  # at most every level of both sides per row
        k = E.replay_check(book.state, *(c[done:done + n] for c in cols), block, done, stats, out)
        found.append(out[:k])
        done += n
        bar.update(n)
    bar.close()
    if done != len(cols[0]):
        raise InputError(f"{rows_source}: {done} rows for {len(cols[0])} messages")
    report = ReplayReport(
        source=source, symbol=symbol, levels=levels, rows=int(stats[E.R_ROWS]),
        matched_rows=int(stats[E.R_ROWS] - stats[E.R_MISMATCH]),
        first_mismatch=None if stats[E.R_MISMATCH] == 0 else int(stats[E.R_FIRST_BAD]),
        reveals=int(stats[E.R_REVEALS]), counters=book.counters,
    )
    return report, np.concatenate(found) if found else np.zeros((0, 4), dtype=np.int64)
