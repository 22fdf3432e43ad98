"""Closed-loop rollouts: the model writes order flow, the matching engine answers, the answer is the next context.

The R rollouts of one start advance together. At every step the batched model (with its KV cache) gives
next-token logits for all of them, one sampling call draws a token per rollout (temperature, top-k, top-p,
repetition penalty), and one :class:`~tradefm.generation.simulator.Simulator` step decodes every token into an
order against its rollout's book, applies it and measures the context row the token enters the model with: the
state just before the event, as the features give it in training. Participants' orders (a schedule, or a
callback that sees each rollout's book) enter the same step in place of the model's sample, with the
participant flag set. ``control`` fixes the volume and activity regime fields ({"volume": 0|1|2, "activity":
0|1|2}: low, normal, high) instead of measuring them on the rollout's own trailing window. With
``Sampling(guidance=g)`` the model is asked twice per step, with the fields as requested and as measured, and
samples from ``free + g * (controlled - free)`` logits (classifier-free guidance). ``Sampling(pace=k)`` makes
events k times as frequent as the real flow before the start, through the model rather than around it: each step
the dt digit's distribution is tilted (by a power of the wait) until its expected wait is 1/k of the real mean
wait, and the faster flow then enters the context the model answers. (A target relative to the model's own
expected wait compounds: the model answers fast flow with shorter waits, which the tilt shortens again.)

The model may sit on a GPU: tokens and context rows go to its device each step, the sampled ids come back, and
the books stay on the CPU, so one step moves B ids and B context rows each way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..book import OrderBook
from ..codec import DT_FLOOR, FeatureConfig, aggressor_before, next_unit, seconds_of, tables
from ..events import EventDay, InputError
from ..features import order_flow
from ..model import KVCache, TradeFM
from ..tokenizer import Tokenizer
from .simulator import Simulator


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_k: int = 0  # 0: no limit
    top_p: float = 1.0
    repetition_penalty: float = 1.2  # the paper's rollouts used 1.2; 1.0 switches it off
    guidance: float = 1.0  # with a control: free + guidance * (controlled - free) logits; 1.0 is plain conditioning
    pace: float = 1.0  # events this many times as frequent as the real flow before the start (1.0: the model's own)

    def __post_init__(self) -> None:
        if (self.temperature <= 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0 or self.guidance < 0
                or not self.pace > 0):
            raise InputError("need temperature > 0, 0 < top_p <= 1, repetition_penalty > 0, guidance >= 0 and "
                             "pace > 0")


def paced(logits: torch.Tensor, waits: torch.Tensor, target: torch.Tensor, iterations: int = 40) -> torch.Tensor:
    """``logits`` [B, V] with the last digit of the ids (dt, the least significant) tilted by ``waits ** -lam``
    per row, ``lam`` found by bisection so that the expected wait is ``target`` [B] seconds. ``waits`` [n] is
    each dt bin's mean wait in seconds. A wait beyond what the bins can express saturates at the extreme bin."""
    b, n = logits.shape[0], len(waits)
    x = logits.float().view(b, -1, n)
    marginal = torch.logsumexp(x, dim=1)  # [B, n]: log P(dt bin)
    waits = waits.to(x.device)
    log_w = waits.log()
    target = target.to(x.device, x.dtype)[:, None]
    lo = torch.full((b, 1), -60.0, device=x.device)
    hi = torch.full((b, 1), 60.0, device=x.device)
    for _ in range(iterations):  # the tilted mean falls as lam grows
        lam = (lo + hi) / 2
        mean = ((marginal - lam * log_w).softmax(dim=1) * waits).sum(dim=1, keepdim=True)
        fast = mean <= target
        hi, lo = torch.where(fast, lam, hi), torch.where(fast, lo, lam)
    return (x - ((lo + hi) / 2 * log_w)[:, None, :]).view(b, -1)


