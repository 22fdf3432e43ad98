"""Compiled kernels of the level-3 order book: price-time priority over integer prices.

The state is a handful of NumPy arrays (see :class:`BookState`), so a whole day replays inside one compiled
loop. Levels of a side are kept sorted from the worst price to the best, so the best level is the last one and
inserting or removing near the touch moves few entries. Each level holds a FIFO queue of orders (a doubly
linked list through the order slots). Orders whose id the book never saw (resting before a feed starts, or
revealed by a depth snapshot) are *anonymous*: they carry negative ids, sit at the front of their level, and
absorb executions and cancels that name an unknown id at that price.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

# No kernel allocates, so Numba's reference counting of the state arrays on every call is switched off: it was
# most of the per-event cost (measured: ~50 of ~60 ns for an event that changes nothing).
kernel = njit(cache=True, _nrt=False)

# order slot fields
O_ID, O_SIDE, O_PRICE, O_SIZE, O_PREV, O_NEXT = range(6)
# level fields
L_PRICE, L_SIZE, L_HEAD, L_TAIL, L_COUNT = range(5)
# counters in ``meta``
(
    M_NLV_BID, M_NLV_ASK, M_FREE, M_NEXT_SLOT, M_NFILL, M_ANON, M_UNKNOWN, M_ADDED, M_FILLED, M_CANCELLED,
    M_HIDDEN, M_LIVE, M_CROSSED, M_MISSING, M_HUSED,
) = range(15)
N_META = 16
NIL = -1

# event kinds (tradefm.events.Kind)
K_ADD, K_CANCEL, K_DELETE, K_EXECUTE, K_EXECUTE_HIDDEN, K_CROSS, K_HALT, K_TRADE, K_MODIFY, K_CLEAR = range(1, 11)
K_MARKET = 0  # a market order: not a feed event, used by simulation
MARKET = 0  # the ``limit`` of a market order: none


class BookState(NamedTuple):
    orders: np.ndarray  # int64 [capacity, 6]
    levels: np.ndarray  # int64 [2, level_capacity, 5]; side 0 = bid, 1 = ask
    free: np.ndarray  # int64 [capacity] stack of freed order slots
    fills: np.ndarray  # int64 [fill_capacity, 4]: maker id, price, size, taker id
    meta: np.ndarray  # int64 [N_META] counters
    keys: np.ndarray  # int64 [2^k] id index: order ids (0 empty, -1 deleted), open addressing
    vals: np.ndarray  # int64 [2^k] id index: the order's slot


def _pow2(n: int) -> int:
    return 1 << max(4, (int(n) - 1).bit_length())


def new_state(capacity: int = 1024) -> BookState:
    meta = np.zeros(N_META, dtype=np.int64)
    return BookState(
        orders=np.zeros((capacity, 6), dtype=np.int64),
        levels=np.zeros((2, capacity, 5), dtype=np.int64),
        free=np.zeros(capacity, dtype=np.int64),
        fills=np.zeros((2 * capacity, 4), dtype=np.int64),
        meta=meta,
        keys=np.zeros(_pow2(4 * capacity), dtype=np.int64),
        vals=np.zeros(_pow2(4 * capacity), dtype=np.int64),
    )


# ---------------------------------------------------------------- the id index (order id -> slot)
# Linear probing over a power-of-two table kept at most half full (with deleted marks) by the caller.
_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64: multiplicative hashing


@kernel
def _home(keys: np.ndarray, oid: int) -> int:
    return ((oid * _GOLDEN) >> 29) & (len(keys) - 1)


@kernel
def slot_of(st: BookState, oid: int) -> int:
    """The slot of a resting order, or NIL."""
    mask = len(st.keys) - 1
    h = _home(st.keys, oid)
    while st.keys[h] != 0:
        if st.keys[h] == oid:
            return st.vals[h]
        h = (h + 1) & mask
    return NIL


@kernel
def _index_put(st: BookState, oid: int, slot: int) -> None:
    """Callers check the id is absent first, so the first free or deleted place is the right one."""
    mask = len(st.keys) - 1
    h = _home(st.keys, oid)
    while st.keys[h] > 0:
        h = (h + 1) & mask
    if st.keys[h] == 0:
        st.meta[M_HUSED] += 1
    st.keys[h] = oid
    st.vals[h] = slot


@kernel
def _index_del(st: BookState, oid: int) -> None:
    mask = len(st.keys) - 1
    h = _home(st.keys, oid)
    while st.keys[h] != oid:
        h = (h + 1) & mask
    st.keys[h] = -1


@kernel
def rehash(old_keys: np.ndarray, old_vals: np.ndarray, keys: np.ndarray, vals: np.ndarray) -> int:
    """Move the live ids into a fresh table; return how many there are."""
    mask, n = len(keys) - 1, 0
    for i in range(len(old_keys)):
        k = old_keys[i]
        if k > 0:
            h = _home(keys, k)
            while keys[h] != 0:
                h = (h + 1) & mask
            keys[h], vals[h] = k, old_vals[i]
            n += 1
    return n


# ---------------------------------------------------------------- levels


@kernel
def _si(side: int) -> int:
    """Side (+1 bid / -1 ask) to array index (0 / 1)."""
    return 0 if side > 0 else 1


@kernel
def _find_level(st: BookState, s: int, price: int) -> int:
    """Index of ``price`` on side index ``s``, or ``-(insert position) - 1`` if absent (binary search)."""
    sg = 1 if s == 0 else -1
    key = price * sg
    lo, hi = 0, st.meta[M_NLV_BID + s]
    while lo < hi:
        mid = (lo + hi) >> 1
        k = st.levels[s, mid, L_PRICE] * sg
        if k < key:
            lo = mid + 1
        elif k > key:
            hi = mid
        else:
            return mid
    return -lo - 1


@kernel
def _insert_level(st: BookState, s: int, pos: int, price: int) -> None:
    n = st.meta[M_NLV_BID + s]
    lv = st.levels[s]
    for k in range(n, pos, -1):  # scalar copies: far faster than row slices in a compiled loop
        for f in range(5):
            lv[k, f] = lv[k - 1, f]
    lv[pos, L_PRICE] = price
    lv[pos, L_SIZE] = 0
    lv[pos, L_HEAD] = NIL
    lv[pos, L_TAIL] = NIL
    lv[pos, L_COUNT] = 0
    st.meta[M_NLV_BID + s] = n + 1


@kernel
def _delete_level(st: BookState, s: int, pos: int) -> None:
    n = st.meta[M_NLV_BID + s]
    lv = st.levels[s]
    for k in range(pos, n - 1):
        for f in range(5):
            lv[k, f] = lv[k + 1, f]
    st.meta[M_NLV_BID + s] = n - 1


# ---------------------------------------------------------------- orders


@kernel
def _alloc(st: BookState) -> int:
    if st.meta[M_FREE] > 0:
        st.meta[M_FREE] -= 1
        return st.free[st.meta[M_FREE]]
    slot = st.meta[M_NEXT_SLOT]
    st.meta[M_NEXT_SLOT] = slot + 1
    return slot


@kernel
def _rest(st: BookState, oid: int, side: int, price: int, size: int, front: bool) -> int:
    """Put an order in its level's queue (at the back, or the front for anonymous snapshot volume)."""
    s = _si(side)
    pos = _find_level(st, s, price)
    if pos < 0:
        pos = -pos - 1
        _insert_level(st, s, pos, price)
    if oid == 0:
        st.meta[M_ANON] -= 1
        oid = st.meta[M_ANON]
    slot = _alloc(st)
    o = st.orders[slot]
    o[O_ID], o[O_SIDE], o[O_PRICE], o[O_SIZE] = oid, side, price, size
    lv = st.levels[s, pos]
    if lv[L_COUNT] == 0:
        o[O_PREV], o[O_NEXT] = NIL, NIL
        lv[L_HEAD], lv[L_TAIL] = slot, slot
    elif front:
        o[O_PREV], o[O_NEXT] = NIL, lv[L_HEAD]
        st.orders[lv[L_HEAD], O_PREV] = slot
        lv[L_HEAD] = slot
    else:
        o[O_PREV], o[O_NEXT] = lv[L_TAIL], NIL
        st.orders[lv[L_TAIL], O_NEXT] = slot
        lv[L_TAIL] = slot
    lv[L_COUNT] += 1
    lv[L_SIZE] += size
    if oid > 0:
        _index_put(st, oid, slot)
    st.meta[M_LIVE] += 1
    return slot


