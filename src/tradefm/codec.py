"""What a token means as an order: the rules between one order event and its token, both ways, in one place.

Encoding (training, and a participant's own orders in a rollout) measures an order's depth by the rules of a
:class:`FeatureConfig`; decoding (rollouts, :func:`tradefm.generation.rollout.decode_real`, book dynamics) turns a
token back into a concrete order against the book it meets. Both are compiled scalar kernels over the matching
engine's own arrays (:mod:`tradefm.book.engine`), so the one-book Python call :func:`decode_order` and the batched
rollout step run the same code. Settings come as named presets (:data:`FEATURES`): the paper's features, and
the book-context features the demo uses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
from numba import njit

from .book import engine as E
from .events import InputError

kernel = njit(cache=True, _nrt=False)

ADD, CANCEL = 0, 1  # action
BUY, SELL = 0, 1  # side index in tokens (bid/buy side first)
# the depth of an aggressor that took its opposite best level whole: no price difference in bps comes this near 0
CLEAR = float(np.nextafter(0.0, -1.0))
# ... and of one that took part of it (the level stays): the next such number
TAKE = float(np.nextafter(CLEAR, -1.0))
DT_FLOOR = 1e-6  # seconds: dt is binned as log(dt + 1 µs); closer events count as simultaneous
SPREAD_FLOOR_BPS = 1e-3  # a locked or crossed book's spread, for the log
# volume="relative": sizes in a running unit, the power of 2 nearest the geometric mean size of the instrument's
# earlier order events that day (the mean of their log sizes, weighted exponentially with this half-life in events
# once that many have been seen)
UNIT_HALF_LIFE = 250
UNIT_ALPHA = 1.0 - 0.5 ** (1.0 / UNIT_HALF_LIFE)
# clock=True: the half hour of the venue's local day as a context field (the tempo of a session follows the clock)
CLOCK_BINS = 48
# add_from="touch": an add inside the spread has depth -INSIDE times the share of the spread it crossed, one at or
# through the other side's quote -INSIDE minus the bps beyond it
INSIDE = 1.0
_DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class FeatureConfig:
    half_life_s: float = 10.0  # EW-VWAP half-life; docs/TOKENS.md has the measurement behind it
    reference: str = "vwap"  # "vwap" (the paper's) or "mid" (the book's)
    volume: str = "size"  # "size": log(1 + shares/contracts/coins) (the paper's); "notional": log(1 + currency);
    # "relative": log(1 + size in the instrument's running unit), the same bins for shares, contracts and coins
    window_s: float = 60.0  # trailing window of the volume and activity regimes
    book_context: bool = False  # also give the model the book's spread before each event (not in the paper)
    cancel_from: str = "reference"  # a cancel's depth from the reference (the paper's) or from its side's touch
    add_from: str = "reference"  # an add's depth from the reference (the paper's) or from its side's touch
    join_touch: bool = False  # an add on its side's best quote has depth exactly 0, "joins the queue" (not the paper's)
    clear_touch: bool = False  # an aggressor at the opposite best level has depth CLEAR or TAKE (not the paper's)
    hidden: bool = True  # executions of hidden orders are aggressors too (False: left out, the book never shows them)
    clock: bool = False  # also give the model the half hour of the local day (not in the paper; MarS has one)
    resolution_ns: int = 0  # timestamps floored to this clock before any feature (0: as recorded); 1_000_000 puts
    # every venue on one millisecond clock, as coarse as the common feeds', so dt means the same on all of them
    feed: bool = False  # also give the model the feed's kind: the full book, or trades only (not in the paper)
    trades_only: bool = False  # read only the day's executions, as a trades feed shows the same flow (a copy)
    size_jitter: float = 0.0  # each order's size (in the volume feature) times exp(U(-j, j)), drawn from its id:
    # the same flow as a feed without round lots records it, as crypto sizes are (a training copy, TOKENS.md)
    side: str = "absolute"  # a token's side: buy or sell, or "relative": the same side as the last aggressor
    # before it, or the other (aggressors come in runs of one side: the model reads that memory off one bit)

    def __post_init__(self) -> None:
        if self.reference not in ("vwap", "mid"):
            raise InputError(f"reference must be 'vwap' or 'mid', not {self.reference!r}")
        for name in ("cancel_from", "add_from"):
            if getattr(self, name) not in ("reference", "touch"):
                raise InputError(f"{name} must be 'reference' or 'touch', not {getattr(self, name)!r}")
        if self.volume not in ("size", "notional", "relative"):
            raise InputError(f"volume must be 'size', 'notional' or 'relative', not {self.volume!r}")
        if not self.half_life_s > 0:
            raise InputError("half_life_s must be positive")
        if not self.resolution_ns >= 0:
            raise InputError("resolution_ns must be 0 (as recorded) or a positive number of nanoseconds")
        if self.side not in ("absolute", "relative"):
            raise InputError(f"side must be 'absolute' or 'relative', not {self.side!r}")
        if not 0 <= self.size_jitter <= 2:
            raise InputError(f"size_jitter must be between 0 (sizes as recorded) and 2, not {self.size_jitter}")


# named feature settings: "paper" is TradeFM's own; "book" adds the book context the demo uses (the spread as a
# context field, cancels from the touch, adds that join the quote, aggressors that take the opposite best level
# whole or in part, no hidden executions, which a rollout's book has nothing to show for, and sides against the
# last aggressor's)
FEATURES: dict[str, FeatureConfig] = {
    "paper": FeatureConfig(),
    "book": FeatureConfig(book_context=True, cancel_from="touch", join_touch=True, clear_touch=True, hidden=False,
                          side="relative"),
    # the paper's, in a size unit every venue shares and with the feed's kind: for pretraining across venues
    # (with ``tradefm tokenize --augment feeds``; docs/TOKENS.md)
    "universal": FeatureConfig(volume="relative", feed=True),
}


def features(name: str, **overrides: object) -> FeatureConfig:
    """A named preset of :data:`FEATURES`, with any field overridden (``features("book", volume="notional")``)."""
    if name not in FEATURES:
        raise InputError(f"unknown features {name!r}: choose one of {', '.join(FEATURES)}")
    return replace(FEATURES[name], **overrides)


# ---------------------------------------------------------------- scalar rules shared by every path


@kernel
def bin_of(edges: np.ndarray, x: float) -> int:
    """The bin of ``x``: how many edges are <= x (NaN compares false: bin 0)."""
    lo, hi = 0, len(edges)
    if x != x:
        return 0
    while lo < hi:
        mid = (lo + hi) >> 1
        if edges[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def utc_offset_ns(timezone: str, date: str) -> int:
    """The venue's UTC offset on ``date`` (taken at local noon, clear of the night's daylight-saving change), ns:
    local time = UTC + offset."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    offset = datetime.fromisoformat(f"{date}T12:00").replace(tzinfo=ZoneInfo(timezone)).utcoffset()
    return int(offset.total_seconds()) * 10**9


