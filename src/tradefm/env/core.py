"""Trading environments: an agent executes an order, or makes a market, against a market that reacts.

One batched core (:class:`Trading`) runs N episodes, each from its own real start, on one background
(:mod:`tradefm.env.markets`); the Gymnasium faces are thin over it: :class:`TradingEnv` is N = 1,
:class:`TradingVectorEnv` is N books stepped together (with the model, one batched model call per event for all
of them, not N simulators).

A step is one decision and ``events`` market events: the agent's cancels apply at once, its order (two for a
two-sided quote) is the first event(s) of the step, and the background fills the rest. Episodes last ``steps``
decisions. Fills are read from each book's record (the agent's events carry flag 1), so they count the same on
every background: the agent's aggressive orders as they trade, its resting ones as the background takes them.

Starts come from the day's session split as the model's shards split it (``val_from``/``test_from`` of a run's
manifest, else :class:`~tradefm.shards.SplitConfig`'s): training starts from the training part, evaluation starts
from the test part, each keeping ``margin_s`` from its part's edges (the prompt before a start, the episode
after it); the replay background never replays past its part's end. The Compound Hawkes background is fitted on
the training part only.

Bad actions never crash an episode. Documented clipping (reported in ``info["notes"]``): a size beyond what is
left to trade (execution) or beyond the position limit (market making) is cut to what fits, and an order that
no longer fits is dropped; a limit price off the tick grid is moved to the grid passively (a buy down, a sell
up); a cancel of an order that is not resting (filled, cancelled, never the agent's) does nothing. An order on
the wrong side of an execution task, a non-positive size or price, or an action outside the action space is a
:class:`InvalidAction` with one clear line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from ..book import engine as E
from ..events import EventDay, InputError, read_day
from ..runs import default_day, model_folder
from .markets import AGENT, BACKGROUNDS, HawkesMarkets, Markets, ModelMarkets, Order, ReplayMarkets


class InvalidAction(InputError):
    """An action the environment cannot read as an order (the message says why, in one line)."""


@dataclass(frozen=True)
class Action:
    """One decision in the environment's own terms (any env also takes an element of its ``action_space``).

    ``kind``: "wait", "market", "limit", "cancel" or "quote" (a buy and a sell limit ``offset`` ticks behind
    each touch, after cancelling the agent's resting orders). ``side`` 0 means the execution task's side. A limit
    is at ``price`` (an integer price) or ``offset`` ticks behind the agent's own touch (0 joins it; negative
    is inside the spread). A cancel names ``order_id``, or 0 for every resting order of the agent."""

    kind: str = "wait"
    side: int = 0
    size: int = 0
    price: int | None = None
    offset: int = 0
    order_id: int = 0


# ---------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Execution:
    """Buy (``side`` +1) or sell (-1) ``quantity`` units within the episode. Reward: minus the implementation
    shortfall against the arrival mid, in basis points of the order's arrival value, step by step; at the end
    what is left is valued at the final mid less ``penalty_bps`` of the arrival mid a unit (in bps, so it means
    the same on any instrument; the default is more than selling a few lots through the book costs, so leaving the
    order undone is never the cheap way out). The rewards of an
    episode sum to minus its shortfall."""

    side: int = -1
    quantity: int = 2000
    penalty_bps: float = 20.0
    lot: int = 0  # the size of one discrete order (0: quantity / steps, rounded up)


@dataclass(frozen=True)
class MarketMaking:
    """Quote both sides. Reward per step: the change of mark-to-market P&L (cash + inventory at the mid), in
    ticks a lot, minus ``inventory_penalty`` times the squared inventory in lots."""

    lot: int = 100
    max_inventory: int = 1000
    inventory_penalty: float = 0.01


@dataclass(frozen=True)
class Config:
    """What one environment is: the background, the task, the episode's shape and the observation's."""

    background: str = "model"  # one of markets.BACKGROUNDS
    task: Execution | MarketMaking = field(default_factory=Execution)
    steps: int = 20  # decisions per episode
    events: int = 10  # market events per decision (the agent's own order(s) among them)
    levels: int = 5  # book levels a side in the observation
    max_offset: int = 5  # discrete limit offsets 0 .. max_offset - 1 ticks behind the own touch
    continuous: bool = False
    part: str = "train"  # where starts come from: "train" or "eval"
    margin_s: float = 300.0  # starts keep this far from their part's edges (the open's first minutes are no book)
    temperature: float = 1.0  # the model's sampling temperature

    def __post_init__(self) -> None:
        if self.background not in BACKGROUNDS:
            raise InputError(f"background must be one of {', '.join(BACKGROUNDS)}, not {self.background!r}")
        if self.part not in ("train", "eval"):
            raise InputError(f"part must be 'train' or 'eval', not {self.part!r}")
        if self.steps < 1 or self.events < 2 or self.levels < 1 or self.max_offset < 1:
            raise InputError("need steps >= 1, events >= 2 (a quote is two orders), levels >= 1, max_offset >= 1")


# ---------------------------------------------------------------- the data an environment draws on


class Source:
    """A model (optional for the Hawkes and replay backgrounds), its tokenizer, one real day, and the split of
    the day's session that starts are drawn from. Loaded once, shared by every environment made from it."""

    def __init__(self, model: Any = None, day: str | Path | EventDay | None = None,
                 splits: tuple[float, float] | None = None, run: str | Path | None = None) -> None:
        """``model``: a run folder, a model folder, a (TradeFM, Tokenizer) pair or None; ``run``: the run folder
        to take the default day and the split from, when ``model`` is not one."""
        from ..evaluation.metrics import session

        self.model, self.tokenizer, found = _load_model(model)
        run = Path(run) if run is not None else found
        if day is None:
            day = default_day(run)
        self.day = day if isinstance(day, EventDay) else _read(day)
        if splits is None:
            splits = _splits(run)
        self.val_from, self.test_from = splits
        if not 0 < self.val_from <= self.test_from < 1:
            raise InputError(f"need 0 < val_from <= test_from < 1, got {splits}")
        self.first, self.last = session(self.day)
        self._hawkes = self._history = None

    def part(self, name: str, margin_s: float) -> tuple[int, int]:
        """The [lo, hi] range of start times of a part ("train": the session's first ``val_from``; "eval": from
        ``test_from`` on), each ``margin_s`` inside its edges."""
        span, margin = self.last - self.first, int(margin_s * 1e9)
        a, b = ((self.first, self.first + int(self.val_from * span)) if name == "train"
                else (self.first + int(self.test_from * span), self.last))
        lo, hi = a + margin, b - margin
        if lo >= hi:
            raise InputError(f"the {name} part of {self.key} is shorter than twice the margin ({margin_s:g} s)")
        return lo, hi

    def part_end(self, ts: int) -> int:
        """Where the part holding ``ts`` ends (the replay stops there: a training episode never sees test flow)."""
        span = self.last - self.first
        train_end = self.first + int(self.val_from * span)
        return train_end if ts < train_end else self.last + 1

    @property
    def key(self) -> str:
        return f"{self.day.instrument.key} {self.day.date}"

    def hawkes(self):
        """Compound Hawkes parameters fitted on the training part of the day (fitted once), and the day's
        classified arrivals (the warm start's history)."""
        if self._hawkes is None:
            from ..baselines import hawkes as H
            from ..evaluation.metrics import window

            train_end = self.first + int(self.val_from * (self.last - self.first))
            self._hawkes = H.fit([window(self.day, self.first, train_end)])
            self._history = H.classify(self.day)
        return self._hawkes, self._history

    def markets(self, background: str, starts: int | Sequence[int], n: int, seed: int, events: int,
                temperature: float = 1.0) -> Markets:
        """N books of ``background``, book b from the real book at ``starts[b]`` (or all at one start)."""
        starts = np.broadcast_to(np.asarray(starts, dtype=np.int64), (n,))
        if background == "model":
            if self.model is None:
                raise InputError("the model background needs a model: pass model=RUN_OR_MODEL_FOLDER")
            from ..generation.rollout import Sampling

            return ModelMarkets(self.model, self.tokenizer, self.day, starts, n, seed,
                                Sampling(temperature=temperature))
        if background == "hawkes":
            params, history = self.hawkes()
            return HawkesMarkets(params, self.day, starts, n, seed, events, history)
        return ReplayMarkets(self.day, starts, n, np.array([self.part_end(int(s)) for s in starts]))


