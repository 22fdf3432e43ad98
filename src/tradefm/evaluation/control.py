"""Control: do the regime fields steer generation?

Two measurements of the same question. :func:`control_effects` runs closed-loop rollouts with the volume and
activity regime fields left free or fixed low (0) or high (2) and measures what came out (volume added per minute,
events per minute, inter-arrival variance): the direct answer, but with the noise of a few short rollouts.
:func:`control_response` asks the model itself on real held-out flow: the same token histories with the fields as
recorded or fixed at every position, and the model's expected next log inter-arrival time, log volume and add
probability under each. No sampling is involved, so even a small response is measured exactly, and its sign says
whether the field pushes the requested way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..events import EventDay, InputError, Kind
from ..features import order_flow

if TYPE_CHECKING:
    from ..model import TradeFM
    from ..tokenizer import Tokenizer

SETTINGS: dict[str, dict[str, int] | None] = {
    "free": None, "volume=0": {"volume": 0}, "volume=2": {"volume": 2},
    "activity=0": {"activity": 0}, "activity=2": {"activity": 2}}
FIELD = {"volume": 3, "activity": 4}  # column of each regime field in the tokenizer's CONTEXT
CHUNK = 8  # context windows per forward pass of control_response


def _market(day: EventDay) -> np.ndarray:
    return ~day.table.column("snapshot").to_numpy()


def volume_per_minute(day: EventDay) -> float:
    t, market = day.table, _market(day)
    adds = market & (t.column("kind").to_numpy() == Kind.ADD)
    ts = t.column("ts").to_numpy()[market]
    minutes = max((ts[-1] - ts[0]) / 60e9, 1e-9) if len(ts) > 1 else 1.0
    return float(t.column("size").to_numpy()[adds].sum() / minutes)


def events_per_minute(day: EventDay) -> float:
    ts = day.table.column("ts").to_numpy()[_market(day)]
    return float(len(ts) / max((ts[-1] - ts[0]) / 60e9, 1e-9)) if len(ts) > 1 else 0.0


def inter_arrival_var(day: EventDay) -> float:
    ts = day.table.column("ts").to_numpy()[_market(day)]
    return float(np.var(np.diff(ts) / 1e9)) if len(ts) > 2 else float("nan")


def control_effects(model: TradeFM, tok: Tokenizer, day: EventDay, start: int, seed: int, rollouts: int = 8,
                    minutes: float = 5.0, guidance: float = 1.0) -> dict[str, dict[str, float]]:
    """Rollouts from one start under each of :data:`SETTINGS`: per setting the mean over rollouts, and its
    standard error, of volume added per minute, events per minute and inter-arrival variance. Every setting's
    rollouts run in one batch (sampled with that ``guidance``), from the same book and prompt."""
    from ..generation.rollout import Sampling, generate

    settings = list(SETTINGS.items())
    controls = [control for _, control in settings for _ in range(rollouts)]
    days = generate(model, tok, day, start, 200_000, len(controls), seed, Sampling(guidance=guidance),
                    control=controls, duration_s=minutes * 60)
    out = {}
    for k, (label, _) in enumerate(settings):
        row = {}
        for name, fn in (("volume_per_min", volume_per_minute), ("events_per_min", events_per_minute),
                         ("inter_arrival_var", inter_arrival_var)):
            x = np.array([fn(d) for d in days[k * rollouts:(k + 1) * rollouts]])
            row[name], row[name + "_se"] = float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))
        out[label] = row
    return out


@torch.no_grad()
def control_response(model: TradeFM, tok: Tokenizer, day: EventDay, start: int, end: int,
                     windows: int | None = None) -> dict[str, dict[str, float]]:
    """The model's expected next-event values on the real flow of ``day`` in [start, end), under each of
    :data:`SETTINGS`: ``log_dt`` (mean log inter-arrival seconds), ``log_volume`` (mean log(1 + volume)) and
    ``p_add``, averaged over every position with at least half a context window of history. The flow is cut into
    windows of the model's context (at most ``windows`` of them, evenly spread); with the field fixed, every
    position of a window carries the setting."""
    inst = day.instrument
    flow = order_flow(day, tok.features)
    ids, ctx = tok.encode(flow, inst.key)
    inside = (flow.ts >= start) & (flow.ts < end)
    width = model.cfg.context
    n = int(inside.sum()) // width * width
    if n == 0:
        raise InputError(f"the window holds fewer than one context ({width}) of order events")
    tokens = torch.from_numpy(ids[inside][:n].astype(np.int64)).view(-1, width)
    context = torch.from_numpy(ctx[inside][:n].astype(np.int64)).view(-1, width, ctx.shape[1])
    if windows is not None and len(tokens) > windows:
        keep = torch.from_numpy(np.linspace(0, len(tokens) - 1, windows).round().astype(np.int64))
        tokens, context = tokens[keep], context[keep]
    vocab = np.arange(tok.vocab_size)
    values = tok.values(vocab)
    per_token = torch.tensor(np.stack([np.log(np.maximum(values["dt"], 1e-9)), values["log_volume"],
                                       (values["action"] == 0).astype(np.float64)], axis=1), dtype=torch.float32)
    model = model.eval()
    out = {}
    for label, setting in SETTINGS.items():
        c = context.clone()
        for name, value in (setting or {}).items():
            c[:, :, FIELD[name]] = value
        total = torch.zeros(3, dtype=torch.float64)
        for a in range(0, len(tokens), CHUNK):  # a few windows at a time: the logits of all are gigabytes
            logits, _ = model(tokens[a:a + CHUNK], c[a:a + CHUNK])
            expected = torch.softmax(logits[:, width // 2:].float(), dim=-1) @ per_token  # [windows, positions, 3]
            total += expected.sum(dim=(0, 1)).double()
        mean = total / (len(tokens) * (width - width // 2))
        out[label] = dict(zip(("log_dt", "log_volume", "p_add"), mean.tolist(), strict=True))
    return out


__all__ = ["SETTINGS", "control_effects", "control_response", "events_per_minute", "inter_arrival_var",
           "volume_per_minute"]
