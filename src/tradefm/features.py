"""Scale-invariant, causal features of order flow: what a token is made of.

The canonical events of a symbol-day become *order events* (the paper's actions: add and cancel). A feed
reports an aggressive order as executions of the resting orders it hit; those executions (one aggressor, one
timestamp, one side) become one marketable add on the opposite side: price = its worst fill, size = the total,
so that in a rollout the matching engine produces the fills again. Partial cancels and deletes are cancels.
With ``hidden=False`` executions of hidden orders are left out: they fill inside the spread without showing in
the book, and a rollout's book has no hidden order for such a token to hit (decoded, it would rest there).

Per order event, using only events up to it:
- ``dt``: seconds since the previous order event of the symbol;
- ``depth_bps``: distance of the order's price from the reference price, in basis points, signed so that
  positive is away from the market (passive) and negative is through it (aggressive), on both sides; with
  ``cancel_from="touch"`` (beyond the paper) a cancel's is measured from the best quote of its own side instead
  (0 = it leaves the best level): a cancel can only remove what rests, so the touch is where it is aimed;
  with ``add_from="touch"`` (beyond the paper) an add's too, so that a passive order is placed by the book it
  meets (bps behind its quote) rather than by the reference, and one inside the spread by the share of the
  spread it crossed (:func:`~tradefm.codec.depth_of`), so that it decodes inside whatever spread a rollout's book
  has instead of through it;
  with ``join_touch`` (beyond the paper) a passive add on its side's best quote has depth exactly 0 too, and an
  add that is exactly at the reference without being on the quote moves off 0 by a hair: 0 then always means
  "at the best quote", a value of its own that decoding puts back on the quote (in bps from the reference, 21% of
  real GOOG passive adds, those that join the queue, would be spread over a 3-tick bin and rarely land on it);
  with ``clear_touch`` (beyond the paper) an aggressor that took the whole opposite best level, and no deeper, has
  depth ``CLEAR`` (the negative number nearest 0), which decoding turns into taking that level whole in the book it
  meets: the widening of the spread is in the token, not left to sizes matching a rollout's book (three in five
  real aggressors do take the level whole); one that took part of it has depth ``TAKE`` (the next negative
  number), decoded as taking part of that level and leaving the quote where it is. Measured from the reference,
  a fifth of those had a positive depth (the EW-VWAP had lagged beyond the quote they hit) and decoded as passive
  adds one tick short of the other side's quote; on the LOBSTER samples every visible aggressor is one of the two;
- ``log_volume``: log(1 + size in shares / contracts / coins), or of its value in currency (``volume="notional"``:
  a coin and a share are not the same amount of anything, and the paper's unit squeezes BTC into one bin), or of
  its size in the instrument's running unit (``volume="relative"``: the power of 2 nearest the geometric mean size
  of its earlier order events that day, ``log_unit``), which bins shares, contracts and coins alike;
- ``level_change``: (reference mid − the day's first mid) / first mid;
- ``flag``: 0 for the background market, 1 for a participant's own (injected) orders;
- ``spread_bps`` (with ``book_context``, beyond the paper): the book's spread before the event, in bps of the book
  mid, so the model sees the book state it acts on in the unit its depths are in (a 9-tick spread is narrow for
  GOOG at $570 but wide for AMZN at $220; 1.6 and 4 bps say so);
- ``utc_offset`` (with ``clock``, beyond the paper): the venue's UTC offset that day, from which a token's context
  clock (the half hour of the local day, :func:`~tradefm.codec.clock_bin`) is read off its timestamp: a session's
  tempo follows the clock (busy open and close, quiet lunch), which a model can otherwise only guess from its own
  trailing activity;
- ``book_feed`` (the context field ``feed`` with ``feed``, beyond the paper): whether the feed has shown any resting
  order by the event (an add, a cancel, a snapshot row), so a full-book feed and a trades-only one (Binance's
  trade stream, a vendor's trades schema) are told apart: from the trades alone every event is an aggressor,
  and a model that cannot tell the feeds apart learns that of a full book too;
- ``recent_volume`` and ``recent_events``: the order volume (same unit as ``log_volume``) and the number of order
  events in the ``window_s`` seconds before the event: the raw material of the volume and activity regimes a
  user can ask a rollout for (the paper's controllable indicator tokens).

The reference price is an exponentially weighted VWAP of executions (time half-life ``half_life_s``), falling
back to the book mid before the day's first execution; ``reference="mid"`` uses the book mid throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numba import njit

from .book import OrderBook
from .book.beyond import keyed_uniforms
from .codec import BUY, SELL, FeatureConfig, depth_of, next_unit, units_of, utc_offset_ns
from .events import EventDay, Kind

_EXEC = (Kind.EXECUTE, Kind.EXECUTE_HIDDEN, Kind.TRADE)
COLUMNS = ["ts", "kind", "side", "price", "size", "order_id", "snapshot"]  # what features read of an event


def _kinds(*kinds: int) -> np.ndarray:
    """A lookup table: ``_kinds(...)[kind]`` is a fast ``isin`` for small codes."""
    table = np.zeros(256, dtype=bool)
    table[list(kinds)] = True
    return table


_IS_EXEC, _IS_CANCEL = _kinds(*_EXEC), _kinds(Kind.CANCEL, Kind.DELETE)
_IS_VISIBLE_EXEC = _kinds(*(k for k in _EXEC if k != Kind.EXECUTE_HIDDEN))
_IS_ORDER = _kinds(Kind.ADD, Kind.CANCEL, Kind.DELETE, Kind.MODIFY)
@dataclass
class OrderFlow:
    """Order events of one symbol-day and their features (all arrays of one length)."""

    ts: np.ndarray  # int64 ns
    action: np.ndarray  # int8: ADD / CANCEL
    side: np.ndarray  # int8: BUY / SELL
    price: np.ndarray  # int64 price units
    size: np.ndarray  # int64 size units
    aggressive: np.ndarray  # bool: rebuilt from executions
    dt: np.ndarray  # float64 seconds
    depth_bps: np.ndarray  # float64
    log_volume: np.ndarray  # float64
    level_change: np.ndarray  # float64
    flag: np.ndarray  # int8
    reference: np.ndarray  # float64 price units: the reference price before the event (NaN before one exists)
    recent_volume: np.ndarray  # float64: order volume in the trailing window before the event
    recent_events: np.ndarray  # float64: order events in the trailing window before the event
    spread_bps: np.ndarray  # float64: the book's spread before the event, bps of its mid (NaN without book context)
    log_unit: np.ndarray  # float64: the running unit's EW log size over earlier events (volume="relative"; else 0)
    book_feed: np.ndarray  # bool: the feed has shown a resting order (an add, cancel or snapshot row) by the event
    notional: float  # traded value of the day, currency units (for the liquidity tier)
    utc_offset: int = 0  # ns: the venue's UTC offset that day (clock=True; else 0)

    def __len__(self) -> int:
        return len(self.ts)


@njit(cache=True)
def _ew_vwap(ts: np.ndarray, exec_price: np.ndarray, exec_size: np.ndarray, is_exec: np.ndarray,
             half_life_ns: float) -> np.ndarray:
    """EW-VWAP *before* each event (NaN until the first execution). Between executions the common decay factor
    cancels in the ratio, so the value only moves when an execution arrives."""
    out = np.empty(len(ts))
    num = den = 0.0
    last = ts[0] if len(ts) else 0
    lam = np.log(2.0) / half_life_ns
    for i in range(len(ts)):
        out[i] = num / den if den > 0 else np.nan
        if is_exec[i]:
            decay = np.exp(-lam * (ts[i] - last))
            num = num * decay + exec_price[i] * exec_size[i]
            den = den * decay + exec_size[i]
            last = ts[i]
    return out


@njit(cache=True)
def running_unit(size: np.ndarray) -> np.ndarray:
    """The mean of log ``size`` over the events *before* each one, exponentially weighted once they outnumber the
    half-life's weight (the first event has only itself): the state :func:`~tradefm.codec.unit_of` turns into the
    running unit, and a rollout starts from (one :func:`~tradefm.codec.next_unit` on) and holds."""
    out = np.empty(len(size))
    state = np.log(size[0]) if len(size) else 0.0
    for i in range(len(size)):
        out[i] = state
        state = next_unit(state, float(i), size[i])
    return out


def trailing(ts: np.ndarray, volume: np.ndarray, window_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Volume and count of the events in [t - window, t) before each event (strictly earlier: causal)."""
    cum = np.concatenate([[0.0], np.cumsum(volume)])
    first = np.searchsorted(ts, ts - int(window_s * 1e9), side="left")
    last = np.searchsorted(ts, ts, side="left")  # events at the same timestamp are not "before"
    return cum[last] - cum[first], (last - first).astype(np.float64)