def _read(path: str | Path) -> EventDay:
    path = Path(path)
    if not path.exists():
        raise InputError(f"no events file at {path}")
    return read_day(path)


def _load_model(model: Any) -> tuple[Any, Any, Path | None]:
    """(model, tokenizer, run folder) from a run or model folder (:func:`model_folder`), a (TradeFM,
    Tokenizer) pair, or None."""
    if model is None:
        return None, None, None
    if isinstance(model, tuple):
        return model[0], model[1], None
    from ..model import TradeFM
    from ..tokenizer import Tokenizer

    path, run = model_folder(model)  # a model folder alone still names its splits (its train_config.json)
    return TradeFM.from_pretrained(path).eval(), Tokenizer.load(path / "tokenizer.json"), run or path


def _splits(run: Path | None) -> tuple[float, float]:
    """The fractions of the day a run's shards were cut at (the default ones for no run)."""
    from ..shards import SplitConfig, manifest_splits, run_manifest

    manifest = run_manifest(run) if run is not None else None
    if manifest is None:
        return SplitConfig.val_from, SplitConfig.test_from
    s = manifest_splits(manifest)
    if s.by_date:
        raise InputError(f"{run} was split by date ({s.val_from}, {s.test_from}); an environment cuts one day by "
                         "fractions of its session: give splits=(val_from, test_from) and a day")
    return float(s.val_from), float(s.test_from)


