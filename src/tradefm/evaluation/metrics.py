"""Realism metrics: how far the distributions of generated days are from a real window of a day.

Real and generated days are read the same way (a generated day records its fills as executions of resting
orders, exactly like LOBSTER), so every sample below comes from one code path:

- the book, replayed event by event (:func:`book_series`): best bid/ask, their sizes, mid, spread;
- log mid returns on a regular time grid (:func:`mid_returns`);
- the order events of :func:`tradefm.features.order_flow` (inter-arrival times, depth, volume).

Each distribution is compared with the two-sample Kolmogorov–Smirnov statistic and the Wasserstein-1 distance
after normalising both samples by the *real* sample's mean and standard deviation (so W1 is in units of the real
standard deviation and comparable across metrics), and, LOB-Bench style, with half the L1 distance between the
two histograms on Freedman–Diaconis bins of the pooled data. Every value has a bootstrap 95% interval.

Several rollouts of one generator are pooled: each day gives its own samples (returns never straddle two
rollouts) and the samples are concatenated. The real-vs-real floor (:func:`floor`) is the same comparison between
two parts of one real day: no generator can be expected to come closer than the market is to itself.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy import stats

from ..book import OrderBook
from ..codec import ADD, CANCEL
from ..events import EventDay, InputError, table_from_columns
from ..features import order_flow
from ..generation.market import book_at

HORIZONS_S = (1, 10, 60)
DISTRIBUTIONS = ("returns_1s", "returns_10s", "returns_60s", "spread", "inter_arrival", "order_depth",
                 "order_volume")
"""Compared with KS and W1."""
L1_SCORES = ("spread", "imbalance", "log_inter_arrival", "limit_depth", "cancel_depth", "touch_volume")
"""Compared with the LOB-Bench L1 score."""
LABELS = {
    "returns_1s": "log mid return, 1 s", "returns_10s": "log mid return, 10 s", "returns_60s": "log mid return, 60 s",
    "spread": "spread (ticks, per event)", "inter_arrival": "inter-arrival time (s)",
    "order_depth": "order depth (bps, adds)", "order_volume": "order volume (log 1+size, adds)",
    "imbalance": "touch imbalance", "log_inter_arrival": "log10 inter-arrival",
    "limit_depth": "limit-order depth (bps)",
    "cancel_depth": "cancel depth (bps)", "touch_volume": "touch volume (bid+ask, level 1)",
}
MIN_DT_S = 1e-9  # inter-arrival times of 0 (same timestamp) become 1 ns before the log
MAX_BINS = 100


# ---------------------------------------------------------------- windows and the replayed book


def window(day: EventDay, start_ts: int | None = None, end_ts: int | None = None) -> EventDay:
    """The events of ``day`` in [start_ts, end_ts), opened by the book just before ``start_ts`` as snapshot rows:
    the same shape as a generated day (a :class:`~tradefm.generation.Market` seeded at ``start_ts``), so a
    real window and a rollout from the same start are read alike."""
    t = day.table
    ts = t.column("ts").to_numpy()
    a = 0 if start_ts is None else int(np.searchsorted(ts, start_ts, side="left"))
    b = t.num_rows if end_ts is None else int(np.searchsorted(ts, end_ts, side="left"))
    if start_ts is None:
        return EventDay(day.instrument, day.date, t.slice(0, b), day.sources, dict(day.notes))
    book = book_at(day, start_ts)
    rows: dict[str, list[int]] = {c: [] for c in ("ts", "kind", "side", "price", "size", "order_id")}
    for side in (1, -1):
        for price, size, _ in book.levels(side):
            for c, v in zip(rows, (start_ts, 1, side, price, size, 0), strict=True):
                rows[c].append(v)
    n = len(rows["ts"])
    snap = table_from_columns({**{c: np.asarray(v, dtype=np.int64) for c, v in rows.items()},
                               "snapshot": np.ones(n, dtype=bool), "src_type": ["window"] * n})
    events = t.slice(a, b - a).select(snap.schema.names).cast(snap.schema)
    notes = {**day.notes, "window": [int(start_ts), None if end_ts is None else int(end_ts)]}
    return EventDay(day.instrument, day.date, pa.concat_tables([snap, events]), day.sources, notes)


def book_series(day: EventDay) -> dict[str, np.ndarray]:
    """The touch after each market event, from replaying the whole day (snapshot rows included: they are book
    knowledge). A market event's state is read after the snapshot rows that follow it (LOBSTER's reveals of the
    level its message uncovered), i.e. just before the next market event.

    Keys: ``ts`` (ns), ``bid``/``ask`` (price units, 0 = empty side), ``bid_size``/``ask_size``, ``mid`` (price
    units, NaN when a side is empty), ``spread`` (ticks, NaN when a side is empty), ``imbalance`` ((bid size −
    ask size) / (bid + ask) at level 1), ``touch_volume`` (bid + ask size at level 1, in shares/contracts/coins)."""
    t = day.table
    n = t.num_rows
    book = OrderBook(replay=True, depth=day.levels)
    _, touch = book.apply_many(*(t.column(c).to_numpy() for c in ("kind", "side", "price", "size", "order_id")))
    market = np.flatnonzero(~t.column("snapshot").to_numpy())
    after = np.r_[market[1:] - 1, n - 1] if len(market) else market
    bid, bid_size, ask, ask_size = touch[after, 0], touch[after, 1], touch[after, 2], touch[after, 3]
    both = (bid > 0) & (ask > 0)
    mid = np.where(both, (bid + ask) / 2.0, np.nan)
    spread = np.where(both, (ask - bid) / day.instrument.tick_size, np.nan)
    vol = bid_size + ask_size
    imbalance = np.divide(bid_size - ask_size, vol, out=np.full(len(vol), np.nan), where=vol > 0)
    return {"ts": t.column("ts").to_numpy()[market], "bid": bid, "ask": ask, "bid_size": bid_size,
            "ask_size": ask_size, "mid": mid, "spread": spread, "imbalance": imbalance,
            "touch_volume": vol / day.instrument.size_scale}


def mid_on_grid(series: Mapping[str, np.ndarray], horizon_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(grid times, mid) every ``horizon_s`` from the first to the last market event: the last defined mid at or
    before each grid time (grid times before the first defined mid are dropped)."""
    ts, mid = series["ts"], series["mid"]
    if len(ts) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    ok = ~np.isnan(mid)
    ts_ok, mid_ok = ts[ok], mid[ok]
    step = round(horizon_s * 1e9)
    grid = ts[0] + step * np.arange((ts[-1] - ts[0]) // step + 1, dtype=np.int64)
    idx = np.searchsorted(ts_ok, grid, side="right") - 1
    return grid[idx >= 0], mid_ok[idx[idx >= 0]]


def mid_returns(day: EventDay | Mapping[str, np.ndarray], horizon_s: float) -> np.ndarray:
    """Log mid returns over consecutive grid times ``horizon_s`` apart, within the day's market-event span.
    Accepts a day or its :func:`book_series` (to replay once for many horizons)."""
    series = book_series(day) if isinstance(day, EventDay) else day
    _, mid = mid_on_grid(series, horizon_s)
    return np.diff(np.log(mid))


# ---------------------------------------------------------------- samples of one day


def samples(day: EventDay, series: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Every sample the metrics compare, from one day (one replay, one order-flow pass).

    Per-event samples (spread, imbalance, touch volume) are taken after each market event: the distribution an
    event-driven model sees, and LOB-Bench's choice. Order depth and volume are over adds (passive and rebuilt
    aggressive ones); limit-order depth is over passive adds only, cancel depth over cancels and deletes.
    ``series``: the day's :func:`book_series`, when already at hand."""
    series = book_series(day) if series is None else series
    out = {f"returns_{h}s": mid_returns(series, h) for h in HORIZONS_S}
    for key in ("spread", "imbalance", "touch_volume"):
        v = series[key]
        out[key] = v[~np.isnan(v)]
    flow = order_flow(day)
    dt = flow.dt[1:]  # the first order event has no predecessor
    out["inter_arrival"] = dt
    out["log_inter_arrival"] = np.log10(np.maximum(dt, MIN_DT_S))
    adds = flow.action == ADD
    out["order_depth"] = flow.depth_bps[adds]
    out["order_volume"] = flow.log_volume[adds]
    out["limit_depth"] = flow.depth_bps[adds & ~flow.aggressive]
    out["cancel_depth"] = flow.depth_bps[flow.action == CANCEL]
    return out


def pooled(per_day: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate the samples of several days (rollouts of one generator, or days of one tier)."""
    per_day = list(per_day)
    keys = per_day[0].keys() if per_day else ()
    return {k: np.concatenate([d[k] for d in per_day]).astype(np.float64) for k in keys}


# ---------------------------------------------------------------- statistics with a bootstrap


class _Distribution:
    """A sample as sorted unique values with counts: a bootstrap resample is a new count vector (a bincount of
    drawn indices), so no resample is ever sorted."""

    def __init__(self, x: np.ndarray) -> None:
        self.values, self.inverse, self.counts = np.unique(np.asarray(x, np.float64), return_inverse=True,
                                                           return_counts=True)
        self.n = len(x)

    def resample(self, rng: np.random.Generator) -> np.ndarray:
        return np.bincount(self.inverse[rng.integers(0, self.n, self.n)], minlength=len(self.values))


def _cdf_at(counts: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Empirical CDF of a weighted sample (counts per sorted unique value) at the grid points that have ``pos``
    of those values at or below them."""
    cum = np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)])
    return cum[pos] / cum[-1]


