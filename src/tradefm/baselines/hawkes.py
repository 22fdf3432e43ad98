"""Compound Hawkes order flow (Jain, Firoozye, Kochems, Treleaven 2024, arXiv 2312.08927), simulated in the same
matching engine as the model's rollouts.

Twelve event types, six per side: limit orders deep in the book, at the touch or inside the spread, cancels deep
or at the touch, and market orders. A real day is classified causally (the book *before* each event, from the
engine replaying the day). Arrival times follow a multivariate Hawkes process with exponential kernels,

    lambda_i(t) = mu_i * f_i(tod(t)) + sum_j alpha_ij * beta_i * sum_{t_k^j < t} exp(-beta_i * (t - t_k^j)),

one decay ``beta_i`` per *target* type (so the excitation of type i is one number that decays at one rate, and the
log-likelihood separates into one small problem per type), ``alpha`` the branching matrix (expected children of
type i per event of type j) and ``f_i`` a piecewise-constant time-of-day factor (30-minute buckets, from counts,
time-weighted mean 1) that multiplies the baseline. The "compound" part are the marks: sizes per type and depths
(ticks from the touch) from the real day's empirical distributions.

Fitting is exact maximum likelihood: for a fixed ``beta_i`` the log-likelihood of type i is concave in
``(mu_i, alpha_i.)`` and is maximised by projected Newton on statistics that one compiled O(N·K) pass computes;
``beta_i`` is profiled out over a log grid and refined by a bounded 1-D search. Simulation is Ogata thinning, each
arrival becoming an order on a :class:`~tradefm.generation.Market`. docs/BASELINES.md has the rules and the
measurements.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from ..book import OrderBook
from ..events import EventDay, InputError, Kind
from ..generation.market import Market
from ..readers.lobster import session_start_ns

TYPES: tuple[str, ...] = (
    "lo_deep_bid", "lo_top_bid", "lo_inside_bid", "co_deep_bid", "co_top_bid", "mo_buy",
    "lo_deep_ask", "lo_top_ask", "lo_inside_ask", "co_deep_ask", "co_top_ask", "mo_sell",
)
"""Event types: index ``6 * s + category``, ``s`` = 0 for the bid side (buyers), 1 for the ask side (sellers). A
market order belongs to its aggressor: ``mo_buy`` takes the asks."""
K = len(TYPES)
LO_DEEP, LO_TOP, LO_INSIDE, CO_DEEP, CO_TOP, MO = range(6)
NS = 1_000_000_000
_EXEC = (Kind.EXECUTE, Kind.EXECUTE_HIDDEN, Kind.TRADE)


def type_side(etype: int) -> int:
    """+1 (bid / buy) or -1 (ask / sell)."""
    return 1 if etype < 6 else -1


# ---------------------------------------------------------------- classification


@dataclass
class Classified:
    """One day's events as typed arrivals with marks (all arrays of one length, time-ordered)."""

    ts: np.ndarray  # int64 ns
    etype: np.ndarray  # int64, index into TYPES
    size: np.ndarray  # int64
    ticks: np.ndarray  # int64: deep add/cancel: ticks behind the own touch; inside add: ticks ahead of it; else 0
    mid_ticks: np.ndarray  # float64: |price - mid| / tick for limit adds with a two-sided book, else NaN
    t0: int  # observation window, ns (the session, or the first and last event)
    t1: int
    midnight: int  # ns of the venue's local midnight (for the time of day)

    def __len__(self) -> int:
        return len(self.ts)

    def window(self, start: int, end: int) -> Classified:
        """The arrivals in [start, end) with the window set to it."""
        a, b = np.searchsorted(self.ts, [start, end], side="left")
        return Classified(self.ts[a:b], self.etype[a:b], self.size[a:b], self.ticks[a:b], self.mid_ticks[a:b],
                          max(start, self.t0), min(end, self.t1), self.midnight)

    def counts(self) -> np.ndarray:
        return np.bincount(self.etype, minlength=K)


