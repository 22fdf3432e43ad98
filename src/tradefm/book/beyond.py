"""Depth beyond a feed's window, for simulated books that must not run dry.

A level-N feed (LOBSTER's files) shows N price levels a side. As the real book moves, levels from beyond enter
the window: the feed's *reveals*, volume that was always there and is no event. Its messages are only those
inside the window, so a book seeded from such a feed and driven by such messages (the model's, or the real ones
decoded) loses volume to cancels and trades that nothing replaces, until a side runs empty, which the real book
never does. :func:`top_up` plays the feed's part: whenever a side shows fewer than N levels it reveals one beyond
the deepest, its distance from that level and its size drawn together from the levels the real book showed at
the start (no later data), as anonymous volume. What an aggressor sweeps (:func:`cover`) and what lies in front
of an add placed beyond the deepest level (:func:`reach`) are revealed the same way. A full-depth feed
(``levels`` 0) has nothing beyond.
"""

from __future__ import annotations

from itertools import pairwise
from typing import NamedTuple

import numpy as np
from numba import njit

from . import engine as E
from .engine import kernel

REVEAL = 2  # the record flag of a revealed level (0: the market's own event, 1: a participant's)


class Beyond(NamedTuple):
    """The depth beyond the window of one or more markets (each its own start): market b's pairs are
    ``gaps[first[b]:first[b + 1]]`` and ``sizes[...]``."""

    levels: int  # the feed's window (0: full depth, nothing to reveal)
    gaps: np.ndarray  # int64 [n] a level's price distance from the next better level
    sizes: np.ndarray  # int64 [n] the level's size, drawn with its gap
    first: np.ndarray  # int64 [markets + 1] where each market's pairs begin
    spread: np.ndarray  # int64 [markets] an emptied side's new touch lies this far from the other side's best


NONE = Beyond(0, np.ones(1, dtype=np.int64), np.ones(1, dtype=np.int64), np.array([0, 1]), np.ones(1, np.int64))


def of(bids: list[tuple[int, int, int]], asks: list[tuple[int, int, int]], window: int) -> Beyond:
    """The (gap, size) pairs of both sides' levels behind the touch (as :meth:`OrderBook.levels` gives them,
    best first), for a feed of ``window`` levels."""
    gaps, sizes = [], []
    for side in (bids, asks):
        for (p0, _, _), (p1, q1, _) in pairwise(side):
            gaps.append(abs(p1 - p0))
            sizes.append(q1)
    if window <= 0 or not gaps:
        return NONE
    spread = asks[0][0] - bids[0][0] if bids and asks else min(gaps)
    return Beyond(int(window), np.asarray(gaps, dtype=np.int64), np.asarray(sizes, dtype=np.int64),
                  np.array([0, len(gaps)], dtype=np.int64), np.array([max(int(spread), 1)], dtype=np.int64))


def stack(each: list[Beyond]) -> Beyond:
    """Markets of one feed from different starts, in order: each draws from its own start's levels only (a
    market whose start showed none reveals nothing)."""
    levels = max(b.levels for b in each)
    if levels == 0:
        return NONE
    own = [b if b.levels else Beyond(levels, b.gaps[:0], b.sizes[:0], np.array([0, 0]), b.spread) for b in each]
    counts = [len(b.gaps) for b in own]
    return Beyond(levels, np.concatenate([b.gaps for b in own]), np.concatenate([b.sizes for b in own]),
                  np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                  np.concatenate([b.spread for b in own]).astype(np.int64))


def seeds(seed: int, n: int) -> np.ndarray:
    """One generator state per market (uint64), apart from every other stream the seed drives."""
    return np.array([np.random.SeedSequence([seed, r, REVEAL]).generate_state(1, np.uint64)[0] for r in range(n)],
                    dtype=np.uint64)


@kernel
def mix64(z: np.uint64) -> float:
    """splitmix64's finaliser as a uniform in [0, 1): well spread from any 64-bit state or key."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@kernel
def _uniform(rng: np.ndarray, b: int) -> float:
    """splitmix64: a uniform in [0, 1) from market ``b``'s state, which it advances."""
    z = rng[b] + np.uint64(0x9E3779B97F4A7C15)
    rng[b] = z
    return mix64(z)


@njit(cache=True)
def keyed_uniforms(keys: np.ndarray) -> np.ndarray:
    """A uniform in [0, 1) per 64-bit key, the same for the same key on every run (no state to carry)."""
    out = np.empty(len(keys))
    for i in range(len(keys)):
        out[i] = mix64(np.uint64(keys[i]) * np.uint64(0x9E3779B97F4A7C15))
    return out


