"""Stylized facts of mid-price returns, for a real window and generated days side by side.

- Excess kurtosis of log mid returns against the horizon (1, 5, 10, 30, 60, 300 s): heavy tails at short
  horizons that thin out (aggregational Gaussianity) as the horizon grows.
- Autocorrelation of returns and of absolute returns, lags 1..100 on the 1 s grid (lag k = k seconds): returns
  are nearly uncorrelated beyond the first lags (bid-ask bounce makes lag 1 negative), absolute returns stay
  positive for long (volatility clustering). The 1 s grid is chosen so that rollouts of a few minutes still
  have 100 lags; a 10 s grid would need 1,000 s per rollout.
- The Hill tail index of absolute returns on the 10 s grid, from the top 5% order statistics: the power-law
  exponent of the tail (smaller = heavier; 2-5 is typical for equities).

- The autocorrelation of market-order signs (+1 a buy, -1 a sell, in event order), lags 1..20: real order flow
  is long-memory (orders are split), zero intelligence has none.

Several days of one source are pooled: kurtosis and Hill over the concatenated returns, the autocorrelation
from lag products summed within each day (a lag never straddles two rollouts) around the pooled mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from ..codec import ADD, BUY
from ..events import EventDay
from ..features import order_flow
from .metrics import book_series, mid_returns

KURTOSIS_HORIZONS_S = (1, 5, 10, 30, 60, 300)
ACF_GRID_S = 1.0
MAX_LAG = 100
HILL_HORIZON_S = 10.0
HILL_FRACTION = 0.05


@dataclass
class StylizedFacts:
    """The stylized facts of one source (a real window, or the pooled rollouts of one generator)."""

    kurtosis: dict[float, float] = field(default_factory=dict)  # horizon (s) -> excess kurtosis
    acf_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))  # lags 1..MAX_LAG
    acf_abs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hill: float = float("nan")
    n_returns: int = 0  # returns on the ACF grid


def pooled_acf(series: Sequence[np.ndarray], max_lag: int = MAX_LAG) -> np.ndarray:
    """Autocorrelation at lags 1..max_lag of several series pooled: sum over series of lag-k products around the
    pooled mean, over the pooled sum of squares (NaN where no series is longer than the lag)."""
    series = [np.asarray(s, np.float64) for s in series if len(s)]
    if not series:
        return np.full(max_lag, np.nan)
    mean = np.concatenate(series).mean()
    centred = [s - mean for s in series]
    denom = sum(float(c @ c) for c in centred)
    out = np.full(max_lag, np.nan)
    if denom <= 0:
        return out
    for k in range(1, max_lag + 1):
        pairs = [c for c in centred if len(c) > k]
        if pairs:
            out[k - 1] = sum(float(c[:-k] @ c[k:]) for c in pairs) / denom
    return out


def hill_index(x: np.ndarray, fraction: float = HILL_FRACTION) -> float:
    """Hill estimator of the tail index from the top ``fraction`` of |x| (at least 10 order statistics): 1 over
    the mean log-excess over the (k+1)-th largest value. NaN when that threshold is 0 (too many zeros)."""
    a = np.sort(np.abs(np.asarray(x, np.float64)))[::-1]
    k = max(10, int(fraction * len(a)))
    if len(a) <= k or a[k] <= 0:
        return float("nan")
    mean_log = float(np.mean(np.log(a[:k] / a[k])))
    return 1.0 / mean_log if mean_log > 0 else float("nan")


SIGN_LAGS = 20


def order_sign_acf(days: Sequence[EventDay], max_lag: int = SIGN_LAGS) -> np.ndarray:
    """Autocorrelation of the signs of aggressive orders (rebuilt from executions, as the features see them),
    lags 1..max_lag in orders, pooled over days as :func:`pooled_acf` pools."""
    signs = []
    for d in days:
        flow = order_flow(d)
        market = (flow.action == ADD) & flow.aggressive
        signs.append(np.where(flow.side[market] == BUY, 1.0, -1.0))
    return pooled_acf(signs, max_lag)


def stylized_facts(days: Sequence[EventDay | Mapping[str, np.ndarray]]) -> StylizedFacts:
    """The facts of one source; ``days`` are EventDays or their :func:`~.metrics.book_series`."""
    series = [book_series(d) if isinstance(d, EventDay) else d for d in days]
    kurt = {}
    for h in KURTOSIS_HORIZONS_S:
        r = np.concatenate([mid_returns(s, h) for s in series]) if series else np.zeros(0)
        kurt[float(h)] = float(stats.kurtosis(r, fisher=True)) if len(r) >= 4 else float("nan")
    grid = [mid_returns(s, ACF_GRID_S) for s in series]
    hill_r = np.concatenate([mid_returns(s, HILL_HORIZON_S) for s in series]) if series else np.zeros(0)
    return StylizedFacts(kurtosis=kurt, acf_returns=pooled_acf(grid), acf_abs=pooled_acf([np.abs(g) for g in grid]),
                         hill=hill_index(hill_r), n_returns=int(sum(len(g) for g in grid)))


def compare_facts(real: EventDay | Sequence[EventDay], generated: Mapping[str, Sequence[EventDay]]
                  ) -> dict[str, StylizedFacts]:
    """Facts of the real window ('real', first) and of each generator's pooled rollouts."""
    reals = [real] if isinstance(real, EventDay) else list(real)
    return {"real": stylized_facts(reals), **{name: stylized_facts(days) for name, days in generated.items()}}


ACF_LAGS_SHOWN = (1, 2, 5, 10, 20, 50, 100)


def side_by_side(facts: Mapping[str, StylizedFacts]) -> list[tuple[str, list[float]]]:
    """Rows (fact, [value per source in ``facts`` order]): kurtosis per horizon, ACF of returns and of absolute
    returns at a few lags (1 s grid), the Hill index (10 s)."""
    names = list(facts)
    rows: list[tuple[str, list[float]]] = []
    for h in KURTOSIS_HORIZONS_S:
        rows.append((f"excess kurtosis, {h} s returns", [facts[n].kurtosis.get(float(h), np.nan) for n in names]))
    for label, attr in (("ACF of returns", "acf_returns"), ("ACF of absolute returns", "acf_abs")):
        for lag in ACF_LAGS_SHOWN:
            vals = [getattr(facts[n], attr) for n in names]
            rows.append((f"{label}, lag {lag} s", [float(v[lag - 1]) if len(v) >= lag else np.nan for v in vals]))
    rows.append((f"Hill tail index, absolute {HILL_HORIZON_S:g} s returns, top {HILL_FRACTION:.0%}",
                 [facts[n].hill for n in names]))
    return rows
