"""Closed-loop rollouts: the model writes order flow, the matching engine answers, the answer is the next context.

Each rollout owns a :class:`~tradefm.generation.market.Market` seeded with the real book at the start time. At
every step the batched model (with its KV cache) gives next-token logits for all rollouts; a token is sampled
(temperature, top-k, top-p, repetition penalty), decoded into a concrete order against that rollout's book,
and applied: marketable orders fill, cancels remove resting orders by the tokenizer's rule. Time advances by the
decoded dt, and the token enters the model's input with the context the features give it in training: the state
just before the event (the book it met, the reference price, the trailing window up to its time). The book it
leaves moves the reference price (EW-VWAP of the rollout's own fills, or the book mid), and so the next
event's price-level and spread context. Participants' orders (a schedule, or a callback)
are injected into the market and into the token stream with the participant flag set. ``control`` fixes the
volume and activity regime fields ({"volume": 0|1|2, "activity": 0|1|2}: low, normal, high) instead of
measuring them on the rollout's own trailing window: the model's controllable indicators. With
``Sampling(guidance=g)`` the model is asked twice per step, with the fields as requested and as measured, and
samples from ``free + g * (controlled - free)`` logits (classifier-free guidance): g > 1 pushes further in the
direction the control moves the model, for a field the model reads only weakly.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch

from ..events import EventDay
from ..features import FeatureConfig, OrderFlow, order_depth, order_flow, spread_bps
from ..model import KVCache, TradeFM
from ..tokenizer import Tokenizer, decode_order
from .market import Market


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_k: int = 0  # 0: no limit
    top_p: float = 1.0
    repetition_penalty: float = 1.2  # the paper's rollouts used 1.2; 1.0 switches it off
    guidance: float = 1.0  # with a control: free + guidance * (controlled - free) logits; 1.0 is plain conditioning

    def __post_init__(self) -> None:
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0 or self.guidance < 0:
            raise ValueError("need temperature > 0, 0 < top_p <= 1, repetition_penalty > 0 and guidance >= 0")


def sample(logits: torch.Tensor, history: torch.Tensor, cfg: Sampling, gen: torch.Generator) -> torch.Tensor:
    """Next token per row of ``logits`` [B, V]; ``history`` [B, W] holds the tokens in view (for the penalty)."""
    logits = logits.float().clone()
    if cfg.repetition_penalty != 1.0 and history.numel():
        seen = logits.gather(1, history)
        logits.scatter_(1, history, torch.where(seen > 0, seen / cfg.repetition_penalty, seen * cfg.repetition_penalty))
    logits /= cfg.temperature
    if cfg.top_k:
        kth = torch.topk(logits, min(cfg.top_k, logits.shape[1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if cfg.top_p < 1.0:
        order = logits.argsort(dim=1, descending=True)
        probs = logits.gather(1, order).softmax(dim=1)
        drop = probs.cumsum(dim=1) - probs > cfg.top_p  # keep the smallest prefix reaching top_p (at least one)
        logits = logits.scatter(1, order, logits.gather(1, order).masked_fill(drop, -math.inf))
    return torch.multinomial(logits.softmax(dim=1), 1, generator=gen).squeeze(1)


@dataclass(frozen=True)
class ScheduledOrder:
    """A participant's order: ``at_s`` seconds after the rollout starts; ``price`` None is a market order."""

    at_s: float
    side: int  # +1 buy, -1 sell
    size: int  # size units
    price: int | None = None