@kernel
def _reduce(st: BookState, slot: int, qty: int) -> None:
    """Take ``qty`` off a resting order (``qty`` >= its size removes it) and keep its level consistent."""
    o = st.orders[slot]
    s = _si(o[O_SIDE])
    pos = _find_level(st, s, o[O_PRICE])
    lv = st.levels[s, pos]
    if qty < o[O_SIZE]:
        o[O_SIZE] -= qty
        lv[L_SIZE] -= qty
        return
    lv[L_SIZE] -= o[O_SIZE]
    o[O_SIZE] = 0
    prv, nxt = o[O_PREV], o[O_NEXT]
    if prv != NIL:
        st.orders[prv, O_NEXT] = nxt
    else:
        lv[L_HEAD] = nxt
    if nxt != NIL:
        st.orders[nxt, O_PREV] = prv
    else:
        lv[L_TAIL] = prv
    lv[L_COUNT] -= 1
    if lv[L_COUNT] == 0:
        _delete_level(st, s, pos)
    if o[O_ID] > 0:
        _index_del(st, o[O_ID])
    st.free[st.meta[M_FREE]] = slot
    st.meta[M_FREE] += 1
    st.meta[M_LIVE] -= 1


@kernel
def _reduce_anonymous(st: BookState, side: int, price: int, qty: int) -> int:
    """An unknown id at ``price``: take ``qty`` from the anonymous volume at the front of that level.

    Returns the quantity that could not be found (0 when the book stays consistent)."""
    s = _si(side)
    pos = _find_level(st, s, price)
    if pos < 0:
        return qty
    slot = st.levels[s, pos, L_HEAD]
    while qty > 0 and slot != NIL and st.orders[slot, O_ID] < 0:
        nxt = st.orders[slot, O_NEXT]
        take = min(qty, st.orders[slot, O_SIZE])
        last = st.levels[s, pos, L_COUNT] == 1 and take == st.orders[slot, O_SIZE]
        _reduce(st, slot, take)
        qty -= take
        if last:
            break
        slot = nxt
    return qty


