"""Baselines on a real LOBSTER day: Compound Hawkes (classification, maximum likelihood, thinning, the simulated
market) and zero intelligence; the Hawkes fit checked against the ``tick`` library where it is installed."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow as pa
import pytest

from tradefm.baselines import hawkes as H
from tradefm.baselines import zero_intelligence as Z
from tradefm.book import OrderBook
from tradefm.events import SCHEMA, EventDay, Kind, Problems, check_events
from tradefm.readers import read

from .conftest import data_file

START_S, DURATION_S = 36_000.0, 1_800.0  # 10:00-10:30 New York


@pytest.fixture(scope="module")
def goog() -> EventDay:
    return next(read(data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")))


@pytest.fixture(scope="module")
def hawkes_params(goog: EventDay) -> H.HawkesParams:
    return H.fit([goog])


@pytest.fixture(scope="module")
def zi_params(goog: EventDay) -> Z.ZIParams:
    return Z.fit([goog])


def _start(day: EventDay) -> int:
    return H.classify(day).midnight + int(START_S * H.NS)


def _book_after(day: EventDay) -> np.ndarray:
    t = day.table
    _, touch = OrderBook(replay=True).apply_many(*(t.column(c).to_numpy() for c in
                                                   ("kind", "side", "price", "size", "order_id")))
    return touch[:, [0, 2]]


def _generated(generate, params, day: EventDay, start: int, seed: int) -> EventDay:
    """One baseline rollout, checked by ``_check_generated``; the same seed gives the same table, another seed
    another one."""
    a = generate(params, day, start, DURATION_S, seed=seed)
    _check_generated(a, start)
    assert a.table.equals(generate(params, day, start, DURATION_S, seed=seed).table)
    assert not a.table.equals(generate(params, day, start, DURATION_S, seed=seed + 1).table)
    return a


def _check_generated(day: EventDay, start: int) -> None:
    """Canonical, time-ordered, snapshot first (later snapshot rows are levels revealed from beyond the feed's
    window), never crossed, never a side empty, every event a book event."""
    t = day.table
    assert t.schema.equals(SCHEMA)
    check_events(t, "generated", str, Problems("generated", skip_bad=False))  # raises on a bad row
    ts = t.column("ts").to_numpy()
    assert (np.diff(ts) >= 0).all() and ts[0] == start and ts[-1] < start + int(DURATION_S * H.NS)
    snap = t.column("snapshot").to_numpy()
    n = int(day.notes["snapshot_levels"])
    assert snap[:n].all()
    assert (np.asarray(t.column("src_type").to_pylist(), dtype=object)[n:][snap[n:]] == "reveal").all()
    assert set(np.unique(t.column("kind").to_numpy())) <= {Kind.ADD, Kind.CANCEL, Kind.DELETE, Kind.EXECUTE}
    best = _book_after(day)
    both = (best[:, 0] > 0) & (best[:, 1] > 0)
    assert (best[both, 0] < best[both, 1]).all()
    assert both[n:].all()


# ---------------------------------------------------------------- classification


def test_classify_is_causal_and_complete(goog: EventDay) -> None:
    """Every market event is an arrival except the second and later fills of one aggressor; marks are
    consistent with the type (deep: behind the touch, inside: ahead of it)."""
    c = H.classify(goog)
    t = goog.table
    market = ~t.column("snapshot").to_numpy()
    kind = t.column("kind").to_numpy()[market]
    side, ts = t.column("side").to_numpy()[market], t.column("ts").to_numpy()[market]
    ex = np.isin(kind, (Kind.EXECUTE, Kind.EXECUTE_HIDDEN))
    same = ex[1:] & ex[:-1] & (ts[1:] == ts[:-1]) & (side[1:] == side[:-1])
    assert len(c) == market.sum() - same.sum()
    counts = c.counts()
    assert counts[[H.LO_DEEP, H.LO_TOP, H.LO_INSIDE]].sum() + counts[[6, 7, 8]].sum() == (kind == Kind.ADD).sum()
    for i in (H.LO_DEEP, H.CO_DEEP, H.LO_INSIDE):
        for e in (i, i + 6):
            assert (c.ticks[c.etype == e] >= 1).all(), H.TYPES[e]
    assert (c.ticks[np.isin(c.etype, [H.LO_TOP, H.CO_TOP, H.MO, 7, 10, 11])] == 0).all()
    assert (np.diff(c.ts) >= 0).all() and (c.size > 0).all()
    # causal: the first 20,000 rows classify the same without the rest of the day
    c2 = H.classify(EventDay(goog.instrument, goog.date, t.slice(0, 20_000), goog.sources, goog.notes))
    n = len(c2) - 1  # the last may be an aggressor cut short
    assert np.array_equal(c2.etype[:n], c.etype[:n]) and np.array_equal(c2.ticks[:n], c.ticks[:n])


# ---------------------------------------------------------------- Hawkes fit


def test_hawkes_fit_is_finite_and_stationary(hawkes_params: H.HawkesParams) -> None:
    p = hawkes_params
    for a in (p.mu, p.alpha, p.beta, p.tod):
        assert np.isfinite(a).all()
    assert (p.mu > 0).all() and (p.alpha >= 0).all() and (p.beta > 0).all() and (p.tod > 0).all()
    assert 0 < p.branching_ratio < 1
    # time-of-day factors have time-weighted mean 1 over the observed time (09:30 to the last arrival)
    e = p.tod_edges
    dur = np.clip(np.minimum(e[1:], 34_200 + p.duration_s) - np.maximum(e[:-1], 34_200), 0, None)
    assert p.tod @ dur / dur.sum() == pytest.approx(np.ones(H.K))
    assert p.info["fit_seconds"] < 60


def test_hawkes_beats_poisson(goog: EventDay, hawkes_params: H.HawkesParams) -> None:
    """The MLE nests Poisson (alpha = 0), so it must score at least as well; on real flow, far better. The
    stored log-likelihood is the one the parameters give when evaluated again."""
    p = hawkes_params
    assert p.loglik > p.loglik_poisson_tod > p.loglik_poisson
    assert (p.loglik - p.loglik_poisson_tod) / p.n_events.sum() > 0.5  # nats per event
    assert H.log_likelihood(p, [goog]) == pytest.approx(p.loglik, rel=1e-9)
    # a local optimum check: moving any parameter lowers the likelihood
    worse = dataclasses.replace(p, alpha=p.alpha * 1.05)
    assert H.log_likelihood(worse, [goog]) < p.loglik
    worse = dataclasses.replace(p, beta=p.beta * 1.1)
    assert H.log_likelihood(worse, [goog]) < p.loglik


def test_fit_on_a_window_cut_day(goog: EventDay) -> None:
    """A day cut to a window (as the evaluation cuts a training part) keeps its session note; the fit must observe
    only the window, exactly as fitting the whole day restricted to it."""
    from tradefm.evaluation.metrics import window

    start = _start(goog)
    end = start + int(DURATION_S * H.NS)
    cut = window(goog, start, end)
    a, b = H.fit([cut]), H.fit([goog], window=(START_S, START_S + DURATION_S))
    assert a.duration_s == pytest.approx(DURATION_S) and np.array_equal(a.n_events, b.n_events)
    assert a.loglik == pytest.approx(b.loglik, rel=1e-9)
    assert Z.fit([cut]).rates == pytest.approx(Z.fit([goog], window=(START_S, START_S + DURATION_S)).rates)


def test_hawkes_params_json_roundtrip(hawkes_params: H.HawkesParams) -> None:
    q = H.HawkesParams.from_json(hawkes_params.to_json())
    assert np.array_equal(q.alpha, hawkes_params.alpha) and np.array_equal(q.tod, hawkes_params.tod)
    assert q.loglik == hawkes_params.loglik and q.types == hawkes_params.types
    assert all(np.array_equal(a.values, b.values) for a, b in zip(q.sizes, hawkes_params.sizes, strict=True))


def test_thinning_recovers_its_parameters(hawkes_params: H.HawkesParams) -> None:
    """Simulate the fitted process (constant mu), check the counts against the stationary rate
    (I - alpha)^-1 mu, then fit the simulation with the true decays: the estimate is close to the truth and
    scores at least as well as the truth on its own data."""
    p = dataclasses.replace(hawkes_params, tod=np.ones_like(hawkes_params.tod))
    T = 2_000.0
    t, c = H._thinning(p.mu, p.alpha, p.beta, p.tod_edges, p.tod, 36_000.0, T, 1 << 62, np.zeros(H.K),
                       np.random.default_rng(3))
    expected = np.linalg.solve(np.eye(H.K) - p.alpha, p.mu) * T
    got = np.bincount(c, minlength=H.K)
    assert np.abs(got / expected - 1).max() < 0.15, (got, expected.round())
    ts = np.rint(t * H.NS).astype(np.int64)
    sim = H.Classified(ts, c, np.ones(len(c), np.int64), np.zeros(len(c), np.int64), np.full(len(c), np.nan),
                       0, int(T * H.NS), -36_000 * H.NS)
    est = H.fit_events([sim], time_of_day=False, decays=p.beta)
    assert est.loglik >= H.log_likelihood_events(p, [sim])
    assert abs(est.branching_ratio - p.branching_ratio) < 0.05
    assert np.abs(est.mu / p.mu - 1).max() < 0.3


def test_hawkes_fit_matches_tick(goog: EventDay) -> None:
    """Constant mu and one decay for every kernel is the model of tick's HawkesExpKern: tick's own likelihood
    (C++), minimised by L-BFGS-B, must land where our projected-Newton fit does. tick's loss is
    -(loglik + K * T) / n: it starts each node's loss at -end_time."""
    pytest.importorskip("tick.hawkes")
    from scipy.optimize import minimize
    from tick.hawkes import ModelHawkesExpKernLogLik

    c = H.classify_days([goog], (START_S, START_S + 1_200.0))[0]
    c = dataclasses.replace(c, t1=int(c.ts[-1]))  # tick's window ends at the last event
    decay = 1_000.0
    mine = H.fit_events([c], time_of_day=False, decays=np.full(H.K, decay))
    T = (c.t1 - c.t0) / H.NS
    t = (c.ts - c.t0) / H.NS
    model = ModelHawkesExpKernLogLik(decay).fit([np.ascontiguousarray(t[c.etype == i]) for i in range(H.K)],
                                                end_times=T)
    n = model.n_jumps
    x_mine = np.concatenate([mine.mu, mine.alpha.ravel()])
    assert -model.loss(x_mine) * n - H.K * T == pytest.approx(mine.loglik, rel=1e-10)
    x0 = np.concatenate([mine.n_events / T / 2, np.full(H.K * H.K, 0.01)])
    res = minimize(lambda x: (model.loss(x), model.grad(x)), x0, jac=True, method="L-BFGS-B",
                   bounds=[(1e-10, None)] * H.K + [(0, None)] * H.K**2,
                   options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10})
    ll_tick = -res.fun * n - H.K * T
    assert ll_tick == pytest.approx(mine.loglik, rel=1e-8)
    assert ll_tick <= mine.loglik + 1e-6 * abs(mine.loglik)
    assert np.abs(res.x[:H.K] - mine.mu).max() < 1e-3 * mine.mu.max() + 1e-6
    assert np.abs(res.x[H.K:].reshape(H.K, H.K) - mine.alpha).max() < 1e-3


