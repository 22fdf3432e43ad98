"""Zero intelligence (the control of Jain et al. 2024, after Farmer, Patelli and Zovko 2005): order flow with no
memory and no view of the book beyond its mid, simulated in the same matching engine as every other generator.

Six independent Poisson streams, one per (limit add, cancel, market order) x side, with the real day's rates.
Limit prices are uniform over the K tick-grid prices on the order's own side of the mid (a bid on one of the K
highest prices strictly below it, an ask on one of the K lowest strictly above), K the 99th percentile of the
real adds' distance from the mid in ticks, so a ZI limit order never crosses: executions come from the market
orders. Cancels pick a resting order of their side uniformly and remove it. Sizes are the empirical sizes per
stream. Whatever realism this has comes from the rates and the marks alone -- the point of a control.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..events import EventDay
from ..generation.market import Market
from .hawkes import CO_TOP, NS, Classified, Empirical, Orders, classify_days

TYPES: tuple[str, ...] = ("limit_bid", "cancel_bid", "market_buy", "limit_ask", "cancel_ask", "market_sell")
LIMIT, CANCEL, MARKET = range(3)


def zi_types(c: Classified) -> np.ndarray:
    """The 12 Compound Hawkes types folded into the six ZI streams (adds, cancels, market orders per side)."""
    cat = c.etype % 6
    coarse = np.where(cat <= 2, LIMIT, np.where(cat <= CO_TOP, CANCEL, MARKET))
    return np.where(c.etype < 6, 0, 3) + coarse


@dataclass
class ZIParams:
    rates: np.ndarray  # [6] arrivals per second
    k_ticks: int  # limit prices within this many ticks of the mid
    sizes: list[Empirical]
    tick_size: int
    n_events: np.ndarray = field(default_factory=lambda: np.zeros(len(TYPES), dtype=np.int64))
    duration_s: float = 0.0
    loglik: float = float("nan")  # of the fitted arrivals under the fitted Poisson rates (for comparisons)
    info: dict[str, Any] = field(default_factory=dict)
    types: tuple[str, ...] = TYPES

    def to_json(self) -> str:
        return json.dumps({
            "types": list(self.types), "rates": self.rates.tolist(), "k_ticks": self.k_ticks,
            "sizes": [e.to_list() for e in self.sizes], "tick_size": self.tick_size,
            "n_events": self.n_events.tolist(), "duration_s": self.duration_s, "loglik": self.loglik,
            "info": self.info,
        })

    @classmethod
    def from_json(cls, text: str) -> ZIParams:
        d = json.loads(text)
        return cls(rates=np.asarray(d["rates"], float), k_ticks=int(d["k_ticks"]),
                   sizes=[Empirical.from_list(x) for x in d["sizes"]], tick_size=int(d["tick_size"]),
                   n_events=np.asarray(d["n_events"], np.int64), duration_s=d["duration_s"], loglik=d["loglik"],
                   info=d["info"], types=tuple(d["types"]))


def fit(days: list[EventDay], *, window: tuple[float, float] | None = None, quantile: float = 99.0) -> ZIParams:
    """Rates, K and sizes from real days (``window``: seconds after local midnight, default the session)."""
    events = classify_days(days, window)
    et = np.concatenate([zi_types(c) for c in events])
    duration = sum((c.t1 - c.t0) / NS for c in events)
    n = np.bincount(et, minlength=len(TYPES))
    rates = n / max(duration, 1e-9)
    mid_ticks = np.concatenate([c.mid_ticks for c in events])
    mid_ticks = mid_ticks[np.isfinite(mid_ticks)]
    k = max(1, math.ceil(np.percentile(mid_ticks, quantile))) if len(mid_ticks) else 10
    sizes = [Empirical.of(np.concatenate([c.size[zi_types(c) == i] for c in events])) for i in range(len(TYPES))]
    loglik = float(sum(x * math.log(r) for x, r in zip(n, rates, strict=True) if x) - n.sum())
    return ZIParams(rates=rates, k_ticks=k, sizes=sizes, tick_size=days[0].instrument.tick_size, n_events=n,
                    duration_s=duration, loglik=loglik,
                    info={"sources": [s for d in days for s in d.sources], "window": list(window) if window else None,
                          "quantile": quantile})


def _limit_price(mid: float, side: int, k: int, u: float, tick: int) -> int:
    """One of the ``k`` grid prices on the order's own side of ``mid``, uniformly (``u`` in [0, 1))."""
    j = min(int(u * k), k - 1)
    if side > 0:
        top = math.ceil(mid / tick) * tick - tick  # the highest grid price strictly below the mid
        return int(top - j * tick)
    bottom = math.floor(mid / tick) * tick + tick  # the lowest strictly above
    return int(bottom + j * tick)