# ---------------------------------------------------------------- the batched core


@dataclass
class _Account:
    """One episode's books: the agent's inventory, cash, resting orders and the task's reference prices."""

    inventory: int = 0
    cash: float = 0.0
    own: dict[int, tuple[int, int]] = field(default_factory=dict)  # order id -> (side, price) while resting
    cursor: int = 0  # record rows read so far
    arrival: float = 0.0  # mid at the start
    mid: float = 0.0  # the latest mid (the last two-sided one)
    cost: float = 0.0  # execution: shortfall so far, in price units x size
    pnl: float = 0.0  # market making: the last mark-to-market P&L
    done: bool = False
    traded: int = 0  # background volume traded in the last step, signed by its aggressor (+ buys)
    events: int = 0  # background rows in the last step


class Trading:
    """N episodes on one background, each from its own start (or all from one), stepped together."""

    def __init__(self, source: Source, cfg: Config, n: int = 1) -> None:
        self.source, self.cfg, self.n = source, cfg, n
        inst = source.day.instrument
        self.tick = int(inst.tick_size)
        task = cfg.task
        if isinstance(task, Execution):
            if task.side not in (1, -1) or task.quantity < 1:
                raise InputError("an execution task needs side +1/-1 and quantity >= 1")
            self.lot = task.lot or -(-task.quantity // cfg.steps)
        else:
            self.lot = task.lot
        self.single_action_space = self._action_space()
        width = 4 * cfg.levels + 10
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (width,), np.float32)
        self.markets: Markets | None = None
        self.accounts: list[_Account] = []
        self.t = 0
        self.start_ts = np.zeros(n, dtype=np.int64)  # each episode's start
        self.submitted: list[list[int]] = [[] for _ in range(n)]  # the ids of each book's orders of the last step

    # ---------------------------------------------------------------- spaces and actions
    def _action_space(self) -> spaces.Space:
        c = self.cfg
        if c.continuous:  # cancel (> 0), signed size (fraction of the lot limit), price (-1 market .. 1 deepest)
            return spaces.Box(-1.0, 1.0, (3,), np.float32)
        if isinstance(c.task, Execution):  # wait, market, limit at offsets, cancel all
            return spaces.Discrete(3 + c.max_offset)
        return spaces.Discrete(5 + 3 * c.max_offset)  # wait, cancel, buy/sell market, buy/sell/quote at offsets

    def describe_actions(self) -> list[str]:
        """What each discrete action does (for a reader, and the tests)."""
        c = self.cfg
        if c.continuous:
            return ["[cancel own if > 0, signed size in lots x4, price: < -0.8 market else offset]"]
        offs = range(c.max_offset)
        if isinstance(c.task, Execution):
            return ["wait", "market", *[f"limit offset {k}" for k in offs], "cancel all"]
        return ["wait", "cancel all", "market buy", "market sell", *[f"buy offset {k}" for k in offs],
                *[f"sell offset {k}" for k in offs], *[f"quote offset {k}" for k in offs]]

    def to_actions(self, a: Any) -> list[Action]:
        """An element of the action space (or an :class:`Action`, or a list of them) as Actions."""
        if isinstance(a, Action):
            return [a]
        if isinstance(a, list | tuple) and all(isinstance(x, Action) for x in a):
            return list(a)
        c, space = self.cfg, self.single_action_space
        if c.continuous:
            x = np.asarray(a, dtype=np.float64).reshape(-1)
            if x.shape != (3,) or not np.isfinite(x).all():
                raise InvalidAction(f"a continuous action is 3 finite numbers in [-1, 1], got {a!r}")
            x = np.clip(x, -1.0, 1.0)
            out = [Action("cancel")] if x[0] > 0 else []
            size = round(abs(x[1]) * 4 * self.lot)
            side = 1 if x[1] > 0 else -1
            if isinstance(c.task, Execution):
                side = c.task.side  # the sign of a size only matters when making a market
            if size > 0:
                if x[2] < -0.8:
                    out.append(Action("market", side, size))
                else:
                    out.append(Action("limit", side, size, offset=round((x[2] + 0.8) / 1.8 * (c.max_offset - 1))))
            return out
        try:
            k = int(a)
        except (TypeError, ValueError):
            raise InvalidAction(f"action {a!r} is not in {space}") from None
        if not space.contains(np.int64(k)) or k != a:
            raise InvalidAction(f"action {a!r} is not in {space}")
        m, lot = c.max_offset, self.lot
        if isinstance(c.task, Execution):
            s = c.task.side
            if k == 0:
                return []
            if k == 1:
                return [Action("market", s, lot)]
            if k < 2 + m:
                return [Action("limit", s, lot, offset=k - 2)]
            return [Action("cancel")]
        if k == 0:
            return []
        if k == 1:
            return [Action("cancel")]
        if k in (2, 3):
            return [Action("market", 1 if k == 2 else -1, lot)]
        j = k - 4
        if j < m:
            return [Action("limit", 1, lot, offset=j)]
        if j < 2 * m:
            return [Action("limit", -1, lot, offset=j - m)]
        return [Action("quote", 0, lot, offset=j - 2 * m)]

    def _orders(self, b: int, actions: list[Action], notes: list[str]) -> list[Order]:
        """Apply the cancels of ``actions`` to book ``b`` now; return its orders for this step (clipped)."""
        out: list[Order] = []
        for a in actions:
            if a.kind == "wait":
                continue
            if a.kind in ("cancel", "quote"):
                self._cancel(b, a.order_id if a.kind == "cancel" else 0, notes)
                if a.kind == "cancel":
                    continue
            if a.kind == "quote":
                out += [o for s in (1, -1) if (o := self._order(b, Action("limit", s, a.size, offset=a.offset),
                                                                 notes, out))]
            elif a.kind in ("market", "limit"):
                if (o := self._order(b, a, notes, out)) is not None:
                    out.append(o)
            else:
                raise InvalidAction(f"unknown action kind {a.kind!r} (wait, market, limit, cancel, quote)")
        if len(out) > self.cfg.events:
            notes.append(f"{len(out) - self.cfg.events} orders beyond the step's {self.cfg.events} events dropped")
            out = out[: self.cfg.events]
        return out

    def _cancel(self, b: int, order_id: int, notes: list[str]) -> None:
        acc = self.accounts[b]
        targets = list(acc.own) if order_id == 0 else [order_id]
        for oid in targets:
            if self.markets.cancel(b, oid) == 0:
                notes.append(f"cancel of order {oid}: not resting (filled, cancelled or never the agent's); "
                             "nothing done")
            acc.own.pop(oid, None)

    def _resting(self, b: int, side: int) -> int:
        book, total = self.markets.book(b), 0
        for oid, (s, _) in self.accounts[b].own.items():
            if s == side and book.holds(oid):
                total += book.order(oid)[2]
        return total

    def _order(self, b: int, a: Action, notes: list[str], pending: list[Order]) -> Order | None:
        task = self.cfg.task
        side = a.side or (task.side if isinstance(task, Execution) else 0)
        if side not in (1, -1):
            raise InvalidAction(f"an order needs side +1 (buy) or -1 (sell), got {a.side!r}")
        if isinstance(task, Execution) and side != task.side:
            raise InvalidAction(f"this execution task {'buys' if task.side > 0 else 'sells'}: an order on the "
                                "other side is not part of it")
        if a.size < 1:
            raise InvalidAction(f"an order needs size >= 1, got {a.size!r}")
        acc = self.accounts[b]
        queued = sum(o[1] for o in pending if o[0] == side)
        if isinstance(task, Execution):
            room = task.quantity - side * acc.inventory - self._resting(b, side) - queued
            what = "what is left to trade"
        else:
            room = task.max_inventory - side * acc.inventory - self._resting(b, side) - queued
            what = f"the position limit of {task.max_inventory:,}"
        size = min(a.size, room)
        if size < 1:
            notes.append(f"{'buy' if side > 0 else 'sell'} of {a.size:,}: {what} leaves no room; dropped")
            return None
        if size < a.size:
            notes.append(f"size {a.size:,} clipped to {size:,} ({what})")
        if a.kind == "market":
            return side, int(size), 0
        if a.price is not None:
            price = int(a.price)
            if price < 1:
                raise InvalidAction(f"a limit price must be positive, got {a.price!r}")
            on_grid = (price // self.tick if side > 0 else -(-price // self.tick)) * self.tick
            if on_grid != price:
                notes.append(f"price {price} is off the tick grid ({self.tick}); moved to {on_grid}")
            price = on_grid
        else:
            bid, ask = self.markets.book(b).best()
            own, other = (bid, ask) if side > 0 else (ask, bid)
            touch = own if own else (other - side * self.tick if other else None)
            if touch is None:
                notes.append("limit order with both sides empty: no touch to place it from; dropped")
                return None
            price = touch - side * a.offset * self.tick
        if price < self.tick:
            notes.append(f"limit price {price} below one tick; dropped")
            return None
        return side, int(size), int(price)

    # ---------------------------------------------------------------- episodes
    def reset(self, start_ts: int | Sequence[int], seed: int) -> np.ndarray:
        """New episodes from ``start_ts``: one start for all N books, or one per book."""
        starts = np.asarray(start_ts, dtype=np.int64)
        if starts.ndim > 1 or (starts.ndim == 1 and len(starts) != self.n):
            raise InputError(f"{starts.size} starts for {self.n} environments: give one, or one per environment")
        self.start_ts = np.broadcast_to(starts, (self.n,)).copy()
        self.markets = self.source.markets(self.cfg.background, self.start_ts, self.n, seed,
                                           self.cfg.steps * self.cfg.events + 16, self.cfg.temperature)
        self.accounts = []
        for b in range(self.n):
            acc = _Account(cursor=len(self.markets.rows(b, 0)))
            acc.arrival = acc.mid = self._mid(b, float("nan"))
            if not math.isfinite(acc.arrival):
                raise InputError(f"the book at {self.start_ts[b]} is not two-sided: no arrival mid to measure "
                                 "against")
            self.accounts.append(acc)
        self.t = 0
        return np.stack([self._observe(b) for b in range(self.n)])

    def _mid(self, b: int, fallback: float) -> float:
        bid, ask = self.markets.book(b).best()
        return (bid + ask) / 2 if bid and ask else fallback

    def step(self, actions: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[str]]]:
        """One decision per episode (done ones wait); returns observations, rewards, terminations and notes."""
        if self.markets is None:
            raise RuntimeError("reset the environment before stepping it")
        if len(actions) != self.n:
            raise InvalidAction(f"{len(actions)} actions for {self.n} environments")
        notes: list[list[str]] = [[] for _ in range(self.n)]
        orders = [[] if self.accounts[b].done else self._orders(b, self.to_actions(a), notes[b])
                  for b, a in enumerate(actions)]
        self.submitted = [[] for _ in range(self.n)]
        for j in range(self.cfg.events):
            self.markets.step([o[j] if j < len(o) else None for o in orders])
            for b, o in enumerate(orders):
                if j < len(o):
                    self.submitted[b].append(self.markets.last_id(b))
        self.t += 1
        rewards = np.zeros(self.n)
        ended = np.zeros(self.n, dtype=bool)
        for b in range(self.n):
            acc = self.accounts[b]
            if acc.done:
                ended[b] = True
                continue
            rewards[b] = self._settle(b)
            ended[b] = acc.done
        obs = np.stack([self._observe(b) for b in range(self.n)])
        return obs, rewards, ended, notes

    def _settle(self, b: int) -> float:
        """Read book ``b``'s new record rows (the agent's fills among them) and give the step's reward."""
        acc, task = self.accounts[b], self.cfg.task
        rows = self.markets.rows(b, acc.cursor)
        acc.cursor += len(rows)
        step_cost, traded, events = 0.0, 0, 0
        for ts, kind, side, price, size, oid, flag in rows.tolist():
            del ts
            if kind == E.K_ADD and flag == AGENT:
                acc.own[oid] = (side, price)
            if flag != AGENT and flag != 2:
                events += 1
            if kind != E.K_EXECUTE:
                continue
            fills = []
            if flag == AGENT:  # the agent's order took resting volume: it traded on the other side of the row
                fills.append(-side)
            if oid in acc.own:  # the agent's resting order was taken
                fills.append(side)
            if flag != AGENT:
                traded += -side * size
            for s in fills:
                acc.inventory += s * size
                acc.cash -= s * size * price
                if isinstance(task, Execution):
                    step_cost += task.side * (price - acc.arrival) * size
        book = self.markets.book(b)
        acc.own = {oid: v for oid, v in acc.own.items() if book.holds(oid)}
        acc.traded, acc.events = traded, events
        acc.mid = self._mid(b, acc.mid)
        last = self.t >= self.cfg.steps
        if isinstance(task, Execution):
            left = task.quantity - task.side * acc.inventory
            if left <= 0 or last:
                acc.done = True
                if left > 0:  # valued at the final mid, plus the penalty against the agent
                    step_cost += left * (task.side * (acc.mid - acc.arrival) + task.penalty_bps * 1e-4 * acc.arrival)
            acc.cost += step_cost
            return -step_cost / (task.quantity * acc.arrival) * 1e4
        pnl = acc.cash + acc.inventory * acc.mid
        change, acc.pnl = pnl - acc.pnl, pnl
        acc.done = last
        return change / (self.tick * self.lot) - task.inventory_penalty * (acc.inventory / self.lot) ** 2

    def shortfall_bps(self, b: int) -> float:
        """An execution episode's implementation shortfall so far, bps of the arrival value (+ is a cost)."""
        task = self.cfg.task
        return self.accounts[b].cost / (task.quantity * self.accounts[b].arrival) * 1e4

    def _observe(self, b: int) -> np.ndarray:
        c, acc, task = self.cfg, self.accounts[b], self.cfg.task
        book = self.markets.book(b)
        top = book.top(c.levels).reshape(c.levels, 4).astype(np.float64)  # ask p, ask q, bid p, bid q
        mid = acc.mid
        rel = np.where(top[:, [0, 2]] > 0, (top[:, [0, 2]] - mid) / self.tick, 0.0)
        size = np.log1p(top[:, [1, 3]])
        bid, ask = book.best()
        spread = (ask - bid) / self.tick if bid and ask else 0.0
        buys, sells = self._resting(b, 1), self._resting(b, -1)
        if isinstance(task, Execution):
            scale = task.quantity
            left = (task.quantity - task.side * acc.inventory) / task.quantity
        else:
            scale = task.max_inventory
            left = 1.0 - abs(acc.inventory) / task.max_inventory
        pnl = (acc.cash + acc.inventory * mid - (acc.inventory * acc.arrival if isinstance(task, Execution) else 0))
        x = np.concatenate([
            rel[:, 0], size[:, 0], rel[:, 1], size[:, 1],
            [acc.inventory / scale, pnl / (self.tick * self.lot), 1.0 - self.t / c.steps, left,
             (mid - acc.arrival) / self.tick, spread, np.log1p(acc.events), acc.traded / self.lot,
             buys / self.lot, sells / self.lot]])
        return x.astype(np.float32)

    def info(self, b: int) -> dict[str, Any]:
        acc = self.accounts[b]
        out = {"inventory": acc.inventory, "cash": acc.cash, "mid": acc.mid, "arrival_mid": acc.arrival,
               "start_ts": int(self.start_ts[b]), "ts": self.markets.now(b), "resting": len(acc.own),
               "order_ids": list(self.submitted[b])}
        if isinstance(self.cfg.task, Execution):
            out["shortfall_bps"] = self.shortfall_bps(b)
            out["executed"] = self.cfg.task.side * acc.inventory
        else:
            out["pnl"] = acc.cash + acc.inventory * acc.mid
        return out