def l1_bins(pooled_sample: np.ndarray, max_bins: int = MAX_BINS) -> np.ndarray:
    """Histogram edges for the L1 score: Freedman–Diaconis bins of the pooled data between its 0.1% and 99.9%
    quantiles (so one outlier cannot stretch every bin), the outer bins open-ended, at most ``max_bins`` bins
    (equal-width over the same range when FD asks for more). Integer-valued data with a small range (spread in
    ticks) get one bin per integer: FD widths would alias them."""
    x = pooled_sample[np.isfinite(pooled_sample)]
    lo, hi = np.quantile(x, [0.001, 0.999])
    if np.all(x == np.round(x)) and hi - lo + 1 <= max_bins:
        edges = np.arange(lo - 0.5, hi + 1.0)
    elif hi > lo:
        core = x[(x >= lo) & (x <= hi)]
        q1, q3 = np.percentile(core, [25, 75])
        width = 2.0 * (q3 - q1) / len(core) ** (1 / 3)
        fd_bins = int(np.ceil((hi - lo) / width)) if width > 0 else max_bins + 1
        edges = np.histogram_bin_edges(core, "fd") if fd_bins <= max_bins else np.linspace(lo, hi, max_bins + 1)
    else:
        edges = np.array([lo - 0.5, lo + 0.5])
    edges = edges.astype(np.float64)
    edges[0], edges[-1] = -np.inf, np.inf
    return edges