def clock_of(ts, utc_offset: int):
    """The half hour of the local day a UTC timestamp (ns, or an array of them) falls in: 0 for 00:00-00:30, ...,
    47; :func:`clock_bin` is the same rule compiled for the rollout's kernels."""
    return (ts + utc_offset) % _DAY_NS // (_DAY_NS // CLOCK_BINS)


clock_bin = kernel(clock_of)


@kernel
def _depth_bps(side: int, price: float, reference: float, anchor: float) -> float:
    """Signed distance of ``price`` from ``anchor`` in bps of ``reference``, passive side positive."""
    sign = 1.0 if side > 0 else -1.0
    return sign * (anchor - price) / reference * 1e4


def order_depth(side: np.ndarray | float, price: np.ndarray | float, reference: np.ndarray | float,
                anchor: np.ndarray | float | None = None) -> np.ndarray:
    """Signed distance of an order's price from ``anchor`` (default: the reference) in bps of the reference:
    positive is passive (a bid below, an ask above), negative aggressive. ``side`` is +1 bid / -1 ask."""
    reference = np.asarray(reference, dtype=np.float64)
    anchor = reference if anchor is None else np.asarray(anchor, dtype=np.float64)
    return np.where(np.asarray(side) > 0, 1.0, -1.0) * (anchor - np.asarray(price, dtype=np.float64)) / reference * 1e4


