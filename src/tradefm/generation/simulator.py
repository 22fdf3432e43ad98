"""B simulated markets advanced together: one compiled call per step decodes, matches and measures every rollout.

The books are the matching engine's own arrays (:mod:`tradefm.book.engine`) stacked along a leading rollout axis;
the step kernel takes each rollout's sampled token (or a participant's order), decodes it with the shared rules of
:mod:`tradefm.codec`, applies it, records what happened the way a feed reports it (adds, cancels and deletes,
each fill as an execution of the resting order), moves the rollout's reference price, trailing window and
running size unit, and writes the context row the token enters the model with: the state just before the event,
as the features give it in training. Python touches the batch only between steps: to grow arrays, draw uniforms
in blocks, and hand over participants' orders.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..book import OrderBook, beyond
from ..book import engine as E
from ..codec import (
    ADD,
    SPREAD_FLOOR_BPS,
    Tables,
    best_price,
    bin_of,
    clock_bin,
    decode,
    depth_of,
    order_volume,
    size_units,
    token_of,
)
from ..events import EventDay
from .market import Market, books_at, record_day

kernel = E.kernel
BLOCK = 256  # uniforms drawn per rollout at a time (three per decoded token)
LOG = 7  # recorded columns: ts, kind, side, price, size, order id, flag
# a rollout's running states in ``vwap``: the EW-VWAP's sums, the log of its size unit (volume="relative"), and
# the last aggressor's side (+1 / -1, side="relative")
R_NUM, R_DEN, R_UNIT, R_SIDE = 0, 1, 2, 3
# per-rollout participant order handed to a step: valid, time (ns), side, size, limit price (0: a market order)
P_VALID, P_TS, P_SIDE, P_SIZE, P_PRICE = range(5)
NEED_LOG, NEED_UNIFORMS, NEED_ROOM = 1, 2, 3


@kernel
def _record(log: np.ndarray, n: int, ts: int, kind: int, side: int, price: int, size: int, oid: int,
            flag: int) -> int:
    r = log[n]
    r[0], r[1], r[2], r[3], r[4], r[5], r[6] = ts, kind, side, price, size, oid, flag
    return n + 1


@kernel
def _fills(st: E.BookState, log: np.ndarray, n: int, ts: int, side: int, flag: int, vwap: np.ndarray,
           last: np.ndarray, b: int, lam: float) -> int:
    """Record the step's fills as executions of the resting orders and move the EW-VWAP by each."""
    for f in range(st.meta[E.M_NFILL]):
        price, size = st.fills[f, 1], st.fills[f, 2]
        n = _record(log, n, ts, E.K_EXECUTE, -side, price, size, max(st.fills[f, 0], 0), flag)
        decay = math.exp(-lam * (ts - last[b])) if last[b] != 0 else 1.0
        vwap[b, R_NUM] = vwap[b, R_NUM] * decay + price * size
        vwap[b, R_DEN] = vwap[b, R_DEN] * decay + size
        last[b] = ts
    return n


@kernel
def _reference(st: E.BookState, t: Tables, vwap: np.ndarray, b: int) -> float:
    """The reference price depth is measured from: the rollout's EW-VWAP, or the book mid with
    ``reference="mid"`` (the EW-VWAP while a side is empty)."""
    if t.reference_mid:
        bid, ask = best_price(st, 1), best_price(st, -1)
        if bid != 0 and ask != 0:
            return (bid + ask) / 2
    return vwap[b, R_NUM] / vwap[b, R_DEN]


