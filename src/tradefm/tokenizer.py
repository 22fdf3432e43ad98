"""The universal tokenizer: one composite token per order event, the same bins for every asset and venue.

A token is a mixed-radix number over (action, side, depth bin, volume bin, dt bin); with the paper's radixes
(2, 2, 16, 16, 16) the vocabulary is 16,384 ids and ``id = a*8192 + s*4096 + depth*256 + volume*16 + dt``.
Continuous fields are binned once, on a pooled calibration window of several instruments (every order event of
it, or a uniform sample of ``max_fit_values`` of them when it holds more: :class:`Calibration`), so applying the
tokenizer to a new asset or venue needs no refit:

- depth (bps): equal-frequency bins;
- volume (log(1+size)) and dt (log of seconds): equal-width bins in log space;
- each of those keeps its first and last bin for values past the calibration's tail quantiles (out of range);
- the price-level context (change since the open): equal-frequency bins over the whole range;
- the liquidity tier: terciles (by default) of the instruments' log average daily traded value;
- the volume and activity regimes (trailing-window volume and event count): low / normal / high by terciles of
  the instrument's own calibration days (pooled terciles for an instrument the tokenizer never saw), so that
  "high" means busy for that instrument and every instrument shows the model all three regimes.

The fitted bins are a versioned JSON file whose content hash names the token space.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numba import njit

from .codec import (
    ADD,
    CLEAR,
    CLOCK_BINS,
    DT_FLOOR,
    SPREAD_FLOOR_BPS,
    TAKE,
    FeatureConfig,
    bin_of,
    clock_of,
    relative_sides,
    seconds_of,
    token_of,
)
from .events import InputError, atomic_path, read_json
from .features import OrderFlow

VERSION = 7
# feature settings newer than the file format: written only when not at their default, so that files from before
# them keep their hash
_NEWER = ("clock", "add_from", "resolution_ns", "size_jitter", "feed", "trades_only", "side")
QUANTILES = 33  # per bin, the calibration values' quantiles that decoding draws a value from
FIELDS = ("action", "side", "depth", "volume", "dt")
_DEFAULT_FEATURES = FeatureConfig()


@dataclass(frozen=True)
class TokenizerConfig:
    radix: tuple[int, int, int, int, int] = (2, 2, 16, 16, 16)  # action, side, depth, volume, dt
    level_bins: int = 32
    tiers: int = 3
    regimes: int = 3  # bins of the volume and the activity regime
    spread_bins: int = 8  # equal-frequency bins of log spread in bps (with book context; otherwise one bin)
    tail: tuple[float, float] = (0.01, 0.99)  # quantiles beyond which values go to the out-of-range bins
    max_fit_values: int = 2_000_000  # order events: a larger calibration window is sampled down to this many

    def __post_init__(self) -> None:
        if tuple(self.radix[:2]) != (2, 2) or min(self.radix[2:]) < 3:
            raise InputError("radix must be (2, 2, depth>=3, volume>=3, dt>=3): action and side are binary")
        if not 0 <= self.tail[0] < self.tail[1] <= 1:
            raise InputError("tail must be two quantiles 0 <= low < high <= 1")

    @property
    def vocab_size(self) -> int:
        return int(np.prod(self.radix))


@dataclass(frozen=True)
class Bins:
    """Edges (``len = bins - 1``) in the transformed space, and per bin a representative value, a range and the
    quantiles of the calibration values that fell in it."""

    edges: list[float]
    centers: list[float]  # median of the calibration values in the bin
    lows: list[float]
    highs: list[float]
    quantiles: list[list[float]]  # QUANTILES evenly spaced quantiles (0 to 1) per bin

    def index(self, x: np.ndarray) -> np.ndarray:
        """Bin of each value; NaN goes to bin 0, so no value can fall outside the vocabulary."""
        return _search(self._edge_array, x)

    def value(self, b: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """A value inside each bin: its median, or a seeded draw from the bin's calibration distribution
        (nearest-rank inverse CDF over its quantiles), so that decoded values keep the within-bin shape of
        real data, such as round lots, instead of spreading evenly over the bin."""
        b = np.asarray(b, dtype=np.int64)
        if rng is None:
            return np.asarray(self.centers)[b]
        q = self._quantile_table
        return q[b, np.rint(rng.random(b.shape) * (q.shape[-1] - 1)).astype(np.int64)]

    @cached_property
    def _edge_array(self) -> np.ndarray:
        return np.asarray(self.edges, dtype=np.float64)

    @cached_property
    def _quantile_table(self) -> np.ndarray:
        """``quantiles`` as one array, made once: decoding reads it for every generated token."""
        return np.asarray(self.quantiles)

    @classmethod
    def fit(cls, x: np.ndarray, edges: np.ndarray) -> Bins:
        x = _sorted(x[np.isfinite(x)])
        n = len(edges) + 1
        # x is sorted, so each bin is a run: bin b (the values v with edges[b-1] <= v < edges[b]) starts where
        # the first value reaches edges[b-1]
        bounds = np.r_[0, np.searchsorted(x, edges, side="left"), len(x)]
        outer = np.concatenate([[x[0]], edges, [x[-1]]])
        centers, lows, highs, quantiles = [], [], [], []
        grid = np.linspace(0, 1, QUANTILES)
        for b in range(n):
            run = x[bounds[b]:bounds[b + 1]]
            lo, hi = min(outer[b], outer[b + 1]), max(outer[b], outer[b + 1])
            # the median of a sorted run: its middle value, or the mean of its middle two (as np.median)
            centers.append(float(np.mean(run[(len(run) - 1) // 2:len(run) // 2 + 1])) if len(run)
                           else float((lo + hi) / 2))
            lows.append(float(lo))
            highs.append(float(hi))
            # an empty bin: evenly from its lower edge (in the bin) up to, not onto, its upper edge (the next bin)
            q = sorted_quantile(run, grid) if len(run) else np.linspace(lo, hi, QUANTILES + 1)[:-1]
            quantiles.append([float(v) for v in q])
        return cls([float(e) for e in edges], centers, lows, highs, quantiles)


def _sorted(x: np.ndarray) -> np.ndarray:
    """``x`` in ascending order, sorted only if it is not already (a check costs a pass, a sort many)."""
    return x if len(x) < 2 or bool(np.all(x[1:] >= x[:-1])) else np.sort(x)


def sorted_quantile(x: np.ndarray, q: np.ndarray | float) -> np.ndarray:
    """``np.quantile(x, q)`` (its default, linear method, with its arithmetic) of an ascending, finite ``x``,
    read off by index: no copy and partition of the whole array per call, which the calibration's many
    quantiles of two million values would otherwise pay."""
    q = np.asarray(q, dtype=np.float64)
    virtual = (len(x) - 1) * q
    below = np.clip(np.floor(virtual), 0, len(x) - 1).astype(np.int64)
    above = np.clip(below + 1, 0, len(x) - 1)
    gamma = virtual - below
    a, b = x[below], x[above]
    diff = b - a
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


def _tail_edges(x: np.ndarray, n: int, tail: tuple[float, float], equal_frequency: bool,
                sentinels: tuple[float, ...] = ()) -> np.ndarray:
    """n bins: one below the low tail quantile, n-2 inside, one above the high one.

    Equal-frequency bins give a value that holds more than half a bin's share of the data (an atom: with depth
    from the touch, 0 = joins the best quote and -1 = reaches the other side) a bin of its own, so that
    decoding that bin gives exactly that value; the other edges are quantiles of the rest. ``sentinels`` that
    occur get a bin of their own however rare (a value that means something to decoding, such as CLEAR)."""
    x = _sorted(x)
    if not equal_frequency:
        return _strictly_increasing(np.linspace(*sorted_quantile(x, np.asarray(tail)), n - 1))
    first = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])  # x is sorted: each distinct value's first place
    values, counts = x[first], np.diff(np.r_[first, len(x)])
    forced = values[np.isin(values, sentinels)]
    atoms = np.union1d(forced, values[counts > len(x) / (2 * n)][: max(0, (n - 1) // 2 - len(forced))])
    own = np.unique([e for a in atoms for e in (a, np.nextafter(a, np.inf))])  # the bin [a, a+) holds a alone
    rest = x[~np.isin(x, atoms)] if len(atoms) else x
    inner = sorted_quantile(rest, np.linspace(*tail, n - 1 - len(own))) if len(rest) else np.zeros(n - 1 - len(own))
    return _strictly_increasing(np.sort(np.concatenate([inner, own])))


def _strictly_increasing(e: np.ndarray) -> np.ndarray:
    """Ties (a constant stretch of data) would leave empty bins between equal edges: nudge them apart."""
    e = np.array(e, dtype=np.float64)
    for i in range(1, len(e)):
        if e[i] <= e[i - 1]:
            e[i] = np.nextafter(e[i - 1], np.inf)
    return e


def _search(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bin of each value by its edges, NaN in the lowest (as -inf: ``np.nan_to_num`` does the same ten times
    slower on the one-value arrays a rollout bins at every step)."""
    x = np.asarray(x, dtype=np.float64)
    return np.searchsorted(edges, np.where(np.isnan(x), -np.inf, x), side="right").astype(np.int64)


