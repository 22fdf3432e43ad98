"""The order book a user holds: a price-time-priority, level-3 matching engine over integer prices.

Thin Python around the compiled kernels in :mod:`tradefm.book.engine`: it owns the arrays, grows them when
needed, and turns kernel status codes into exceptions (matching mode) or counts (replay mode)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import engine as E


@dataclass(frozen=True)
class Fill:
    maker_id: int  # negative for anonymous (snapshot / revealed) volume
    price: int
    size: int
    taker_id: int


@dataclass(frozen=True)
class Counters:
    """Volume bookkeeping: added == resting + filled + cancelled always holds."""

    added: int
    filled: int
    cancelled: int
    resting: int
    hidden: int
    unknown_refs: int  # events that named an id the book never saw (replay mode)
    missing: int  # quantity those events could not find in anonymous volume (a replay inconsistency)
    crossed_adds: int  # replay-mode adds that would have crossed the book
    live_orders: int


class OrderBook:
    """A level-3 limit order book with price-time priority.

    ``replay=False`` (default) is a matching engine: marketable limit orders and market orders trade against
    resting liquidity and produce :class:`Fill` records; cancelling an unknown id raises ``KeyError``.
    ``replay=True`` follows a feed that reports its own executions (LOBSTER, MBO): adds always rest and ids the
    book never saw are taken from the anonymous volume at their price and counted instead of raised.
    ``depth`` > 0 keeps only that many price levels per side, as a window-limited feed does."""

    def __init__(self, replay: bool = False, depth: int = 0, capacity: int = 1024) -> None:
        self.replay = replay
        self.depth = depth
        self.state = E.new_state(capacity)

    # -- capacity
    def _reserve(self, events: int) -> None:
        st = self.state
        need = int(st.meta[E.M_NEXT_SLOT]) + events + 1
        cap = st.orders.shape[0]
        if need > cap:
            new = max(need, 2 * cap)
            orders = np.zeros((new, 6), dtype=np.int64)
            orders[:cap] = st.orders
            levels = np.zeros((2, new, 5), dtype=np.int64)
            levels[:, :cap] = st.levels
            free = np.zeros(new, dtype=np.int64)
            free[:cap] = st.free
            st = st._replace(orders=orders, levels=levels, free=free)
        if 2 * (int(st.meta[E.M_HUSED]) + events) > len(st.keys):  # keep the id index at most half full
            size = E._pow2(4 * (int(st.meta[E.M_LIVE]) + events))
            keys, vals = np.zeros(size, dtype=np.int64), np.zeros(size, dtype=np.int64)
            st.meta[E.M_HUSED] = E.rehash(st.keys, st.vals, keys, vals)
            st = st._replace(keys=keys, vals=vals)
        fill_need = int(st.meta[E.M_LIVE]) + 2 * events + 1
        if fill_need > st.fills.shape[0]:
            st = st._replace(fills=np.zeros((max(fill_need, 2 * st.fills.shape[0]), 4), dtype=np.int64))
        st.meta[E.M_NFILL] = 0
        self.state = st

    # -- single events
    def apply(self, kind: int, side: int, price: int, size: int, order_id: int = 0) -> list[Fill]:
        """Apply one canonical event (:class:`tradefm.events.Kind`, or 0 for a market order)."""
        self._reserve(1)
        status = E.apply_event(self.state, int(kind), int(side), int(price), int(size), int(order_id),
                               self.replay)
        if status == E.DUPLICATE_ORDER:
            raise ValueError(f"order id {order_id} is already resting")
        if status == E.UNKNOWN_ORDER:
            raise KeyError(f"order id {order_id} is not in the book")
        if self.depth:
            E.truncate(self.state, self.depth)
        return self.fills()

    def add(self, order_id: int, side: int, price: int, size: int) -> list[Fill]:
        """A limit order: trades against what it crosses, the rest rests (in matching mode)."""
        return self.apply(E.K_ADD, side, price, size, order_id)

    def market(self, side: int, size: int, order_id: int = 0) -> list[Fill]:
        """A market order: trades until filled or the other side is empty; any rest is cancelled."""
        return self.apply(E.K_MARKET, side, 0, size, order_id)

    def cancel(self, order_id: int, size: int) -> None:
        """Partial cancel: remove ``size`` from a resting order (all of it if ``size`` >= what is left)."""
        self.apply(E.K_CANCEL, self._side_of(order_id), self._price_of(order_id), size, order_id)

    def delete(self, order_id: int) -> None:
        self.apply(E.K_DELETE, self._side_of(order_id), self._price_of(order_id), 1, order_id)

    def modify(self, order_id: int, price: int, size: int) -> list[Fill]:
        """New price and/or size; keeps queue priority only for a size decrease at the same price."""
        return self.apply(E.K_MODIFY, self._side_of(order_id), price, size, order_id)

    def execute(self, order_id: int, size: int) -> None:
        """A feed reports that a given resting order traded ``size`` (replay of executions)."""
        self.apply(E.K_EXECUTE, self._side_of(order_id), self._price_of(order_id), size, order_id)

    # -- batches
    def apply_many(self, kind: np.ndarray, side: np.ndarray, price: np.ndarray, size: np.ndarray,
                   order_id: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Apply arrays of events in one compiled loop.

        Returns the per-event status codes and the touch after each event ([n, 4]: bid price, bid size, ask
        price, ask size; 0 for an empty side)."""
        n = len(kind)
        status = np.zeros(n, dtype=np.int64)
        touch = np.zeros((n, 4), dtype=np.int64)
        cols = [np.ascontiguousarray(a, dtype=np.int64) for a in (kind, side, price, size, order_id)]
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            self._reserve(b - a)
            E.apply_batch(self.state, *(c[a:b] for c in cols), self.replay, self.depth, status[a:b],
                          touch[a:b])
        return status, touch

    # -- reading the book
    def order(self, order_id: int) -> tuple[int, int, int]:
        """(side, price, remaining size) of a resting order."""
        slot = E.slot_of(self.state, int(order_id)) if order_id > 0 else E.NIL
        if slot == E.NIL:
            raise KeyError(f"order id {order_id} is not in the book")
        o = self.state.orders[slot]
        return int(o[E.O_SIDE]), int(o[E.O_PRICE]), int(o[E.O_SIZE])

    def _side_of(self, order_id: int) -> int:
        return self.order(order_id)[0] if self.holds(order_id) else 1

    def _price_of(self, order_id: int) -> int:
        return self.order(order_id)[1] if self.holds(order_id) else 0

    def holds(self, order_id: int) -> bool:
        """Whether an order with this id rests in the book."""
        return order_id > 0 and E.slot_of(self.state, int(order_id)) != E.NIL

    def levels(self, side: int) -> list[tuple[int, int, int]]:
        """(price, total size, order count) per level, best first."""
        return [(int(p), int(q), int(c)) for p, q, c in self.level_array(side)]

    def level_array(self, side: int) -> np.ndarray:
        """:meth:`levels` as an int64 array [levels, 3], for callers that look at a few of a deep book's levels."""
        s = 0 if side > 0 else 1
        n = int(self.state.meta[E.M_NLV_BID + s])
        return self.state.levels[s, :n][::-1][:, [E.L_PRICE, E.L_SIZE, E.L_COUNT]]

    def order_at(self, side: int, price: int, k: int) -> tuple[int, int] | None:
        """(order id, size) of the ``k``-th order at one price in time priority (-1: the newest), walking from the
        nearer end of the queue; None where there is no level or no such order."""
        s = 0 if side > 0 else 1
        pos = E._find_level(self.state, s, price)
        if pos < 0:
            return None
        count = int(self.state.levels[s, pos, E.L_COUNT])
        k = k + count if k < 0 else k
        if not 0 <= k < count:
            return None
        if k < count - 1 - k:
            slot, steps, link = int(self.state.levels[s, pos, E.L_HEAD]), k, E.O_NEXT
        else:
            slot, steps, link = int(self.state.levels[s, pos, E.L_TAIL]), count - 1 - k, E.O_PREV
        for _ in range(steps):
            slot = int(self.state.orders[slot, link])
        o = self.state.orders[slot]
        return int(o[E.O_ID]), int(o[E.O_SIZE])

    def queue(self, side: int, price: int) -> list[tuple[int, int]]:
        """(order id, size) at one price, in time priority."""
        s = 0 if side > 0 else 1
        pos = E._find_level(self.state, s, price)
        if pos < 0:
            return []
        out, slot = [], int(self.state.levels[s, pos, E.L_HEAD])
        while slot != E.NIL:
            o = self.state.orders[slot]
            out.append((int(o[E.O_ID]), int(o[E.O_SIZE])))
            slot = int(o[E.O_NEXT])
        return out

    def top(self, depth: int) -> np.ndarray:
        """Top ``depth`` levels in LOBSTER's layout (ask price, ask size, bid price, bid size per level)."""
        out = np.zeros(4 * depth, dtype=np.int64)
        E.top(self.state, depth, out)
        return out

    def best(self) -> tuple[int | None, int | None]:
        """Best bid and ask prices (None for an empty side)."""
        ask, _, bid, _ = (int(x) for x in self.top(1))
        return bid or None, ask or None

    def fills(self) -> list[Fill]:
        f = self.state.fills[: int(self.state.meta[E.M_NFILL])]
        return [Fill(int(m), int(p), int(q), int(t)) for m, p, q, t in f]

    @property
    def counters(self) -> Counters:
        m = self.state.meta
        resting = int(self.state.levels[0, : m[E.M_NLV_BID], E.L_SIZE].sum()
                      + self.state.levels[1, : m[E.M_NLV_ASK], E.L_SIZE].sum())
        return Counters(int(m[E.M_ADDED]), int(m[E.M_FILLED]), int(m[E.M_CANCELLED]), resting, int(m[E.M_HIDDEN]),
                        int(m[E.M_UNKNOWN]), int(m[E.M_MISSING]), int(m[E.M_CROSSED]), int(m[E.M_LIVE]))
