"""The background markets an agent trades in: N books from real starts (each its own), stepped one event at a time.

Three backgrounds share one face (:class:`Markets`), so an environment never asks which one it has:

- ``model``: TradeFM closed loop on the batched :class:`~tradefm.generation.simulator.Simulator`. One step is one
  batched model call and one simulator step for all N books; an agent's order takes its book's place in that
  step through the simulator's participant slot (``due``), so it matches in the same kernel and enters the
  model's context flagged as a participant event, exactly as a scheduled TWAP does.
- ``hawkes``: Compound Hawkes arrivals (:mod:`tradefm.baselines.hawkes`), fitted on the training part of the
  day only, each an order on a :class:`~tradefm.generation.Market`. The arrival times do not see the agent;
  their prices follow the book it moved.
- ``replay``: the real flow of the day from the start, replayed into a Market by the rules of
  :func:`tradefm.evaluation.fills.replay_flow`. It cannot react to the agent: the control case.

Every book keeps a feed-like record (ts, kind, side, price, size, order id, flag); the agent's own events carry
flag 1. The environment reads fills from it, so every background reports them the same way.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from ..book import OrderBook
from ..book import engine as E
from ..events import EventDay
from ..generation.market import Market, books_at
from ..generation.rollout import Rollouts, Sampling
from ..generation.simulator import P_PRICE, P_SIDE, P_SIZE, P_TS, P_VALID, _grow
from ..model import TradeFM
from ..tokenizer import Tokenizer

COLUMNS = ("ts", "kind", "side", "price", "size", "order_id", "flag")
AGENT = 1  # the record flag of the agent's events
Order = tuple[int, int, int]  # side (+1 buy, -1 sell), size, limit price (0: a market order)


class Markets(Protocol):
    """N books advanced one event at a time; an order given for a book is that book's event."""

    n: int

    def step(self, orders: list[Order | None]) -> None: ...

    def cancel(self, b: int, order_id: int) -> int: ...

    def book(self, b: int) -> OrderBook: ...

    def now(self, b: int) -> int: ...

    def rows(self, b: int, since: int) -> np.ndarray: ...

    def last_id(self, b: int) -> int: ...


# ---------------------------------------------------------------- TradeFM, closed loop


class ModelMarkets:
    """N TradeFM rollouts from their starts (their own seeds), one model call per step for all of them."""

    def __init__(self, model: TradeFM, tokenizer: Tokenizer, day: EventDay, starts: np.ndarray, n: int, seed: int,
                 sampling: Sampling | None = None) -> None:
        self.n = n
        self.ro = Rollouts(model, tokenizer, day, starts, n, seed, sampling)
        self.sim = self.ro.sim
        self.due = np.zeros((n, 5), dtype=np.int64)
        self.ro.begin()

    @property
    def ctx(self) -> torch.Tensor:
        """The rollouts' context rows as the model saw them (the last window)."""
        return self.ro.ctx

    def step(self, orders: list[Order | None]) -> None:
        """One step of :class:`Rollouts` for every book: the agents' orders enter as participants' orders."""
        self.due[:] = 0
        for b, o in enumerate(orders):
            if o is not None:
                self.due[b, [P_VALID, P_TS, P_SIDE, P_SIZE, P_PRICE]] = (1, self.sim.ts[b], o[0], o[1], o[2])
        self.ro.step(self.due if self.due[:, P_VALID].any() else None)

    def cancel(self, b: int, order_id: int) -> int:
        """Delete a resting order of book ``b`` between steps (recorded with the agent's flag). The model sees
        it through the book it leaves, not as a token of its own."""
        book = self.sim.book(b)
        if not book.holds(order_id):
            return 0
        side, price, size = book.order(order_id)
        E.apply_event(book.state, E.K_DELETE, side, price, size, order_id, False)
        sim = self.sim
        if sim.nlog[b] + 1 > sim.log.shape[1]:
            sim.log = _grow(sim.log, 1, 2 * sim.log.shape[1])
        sim.log[b, sim.nlog[b]] = (sim.ts[b], E.K_DELETE, side, price, size, order_id, AGENT)
        sim.nlog[b] += 1
        return size

    def book(self, b: int) -> OrderBook:
        return self.sim.book(b)

    def now(self, b: int) -> int:
        return int(self.sim.ts[b])

    def rows(self, b: int, since: int) -> np.ndarray:
        return self.sim.log[b, since: self.sim.nlog[b]]

    def last_id(self, b: int) -> int:
        return int(self.sim.next_id[b])


