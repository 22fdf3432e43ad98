"""Orders a lossy capture never removed: found where the replayed book stays crossed, and deleted.

A websocket capture (a crypto venue's live orders) can miss messages: an order that was filled or cancelled
but whose delete never arrived stays in the replayed book, and the next orders on the other side rest *through*
it, which a continuous market never allows. The book then stays crossed for the rest of the day (a Bitstamp
capture: one missed delete crossed 92% of its states for 27 minutes), and every book feature, the spread, the
rollouts' starting books and the baselines' fits read a market that never was.

:func:`drop_stale` replays a day and, where the book has stayed crossed (or locked, bid and ask at one price:
a continuous market trades that too) for longer than ``after_ns`` of feed
time during continuous trading, takes the crossed touch level whose newest order is older and deletes its
orders, repeating until the book no longer crosses. The feed's own ordering is the evidence: the side that was
there first was traded or cancelled through. A taker that rests for an instant before its fills arrive, or a
feed's delay of a few hundred milliseconds, uncrosses within the grace and is left alone. The deletes are
written at the time they are decided (no later event is read), marked ``src_type = "stale"``, and later rows
naming a deleted order are dropped; both are counted in the day's notes.

Exact feeds (LOBSTER, market-by-order) never cross in continuous trading and do not use this; auctions cross
by design, so their rows are kept out with ``active``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba import njit, types
from numba.typed import Dict

from ..events import EventDay, Kind
from . import engine as E
from .orderbook import OrderBook

STALE = "stale"  # the src_type of an inferred delete
_NONE = np.iinfo(np.int64).min


@njit(cache=True)
def _newest(st: E.BookState, born: np.ndarray, s: int) -> int:
    """The newest entry (event index) among the orders of side ``s``'s touch level."""
    lv = st.levels[s, st.meta[E.M_NLV_BID + s] - 1]
    slot, newest = lv[E.L_HEAD], -1
    while slot != E.NIL:
        newest = max(newest, born[slot])
        slot = st.orders[slot, E.O_NEXT]
    return newest


@njit(cache=True)
def _crossed(st: E.BookState) -> bool:
    nb, na = st.meta[E.M_NLV_BID], st.meta[E.M_NLV_ASK]
    return nb > 0 and na > 0 and st.levels[0, nb - 1, E.L_PRICE] >= st.levels[1, na - 1, E.L_PRICE]


@njit(cache=True)
def _scan(st: E.BookState, born: np.ndarray, removed: Dict, kind: np.ndarray, side: np.ndarray,
          price: np.ndarray, size: np.ndarray, oid: np.ndarray, ts: np.ndarray, active: np.ndarray, i0: int,
          after: int, depth: int, carry: np.ndarray, out: np.ndarray, drop: np.ndarray) -> int:
    """Replay rows [0, len) (global index ``i0 + i``); write each inferred delete to ``out`` (row before which it
    goes, side, price, size, id) and mark rows naming a deleted order in ``drop``. ``carry[0]`` is when the
    current crossing was first seen on an active row (``_NONE`` if none). Returns the deletes written."""
    n_out = 0
    for i in range(len(kind)):
        k = kind[i]
        if active[i] and carry[0] != _NONE and ts[i] - carry[0] > after and _crossed(st):
            while _crossed(st):
                s = 0 if _newest(st, born, 0) < _newest(st, born, 1) else 1
                lv = st.levels[s, st.meta[E.M_NLV_BID + s] - 1]
                p = lv[E.L_PRICE]
                while st.meta[E.M_NLV_BID + s] > 0 and st.levels[s, st.meta[E.M_NLV_BID + s] - 1, E.L_PRICE] == p:
                    slot = st.levels[s, st.meta[E.M_NLV_BID + s] - 1, E.L_HEAD]
                    o = st.orders[slot]
                    out[n_out, 0], out[n_out, 1], out[n_out, 2] = i0 + i, o[E.O_SIDE], p
                    out[n_out, 3], out[n_out, 4] = o[E.O_SIZE], max(o[E.O_ID], 0)
                    n_out += 1
                    if o[E.O_ID] > 0:
                        removed[o[E.O_ID]] = i0 + i
                    E._reduce(st, slot, o[E.O_SIZE])
            carry[0] = _NONE
        if oid[i] > 0 and oid[i] in removed:
            if k != E.K_ADD:
                drop[i] = True
                continue
            del removed[oid[i]]  # the id names a new order from here on
        E.apply_event(st, k, side[i], price[i], size[i], oid[i], True)
        if depth > 0:
            E.truncate(st, depth)
        if (k == E.K_ADD or k == E.K_MODIFY) and oid[i] > 0:
            slot = E.slot_of(st, oid[i])
            if slot != E.NIL:
                born[slot] = i0 + i
        if not _crossed(st):
            carry[0] = _NONE
        elif active[i] and carry[0] == _NONE:
            carry[0] = ts[i]
    return n_out


