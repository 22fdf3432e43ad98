"""Book dynamics: why a generator's spread is what it is.

The distances of :mod:`.metrics` say that a rollout's spread is off; these say why. From one replay of a day (a
real window and a rollout are read alike): where passive adds land against their own side's best quote, which
orders the cancels take (the best level? how young?), and how many ticks per minute the spread narrows through
adds and widens through cancels and through executions. Over a window the narrowing and the widening differ only
by the spread's net change, so a generator whose cancels and executions widen too little keeps a spread that is
too narrow, however right its orders look one by one. And how the mid moves: how often, how often a move is undone
by the next one within ``FAST_S`` (the bounce that makes short-horizon returns anticorrelated), and how often both
of those moves are executions (aggressors alternating sides, where real ones come in runs of one side).

:func:`decoded_placement` asks the same of a tokenizer, with no model involved: re-encode every real passive add
and decode it back against the book it met; do the decoded orders sit where the real ones did?
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from ..codec import ADD, add_prices
from ..events import EventDay, Kind
from ..features import book_before, order_flow
from ..tokenizer import Tokenizer

NEAR_TICKS = 10  # "near the touch": 1 to this many ticks behind the best quote
FAST_S = 0.1  # a mid move undone by the next one within this many seconds is a fast reversal
EXECUTIONS = (Kind.EXECUTE, Kind.EXECUTE_HIDDEN, Kind.TRADE)


@dataclass(frozen=True)
class Dynamics:
    passive_inside: float  # share of passive adds placed inside the spread
    passive_at_touch: float  # ... joining the best quote of their side
    passive_near: float  # ... 1 to NEAR_TICKS ticks behind it
    passive_deep: float  # ... further behind
    cancel_at_touch: float  # share of cancels that take an order at the best level
    cancel_age_s: float  # median age of the cancelled orders (those added inside the day)
    cancel_within_1s: float  # share of those cancelled within a second of their add
    narrowing_by_adds: float  # ticks per minute
    widening_by_cancels: float  # ticks per minute
    widening_by_executions: float  # ticks per minute
    median_spread: float  # ticks, per market event
    mid_moves: float  # market events that move the mid, per 1,000
    fast_reversals: float  # mid moves undone by the next move within FAST_S, per 1,000 market events
    fast_reversals_by_executions: float  # ... where both moves are executions, per 1,000 market events

    LABELS: ClassVar[dict[str, str]] = {
        "passive_inside": "passive adds inside the spread (share)",
        "passive_at_touch": "passive adds joining the best quote (share)",
        "passive_near": f"passive adds 1-{NEAR_TICKS} ticks behind it (share)",
        "passive_deep": f"passive adds more than {NEAR_TICKS} ticks behind it (share)",
        "cancel_at_touch": "cancels at the best level (share)",
        "cancel_age_s": "median age of cancelled orders (s)",
        "cancel_within_1s": "cancels within 1 s of their add (share)",
        "narrowing_by_adds": "spread narrowing by adds (ticks/min)",
        "widening_by_cancels": "spread widening by cancels (ticks/min)",
        "widening_by_executions": "spread widening by executions (ticks/min)",
        "median_spread": "median spread (ticks)",
        "mid_moves": "mid moves per 1,000 events",
        "fast_reversals": f"mid moves undone within {FAST_S * 1000:g} ms, per 1,000 events",
        "fast_reversals_by_executions": "... of them two executions, per 1,000 events",
    }

    @classmethod
    def rows(cls, columns: dict[str, Dynamics]) -> list[list[str]]:
        """One row per field: its label, then each column's value."""
        return [[cls.LABELS[f.name], *(_fmt(getattr(d, f.name)) for d in columns.values())]
                for f in fields(cls)]