@kernel
def _context(st: E.BookState, t: Tables, reference: float, opening: float, now: int, window: int,
             rts: np.ndarray, rv: np.ndarray, rhead: np.ndarray, rlen: np.ndarray, rsum: np.ndarray, b: int,
             flag: int, row: np.ndarray) -> None:
    """The context row of an event at ``now``: tier, price level since the open, flag, the volume and activity
    regimes of the trailing window (strictly earlier events), the spread bin, and the clock if the features have
    it. The window's volume is a running sum, so a step costs the same however busy the window is."""
    cap = rts.shape[1]
    while rlen[b] > 0 and rts[b, rhead[b]] < now - window:  # out of the window for good
        rsum[b] -= rv[b, rhead[b]]
        rhead[b] = (rhead[b] + 1) % cap
        rlen[b] -= 1
    if rlen[b] == 0:
        rsum[b] = 0.0  # no rounding left behind by an emptied window
    n, volume = rlen[b], rsum[b]
    while n > 0 and rts[b, (rhead[b] + n - 1) % cap] >= now:  # stamped now: not before the event
        volume -= rv[b, (rhead[b] + n - 1) % cap]
        n -= 1
    change = (reference - opening) / opening if math.isfinite(opening) else 0.0
    bid, ask = best_price(st, 1), best_price(st, -1)
    spread = (ask - bid) / ((ask + bid) / 2) * 1e4 if bid != 0 and ask != 0 else np.nan
    row[0] = t.tier
    row[1] = bin_of(t.level_edges, change)
    row[2] = flag
    row[3] = bin_of(t.volume_regime_edges, np.log1p(volume))
    row[4] = bin_of(t.activity_regime_edges, np.log1p(float(n)))
    row[5] = bin_of(t.spread_edges, np.log(max(spread, SPREAD_FLOOR_BPS))) if spread == spread else 0
    if t.clock:
        row[6] = clock_bin(now, t.utc_offset)
    if t.feed:
        row[6 + t.clock] = 1  # the engine's book is whole: a full-book feed


@kernel
def _remember(rts: np.ndarray, rv: np.ndarray, rhead: np.ndarray, rlen: np.ndarray, rsum: np.ndarray, b: int,
              ts: int, volume: float) -> None:
    cap = rts.shape[1]
    k = (rhead[b] + rlen[b]) % cap
    rts[b, k], rv[b, k] = ts, volume
    rlen[b] += 1
    rsum[b] += volume


@kernel
def _advance(b: int, orders, levels, free, fills, meta, keys, vals, t: Tables, tokens, due, u, ucur, ts, next_id,
             vwap, last, opening: float, lam: float, window: int, rts, rv, rhead, rlen, rsum, log, nlog, ctx,
             deep: beyond.Beyond, rng) -> int:
    """Advance rollout ``b`` by one event, then reveal the depth it uncovered (:mod:`tradefm.book.beyond`).
    Returns 0, or what Python must do first: grow the record (``NEED_LOG``), the book (``NEED_ROOM``) or draw
    uniforms (``NEED_UNIFORMS``); the rollout is then left as it was."""
    st = E.BookState(orders[b], levels[b], free[b], fills[b], meta[b], keys[b], vals[b])
    room = beyond.room(deep)
    if nlog[b] + st.meta[E.M_LIVE] + room > log.shape[1]:
        return NEED_LOG
    if (st.orders.shape[0] - st.meta[E.M_NEXT_SLOT] + st.meta[E.M_FREE] < room
            or st.fills.shape[0] < st.meta[E.M_LIVE] + room):
        return NEED_ROOM
    done = _event(st, b, t, tokens, due, u, ucur, ts, next_id, vwap, last, opening, lam, window, rts, rv, rhead,
                  rlen, rsum, log, nlog, ctx, deep, rng)
    if done == 0:
        nlog[b] = beyond.top_up(st, deep, rng, b, log[b], nlog[b], ts[b])
    return done