def drop_stale(day: EventDay, after_ns: int, active: np.ndarray | None = None, chunk: int = 1 << 16) -> EventDay:
    """``day`` with the orders its capture never removed deleted (see the module). ``active`` marks the rows of
    continuous trading (default: every live row, none of the snapshot). A level-N feed's book is replayed in its
    window, as every later stage replays it."""
    t = day.table
    n = t.num_rows
    cols = [np.ascontiguousarray(t.column(c).to_numpy(), dtype=np.int64)
            for c in ("kind", "side", "price", "size", "order_id", "ts")]
    snap = np.asarray(t.column("snapshot").to_numpy(zero_copy_only=False), dtype=bool)
    act = ~snap if active is None else (np.asarray(active, dtype=bool) & ~snap)
    book = OrderBook(replay=True)
    born = np.zeros(book.state.orders.shape[0], dtype=np.int64)
    removed = Dict.empty(key_type=types.int64, value_type=types.int64)
    carry = np.array([_NONE], dtype=np.int64)
    drop = np.zeros(n, dtype=bool)
    found: list[np.ndarray] = []
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        book._reserve(b - a)
        st = book.state
        if born.shape[0] < st.orders.shape[0]:
            born = np.concatenate([born, np.zeros(st.orders.shape[0] - born.shape[0], dtype=np.int64)])
        out = np.zeros((st.meta[E.M_LIVE] + b - a, 5), dtype=np.int64)  # every order resting or added
        k = _scan(st, born, removed, *(c[a:b] for c in cols), act[a:b], a, int(after_ns), day.levels, carry, out,
                  drop[a:b])
        found.append(out[:k])
    ins = np.concatenate(found) if found else np.zeros((0, 5), dtype=np.int64)
    if len(ins) == 0:
        return day
    at = ins[:, 0]
    rows = pa.array(at)
    extra = pa.table({
        "ts": t.column("ts").take(rows),
        "kind": pa.array(np.full(len(at), int(Kind.DELETE)), pa.int8()),
        "side": pa.array(ins[:, 1], pa.int8()),
        "price": pa.array(ins[:, 2], pa.int64()),
        "size": pa.array(ins[:, 3], pa.int64()),
        "order_id": pa.array(ins[:, 4], pa.int64()),
        "snapshot": pa.array(np.zeros(len(at), dtype=bool)),
        "ts_recv": t.column("ts_recv").take(rows),
        "trade_id": pa.nulls(len(at), pa.int64()),
        "src_type": pa.array([STALE] * len(at), pa.string()),
    }).select(t.schema.names).cast(t.schema)
    keep = np.flatnonzero(~drop)
    key = np.concatenate([2 * keep + 1, 2 * at])  # an inferred delete goes just before the row that decided it
    order = np.argsort(key, kind="stable")
    table = pa.concat_tables([t.take(pa.array(keep)), extra]).take(pa.array(order))
    notes = {**day.notes, "stale_orders_deleted": len(at), "rows_naming_stale_orders_dropped": int(drop.sum()),
             "stale_after_ms": after_ns / 1e6}
    return EventDay(instrument=day.instrument, date=day.date, table=table, sources=day.sources, notes=notes)


def crossed_time(day: EventDay) -> float:
    """The share of the day's live time in which its replayed book is crossed (best bid above best ask), 0 for a
    day without a book. By time: a post-only order the feed shows for an instant at a crossing price is none of
    it, a missed delete is all of it from there on."""
    t = day.table
    live = ~np.asarray(t.column("snapshot").to_numpy(zero_copy_only=False), dtype=bool)
    if day.trades_only or live.sum() < 2:
        return 0.0
    _, touch = OrderBook(replay=True, depth=day.levels).apply_many(
        *(t.column(c).to_numpy() for c in ("kind", "side", "price", "size", "order_id")))
    crossed = ((touch[:, 0] > 0) & (touch[:, 2] > 0) & (touch[:, 0] > touch[:, 2]))[live]
    held = np.diff(t.column("ts").to_numpy()[live]).astype(np.float64)  # how long each state lasted
    total = held.sum()
    return float(held[crossed[:-1]].sum() / total) if total > 0 else 0.0


__all__ = ["STALE", "crossed_time", "drop_stale"]
