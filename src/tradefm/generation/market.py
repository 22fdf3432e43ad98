"""A simulated market: a matching engine seeded with a real book, and the record of what happened in it.

Every generator (the model's closed-loop rollouts, Compound Hawkes, zero intelligence) submits orders here. The
record is written the way a feed would report it: adds, cancels and deletes, and each fill as an execution of
the resting order (LOBSTER's type 4), followed by the rest of a marketable order if it rests. So a generated day
is a canonical :class:`~tradefm.events.EventDay` like a real one, and every metric and exporter reads both.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np

from ..book import OrderBook, beyond
from ..book import engine as E
from ..events import EventDay, Kind, table_from_columns

_COLUMNS = ("ts", "kind", "side", "price", "size", "order_id", "flag")


def book_at(day: EventDay, ts: int) -> OrderBook:
    """The book of a real day just before ``ts`` (the engine in replay mode over the events before it, keeping
    only the levels the feed reports: deeper ones would be stale)."""
    return books_at(day, [ts])[ts]


def books_at(day: EventDay, starts: Iterable[int]) -> dict[int, OrderBook]:
    """The real book just before each of ``starts``, from one replay of the day in time order (many starts cost
    what the latest does alone)."""
    t = day.table
    ts = t.column("ts").to_numpy()
    cols = [t.column(c).to_numpy() for c in ("kind", "side", "price", "size", "order_id")]
    book = OrderBook(replay=True, depth=day.levels)
    out, done = {}, 0
    for start in sorted(set(int(s) for s in starts)):
        n = int(np.searchsorted(ts, start, side="left"))
        book.apply_many(*(c[done:n] for c in cols))
        done = n
        out[start] = copy.deepcopy(book)
    return out


class Market:
    """One simulated symbol-day: submit orders at times, read the book, get the record back as an EventDay."""

    def __init__(self, day: EventDay, start_ts: int, depth: int = 0, seed: int = 0, refill: bool = True,
                 real: OrderBook | None = None) -> None:
        """Start from the real book of ``day`` just before ``start_ts`` (``real``, when the caller has it); its
        resting volume becomes the snapshot (anonymous, as a feed's opening book is). ``depth`` > 0 keeps only
        that many levels. With ``refill``, a window-limited feed's depth beyond its window is revealed as the
        book needs it (:mod:`tradefm.book.beyond`, drawn with ``seed``); a caller replaying the feed's own
        reveals turns it off."""
        real = real if real is not None else book_at(day, start_ts)
        self.instrument, self.date = day.instrument, day.date
        self.book = OrderBook(replay=False)
        self.rows: dict[str, list[int]] = {c: [] for c in _COLUMNS}
        self.snapshot = 0
        for side in (1, -1):
            for price, size, _ in real.levels(side)[: depth or None]:
                self._record(start_ts, Kind.ADD, side, price, size, 0, 0)
                self.book.apply(Kind.ADD, side, price, size, 0)
                self.snapshot += 1
        window = day.levels if refill else 0
        self.beyond = beyond.of(real.levels(1), real.levels(-1), window)
        self.rng = beyond.seeds(seed, 1)
        self._scratch = np.zeros((beyond.room(self.beyond), len(_COLUMNS)), dtype=np.int64)
        self.ts = start_ts
        self._top_up()
        self.snapshot = len(self.rows["ts"])  # the opening book: the feed's levels and those revealed behind them
        self.next_id = 1 << 40  # far above real ids, so a generated id never meets a recorded one

    def _top_up(self, reveal=beyond.top_up, *args: int) -> None:
        """Reveal the depth beyond the window: what the window needs after an event (:func:`beyond.top_up`), or
        before one, what an aggressor meets (``beyond.cover, side, size``) or what lies in front of an add
        (``beyond.reach, side, price``)."""
        if not self.beyond.levels:
            return
        self.book._reserve(beyond.room(self.beyond))
        n = reveal(self.book.state, self.beyond, self.rng, 0, self._scratch, 0, self.ts, *args)
        for row in self._scratch[:n]:
            for c, v in zip(_COLUMNS, row, strict=True):
                self.rows[c].append(int(v))

    def _record(self, ts: int, kind: int, side: int, price: int, size: int, oid: int, flag: int) -> None:
        for c, v in zip(_COLUMNS, (ts, int(kind), side, price, size, oid, flag), strict=True):
            self.rows[c].append(v)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    @property
    def last_id(self) -> int:
        """The id of the newest order submitted here (a resting remainder keeps it)."""
        return self.next_id

    def holds(self, order_id: int) -> bool:
        """Whether the order still rests in the book (not filled, not cancelled)."""
        return self.book.holds(order_id)

    def reveal(self, side: int, price: int, size: int) -> None:
        """Volume beyond the feed's window becoming known (a LOBSTER reveal): book knowledge, not an event."""
        self.book.apply(Kind.ADD, side, price, size, 0)

    def limit(self, ts: int, side: int, price: int, size: int, flag: int = 0, ioc: bool = False) -> list:
        """A limit order (marketable or not); returns the fills. Records executions, then the rest if it rests;
        immediate-or-cancel (``ioc``) drops the rest instead."""
        self.ts = max(self.ts, ts)
        oid = self.new_id()
        bid, ask = self.book.best()
        hit = ask if side > 0 else bid
        if hit is not None and (price >= hit if side > 0 else price <= hit):
            self._top_up(beyond.cover, -side, size)
        else:
            self._top_up(beyond.reach, side, price)
        fills = self.book.add(oid, side, price, size)
        for f in fills:
            self._record(self.ts, Kind.EXECUTE, -side, f.price, f.size, max(f.maker_id, 0), flag)
        rest = size - sum(f.size for f in fills)
        if rest > 0 and ioc:
            self.book.cancel(oid, rest)
        elif rest > 0:
            self._record(self.ts, Kind.ADD, side, price, rest, oid, flag)
        self._top_up()
        return fills

    def market(self, ts: int, side: int, size: int, flag: int = 0) -> list:
        """A market order: trades what the other side holds, the rest is dropped."""
        self.ts = max(self.ts, ts)
        self._top_up(beyond.cover, -side, size)
        fills = self.book.market(side, size, order_id=self.new_id())
        for f in fills:
            self._record(self.ts, Kind.EXECUTE, -side, f.price, f.size, max(f.maker_id, 0), flag)
        self._top_up()
        return fills

    def cancel(self, ts: int, side: int, price: int, size: int, order_id: int, flag: int = 0) -> int:
        """Cancel up to ``size`` of a resting order (``order_id`` 0: anonymous volume at ``price``).
        Returns what was cancelled."""
        self.ts = max(self.ts, ts)
        if order_id > 0:
            _, price, left = self.book.order(order_id)
            size = min(size, left)
            kind = Kind.DELETE if size == left else Kind.CANCEL
        else:
            anonymous = sum(q for oid, q in self.book.queue(side, price) if oid < 0)
            size = min(size, anonymous)
            kind = Kind.CANCEL
        if size <= 0:
            return 0
        self.book.apply(kind, side, price, size, order_id)
        self._record(self.ts, kind, side, price, size, order_id, flag)
        self._top_up()
        return size

    def best(self) -> tuple[int | None, int | None]:
        return self.book.best()

    def mid(self) -> float | None:
        bid, ask = self.book.best()
        return (bid + ask) / 2 if bid and ask else None

    @property
    def events(self) -> int:
        """Recorded market events (neither the opening book nor revealed levels)."""
        return int((self.flags()[self.snapshot:] != beyond.REVEAL).sum())

    def flags(self) -> np.ndarray:
        """0 background market, 1 participant, 2 a revealed level, per recorded row (snapshot rows first)."""
        return np.asarray(self.rows["flag"], dtype=np.int8)

    def to_day(self, source: str) -> EventDay:
        rows = np.stack([np.asarray(self.rows[c], dtype=np.int64) for c in _COLUMNS], axis=1)
        return record_day(self.instrument, self.date, rows, self.snapshot, source)


def record_day(instrument, date: str, rows: np.ndarray, snapshot: int, source: str) -> EventDay:
    """A market's record (rows of ``_COLUMNS``, the first ``snapshot`` the opening book) as a feed-like day:
    revealed levels are snapshot rows where they happened, as in a LOBSTER day."""
    flag = rows[:, 6]
    snap = flag == beyond.REVEAL
    snap[:snapshot] = True
    src = np.where(flag == 1, "participant", np.where(flag == beyond.REVEAL, "reveal", source)).astype(object)
    table = table_from_columns({
        "ts": rows[:, 0], "kind": rows[:, 1].astype(np.int8), "side": rows[:, 2].astype(np.int8),
        "price": rows[:, 3], "size": rows[:, 4], "order_id": rows[:, 5], "snapshot": snap, "src_type": src})
    return EventDay(instrument, date, table, [source], {"generated_by": source, "snapshot_levels": snapshot})


def _int32_ids(ids: np.ndarray) -> np.ndarray:
    limit = 2**31
    big = ids >= limit
    if not big.any():
        return ids
    first = int(ids[~big].max(initial=0)) + 1
    unique, rank = np.unique(ids[big], return_inverse=True)
    if first + len(unique) >= limit:
        raise ValueError(f"{len(unique):,} generated order ids do not fit in int32 above the day's own ids")
    out = ids.copy()
    out[big] = first + rank
    return out


def lobster_files(day: EventDay, depth: int = 10, window: int = 0) -> tuple[str, str]:
    """A day as LOBSTER message and orderbook CSV text (seconds after midnight in the venue's zone; prices and
    sizes as they are; empty levels, and with ``window`` > 0 the levels beyond a feed's window, as LOBSTER's dummy
    prices), for tools that read LOBSTER. The book is kept to the feed's window (:attr:`EventDay.levels`), as every
    replay keeps it: a level-N day's reveals bring back levels the book dropped, not ones it still holds. Order ids
    beyond int32 (a rollout's own, from 2**40) are renumbered above the day's largest smaller id, in order: tools
    that read ids as int32 (LOB-Bench's loader does) keep every order apart."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    t = day.table
    market = ~t.column("snapshot").to_numpy()
    midnight = datetime.fromisoformat(day.date).replace(tzinfo=ZoneInfo(day.instrument.timezone))
    base = int(midnight.timestamp()) * 1_000_000_000
    book = OrderBook(replay=True, depth=day.levels)
    cols = [t.column(c).to_numpy() for c in ("kind", "side", "price", "size", "order_id")]
    cols[4] = _int32_ids(cols[4])
    rows = np.flatnonzero(market)
    book.apply_many(*(c[: rows[0] if len(rows) else len(market)] for c in cols))  # the opening book
    ends = np.r_[rows[1:], len(market)] if len(rows) else rows  # a message's row, then the levels it revealed
    msg, ob = [], []
    row = np.zeros(4 * depth, dtype=np.int64)
    stamps = t.column("ts").to_numpy()
    for i, j in zip(rows.tolist(), ends.tolist(), strict=True):
        k, s, p, q, o, ts = (int(c[i]) for c in (*cols, stamps))
        for r in range(i, j):  # the message, then any level it revealed (one call each: most have none)
            book.apply(*(int(c[r]) for c in cols))
        ns = ts - base
        msg.append(f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d},{int(k)},{int(o)},{int(q)},{int(p)},{int(s)}")
        E.top(book.state, depth, row)
        out = row.copy()
        if window:
            out[4 * window:] = 0
        for j in range(depth):  # LOBSTER's dummies for empty levels
            if out[4 * j + 1] == 0:
                out[4 * j] = 9999999999
            if out[4 * j + 3] == 0:
                out[4 * j + 2] = -9999999999
        ob.append(",".join(map(str, out)))
    return "\n".join(msg) + "\n", "\n".join(ob) + "\n"