@kernel
def _reveal(st: E.BookState, beyond: Beyond, rng: np.ndarray, b: int, s: int, log: np.ndarray, n: int,
            ts: int) -> int:
    """One level revealed behind side ``s``'s deepest (an empty side's starts the start's spread away from the
    other side's best) and written to ``log`` at row ``n``. Returns the next free row, or -1 if there is no
    price to put it at."""
    side = 1 if s == 0 else -1
    nlv = st.meta[E.M_NLV_BID + s]
    if nlv > 0:
        deepest = st.levels[s, 0, E.L_PRICE]  # levels run from the worst price to the best
    else:
        opp = st.meta[E.M_NLV_BID + 1 - s]
        if opp == 0:
            return -1
        deepest = st.levels[1 - s, opp - 1, E.L_PRICE]
    lo, m = beyond.first[b], beyond.first[b + 1] - beyond.first[b]
    if m == 0:
        return -1
    k = lo + min(int(_uniform(rng, b) * m), m - 1)
    price = deepest - side * (beyond.gaps[k] if nlv > 0 else beyond.spread[b])
    if price <= 0:
        return -1
    E._rest(st, 0, side, price, beyond.sizes[k], True)
    r = log[n]
    r[0], r[1], r[2], r[3], r[4], r[5], r[6] = ts, E.K_ADD, side, price, beyond.sizes[k], 0, REVEAL
    return n + 1


@kernel
def top_up(st: E.BookState, beyond: Beyond, rng: np.ndarray, b: int, log: np.ndarray, n: int, ts: int) -> int:
    """Reveal levels until each side shows ``beyond.levels``, each written to ``log`` from row ``n`` as
    (ts, ADD, side, price, size, 0, REVEAL). Returns the next free row. The caller leaves room for ``ROOM *
    beyond.levels`` more orders and rows."""
    if beyond.levels == 0:
        return n
    for s in range(2):
        while st.meta[E.M_NLV_BID + s] < beyond.levels:
            k = _reveal(st, beyond, rng, b, s, log, n, ts)
            if k < 0:
                break
            n = k
    return n


@kernel
def cover(st: E.BookState, beyond: Beyond, rng: np.ndarray, b: int, log: np.ndarray, n: int, ts: int, side: int,
          size: int) -> int:
    """Before an aggressor of ``size`` meets ``side``: the depth beyond the window is there for it too, so more
    levels are revealed while the side holds no more than ``size`` (up to ``COVER`` windows of them)."""
    if beyond.levels == 0:
        return n
    s = 0 if side > 0 else 1
    volume = 0
    for j in range(st.meta[E.M_NLV_BID + s]):
        volume += st.levels[s, j, E.L_SIZE]
    for _ in range(COVER * beyond.levels):
        if volume > size:
            break
        k = _reveal(st, beyond, rng, b, s, log, n, ts)
        if k < 0:
            break
        volume += log[n, 4]
        n = k
    return n


@kernel
def reach(st: E.BookState, beyond: Beyond, rng: np.ndarray, b: int, log: np.ndarray, n: int, ts: int, side: int,
          price: int) -> int:
    """Before a passive add on ``side`` behind that side's deepest level: the real book holds levels between them
    (a level-N feed shows none of them, nor such an add), so levels are revealed behind the deepest until one is at
    or behind ``price`` (up to ``COVER`` windows of them). Without them the add would rest as a lone level, and the
    hole in front of it would open the spread once the levels before it are gone."""
    if beyond.levels == 0:
        return n
    s = 0 if side > 0 else 1
    for _ in range(COVER * beyond.levels):
        if st.meta[E.M_NLV_BID + s] == 0 or side * (st.levels[s, 0, E.L_PRICE] - price) <= 0:
            break
        k = _reveal(st, beyond, rng, b, s, log, n, ts)
        if k < 0:
            break
        n = k
    return n


COVER = 5  # windows an aggressor, or an add behind the deepest level, may reach into beyond the visible ones
ROOM = 2 + COVER  # windows of reveals one step may add: a top-up of both sides and a cover or reach of one


@kernel
def room(beyond: Beyond) -> int:
    """Orders and record rows one event may add: its own, and every level its reveals may bring."""
    return ROOM * beyond.levels + 2


__all__ = ["COVER", "NONE", "REVEAL", "ROOM", "Beyond", "cover", "of", "reach", "room", "seeds", "stack", "top_up"]