def _start(source: Source, cfg: Config, rng: np.random.Generator, options: dict | None,
           n: int = 1) -> tuple[np.ndarray, int]:
    """The starts of ``n`` episodes (``options["start_ts"]``: one for all or one each; else each drawn from the
    part) and the markets' seed."""
    options = options or {}
    seed = int(rng.integers(2**31 - 1))
    if "start_ts" in options:
        return np.asarray(options["start_ts"], dtype=np.int64), int(options.get("market_seed", seed))
    lo, hi = source.part(options.get("part", cfg.part), cfg.margin_s)
    return rng.integers(lo, hi, size=n), int(options.get("market_seed", seed))


def _source(model: Any, day: Any, source: Source | None, splits: tuple[float, float] | None) -> Source:
    return source if source is not None else Source(model, day, splits)


def _config(task: Execution | MarketMaking, kwargs: dict[str, Any]) -> Config:
    names = {f for f in Config.__dataclass_fields__}
    task_names = set(type(task).__dataclass_fields__)
    unknown = set(kwargs) - names - task_names
    if unknown:
        raise TypeError(f"unknown environment option(s): {', '.join(sorted(unknown))}")
    task = replace(task, **{k: v for k, v in kwargs.items() if k in task_names and k not in names})
    return Config(task=task, **{k: v for k, v in kwargs.items() if k in names and k != "task"})