# ---------------------------------------------------------------- one engine per book (Hawkes, replay)


class _Single:
    """What the Market-based backgrounds share: one :class:`Market` per book and the agent's orders on it."""

    markets: list[Market]

    def _agent(self, b: int, o: Order) -> None:
        m = self.markets[b]
        side, size, price = o
        if price:
            m.limit(m.ts, side, price, size, flag=AGENT)
        else:
            m.market(m.ts, side, size, flag=AGENT)

    def _background(self, b: int) -> None:
        raise NotImplementedError

    def step(self, orders: list[Order | None]) -> None:
        for b, o in enumerate(orders):
            if o is not None:
                self._agent(b, o)
            else:
                self._background(b)

    def cancel(self, b: int, order_id: int) -> int:
        m = self.markets[b]
        if not m.holds(order_id):
            return 0
        side, price, size = m.book.order(order_id)
        return m.cancel(m.ts, side, price, size, order_id, flag=AGENT)

    def book(self, b: int) -> OrderBook:
        return self.markets[b].book

    def now(self, b: int) -> int:
        return int(self.markets[b].ts)

    def last_id(self, b: int) -> int:
        return self.markets[b].last_id

    def rows(self, b: int, since: int) -> np.ndarray:
        r = self.markets[b].rows
        if since >= len(r["ts"]):
            return np.zeros((0, len(COLUMNS)), dtype=np.int64)
        return np.array([r[c][since:] for c in COLUMNS], dtype=np.int64).T


class HawkesMarkets(_Single):
    """N Compound Hawkes markets from their starts: arrivals drawn up front (``events`` of them per book, warm
    started from the real arrivals before its start), each applied when its book steps."""

    def __init__(self, params, day: EventDay, starts: np.ndarray, n: int, seed: int, events: int,
                 history=None) -> None:
        from ..baselines import hawkes as H

        self.n = n
        real = books_at(day, starts)
        self.markets = [Market(day, int(starts[b]), seed=seed + b, real=real[int(starts[b])]) for b in range(n)]
        self.orders = [H.Orders(m, day.instrument.tick_size) for m in self.markets]
        history = history if history is not None else H.classify(day)
        self.arrivals = []  # per book: (ts, type, size, ticks) rows, drawn with the book's own generator
        for b in range(n):
            drawn = H.arrivals(params, day, int(starts[b]), history, np.random.default_rng([seed, b]), 6 * 3600.0,
                               events)
            self.arrivals.append(list(zip(*(a.tolist() for a in drawn), strict=True)))
        self.cursor = np.zeros(n, dtype=np.int64)

    def _background(self, b: int) -> None:
        k = int(self.cursor[b])
        if k >= len(self.arrivals[b]):
            return  # every drawn arrival is spent: the book waits
        self.cursor[b] += 1
        ts, e, q, k = self.arrivals[b][k]
        self.orders[b].arrive(max(ts, self.markets[b].ts), e, q, k)  # an agent's order may have moved the clock


class ReplayMarkets(_Single):
    """N books replaying the real flow of ``day``, each from its start (to its end) by the rules of
    :class:`~tradefm.evaluation.fills.FlowReplay`: adds by the real ids, cancels of real ids the market holds
    (else of anonymous volume at their price), an aggressor's executions as one immediate-or-cancel order, the
    feed's own reveals, the book kept to the feed's window (an agent order pushed beyond it is dropped, as the
    window forgets it). Past the end the book waits."""

    def __init__(self, day: EventDay, starts: np.ndarray, n: int, ends: np.ndarray) -> None:
        from ..evaluation.fills import FlowReplay

        self.n = n
        real = books_at(day, starts)
        self.flows = [FlowReplay(day, int(starts[b]), int(ends[b]), real=real[int(starts[b])]) for b in range(n)]
        self.markets = [f.market for f in self.flows]

    def _background(self, b: int) -> None:
        """The next real market event (reveals before it are applied on the way, as book knowledge)."""
        self.flows[b].step()


BACKGROUNDS = ("model", "hawkes", "replay")
