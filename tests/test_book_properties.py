"""Property-based tests: random order streams against a plain-Python reference book and the invariants."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradefm.book import Fill, OrderBook

BID, ASK = 1, -1


class ReferenceBook:
    """The obvious, slow price-time-priority book: dict of price -> FIFO list of [id, size]."""

    def __init__(self) -> None:
        self.sides: dict[int, dict[int, list[list[int]]]] = {BID: {}, ASK: {}}
        self.where: dict[int, tuple[int, int]] = {}

    def _best(self, side: int) -> int | None:
        prices = self.sides[side]
        return (max if side == BID else min)(prices) if prices else None

    def _take(self, side: int, price: int, oid: int, qty: int) -> None:
        queue = self.sides[side][price]
        for o in queue:
            if o[0] == oid:
                o[1] -= qty
                if o[1] == 0:
                    queue.remove(o)
                    del self.where[oid]
                break
        if not queue:
            del self.sides[side][price]

    def add(self, oid: int, side: int, price: int | None, qty: int) -> list[Fill]:
        fills = []
        other = -side
        while qty > 0:
            best = self._best(other)
            if best is None or (price is not None and (best > price if side == BID else best < price)):
                break
            maker = self.sides[other][best][0]
            take = min(qty, maker[1])
            fills.append(Fill(maker[0], best, take, oid))
            qty -= take
            self._take(other, best, maker[0], take)
        if qty > 0 and price is not None:
            self.sides[side].setdefault(price, []).append([oid, qty])
            self.where[oid] = (side, price)
        return fills

    def cancel(self, oid: int, qty: int) -> None:
        side, price = self.where[oid]
        size = next(o[1] for o in self.sides[side][price] if o[0] == oid)
        self._take(side, price, oid, min(qty, size))

    def levels(self, side: int) -> list[tuple[int, int, int]]:
        prices = sorted(self.sides[side], reverse=side == BID)
        return [(p, sum(o[1] for o in self.sides[side][p]), len(self.sides[side][p])) for p in prices]


ops = st.lists(
    st.tuples(
        st.sampled_from(["limit", "limit", "limit", "market", "cancel", "delete", "modify", "bogus_cancel"]),
        st.sampled_from([BID, ASK]),
        st.integers(95, 105),  # price in ticks: a narrow range makes crossing common
        st.integers(1, 20),
        st.integers(0, 10_000),  # picks an existing order for cancels
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_engine_matches_the_reference_and_keeps_its_invariants(stream: list[tuple[str, int, int, int, int]]) -> None:
    book, ref = OrderBook(capacity=8), ReferenceBook()
    next_id = 1
    for op, side, price, size, pick in stream:
        live = sorted(ref.where)
        if op == "limit":
            assert book.add(next_id, side, price, size) == ref.add(next_id, side, price, size)
            next_id += 1
        elif op == "market":
            assert book.market(side, size, order_id=next_id) == ref.add(next_id, side, None, size)
            next_id += 1
        elif op in ("cancel", "delete") and live:
            oid = live[pick % len(live)]
            qty = size if op == "cancel" else 10**9
            book.cancel(oid, qty) if op == "cancel" else book.delete(oid)
            ref.cancel(oid, qty)
        elif op == "modify" and live:
            oid = live[pick % len(live)]
            s, p = ref.where[oid]
            old = next(o[1] for o in ref.sides[s][p] if o[0] == oid)
            fills = book.modify(oid, price, size)
            if price == p and size <= old:
                ref.cancel(oid, old - size) if size < old else None
                assert fills == []
            else:
                ref.cancel(oid, old)
                assert fills == ref.add(oid, s, price, size)
        elif op == "bogus_cancel":
            with pytest.raises(KeyError):
                book.cancel(10**6 + pick, size)
        # the same book, level by level and queue by queue (FIFO within each level)
        assert book.levels(BID) == ref.levels(BID) and book.levels(ASK) == ref.levels(ASK)
        for s in (BID, ASK):
            for p, _, _ in ref.levels(s):
                assert book.queue(s, p) == [tuple(o) for o in ref.sides[s][p]]
        bid, ask = book.best()
        assert bid is None or ask is None or bid < ask  # never crossed after matching
        c = book.counters
        assert c.added == c.resting + c.filled + c.cancelled  # volume is conserved


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5), st.sampled_from([BID, ASK]), st.integers(90, 110),
                          st.integers(1, 50), st.integers(-3, 40)), max_size=200))
def test_replay_mode_never_crashes_and_counts_unknown_ids(events: list[tuple[int, int, int, int, int]]) -> None:
    """Arbitrary feed garbage (unknown ids, crossing adds, duplicate ids) is counted, never a crash."""
    book = OrderBook(replay=True, depth=3, capacity=4)
    for kind, side, price, size, oid in events:
        with contextlib.suppress(ValueError):  # a duplicate id is refused before it changes anything
            book.apply(kind, side, price, size, order_id=max(oid, 0))
        assert len(book.levels(BID)) <= 3 and len(book.levels(ASK)) <= 3
        for s in (BID, ASK):
            assert all(q > 0 and n > 0 for _, q, n in book.levels(s))