def twap(side: int, total: int, minutes: float, slices: int, start_s: float = 0.0) -> list[ScheduledOrder]:
    """Sell (side -1) or buy ``total`` in ``slices`` equal market orders spread evenly over ``minutes``."""
    sizes = np.full(slices, total // slices)
    sizes[: total % slices] += 1
    step = minutes * 60 / slices
    return [ScheduledOrder(start_s + i * step, side, int(q)) for i, q in enumerate(sizes) if q > 0]


Participant = list[ScheduledOrder] | Callable[[Market, float], list[ScheduledOrder]]


class _Reference:
    """The rollout's reference price, streamed: the EW-VWAP of ``features`` (same half-life) continued from the
    real reference at the start, updated by the rollout's own fills."""

    def __init__(self, half_life_s: float, start: float) -> None:
        self.lam = math.log(2) / (half_life_s * 1e9)
        self.num, self.den, self.last = start, 1.0, 0

    def fill(self, ts: int, price: float, size: float) -> None:
        decay = math.exp(-self.lam * (ts - self.last)) if self.last else 1.0
        self.num, self.den, self.last = self.num * decay + price * size, self.den * decay + size, ts

    @property
    def value(self) -> float:
        return self.num / self.den


class Rollouts:
    """R rollouts of one model from one real start, advanced together in one batch."""

    def __init__(self, model: TradeFM | None, tokenizer: Tokenizer, day: EventDay, start_ts: int, rollouts: int = 4,
                 seed: int = 0, sampling: Sampling | None = None, prompt: int | None = None,
                 participant: Participant | None = None, control: dict[str, int] | None = None) -> None:
        """``model=None`` gives markets that only decode tokens handed to them (see :func:`decode_real`)."""
        self.model, self.tok, self.day = model.eval() if model is not None else None, tokenizer, day
        self.sampling = sampling or Sampling()
        self.participant = participant
        self.inst = day.instrument
        self.key = f"{self.inst.venue}/{self.inst.symbol}"
        flow = order_flow(day, tokenizer.features)
        known = ~np.isnan(flow.reference)
        self.opening = float(flow.reference[np.argmax(known)]) if known.any() else float("nan")
        before = flow.ts < start_ts
        tokens, ctx = tokenizer.encode(flow, self.key)
        self.real_tokens = tokens[~before]  # the real day's tokens from the start on (what decode_real replays)
        self.real_ts = flow.ts[~before]
        context = model.cfg.context if model is not None else 2
        n_prompt = min(int(before.sum()), prompt or context // 2, context - 1)
        if n_prompt < 1:
            raise ValueError("the start leaves no real order flow before it to prompt the model with")
        last = int(before.sum())
        self.tokens = torch.from_numpy(tokens[last - n_prompt:last].astype(np.int64)).repeat(rollouts, 1)
        self.ctx = torch.from_numpy(ctx[last - n_prompt:last].astype(np.int64)).repeat(rollouts, 1, 1)
        self.tier = int(ctx[0, 0]) if len(ctx) else 0
        start_ref = float(flow.reference[last - 1]) if known[last - 1] else float(flow.price[last - 1])
        self.markets = [Market(day, start_ts) for _ in range(rollouts)]
        self.refs = [_Reference(tokenizer.features.half_life_s, start_ref) for _ in range(rollouts)]
        self.rngs = [np.random.default_rng([seed, r]) for r in range(rollouts)]
        self.gen = torch.Generator().manual_seed(seed)
        self.start_ts = start_ts
        self.ts = [start_ts] * rollouts
        self.pending = [sorted(participant, key=lambda o: o.at_s) if isinstance(participant, list) else []
                        for _ in range(rollouts)]
        self.control = dict(control or {})
        for name, value in self.control.items():
            if name not in ("volume", "activity") or not 0 <= value < tokenizer.config.regimes:
                raise ValueError(f"control wants volume/activity in 0..{tokenizer.config.regimes - 1}, "
                                 f"got {name}={value}")
        # the trailing window of order events (time, volume) each rollout's regimes are measured on
        window = int(tokenizer.features.window_s * 1e9)
        recent = [(int(t), float(v)) for t, v in zip(flow.ts[:last], self._volumes(flow)[:last], strict=True)
                  if t >= start_ts - window]
        self.window = window
        self.recent = [deque(recent) for _ in range(rollouts)]

    # ------------------------------------------------------------------ context
    def _volumes(self, flow: OrderFlow) -> np.ndarray:
        return np.expm1(flow.log_volume)

    def _reference(self, r: int) -> float:
        """The reference price the features measure depth from: the streamed EW-VWAP, or with
        ``reference="mid"`` the book mid (the EW-VWAP while a side of the book is empty)."""
        if self.tok.features.reference == "mid":
            mid = self.markets[r].mid()
            if mid is not None:
                return mid
        return self.refs[r].value

    def _context(self, r: int, flag: int) -> list[int]:
        ref = self._reference(r)
        change = (ref - self.opening) / self.opening if math.isfinite(self.opening) else 0.0
        level = int(self.tok.level.index(np.array([change]))[0])
        recent, now = self.recent[r], self.ts[r]
        while recent and recent[0][0] < now - self.window:
            recent.popleft()
        at_now = 0  # events stamped now sit at the end of the window: the features count only strictly earlier ones
        while at_now < len(recent) and recent[-1 - at_now][0] >= now:
            at_now += 1
        n = len(recent) - at_now
        volume = sum(v for _, v in islice(recent, n))
        vol, act = self.tok.regimes(np.array([volume]), np.array([float(n)]), self.key)
        bid, ask = self.markets[r].best()
        spread = spread_bps(bid, ask) if bid and ask else np.nan
        return [self.tier, level, flag, int(vol[0]), int(act[0]), int(self.tok.spread_bin(np.array([spread]))[0])]

    def _steer(self, row: list[int]) -> list[int]:
        """A measured context row with the control's regime fields in place of the measured ones."""
        return [*row[:3], self.control.get("volume", row[3]), self.control.get("activity", row[4]), *row[5:]]

    def _logits(self, tokens: torch.Tensor, ctx: torch.Tensor, free: torch.Tensor | None, cache: KVCache,
                free_cache: KVCache | None) -> torch.Tensor:
        """Next-token logits under the steered context, guided away from the measured one when asked to."""
        logits, _ = self.model(tokens, ctx, cache=cache)
        if free is None or free_cache is None:
            return logits
        base, _ = self.model(tokens, free, cache=free_cache)
        return base + self.sampling.guidance * (logits - base)

    def _step(self, r: int, token: int) -> list[int]:
        """Decode the model's token into an order at the time its dt gives and apply it; returns the token's
        context row, taken before the order meets the book (in training token i comes with the features before
        event i; pairing it with the state after the event would show the model every book change one step early)."""
        m, ref = self.markets[r], self.refs[r]
        order = decode_order(self.tok, token, m.book, self._reference(r), self.inst.tick_size, self.inst.size_scale,
                             m.next_id + 1, self.rngs[r], self.inst.price_scale)
        if order is None:
            return self._context(r, 0)
        self.ts[r] += int(order.dt * 1e9)
        row = self._context(r, 0)
        self.recent[r].append((self.ts[r], self._volume(order.size, order.price)))
        if order.kind == 1:
            # a marketable add is immediate-or-cancel: in the data an aggressor is the executions it made (the
            # features rebuild it from them), so a remainder resting through the spread is never in a token
            bid, ask = m.best()
            marketable = (ask is not None and order.price >= ask) if order.side > 0 else \
                (bid is not None and order.price <= bid)
            for f in m.limit(self.ts[r], order.side, order.price, order.size, ioc=marketable):
                ref.fill(self.ts[r], f.price, f.size)
        else:
            m.cancel(self.ts[r], order.side, order.price, order.size, order.order_id)
        return row

    def _participant(self, r: int, o: ScheduledOrder) -> tuple[int, list[int]]:
        """Execute a participant's order; return the token that describes it and its context row."""
        m, ref = self.markets[r], self.refs[r]
        ts = max(self.ts[r], self.start_ts + int(o.at_s * 1e9))
        dt = (ts - self.ts[r]) / 1e9
        self.ts[r] = ts
        row = self._context(r, 1)
        reference = self._reference(r)
        fills = m.market(ts, o.side, o.size, flag=1) if o.price is None else m.limit(ts, o.side, o.price, o.size, 1)
        for f in fills:
            ref.fill(ts, f.price, f.size)
        price = (max if o.side > 0 else min)((f.price for f in fills), default=o.price or reference)
        depth = order_depth(o.side, price, reference)
        one = OrderFlow(ts=np.array([ts]), action=np.zeros(1, np.int8), side=np.array([int(o.side < 0)], np.int8),
                        price=np.array([price]), size=np.array([o.size]), aggressive=np.array([o.price is None]),
                        dt=np.array([dt]), depth_bps=np.atleast_1d(depth),
                        log_volume=np.log1p(np.array([self._volume(o.size, price)])), level_change=np.zeros(1),
                        flag=np.ones(1, np.int8), reference=np.array([reference]), recent_volume=np.zeros(1),
                        recent_events=np.zeros(1), spread_bps=np.full(1, np.nan), notional=0.0)
        self.recent[r].append((ts, self._volume(o.size, price)))
        return int(self.tok.encode(one, self.key)[0][0]), row

    def _volume(self, size: int, price: float) -> float:
        v = size / self.inst.size_scale
        return v * price / self.inst.price_scale if self.tok.features.volume == "notional" else v

    def _due(self, r: int) -> ScheduledOrder | None:
        elapsed = (self.ts[r] - self.start_ts) / 1e9
        if callable(self.participant):
            due = self.participant(self.markets[r], elapsed)
            return due[0] if due else None
        if self.pending[r] and self.pending[r][0].at_s <= elapsed:
            return self.pending[r].pop(0)
        return None

    # ------------------------------------------------------------------ the loop
    @torch.no_grad()
    def run(self, events: int, progress: bool = False, duration_s: float | None = None) -> list[EventDay]:
        """Generate ``events`` order events per rollout (participant orders included), or, with ``duration_s``,
        until every rollout's clock has passed that many seconds (``events`` then caps the steps; each day is
        cut at the end time). One EventDay per rollout."""
        from tqdm.auto import tqdm

        n = len(self.markets)
        cfg = self.model.cfg
        end = self.start_ts + int(duration_s * 1e9) if duration_s else None
        guided = bool(self.control) and self.sampling.guidance != 1.0
        free = self.ctx.clone() if guided else None  # the context as measured (the prompt's rows are never steered)

        def caches() -> tuple[KVCache, KVCache | None]:
            return (KVCache.empty(cfg, n, "cpu", torch.float32),
                    KVCache.empty(cfg, n, "cpu", torch.float32) if guided else None)

        cache, free_cache = caches()
        logits = self._logits(self.tokens, self.ctx, free, cache, free_cache)
        for _ in tqdm(range(events), desc="generate", unit="event", disable=not progress):
            if end is not None and min(self.ts) >= end:
                break
            nxt = sample(logits[:, -1], self.tokens[:, -cfg.context:], self.sampling, self.gen)
            ctx_rows = []
            for r in range(n):
                due = self._due(r)
                if due is not None:  # the participant acts now; the model's sample is set aside
                    nxt[r], row = self._participant(r, due)
                else:
                    row = self._step(r, int(nxt[r]))
                ctx_rows.append(row)
            self.tokens = torch.cat([self.tokens, nxt[:, None]], dim=1)
            self.ctx = torch.cat([self.ctx, torch.tensor([self._steer(row) for row in ctx_rows])[:, None]], dim=1)
            if free is not None:
                free = torch.cat([free, torch.tensor(ctx_rows)[:, None]], dim=1)
            span = cfg.context // 2 if cache.length + 1 > cfg.context else 1  # a full window keeps its second half
            if span > 1:
                cache, free_cache = caches()
            logits = self._logits(self.tokens[:, -span:], self.ctx[:, -span:],
                                  None if free is None else free[:, -span:], cache, free_cache)
        days = [m.to_day("tradefm") for m in self.markets]
        if end is not None:
            days = [_until(d, end) for d in days]
        return days


def _until(day: EventDay, end: int) -> EventDay:
    t = day.table
    keep = t.column("snapshot").to_numpy() | (t.column("ts").to_numpy() <= end)
    return EventDay(day.instrument, day.date, t.filter(keep), day.sources, day.notes)


def decode_real(tokenizer: Tokenizer, day: EventDay, start_ts: int, duration_s: float, rollouts: int = 1,
                seed: int = 0) -> list[EventDay]:
    """The real tokens of ``day`` from ``start_ts`` on, each decoded closed loop against its rollout's simulated
    book exactly as a model's sample would be: the rollouts of a model that predicted every real token. Their
    distance from the real window is the tokenizer's and the decoder's alone, the floor under every model's
    rollouts, and measuring it needs no training (the quickest test of a tokenizer or decoding change)."""
    ro = Rollouts(None, tokenizer, day, start_ts, rollouts, seed)
    end = start_ts + int(duration_s * 1e9)
    for token in ro.real_tokens[ro.real_ts < end]:
        for r in range(rollouts):
            ro._step(r, int(token))
    return [_until(m.to_day("real tokens, decoded"), end) for m in ro.markets]


def generate(model: TradeFM, tokenizer: Tokenizer, day: EventDay, start_ts: int, events: int, rollouts: int = 4,
             seed: int = 0, sampling: Sampling | None = None, participant: Participant | None = None,
             control: dict[str, int] | None = None, progress: bool = False,
             duration_s: float | None = None) -> list[EventDay]:
    """Closed-loop rollouts from the real book of ``day`` at ``start_ts``."""
    return Rollouts(model, tokenizer, day, start_ts, rollouts, seed, sampling, participant=participant,
                    control=control).run(events, progress, duration_s)


__all__ = ["FeatureConfig", "Rollouts", "Sampling", "ScheduledOrder", "decode_real", "generate", "sample", "twap"]