class _Pair:
    """Two samples on their common grid of values: KS, normalised W1 and the L1 score of any reweighting of
    them (the original counts give the point values, bootstrap counts the resamples)."""

    def __init__(self, real: np.ndarray, generated: np.ndarray, l1: bool = True) -> None:
        self.x, self.y = _Distribution(real), _Distribution(generated)
        self.mu, sd = float(real.mean()), float(real.std())
        self.sd = sd if sd > 0 else 1.0
        grid = np.union1d(self.x.values, self.y.values)
        self.px = np.searchsorted(self.x.values, grid, side="right")
        self.py = np.searchsorted(self.y.values, grid, side="right")
        self.gaps = np.diff((grid - self.mu) / self.sd)  # W1 integrates |F - G| over normalised values
        self.edges = l1_bins(np.concatenate([real, generated])) if l1 else None
        if self.edges is not None:
            nb = len(self.edges) - 1
            self.bx = np.clip(np.searchsorted(self.edges, self.x.values, side="right") - 1, 0, nb - 1)
            self.by = np.clip(np.searchsorted(self.edges, self.y.values, side="right") - 1, 0, nb - 1)

    def evaluate(self, cx: np.ndarray, cy: np.ndarray) -> dict[str, float]:
        """KS, W1 (and L1) for counts ``cx`` of the real values and ``cy`` of the generated ones."""
        diff = np.abs(_cdf_at(cx, self.px) - _cdf_at(cy, self.py))
        out = {"KS": float(diff.max()), "W1": float((diff[:-1] * self.gaps).sum())}
        if self.edges is not None:
            nb = len(self.edges) - 1
            hx = np.bincount(self.bx, weights=cx, minlength=nb) / cx.sum()
            hy = np.bincount(self.by, weights=cy, minlength=nb) / cy.sum()
            out["L1"] = 0.5 * float(np.abs(hx - hy).sum())
        return out


@dataclass(frozen=True)
class MetricRow:
    """One statistic of one sample: real against one generator (pooled rollouts), within one group."""

    group: str  # "all" or "tier <k>"
    metric: str  # a key of DISTRIBUTIONS / L1_SCORES
    stat: str  # "KS", "W1" or "L1"
    value: float
    low: float  # bootstrap 95% interval
    high: float
    n_real: int
    n_generated: int


def _seed(seed: int, *names: str) -> np.random.Generator:
    """One generator per (seed, metric): a row does not change when other metrics are added or reordered."""
    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


def distance(real: np.ndarray, generated: np.ndarray, stats_: Sequence[str] = ("KS", "W1", "L1"),
             n_boot: int = 200, rng: np.random.Generator | None = None) -> dict[str, tuple[float, float, float]]:
    """KS, normalised W1 and the L1 score of two samples, each as (value, 2.5%, 97.5% bootstrap quantile).

    Point values come from :func:`scipy.stats.ks_2samp` and :func:`scipy.stats.wasserstein_distance` (both
    samples as (x − mean_real) / std_real); resamples (both samples, with replacement) use the same formulas on
    weighted unique values (the normalisation stays the original real sample's)."""
    real = np.asarray(real, np.float64)
    generated = np.asarray(generated, np.float64)
    real, generated = real[np.isfinite(real)], generated[np.isfinite(generated)]
    nan = (np.nan, np.nan, np.nan)
    if len(real) == 0 or len(generated) == 0:
        return dict.fromkeys(stats_, nan)
    rng = rng or np.random.default_rng(0)
    pair = _Pair(real, generated, "L1" in stats_)
    point = pair.evaluate(pair.x.counts, pair.y.counts)
    mu, sd = pair.mu, pair.sd
    if "KS" in stats_:
        point["KS"] = float(stats.ks_2samp(real, generated, method="asymp").statistic)
    if "W1" in stats_:
        point["W1"] = float(stats.wasserstein_distance((real - mu) / sd, (generated - mu) / sd))
    boots = [pair.evaluate(pair.x.resample(rng), pair.y.resample(rng)) for _ in range(n_boot)]
    result = {}
    for s in stats_:
        lo, hi = np.quantile([b[s] for b in boots], [0.025, 0.975]) if boots else (np.nan, np.nan)
        result[s] = (point[s], float(lo), float(hi))
    return result