def _fmt(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{v:.2f}" if abs(v) < 10 else f"{v:.0f}"


PLACES = ("inside", "at_touch", "near", "deep")


def placement(ticks_behind: np.ndarray) -> dict[str, float]:
    """Shares of orders inside the spread (< 0 ticks behind their side's best quote), on it (0), near it
    (1 to NEAR_TICKS behind) and deeper."""
    b = np.asarray(ticks_behind, dtype=np.float64)
    masks = (b < 0, b == 0, (b > 0) & (b <= NEAR_TICKS), b > NEAR_TICKS)
    return {k: float(m.mean()) if len(b) else float("nan") for k, m in zip(PLACES, masks, strict=True)}


def decoded_placement(day: EventDay, tok: Tokenizer, seed: int = 0) -> dict[str, dict[str, float]]:
    """Where ``day``'s real passive adds sit against their side's best quote, and where the same adds sit once
    encoded with ``tok`` and decoded back (a seeded draw in their bins) against the book each one met.

    Returns ``{"real": shares, "decoded": shares, "match": {...}}`` with :func:`placement` shares and, under
    ``match``, the share decoded at exactly the real price and the share decoded through the other side's quote
    (a passive add turned marketable)."""
    flow = order_flow(day, tok.features)
    inst = day.instrument
    ids, _ = tok.encode(flow, inst.key)
    t = day.table
    kind = t.column("kind").to_numpy()
    rows = np.flatnonzero(np.isin(kind, (Kind.ADD, Kind.MODIFY)) & ~t.column("snapshot").to_numpy())
    passive = (flow.action == ADD) & ~flow.aggressive
    if len(rows) != passive.sum():
        raise ValueError("the day's adds and its order flow's passive adds do not pair up")
    bid, ask = book_before(day)
    side = np.where(flow.side[passive] == 0, 1, -1)
    best = np.where(side > 0, bid[rows], ask[rows])
    other = np.where(side > 0, ask[rows], bid[rows])
    ref = flow.reference[passive]
    ok = np.isfinite(best) & np.isfinite(ref)
    side, best, other, ref, real = side[ok], best[ok], other[ok], ref[ok], flow.price[passive][ok]
    _, _, depth_bin, _, _ = tok.decompose(ids[passive][ok])
    depth = tok.depth.value(depth_bin, np.random.default_rng(seed))
    decoded = add_prices(side, depth, ref, inst.tick_size, best, other, tok.features.join_touch,
                         tok.features.add_from == "touch")  # as decoding prices them
    crosses = np.where(side > 0, decoded >= other, decoded <= other)  # False where the other side is empty
    return {"real": placement(side * (best - real) / inst.tick_size),
            "decoded": placement(side * (best - decoded) / inst.tick_size),
            "match": {"exact_price": float((decoded == real).mean()) if len(real) else float("nan"),
                      "crosses": float(crosses.mean()) if len(real) else float("nan")}}


def dynamics(days: Sequence[EventDay]) -> Dynamics:
    """The book dynamics of one real window or of a generator's rollouts (pooled)."""
    behind, cancel_touch, ages, spreads = [], [], [], []
    narrowing = widening_c = widening_e = minutes = 0.0
    events = moves = fast = fast_exec = 0
    for day in days:
        t = day.table
        kind, side, price, oid, ts = (t.column(c).to_numpy() for c in ("kind", "side", "price", "order_id", "ts"))
        market = ~t.column("snapshot").to_numpy()
        tick = day.instrument.tick_size
        bid, ask = book_before(day)
        best = np.where(side > 0, bid, ask)
        spread = (ask - bid) / tick
        passive = (kind == Kind.ADD) & market & np.where(side > 0, ~(price >= ask), ~(price <= bid))
        behind.append((side * (best - price) / tick)[passive & np.isfinite(best)])
        cancel = np.isin(kind, (Kind.CANCEL, Kind.DELETE)) & market
        cancel_touch.append((price == best)[cancel])
        born: dict[int, int] = {}
        for i in np.flatnonzero((kind == Kind.ADD) & market & (oid > 0)):
            born.setdefault(int(oid[i]), int(ts[i]))
        ages.append(np.array([(ts[i] - born[int(oid[i])]) / 1e9 for i in np.flatnonzero(cancel)
                              if int(oid[i]) in born], dtype=np.float64))
        change = np.diff(spread)  # the spread after each event (before the next) minus the spread before it
        k, live = kind[:-1], market[:-1] & np.isfinite(change)
        narrowing -= change[live & (k == Kind.ADD) & (change < 0)].sum()
        widening_c += change[live & np.isin(k, (Kind.CANCEL, Kind.DELETE)) & (change > 0)].sum()
        widening_e += change[live & np.isin(k, EXECUTIONS) & (change > 0)].sum()
        spreads.append(spread[market & np.isfinite(spread)])
        m = np.flatnonzero(market)
        step = np.diff((bid + ask)[m] / 2)  # what market event m[j] (and the reveals after it) did to the mid
        j = np.flatnonzero(np.isfinite(step) & (step != 0))
        undone = (np.sign(step[j[1:]]) == -np.sign(step[j[:-1]])) & (ts[m[j[1:]]] - ts[m[j[:-1]]] < FAST_S * 1e9)
        both = np.isin(kind[m[j[1:]]], EXECUTIONS) & np.isin(kind[m[j[:-1]]], EXECUTIONS)
        events, moves = events + len(step), moves + len(j)
        fast, fast_exec = fast + int(undone.sum()), fast_exec + int((undone & both).sum())
        if market.any():
            minutes += (ts[market][-1] - ts[market][0]) / 60e9
    b = np.concatenate(behind) if behind else np.zeros(0)
    age = np.concatenate(ages) if ages else np.zeros(0)
    ct = np.concatenate(cancel_touch) if cancel_touch else np.zeros(0, dtype=bool)
    per_min = (lambda x: x / minutes) if minutes > 0 else (lambda x: float("nan"))
    per_k = (lambda x: 1000 * x / events) if events else (lambda x: float("nan"))
    sp = np.concatenate(spreads) if spreads else np.zeros(0)
    where = placement(b)
    return Dynamics(
        passive_inside=where["inside"], passive_at_touch=where["at_touch"], passive_near=where["near"],
        passive_deep=where["deep"],
        cancel_at_touch=float(ct.mean()) if len(ct) else float("nan"),
        cancel_age_s=float(np.median(age)) if len(age) else float("nan"),
        cancel_within_1s=float((age < 1).mean()) if len(age) else float("nan"),
        narrowing_by_adds=per_min(narrowing), widening_by_cancels=per_min(widening_c),
        widening_by_executions=per_min(widening_e),
        median_spread=float(np.median(sp)) if len(sp) else float("nan"),
        mid_moves=per_k(moves), fast_reversals=per_k(fast), fast_reversals_by_executions=per_k(fast_exec),
    )
