"""Fill fidelity: replay a real day's order flow through the simulated market and compare its fills with the
executions the venue reported.

If the engine and the rebuilt orders are right, the real flow submitted into a :class:`~tradefm.generation.Market`
seeded with the real book produces the real fills again; the per-minute fill counts and volumes, and the
distribution of fill sizes, measure how close it comes (the check behind the paper's 0.91-0.98 correlations).

The flow is read from the canonical table (not from ``features.order_flow``, which drops order ids), with the
rules of ``order_flow``:

- an add is submitted with :meth:`Market.limit`; the market's id of the resting rest is kept under the real id;
- a partial cancel or delete of a real id the market holds cancels that order (a delete: all it has left);
  any other (an order resting before the window, or one the market has already filled) cancels anonymous
  volume at its price (the opening book and revealed levels), as replay does with unknown ids; a cancel that
  finds nothing to cancel is counted (``missed_cancels``);
- executions of one aggressor (consecutive, same timestamp, same resting side) become one marketable limit
  order on the other side at the worst fill price for their total size, immediate-or-cancel: whatever it does
  not fill is cancelled at once (the venue reports the rest of a real aggressor as its own add);
- the book is kept to the feed's window (``day.notes['levels']``) and LOBSTER's reveals (snapshot rows inside the
  window) are added as anonymous volume, exactly as :func:`~tradefm.evaluation.metrics.book_series` replays the
  day, so that a level-1 book does not run dry behind the touch.

Hidden executions (kind 5) have no visible liquidity behind them, which the engine cannot hold: by default they
are left out of both the rebuilt aggressors and the real fills (``hidden=True`` keeps them in both, as
``order_flow`` does when it sizes the rebuilt orders).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..book import OrderBook
from ..events import EventDay, Kind
from ..generation.market import Market

MINUTE_NS = 60_000_000_000


@dataclass(frozen=True)
class FillFidelity:
    start_ts: int
    end_ts: int
    minutes: int
    orders: int  # orders submitted (adds + rebuilt aggressors)
    cancels: int
    missed_cancels: int  # cancels that found nothing to cancel in the market
    real_fills: int
    sim_fills: int
    real_volume: int
    sim_volume: int
    count_corr: float  # Pearson, per-minute number of fills
    volume_corr: float  # Pearson, per-minute filled volume
    size_ks: float  # two-sample KS of fill sizes
    size_hist_corr: float  # Pearson of the fill-size histograms (powers-of-two bins)


@dataclass
class Replayed:
    """Per-fill times and sizes, simulated and real, over one window."""

    sim_ts: np.ndarray
    sim_size: np.ndarray
    real_ts: np.ndarray
    real_size: np.ndarray
    orders: int
    cancels: int
    missed_cancels: int
    start_ts: int
    end_ts: int


class FlowReplay:
    """The real flow of [start_ts, end_ts) submitted into a :class:`Market` seeded with the real book at
    ``start_ts``, one market event per :meth:`step` (the feed's reveals before it applied on the way), by the
    rules above. A caller may put its own orders into ``market`` between steps (an agent's): the replay's clock
    never runs behind the market's."""

    def __init__(self, day: EventDay, start_ts: int | None = None, end_ts: int | None = None,
                 hidden: bool = False, real: OrderBook | None = None) -> None:
        """``real``: the real book at ``start_ts``, when the caller has it (``generation.market.books_at``)."""
        t = day.table
        ts_all = t.column("ts").to_numpy()
        snap_all = t.column("snapshot").to_numpy()
        market_ts = ts_all[~snap_all]
        self.start = int(market_ts[0]) if start_ts is None else int(start_ts)
        self.end = int(market_ts[-1]) + 1 if end_ts is None else int(end_ts)
        a, b = np.searchsorted(ts_all, [self.start, self.end], side="left")
        self.ts, self.kind, self.side, self.price, self.size, self.oid = (
            t.column(c).to_numpy()[a:b] for c in ("ts", "kind", "side", "price", "size", "order_id"))
        self.snap = snap_all[a:b]
        levels = day.levels
        self.market = Market(day, self.start, depth=levels, refill=False, real=real)  # the feed's reveals follow
        self.market.book.depth = levels  # keep to the feed's window, as the replay does
        exec_kinds = (Kind.EXECUTE, Kind.EXECUTE_HIDDEN) if hidden else (Kind.EXECUTE,)
        self.is_exec = np.isin(self.kind, exec_kinds) & ~self.snap & (self.side != 0)
        # hidden executions left out are passed over inside an aggressor's run of executions
        self.passable = (self.kind == Kind.EXECUTE_HIDDEN) & ~self.snap & (not hidden)
        self.ids: dict[int, int] = {}
        self.sim_ts: list[int] = []
        self.sim_size: list[int] = []
        self.orders = self.cancels = self.missed = 0
        self.i = 0

    @property
    def done(self) -> bool:
        return self.i >= len(self.ts)

    def step(self) -> None:
        ts, kind, side, price, size, snap = self.ts, self.kind, self.side, self.price, self.size, self.snap
        market, i, n = self.market, self.i, len(ts)
        while i < n and snap[i]:  # a reveal: volume beyond the window becomes known
            if kind[i] == Kind.ADD:
                market.reveal(int(side[i]), int(price[i]), int(size[i]))
            i += 1
        if i >= n:
            self.i = i
            return
        k, s, p, q, o = int(kind[i]), int(side[i]), int(price[i]), int(size[i]), int(self.oid[i])
        now = max(int(ts[i]), market.ts)
        if self.is_exec[i]:  # one aggressor: its executions in one run (hidden ones skipped unless wanted)
            j, total, worst = i, 0, p
            while j < n and ts[j] == ts[i] and ((self.is_exec[j] and side[j] == s) or self.passable[j]):
                if self.is_exec[j]:
                    total += int(size[j])
                    worst = max(worst, int(price[j])) if s < 0 else min(worst, int(price[j]))
                j += 1
            self._filled(now, market.limit(now, -s, worst, total, ioc=True))
            i = j
        elif k == Kind.ADD:
            self._filled(now, market.limit(now, s, p, q))
            if market.holds(market.last_id):
                self.ids[o] = market.last_id
            i += 1
        elif k in (Kind.CANCEL, Kind.DELETE):
            self.cancels += 1
            mine = self.ids.get(o, 0)
            if mine and market.holds(mine):
                done = market.cancel(now, s, p, q if k == Kind.CANCEL else 1 << 62, mine)
                if k == Kind.DELETE or not market.holds(mine):
                    self.ids.pop(o, None)
            else:
                done = market.cancel(now, s, p, q, 0)
            self.missed += done == 0
            i += 1
        else:
            i += 1
        self.i = i

    def _filled(self, now: int, fills: list) -> None:
        self.orders += 1
        self.sim_ts += [now] * len(fills)
        self.sim_size += [f.size for f in fills]

    def result(self) -> Replayed:
        real = self.is_exec
        return Replayed(np.asarray(self.sim_ts, np.int64), np.asarray(self.sim_size, np.int64),
                        self.ts[real].astype(np.int64), self.size[real].astype(np.int64), self.orders,
                        self.cancels, self.missed, self.start, self.end)


def replay_flow(day: EventDay, start_ts: int | None = None, end_ts: int | None = None, hidden: bool = False
                ) -> Replayed:
    """Submit the real flow of [start_ts, end_ts) into a Market seeded with the real book at ``start_ts``."""
    replay = FlowReplay(day, start_ts, end_ts, hidden)
    while not replay.done:
        replay.step()
    return replay.result()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def per_minute(ts: np.ndarray, size: np.ndarray, start_ts: int, minutes: int) -> tuple[np.ndarray, np.ndarray]:
    """(number of fills, filled volume) per minute since ``start_ts``."""
    m = np.clip((ts - start_ts) // MINUTE_NS, 0, minutes - 1)
    return (np.bincount(m, minlength=minutes).astype(np.float64),
            np.bincount(m, weights=size, minlength=minutes).astype(np.float64))


def fill_fidelity(day: EventDay, start_ts: int | None = None, end_ts: int | None = None,
                  hidden: bool = False) -> FillFidelity:
    """Simulated fills of the real flow against the real executions, over [start_ts, end_ts)."""
    r = replay_flow(day, start_ts, end_ts, hidden)
    minutes = max(1, int(-(-(r.end_ts - r.start_ts) // MINUTE_NS)))
    sc, sv = per_minute(r.sim_ts, r.sim_size, r.start_ts, minutes)
    rc, rv = per_minute(r.real_ts, r.real_size, r.start_ts, minutes)
    ks = hist = float("nan")
    if len(r.sim_size) and len(r.real_size):
        ks = float(stats.ks_2samp(r.real_size, r.sim_size, method="asymp").statistic)
        top = int(np.ceil(np.log2(max(r.real_size.max(), r.sim_size.max())))) + 1
        edges = 2.0 ** np.arange(top + 1)
        hr = np.histogram(r.real_size, edges)[0] / len(r.real_size)
        hs = np.histogram(r.sim_size, edges)[0] / len(r.sim_size)
        hist = _corr(hr, hs)
    return FillFidelity(r.start_ts, r.end_ts, minutes, r.orders, r.cancels, r.missed_cancels, len(r.real_size),
                        len(r.sim_size), int(r.real_size.sum()), int(r.sim_size.sum()), _corr(rc, sc), _corr(rv, sv),
                        ks, hist)