@kernel
def depth_of(action: int, side: int, price: float, reference: float, best: float, aggressive: bool, other: float,
             emptied: bool, cancel_touch: bool, join_touch: bool, clear_touch: bool, add_touch: bool) -> float:
    """The depth an order event is tokenized with. ``side`` +1 bid / -1 ask; ``best`` and ``other`` its own and the
    other side's best quotes before it (NaN: that side is empty); for an aggressor (``aggressive``), ``emptied``
    whether it left the level it hit empty.

    From the reference; a cancel from its side's touch with ``cancel_touch`` (0 = it leaves the best level: a cancel
    can only remove what rests), and an add with ``add_touch`` (:func:`_from_touch`: placed by the book it meets
    rather than by the reference); with ``join_touch`` a passive add on its side's best quote has depth exactly 0
    (and one exactly at the reference without being on the quote moves off 0 by a hair); with ``clear_touch`` an
    aggressor whose worst fill is the other side's best price has depth CLEAR when it took that level whole, TAKE
    when it took part of it."""
    depth = _depth_bps(side, price, reference, reference)
    if action == CANCEL and cancel_touch and best == best:
        depth = _depth_bps(side, price, reference, best)
    if action == ADD and add_touch and best == best:
        depth = _from_touch(side, price, reference, best, other)
    if action == ADD and join_touch:
        if depth == 0.0:
            depth = 5e-324
        if not aggressive and price == best:
            depth = 0.0
    if action == ADD and aggressive and clear_touch and price == other:
        depth = CLEAR if emptied else TAKE
    return depth


@kernel
def _from_touch(side: int, price: float, reference: float, best: float, other: float) -> float:
    """An add's depth from its side's best quote: bps behind it (positive); inside the spread, ``-INSIDE`` times
    the share of the spread it crossed, in (-INSIDE, 0), so that it decodes inside whatever spread the rollout's
    book has (in bps a real add placed inside a wide real spread went through a narrower one); at or through the
    other side's quote ``-INSIDE`` minus the bps beyond it. Without an other side, halfway inside."""
    depth = _depth_bps(side, price, reference, best)
    if depth >= 0.0:
        return depth
    if other != other:
        return -0.5 * INSIDE
    through = side * (price - other) / reference * 1e4
    if through >= 0.0:
        return -INSIDE - through
    return -INSIDE * (side * (price - best)) / (side * (other - best))


@kernel
def token_of(action: int, side_idx: int, depth: float, log_volume: float, dt: float, e_depth: np.ndarray,
             e_volume: np.ndarray, e_dt: np.ndarray, radix: np.ndarray) -> int:
    """The mixed-radix id of one order event's fields."""
    t = action * radix[1] + side_idx
    t = t * radix[2] + bin_of(e_depth, depth)
    t = t * radix[3] + bin_of(e_volume, log_volume)
    return t * radix[4] + bin_of(e_dt, np.log(dt + DT_FLOOR))