# ---------------------------------------------------------------- Gymnasium faces


class TradingEnv(gym.Env):
    """One episode at a time (:class:`Trading` with N = 1). ``info["notes"]`` says what was clipped."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, model: Any = None, day: Any = None, *, source: Source | None = None,
                 splits: tuple[float, float] | None = None, task: Execution | MarketMaking | None = None,
                 **options: Any) -> None:
        cfg = _config(task or self.default_task(), options)
        self.core = Trading(_source(model, day, source, splits), cfg, 1)
        self.action_space = self.core.single_action_space
        self.observation_space = self.core.single_observation_space

    @staticmethod
    def default_task() -> Execution | MarketMaking:
        return Execution()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        start, market_seed = _start(self.core.source, self.core.cfg, self.np_random, options)
        obs = self.core.reset(start, market_seed)
        return obs[0], self.core.info(0)

    def step(self, action):
        obs, reward, ended, notes = self.core.step([action])
        info = self.core.info(0)
        info["notes"] = notes[0]
        return obs[0], float(reward[0]), bool(ended[0]), False, info


class ExecutionEnv(TradingEnv):
    """``tradefm/Execution-v0``: execute a parent order; reward = minus the implementation shortfall."""


class MarketMakingEnv(TradingEnv):
    """``tradefm/MarketMaking-v0``: quote both sides; reward = P&L minus an inventory penalty."""

    @staticmethod
    def default_task() -> Execution | MarketMaking:
        return MarketMaking()


class TradingVectorEnv(VectorEnv):
    """N environments on one batched background: one model call per market event for all of them. Each draws
    its own start (``options={"start_ts": ...}``: one for all, or one each) and its own market seed; episodes
    being of one length, they end together, and the step after the end resets them all (Gymnasium's next-step
    autoreset)."""

    metadata: ClassVar[dict] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, model: Any = None, day: Any = None, *, source: Source | None = None,
                 splits: tuple[float, float] | None = None, task: Execution | MarketMaking | None = None,
                 **options: Any) -> None:
        cfg = _config(task or Execution(), options)
        self.num_envs = num_envs
        self.core = Trading(_source(model, day, source, splits), cfg, num_envs)
        self.single_action_space = self.core.single_action_space
        self.single_observation_space = self.core.single_observation_space
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._rng = np.random.default_rng()
        self._ended = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        starts, market_seed = _start(self.core.source, self.core.cfg, self._rng, options, self.num_envs)
        obs = self.core.reset(starts, market_seed)
        self._ended = False
        return obs, self._infos()

    def step(self, actions):
        if self._ended:  # next-step autoreset: this call starts the next episodes, the actions are unused
            obs, infos = self.reset()
            z = np.zeros(self.num_envs)
            return obs, z, z.astype(bool), z.astype(bool), infos
        if isinstance(actions, np.ndarray):
            actions = list(actions)
        obs, rewards, ended, notes = self.core.step(list(actions))
        self._ended = bool(ended.all())
        infos = self._infos()
        infos["notes"] = np.empty(self.num_envs, dtype=object)
        infos["notes"][:] = notes
        return obs, rewards, ended, np.zeros(self.num_envs, dtype=bool), infos

    def _infos(self) -> dict[str, np.ndarray]:
        rows = [self.core.info(b) for b in range(self.num_envs)]
        out = {k: np.array([r[k] for r in rows]) for k in rows[0] if k != "order_ids"}
        out["order_ids"] = np.empty(self.num_envs, dtype=object)
        out["order_ids"][:] = [r["order_ids"] for r in rows]
        return out


def make_vector(task: str, num_envs: int, **kwargs: Any) -> TradingVectorEnv:
    """The vector entry point of the registered ids."""
    return TradingVectorEnv(num_envs, task=Execution() if task == "execution" else MarketMaking(), **kwargs)
