"""Orders a lossy capture never removed (tradefm.book.stale), on tiny hand-written days: what is deleted, when,
and what is left alone. The real case, a Bitstamp capture, is in test_readers_bitstamp.py."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc

from tradefm.book.stale import STALE, drop_stale
from tradefm.events import ASK, BID, EventDay, Instrument, Kind
from tradefm.events.store import table_from_columns

S = 10**9
A, D, X = int(Kind.ADD), int(Kind.DELETE), int(Kind.EXECUTE)


def day(rows: list[tuple[float, int, int, int, int, int]]) -> EventDay:
    """rows: (seconds, kind, side, price, size, order id)."""
    t, k, s, p, q, o = (list(c) for c in zip(*rows, strict=True))
    table = table_from_columns({"ts": [int(x * S) for x in t], "kind": k, "side": s, "price": p, "size": q,
                                "order_id": o, "snapshot": [False] * len(rows), "src_type": ["x"] * len(rows)})
    return EventDay(Instrument(symbol="T", venue="v", price_scale=100, tick_size=1), "2026-01-02", table)


# an ask at 101 whose delete the capture lost; a bid at 102 rests through it from t = 1 s
STALE_ASK = [
    (0.0, A, ASK, 101, 5, 1),
    (0.5, A, BID, 99, 3, 2),
    (1.0, A, BID, 102, 4, 3),  # crosses the lost ask
    (1.5, A, ASK, 104, 2, 4),
    (2.5, A, BID, 98, 1, 5),  # the book has now been crossed for 1.5 s
    (3.0, D, ASK, 101, 5, 1),  # the lost delete, late
    (3.5, D, BID, 102, 4, 3),
]


def rows_of(d: EventDay) -> list[tuple]:
    t = d.table.to_pydict()
    return list(zip(np.array(t["ts"]) / S, t["kind"], t["side"], t["price"], t["size"], t["order_id"],
                    t["src_type"], strict=True))


def test_the_older_crossed_order_is_deleted_when_the_grace_is_over():
    out = drop_stale(day(STALE_ASK), after_ns=S)
    got = rows_of(out)
    assert got[4] == (2.5, D, ASK, 101, 5, 1, STALE)  # written before the row that found it, at that row's time
    assert [r[:6] for r in got if r[6] != STALE] == STALE_ASK[:5] + STALE_ASK[6:]  # the late delete is dropped
    assert out.notes["stale_orders_deleted"] == 1 and out.notes["rows_naming_stale_orders_dropped"] == 1


def test_a_crossing_inside_the_grace_is_left_alone():
    assert drop_stale(day(STALE_ASK), after_ns=2 * S).table.equals(day(STALE_ASK).table)
    # a taker shown resting for an instant before its fills
    taker = [(0.0, A, ASK, 101, 5, 1), (1.0, A, BID, 101, 2, 2), (1.001, X, ASK, 101, 2, 1),
             (1.001, X, BID, 101, 2, 2), (5.0, A, BID, 99, 1, 3)]
    assert drop_stale(day(taker), after_ns=S // 10).notes.get("stale_orders_deleted") is None


def test_the_side_that_was_there_first_goes_even_when_it_is_the_bid():
    rows = [(0.0, A, BID, 103, 5, 1), (1.0, A, ASK, 100, 1, 2), (1.2, A, ASK, 101, 1, 3), (3.0, A, BID, 90, 1, 4)]
    got = rows_of(drop_stale(day(rows), after_ns=S))
    assert [r for r in got if r[6] == STALE] == [(3.0, D, BID, 103, 5, 1, STALE)]


def test_auction_rows_never_decide():
    """Outside continuous trading (``active`` False) a crossed book is the auction's and is kept."""
    d = day(STALE_ASK)
    assert drop_stale(d, after_ns=S, active=np.zeros(d.num_events, dtype=bool)).table.equals(d.table)
    active = np.ones(d.num_events, dtype=bool)
    active[:4] = False  # the crossing is first seen in continuous trading at row 4 (2.5 s): 1 s more is needed
    assert drop_stale(d, after_ns=S, active=active).notes.get("stale_orders_deleted") is None


def test_a_reused_id_is_a_new_order():
    rows = [*STALE_ASK[:5], (3.0, A, ASK, 110, 7, 1), (4.0, D, ASK, 110, 7, 1)]
    got = rows_of(drop_stale(day(rows), after_ns=S))
    assert [r[:6] for r in got[-2:]] == rows[-2:]


def test_no_later_row_changes_what_is_decided():
    """No leakage: the output up to a row is the output of the day cut after that row."""
    rng = np.random.default_rng(0)
    rows = []  # adds only, on both sides of 100: a replayed book that crosses again and again
    for i in range(400):
        side = BID if rng.random() < 0.5 else ASK
        rows.append((i * 0.1, A, side, int(100 - side * rng.integers(-1, 4)), int(rng.integers(1, 5)), i + 1))
    full = drop_stale(day(rows), after_ns=S // 2)
    assert full.notes["stale_orders_deleted"] > 0
    for cut in (50, 150, 399):
        part = drop_stale(day(rows[:cut]), after_ns=S // 2)
        n = part.num_events
        assert full.table.slice(0, n).equals(part.table)
    stale = full.table.filter(pc.equal(full.table.column("src_type"), STALE))
    assert stale.num_rows == full.notes["stale_orders_deleted"]