def aggressor_before(side: np.ndarray, aggressive: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The side (+1 buy / -1 sell) of the last aggressor strictly before each event index in ``at``, +1 before the
    first: what ``side="relative"`` reads a side against, and the state a rollout that starts at such an index
    holds."""
    idx = np.flatnonzero(aggressive)
    before = np.searchsorted(idx, np.asarray(at), side="left") - 1
    last = np.ones(len(before), np.int64)
    last[before >= 0] = np.where(np.asarray(side)[idx[before[before >= 0]]] == BUY, 1, -1)
    return last


def relative_sides(side: np.ndarray, aggressive: np.ndarray) -> np.ndarray:
    """``side="relative"``: each event's side index (BUY / SELL) as 0 when it is the side of the last aggressor
    before it (buy before the first) and 1 when it is the other; an aggressor is compared with the one before it."""
    own = np.where(np.asarray(side) == BUY, 1, -1)
    return (own != aggressor_before(side, aggressive, np.arange(len(own)))).astype(np.int8)


@kernel
def add_price(side: int, depth: float, reference: float, tick: int, best: float, other: float, join_touch: bool,
              add_touch: bool) -> int:
    """The price a decoded add of ``depth`` bps goes to: from the reference (onto its side's best quote at depth 0
    with ``join_touch``; with ``add_touch`` as :func:`_from_touch` measured it), passive side positive, on the tick
    grid and at least one tick. ``best`` and ``other`` are its own and the other side's best quotes (NaN or 0:
    empty). A share of the spread is rounded to whole ticks strictly inside it (no room: it joins the quote)."""
    own = best == best and best > 0
    opp = other == other and other > 0
    if add_touch and own and depth < 0.0 and depth > -INSIDE:
        if not opp:
            return int(best + side * tick)
        ticks = int(np.rint(side * (other - best) / tick))
        if ticks <= 1:
            return int(best)
        k = min(max(int(np.rint(-depth / INSIDE * ticks)), 1), ticks - 1)
        return int(best + side * k * tick)
    if add_touch and own and depth < 0.0:
        return _grid(side, depth + INSIDE, reference, tick, other if opp else best)
    anchor = best if own and (add_touch or (join_touch and depth == 0.0)) else reference
    return _grid(side, depth, reference, tick, anchor)


@kernel
def _grid(side: int, depth: float, reference: float, tick: int, anchor: float) -> int:
    raw = anchor - side * depth * reference / 1e4
    return int(max(float(tick), np.rint(raw / tick) * tick))


def add_prices(side: np.ndarray, depth: np.ndarray, reference: np.ndarray, tick: int, best: np.ndarray,
               other: np.ndarray, join_touch: bool, add_touch: bool) -> np.ndarray:
    """:func:`add_price` of arrays of decoded adds."""
    f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
    return _add_prices(np.asarray(side, np.int64), f64(depth), f64(reference), int(tick), f64(best), f64(other),
                       bool(join_touch), bool(add_touch))


@njit(cache=True)
def _add_prices(side, depth, reference, tick, best, other, join_touch, add_touch):
    out = np.empty(len(side), dtype=np.int64)
    for i in range(len(side)):
        out[i] = add_price(side[i], depth[i], reference[i], tick, best[i], other[i], join_touch, add_touch)
    return out


# ---------------------------------------------------------------- a tokenizer's tables, as the kernels read them


class Tables(NamedTuple):
    """Everything the kernels need to know of a tokenizer and an instrument, as arrays and numbers."""

    radix: np.ndarray  # int64 [5]
    depth_edges: np.ndarray
    depth_q: np.ndarray  # [bins, quantiles]: the calibration values each decoded value is drawn from
    depth_c: np.ndarray  # [bins]: the medians (decoding without draws)
    volume_edges: np.ndarray
    volume_q: np.ndarray
    volume_c: np.ndarray
    dt_edges: np.ndarray
    dt_q: np.ndarray
    dt_c: np.ndarray
    level_edges: np.ndarray
    volume_regime_edges: np.ndarray  # the instrument's own terciles where the tokenizer knows it, else pooled
    activity_regime_edges: np.ndarray
    spread_edges: np.ndarray
    cancel_touch: bool
    add_touch: bool
    join_touch: bool
    clear_touch: bool
    notional: bool
    relative: bool
    reference_mid: bool
    book_context: bool
    tick: int
    size_scale: int
    price_scale: int
    tier: int
    clock: bool
    utc_offset: int  # ns, the day's (clock=True)
    feed: bool  # the context ends with the feed's kind (a rollout's is a full book)
    resolution_ns: int  # the clock a participant's own order is stamped on in its token (0: as it arrives)
    relative_side: bool  # a token's side bit is against the last aggressor's side (0 the same, 1 the other)


def tables(tok, key: str, instrument, utc_offset: int = 0) -> Tables:
    """The :class:`Tables` of a :class:`~tradefm.tokenizer.Tokenizer` for one instrument (``venue/symbol``) on a
    day whose UTC offset is ``utc_offset`` (``OrderFlow.utc_offset``; only the clock reads it)."""
    f = tok.features
    known = tok.instruments.get(key, {})
    regime = {name: np.asarray(known.get(f"{name}_regime_edges", getattr(tok, f"{name}_regime").edges), np.float64)
              for name in ("volume", "activity")}
    tier = int(known["tier"]) if key in tok.instruments else tok.config.tiers // 2
    arr = lambda x: np.ascontiguousarray(x, dtype=np.float64)  # noqa: E731
    bins = [a for b in (tok.depth, tok.volume, tok.dt) for a in (arr(b.edges), arr(b.quantiles), arr(b.centers))]
    return Tables(np.asarray(tok.config.radix, np.int64), *bins, arr(tok.level.edges), regime["volume"],
                  regime["activity"], arr(tok.spread.edges),
                  f.cancel_from == "touch", f.add_from == "touch", f.join_touch, f.clear_touch, f.volume == "notional",
                  f.volume == "relative", f.reference == "mid", f.book_context, int(instrument.tick_size),
                  int(instrument.size_scale), int(instrument.price_scale), tier, f.clock, int(utc_offset), f.feed,
                  int(f.resolution_ns), f.side == "relative")


@kernel
def _draw(q: np.ndarray, c: np.ndarray, b: int, u: float) -> float:
    """A value in bin ``b``: nearest-rank inverse CDF of its calibration quantiles at ``u`` (negative: the
    median), so decoded values keep the within-bin shape of real data, such as round lots."""
    return c[b] if u < 0 else q[b, int(np.rint(u * (q.shape[1] - 1)))]


@kernel
def seconds(log_dt: float) -> float:
    dt = np.exp(log_dt) - DT_FLOOR
    return 0.0 if dt < DT_FLOOR * 1e-3 else dt  # below a ns is float noise around "simultaneous"


@njit(cache=True)
def _seconds_many(log_dt: np.ndarray) -> np.ndarray:
    out = np.empty(len(log_dt))
    for i in range(len(log_dt)):
        out[i] = seconds(log_dt[i])
    return out


def seconds_of(log_dt: np.ndarray) -> np.ndarray:
    """:func:`seconds` of an array of binned log dt values: the dt a decoded token waits."""
    x = np.asarray(log_dt, dtype=np.float64)
    return _seconds_many(x.ravel()).reshape(x.shape)


@kernel
def unit_of(log_unit: float) -> float:
    """The running unit of ``volume="relative"`` (sizes, in the instrument's units) from its EW log mean: the
    nearest power of 2, so that it moves in steps and between them a size keeps its bin."""
    return 2.0 ** np.rint(log_unit / np.log(2.0))


@njit(cache=True)
def _units_many(log_unit: np.ndarray) -> np.ndarray:
    out = np.empty(len(log_unit))
    for i in range(len(log_unit)):
        out[i] = unit_of(log_unit[i])
    return out


def units_of(log_unit: np.ndarray) -> np.ndarray:
    """:func:`unit_of` of an array."""
    return _units_many(np.ascontiguousarray(log_unit, dtype=np.float64))


@kernel
def next_unit(log_unit: float, seen: float, size: float) -> float:
    """The running unit's state after an order event of ``size`` (instrument units, at least one size unit's
    worth) that follows ``seen`` others: the mean of log sizes so far, exponentially weighted once the events
    outnumber the half-life's weight (:func:`tradefm.features.running_unit`)."""
    return log_unit + max(1.0 / (seen + 1.0), UNIT_ALPHA) * (np.log(size) - log_unit)


