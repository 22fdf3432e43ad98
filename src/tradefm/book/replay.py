"""Replay a recorded feed through the engine and check the book against the venue's own book, row by row.

For LOBSTER a level-N message file carries only the events inside the N visible levels, so the book keeps
N levels per side, and the one thing it may take from the orderbook file after its first row is a *reveal*:
a level entering the window from beyond the deepest level the book knows. Reveals are counted; everything
else (every price and size of every level of every row) must already be right."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..events import EventDay
from ..readers import lobster
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


def replay_files(files: lobster.LobsterFiles, day: EventDay, progress: bool = False,
                 chunk_rows: int = 4096) -> tuple[ReplayReport, np.ndarray]:
    """Replay one LOBSTER day (read without reveals) against its orderbook file.

    Returns the report and the reveals as rows of (message index, side, price, size)."""
    book = OrderBook(replay=True, depth=files.level)
    book.apply_many(*event_arrays(day, snapshot=True))
    cols = event_arrays(day, snapshot=False)
    stats = np.zeros(4, dtype=np.int64)
    stats[E.R_FIRST_BAD] = -1
    found, done = [], 0
    bar = tqdm(total=len(cols[0]), desc=f"replay {files.ticker} L{files.level}", unit="msg", disable=not progress)
    for rows in lobster.iter_orderbook(files, chunk_rows=chunk_rows):
        n = len(rows)
        book._reserve(n + rows.shape[1])
        out = np.zeros((n * rows.shape[1] // 2, 4), dtype=np.int64)  # at most every level of both sides per row
        k = E.replay_check(book.state, *(c[done:done + n] for c in cols), rows, done, stats, out)
        found.append(out[:k])
        done += n
        bar.update(n)
    bar.close()
    if done != len(cols[0]):
        raise ValueError(f"{files.where(files.orderbook)}: {done} rows for {len(cols[0])} messages")
    report = ReplayReport(
        source=files.where(files.message), symbol=files.ticker, levels=files.level, rows=int(stats[E.R_ROWS]),
        matched_rows=int(stats[E.R_ROWS] - stats[E.R_MISMATCH]),
        first_mismatch=None if stats[E.R_MISMATCH] == 0 else int(stats[E.R_FIRST_BAD]),
        reveals=int(stats[E.R_REVEALS]), counters=book.counters,
    )
    return report, np.concatenate(found) if found else np.zeros((0, 4), dtype=np.int64)


def replay_lobster(path: str | Path, progress: bool = False, chunk_rows: int = 4096) -> list[ReplayReport]:
    """Replay every message file of a LOBSTER zip or folder and compare with its orderbook file."""
    reports = []
    for files in lobster.find(Path(path)):
        day = lobster.read_files(files, reveals=False)
        reports.append(replay_files(files, day, progress, chunk_rows)[0])
    return reports