# ---------------------------------------------------------------- Hawkes simulation


def _real_counts(day: EventDay, start: int, fold=None) -> np.ndarray:
    c = H.classify(day).window(start, start + int(DURATION_S * H.NS))
    return np.bincount(fold(c) if fold else c.etype, minlength=6 if fold else H.K)


def test_hawkes_generate(goog: EventDay, hawkes_params: H.HawkesParams) -> None:
    start = _start(goog)
    a = _generated(H.generate, hawkes_params, goog, start, seed=11)
    real = _real_counts(goog, start)
    arrivals = np.asarray(a.notes["arrivals_by_type"])
    big = real >= 100
    ratio = arrivals[big] / real[big]
    assert ((ratio > 0.5) & (ratio < 2)).all(), dict(zip(np.array(H.TYPES)[big], ratio.round(2), strict=True))
    # what reached the book, typed the way the real day is: adds, cancels and market orders per side
    got = np.bincount(Z.zi_types(H.classify(a)), minlength=6)
    want = _real_counts(goog, start, Z.zi_types)
    assert ((got / want > 0.5) & (got / want < 2)).all(), (got, want)
    assert a.notes["skipped"] < 0.1 * a.notes["arrivals"]


def _median_spread(day: EventDay) -> float:
    best = _book_after(day)
    both = (best[:, 0] > 0) & (best[:, 1] > 0)
    return float(np.median(best[both, 1] - best[both, 0]) / day.instrument.tick_size)


