"""Closed-loop generation speed against batch size: rollouts, the model-only floor, and the simulator alone.

Run from the repository root after ``make demo`` (or point ``--run`` at any demo output folder):

    .venv/bin/python benchmarks/bench_generate.py [--run runs/demo] [--batches 1,8,64,256,1024] [--steps 300] \
        [--dtypes float32,bfloat16]

A rollout step is one batched forward pass with the KV cache, one sampling call, and one
:class:`tradefm.generation.simulator.Simulator` step (decode every rollout's token against its book, match, record,
measure the next context row). Rows, per batch size B:

* model only (the floor): the same forward passes, cache refills and sampling, with no decoding, book or context
  (sampled tokens are fed back with the prompt's last context row). No rollout loop can be faster.
* rollouts: :class:`tradefm.generation.rollout.Rollouts` for the same number of steps (no end time).
* simulator alone: the day's real tokens from the start decoded, matched and measured in B books at once, no model
  (:meth:`Simulator.step`, as :func:`~tradefm.generation.rollout.decode_real` runs it).

The floor is also stated as forward-pass FLOPs per second against a large single-precision matrix product on the
same machine, so a reader sees how close the model itself runs to the machine. Each batch size is run with the
model's weights and KV caches in each of ``--dtypes`` (bfloat16 is the fast one on CPUs with bf16 matrix units;
the softmax and rotary angles stay fp32). Timings are wall clock, best of
``--repeat`` after a warm-up, with PyTorch on every core (``--threads``). Memory per rollout: the simulator's arrays
after the rollouts, divided by B, and the KV cache.
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

import numpy as np
import torch

from tradefm.events import list_days, read_day
from tradefm.generation.rollout import Rollouts, Sampling, sample
from tradefm.model import KVCache, ModelConfig, TradeFM
from tradefm.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]


def best_of(fn: Callable[[object], object], repeat: int, setup: Callable[[], object] = lambda: None) -> float:
    """Best wall time of ``fn(setup())`` over ``repeat`` runs after a warm-up; ``setup`` is not timed."""
    fn(setup())
    times = []
    for _ in range(repeat):
        arg = setup()
        t0 = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t0)
    return min(times)


def forward_flops(cfg: ModelConfig, cached: float) -> float:
    """FLOPs of one token's forward pass with ``cached`` keys in view (2 per multiply-add)."""
    w, hd, f = cfg.width, cfg.head_dim, len(cfg.context_fields)
    per_layer = 2 * w * (cfg.heads * hd) * 2 + 2 * w * (2 * cfg.kv_heads * hd) + 2 * w * 2 * cfg.ffn_hidden \
        + 2 * cfg.ffn_hidden * w + 2 * 2 * cfg.heads * hd * cached
    return 2 * (w + f * cfg.field_width) * w + cfg.layers * per_layer + 2 * w * cfg.vocab_size


def machine_gflops(repeat: int, dtype: torch.dtype = torch.float32) -> float:
    """Matrix product throughput in ``dtype``: what the cores give a large, well-shaped GEMM."""
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    return 2 * 2048**3 / best_of(lambda _: a @ b, repeat) / 1e9


@torch.no_grad()
def model_only(model: TradeFM, ro: Rollouts, steps: int, seed: int) -> None:
    """The rollout loop's model work alone: forward with the cache, refill at a full window, sample."""
    cfg, n = model.cfg, ro.tokens.shape[0]
    gen = torch.Generator().manual_seed(seed)
    tokens, ctx = ro.tokens.clone(), ro.ctx.clone()
    dtype = next(model.parameters()).dtype
    cache = KVCache.empty(cfg, n, "cpu", dtype)
    logits, _ = model(tokens, ctx, cache=cache)
    for _ in range(steps):
        nxt = sample(logits[:, -1], tokens[:, -cfg.context:], Sampling(), gen)
        tokens = torch.cat([tokens[:, -cfg.context:], nxt[:, None]], dim=1)
        ctx = torch.cat([ctx[:, -cfg.context:], ctx[:, -1:]], dim=1)
        span = cfg.context // 2 if cache.length + 1 > cfg.context else 1
        if span > 1:
            cache = KVCache.empty(cfg, n, "cpu", dtype)
        logits, _ = model(tokens[:, -span:], ctx[:, -span:], cache=cache)