def sample(logits: torch.Tensor, history: torch.Tensor, cfg: Sampling, gen: torch.Generator) -> torch.Tensor:
    """Next token per row of ``logits`` [B, V]; ``history`` [B, W] holds the tokens in view
    (for the penalty). The draw is two-stage over a square grid of the vocabulary: a block by its total
    probability, then an id inside it: the same distribution as one draw over all ids, with one uniform per stage
    instead of an exponential per id (``torch.multinomial``: 15 times slower at batch 256)."""
    x, own = logits.float(), False  # ``own``: x is a copy, free to change in place (the caller's stays as it was)
    if cfg.repetition_penalty != 1.0 and history.numel():
        seen = x.gather(1, history)
        x, own = x.scatter(1, history, torch.where(seen > 0, seen / cfg.repetition_penalty,
                                                   seen * cfg.repetition_penalty)), True
    if cfg.temperature != 1.0:
        x, own = (x.div_(cfg.temperature) if own else x / cfg.temperature), True
    if cfg.top_k:
        kth = torch.topk(x, min(cfg.top_k, x.shape[1])).values[:, -1:]
        x, own = x.masked_fill(x < kth, -math.inf), True
    if cfg.top_p < 1.0:
        order = x.argsort(dim=1, descending=True)
        probs = x.gather(1, order).softmax(dim=1)
        drop = probs.cumsum(dim=1) - probs > cfg.top_p  # keep the smallest prefix reaching top_p (at least one)
        x, own = x.scatter(1, order, x.gather(1, order).masked_fill(drop, -math.inf)), True
    b, v = x.shape
    side = 1 << (max(v - 1, 1).bit_length() + 1) // 2  # a power of two with side * side >= v
    peak = x.amax(dim=1, keepdim=True)
    p = (x.sub_(peak) if own else x - peak).exp_()  # unnormalised: each stage scales its own uniform
    if side * side != v:
        p = torch.cat([p, p.new_zeros(b, side * side - v)], dim=1)
    p = p.view(b, side, side)
    u = torch.rand(b, 2, generator=gen, dtype=p.dtype, device=p.device)
    blocks = p.sum(dim=2).cumsum_(dim=1)
    k = torch.searchsorted(blocks, u[:, :1] * blocks[:, -1:], right=True).clamp_(max=side - 1)
    inner = p[torch.arange(b, device=p.device), k[:, 0]].cumsum_(dim=1)
    j = torch.searchsorted(inner, u[:, 1:] * inner[:, -1:], right=True).clamp_(max=side - 1)
    return (k * side + j)[:, 0].clamp_(max=v - 1)


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


Participant = list[ScheduledOrder] | Callable[["RolloutView", float], list[ScheduledOrder]]


@dataclass(frozen=True)
class RolloutView:
    """What a participant callback sees of one rollout: its book (read-only, valid during the call), its clock
    and the id of the newest order submitted there."""

    book: OrderBook
    ts: int
    last_id: int

    def best(self) -> tuple[int | None, int | None]:
        return self.book.best()

    def mid(self) -> float | None:
        bid, ask = self.book.best()
        return (bid + ask) / 2 if bid and ask else None

    def holds(self, order_id: int) -> bool:
        return self.book.holds(order_id)