@kernel
def size_units(t: Tables, log_unit: float) -> float:
    """Size units one volume unit holds: the instrument's size scale, times the running unit with ``relative``."""
    return t.size_scale * unit_of(log_unit) if t.relative else float(t.size_scale)


@kernel
def order_volume(t: Tables, size: float, price: float, units: float) -> float:
    """An order's volume in the features' unit: shares/contracts/coins (or running units: ``units`` is
    :func:`size_units`), or currency."""
    v = size / units
    return v * price / t.price_scale if t.notional else v


@kernel
def best_price(st: E.BookState, side: int) -> int:
    """The best price of a side (+1 bid / -1 ask), 0 when it is empty."""
    s = 0 if side > 0 else 1
    n = st.meta[E.M_NLV_BID + s]
    return st.levels[s, n - 1, E.L_PRICE] if n > 0 else 0


@kernel
def _nearest(lv: np.ndarray, j: int, price: int, side: int) -> int:
    """Of the levels ``lv[j]``, ``lv[j - 1]``, ... (one side, best last), the one nearest ``price``; ties go to
    the more passive. Levels are sorted by price, so the distance falls and then rises: the first rise ends it."""
    best_j, best_d = j, abs(lv[j, E.L_PRICE] - price)
    for k in range(j - 1, -1, -1):
        d = abs(lv[k, E.L_PRICE] - price)
        if d < best_d or (d == best_d and -side * lv[k, E.L_PRICE] < -side * lv[best_j, E.L_PRICE]):
            best_j, best_d = k, d
        elif d > best_d:
            break
    return best_j