def test_hawkes_tight_inside(goog: EventDay, hawkes_params: H.HawkesParams) -> None:
    """Inside-spread arrivals at a one-tick spread joining the touch pin the spread there and freeze the mid (the
    arrival times do not see the book); dropping them (the default, as the paper's code does) keeps it open."""
    start = _start(goog)
    touch = H.generate(hawkes_params, goog, start, DURATION_S, seed=3, tight_inside="touch")
    drop = H.generate(hawkes_params, goog, start, DURATION_S, seed=3)
    _check_generated(touch, start)
    assert drop.notes["dropped_inside"] > 0 and touch.notes["dropped_inside"] == 0
    assert _median_spread(touch) <= 2 < _median_spread(drop)
    with pytest.raises(ValueError, match="tight_inside"):
        H.generate(hawkes_params, goog, start, 1.0, seed=3, tight_inside="inside")


def test_hawkes_generate_max_events(goog: EventDay, hawkes_params: H.HawkesParams) -> None:
    day = H.generate(hawkes_params, goog, _start(goog), DURATION_S, seed=1, max_events=500)
    assert day.notes["arrivals"] == 500


# ---------------------------------------------------------------- zero intelligence


def test_zi_fit(goog: EventDay, zi_params: Z.ZIParams) -> None:
    p = zi_params
    assert np.isfinite(p.rates).all() and (p.rates > 0).all()
    c = H.classify(goog)
    assert p.rates.sum() * p.duration_s == pytest.approx(len(c))
    assert p.k_ticks == math.ceil(np.nanpercentile(c.mid_ticks, 99))
    q = Z.ZIParams.from_json(p.to_json())
    assert np.array_equal(q.rates, p.rates) and q.k_ticks == p.k_ticks
    assert all(np.array_equal(a.counts, b.counts) for a, b in zip(q.sizes, p.sizes, strict=True))