# ---------------------------------------------------------------- matching


@kernel
def _match(st: BookState, taker_id: int, side: int, limit: int, qty: int) -> int:
    """Fill an incoming order against the opposite side in price-time priority; return what is left.

    ``limit`` == MARKET means no price limit."""
    o_s = 1 - _si(side)
    sg = 1 if side > 0 else -1
    while qty > 0:
        n = st.meta[M_NLV_BID + o_s]
        if n == 0:
            break
        best = st.levels[o_s, n - 1]
        if limit != MARKET and best[L_PRICE] * sg > limit * sg:
            break
        slot = best[L_HEAD]
        take = min(qty, st.orders[slot, O_SIZE])
        f = st.meta[M_NFILL]
        st.fills[f, 0], st.fills[f, 1] = st.orders[slot, O_ID], best[L_PRICE]
        st.fills[f, 2], st.fills[f, 3] = take, taker_id
        st.meta[M_NFILL] = f + 1
        st.meta[M_FILLED] += 2 * take  # both the resting and the incoming order filled this much
        qty -= take
        _reduce(st, slot, take)
    return qty


OK, UNKNOWN_ORDER, DUPLICATE_ORDER = 0, 1, 2


@kernel
def _add(st: BookState, side: int, price: int, size: int, oid: int, replay: bool) -> int:
    if oid > 0 and slot_of(st, oid) != NIL:
        return DUPLICATE_ORDER
    st.meta[M_ADDED] += size
    o_s = 1 - _si(side)
    if not replay:
        size = _match(st, oid, side, price, size)
    elif st.meta[M_NLV_BID + o_s] > 0:
        opp = st.levels[o_s, st.meta[M_NLV_BID + o_s] - 1, L_PRICE]
        if (side > 0 and price >= opp) or (side < 0 and price <= opp):
            st.meta[M_CROSSED] += 1
    if size > 0:
        _rest(st, oid, side, price, size, False)
    return OK