@kernel
def _event(st: E.BookState, b: int, t: Tables, tokens, due, u, ucur, ts, next_id, vwap, last, opening: float,
           lam: float, window: int, rts, rv, rhead, rlen, rsum, log, nlog, ctx, deep: beyond.Beyond, rng) -> int:
    """One event of rollout ``b``. A rollout with a participant order due (``due``) executes it and its token is
    written back to ``tokens``; the others decode their sampled token. ``ctx`` gets the event's context row
    (measured before it meets the book); an aggressor meets the depth beyond the window too."""
    st.meta[E.M_NFILL] = 0
    lg = log[b]
    if due[b, P_VALID]:  # the participant acts now; the model's sample is set aside
        side, size, limit = due[b, P_SIDE], due[b, P_SIZE], due[b, P_PRICE]
        now = max(ts[b], due[b, P_TS])
        r = max(t.resolution_ns, 1)  # its token's wait as the tokenizer's clock would stamp it
        dt = (now // r - ts[b] // r) * r / 1e9
        ts[b] = now
        reference = _reference(st, t, vwap, b)
        _context(st, t, reference, opening, now, window, rts, rv, rhead, rlen, rsum, b, 1, ctx[b])
        own, hit = best_price(st, side), best_price(st, -side)
        next_id[b] += 1
        st.meta[E.M_ADDED] += size
        if limit == 0 or (hit != 0 and (limit >= hit if side > 0 else limit <= hit)):
            nlog[b] = beyond.cover(st, deep, rng, b, lg, nlog[b], now, -side, size)
        else:
            nlog[b] = beyond.reach(st, deep, rng, b, lg, nlog[b], now, side, limit)
        left = E._match(st, next_id[b], side, limit, size)  # limit 0 is MARKET: no price limit
        filled, worst = 0, 0
        for f in range(st.meta[E.M_NFILL]):
            filled += st.fills[f, 2]
            worst = st.fills[f, 1]  # fills come best price first: the last is the worst
        nlog[b] = _fills(st, lg, nlog[b], now, side, 1, vwap, last, b, lam)
        if left > 0 and limit != 0:  # a limit order's rest rests, a market order's is dropped
            E._rest(st, next_id[b], side, limit, left, False)
            nlog[b] = _record(lg, nlog[b], now, E.K_ADD, side, limit, left, next_id[b], 1)
        elif left > 0:
            st.meta[E.M_CANCELLED] += left
        price = float(worst) if filled > 0 else (float(limit) if limit != 0 else reference)
        amount = filled if filled > 0 else size
        after = best_price(st, -side)
        depth = depth_of(ADD, side, price, reference, float(own) if own != 0 else np.nan, filled > 0,
                         float(hit) if hit != 0 else np.nan, after != hit, t.cancel_touch, t.join_touch,
                         t.clear_touch, t.add_touch)
        volume = order_volume(t, amount, price, size_units(t, vwap[b, R_UNIT]))
        bit = (side != vwap[b, R_SIDE]) if t.relative_side else (side < 0)
        tokens[b] = token_of(ADD, 1 if bit else 0, depth, np.log1p(volume), dt, t.depth_edges,
                             t.volume_edges, t.dt_edges, t.radix)
        if filled > 0:
            vwap[b, R_SIDE] = side
        _remember(rts, rv, rhead, rlen, rsum, b, now, volume)
        return 0
    if ucur[b] >= u.shape[1]:
        return NEED_UNIFORMS
    k = ucur[b]
    ucur[b] += 1
    reference = _reference(st, t, vwap, b)
    units = size_units(t, vwap[b, R_UNIT])
    kind, side, price, size, oid, dt = decode(st, t, tokens[b], u[b, k, 0], u[b, k, 1], u[b, k, 2], reference,
                                              next_id[b] + 1, units, int(vwap[b, R_SIDE]))
    if kind == 0:  # a cancel with nothing on its side: no event, the clock stays
        _context(st, t, reference, opening, ts[b], window, rts, rv, rhead, rlen, rsum, b, 0, ctx[b])
        return 0
    ts[b] += int(dt * 1e9)
    now = ts[b]
    _context(st, t, reference, opening, now, window, rts, rv, rhead, rlen, rsum, b, 0, ctx[b])
    _remember(rts, rv, rhead, rlen, rsum, b, now, order_volume(t, size, price, units))
    if kind == E.K_ADD:
        # a marketable add is immediate-or-cancel: in the data an aggressor is the executions it made (the
        # features rebuild it from them), so a remainder resting through the spread is never in a token
        opp = best_price(st, -side)
        marketable = opp != 0 and (price >= opp if side > 0 else price <= opp)
        next_id[b] += 1
        st.meta[E.M_ADDED] += size
        if marketable:
            vwap[b, R_SIDE] = side
            nlog[b] = beyond.cover(st, deep, rng, b, lg, nlog[b], now, -side, size)
        else:
            nlog[b] = beyond.reach(st, deep, rng, b, lg, nlog[b], now, side, price)
        left = E._match(st, next_id[b], side, price, size)
        nlog[b] = _fills(st, lg, nlog[b], now, side, 0, vwap, last, b, lam)
        if left > 0 and marketable:
            st.meta[E.M_CANCELLED] += left
        elif left > 0:
            E._rest(st, next_id[b], side, price, left, False)
            nlog[b] = _record(lg, nlog[b], now, E.K_ADD, side, price, left, next_id[b], 0)
        return 0
    if oid > 0:  # a known order is deleted whole
        slot = E.slot_of(st, oid)
        resting = st.orders[slot, E.O_SIZE]
        size = min(size, resting)
        event = E.K_DELETE if size == resting else E.K_CANCEL
    else:  # anonymous volume at the price
        s = 0 if side > 0 else 1
        pos = E._find_level(st, s, price)
        anonymous = 0
        if pos >= 0:
            slot = st.levels[s, pos, E.L_HEAD]
            while slot != E.NIL:
                if st.orders[slot, E.O_ID] < 0:
                    anonymous += st.orders[slot, E.O_SIZE]
                slot = st.orders[slot, E.O_NEXT]
        size = min(size, anonymous)
        event = E.K_CANCEL
    if size > 0:
        E.apply_event(st, event, side, price, size, oid, False)
        nlog[b] = _record(lg, nlog[b], now, event, side, price, size, oid, 0)
    return 0


@njit(cache=True, parallel=True)
def step(orders, levels, free, fills, meta, keys, vals, t: Tables, tokens, due, u, ucur, ts, next_id, vwap, last,
         opening: float, lam: float, window: int, rts, rv, rhead, rlen, rsum, log, nlog, ctx, deep, rng, todo,
         need) -> None:
    """Advance the rollouts ``todo`` by one event each, on every core: rollouts share nothing, so the result does
    not depend on the threads. ``need[b]`` is set as :func:`_advance` returns it."""
    for i in prange(len(todo)):
        b = todo[i]
        need[b] = _advance(b, orders, levels, free, fills, meta, keys, vals, t, tokens, due, u, ucur, ts, next_id,
                           vwap, last, opening, lam, window, rts, rv, rhead, rlen, rsum, log, nlog, ctx, deep, rng)


_STATE = ("orders", "levels", "free", "fills", "meta", "keys", "vals")


class Simulator:
    """The markets of B rollouts, each from the real book at its own start (each distinct start's book is built
    once): the stacked engine arrays, each rollout's clock, reference price, trailing window and record, and the
    uniforms its decoding draws."""

    def __init__(self, day: EventDay, starts: np.ndarray, tables: Tables, seed: int, refs: np.ndarray,
                 opening: float, half_life_s: float, window_s: float,
                 recent: list[tuple[np.ndarray, np.ndarray]], units: np.ndarray | None = None,
                 sides: np.ndarray | None = None) -> None:
        """``starts`` [B] ns, ``refs`` [B] each rollout's reference price at its start, ``recent`` per rollout
        the (ts, volume) of the real events in the trailing window before its start, ``units`` [B] the
        running unit's state there (``volume="relative"``: the log unit, :func:`~tradefm.codec.unit_of`), which the
        rollout holds: a unit moved by the rollout's own sizes, themselves drawn in that unit, has nothing to hold
        it to the market's (closed loop on real GOOG tokens it fell from 32 to 16 shares within 3,000 events), and
        ``sides`` [B] the last real aggressor's side before it (+1 / -1; ``side="relative"``)."""
        starts = np.asarray(starts, dtype=np.int64)
        rollouts = len(starts)
        firsts, group = np.unique(starts, return_inverse=True)
        real = books_at(day, firsts)
        seeded = [Market(day, int(s), seed=seed, real=real[int(s)]) for s in firsts]  # real books, anonymous
        self.instrument, self.date, self.start_ts = day.instrument, day.date, starts
        self.snapshots = [np.stack([np.asarray(m.rows[c], dtype=np.int64)
                                    for c in ("ts", "kind", "side", "price", "size", "order_id", "flag")], axis=1)
                          for m in seeded]
        self.group = group.astype(np.int64)
        self.beyond = beyond.stack([seeded[g].beyond for g in self.group])
        self.rng = beyond.seeds(seed, rollouts)
        self.room = beyond.room(self.beyond)
        self.t, self.B = tables, rollouts
        self.state = _stacked([m.book.state for m in seeded], self.group)
        self.ts = starts.copy()
        self.next_id = np.array([seeded[g].next_id for g in self.group], dtype=np.int64)
        units = np.zeros(rollouts) if units is None else np.asarray(units, np.float64)
        sides = np.ones(rollouts) if sides is None else np.asarray(sides, np.float64)
        self.vwap = np.column_stack([np.asarray(refs, dtype=np.float64), np.ones(rollouts), units, sides])
        self.last = np.zeros(rollouts, dtype=np.int64)
        self.opening, self.lam, self.window = float(opening), math.log(2) / (half_life_s * 1e9), int(window_s * 1e9)
        cap = max(1024, 2 * max(len(rts) for rts, _ in recent))
        self.rts = np.zeros((rollouts, cap), dtype=np.int64)
        self.rv = np.zeros((rollouts, cap))
        for b, (rts, rv) in enumerate(recent):
            self.rts[b, : len(rts)], self.rv[b, : len(rv)] = rts, rv
        self.rhead = np.zeros(rollouts, dtype=np.int64)
        self.rlen = np.array([len(rts) for rts, _ in recent], dtype=np.int64)
        self.rsum = np.array([float(np.sum(rv)) for _, rv in recent])
        self.log = np.zeros((rollouts, 4096, LOG), dtype=np.int64)
        self.nlog = np.zeros(rollouts, dtype=np.int64)
        self.rngs = [np.random.default_rng([seed, r]) for r in range(rollouts)]
        self.u = np.stack([g.random((BLOCK, 3)) for g in self.rngs])
        self.ucur = np.zeros(rollouts, dtype=np.int64)
        # the tokenizer's context fields
        self.ctx = np.zeros((rollouts, 6 + tables.clock + tables.feed), dtype=np.int64)
        self.no_orders = np.zeros((rollouts, 5), dtype=np.int64)
        self.everyone, self.need = np.arange(rollouts), np.zeros(rollouts, dtype=np.int64)
        self._steps_left = 0

    # ------------------------------------------------------------------ capacity
    def _reserve(self, steps: int) -> None:
        """Room for ``steps`` more events in every book (each rests at most one order, and a top-up at most
        ``room`` - 2 revealed ones: a step short of room says so), its fills and its trailing window; the id index
        kept at most half full."""
        st, meta = self.state, self.state["meta"]
        cap = st["orders"].shape[1]
        need = int(meta[:, E.M_NEXT_SLOT].max()) + steps + self.room
        if need > cap:
            new = max(need, 2 * cap)
            st["orders"] = _grow(st["orders"], 1, new)
            st["levels"] = _grow(st["levels"], 2, new)
            st["free"] = _grow(st["free"], 1, new)
        fill_need = int(meta[:, E.M_LIVE].max()) + 2 * steps + self.room
        if fill_need > st["fills"].shape[1]:
            st["fills"] = np.zeros((self.B, max(fill_need, 2 * st["fills"].shape[1]), 4), dtype=np.int64)
        if 2 * (int(meta[:, E.M_HUSED].max()) + steps) > st["keys"].shape[1]:
            size = E._pow2(4 * (int(meta[:, E.M_LIVE].max()) + steps))
            keys, vals = np.zeros((self.B, size), dtype=np.int64), np.zeros((self.B, size), dtype=np.int64)
            for b in range(self.B):
                meta[b, E.M_HUSED] = E.rehash(st["keys"][b], st["vals"][b], keys[b], vals[b])
            st["keys"], st["vals"] = keys, vals
        if int(self.rlen.max()) + steps > self.rts.shape[1]:  # unroll each ring into a larger one
            cap = 2 * (int(self.rlen.max()) + steps)
            idx = (self.rhead[:, None] + np.arange(self.rts.shape[1])[None]) % self.rts.shape[1]
            self.rts = _grow(np.take_along_axis(self.rts, idx, 1), 1, cap)
            self.rv = _grow(np.take_along_axis(self.rv, idx, 1), 1, cap)
            self.rhead[:] = 0
        self._steps_left = steps

    # ------------------------------------------------------------------ stepping
    def step(self, tokens: np.ndarray, due: np.ndarray | None = None) -> np.ndarray:
        """One event per rollout: ``tokens`` [B] int64 (participants' tokens are written into it), ``due``
        [B, 5] participant orders (``P_*`` columns). Returns the context rows [B, fields] of the events."""
        if self._steps_left <= 0:
            self._reserve(64)
        self._steps_left -= 1
        due = self.no_orders if due is None else due
        st, todo, need = self.state, self.everyone, self.need
        while True:
            step(*(st[name] for name in _STATE), self.t, tokens, due, self.u, self.ucur, self.ts, self.next_id,
                 self.vwap, self.last, self.opening, self.lam, self.window, self.rts, self.rv, self.rhead, self.rlen,
                 self.rsum, self.log, self.nlog, self.ctx, self.beyond, self.rng, todo, need)
            todo = todo[need[todo] != 0]
            if not len(todo):
                return self.ctx
            if (need[todo] == NEED_ROOM).any():
                self._reserve(max(self._steps_left, 1))
                st = self.state
            if (need[todo] == NEED_LOG).any():
                self.log = _grow(self.log, 1, 2 * self.log.shape[1] + int(st["meta"][todo, E.M_LIVE].max()))
            for b in todo[need[todo] == NEED_UNIFORMS]:
                self.u[b] = self.rngs[b].random((BLOCK, 3))
                self.ucur[b] = 0

    # ------------------------------------------------------------------ reading
    def book(self, b: int) -> OrderBook:
        """Rollout ``b``'s book, read-only: an :class:`OrderBook` over views of the batch's arrays (valid until
        the next step)."""
        view = OrderBook(replay=False)
        view.state = E.BookState(*(self.state[name][b] for name in _STATE))
        return view

    def days(self, source: str) -> list[EventDay]:
        """Each rollout's record as a feed-like EventDay: the snapshot rows, then what happened."""
        out = []
        for b in range(self.B):
            snapshot = self.snapshots[self.group[b]]
            out.append(record_day(self.instrument, self.date, np.concatenate([snapshot, self.log[b, : self.nlog[b]]]),
                                  len(snapshot), source))
        return out

    @property
    def nbytes(self) -> int:
        """Memory held by the batch (books, windows, records, uniforms)."""
        arrays = [*self.state.values(), self.rts, self.rv, self.log, self.u]
        return int(sum(a.nbytes for a in arrays))


def _stacked(states: list[E.BookState], group: np.ndarray) -> dict[str, np.ndarray]:
    """Engine arrays of books (one per start) stacked as ``group`` picks them: each padded to the largest, the
    id index rebuilt at the largest size (its slot of an id depends on the table's size)."""
    out = {}
    for name in _STATE:
        arrays = [getattr(st, name) for st in states]
        shape = np.max([a.shape for a in arrays], axis=0)
        if name in ("keys", "vals"):
            continue
        padded = np.zeros((len(arrays), *shape), dtype=arrays[0].dtype)
        for i, a in enumerate(arrays):
            padded[(i, *(slice(0, n) for n in a.shape))] = a
        out[name] = padded[group]
    size = max(len(st.keys) for st in states)
    keys, vals = np.zeros((len(states), size), dtype=np.int64), np.zeros((len(states), size), dtype=np.int64)
    for i, st in enumerate(states):
        if len(st.keys) == size:
            keys[i], vals[i] = st.keys, st.vals
        else:
            used = E.rehash(st.keys, st.vals, keys[i], vals[i])
            out["meta"][group == i, E.M_HUSED] = used
    out["keys"], out["vals"] = keys[group], vals[group]
    return out


def _grow(a: np.ndarray, axis: int, size: int) -> np.ndarray:
    shape = list(a.shape)
    shape[axis] = size
    out = np.zeros(shape, dtype=a.dtype)
    out[tuple(slice(0, n) for n in a.shape)] = a
    return out


__all__ = ["Simulator", "step"]