class Rollouts:
    """R rollouts of one model from real starts (one for all, or one each), advanced together: each step is one
    batched model call, one sampling call and one :class:`~tradefm.generation.simulator.Simulator` step."""

    def __init__(self, model: TradeFM | None, tokenizer: Tokenizer, day: EventDay, start_ts: int | Sequence[int],
                 rollouts: int = 4, seed: int = 0, sampling: Sampling | None = None, prompt: int | None = None,
                 participant: Participant | None = None,
                 control: dict[str, int] | list[dict[str, int] | None] | None = None) -> None:
        """``model=None`` gives markets that only decode tokens handed to them (see :func:`decode_real`).
        ``start_ts`` is one start for every rollout, or one per rollout: rollouts of different starts are
        prompted with as many real events each (the fewest any start has). ``control`` is one setting for every
        rollout, or a list with one per rollout (None: free)."""
        self.model, self.tok, self.day = model.eval() if model is not None else None, tokenizer, day
        self.sampling = sampling or Sampling()
        self.participant = participant
        self.inst = day.instrument
        self.key = self.inst.key
        if rollouts < 1:
            raise InputError("need at least one rollout")
        starts = np.asarray(start_ts, dtype=np.int64)
        starts = np.full(rollouts, starts) if starts.ndim == 0 else starts.ravel()
        if len(starts) != rollouts:
            raise InputError(f"{len(starts)} starts for {rollouts} rollouts: give one, or one per rollout")
        session = day.table.column("ts").to_numpy()[~day.table.column("snapshot").to_numpy()]
        for s in np.unique(starts):
            if not len(session) or not session[0] < s <= session[-1]:
                raise InputError(f"the start {s} is outside the day's session ({session[0] if len(session) else '-'}"
                                 f" to {session[-1] if len(session) else '-'} ns)")
        flow = order_flow(day, tokenizer.features)
        known = ~np.isnan(flow.reference)
        opening = float(flow.reference[np.argmax(known)]) if known.any() else float("nan")
        tokens, ctx = tokenizer.encode(flow, self.key)
        fields, sizes = tuple(model.cfg.context_fields) if model is not None else (), tokenizer.context_sizes
        if fields and (len(fields) != len(sizes) or any(s > f for s, f in zip(sizes, fields, strict=True))):
            raise InputError(f"the model embeds context fields of sizes {fields}, the tokenizer writes {sizes} "
                             f"({', '.join(tokenizer.context_fields)}): not the model's tokenizer")
        lasts = np.searchsorted(flow.ts, starts, side="left")  # each rollout's real events before its start
        first = int(lasts[0])
        self.real_tokens = tokens[first:]  # the first start's real tokens from it on (what decode_real replays)
        self.real_ts = flow.ts[first:]
        context = model.cfg.context if model is not None else 2
        n_prompt = min(int(lasts.min()), prompt or context // 2, context - 1)
        if n_prompt < 1:
            raise InputError("the start leaves no real order flow before it to prompt the model with")
        for last in np.unique(lasts):
            _check_scales(tokenizer, tokens[max(0, last - 1000):last], self.key)
        rows = lasts[:, None] - n_prompt + np.arange(n_prompt)[None]  # [R, prompt] each rollout's real events
        self.tokens = torch.from_numpy(tokens[rows].astype(np.int64))
        self.ctx = torch.from_numpy(ctx[rows].astype(np.int64))
        self.start_ts = starts.copy()
        controls = list(control) if isinstance(control, list | tuple) else [dict(control or {})] * rollouts
        if len(controls) != rollouts:
            raise InputError(f"{len(controls)} controls for {rollouts} rollouts: give one, or one per rollout")
        # per rollout, the fixed value of each regime field (-1: measured)
        self.fixed = torch.full((rollouts, 2), -1, dtype=torch.int64)
        for r, c in enumerate(controls):
            for name, value in (c or {}).items():
                if name not in ("volume", "activity") or not 0 <= value < tokenizer.config.regimes:
                    raise InputError(f"control wants volume/activity in 0..{tokenizer.config.regimes - 1}, "
                                     f"got {name}={value}")
                self.fixed[r, 0 if name == "volume" else 1] = value
        self.control = bool((self.fixed >= 0).any())
        f = tokenizer.features
        volume = np.expm1(flow.log_volume)
        firsts = np.searchsorted(flow.ts, starts - int(f.window_s * 1e9), side="left")
        refs, recent, window = np.zeros(rollouts), [], {}
        for r, (a, last) in enumerate(zip(firsts, lasts, strict=True)):
            if last not in window:  # the trailing window the regimes start from, and the reference price
                ref = float(flow.reference[last - 1]) if known[last - 1] else float(flow.price[last - 1])
                window[last] = (ref, (flow.ts[a:last], volume[a:last]))
            refs[r], w = window[last]
            recent.append(w)
        # the running unit after the real events before each start (one step on from the state before the last),
        # held through the rollout
        units = [next_unit(float(flow.log_unit[last - 1]), last - 1.0, max(int(flow.size[last - 1]), 1)
                           / self.inst.size_scale) for last in lasts]
        sides = aggressor_before(flow.side, flow.aggressive, lasts)  # what side="relative" is read against
        self.sim = Simulator(day, starts, tables(tokenizer, self.key, self.inst, flow.utc_offset), seed, refs,
                             opening, f.half_life_s, f.window_s, recent, np.asarray(units), sides)
        self.gen = torch.Generator().manual_seed(seed)
        # for pace: each dt bin's mean wait (s; the mean over its calibration quantiles, floored at a microsecond),
        # and each rollout's target, 1/pace of the real mean wait over the trailing window before its start (or
        # over its last 100 events, if the window holds fewer)
        self.waits = torch.tensor([max(float(np.mean(seconds_of(np.asarray(q)))), DT_FLOOR)
                                   for q in tokenizer.dt.quantiles])
        self.pace_target = torch.tensor([float(np.nanmean(flow.dt[min(a, max(last - 100, 0)):last]))
                                         for a, last in zip(firsts, lasts, strict=True)]) / self.sampling.pace
        self.schedule = sorted(participant, key=lambda o: o.at_s) if isinstance(participant, list) else []
        self.schedule_at = np.array([o.at_s for o in self.schedule] + [math.inf])  # inf: none left
        self.next_order = np.zeros(rollouts, dtype=np.int64)  # each rollout's place in the schedule
        self.due = np.zeros((rollouts, 5), dtype=np.int64)

    # ------------------------------------------------------------------ participants
    def _due(self) -> np.ndarray | None:
        """Participant orders due at each rollout's clock, in the simulator's ``P_*`` columns (None: none)."""
        if self.participant is None:
            return None
        self.due[:] = 0
        elapsed = (self.sim.ts - self.start_ts) / 1e9
        if callable(self.participant):  # a callback is asked once per rollout and step
            for r in range(len(elapsed)):
                view = RolloutView(self.sim.book(r), int(self.sim.ts[r]), int(self.sim.next_id[r]))
                orders = self.participant(view, float(elapsed[r]))
                if orders:
                    self._put(r, orders[0])
            return self.due
        k = self.next_order
        waiting = k < len(self.schedule)
        at = self.schedule_at[k]
        for r in np.flatnonzero(waiting & (at <= elapsed)):
            self._put(r, self.schedule[k[r]])
            k[r] += 1
        return self.due

    def _put(self, r: int, o: ScheduledOrder) -> None:
        if o.side not in (1, -1) or o.size < 1 or (o.price is not None and o.price < 1):
            raise InputError(f"a participant order needs side +1/-1, size >= 1 and a positive price or None: {o}")
        self.due[r] = (1, self.start_ts[r] + int(o.at_s * 1e9), o.side, o.size, o.price or 0)

    # ------------------------------------------------------------------ the model
    def _steer(self, rows: torch.Tensor) -> torch.Tensor:
        """Measured context rows [B, fields] with each rollout's fixed regime fields in place of the measured ones."""
        if not self.control:
            return rows
        rows = rows.clone()
        rows[:, 3:5] = torch.where(self.fixed >= 0, self.fixed, rows[:, 3:5])
        return rows

    def _logits(self, tokens: torch.Tensor, ctx: torch.Tensor, free: torch.Tensor | None, cache: KVCache,
                free_cache: KVCache | None) -> torch.Tensor:
        """Next-token logits under the steered context, guided away from the measured one when asked to."""
        device = cache.k[0].device
        logits, _ = self.model(tokens.to(device), ctx.to(device), cache=cache)
        if free is None or free_cache is None:
            return logits
        base, _ = self.model(tokens.to(device), free.to(device), cache=free_cache)
        return base + self.sampling.guidance * (logits - base)

    # ------------------------------------------------------------------ the loop
    def _caches(self) -> tuple[KVCache, KVCache | None]:
        cfg, n = self.model.cfg, self.tokens.shape[0]
        p = next(self.model.parameters())
        return (KVCache.empty(cfg, n, p.device, p.dtype),
                KVCache.empty(cfg, n, p.device, p.dtype) if self._free is not None else None)

    @torch.no_grad()
    def begin(self) -> None:
        """Read the prompt: the loop's caches and the first next-token logits. :meth:`step` then advances."""
        p = next(self.model.parameters())
        guided = self.control and self.sampling.guidance != 1.0
        # the context as the model sees it (steered, ``self.ctx``), and as measured for guidance; the prompt's
        # rows are never steered. Only the last window is kept: it is all the model and the repetition penalty see
        self._free = self.ctx.clone() if guided else None
        _check_memory(self.model.cfg, self.tokens.shape[0], guided, p.dtype, p.device)
        self._cache, self._free_cache = self._caches()
        self._next = self._logits(self.tokens, self.ctx, self._free, self._cache, self._free_cache)

    @torch.no_grad()
    def step(self, due: np.ndarray | None = None) -> None:
        """One event per rollout: one sampling call, one simulator step (``due``: participants' orders, P_*
        columns, their tokens written back), one model call for all of them."""
        c, sim = self.model.cfg.context, self.sim
        logits = self._next[:, -1]
        if self.sampling.pace != 1.0:
            logits = paced(logits, self.waits, self.pace_target)
        nxt = sample(logits, self.tokens[:, -c:].to(logits.device), self.sampling, self.gen).cpu()
        tokens = nxt.numpy().astype(np.int64)  # participants' tokens are written into it
        rows = torch.from_numpy(sim.step(tokens, due).copy())
        self.tokens = torch.cat([self.tokens[:, -c:], torch.from_numpy(tokens)[:, None]], dim=1)
        self.ctx = torch.cat([self.ctx[:, -c:], self._steer(rows)[:, None]], dim=1)
        if self._free is not None:
            self._free = torch.cat([self._free[:, -c:], rows[:, None]], dim=1)
        span = c // 2 if self._cache.length + 1 > c else 1  # a full window keeps its second half
        if span > 1:
            self._cache, self._free_cache = self._caches()
        self._next = self._logits(self.tokens[:, -span:], self.ctx[:, -span:],
                                  None if self._free is None else self._free[:, -span:], self._cache,
                                  self._free_cache)

    def run(self, events: int, progress: bool = False, duration_s: float | None = None) -> list[EventDay]:
        """Generate ``events`` order events per rollout (participant orders included), or, with ``duration_s``,
        until every rollout's clock has passed that many seconds (``events`` then caps the steps; each day is
        cut at the end time). One EventDay per rollout."""
        from tqdm.auto import tqdm

        end = self.start_ts + int(duration_s * 1e9) if duration_s else None
        self.begin()
        bar = tqdm(total=events, desc="generate", unit="step", disable=not progress)
        for _ in range(events):
            if end is not None and (self.sim.ts >= end).all():
                break
            self.step(self._due())
            bar.update()
        bar.close()
        days = self.sim.days("tradefm")
        if end is not None:
            days = [_until(d, int(e)) for d, e in zip(days, end, strict=True)]
            for d, ts, e in zip(days, self.sim.ts.tolist(), end.tolist(), strict=True):
                d.notes["cut_short"] = bool(ts < e)  # the steps ran out before its clock reached the end
        return days


def _check_scales(tok: Tokenizer, tokens: np.ndarray, key: str) -> None:
    """Refuse a day whose prices or sizes the tokenizer's bins do not cover: when most of its real order events
    before the start fall in the out-of-range bins of depth or volume, the bins were fitted on another scale
    (sizes in shares against coins, a price grid a hundred times coarser) and rollouts would mean nothing."""
    if len(tokens) < 50:
        return
    _, _, depth, volume, _ = tok.decompose(tokens)
    for name, bins, n in (("depth", depth, tok.config.radix[2]), ("volume", volume, tok.config.radix[3])):
        outside = float(np.mean((bins == 0) | (bins == n - 1)))
        if outside > 0.5:
            raise InputError(f"{key}: {outside:.0%} of its order events before the start fall outside the tokenizer's "
                             f"{name} range: its bins were fitted on instruments of another scale (fit or choose a "
                             f"tokenizer that covers it, e.g. with volume=notional)")


def _check_memory(cfg, rollouts: int, guided: bool, dtype: torch.dtype, device: torch.device) -> None:
    """Refuse a batch whose KV caches and logits would not fit in the memory free on the model's device."""
    per = (2 * cfg.layers * cfg.kv_heads * cfg.context * cfg.head_dim * dtype.itemsize * (2 if guided else 1)
           + 4 * cfg.vocab_size * 4 + 2 * cfg.context * 8 * 8)
    need = per * rollouts
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        try:
            meminfo = Path("/proc/meminfo").read_text().split()
            free = int(meminfo[meminfo.index("MemAvailable:") + 1]) * 1024
        except (OSError, ValueError):
            return
    if need > 0.9 * free:
        raise InputError(f"{rollouts:,} rollouts need about {need / 2**30:.1f} GiB for the model's caches and "
                         f"logits, and {free / 2**30:.1f} GiB is free on {device}: run fewer at a time")


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
        ro.sim.step(np.full(rollouts, token, dtype=np.int64))
    return [_until(d, end) for d in ro.sim.days("real tokens, decoded")]


def generate(model: TradeFM, tokenizer: Tokenizer, day: EventDay, start_ts: int | Sequence[int], events: int,
             rollouts: int = 4, seed: int = 0, sampling: Sampling | None = None, participant: Participant | None = None,
             control: dict[str, int] | list[dict[str, int] | None] | None = None, progress: bool = False,
             duration_s: float | None = None) -> list[EventDay]:
    """Closed-loop rollouts from the real book of ``day`` at ``start_ts`` (one start, or one per rollout)."""
    return Rollouts(model, tokenizer, day, start_ts, rollouts, seed, sampling, participant=participant,
                    control=control).run(events, progress, duration_s)


__all__ = ["FeatureConfig", "RolloutView", "Rollouts", "Sampling", "ScheduledOrder", "decode_real", "generate",
           "paced", "sample", "twap"]
