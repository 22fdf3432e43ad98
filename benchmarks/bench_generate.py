"""Closed-loop generation speed: rollouts against the model-only floor, on a trained run's held-out start.

Run from the repository root after ``make demo`` (or point ``--run`` at any demo output folder):

    .venv/bin/python benchmarks/bench_generate.py [--run runs/demo] [--rollouts 8] [--steps 400] [--repeat 3]

A rollout step is the model's forward pass with the KV cache, sampling, then per rollout: decode the token into an
order against that rollout's book, apply it in the matching engine, measure the next context row. Rows:

* model only (the floor): the same batched forward passes, cache refills and sampling, with no decoding, book or
  context (sampled tokens are fed back with the prompt's last context row). No rollout loop can be faster.
* rollouts: :func:`tradefm.generation.rollout.generate`, the same number of steps (no end time).
* rollouts, guided control: the same with ``control={"activity": 2}`` and guidance 4, as the demo's control
  measurement runs them (two forward passes a step).
* decoding only: :func:`tradefm.generation.rollout.decode_real`, the real tokens decoded against the same books
  (the rollout's per-event work without the model).

The ratio rollouts ÷ model only is the cost of everything around the model. Timings: best of ``--repeat`` after
one warm-up, on thread CPU time with ``torch.set_num_threads(1)`` (so all the work runs on the timed thread): on a
shared 2-core machine wall-clock times of this Python-heavy loop scattered by a quarter from run to run, thread
CPU time by a few percent. The rollout loop runs with 1 or 2 threads alike (same tokens; 1 thread was 8% faster
on the demo's tiny model).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tradefm.events import list_days, read_day
from tradefm.generation.rollout import Rollouts, Sampling, decode_real, generate, sample
from tradefm.model import KVCache, TradeFM
from tradefm.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]


def best_of(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return min(times)


@torch.no_grad()
def model_only(model: TradeFM, ro: Rollouts, steps: int, seed: int) -> None:
    """The rollout loop's model work alone: forward with the cache, refill at a full window, sample."""
    cfg, n = model.cfg, ro.tokens.shape[0]
    gen = torch.Generator().manual_seed(seed)
    tokens, ctx = ro.tokens.clone(), ro.ctx.clone()
    cache = KVCache.empty(cfg, n, "cpu", torch.float32)
    logits, _ = model(tokens, ctx, cache=cache)
    for _ in range(steps):
        nxt = sample(logits[:, -1], tokens[:, -cfg.context:], Sampling(), gen)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        ctx = torch.cat([ctx, ctx[:, -1:]], dim=1)
        span = cfg.context // 2 if cache.length + 1 > cfg.context else 1
        if span > 1:
            cache = KVCache.empty(cfg, n, "cpu", torch.float32)
        logits, _ = model(tokens[:, -span:], ctx[:, -span:], cache=cache)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default=str(ROOT / "runs" / "demo"), help="a demo output folder (events/, model/)")
    ap.add_argument("--symbol", default="GOOG")
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    run = Path(args.run)
    if not (run / "model" / "model").exists():
        print(f"{run}: no trained model (run `make demo` first, or pass --run)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    model = TradeFM.from_pretrained(run / "model" / "model").eval()
    tok = Tokenizer.load(run / "model" / "model" / "tokenizer.json")
    day = next(d for d in (read_day(p) for p in list_days(run / "events")) if d.instrument.symbol == args.symbol)
    ts = day.table.column("ts").to_numpy()[~day.table.column("snapshot").to_numpy()]
    start = int(ts[0] + 0.85 * (ts[-1] - ts[0]))  # the demo's held-out start
    n, steps = args.rollouts, args.steps
    prompt = Rollouts(model, tok, day, start, n, 0)
    real_s = (int(prompt.real_ts[steps]) - start) / 1e9  # the real time that holds `steps` order events

    rows = {
        "model only (floor)": best_of(lambda: model_only(model, prompt, steps, 0), args.repeat),
        "rollouts": best_of(lambda: generate(model, tok, day, start, steps, n, 0), args.repeat),
        "rollouts, guided control": best_of(lambda: generate(model, tok, day, start, steps, n, 0,
                                                             Sampling(guidance=4.0), control={"activity": 2}),
                                            args.repeat),
        "decoding only (real tokens)": best_of(lambda: decode_real(tok, day, start, real_s, n, 0), args.repeat),
    }
    floor = rows["model only (floor)"]
    print(f"{datetime.date.today()} · {platform.processor() or platform.machine()} · torch {torch.__version__} · "
          f"{n} rollouts x {steps} steps · best of {args.repeat}, thread CPU time, 1 thread")
    print("| row | seconds | rollout events/s | ÷ model only |")
    print("|---|---:|---:|---:|")
    for name, sec in rows.items():
        print(f"| {name} | {sec:.2f} | {n * steps / sec:,.0f} | {sec / floor:.2f}x |")
    print(json.dumps({k: round(v, 3) for k, v in rows.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