@kernel
def apply_event(st: BookState, kind: int, side: int, price: int, size: int, oid: int, replay: bool) -> int:
    """Apply one canonical event; return OK, UNKNOWN_ORDER or DUPLICATE_ORDER.

    ``replay`` = False is the matching engine: a marketable add trades and the rest rests, an unknown id is an
    error that changes nothing, and id 0 on a cancel, delete or execution takes from the anonymous volume.
    ``replay`` = True follows a feed that reports executions itself: an add always rests, and an unknown id
    takes its quantity from the anonymous volume at its price (counted)."""
    if kind == K_ADD:
        return _add(st, side, price, size, oid, replay)
    if kind == K_EXECUTE_HIDDEN:
        st.meta[M_HIDDEN] += size
        return OK
    if kind == K_CANCEL or kind == K_DELETE or kind == K_EXECUTE:  # noqa: SIM109 (plain compares compile best)
        slot = slot_of(st, oid) if oid > 0 else NIL
        if slot != NIL:
            qty = st.orders[slot, O_SIZE] if kind == K_DELETE else min(size, st.orders[slot, O_SIZE])
            _reduce(st, slot, qty)
        elif replay or oid == 0:  # order id 0 names anonymous volume at ``price`` explicitly
            st.meta[M_UNKNOWN] += oid != 0
            missing = _reduce_anonymous(st, side, price, size)
            st.meta[M_MISSING] += missing
            qty = size - missing
        else:
            return UNKNOWN_ORDER
        if kind == K_EXECUTE:
            st.meta[M_FILLED] += qty
        else:
            st.meta[M_CANCELLED] += qty
        return OK
    if kind == K_MODIFY:
        slot = slot_of(st, oid) if oid > 0 else NIL
        if slot == NIL:
            st.meta[M_UNKNOWN] += 1
            return UNKNOWN_ORDER
        old_price, old_size, old_side = st.orders[slot, O_PRICE], st.orders[slot, O_SIZE], st.orders[slot, O_SIDE]
        if price == old_price and size <= old_size:  # a size decrease keeps its place in the queue
            st.meta[M_CANCELLED] += old_size - size
            if size < old_size:
                _reduce(st, slot, old_size - size)
            return OK
        st.meta[M_CANCELLED] += old_size
        _reduce(st, slot, old_size)
        return _add(st, old_side, price, size, oid, replay)
    if kind == K_CLEAR:
        for s in range(2):
            while st.meta[M_NLV_BID + s] > 0:
                lv = st.levels[s, st.meta[M_NLV_BID + s] - 1]
                st.meta[M_CANCELLED] += st.orders[lv[L_HEAD], O_SIZE]
                _reduce(st, lv[L_HEAD], st.orders[lv[L_HEAD], O_SIZE])
        return OK
    if kind == K_MARKET:
        st.meta[M_ADDED] += size
        left = _match(st, oid, side, MARKET, size)
        st.meta[M_CANCELLED] += left  # the unfilled rest of a market order is cancelled
        return OK
    return OK  # CROSS, HALT, TRADE: no change to the visible book


@kernel
def truncate(st: BookState, depth: int) -> None:
    """Forget every level beyond ``depth`` on both sides (a window-limited feed says nothing about them)."""
    for s in range(2):
        while st.meta[M_NLV_BID + s] > depth:
            lv = st.levels[s, 0]  # the worst level
            _reduce(st, lv[L_HEAD], st.orders[lv[L_HEAD], O_SIZE])