def simulator_only(ro: Rollouts) -> None:
    """The day's real tokens from the start, the same token in every book at each step."""
    for token in ro.real_tokens[: ro.steps].astype(np.int64):
        ro.sim.step(np.full(ro.tokens.shape[0], token, dtype=np.int64))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default=str(ROOT / "runs" / "demo"), help="a demo output folder (events/, model/)")
    ap.add_argument("--symbol", default="GOOG")
    ap.add_argument("--batches", default="1,8,64,256,1024")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--dtypes", default="float32,bfloat16", help="the model's weights and caches, one set of rows each")
    ap.add_argument("--plot", default=str(ROOT / "docs" / "generate_throughput.png"))
    args = ap.parse_args()
    run = Path(args.run)
    if not (run / "model" / "model").exists():
        print(f"{run}: no trained model (run `make demo` first, or pass --run)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    tok = Tokenizer.load(run / "model" / "model" / "tokenizer.json")
    day = next(d for d in (read_day(p) for p in list_days(run / "events")) if d.instrument.symbol == args.symbol)
    ts = day.table.column("ts").to_numpy()[~day.table.column("snapshot").to_numpy()]
    start = int(ts[0] + 0.85 * (ts[-1] - ts[0]))  # the demo's held-out start
    steps, dtypes = args.steps, args.dtypes.split(",")
    peak = {d: machine_gflops(args.repeat, getattr(torch, d)) for d in dtypes}
    models = {d: TradeFM.from_pretrained(run / "model" / "model", dtype=d).eval() for d in dtypes}
    rows, sims = [], {}
    for dtype, b in ((d, int(x)) for d in dtypes for x in args.batches.split(",")):
        model = models[dtype]
        cfg = model.cfg
        repeat = args.repeat if b <= 256 else 1
        prompt = Rollouts(model, tok, day, start, b, 0)
        floor = best_of(lambda _, prompt=prompt, model=model: model_only(model, prompt, steps, 0), repeat)
        kept: list[Rollouts] = []

        def fresh(b=b, kept=kept, model=model) -> Rollouts:
            kept[:] = [Rollouts(model, tok, day, start, b, 0)]
            kept[0].steps = steps
            return kept[0]
        full = best_of(lambda ro: ro.run(steps), repeat, fresh)
        memory = kept[0].sim.nbytes / b
        sim = sims[b] = sims.get(b) or best_of(simulator_only, repeat, fresh)  # the same for every dtype
        cached = cfg.context * 0.75  # the cache holds between half a window and a full one
        flops = forward_flops(cfg, cached) * b * steps / floor / 1e9
        kv = 2 * cfg.layers * cfg.kv_heads * cfg.context * cfg.head_dim * getattr(torch, dtype).itemsize
        rows.append({"dtype": dtype, "batch": b, "floor_s": floor, "rollouts_s": full, "simulator_s": sim,
                     "rollout_events_per_s": b * steps / full, "floor_events_per_s": b * steps / floor,
                     "simulator_events_per_s": b * steps / sim, "ratio": full / floor, "floor_gflops": flops,
                     "sim_bytes_per_rollout": memory, "kv_bytes_per_rollout": kv})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{datetime.date.today()} · {platform.processor() or platform.machine()} · torch {torch.__version__} · "
          f"{args.threads} threads · {steps} steps · best of {args.repeat} (1 at B > 256) · wall clock · "
          "matrix product peak " + ", ".join(f"{v:.0f} GFLOP/s in {d}" for d, v in peak.items()))
    print("| weights | B | rollout events/s | model-only events/s | ÷ model only | floor GFLOP/s (share of peak) | "
          "simulator alone events/s | memory per rollout (simulator + KV cache) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['dtype']} | {r['batch']} | {r['rollout_events_per_s']:,.0f} | {r['floor_events_per_s']:,.0f} | "
              f"{r['ratio']:.2f}x | {r['floor_gflops']:.1f} ({r['floor_gflops'] / peak[r['dtype']]:.0%}) | "
              f"{r['simulator_events_per_s']:,.0f} | {r['sim_bytes_per_rollout'] / 1e6:.2f} MB + "
              f"{r['kv_bytes_per_rollout'] / 1e6:.2f} MB |")
    if args.plot:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.5, 4))
        ax = fig.add_subplot()
        for dtype in dict.fromkeys(r["dtype"] for r in rows):
            mine = [r for r in rows if r["dtype"] == dtype]
            x = [r["batch"] for r in mine]
            for key, label in (("rollout_events_per_s", "rollouts"), ("floor_events_per_s", "model only (floor)")):
                ax.plot(x, [r[key] for r in mine], marker="o", label=f"{label}, {dtype}",
                        linestyle="-" if dtype == "float32" else "--")
        sim = [r for r in rows if r["dtype"] == rows[0]["dtype"]]
        ax.plot([r["batch"] for r in sim], [r["simulator_events_per_s"] for r in sim], marker="o",
                label="simulator alone", color="0.4")
        ax.set(xscale="log", yscale="log", xlabel="rollouts in the batch", ylabel="events per second",
               title=f"closed-loop generation, tiny model, {args.threads} CPU threads")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        FigureCanvasAgg(fig).print_png(args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