def _log_spread(spread_bps: np.ndarray) -> np.ndarray:
    """log of the spread in bps; a locked or crossed book (spread <= 0) counts as the narrowest spread."""
    return np.log(np.maximum(spread_bps, SPREAD_FLOOR_BPS))


SAMPLED = ("depth", "volume", "dt", "level", "recent_volume", "recent_events", "spread")
"""The calibration sample's columns: each field in the space its bins are cut in."""
_OWN = [SAMPLED.index("recent_volume"), SAMPLED.index("recent_events")]  # an instrument's own regime values


@dataclass
class Sample:
    """A uniform sample without replacement of order events: each event carries a pseudo-random key, and the
    sample is the ``cap`` events of smallest key. Two samples merge into the sample of their union (the ``cap``
    smallest of both), so a calibration over any number of days needs ``cap`` rows, and holds every event, so it
    is exact, while the window has no more than ``cap``."""

    keys: np.ndarray  # uint64
    values: np.ndarray  # [n, columns] float64

    def __len__(self) -> int:
        return len(self.keys)

    def bottom(self, cap: int) -> Sample:
        if len(self) <= cap:
            return self
        keep = np.argpartition(self.keys, cap - 1)[:cap]
        keep.sort()  # the rows keep their order
        return Sample(self.keys[keep], self.values[keep])