@kernel
def decode(st: E.BookState, t: Tables, token: int, u_depth: float, u_volume: float, u_dt: float, reference: float,
           next_id: int, units: float, last_side: int) -> tuple[int, int, int, int, int, float]:
    """Turn one token into an order against the book ``st``: (kind, side, price, size, order id, dt seconds);
    kind 0 when it decodes to nothing (a cancel with nothing resting on its side). ``u_*`` are the uniform draws
    of each continuous field's value in its bin (negative: the bin's median); ``units``: :func:`size_units`;
    ``last_side``: the last aggressor's side (+1 / -1), which a relative side bit is read against.

    An add is priced ``depth`` bps (of ``reference``) from ``reference``, passive side positive, rounded to the
    nearest tick (at least one tick), and sized ``exp(volume) - 1`` units (at least 1); with ``join_touch`` an add
    of depth 0 joins its side's best quote, and with ``clear_touch`` an add of depth CLEAR takes the whole
    opposite best level (priced at it and sized as all that rests there) and one of depth TAKE part of it (its
    decoded size, leaving at least one there). A cancel's price is measured the same way, from its side's best
    quote with ``cancel_touch`` (an add's too with ``add_touch``). It removes the newest resting order consistent
    with the token: at a level of its side whose depth falls in the token's depth bin (none there: the level nearest
    to the decoded price among those at least as deep as the bin, ties to the more passive one), the order whose
    size falls in the token's volume bin, or else in the nearest one; among equals the newest. A known order is
    deleted whole (real cancels take young orders and almost never leave a remainder: docs/TOKENS.md has the
    measurements). Volume whose id the book does not know is many orders at one price: it counts as the oldest and
    loses the decoded size."""
    r = t.radix
    x = token
    dt_bin = x % r[4]
    x //= r[4]
    volume_bin = x % r[3]
    x //= r[3]
    depth_bin = x % r[2]
    x //= r[2]
    side = 1 if x % r[1] == 0 else -1
    if t.relative_side:
        side *= last_side
    action = x // r[1]
    depth = _draw(t.depth_q, t.depth_c, depth_bin, u_depth)
    log_volume = _draw(t.volume_q, t.volume_c, volume_bin, u_volume)
    dt = seconds(_draw(t.dt_q, t.dt_c, dt_bin, u_dt))
    own = float(best_price(st, side))
    anchor = own if action == CANCEL and t.cancel_touch and own > 0 else reference  # a cancel's, from its touch
    if action == ADD:
        price = add_price(side, depth, reference, t.tick, own, float(best_price(st, -side)), t.join_touch,
                          t.add_touch)
    else:
        price = _grid(side, depth, reference, t.tick, anchor)
    amount = np.expm1(log_volume)
    if t.notional:  # currency back to units at this order's price
        amount /= price / t.price_scale
    size = max(1, int(np.rint(amount * units)))
    if action == ADD:
        if t.clear_touch and depth in (CLEAR, TAKE):
            s = 1 if side > 0 else 0  # the opposite side
            n = st.meta[E.M_NLV_BID + s]
            if n > 0:  # the opposite best level: taken whole, or in part (at least one share stays)
                lv = st.levels[s, n - 1]
                take = lv[E.L_SIZE] if depth == CLEAR else max(1, min(size, lv[E.L_SIZE] - 1))
                return 1, side, lv[E.L_PRICE], take, next_id, dt
        return 1, side, price, size, next_id, dt
    s = 0 if side > 0 else 1
    n = st.meta[E.M_NLV_BID + s]
    if n == 0:
        return 0, side, 0, 0, 0, dt
    lv = st.levels[s]
    # the levels best first have non-decreasing depth bins: the token's bin is one run of them
    first, last = -1, -1
    for j in range(n - 1, -1, -1):
        b = bin_of(t.depth_edges, _depth_bps(side, float(lv[j, E.L_PRICE]), reference, anchor))
        if b == depth_bin:
            if first < 0:
                first = j
            last = j
        elif b > depth_bin:
            if first < 0:  # no level in the bin: the nearest of those at least as deep
                first = last = _nearest(lv, j, price, side)
            break
    if first < 0:  # every level is nearer the touch than the bin: the nearest of them all
        first = last = _nearest(lv, n - 1, price, side)
    best_gap, best_oid, best_price_, best_size = -1, 0, 0, 0
    for j in range(first, last - 1, -1):
        p = lv[j, E.L_PRICE]
        slot = lv[j, E.L_HEAD]
        while slot != E.NIL:
            oid, resting = st.orders[slot, E.O_ID], st.orders[slot, E.O_SIZE]
            volume = resting / units
            if t.notional:  # units to currency at this level's price
                volume = volume * p / t.price_scale
            gap = abs(bin_of(t.volume_edges, np.log1p(volume)) - volume_bin)
            if best_gap < 0 or gap < best_gap or (gap == best_gap and oid > best_oid):  # nearest bin, then newest
                best_gap, best_oid, best_price_, best_size = gap, oid, p, resting
            slot = st.orders[slot, E.O_NEXT]
    return 2, side, best_price_, best_size if best_oid > 0 else min(size, best_size), max(best_oid, 0), dt