@kernel
def top(st: BookState, depth: int, out: np.ndarray) -> None:
    """Write the top ``depth`` levels as LOBSTER lays them out: ask price, ask size, bid price, bid size.

    Empty levels get price 0 and size 0."""
    out[:] = 0
    for s in range(2):
        n = st.meta[M_NLV_BID + s]
        col = 2 if s == 0 else 0
        for j in range(min(depth, n)):
            lv = st.levels[s, n - 1 - j]
            out[4 * j + col] = lv[L_PRICE]
            out[4 * j + col + 1] = lv[L_SIZE]


@kernel
def apply_batch(
    st: BookState, kind: np.ndarray, side: np.ndarray, price: np.ndarray, size: np.ndarray,
    oid: np.ndarray, replay: bool, depth: int, status: np.ndarray, touch: np.ndarray,
) -> int:
    """Apply events in order; ``status[i]`` gets each event's result and ``touch[i]`` the touch after it: bid
    price, bid size, ask price, ask size (0 for an empty side). ``depth`` > 0 keeps only that many levels per
    side (a window-limited feed). Returns the number of events that failed."""
    bad = 0
    for i in range(len(kind)):
        status[i] = apply_event(st, kind[i], side[i], price[i], size[i], oid[i], replay)
        bad += status[i] != OK
        if depth > 0:
            truncate(st, depth)
        for s in range(2):
            n = st.meta[M_NLV_BID + s]
            touch[i, 2 * s] = st.levels[s, n - 1, L_PRICE] if n > 0 else 0
            touch[i, 2 * s + 1] = st.levels[s, n - 1, L_SIZE] if n > 0 else 0
    return bad


# replay check statistics
R_ROWS, R_MISMATCH, R_FIRST_BAD, R_REVEALS = range(4)


@kernel
def replay_check(
    st: BookState, kind: np.ndarray, side: np.ndarray, price: np.ndarray, size: np.ndarray,
    oid: np.ndarray, rows: np.ndarray, row0: int, stats: np.ndarray, reveals: np.ndarray,
) -> int:
    """Replay a window-limited feed (depth = ``rows.shape[1] // 4``) and compare the book with each recorded
    row (LOBSTER layout). The only thing taken from a row is a *reveal*: a level beyond the deepest level the
    book knows, entering the window after a level inside it went away. Everything else must already match.

    Each reveal is written to ``reveals`` as (event index, side, price, size); returns how many were written."""
    depth = rows.shape[1] // 4
    found = 0
    for i in range(len(kind)):
        apply_event(st, kind[i], side[i], price[i], size[i], oid[i], True)
        truncate(st, depth)
        ok = True
        for s in range(2):
            col = 2 if s == 0 else 0
            sg = 1 if s == 0 else -1
            for j in range(depth):
                p_row, q_row = rows[i, 4 * j + col], rows[i, 4 * j + col + 1]
                n = st.meta[M_NLV_BID + s]
                if j < n:
                    lv = st.levels[s, n - 1 - j]
                    if q_row <= 0 or lv[L_PRICE] != p_row or lv[L_SIZE] != q_row:
                        ok = False
                elif q_row > 0:
                    if n > 0 and p_row * sg >= st.levels[s, 0, L_PRICE] * sg:
                        ok = False  # not beyond the deepest known level: no reveal can explain it
                    else:
                        _rest(st, 0, sg, p_row, q_row, True)
                        stats[R_REVEALS] += 1
                        if found < len(reveals):
                            reveals[found, 0], reveals[found, 1] = row0 + i, sg
                            reveals[found, 2], reveals[found, 3] = p_row, q_row
                        found += 1
        stats[R_ROWS] += 1
        if not ok:
            if stats[R_MISMATCH] == 0:
                stats[R_FIRST_BAD] = row0 + i
            stats[R_MISMATCH] += 1
    return found