def compare_samples(real: Mapping[str, np.ndarray], generated: Mapping[str, np.ndarray], seed: int = 0,
                    group: str = "all", n_boot: int = 200) -> list[MetricRow]:
    """Every metric between two pooled sample sets; rows in DISTRIBUTIONS order (KS, W1), then L1_SCORES (L1)."""
    rows = []
    for metric in dict.fromkeys(DISTRIBUTIONS + L1_SCORES):
        wanted = [s for s, names in (("KS", DISTRIBUTIONS), ("W1", DISTRIBUTIONS), ("L1", L1_SCORES))
                  if metric in names]
        res = distance(real[metric], generated[metric], wanted, n_boot, _seed(seed, group, metric))
        rows += [MetricRow(group, metric, s, *res[s], int(np.isfinite(real[metric]).sum()),
                           int(np.isfinite(generated[metric]).sum())) for s in wanted]
    order = {(m, s): i for i, (m, s) in enumerate([(m, s) for s in ("KS", "W1") for m in DISTRIBUTIONS]
                                                  + [(m, "L1") for m in L1_SCORES])}
    return sorted(rows, key=lambda r: order[(r.metric, r.stat)])


def _tier(tiers: Mapping[str, object], day: EventDay) -> object | None:
    inst = day.instrument
    return tiers.get(inst.key, tiers.get(inst.symbol))


def compare(real: EventDay | Sequence[EventDay], generated: Sequence[EventDay], seed: int = 0,
            tiers: Mapping[str, object] | None = None, n_boot: int = 200) -> list[MetricRow]:
    """Real day(s) against the generated days of ONE generator (its rollouts pooled).

    With ``tiers`` (instrument -> liquidity tier; keys ``venue/symbol`` or ``symbol``) there are also rows per
    tier (group ``tier <k>``), pooling the real and generated days of that tier's instruments."""
    reals = [real] if isinstance(real, EventDay) else list(real)
    if not reals or not generated:
        raise InputError("compare needs at least one real and one generated day")
    real_s = [samples(d) for d in reals]
    gen_s = [samples(d) for d in generated]
    rows = compare_samples(pooled(real_s), pooled(gen_s), seed, "all", n_boot)
    if tiers:
        real_t = [_tier(tiers, d) for d in reals]
        gen_t = [_tier(tiers, d) for d in generated]
        for t in sorted({t for t in real_t if t is not None}, key=str):
            rs = [s for s, k in zip(real_s, real_t, strict=True) if k == t]
            gs = [s for s, k in zip(gen_s, gen_t, strict=True) if k == t]
            if gs:
                rows += compare_samples(pooled(rs), pooled(gs), seed, f"tier {t}", n_boot)
    return rows


def session(day: EventDay) -> tuple[int, int]:
    """The first and last market event's time (ns): the span the splits' fractions are of."""
    t = day.table
    ts = t.column("ts").to_numpy()[~t.column("snapshot").to_numpy()]
    return int(ts[0]), int(ts[-1])


def split_halves(day: EventDay, split_ts: int | None = None) -> tuple[EventDay, EventDay]:
    """The parts of a day before and from ``split_ts`` (default: the middle of its market-event span), each a
    :func:`window` opened by the book at its start."""
    start, end = session(day)
    end += 1
    split = (start + end) // 2 if split_ts is None else int(split_ts)
    return window(day, start, split), window(day, split, end)


def floor(day: EventDay, split_ts: int | None = None, seed: int = 0, n_boot: int = 200) -> list[MetricRow]:
    """The real-vs-real floor: the first part of a real window against its second part, the same metrics."""
    first, second = split_halves(day, split_ts)
    return compare(first, [second], seed=seed, n_boot=n_boot)


def as_table(rows: Sequence[MetricRow]) -> dict[tuple[str, str, str], MetricRow]:
    """Rows keyed by (group, metric, stat)."""
    return {(r.group, r.metric, r.stat): r for r in rows}