def spread_bps(bid: np.ndarray | float, ask: np.ndarray | float) -> np.ndarray:
    """The spread in bps of the mid (NaN where a side is empty)."""
    bid, ask = np.asarray(bid, dtype=np.float64), np.asarray(ask, dtype=np.float64)
    return (ask - bid) / ((ask + bid) / 2) * 1e4


def book_after(day: EventDay, upto: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best bid and ask (price units, NaN for an empty side) after each canonical event, from the engine;
    only the first ``upto`` events are replayed (the rest stay NaN)."""
    t = day.table
    n = t.num_rows if upto is None else min(upto, t.num_rows)
    cols = [t.column(c).to_numpy()[:n].astype(np.int64) for c in ("kind", "side", "price", "size", "order_id")]
    depth = day.levels
    _, touch = OrderBook(replay=True, depth=depth).apply_many(*cols)
    out = np.full((t.num_rows, 2), np.nan)
    out[:n] = np.where(touch[:, [0, 2]] > 0, touch[:, [0, 2]], np.nan)
    return out[:, 0], out[:, 1]


def _before(after: np.ndarray) -> np.ndarray:
    """Before event i is after event i - 1 (nothing before the first)."""
    return np.concatenate([[np.nan], after[:-1]])[: len(after)]


def book_before(day: EventDay, upto: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best bid and ask (price units, NaN for an empty side) before each canonical event, from the engine;
    only the first ``upto`` events are replayed (the rest stay NaN)."""
    bid, ask = book_after(day, upto)
    return _before(bid), _before(ask)


def book_mid_before(day: EventDay, upto: int | None = None) -> np.ndarray:
    """The book mid (price units, NaN when a side is empty) before each canonical event."""
    bid, ask = book_before(day, upto)
    return (bid + ask) / 2


@njit(cache=True)
def _depths(action, side, price, reference, best, aggressive, other, emptied, cancel_touch, join_touch, clear_touch,
            add_touch):
    """:func:`tradefm.codec.depth_of` of every order event of a day."""
    out = np.empty(len(action))
    for i in range(len(action)):
        out[i] = depth_of(action[i], side[i], price[i], reference[i], best[i], aggressive[i], other[i], emptied[i],
                          cancel_touch, join_touch, clear_touch, add_touch)
    return out


def order_factor(key: np.ndarray, width: float) -> np.ndarray:
    """exp(U(-width, width)) per key (an order's id), from a hash of it: the same order keeps its factor on
    every event, and the same day gives the same factors on every run."""
    u = keyed_uniforms(np.ascontiguousarray(key, dtype=np.uint64))
    return np.exp(width * (2.0 * u - 1.0))


def order_flow(day: EventDay, config: FeatureConfig | None = None) -> OrderFlow:
    """Turn one symbol-day of canonical events into order events with causal features."""
    cfg = config or FeatureConfig()
    if cfg.trades_only:  # the same flow as a trades feed shows it: no book, only what traded
        kinds, snap = day.table.column("kind").to_numpy().astype(np.uint8), day.table.column("snapshot").to_numpy()
        day = replace(day, table=day.table.filter(_IS_EXEC[kinds] & ~snap))
    t = day.table
    kind = t.column("kind").to_numpy()
    side = t.column("side").to_numpy()
    price = t.column("price").to_numpy()
    size = t.column("size").to_numpy()
    ts = t.column("ts").to_numpy()
    if cfg.resolution_ns > 1:
        ts = ts // cfg.resolution_ns * cfg.resolution_ns
    market = ~t.column("snapshot").to_numpy()
    kind_u8 = kind.astype(np.uint8)
    is_exec = (_IS_EXEC if cfg.hidden else _IS_VISIBLE_EXEC)[kind_u8] & market & (side != 0)

    # reference price before each event: EW-VWAP, with the book mid before the day's first execution
    # (then the book need only be replayed that far), or the book mid throughout
    whole_book = (cfg.reference == "mid" or cfg.book_context or cfg.cancel_from == "touch" or cfg.join_touch
                  or cfg.clear_touch or cfg.add_from == "touch")
    first_exec = int(np.argmax(is_exec)) if is_exec.any() else len(kind)
    bid_after, ask_after = book_after(day, None if whole_book else first_exec + 1)
    bid, ask = _before(bid_after), _before(ask_after)
    mid = (bid + ask) / 2
    if cfg.reference == "mid":
        ref_all = mid
    else:
        vwap = _ew_vwap(ts, price.astype(float), size.astype(float), is_exec, cfg.half_life_s * 1e9)
        ref_all = np.where(np.isnan(vwap), mid, vwap)

    # executions of one aggressor: consecutive, same timestamp, same resting side -> one marketable add
    prev_same = np.zeros(len(kind), dtype=bool)
    prev_same[1:] = is_exec[:-1] & (ts[1:] == ts[:-1]) & (side[1:] == side[:-1])
    group_start = is_exec & ~prev_same
    ex = np.flatnonzero(is_exec)
    firsts = np.flatnonzero(group_start[ex])  # each aggressor's executions are one run of ``ex``
    g_size = np.add.reduceat(size[ex], firsts) if len(ex) else np.zeros(0, np.int64)
    g_max = np.maximum.reduceat(price[ex], firsts) if len(ex) else g_size
    g_min = np.minimum.reduceat(price[ex], firsts) if len(ex) else g_size
    g_rest = side[ex[firsts]]  # the side each aggressor hit
    g_price = np.where(g_rest < 0, g_max, g_min)  # a buyer's worst fill is the highest ask, etc.

    is_order = market & _IS_ORDER[kind_u8]
    rows = np.flatnonzero(is_order | group_start)
    from_exec = group_start[rows]
    o_side = np.where(from_exec, -side[rows], side[rows])
    o_price = price[rows].astype(np.int64)
    o_size = size[rows].astype(np.int64)
    o_price[from_exec] = g_price
    o_size[from_exec] = g_size
    action = _IS_CANCEL[kind_u8[rows]].astype(np.int8)  # CANCEL = 1, ADD = 0

    o_ts = ts[rows]
    ref = ref_all[rows]
    known = ~np.isnan(ref)
    # before any reference exists (empty book, no trade yet) the order is its own reference: depth 0
    ref_or_own = np.where(known, ref, o_price)
    best = np.where(o_side > 0, bid[rows], ask[rows])  # its side's best quote before it (NaN: that side is empty)
    other = np.where(o_side > 0, ask[rows], bid[rows])  # the other side's (an aggressor's: the best it hit)
    emptied = np.zeros(len(rows), dtype=bool)  # an aggressor's: whether it left the level it hit empty
    if len(ex):
        last = ex[np.append(firsts[1:], len(ex)) - 1]  # each aggressor's last execution
        left = np.where(g_rest > 0, bid_after[last], ask_after[last])  # that side's best once it was done
        emptied[from_exec] = np.isnan(left) | (g_rest * (other[from_exec] - left) > 0)
    depth_bps = _depths(action, o_side.astype(np.int64), o_price.astype(np.float64), ref_or_own, best, from_exec,
                        other, emptied, cfg.cancel_from == "touch", cfg.join_touch, cfg.clear_touch,
                        cfg.add_from == "touch")
    dt = np.diff(o_ts, prepend=o_ts[:1]) / 1e9
    # price level since the open: the reference against the day's first reference, known from where it exists
    level_change = np.zeros(len(rows))
    if known.any():
        opening = ref[np.argmax(known)]
        level_change[known] = (ref[known] - opening) / opening
    inst = day.instrument
    volume = o_size / inst.size_scale
    if cfg.size_jitter:
        # an aggressor's row is its first execution, whose id is the resting order's: its time tells it apart
        key = t.column("order_id").to_numpy()[rows].view(np.uint64) ^ np.where(from_exec, o_ts, 0).view(np.uint64)
        volume = volume * order_factor(key, cfg.size_jitter)
    log_unit = np.zeros(len(rows))
    if cfg.volume == "relative":
        log_unit = running_unit(np.maximum(volume, 1.0 / inst.size_scale))
        volume = volume / units_of(log_unit)
    if cfg.volume == "notional":
        volume = volume * o_price / inst.price_scale
    recent_volume, recent_events = trailing(o_ts, volume, cfg.window_s)
    notional = float((price[is_exec] / inst.price_scale * size[is_exec] / inst.size_scale).sum())
    return OrderFlow(
        ts=o_ts, action=action, side=np.where(o_side > 0, BUY, SELL).astype(np.int8), price=o_price, size=o_size,
        aggressive=from_exec, dt=dt, depth_bps=depth_bps, log_volume=np.log1p(volume),
        level_change=level_change, flag=np.zeros(len(rows), dtype=np.int8), reference=ref,
        recent_volume=recent_volume, recent_events=recent_events, notional=notional,
        spread_bps=spread_bps(bid[rows], ask[rows]) if cfg.book_context else np.full(len(rows), np.nan),
        log_unit=log_unit, book_feed=np.maximum.accumulate(_IS_ORDER[kind_u8])[rows],
        utc_offset=utc_offset_ns(inst.timezone, day.date) if cfg.clock else 0,
    )