class Reservoir:
    """The ``cap`` rows of smallest key of every :class:`Sample` added, in arrays allocated once: memory stays
    at the arrays whatever the number of days. Rows that may enter wait in a slack of ``slack`` rows (``cap / 8``
    unless given) past the sample and are sorted out when it fills, so adding a day costs about its own rows, not
    the sample's; a sample that is small next to a day's rows (an instrument's own) takes a slack of its own size,
    so that a day is sorted out once, not once per slack. The rows' order in the arrays is not kept (the bins do
    not depend on it)."""

    def __init__(self, cap: int, columns: int, slack: int | None = None) -> None:
        self.cap, self.n = cap, 0
        size = cap + max(cap // 8 if slack is None else slack, 1)
        self.keys = np.empty(size, dtype=np.uint64)
        self.values = np.empty((size, columns), dtype=np.float64)
        self._limit = NO_LIMIT  # the largest key of the first cap rows once they are full

    def __len__(self) -> int:
        return min(self.n, self.cap)

    @property
    def full(self) -> bool:
        return self.n >= self.cap

    def limit(self) -> int:
        """A key no row can enter at or above (the sample's largest once full)."""
        return self._limit

    def add(self, s: Sample) -> None:
        enter = s.keys < np.uint64(self._limit)
        keys, values = s.keys[enter], s.values[enter]
        while len(keys):
            room = min(len(self.keys) - self.n, len(keys))
            self.keys[self.n:self.n + room], self.values[self.n:self.n + room] = keys[:room], values[:room]
            was_full, self.n = self.full, self.n + room
            keys, values = keys[room:], values[room:]
            if self.n == len(self.keys):
                self._compact()
                keep = keys < np.uint64(self._limit)
                keys, values = keys[keep], values[keep]
            elif self.full and not was_full:
                self._limit = int(self.keys[:self.cap].max())

    def _compact(self) -> None:
        """Keep the cap rows of smallest key in the first cap places."""
        if self.n <= self.cap:
            return
        keys = self.keys[:self.n]
        last = np.partition(keys, self.cap - 1)[self.cap - 1]  # the cap-th smallest key: the new limit
        stay = keys < last
        stay[np.flatnonzero(keys == last)[:self.cap - np.count_nonzero(stay)]] = True  # and the first of its ties
        leave = np.flatnonzero(~stay[:self.cap])  # places in front that free up ...
        moved = self.cap + np.flatnonzero(stay[self.cap:])  # ... for the rows behind that stay
        self.keys[leave], self.values[leave] = self.keys[moved], self.values[moved]
        self.n = self.cap
        self._limit = int(last)

    def sample(self) -> Sample:
        self._compact()
        return Sample(self.keys[:self.n], self.values[:self.n])


def _seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


OWN_SAMPLE = 200_000
"""Rows of an instrument's own sample (for its regime terciles: two quantiles, whose rank a sample this size
gives to a standard deviation of at most 0.11%), or ``max_fit_values`` if that is smaller."""
NO_LIMIT = int(np.iinfo(np.uint64).max)
KEYS = int(np.iinfo(np.int64).max)  # keys are uniform below this
PLANNED_MARGIN = 1.5
"""A planned cut keeps this many times a sample's size of the rows it is expected to draw from."""


class Limits(NamedTuple):
    """The keys under which a day's rows can still enter the calibration, as known when the day is sent out."""

    pooled: int = NO_LIMIT  # no row at or above it can enter the pooled sample
    instrument: str | None = None  # the instrument whose own sample is full ...
    own: int = NO_LIMIT  # ... and its largest key
    pooled_plan: int = NO_LIMIT  # cuts planned from the window's expected rows ...
    own_plan: int = NO_LIMIT  # ... and from its instrument's


@dataclass
class DaySample:
    """What one symbol-day gives a calibration: its instrument, traded value, its sample for the pooled bins and
    its sample for its instrument's own terciles (of the part of the day that calibrates: its training part)."""

    instrument: str
    notional: float
    sample: Sample  # the SAMPLED columns
    own: Sample  # the instrument's regime columns
    rows: int = 0  # order events in the part that calibrates
    plans: tuple[int, int] = (NO_LIMIT, NO_LIMIT)  # the planned cuts of its pooled and own samples

    @classmethod
    def of(cls, flow: OrderFlow, instrument: str, name: str, cap: int, limits: Limits | None = None) -> DaySample:
        """``name`` (venue/symbol/date) seeds the keys: the same day gets the same keys in any run or worker.
        Rows at or above ``limits`` (:meth:`Calibration.limits` when the day was sent out) cannot enter the
        calibration any more, or are planned not to, and are not kept."""
        cols = np.column_stack([flow.depth_bps, flow.log_volume, np.log(flow.dt + DT_FLOOR), flow.level_change,
                                np.log1p(flow.recent_volume), np.log1p(flow.recent_events),
                                _log_spread(flow.spread_bps)]) if len(flow) else np.zeros((0, len(SAMPLED)))
        keys = np.random.default_rng(_seed(name)).integers(0, np.iinfo(np.int64).max, len(flow), dtype=np.uint64)
        limits = limits or Limits()
        pooled = keys < np.uint64(min(limits.pooled, limits.pooled_plan))
        own = keys < np.uint64(min(limits.own if limits.instrument == instrument else NO_LIMIT, limits.own_plan))
        return cls(instrument, float(flow.notional), Sample(keys[pooled], cols[pooled]).bottom(cap),
                   Sample(keys[own], cols[own][:, _OWN]).bottom(min(cap, OWN_SAMPLE)), len(flow),
                   (limits.pooled_plan, limits.own_plan))


class Calibration:
    """The calibration window, one symbol-day at a time, in bounded memory: a pooled :class:`Sample` of
    ``cap`` order events over all instruments, each instrument's mean daily traded value, and each instrument's
    own regime terciles, from a sample of its own days (:data:`OWN_SAMPLE` events). Days arrive grouped by
    instrument (a store's order), so one instrument's sample is held at a time; its terciles are taken when the
    next begins.

    Rows that cannot enter a sample are left out where the day is read (:meth:`limits`). Most of what would
    still travel before a sample fills is planned away: from the rows a sample is expected to draw from, a cut
    that keeps :data:`PLANNED_MARGIN` times its size. A plan that kept too few is found when its sample closes
    (:attr:`short`, :meth:`pooled_exact`), and that sample is taken again: the result never depends on a plan."""

    def __init__(self, cap: int, regimes: int = 3) -> None:
        self.cap, self.own_cap = cap, min(cap, OWN_SAMPLE)
        self.quantiles = np.linspace(0, 1, regimes + 1)[1:-1]
        self.pooled = Reservoir(cap, len(SAMPLED))
        self.regime_edges: dict[str, dict[str, list[float]]] = {}
        self.short: list[str] = []  # instruments whose planned own cut kept too few rows
        self._notional: dict[str, list[float]] = {}
        self._own: tuple[str, Reservoir] | None = None
        self._plans = [NO_LIMIT, NO_LIMIT]  # the lowest planned cut of the pooled sample, and of the current own
        self._per_row: float | None = None  # the fewest calibrating events per stored row of a day yet

    def add(self, day: DaySample, stored_rows: int | None = None) -> None:
        """Merge one day; ``stored_rows`` (the rows of its file) teaches :meth:`limits` how many events a
        stored row gives."""
        self.pooled.add(day.sample)
        if self._own is None or self._own[0] != day.instrument:
            if day.instrument in self._notional:
                raise InputError(f"calibration days of {day.instrument} must come one after another")
            self._close()
            self._own = (day.instrument, self._own_sample())
        self._own[1].add(day.own)
        self._plans = [min(a, b) for a, b in zip(self._plans, day.plans, strict=True)]
        self._notional.setdefault(day.instrument, []).append(day.notional)
        if stored_rows and day.rows:  # a day with no calibrating events says nothing of the others' rate
            ratio = day.rows / stored_rows
            self._per_row = ratio if self._per_row is None else min(self._per_row, ratio)

    def limits(self, window_rows: int | None = None, instrument_rows: int | None = None) -> Limits:
        """The keys under which a row can still enter the pooled sample, and the own sample of the instrument
        whose days are being added (a full sample's largest key): a worker keeps only those rows, so what
        travels back from a day shrinks as the window grows. The stored rows of the window and of the day's
        instrument plan cuts before the samples fill (once a day has shown how many events a stored row
        gives)."""
        plans = [self._plan(size, rows) for size, rows in ((self.cap, window_rows), (self.own_cap, instrument_rows))]
        if self._own is None or not self._own[1].full:
            return Limits(self.pooled.limit(), None, NO_LIMIT, *plans)
        return Limits(self.pooled.limit(), self._own[0], self._own[1].limit(), *plans)

    def _plan(self, size: int, stored_rows: int | None) -> int:
        if not stored_rows or not self._per_row:
            return NO_LIMIT
        share = PLANNED_MARGIN * size / (self._per_row * stored_rows)
        return int(KEYS * share) if share < 1 else NO_LIMIT

    @staticmethod
    def _exact(sample: Reservoir, plan: int) -> bool:
        """Whether a sample taken under a planned cut is the one it would be without: it is full, and every
        row under its largest key was kept."""
        return plan == NO_LIMIT or (sample.full and int(sample.sample().keys.max()) < plan)

    def pooled_exact(self) -> bool:
        return self._exact(self.pooled, self._plans[0])

    def refit_own(self, instrument: str, days: Iterable[DaySample]) -> None:
        """Take an instrument's own terciles again, from every day of it with no planned cut."""
        own = self._own_sample()
        for day in days:
            own.add(day.own)
        self._edges(instrument, own)

    def _own_sample(self) -> Reservoir:
        return Reservoir(self.own_cap, len(_OWN), slack=self.own_cap)

    def _close(self) -> None:
        if self._own is None:
            return
        key, own = self._own
        if not self._exact(own, self._plans[1]):
            self.short.append(key)
        self._edges(key, own)
        self._own, self._plans[1] = None, NO_LIMIT

    def _edges(self, key: str, own: Reservoir) -> None:
        sample = own.sample()
        if len(sample):
            self.regime_edges[key] = {
                f"{name}_regime_edges": [float(e) for e in _strictly_increasing(np.quantile(sample.values[:, j],
                                                                                            self.quantiles))]
                for j, name in enumerate(("volume", "activity"))}

    def close(self) -> list[str]:
        """Close the last instrument; return the instruments whose own sample must be taken again."""
        self._close()
        return self.short

    def finish(self) -> dict[str, float]:
        """Close the last instrument; return each instrument's mean daily traded value."""
        self._close()
        return {k: float(np.mean(v)) for k, v in self._notional.items()}


@njit(cache=True)
def _encode(action, side, depth, log_volume, dt, level, flag, e_depth, e_volume, e_dt, e_level, radix, tier,
            tokens, ctx) -> None:
    """One pass over a day: every field binned and composed, no temporaries."""
    for i in range(len(action)):
        tokens[i] = token_of(action[i], side[i], depth[i], log_volume[i], dt[i], e_depth, e_volume, e_dt, radix)
        ctx[i, 0] = tier
        ctx[i, 1] = bin_of(e_level, level[i])
        ctx[i, 2] = flag[i]


@dataclass
class Tokenizer:
    config: TokenizerConfig
    depth: Bins
    volume: Bins
    dt: Bins
    level: Bins
    tier_edges: list[float]  # log10 of average daily traded value
    volume_regime: Bins  # log(1 + trailing volume)
    activity_regime: Bins  # log(1 + trailing event count)
    spread: Bins  # log(spread in bps of the mid); a single bin when the features carry no book context
    instruments: dict[str, dict[str, float]] = field(default_factory=dict)  # key -> {"adv": ..., "tier": ...}
    features: FeatureConfig = field(default_factory=FeatureConfig)  # how the values binned here were computed

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, flows: dict[str, list[OrderFlow]], config: TokenizerConfig | None = None,
            features: FeatureConfig | None = None) -> Tokenizer:
        """Fit every bin on a pooled calibration window: ``flows`` maps an instrument key (venue/symbol) to its
        symbol-days. The same calibration as :func:`tradefm.shards.fit_tokenizer`, from flows in memory."""
        cfg = config or TokenizerConfig()
        cal = Calibration(cfg.max_fit_values, cfg.regimes)
        for key in sorted(flows):
            for i, flow in enumerate(flows[key]):
                cal.add(DaySample.of(flow, key, f"{key}/{i}", cfg.max_fit_values))
        return cls.from_calibration(cal, cfg, features)

    @classmethod
    def from_calibration(cls, cal: Calibration, config: TokenizerConfig | None = None,
                         features: FeatureConfig | None = None) -> Tokenizer:
        """Every bin from a calibration sample (see :class:`Calibration`)."""
        cfg = config or TokenizerConfig()
        if len(cal.quantiles) != cfg.regimes - 1:
            raise InputError(f"the calibration cut {len(cal.quantiles) + 1} regimes, the config wants {cfg.regimes}")
        adv = cal.finish()
        sample = cal.pooled.sample()
        if not len(sample):
            raise InputError("cannot fit a tokenizer on no order events")

        def pooled(name: str) -> np.ndarray:
            x = sample.values[:, SAMPLED.index(name)]
            return np.sort(x[np.isfinite(x)])  # sorted once: every quantile and bin below reads sorted values

        _, _, n_depth, n_vol, n_dt = cfg.radix
        depth, volume, dt, level = pooled("depth"), pooled("volume"), pooled("dt"), pooled("level")
        recent_volume, recent_events = pooled("recent_volume"), pooled("recent_events")
        regime_q = np.linspace(0, 1, cfg.regimes + 1)[1:-1]
        spread = pooled("spread")
        no_spread = Bins([], [0.0], [0.0], [0.0], [[0.0] * QUANTILES])  # one bin: no book context
        spread_bins = (Bins.fit(spread, _strictly_increasing(sorted_quantile(spread, np.linspace(
            0, 1, cfg.spread_bins + 1)[1:-1]))) if len(spread) else no_spread)
        log_adv = np.log10(np.maximum(np.array(list(adv.values())), 1.0))
        tier_edges = np.quantile(log_adv, np.linspace(0, 1, cfg.tiers + 1)[1:-1]) if len(adv) > 1 else \
            np.full(cfg.tiers - 1, log_adv[0])
        tok = cls(
            config=cfg,
            depth=Bins.fit(depth, _tail_edges(depth, n_depth, cfg.tail, equal_frequency=True, sentinels=(CLEAR, TAKE))),
            volume=Bins.fit(volume, _tail_edges(volume, n_vol, cfg.tail, equal_frequency=False)),
            dt=Bins.fit(dt, _tail_edges(dt, n_dt, cfg.tail, equal_frequency=False)),
            level=Bins.fit(level, _strictly_increasing(sorted_quantile(level, np.linspace(0, 1, cfg.level_bins + 1)
                                                                   [1:-1]))),
            tier_edges=[float(e) for e in _strictly_increasing(tier_edges)],
            volume_regime=Bins.fit(recent_volume, _strictly_increasing(sorted_quantile(recent_volume, regime_q))),
            activity_regime=Bins.fit(recent_events, _strictly_increasing(sorted_quantile(recent_events,
                                                                                          regime_q))),
            spread=spread_bins,
            features=features or FeatureConfig(),
        )
        tok.instruments = {key: {"adv": adv[key], "tier": tok.tier_of(adv[key]), **cal.regime_edges.get(key, {})}
                           for key in sorted(adv)}
        return tok

    def tier_of(self, adv: float) -> int:
        """Liquidity tier of an average daily traded value (0 = least liquid)."""
        return int(np.searchsorted(self.tier_edges, np.log10(max(adv, 1.0)), side="right"))

    # ------------------------------------------------------------------ ids
    def compose(self, action, side, depth, volume, dt) -> np.ndarray:
        """Mixed-radix id of the five fields (arrays or ints)."""
        _, r_s, r_d, r_v, r_t = self.config.radix
        a, s, d, v, t = (np.asarray(x, dtype=np.int64) for x in (action, side, depth, volume, dt))
        return (((a * r_s + s) * r_d + d) * r_v + v) * r_t + t

    def decompose(self, ids) -> tuple[np.ndarray, ...]:
        """(action, side, depth, volume, dt) bins of token ids."""
        ids = np.asarray(ids, dtype=np.int64)
        if ((ids < 0) | (ids >= self.vocab_size)).any():
            raise InputError(f"token ids must be in [0, {self.vocab_size})")
        out = []
        for r in reversed(self.config.radix):
            out.append(ids % r)
            ids = ids // r
        return tuple(reversed(out))

    def aggressors(self) -> np.ndarray:
        """[vocab] bool: the ids of orders that take the opposite best level (adds of depth CLEAR or TAKE). Only
        features with ``clear_touch`` mark them; under the paper's an aggressor is known only against a book."""
        if not self.features.clear_touch:
            raise InputError("aggressor ids need features with clear_touch (the 'book' preset): the paper's "
                             "features do not mark the orders that take the opposite level")
        a, _, d, _, _ = self.decompose(np.arange(self.vocab_size))
        return (a == ADD) & np.isin(d, self.depth.index(np.array([CLEAR, TAKE])))

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def token_dtype(self) -> np.dtype:
        return np.dtype(np.uint16) if self.vocab_size <= 1 << 16 else np.dtype(np.uint32)

    # ------------------------------------------------------------------ encode / decode
    CONTEXT = ("tier", "level", "flag", "volume_regime", "activity_regime", "spread")  # every tokenizer's

    @property
    def context_fields(self) -> tuple[str, ...]:
        """The context fields of each token: :data:`CONTEXT`, and the clock and the feed's kind when the features
        have them."""
        return self.CONTEXT + (("clock",) if self.features.clock else ()) + (("feed",) if self.features.feed else ())

    @property
    def context_sizes(self) -> tuple[int, ...]:
        """The vocabulary of each context field, in :attr:`context_fields` order (what the model embeds)."""
        c = self.config
        return ((c.tiers, c.level_bins, 2, c.regimes, c.regimes, len(self.spread.edges) + 1)
                + ((CLOCK_BINS,) if self.features.clock else ()) + ((2,) if self.features.feed else ()))

    def regimes(self, recent_volume: np.ndarray, recent_events: np.ndarray, instrument: str | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """Volume and activity regime bins: by the instrument's own terciles when the tokenizer knows it."""
        known = self.instruments.get(instrument or "", {})
        out = []
        for name, pooled, x in (("volume", self.volume_regime, recent_volume),
                                ("activity", self.activity_regime, recent_events)):
            edges = known.get(f"{name}_regime_edges")
            x = np.log1p(np.asarray(x, dtype=np.float64))
            out.append(pooled.index(x) if edges is None else _search(np.asarray(edges), x))
        return out[0], out[1]

    def encode(self, flow: OrderFlow, instrument: str, adv: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Tokens and context ([n, fields] uint8, :attr:`context_fields` order) of one symbol-day.

        The tier is a static attribute of the instrument: its calibration value when the tokenizer knows it,
        else the ``adv`` given, else the middle tier (never the day's own, later, volume)."""
        if instrument in self.instruments:
            tier = int(self.instruments[instrument]["tier"])
        else:
            tier = self.tier_of(adv) if adv is not None else self.config.tiers // 2
        tokens = np.empty(len(flow), dtype=self.token_dtype)
        ctx = np.empty((len(flow), len(self.context_fields)), dtype=np.uint8)
        e = [np.asarray(b.edges) for b in (self.depth, self.volume, self.dt, self.level)]
        side = relative_sides(flow.side, flow.aggressive) if self.features.side == "relative" else flow.side
        _encode(flow.action, side, flow.depth_bps, flow.log_volume, flow.dt, flow.level_change, flow.flag,
                *e, np.asarray(self.config.radix, dtype=np.int64), tier, tokens, ctx)
        ctx[:, 3], ctx[:, 4] = self.regimes(flow.recent_volume, flow.recent_events, instrument)
        ctx[:, 5] = self.spread_bin(flow.spread_bps)
        if self.features.clock:
            ctx[:, 6] = clock_of(flow.ts, flow.utc_offset)
        if self.features.feed:
            ctx[:, -1] = flow.book_feed
        return tokens, ctx

    def spread_bin(self, spread_bps: np.ndarray) -> np.ndarray:
        return self.spread.index(_log_spread(spread_bps))

    def values(self, ids, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """Action, side and a concrete value per continuous field (bin median, or a seeded draw in the bin). With
        ``side="relative"`` the side is the bit against the last aggressor's side, which only the sequence knows."""
        return self.bin_values(*self.decompose(ids), rng=rng)

    def bin_values(self, a, s, d, v, t, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """:meth:`values` of ids already decomposed into their five bins."""
        return {"action": a, "side": s, "depth_bps": self.depth.value(d, rng), "log_volume": self.volume.value(v, rng),
                "dt": seconds_of(self.dt.value(t, rng))}

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {"version": VERSION, "config": asdict(self.config), "depth": asdict(self.depth),
                "volume": asdict(self.volume), "dt": asdict(self.dt), "level": asdict(self.level),
                "tier_edges": self.tier_edges, "volume_regime": asdict(self.volume_regime),
                "activity_regime": asdict(self.activity_regime), "spread": asdict(self.spread),
                "instruments": self.instruments,
                "features": {k: v for k, v in asdict(self.features).items()
                             if k not in _NEWER or v != getattr(_DEFAULT_FEATURES, k)}}

    @property
    def hash(self) -> str:
        """Content hash of the token space: tokens from two tokenizers are comparable iff hashes are equal."""
        body = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({**self.to_dict(), "hash": self.hash}, indent=1, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        d = read_json(path, "a tokenizer file")
        if not isinstance(d, dict) or "version" not in d:
            raise InputError(f"{path}: not a tokenizer file (no version)")
        if d.get("version") != VERSION:
            raise InputError(f"{path}: tokenizer version {d.get('version')} is not {VERSION}")
        try:
            c = d["config"]
            cfg = TokenizerConfig(radix=tuple(c["radix"]), level_bins=c["level_bins"], tiers=c["tiers"],
                                  regimes=c["regimes"], spread_bins=c["spread_bins"], tail=tuple(c["tail"]),
                                  max_fit_values=c["max_fit_values"])
            tok = cls(cfg, Bins(**d["depth"]), Bins(**d["volume"]), Bins(**d["dt"]), Bins(**d["level"]),
                      d["tier_edges"], Bins(**d["volume_regime"]), Bins(**d["activity_regime"]),
                      Bins(**d["spread"]), d["instruments"], FeatureConfig(**d["features"]))
            digest = tok.hash
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            why = f"no {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
            raise InputError(f"{path}: not a complete tokenizer file ({why})") from None
        if d.get("hash") and d["hash"] != digest:
            raise InputError(f"{path}: content hash mismatch (file says {d['hash']}, content is {digest})")
        return tok
