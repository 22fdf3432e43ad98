"""The matching engine: price-time priority, fills, cancels, modifies, snapshots, determinism."""

from __future__ import annotations

import pytest

from tradefm.book import Fill, OrderBook

BID, ASK = 1, -1


def test_marketable_limit_order_fills_in_price_then_time_priority() -> None:
    b = OrderBook()
    b.add(1, ASK, 101, 5)
    b.add(2, ASK, 100, 3)
    b.add(3, ASK, 100, 4)
    fills = b.add(9, BID, 101, 10)
    assert fills == [Fill(2, 100, 3, 9), Fill(3, 100, 4, 9), Fill(1, 101, 3, 9)]
    assert b.levels(ASK) == [(101, 2, 1)]
    assert b.levels(BID) == []  # fully filled, nothing rests


def test_remainder_of_a_marketable_order_rests() -> None:
    b = OrderBook()
    b.add(1, ASK, 100, 3)
    assert b.add(2, BID, 100, 10) == [Fill(1, 100, 3, 2)]
    assert b.levels(BID) == [(100, 7, 1)] and b.best() == (100, None)


def test_market_order_walks_the_book_and_drops_its_rest() -> None:
    b = OrderBook()
    b.add(1, BID, 99, 2)
    b.add(2, BID, 98, 2)
    assert b.market(ASK, 10) == [Fill(1, 99, 2, 0), Fill(2, 98, 2, 0)]
    assert b.levels(BID) == [] and b.levels(ASK) == []
    c = b.counters
    assert c.added == c.resting + c.filled + c.cancelled


def test_partial_cancel_delete_and_execute() -> None:
    b = OrderBook()
    b.add(1, BID, 100, 10)
    b.add(2, BID, 100, 5)
    b.cancel(1, 4)
    assert b.queue(BID, 100) == [(1, 6), (2, 5)]
    b.execute(1, 6)
    assert b.queue(BID, 100) == [(2, 5)]
    b.delete(2)
    assert b.levels(BID) == []


def test_modify_keeps_priority_only_when_shrinking_in_place() -> None:
    b = OrderBook()
    b.add(1, BID, 100, 10)
    b.add(2, BID, 100, 10)
    b.modify(1, 100, 5)
    assert b.queue(BID, 100) == [(1, 5), (2, 10)]
    b.modify(1, 100, 8)  # a size increase goes to the back
    assert b.queue(BID, 100) == [(2, 10), (1, 8)]
    b.add(3, ASK, 102, 1)
    assert b.modify(2, 102, 10) == [Fill(3, 102, 1, 2)]  # moving through the spread trades
    assert b.levels(BID) == [(102, 9, 1), (100, 8, 1)]


def test_unknown_ids_are_errors_in_matching_mode_and_counted_in_replay() -> None:
    b = OrderBook()
    with pytest.raises(KeyError, match="42"):
        b.cancel(42, 1)
    with pytest.raises(ValueError, match="already resting"):
        b.add(1, BID, 100, 1)
        b.add(1, BID, 100, 1)
    r = OrderBook(replay=True)
    r.add(0, BID, 100, 50)  # anonymous snapshot volume
    r.apply(3, BID, 100, 20, order_id=77)  # delete of an order the book never saw, 20 shares at 100
    assert r.levels(BID) == [(100, 30, 1)] and r.counters.unknown_refs == 1 and r.counters.missing == 0


def test_window_limited_book_forgets_levels_beyond_its_depth() -> None:
    b = OrderBook(replay=True, depth=2)
    for i, p in enumerate((100, 99, 98, 101)):
        b.add(i + 1, BID, p, 1)
    assert [p for p, _, _ in b.levels(BID)] == [101, 100]


def test_top_uses_lobster_layout() -> None:
    b = OrderBook()
    b.add(1, BID, 99, 5)
    b.add(2, ASK, 101, 7)
    b.add(3, ASK, 102, 1)
    assert b.top(2).tolist() == [101, 7, 99, 5, 102, 1, 0, 0]


def test_same_input_same_fills_and_state() -> None:
    def run() -> tuple[list[Fill], list[tuple[int, int, int]]]:
        b = OrderBook()
        fills = []
        for i in range(1, 400):
            side = BID if (i * 7919) % 3 else ASK
            fills += b.add(i, side, 100 + (i * 31) % 9 - 4, 1 + (i * 13) % 7)
        return fills, b.levels(BID) + b.levels(ASK)

    assert run() == run()


def test_capacity_grows_past_the_initial_arrays() -> None:
    b = OrderBook(capacity=4)
    for i in range(1, 1000):
        b.add(i, BID, 1000 - i % 50, 1)
    assert sum(q for _, q, _ in b.levels(BID)) == 999


def test_order_at_is_the_queue_read_from_either_end() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    b = OrderBook()
    for oid in range(1, 400):
        b.add(oid, BID, int(rng.integers(90, 96)), int(rng.integers(1, 9)))
        gone = int(rng.integers(1, oid + 1))
        if oid % 3 == 0 and b.holds(gone):
            b.cancel(gone, 1_000)  # holes in the queues
    assert b.level_array(BID).tolist() == [list(lv) for lv in b.levels(BID)]
    for price, _, count in b.levels(BID):
        queue = b.queue(BID, price)
        assert len(queue) == count
        assert [b.order_at(BID, price, k) for k in range(-count, count)] == queue + queue
        assert b.order_at(BID, price, count) is None and b.order_at(BID, price, -count - 1) is None
    assert b.order_at(BID, 50, 0) is None and b.order_at(ASK, 93, -1) is None
