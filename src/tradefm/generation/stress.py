"""Stress scenarios as named presets over the rollouts' own mechanisms, and their measured effect on the book.

A preset is a regime control (the model's volume and activity fields fixed, with classifier-free guidance) or a
participant that keeps trading against the market, or both; nothing outside :mod:`tradefm.generation.rollout`:

- ``withdrawal``: liquidity withdraws: volume and activity fixed low;
- ``burst``: the paper's stress test, ten times the normal frequency: each step's expected wait tilted to a tenth
  of the real mean wait before the start (``Sampling.pace``), with activity and volume fixed high; what the rate
  becomes once the model answers the faster flow is measured, as ``events_per_min`` against ``real``, not assumed;
- ``large_seller``: a participant sells at market every few events, on top of the free model.

:func:`effect` runs a preset's rollouts from one real start for the same span of market time and measures the
mean spread (ticks), the mean size at the touch, the volatility of 10-second mid returns (bps) and the events per
minute, next to the free rollouts (``none``) from the same start and seeds and the real flow of the span
(``real``); :func:`markdown` is its table.

    tradefm stress RUN [--start 0.85] [--seconds 180] [--rollouts 2]   # a markdown table
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..events import EventDay, InputError
from .rollout import RolloutView, Sampling, ScheduledOrder, generate


@dataclass(frozen=True)
class Stress:
    description: str
    control: dict[str, int] | None = None
    guidance: float = 1.0
    pace: float = 1.0  # events this many times as frequent (Sampling.pace)
    sell_size: int = 0  # a participant's market sell of this size ...
    sell_every: int = 0  # ... every this many events of each rollout


PRESETS: dict[str, Stress] = {
    "none": Stress("the free model"),
    "withdrawal": Stress("liquidity withdrawal: volume and activity fixed low", {"volume": 0, "activity": 0}, 4.0),
    "burst": Stress("a burst: ten times the frequency, volume and activity fixed high", {"volume": 2, "activity": 2},
                    4.0, pace=10.0),
    "large_seller": Stress("a large seller: a market sell of 100 every 20 events", sell_size=100, sell_every=20),
}


def preset(name: str) -> Stress:
    if name not in PRESETS:
        raise InputError(f"unknown stress preset {name!r}: one of {', '.join(PRESETS)}")
    return PRESETS[name]


def _seller(size: int, every: int, rollouts: int):
    """A participant callback: a market sell of ``size`` at every ``every``-th step of each rollout (the
    rollouts are asked in order at each step, so the call count says which step it is)."""
    calls = [0]

    def act(view: RolloutView, elapsed_s: float) -> list[ScheduledOrder]:
        step = calls[0] // rollouts
        calls[0] += 1
        return [ScheduledOrder(elapsed_s, -1, size)] if step % every == every - 1 else []

    return act


def run(model, tokenizer, day: EventDay, start_ts: int, name: str, events: int = 1500, rollouts: int = 2,
        seed: int = 0, seconds: float | None = None) -> list[EventDay]:
    """``rollouts`` rollouts of ``events`` events from ``start_ts`` under the preset ``name``; with ``seconds``,
    of that much market time (``events`` then caps the steps)."""
    p = preset(name)
    participant = _seller(p.sell_size, p.sell_every, rollouts) if p.sell_size else None
    return generate(model, tokenizer, day, start_ts, events, rollouts, seed, Sampling(guidance=p.guidance, pace=p.pace),
                    participant=participant, control=p.control, duration_s=seconds)


def measure(days: list[EventDay]) -> dict[str, float]:
    """Mean spread (ticks), mean touch size, 10-second mid-return volatility (bps), events per minute; pooled
    over rollouts."""
    from ..evaluation.metrics import book_series, mid_returns

    spread, touch, returns, rate = [], [], [], []
    for d in days:
        s = book_series(d)
        spread.append(np.nanmean(s["spread"]))
        touch.append(np.nanmean(s["touch_volume"]) / 2)
        returns.append(mid_returns(s, 10.0))
        span = (s["ts"][-1] - s["ts"][0]) / 60e9 if len(s["ts"]) > 1 else float("nan")
        rate.append(len(s["ts"]) / span if span > 0 else float("nan"))
    r = np.concatenate(returns) if returns else np.zeros(0)
    return {"spread_ticks": float(np.mean(spread)), "touch_size": float(np.mean(touch)),
            "vol_10s_bps": float(np.std(r) * 1e4) if len(r) > 1 else float("nan"),
            "events_per_min": float(np.mean(rate))}


def effect(model, tokenizer, day: EventDay, start_ts: int, names: tuple[str, ...] = tuple(PRESETS),
           seconds: float = 180.0, rollouts: int = 2, seed: int = 0,
           events: int = 200_000) -> dict[str, dict[str, float]]:
    """Each preset's measures (:func:`measure`) over ``seconds`` of market time from one start, with the same
    seeds (``events`` caps each rollout's steps), after the real flow's (``real``) over the same span."""
    from ..evaluation.metrics import window

    out = {"real": measure([window(day, start_ts, start_ts + int(seconds * 1e9))])}
    return out | {n: measure(run(model, tokenizer, day, start_ts, n, events, rollouts, seed, seconds)) for n in names}


def markdown(res: dict[str, dict[str, float]]) -> str:
    """:func:`effect`'s measures as a markdown table, a row per preset."""
    lines = ["| preset | what | spread (ticks) | touch size | 10 s vol (bps) | events/min |",
             "|---|---|---:|---:|---:|---:|"]
    for name, m in res.items():
        what = PRESETS[name].description if name in PRESETS else "the real flow of the same span"
        lines.append(f"| {name} | {what} | {m['spread_ticks']:.1f} | {m['touch_size']:.0f} | "
                     f"{m['vol_10s_bps']:.2f} | {m['events_per_min']:.0f} |")
    return "\n".join(lines)