def test_zi_generate(goog: EventDay, zi_params: Z.ZIParams) -> None:
    start = _start(goog)
    a = _generated(Z.generate, zi_params, goog, start, seed=5)
    arrivals = np.asarray(a.notes["arrivals_by_type"])
    expected = zi_params.rates * DURATION_S
    assert (np.abs(arrivals - expected) < 5 * np.sqrt(expected) + 1).all()
    got = np.bincount(Z.zi_types(H.classify(a)), minlength=6)
    want = _real_counts(goog, start, Z.zi_types)
    assert ((got / want > 0.4) & (got / want < 2.5)).all(), (got, want)
    # limit prices: never through the mid, never more than K ticks from it
    t = a.table
    market = ~t.column("snapshot").to_numpy()
    best = _book_after(a)
    before = np.vstack([[0, 0], best[:-1]])
    add = market & (t.column("kind").to_numpy() == Kind.ADD) & (before[:, 0] > 0) & (before[:, 1] > 0)
    mid = before[add].mean(1)
    side, price = t.column("side").to_numpy()[add], t.column("price").to_numpy()[add]
    dist = side * (mid - price) / goog.instrument.tick_size
    assert (dist > 0).all() and (dist <= zi_params.k_ticks + 0.5).all()


def test_generated_day_is_a_day(goog: EventDay, zi_params: Z.ZIParams) -> None:
    """A generated day has what downstream code reads: instrument, date, and a table that concatenates."""
    a = Z.generate(zi_params, goog, _start(goog), 60.0, seed=0)
    assert a.instrument == goog.instrument and a.date == goog.date
    assert pa.concat_tables([a.table, a.table]).num_rows == 2 * a.num_events
