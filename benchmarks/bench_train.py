"""Training throughput and memory of tradefm.model on CPU, next to litgpt at the same size, in one run.

Run from the repository root:  .venv/bin/python benchmarks/bench_train.py
(litgpt comes from the `bench` extra: `.venv/bin/pip install -e '.[bench]'`; without it the peer rows are skipped.)

1. Training tokens/s of the `tiny` and `small` presets (forward + backward + grad clip + AdamW step, fp32, random
   tokens and context), steps of ours and of the peer interleaved, best of the timed steps after warm-up steps.
   The peer is litgpt's GPT configured as a Llama (RMSNorm, RoPE on the whole head, GQA, LLaMAMLP/SwiGLU, no bias)
   with the same width, layers, heads, kv heads, ffn width and vocabulary 16,384, at the same sequence length and
   batch, with the same optimizer settings. If ours is slower, both are profiled (torch.profiler). The same is
   timed again with 1 thread on thread CPU time, which other processes on a shared machine barely disturb.
2. Peak memory (VmHWM) of one training step at batch 1 and the preset's context, per preset, each in a fresh process.
3. Activation memory per sequence counted from the model's shapes, checked against what autograd really saves
   (saved-tensor hooks on 1- and 2-layer models of the 524m shapes), and the analytical GPU memory of the 524m
   preset in bf16 under FSDP (full sharding) on 1, 3 and 8 GPUs, with and without activation checkpointing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import replace

import torch

from tradefm.model import PRESETS, ModelConfig, TradeFM, preset
from tradefm.training import TrainConfig, optimizer_for

THREADS = 2
THROUGHPUT = {"tiny": (128, 8), "small": (128, 4)}  # preset: (sequence length, batch)
WARMUP, TIMED = 3, 8
MiB, GB = 2**20, 1e9
TRAIN = TrainConfig(shards="", out="")  # only its optimizer settings are used: lr, betas, weight decay


def status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def random_batch(cfg: ModelConfig, batch: int, seq: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq + 1), generator=g)
    context = torch.stack([torch.randint(0, n, (batch, seq), generator=g) for n in cfg.context_fields], dim=-1)
    return tokens[:, :-1], context, tokens[:, 1:]


# ---------------------------------------------------------------------------------------------------- the peer
def litgpt_available() -> bool:
    try:
        import litgpt.model  # noqa: F401
    except ImportError:
        return False
    return True


def litgpt_model(cfg: ModelConfig, seq: int) -> torch.nn.Module:
    """litgpt's GPT as a Llama with our preset's shapes (no context-field embeddings: it has no such input)."""
    from litgpt.config import Config
    from litgpt.model import GPT

    lc = Config(name=f"tradefm-shape-{cfg.width}x{cfg.layers}", block_size=seq, n_layer=cfg.layers, n_embd=cfg.width,
                n_head=cfg.heads, n_query_groups=cfg.kv_heads, intermediate_size=cfg.ffn_hidden,
                vocab_size=cfg.vocab_size, padded_vocab_size=cfg.vocab_size, norm_class_name="RMSNorm",
                norm_eps=cfg.norm_eps, mlp_class_name="LLaMAMLP", bias=False, parallel_residual=False,
                rotary_percentage=1.0, rope_base=int(cfg.rope_theta))
    model = GPT(lc)
    model.apply(model._init_weights)
    return model


def peer_optimizer(model: torch.nn.Module) -> torch.optim.AdamW:
    """The same rule as tradefm.training.optimizer_for: weight decay on matrices, none on norms and embeddings."""
    embeds = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decay = [p for p in model.parameters() if p.ndim >= 2 and id(p) not in embeds]
    rest = [p for p in model.parameters() if p.ndim < 2 or id(p) in embeds]
    return torch.optim.AdamW([{"params": decay, "weight_decay": TRAIN.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=TRAIN.lr, betas=TRAIN.betas)


# ---------------------------------------------------------------------------------------------------- throughput
def make_steps(name: str, with_peer: bool) -> tuple[dict[str, Callable[[], None]], dict[str, int]]:
    """One training step closure per model (ours, and the peer if available), and their parameter counts."""
    seq, batch = THROUGHPUT[name]
    cfg = preset(name)
    x, c, y = random_batch(cfg, batch, seq)
    torch.manual_seed(0)
    ours = TradeFM(cfg).train()
    models: dict[str, tuple[torch.nn.Module, Callable[[], torch.Tensor], torch.optim.Optimizer]] = {
        "tradefm": (ours, lambda: ours(x, c, y)[1], optimizer_for(ours, TRAIN))}
    if with_peer:
        from litgpt.utils import chunked_cross_entropy  # the loss litgpt's own pretraining loop uses

        torch.manual_seed(0)
        peer = litgpt_model(cfg, seq).train()
        models["litgpt"] = (peer, lambda: chunked_cross_entropy(peer(x), y), peer_optimizer(peer))

    def stepper(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor],
                opt: torch.optim.Optimizer) -> Callable[[], None]:
        def step() -> None:
            loss = loss_fn()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    steps = {k: stepper(*v) for k, v in models.items()}
    params = {k: sum(p.numel() for p in v[0].parameters()) for k, v in models.items()}
    return steps, params


def time_steps(steps: dict[str, Callable[[], None]], clock: Callable[[], float]) -> dict[str, list[float]]:
    """Warm-up steps, then timed steps with the models interleaved (order alternating) so that load from other
    processes on the machine falls on both alike."""
    for _ in range(WARMUP):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    names = list(steps)
    for i in range(TIMED):
        for k in names if i % 2 == 0 else names[::-1]:
            t0 = clock()
            steps[k]()
            times[k].append(clock() - t0)
    return times


def profile_table(steps: dict[str, Callable[[], None]], top: int = 16) -> None:
    """Self CPU time per op and training step on 1 thread: the models' steps profiled alternately, the least of 3
    per op (a step's large fresh buffers page-fault on first touch, and that time lands on whichever op writes
    them first)."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    best: dict[str, dict[str, float]] = {}
    for _ in range(3):
        for k, step in steps.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                step()
            for ev in prof.key_averages():
                cell = best.setdefault(ev.key, {})
                cell[k] = min(cell.get(k, float("inf")), ev.self_cpu_time_total / 1000)  # ms
    torch.set_num_threads(THREADS)
    names = list(steps)
    rows = sorted(best.items(), key=lambda kv: -max(kv[1].values()))[:top]
    print(f"\nself CPU ms per step (1 thread, least of 3), top {top} ops:\n")
    print("| op | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for op, v in rows:
        print(f"| `{op}` | " + " | ".join(f"{v.get(n, 0.0):.1f}" for n in names) + " |")
    print("| all ops | " + " | ".join(f"{sum(v.get(n, 0.0) for v in best.values()):.1f}" for n in names) + " |")


def first_touch_probe(rows: int, vocab: int) -> None:
    """What a fresh logits-sized buffer costs: glibc serves allocations of 32 MiB and more with a new mmap, so each
    step's logits, log-probabilities and their gradients page-fault on first touch."""
    import resource

    torch.set_num_threads(1)
    x = torch.randn(rows, vocab)
    out = torch.empty_like(x)

    def best(fn: Callable[[], object]) -> tuple[float, int]:
        times, faults = [], 0
        for _ in range(8):
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
        return min(times) * 1000, faults

    (fresh, nf), (reused, _) = best(lambda: torch.log_softmax(x, -1)), best(lambda: torch.log_softmax(x, -1, out=out))
    torch.set_num_threads(THREADS)
    print(f"\nfirst touch: log_softmax of [{rows}, {vocab}] fp32 ({x.nbytes / MiB:.0f} MiB) into a fresh buffer "
          f"{fresh:.1f} ms ({nf:,} page faults) against {reused:.1f} ms into a reused one (1 thread)")


MODES = (  # (label, torch threads, clock)
    ("2 threads, wall clock", THREADS, time.perf_counter),
    ("1 thread, thread CPU time (insensitive to other processes' load)", 1, time.thread_time),
)


def throughput(with_peer: bool, force_profile: bool) -> None:
    print("\n### Training tokens/s (fp32, forward + backward + clip + AdamW)\n")
    print("| timing | model | preset shape | params | seq | batch | tokens/step | best s/step | median s/step "
          "| best tokens/s | ours ÷ peer (best) | ours ÷ peer (median) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    notes: list[str] = []
    profiles: list[tuple[str, dict[str, Callable[[], None]]]] = []
    for label, threads, clock in MODES:
        torch.set_num_threads(threads)
        for name, (seq, batch) in THROUGHPUT.items():
            steps, params = make_steps(name, with_peer)
            times = time_steps(steps, clock)
            best = {k: min(v) for k, v in times.items()}
            med = {k: statistics.median(v) for k, v in times.items()}
            for k in steps:
                ratio = ratio_med = "—"
                if k == "tradefm" and "litgpt" in steps:
                    ratio = f"**{best['litgpt'] / best[k]:.2f}x**"
                    ratio_med = f"{med['litgpt'] / med[k]:.2f}x"
                print(f"| {label} | {k} | {name} | {params[k]:,} | {seq} | {batch} | {seq * batch:,} | "
                      f"{best[k]:.3f} | {med[k]:.3f} | {seq * batch / best[k]:,.0f} | {ratio} | {ratio_med} |")
            if "litgpt" in params and threads == THREADS:
                diff = (params["tradefm"] - params["litgpt"]) / params["litgpt"]
                notes.append(f"{name}: ours has {diff:+.2%} parameters against litgpt (the context-field "
                             "embeddings and their projection)")
            if "litgpt" in steps and threads == THREADS and (force_profile or best["tradefm"] > best["litgpt"]):
                profiles.append((name, steps))
    torch.set_num_threads(THREADS)
    for note in notes:
        print(f"\n{note}")
    for name, steps in profiles:
        print(f"\nprofile of {name} (ours was slower on the best 2-thread step, or --profile):")
        profile_table(steps)
    seq, batch = THROUGHPUT["tiny"]
    first_touch_probe(seq * batch, PRESETS["tiny"].vocab_size)
    if not with_peer:
        print("\nlitgpt is not installed: the peer rows are skipped (`.venv/bin/pip install -e '.[bench]'`).")


# ---------------------------------------------------------------------------------------------------- peak memory
def memory_child(name: str, seq: int) -> None:
    """Runs in a fresh process: one training step at batch 1; prints JSON with VmHWM at each stage."""
    torch.set_num_threads(THREADS)
    cfg = preset(name)
    torch.manual_seed(0)
    model = TradeFM(cfg).train()
    opt = optimizer_for(model, TRAIN)
    x, c, y = random_batch(cfg, 1, seq)
    out = {"params": model.num_params(), "rss_built_kb": status_kb("VmRSS"), "hwm_built_kb": status_kb("VmHWM")}
    t0 = time.perf_counter()
    _, loss = model(x, c, y)
    loss.backward()
    out["hwm_backward_kb"] = status_kb("VmHWM")
    torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    out["seconds"] = time.perf_counter() - t0
    out["hwm_kb"] = status_kb("VmHWM")
    print(json.dumps(out))


def peak_memory() -> None:
    print("\n### Peak memory of one training step (CPU, fp32, batch 1, fresh process per preset)\n")
    print("| preset | params | seq | peak (VmHWM) MiB | peak up to end of backward MiB | RSS after import + build MiB "
          "| weights+grads+AdamW 16 B/param MiB | activations (count, fp32) MiB | step s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, cfg in PRESETS.items():
        seq = cfg.context
        r = subprocess.run([sys.executable, __file__, "--memory-child", name, str(seq)], capture_output=True,
                           text=True, check=True)
        m = json.loads(r.stdout.strip().splitlines()[-1])
        act = activation_count(cfg, seq, 4)["total"]
        print(f"| {name} | {m['params']:,} | {seq} | {m['hwm_kb'] / 1024:,.0f} | {m['hwm_backward_kb'] / 1024:,.0f} | "
              f"{m['rss_built_kb'] / 1024:,.0f} | {16 * m['params'] / MiB:,.0f} | {act / MiB:,.0f} | "
              f"{m['seconds']:.1f} |")


# ---------------------------------------------------------------------------------------------------- activations
def activation_count(cfg: ModelConfig, seq: int, nbytes: int) -> dict[str, float]:
    """Bytes autograd keeps per sequence of ``seq`` tokens, counted from the shapes: elements of ``nbytes``, except
    that RMSNorm (decomposed by autograd on this build, computed in fp32) keeps its input and the normalized x in
    fp32, and logsumexp, the norms' reciprocal roots and the probabilities of the loss are fp32.

    Per block and token: each RMSNorm keeps its input and the normalized x (fp32) and its output (the next matmul's
    input, d); attention keeps q (d), k after RoPE (kv), the k|v projection output that v is a view of (2 kv), the
    attention output (d) and its head-merged copy that goes into o (d), and a logsumexp per head; the SwiGLU keeps
    the gate|up output (2f), silu(gate) (f) and the product that goes into down (f).
    Outside the blocks: the concatenated embeddings (d + fields x field_width), the final RMSNorm and the
    probabilities of the loss (vocab, fp32: ``LinearCrossEntropy`` keeps no logits)."""
    d, f, kv = cfg.width, cfg.ffn_hidden, cfg.kv_heads * cfg.head_dim
    norm = d * (8 + nbytes) + 4  # fp32 input and normalized x, the output, the fp32 reciprocal root
    layer = seq * (2 * norm + (3 * d + 3 * kv + 4 * f) * nbytes + cfg.heads * 4)
    outside = seq * ((d + len(cfg.context_fields) * cfg.field_width) * nbytes + norm
                     + cfg.vocab_size * 4)
    return {"layer": layer, "outside": outside, "total": cfg.layers * layer + outside,
            "checkpointed": cfg.layers * seq * d * nbytes + layer + outside}


def saved_bytes(cfg: ModelConfig, seq: int, dtype: torch.dtype, autocast: bool) -> int:
    """Bytes of the distinct storages autograd saves in one forward (parameters and buffers excluded)."""
    torch.manual_seed(0)
    model = TradeFM(cfg).to(dtype).train()
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in own:
            seen[s.data_ptr()] = s.nbytes()
        return t

    x, c, y = random_batch(cfg, 1, seq)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), amp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rms_norm under autocast: "cannot dispatch to fused implementation"
        _, loss = model(x, c, y)
    del loss
    return sum(seen.values())


def measured_activations(cfg: ModelConfig) -> dict[str, float]:
    """Per-block bytes saved for backward at the preset's context, from 1- and 2-layer models of its shapes:
    bf16 weights without autocast (FSDP MixedPrecisionPolicy), and fp32 weights under bf16 autocast (what
    tradefm.training does on CUDA), where a block's saved bytes are weight copies + activations; the two are told
    apart by measuring at half the sequence too (the weights do not scale with it)."""
    seq = cfg.context
    one, two = replace(cfg, layers=1), replace(cfg, layers=2)
    bf16 = saved_bytes(two, seq, torch.bfloat16, False) - saved_bytes(one, seq, torch.bfloat16, False)
    full = saved_bytes(two, seq, torch.float32, True) - saved_bytes(one, seq, torch.float32, True)
    half = saved_bytes(two, seq // 2, torch.float32, True) - saved_bytes(one, seq // 2, torch.float32, True)
    return {"bf16_layer": bf16, "amp_layer": full, "amp_weights": 2 * half - full, "amp_acts": 2 * (full - half)}


# ---------------------------------------------------------------------------------------------------- GPU estimate
def gpu_estimate() -> None:
    name = "524m"
    cfg = preset(name)
    seq, layers = cfg.context, cfg.layers
    model = TradeFM(cfg)
    p_total = model.num_params()
    p_block = sum(p.numel() for p in model.blocks[0].parameters())
    p_root = p_total - layers * p_block  # embeddings, projection, final norm, head: FSDP's root unit
    p_root_mm = model.project.weight.numel() + model.head.weight.numel()  # the root's matmul weights
    del model
    est = activation_count(cfg, seq, 2)
    meas = measured_activations(cfg)
    print(f"\n### Activation memory per sequence ({name}, context {seq})\n")
    print("| per block, per sequence | MiB |")
    print("|---|---:|")
    print(f"| bf16, counted from the shapes (see `activation_count`) | {est['layer'] / MiB:.1f} |")
    print(f"| bf16 weights, no autocast: measured (saved-tensor hooks, CPU) | {meas['bf16_layer'] / MiB:.1f} |")
    print(f"| fp32 weights + bf16 autocast (training.py on CUDA), measured on CPU autocast: total | "
          f"{meas['amp_layer'] / MiB:.1f} |")
    print(f"| … of which activations (scale with the sequence) | {meas['amp_acts'] / MiB:.1f} |")
    print(f"| … of which bf16 copies of the block's weights (constant; 2 B x {p_block:,} = "
          f"{2 * p_block / MiB:.1f}) | {meas['amp_weights'] / MiB:.1f} |")
    print(f"| outside the blocks, bf16 (embeddings, final norm, probabilities fp32) | "
          f"{est['outside'] / MiB:.1f} |")

    # (a) FSDP2 with MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)
    head_grads = seq * cfg.vocab_size * 2  # the logits' gradient is made in place, then cast to bf16
    act_a = layers * est["layer"] + est["outside"] + head_grads
    ckpt_a = est["checkpointed"] + head_grads
    gathered_a = 2 * (p_root + 2 * p_block) + 2 * p_root + 6 * p_block
    # (b) tradefm.training as written: fully_shard without a mixed-precision policy + torch.autocast(bf16)
    amp_copies = layers * meas["amp_weights"] + 2 * p_root_mm  # saved for backward, on every GPU, not sharded
    act_b = layers * meas["amp_acts"] + est["outside"] + head_grads + amp_copies
    ckpt_b = layers * seq * cfg.width * 2 + meas["amp_layer"] + est["outside"] + head_grads + 2 * p_root_mm
    gathered_b = 4 * (p_root + 2 * p_block) + 4 * p_root + 4 * p_block
    print(f"\n### GPU memory per device, {name} ({p_total:,} params), bf16 compute, FSDP full sharding, "
          f"1 sequence of {seq} per GPU (GB = 1e9 B)\n")
    print("| scheme | GPUs | fp32 params+grads+AdamW, sharded (16 B/param ÷ N) | unsharded working set | "
          "activations, no ckpt | activations, ckpt | total, no ckpt | total, ckpt | +GB per extra sequence "
          "(no ckpt / ckpt) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, gathered, act, ckpt in (("(a) bf16 MixedPrecisionPolicy", gathered_a, act_a, ckpt_a),
                                       ("(b) training.py: fp32 gather + autocast", gathered_b, act_b, ckpt_b)):
        per_seq = act - (amp_copies if label.startswith("(b)") else 0)
        per_seq_ckpt = ckpt - (2 * p_root_mm if label.startswith("(b)") else 0)
        for n in (1, 3, 8):
            states = 16 * p_total / n
            print(f"| {label} | {n} | {states / GB:.2f} | {gathered / GB:.2f} | {act / GB:.2f} | {ckpt / GB:.2f} | "
                  f"{(states + gathered + act) / GB:.2f} | {(states + gathered + ckpt) / GB:.2f} | "
                  f"{per_seq / GB:.2f} / {per_seq_ckpt / GB:.2f} |")
    print("\nN = 1 is FSDP over one device (tradefm.training wraps only when distributed; a plain single-GPU run "
          "holds the same 16 B/param without the unsharded copies).")
    print("Not counted: CUDA context and NCCL buffers (~0.5-1 GB), allocator fragmentation, and in (b) the "
          "autocast cast of the next block while the previous is still referenced.")


# ---------------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memory-child", nargs=2, metavar=("PRESET", "SEQ"), help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help="profile ours and the peer even if ours is faster")
    ap.add_argument("--skip-memory", action="store_true", help="skip the per-preset peak memory subprocesses")
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]))
        return
    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    peer = litgpt_available()
    versions = f"torch {torch.__version__}"
    if peer:
        from importlib.metadata import version

        versions += f", litgpt {version('litgpt')}"
    print(f"## bench_train ({datetime.date.today()}): {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, {versions}, Python "
          f"{platform.python_version()}; load average at start {os.getloadavg()[0]:.2f}")
    print(f"timing: {WARMUP} warm-up steps, then {TIMED} timed steps per model, ours and peer interleaved")
    throughput(peer, args.profile)
    load = os.getloadavg()[0]
    print(f"\nload average after the throughput runs: {load:.2f}")
    if load > THREADS + 0.75:  # this run alone keeps it at about THREADS
        print("warning: other processes were using the CPUs during the timing; the 2-thread wall-clock rows are "
              "unreliable, the 1-thread CPU-time rows much less so")
    if not args.skip_memory:
        peak_memory()
    gpu_estimate()
    print(f"\nwhole run {time.perf_counter() - t0:.0f} s; load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