@dataclass(frozen=True)
class Order:
    """A decoded token as a canonical event the matching engine accepts."""

    kind: int  # Kind.ADD or Kind.CANCEL
    side: int  # +1 bid / -1 ask
    price: int  # price units, on the tick grid
    size: int  # size units, at least 1
    order_id: int  # a new id for adds; for cancels the resting order chosen (0 = anonymous volume at price)
    dt: float  # seconds since the previous event


def decode_order(tok, token: int, book, reference: float, instrument, next_id: int,
                 rng: np.random.Generator | None = None, key: str | None = None, log_unit: float = 0.0,
                 last_side: int = 1) -> Order | None:
    """:func:`decode` of one token against ``book`` (a :class:`tradefm.book.OrderBook`) for a
    :class:`~tradefm.tokenizer.Tokenizer` ``tok``: a seeded draw of each value in its bin (three uniforms from
    ``rng``, as a rollout draws them), or the bins' medians without one; ``log_unit``: the running unit's state
    (``OrderFlow.log_unit``) with ``volume="relative"``; ``last_side``: the last aggressor's side with
    ``side="relative"`` (:func:`aggressor_before`). ``None`` when it decodes to nothing."""
    t = tables(tok, key or instrument.key, instrument)
    u = rng.random(3) if rng is not None else np.full(3, -1.0)
    kind, side, price, size, oid, dt = decode(book.state, t, int(token), u[0], u[1], u[2], float(reference),
                                              int(next_id), size_units(t, float(log_unit)), int(last_side))
    return None if kind == 0 else Order(kind, side, price, size, oid, dt)