def generate(params: ZIParams, day: EventDay, start_ts: int, duration_s: float, seed: int,
             max_events: int | None = None) -> EventDay:
    """Simulate ``duration_s`` seconds (or ``max_events`` arrivals) of ZI flow from ``start_ts`` in a
    :class:`Market` seeded with ``day``'s real book; the same seed gives the same day."""
    rng = np.random.default_rng(seed)
    market = Market(day, start_ts, seed=seed)
    tick = day.instrument.tick_size
    total = float(params.rates.sum())
    n = int(rng.poisson(total * duration_s)) if total > 0 else 0
    t = np.sort(rng.uniform(0.0, duration_s, n))
    c = rng.choice(len(TYPES), size=n, p=params.rates / total) if n else np.zeros(0, dtype=np.int64)
    if max_events is not None:
        t, c = t[:max_events], c[:max_events]
    u = rng.random(len(c))
    sizes = np.zeros(len(c), dtype=np.int64)
    for i in range(len(TYPES)):
        sel = np.flatnonzero(c == i)
        sizes[sel] = params.sizes[i].sample(rng, len(sel), default=100)
    orders = Orders(market, tick)
    stamps = start_ts + np.rint(t * NS).astype(np.int64)
    for ts, e, q, ui in zip(stamps.tolist(), c.tolist(), sizes.tolist(), u.tolist(), strict=True):
        side, kind = (1 if e < 3 else -1), e % 3
        if kind == MARKET:
            orders.market(ts, side, q)
        elif kind == LIMIT:
            bid, ask = market.best()
            mid = (bid + ask) / 2 if bid and ask else None
            if mid is None:  # one side empty: its touch stands in (one tick behind the other side)
                own = orders.touch(side)
                if own is None:
                    orders.skipped += 1
                    continue
                mid = own + side * tick / 2
            price = _limit_price(mid, side, params.k_ticks, ui, tick)
            if price <= 0:
                orders.skipped += 1
                continue
            market.limit(ts, side, price, q)
        else:
            _cancel_uniform(orders, ts, side, q, ui)
    out = market.to_day("zero_intelligence")
    out.notes.update({"seed": seed, "start_ts": start_ts, "duration_s": duration_s, "arrivals": len(c),
                      "skipped": orders.skipped, "arrivals_by_type": np.bincount(c, minlength=len(TYPES)).tolist()})
    return out


def _cancel_uniform(orders: Orders, ts: int, side: int, size: int, u: float) -> None:
    """Remove one resting order of ``side`` chosen uniformly (anonymous snapshot volume counts as one order per
    level; ``size`` of it is removed)."""
    levels = orders.m.book.level_array(side)
    counts = levels[:, 2]
    total = int(counts.sum())
    if total == 0:
        orders.skipped += 1
        return
    r = min(int(u * total), total - 1)
    lvl = int(np.searchsorted(np.cumsum(counts), r, side="right"))
    price = int(levels[lvl, 0])
    oid, left = orders.m.book.order_at(side, price, r - int(counts[:lvl].sum()))
    if oid > 0:
        orders.m.cancel(ts, side, price, left, oid)
    elif orders.m.cancel(ts, side, price, size, 0) == 0:
        orders.skipped += 1