def classify(day: EventDay) -> Classified:
    """Type every market event of ``day`` from the book just before it (causal).

    Limit adds: price better than the own side's best = inside the spread, equal (or own side empty) = at the
    touch, worse = deep. Cancels and deletes: at the own best = touch, else deep. Executions (visible, hidden or
    trade prints) that follow each other with one timestamp and one resting side are one market order of the
    aggressor (the other side), sized by their sum, as :func:`tradefm.features.order_flow` rebuilds them.
    Snapshot rows (the opening book and reveals) move the book but are not arrivals."""
    t = day.table
    kind = t.column("kind").to_numpy().astype(np.int64)
    side = t.column("side").to_numpy().astype(np.int64)
    price = t.column("price").to_numpy().astype(np.int64)
    size = t.column("size").to_numpy().astype(np.int64)
    oid = t.column("order_id").to_numpy().astype(np.int64)
    ts = t.column("ts").to_numpy().astype(np.int64)
    snap = t.column("snapshot").to_numpy()
    tick = day.instrument.tick_size
    book = OrderBook(replay=True, depth=day.levels)
    _, touch = book.apply_many(kind, side, price, size, oid)
    after = touch[:, [0, 2]]
    before = np.zeros_like(after)
    before[1:] = after[:-1]
    m = np.flatnonzero(~snap)  # market events only: reveals between two fills do not split an aggressor
    kind, side, price, size, ts, before = kind[m], side[m], price[m], size[m], ts[m], before[m]
    bid, ask = before[:, 0], before[:, 1]
    own = np.where(side > 0, bid, ask)
    ahead = side * (price - own)  # > 0: better than the own best
    has_own = own > 0
    s_idx = np.where(side > 0, 0, 6)
    etype = np.full(len(m), -1, dtype=np.int64)
    ticks = np.zeros(len(m), dtype=np.int64)

    add = kind == Kind.ADD
    cat = np.where(~has_own, LO_TOP, np.where(ahead > 0, LO_INSIDE, np.where(ahead == 0, LO_TOP, LO_DEEP)))
    etype[add] = (s_idx + cat)[add]
    cxl = (kind == Kind.CANCEL) | (kind == Kind.DELETE)
    cat = np.where(has_own & (ahead != 0), CO_DEEP, CO_TOP)
    etype[cxl] = (s_idx + cat)[cxl]
    steps = np.where(has_own, np.abs(ahead) // tick, 0)
    deep_or_inside = add | cxl
    ticks[deep_or_inside] = steps[deep_or_inside]

    two_sided = (bid > 0) & (ask > 0)
    mid = (bid + ask) / 2
    mid_ticks = np.where(add & two_sided, np.abs(price - mid) / tick, np.nan)

    is_exec = np.isin(kind, _EXEC) & (side != 0)
    prev_same = np.zeros(len(m), dtype=bool)
    prev_same[1:] = is_exec[:-1] & (ts[1:] == ts[:-1]) & (side[1:] == side[:-1])
    first = is_exec & ~prev_same
    ex = np.flatnonzero(is_exec)
    if len(ex):
        starts = np.flatnonzero(first[ex])
        group_size = np.add.reduceat(size[ex], starts)
        heads = ex[starts]
        etype[heads] = np.where(side[heads] < 0, MO, 6 + MO)  # a fill of a resting ask is a market buy
        size = size.copy()
        size[heads] = group_size

    keep = etype >= 0  # executions after the first of a group, modifies, halts: not arrivals
    midnight = session_start_ns(day.date, day.instrument.timezone)
    first_row = int(t.column("ts")[0].as_py()) if t.num_rows else 0
    t0, t1 = _observed(day.notes, midnight, first_row, int(ts[keep][-1]) if keep.any() else first_row)
    return Classified(ts[keep], etype[keep], size[keep], ticks[keep], mid_ticks[keep], t0, t1, midnight)


def _observed(notes: dict, midnight: int, first_row: int, last_arrival: int) -> tuple[int, int]:
    """The time a day's table observes (the compensator's interval): from its first row (the opening snapshot)
    or the session start, whichever is later, to the end of a noted window (``metrics.window``, a generated
    day's start + duration), else to the session end or the last arrival, whichever is earlier -- a table cut
    short still keeps its day's session note, and counting the missing part as silence would bias every rate."""
    t0, t1 = first_row, last_arrival
    session = notes.get("session_ms")
    if session and len(session) == 2:
        t0 = max(t0, midnight + int(session[0]) * 1_000_000)
        t1 = min(t1, midnight + int(session[1]) * 1_000_000)
    window = notes.get("window")
    if window and len(window) == 2 and window[1] is not None:
        t1 = int(window[1])
    elif notes.get("start_ts") is not None and notes.get("duration_s") is not None:
        t1 = int(notes["start_ts"]) + int(float(notes["duration_s"]) * NS)
    return t0, max(t0, t1)


# ---------------------------------------------------------------- empirical marks


@dataclass
class Empirical:
    """An empirical distribution of non-negative integers (values and counts), sampled with a Generator."""

    values: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> Empirical:
        v, c = np.unique(np.asarray(x, dtype=np.int64), return_counts=True)
        return cls(v, c)

    def __bool__(self) -> bool:
        return len(self.values) > 0

    def sample(self, rng: np.random.Generator, n: int, default: int = 1) -> np.ndarray:
        if not self:
            return np.full(n, default, dtype=np.int64)
        return rng.choice(self.values, size=n, p=self.counts / self.counts.sum()).astype(np.int64)

    def to_list(self) -> list[list[int]]:
        return [self.values.tolist(), self.counts.tolist()]

    @classmethod
    def from_list(cls, x: list[list[int]]) -> Empirical:
        return cls(np.asarray(x[0], dtype=np.int64), np.asarray(x[1], dtype=np.int64))


def _marks(events: list[Classified], ntypes: int) -> tuple[list[Empirical], list[Empirical]]:
    """Per-type size distributions and tick distributions (the latter for deep and inside types)."""
    et = np.concatenate([c.etype for c in events])
    sz = np.concatenate([c.size for c in events])
    tk = np.concatenate([c.ticks for c in events])
    sizes = [Empirical.of(sz[et == i]) for i in range(ntypes)]
    ticks = [Empirical.of(tk[(et == i) & (tk > 0)]) for i in range(ntypes)]
    return sizes, ticks


# ---------------------------------------------------------------- time of day


def tod_factors(events: list[Classified], bucket_s: float, ntypes: int, prior: float = 20.0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Bucket edges (seconds after local midnight) and per-type factors [ntypes, buckets] with time-weighted
    mean 1 over the observed time. Each type's profile is shrunk towards the all-type profile by ``prior``
    pseudo-events, so a rare type does not get a factor of zero from an empty bucket."""
    lo = min((c.t0 - c.midnight) / NS for c in events)
    hi = max((c.t1 - c.midnight) / NS for c in events)
    edges = np.arange(math.floor(lo / bucket_s) * bucket_s, hi + bucket_s, bucket_s)
    if len(edges) < 2:
        edges = np.array([lo, lo + bucket_s])
    nb = len(edges) - 1
    dur = np.zeros(nb)
    n = np.zeros((ntypes, nb))
    for c in events:
        a, b = (c.t0 - c.midnight) / NS, (c.t1 - c.midnight) / NS
        dur += np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0, None)
        b_idx = np.clip(np.searchsorted(edges, (c.ts - c.midnight) / NS, side="right") - 1, 0, nb - 1)
        np.add.at(n, (c.etype, b_idx), 1)
    total = n.sum(0)
    share = total / max(total.sum(), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = (n + prior * share) / np.where(dur > 0, dur, np.nan)
        mean = np.nansum(rate * dur, axis=1, keepdims=True) / dur.sum()
        f = rate / mean
    # buckets outside the observed time take the nearest observed bucket's factor
    seen = np.flatnonzero(dur > 0)
    idx = seen[np.clip(np.searchsorted(seen, np.arange(nb)), 0, len(seen) - 1)]
    f = f[:, idx]
    return edges, np.where(np.isfinite(f), f, 1.0)


def _bucket(edges: np.ndarray, sec: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, sec, side="right") - 1, 0, len(edges) - 2)


def _tod_integral(edges: np.ndarray, f: np.ndarray, a: float, b: float) -> float:
    """Integral of a piecewise-constant factor row ``f`` over [a, b] (seconds after midnight); outside the
    edges the end buckets extend."""
    e = edges.copy()
    e[0], e[-1] = min(e[0], a), max(e[-1], b)
    overlap = np.clip(np.minimum(e[1:], b) - np.maximum(e[:-1], a), 0, None)
    return float((overlap * f).sum())


# ---------------------------------------------------------------- the likelihood


@njit(cache=True)
def _target_stats(t: np.ndarray, c: np.ndarray, starts: np.ndarray, T: np.ndarray, beta: float, target: int,
                  ntypes: int) -> tuple[np.ndarray, np.ndarray]:
    """For one target type and decay: ``X[n, j]`` = sum over type-j events strictly before the n-th target event
    of exp(-beta * lag), and ``comp[j]`` = sum over type-j events of 1 - exp(-beta * (T - t_k)) (the kernel
    mass inside the window). Events sharing a timestamp do not excite each other (the intensity is the left
    limit), else a tie would let beta -> infinity raise the likelihood without bound."""
    n_target = 0
    for k in range(len(c)):
        if c[k] == target:
            n_target += 1
    X = np.zeros((n_target, ntypes))
    comp = np.zeros(ntypes)
    S = np.zeros(ntypes)
    row = 0
    for d in range(len(T)):
        S[:] = 0.0
        last = 0.0
        k, end = starts[d], starts[d + 1]
        while k < end:
            tk = t[k]
            if tk > last:
                e = math.exp(-beta * (tk - last))
                for j in range(ntypes):
                    S[j] *= e
                last = tk
            j = k
            while j < end and t[j] == tk:
                if c[j] == target:
                    X[row, :] = S
                    row += 1
                j += 1
            for m in range(k, j):
                S[c[m]] += 1.0
                comp[c[m]] += 1.0 - math.exp(-beta * (T[d] - t[m]))
            k = j
    return X, comp


@dataclass
class _Data:
    """Arrivals of several days on one axis per day (seconds from each window start), for the likelihood."""

    t: np.ndarray
    c: np.ndarray
    starts: np.ndarray
    T: np.ndarray  # window lengths, s
    sec: np.ndarray  # seconds after local midnight of each arrival (time of day)
    t0_sec: np.ndarray  # window starts, seconds after local midnight
    ntypes: int

    @classmethod
    def of(cls, events: list[Classified], ntypes: int) -> _Data:
        t = [(c.ts - c.t0) / NS for c in events]
        return cls(
            t=np.concatenate(t) if t else np.zeros(0),
            c=np.concatenate([c.etype for c in events]).astype(np.int64),
            starts=np.concatenate([[0], np.cumsum([len(x) for x in t])]).astype(np.int64),
            T=np.array([(c.t1 - c.t0) / NS for c in events]),
            sec=np.concatenate([(c.ts - c.midnight) / NS for c in events]),
            t0_sec=np.array([(c.t0 - c.midnight) / NS for c in events]), ntypes=ntypes,
        )

    def f_at(self, edges: np.ndarray, f_row: np.ndarray, target: int) -> np.ndarray:
        return f_row[_bucket(edges, self.sec[self.c == target])]

    def f_integral(self, edges: np.ndarray, f_row: np.ndarray) -> float:
        return sum(_tod_integral(edges, f_row, a, a + T) for a, T in zip(self.t0_sec, self.T, strict=True))


@njit(cache=True)
def _nll(x: np.ndarray, X: np.ndarray, fv: np.ndarray, comp: np.ndarray, F: float, beta: float, scale: float,
         hessian: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """Negative log-likelihood of one type in (mu, alpha_i.), its gradient and (optionally) Hessian, divided by
    ``scale``. Compiled loops rather than NumPy/SciPy: on these thin problems a threaded BLAS spent ~20x longer
    in thread hand-offs than in arithmetic (and so did L-BFGS-B's own BLAS calls)."""
    n, k = X.shape
    p = k + 1
    mu = x[0]
    ll = -mu * F
    g = np.zeros(p)
    h = np.zeros((p, p))
    w = np.empty(p)
    g[0] = -F
    for j in range(k):
        ll -= x[1 + j] * comp[j]
        g[1 + j] = -comp[j]
    for r in range(n):
        w[0] = fv[r]
        lam = mu * fv[r]
        for j in range(k):
            w[1 + j] = beta * X[r, j]
            lam += w[1 + j] * x[1 + j]
        lam = max(lam, 1e-300)
        ll += math.log(lam)
        inv = 1.0 / lam
        for a in range(p):
            g[a] += w[a] * inv
        if hessian:
            inv2 = inv * inv
            for a in range(p):
                wa = w[a] * inv2
                if wa != 0.0:
                    for b in range(a, p):
                        h[a, b] += wa * w[b]
    if hessian:
        for a in range(p):
            for b in range(a):
                h[a, b] = h[b, a]
    return -ll / scale, -g / scale, h / scale


@njit(cache=True)
def _cholesky_solve(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve A x = b for a small symmetric positive-definite A (ridge added by the caller)."""
    n = len(b)
    L = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1):
            s = A[i, j]
            for m in range(j):
                s -= L[i, m] * L[j, m]
            if i == j:
                L[i, i] = math.sqrt(max(s, 1e-300))
            else:
                L[i, j] = s / L[j, j]
    y = np.empty(n)
    for i in range(n):
        s = b[i]
        for m in range(i):
            s -= L[i, m] * y[m]
        y[i] = s / L[i, i]
    out = np.empty(n)
    for i in range(n - 1, -1, -1):
        s = y[i]
        for m in range(i + 1, n):
            s -= L[m, i] * out[m]
        out[i] = s / L[i, i]
    return out


@njit(cache=True)
def _solve(X: np.ndarray, fv: np.ndarray, comp: np.ndarray, F: float, beta: float, x0: np.ndarray
           ) -> tuple[float, np.ndarray]:
    """The concave problem of one type at a fixed decay, max over mu > 0, alpha >= 0, by projected Newton
    (Bertsekas 1982): Newton steps on the variables not held at their bound, projected Armijo backtracking.
    Returns (loglik, x)."""
    n, k = X.shape
    p = k + 1
    if n == 0:
        return 0.0, np.zeros(p)
    lb = np.zeros(p)
    lb[0] = 1e-12
    x = np.maximum(x0, lb)
    f, g, h = _nll(x, X, fv, comp, F, beta, float(n), True)
    for _ in range(200):
        free = np.ones(p, dtype=np.bool_)
        for j in range(p):
            if x[j] <= lb[j] * (1 + 1e-9) + 1e-15 and g[j] > 0:
                free[j] = False
        idx = np.flatnonzero(free)
        m = len(idx)
        d = np.zeros(p)
        if m > 0:
            A = np.empty((m, m))
            rhs = np.empty(m)
            tr = 0.0
            for a in range(m):
                tr += h[idx[a], idx[a]]
            for a in range(m):
                rhs[a] = -g[idx[a]]
                for b in range(m):
                    A[a, b] = h[idx[a], idx[b]]
                A[a, a] += 1e-10 * tr / m + 1e-300
            step = _cholesky_solve(A, rhs)
            for a in range(m):
                d[idx[a]] = step[a]
        t = 1.0
        accepted = False
        for _ls in range(60):
            xn = np.maximum(x + t * d, lb)
            fn = _nll(xn, X, fv, comp, F, beta, float(n), False)[0]
            if fn <= f + 1e-4 * (g @ (xn - x)):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        done = f - fn <= 1e-15 * max(1.0, abs(f))
        x = xn
        f, g, h = _nll(x, X, fv, comp, F, beta, float(n), True)
        if done:
            break
    return -f * n, x


def _fit_type(data: _Data, i: int, fv: np.ndarray, F: float, decay: float | None,
              beta_range: tuple[float, float]) -> tuple[float, float, float, np.ndarray]:
    """One type's (loglik, beta, mu, alpha_i.): the decay profiled out over a log grid, then a bounded 1-D
    search around the best grid point (the profile is smooth but need not be unimodal)."""
    from scipy.optimize import minimize_scalar

    cache: dict[float, tuple[float, np.ndarray]] = {}
    last = [None]

    def profile(log_beta: float) -> float:
        beta = math.exp(log_beta)
        X, comp = _target_stats(data.t, data.c, data.starts, data.T, beta, i, data.ntypes)
        x0 = last[0]
        if x0 is None:
            x0 = np.concatenate([[0.5 * max(len(X), 1) / F], np.full(data.ntypes, 0.02)])
        ll, x = _solve(X, fv, comp, F, beta, x0)
        cache[log_beta] = (ll, x)
        last[0] = x
        return -ll

    if not (data.c == i).any():  # a type the data never shows (deep types of a level-1 file): no arrivals
        return 0.0, 1.0, 0.0, np.zeros(data.ntypes)
    if decay is not None:
        profile(math.log(decay))
    else:
        grid = np.linspace(math.log(beta_range[0]), math.log(beta_range[1]), 11)
        vals = [profile(g) for g in grid]
        b = int(np.argmin(vals))
        lo, hi = grid[max(b - 1, 0)], grid[min(b + 1, len(grid) - 1)]
        last[0] = cache[grid[b]][1]
        minimize_scalar(profile, bounds=(lo, hi), method="bounded", options={"xatol": 0.02})
    best = max(cache, key=lambda lb: cache[lb][0])
    ll, x = cache[best]
    return ll, math.exp(best), float(x[0]), x[1:]


# ---------------------------------------------------------------- parameters


@dataclass
class HawkesParams:
    """A fitted Compound Hawkes model: arrivals (mu, alpha, beta, time of day) and marks."""

    mu: np.ndarray  # [K] baseline intensity per second (times the time-of-day factor)
    alpha: np.ndarray  # [K, K] branching matrix: alpha[i, j] = expected type-i children of one type-j event
    beta: np.ndarray  # [K] decay per target type, 1/s
    tod_edges: np.ndarray  # [B + 1] seconds after the venue's local midnight
    tod: np.ndarray  # [K, B] time-of-day factor multiplying mu
    sizes: list[Empirical]
    ticks: list[Empirical]
    tick_size: int
    loglik: float = float("nan")  # of the fitted events, nats
    loglik_poisson: float = float("nan")  # homogeneous Poisson with the same per-type rates
    loglik_poisson_tod: float = float("nan")  # Poisson with the same rates and the same time-of-day factor
    n_events: np.ndarray = field(default_factory=lambda: np.zeros(K, dtype=np.int64))
    duration_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    types: tuple[str, ...] = TYPES

    @property
    def branching_ratio(self) -> float:
        """Spectral radius of ``alpha``: < 1 is a stationary process (each event has fewer than one descendant
        generation-on-generation)."""
        return float(np.max(np.abs(np.linalg.eigvals(self.alpha))))

    def to_json(self) -> str:
        d = {
            "types": list(self.types), "mu": self.mu.tolist(), "alpha": self.alpha.tolist(),
            "beta": self.beta.tolist(), "tod_edges": self.tod_edges.tolist(), "tod": self.tod.tolist(),
            "sizes": [e.to_list() for e in self.sizes], "ticks": [e.to_list() for e in self.ticks],
            "tick_size": self.tick_size, "loglik": self.loglik, "loglik_poisson": self.loglik_poisson,
            "loglik_poisson_tod": self.loglik_poisson_tod, "n_events": self.n_events.tolist(),
            "duration_s": self.duration_s, "info": self.info,
        }
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> HawkesParams:
        d = json.loads(text)
        return cls(
            mu=np.asarray(d["mu"], float), alpha=np.asarray(d["alpha"], float), beta=np.asarray(d["beta"], float),
            tod_edges=np.asarray(d["tod_edges"], float), tod=np.asarray(d["tod"], float),
            sizes=[Empirical.from_list(x) for x in d["sizes"]], ticks=[Empirical.from_list(x) for x in d["ticks"]],
            tick_size=int(d["tick_size"]), loglik=d["loglik"], loglik_poisson=d["loglik_poisson"],
            loglik_poisson_tod=d["loglik_poisson_tod"], n_events=np.asarray(d["n_events"], np.int64),
            duration_s=d["duration_s"], info=d["info"], types=tuple(d["types"]),
        )

    def summary(self) -> str:
        lines = [f"{'type':<14}{'events':>8}{'rate/s':>9}{'mu':>9}{'beta':>9}{'sum_j a_ij':>11}{'a_ii':>7}"]
        rate = self.n_events / max(self.duration_s, 1e-9)
        for i, name in enumerate(self.types):
            lines.append(f"{name:<14}{self.n_events[i]:>8}{rate[i]:>9.4f}{self.mu[i]:>9.4f}{self.beta[i]:>9.2f}"
                         f"{self.alpha[i].sum():>11.3f}{self.alpha[i, i]:>7.3f}")
        lines.append(f"loglik {self.loglik:.1f}  Poisson {self.loglik_poisson:.1f}  Poisson+tod "
                     f"{self.loglik_poisson_tod:.1f}  branching ratio {self.branching_ratio:.3f}")
        return "\n".join(lines)


def classify_days(days: list[EventDay], window: tuple[float, float] | None = None) -> list[Classified]:
    """:func:`classify` each day, cut to ``window`` (seconds after local midnight) if given."""
    out = []
    for day in days:
        c = classify(day)
        if window is not None:
            c = c.window(c.midnight + int(window[0] * NS), c.midnight + int(window[1] * NS))
        out.append(c)
    if not sum(map(len, out)):  # nothing to fit: said here, not as an empty array deep in a fit
        where = f" between {window[0] / 3600:g} h and {window[1] / 3600:g} h local time" if window else ""
        raise InputError(f"no events to fit on{where} in {', '.join(s for d in days for s in d.sources) or 'the days'}")
    return out


def _poisson(data: _Data, edges: np.ndarray, tod: np.ndarray) -> tuple[float, float]:
    """Log-likelihoods of homogeneous Poisson arrivals with the MLE rates, and with the time-of-day factor."""
    total = data.T.sum()
    flat = with_tod = 0.0
    for i in range(data.ntypes):
        n = int((data.c == i).sum())
        if n == 0:
            continue
        flat += n * math.log(n / total) - n
        F = data.f_integral(edges, tod[i])
        with_tod += n * math.log(n / F) + np.log(data.f_at(edges, tod[i], i)).sum() - n
    return flat, float(with_tod)


def fit(days: list[EventDay], *, window: tuple[float, float] | None = None, bucket_minutes: float = 30.0,
        time_of_day: bool = True, decays: np.ndarray | None = None,
        beta_range: tuple[float, float] = (0.01, 1e4)) -> HawkesParams:
    """Fit the Compound Hawkes model to real days by maximum likelihood.

    ``window``: (start, end) seconds after local midnight to fit on (default: each day's whole session).
    ``time_of_day=False`` keeps mu constant; ``decays`` (one per type) fixes beta instead of fitting it -- with
    both and one decay for all, the model is the one of ``tick.hawkes.HawkesExpKern`` (used to check this fit)."""
    params = fit_events(classify_days(days, window), bucket_minutes=bucket_minutes, time_of_day=time_of_day,
                        decays=decays, beta_range=beta_range, tick_size=days[0].instrument.tick_size)
    params.info.update({"sources": [s for d in days for s in d.sources], "window": list(window) if window else None})
    return params


def fit_events(events: list[Classified], *, bucket_minutes: float = 30.0, time_of_day: bool = True,
               decays: np.ndarray | None = None, beta_range: tuple[float, float] = (0.01, 1e4),
               tick_size: int = 1) -> HawkesParams:
    """:func:`fit` on already classified arrivals (each with its own observation window)."""
    t_start = time.perf_counter()
    data = _Data.of(events, K)
    edges, tod = tod_factors(events, bucket_minutes * 60.0, K)
    if not time_of_day:
        tod = np.ones_like(tod)
    mu, beta, alpha, ll = np.zeros(K), np.ones(K), np.zeros((K, K)), 0.0
    for i in range(K):
        fv = data.f_at(edges, tod[i], i)
        F = data.f_integral(edges, tod[i])
        ll_i, beta[i], mu[i], alpha[i] = _fit_type(data, i, fv, F, None if decays is None else float(decays[i]),
                                                     beta_range)
        ll += ll_i
    flat, with_tod = _poisson(data, edges, tod)
    sizes, ticks = _marks(events, K)
    return HawkesParams(
        mu=mu, alpha=alpha, beta=beta, tod_edges=edges, tod=tod, sizes=sizes, ticks=ticks, tick_size=tick_size,
        loglik=ll, loglik_poisson=flat, loglik_poisson_tod=with_tod, n_events=np.bincount(data.c, minlength=K),
        duration_s=float(data.T.sum()),
        info={"time_of_day": time_of_day, "fixed_decays": decays is not None, "bucket_minutes": bucket_minutes,
              "fit_seconds": round(time.perf_counter() - t_start, 3)},
    )


def log_likelihood(params: HawkesParams, days: list[EventDay], window: tuple[float, float] | None = None) -> float:
    """The exact log-likelihood of given parameters on days' arrivals (e.g. held-out days)."""
    return log_likelihood_events(params, classify_days(days, window))


def log_likelihood_events(params: HawkesParams, events: list[Classified]) -> float:
    """:func:`log_likelihood` on already classified arrivals."""
    data = _Data.of(events, K)
    total = 0.0
    for i in range(K):
        X, comp = _target_stats(data.t, data.c, data.starts, data.T, float(params.beta[i]), i, K)
        fv = data.f_at(params.tod_edges, params.tod[i], i)
        F = data.f_integral(params.tod_edges, params.tod[i])
        x = np.concatenate([[params.mu[i]], params.alpha[i]])
        total -= _nll(x, X, fv, comp, F, float(params.beta[i]), 1.0, False)[0]
    return float(total)


# ---------------------------------------------------------------- simulation


@njit(cache=True)
def _thinning(mu: np.ndarray, alpha: np.ndarray, beta: np.ndarray, edges: np.ndarray, tod: np.ndarray,
              sec0: float, duration: float, max_events: int, excite0: np.ndarray, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
    """Ogata thinning. The excitation of type i is one number decaying at beta_i, so between arrivals the total
    intensity only falls -- except where the time-of-day bucket changes, where the bound is recomputed."""
    ntypes = len(mu)
    E = excite0.copy()
    cap = 1024
    out_t = np.empty(cap)
    out_c = np.empty(cap, dtype=np.int64)
    n = 0
    t = 0.0
    nb = len(edges) - 1
    lam = np.empty(ntypes)
    while n < max_events:
        s = sec0 + t
        b = 0
        while b < nb - 1 and edges[b + 1] <= s:
            b += 1
        t_edge = edges[b + 1] - sec0 if b < nb - 1 else np.inf
        base = 0.0
        for i in range(ntypes):
            base += mu[i] * tod[i, b]
        bound = base + E.sum()
        if bound <= 0:
            break
        w = rng.exponential(1.0 / bound)
        if t + w >= t_edge and t_edge < duration:  # a new bucket: move to its start, recompute the bound
            for i in range(ntypes):
                E[i] *= math.exp(-beta[i] * (t_edge - t))
            t = t_edge
            continue
        if t + w >= duration:
            break
        t += w
        total = 0.0
        for i in range(ntypes):
            E[i] *= math.exp(-beta[i] * w)
            lam[i] = mu[i] * tod[i, b] + E[i]
            total += lam[i]
        u = rng.random() * bound
        if u >= total:
            continue  # rejected
        i = 0
        acc = lam[0]
        while acc <= u and i < ntypes - 1:
            i += 1
            acc += lam[i]
        for k in range(ntypes):
            E[k] += alpha[k, i] * beta[k]
        if n == cap:
            cap *= 2
            nt, nc = np.empty(cap), np.empty(cap, dtype=np.int64)
            nt[:n], nc[:n] = out_t[:n], out_c[:n]
            out_t, out_c = nt, nc
        out_t[n], out_c[n] = t, i
        n += 1
    return out_t[:n], out_c[:n]


def excitation_at(params: HawkesParams, history: Classified, ts: int) -> np.ndarray:
    """The excitation of each type at ``ts`` left by the real arrivals before it (a warm start: the simulated
    process continues the real one instead of starting from its baseline)."""
    m = history.ts < ts
    lag = (ts - history.ts[m]) / NS
    c = history.etype[m]
    E = np.zeros(K)
    for i in range(K):
        E[i] = params.beta[i] * (params.alpha[i, c] * np.exp(-params.beta[i] * lag)).sum()
    return E


class Orders:
    """Turns typed arrivals into orders on a :class:`Market`, with the same price rules for every generator."""

    def __init__(self, market: Market, tick: int, tight_inside: str = "drop") -> None:
        if tight_inside not in ("touch", "drop"):
            raise ValueError(f"tight_inside must be 'touch' or 'drop', not {tight_inside!r}")
        self.m, self.tick, self.tight_inside = market, tick, tight_inside
        self.skipped = 0  # arrivals that found nothing to act on (a cancel on an empty side, ...)
        self.dropped_inside = 0  # inside-spread arrivals dropped at a one-tick spread (tight_inside="drop")
        bid, ask = market.best()
        self.ref = (bid + ask) / 2 if bid and ask else float(bid or ask or 0)

    def touch(self, side: int) -> int | None:
        """The own side's best, or one tick behind the other side's best when the own side is empty."""
        bid, ask = self.m.best()
        if bid and ask:
            self.ref = (bid + ask) / 2
        own, other = (bid, ask) if side > 0 else (ask, bid)
        if own:
            return own
        if other:
            return other - side * self.tick
        if self.ref > 0:
            return round(self.ref / self.tick) * self.tick - (self.tick if side > 0 else 0)
        return None

    def limit(self, ts: int, side: int, cat: int, size: int, ticks: int) -> None:
        best = self.touch(side)
        if best is None:
            self.skipped += 1
            return
        price = best
        if cat == LO_DEEP:
            price = best - side * max(ticks, 1) * self.tick
        elif cat == LO_INSIDE:
            bid, ask = self.m.best()
            if bid and ask and ask - bid > self.tick:  # strictly inside: at most one tick short of the other side
                room = (ask - bid) // self.tick - 1
                price = best + side * min(max(ticks, 1), room) * self.tick
            elif self.tight_inside == "drop":
                self.dropped_inside += 1
                return
        if price <= 0:
            self.skipped += 1
            return
        self.m.limit(ts, side, price, size)

    def cancel_at(self, ts: int, side: int, price: int, size: int) -> None:
        """Remove the newest order at ``price``; where that is anonymous snapshot volume (no id, order_id 0),
        remove ``size`` of it (an empirical cancel size: real cancels are almost all whole-order deletes)."""
        newest = self.m.book.order_at(side, price, -1)
        if newest is None:
            self.skipped += 1
            return
        oid, left = newest
        if oid > 0:
            self.m.cancel(ts, side, price, left, oid)
        elif self.m.cancel(ts, side, price, size, 0) == 0:
            self.skipped += 1

    def cancel(self, ts: int, side: int, cat: int, size: int, ticks: int) -> None:
        prices = self.m.book.level_array(side)[:, 0]  # best first; a crypto book holds thousands
        if cat == CO_TOP:
            if not len(prices):
                self.skipped += 1
                return
            self.cancel_at(ts, side, int(prices[0]), size)
            return
        if len(prices) < 2:  # nothing behind the touch
            self.skipped += 1
            return
        target = prices[0] - side * max(ticks, 1) * self.tick
        behind = prices[1:]
        self.cancel_at(ts, side, int(behind[np.argmin(np.abs(behind - target))]), size)

    def market(self, ts: int, side: int, size: int) -> None:
        if not self.m.market(ts, side, size):
            self.skipped += 1

    def arrive(self, ts: int, etype: int, size: int, ticks: int) -> None:
        """One arrival of type ``etype`` (side and category) as its order."""
        side, cat = type_side(etype), etype % 6
        if cat == MO:
            self.market(ts, side, size)
        elif cat in (CO_DEEP, CO_TOP):
            self.cancel(ts, side, cat, size, ticks)
        else:
            self.limit(ts, side, cat, size, ticks)


def arrivals(params: HawkesParams, day: EventDay, start_ts: int, history: Classified | None,
             rng: np.random.Generator, duration_s: float, max_events: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Arrivals from ``start_ts`` (timestamps, types, sizes, tick offsets), drawn up front: the arrival times do
    not see the book. With ``history`` (the day's :func:`classify`) the excitation starts where the real arrivals
    before ``start_ts`` left it, else from rest."""
    excite0 = excitation_at(params, history, start_ts) if history is not None else np.zeros(K)
    sec0 = (start_ts - session_start_ns(day.date, day.instrument.timezone)) / NS
    t, c = _thinning(params.mu, params.alpha, params.beta, params.tod_edges, np.ascontiguousarray(params.tod),
                     sec0, duration_s, max_events, excite0, rng)
    sizes = np.zeros(len(c), dtype=np.int64)
    ticks = np.zeros(len(c), dtype=np.int64)
    for i in range(K):
        sel = np.flatnonzero(c == i)
        sizes[sel] = params.sizes[i].sample(rng, len(sel), default=100)
        ticks[sel] = params.ticks[i].sample(rng, len(sel), default=1)
    return start_ts + np.rint(t * NS).astype(np.int64), c, sizes, ticks


def generate(params: HawkesParams, day: EventDay, start_ts: int, duration_s: float, seed: int,
             max_events: int | None = None, warm_start: bool = True, tight_inside: str = "drop") -> EventDay:
    """Simulate ``duration_s`` seconds (or ``max_events`` arrivals) of Compound Hawkes flow from ``start_ts`` in a
    :class:`Market` seeded with ``day``'s real book; the same seed gives the same day.

    ``warm_start``: the excitation at the start is the one the real arrivals before ``start_ts`` left.
    ``tight_inside``: what an inside-spread arrival does when the spread is one tick. ``"drop"`` (default): it is
    thinned away, as if its intensity were zero in that state, which is what the paper's open implementation
    (konqr/lobSimulations) does. ``"touch"``: it joins the touch. The arrival times do not see the book, so
    joining piles volume on the touch until the spread stays at one tick and the mid barely moves (measured in
    docs/BASELINES.md: 18-860 mid changes an hour against ~5,000 real)."""
    rng = np.random.default_rng(seed)
    market = Market(day, start_ts, seed=seed)
    history = classify(day) if warm_start else None
    stamps, c, sizes, ticks = arrivals(params, day, start_ts, history, rng, float(duration_s),
                                       max_events if max_events is not None else 1 << 62)
    orders = Orders(market, day.instrument.tick_size, tight_inside)
    for ts, e, q, k in zip(stamps.tolist(), c.tolist(), sizes.tolist(), ticks.tolist(), strict=True):
        orders.arrive(ts, e, q, k)
    out = market.to_day("compound_hawkes")
    out.notes.update({"seed": seed, "start_ts": start_ts, "duration_s": duration_s, "arrivals": len(c),
                      "skipped": orders.skipped, "dropped_inside": orders.dropped_inside,
                      "tight_inside": tight_inside, "arrivals_by_type": np.bincount(c, minlength=K).tolist()})
    return out
