"""Training TradeFM: one loop from a 2-core laptop to many GPUs (``torchrun``: DDP, or FSDP2 for big presets).

Random windows are drawn from the memory-mapped training shards. Every process draws the same *global* batch
and trains on its own slice of it, so a run on N processes takes the same steps as one process with the whole
batch. Checkpoints hold model, optimizer, schedule, step, sampler and RNG states and are written atomically, so a
killed run resumes where its last checkpoint left it and continues exactly as if it had not stopped.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
import tomllib
from contextlib import nullcontext
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .events import InputError, read_json
from .model import ModelConfig, TradeFM, preset
from .shards import load_shard, read_manifest
from .tokenizer import Tokenizer


@dataclass
class TrainConfig:
    shards: str  # a folder written by `tradefm tokenize`
    out: str  # the run folder: checkpoint, logs, final model
    preset: str = "tiny"
    model: dict = field(default_factory=dict)  # overrides of the preset (e.g. context, dropout)
    aggressor_weight: float = 1.0  # an aggressor target's weight in the loss against other events' 1
    seq_len: int = 0  # 0: the model's context; shorter: the saved model's context is this
    batch_size: int = 16  # global batch (all processes together), in sequences
    grad_accum: int = 1
    max_steps: int = 1000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_batches: int = 10
    ckpt_every: int = 100
    log_every: int = 10
    seed: int = 0
    compile: bool = False
    activation_checkpointing: bool = False
    fsdp: bool = False  # shard with FSDP2 instead of replicating with DDP (when distributed)
    device: str = "auto"  # auto: cuda if available, else cpu
    progress: bool = True

    @classmethod
    def load(cls, path: str | Path, **overrides: object) -> TrainConfig:
        """A TOML or JSON file of these fields; relative paths are taken from the file's folder."""
        path = Path(path)
        if path.suffix == ".toml":
            try:
                raw = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as e:
                raise InputError(f"{path}: not a TOML file of training settings ({e})") from None
        else:
            raw = read_json(path, "a JSON file of training settings")
        if not isinstance(raw, dict):
            raise InputError(f"{path}: not a table of training settings (a {type(raw).__name__})")
        raw.update(overrides)
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"{path}: unknown training settings {sorted(unknown)}")
        needed = {"shards": "the folder written by `tradefm tokenize`", "out": "the run folder"}
        missing = [f"no '{f.name}' setting ({needed.get(f.name, 'required')})" for f in fields(cls)
                   if f.default is MISSING and f.default_factory is MISSING and f.name not in raw]
        if missing:
            raise InputError(f"{path}: {', '.join(missing)}")
        kinds = {"str": str, "int": int, "float": (int, float), "bool": bool, "dict": dict}
        names = {"str": "text", "int": "an integer", "float": "a number", "bool": "true or false", "dict": "a table"}
        for f in fields(cls):  # a wrong type is said here, not as a failure steps into training
            want = kinds.get(str(f.type))
            value = raw.get(f.name)
            if f.name in raw and want and (not isinstance(value, want) or isinstance(value, bool) != (want is bool)):
                raise InputError(f"{path}: setting {f.name} = {value!r} is not {names[str(f.type)]}")
        for key in ("shards", "out"):
            if key in raw and not Path(raw[key]).is_absolute():
                raw[key] = str((path.parent / raw[key]).resolve())
        if "betas" in raw:
            raw["betas"] = tuple(raw["betas"])
        return cls(**raw)


class Windows:
    """Random training windows from memory-mapped shards: (tokens, context, next tokens).

    A shard is chosen with probability proportional to the windows it holds, then a start inside it. The
    generator's state is the data position: saving and restoring it replays the same batches."""

    def __init__(self, root: str | Path, split: str, seq_len: int, seed: int) -> None:
        manifest = read_manifest(root)
        self.shards = [load_shard(root, f, manifest["token_dtype"]) for f in manifest["files"]
                       if f["split"] == split and f["tokens"] > seq_len + 1]
        if not self.shards:
            raise InputError(f"{root}: no {split} shard holds more than {seq_len + 1} tokens")
        self.seq_len = seq_len
        sizes = np.array([len(t) - seq_len - 1 for t, _ in self.shards], dtype=np.float64)
        # the draws of ``rng.choice(p=sizes / sizes.sum())`` (the same stream), the cumulative sum made once
        self.cdf = (sizes / sizes.sum()).cumsum()
        self.cdf /= self.cdf[-1]
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        picks = self.cdf.searchsorted(self.rng.random(n), side="right")
        xs, cs, ys = [], [], []
        for i in picks:
            tokens, ctx = self.shards[i]
            s = int(self.rng.integers(0, len(tokens) - self.seq_len - 1))
            xs.append(tokens[s:s + self.seq_len].astype(np.int64))
            ys.append(tokens[s + 1:s + self.seq_len + 1].astype(np.int64))
            cs.append(np.asarray(ctx[s:s + self.seq_len]))
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(cs)), torch.from_numpy(np.stack(ys))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to ``min_lr`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """torchrun sets RANK/WORLD_SIZE: NCCL on GPUs, gloo on CPUs."""
    if "RANK" not in os.environ:
        return Dist()
    d = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return d


def wrap(model: TradeFM, cfg: TrainConfig, d: Dist, device: torch.device) -> torch.nn.Module:
    """The same model under DDP or FSDP2 when distributed, as it is otherwise."""
    model.checkpointing = cfg.activation_checkpointing
    if d.world > 1 and cfg.fsdp:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        # on GPUs FSDP casts the gathered weights to bf16 itself (autocast would keep unsharded bf16 copies)
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
            if device.type == "cuda" else MixedPrecisionPolicy()
        for block in model.blocks:
            fully_shard(block, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
    elif d.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.index else None)
    return torch.compile(model) if cfg.compile else model


def optimizer_for(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """Decoupled weight decay on matrices; none on norms and embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "embed" not in name else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas)


def _full_state(model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _model_state(model: torch.nn.Module) -> dict:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _save_model(folder: Path, state: dict, mcfg: ModelConfig, cfg: TrainConfig, d: Dist,
                best: dict[str, float] | None = None) -> None:
    """A complete model folder from full weights (every rank gathered them; rank 0 writes)."""
    if not d.main:
        return
    from .tokenizer import Tokenizer

    model = TradeFM(mcfg)
    model.load_state_dict(state)
    tok_file = Path(cfg.shards) / "tokenizer.json"
    model.save_pretrained(folder, Tokenizer.load(tok_file) if tok_file.exists() else None)
    if best is not None:
        (folder / "best.json").write_text(json.dumps(best))


def _load_state(model: torch.nn.Module, opt: torch.optim.Optimizer, model_sd: dict, opt_sd: dict) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    set_state_dict(model, opt, model_state_dict=model_sd, optim_state_dict=opt_sd,
                   options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=False))


def save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, windows: Windows,
                    d: Dist, token_space: str, best: dict[str, float]) -> None:
    model_sd, opt_sd = _full_state(model, opt)  # every rank takes part; rank 0 writes
    if not d.main:
        return
    state = {"model": model_sd, "optimizer": opt_sd, "step": step, "sampler": windows.rng.bit_generator.state,
             "torch_rng": torch.get_rng_state(), "token_space": token_space, "best": best}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def evaluate(model: torch.nn.Module, windows: Windows, cfg: TrainConfig, d: Dist, device: torch.device,
             amp: object) -> float:
    """Mean validation loss over the same windows every time (a fixed seed), shared across processes."""
    windows.rng = np.random.default_rng(cfg.seed + 1_000_003)
    model.eval()
    total = torch.zeros(2, device=device)
    with torch.no_grad():
        for _ in range(cfg.eval_batches):
            x, c, y = (t.to(device) for t in _slice(windows.batch(cfg.batch_size), d))
            with amp:
                _, loss = model(x, c, y)
            total += torch.stack([loss.float() * len(x), torch.tensor(float(len(x)), device=device)])
    if d.world > 1:
        dist.all_reduce(total)
    model.train()
    return float(total[0] / total[1])


def _slice(batch: tuple[torch.Tensor, ...], d: Dist) -> tuple[torch.Tensor, ...]:
    """This process's rows of a global batch."""
    n = len(batch[0]) // d.world
    return tuple(t[d.rank * n:(d.rank + 1) * n] for t in batch)


def train(cfg: TrainConfig) -> dict:
    """Train (or resume) a run; returns the final metrics. The model is saved to ``out/model``."""
    device_name = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    d = setup_distributed(device_name)
    device = torch.device(f"cuda:{d.local_rank}" if device_name == "cuda" else device_name)
    if cfg.batch_size % (d.world * cfg.grad_accum):
        raise InputError(f"batch_size {cfg.batch_size} must divide by processes x grad_accum")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    manifest = read_manifest(cfg.shards)
    # ids factorized by the tokenizer's radix unless the run says otherwise (model.token_fields = [])
    mcfg = preset(cfg.preset, **{"vocab_size": manifest["vocab_size"],
                                 "context_fields": tuple(manifest["context_sizes"]),
                                 "token_fields": tuple(manifest.get("radix", ())), **cfg.model})
    mcfg = replace(mcfg, token_fields=tuple(mcfg.token_fields),
                   token_groups=tuple(tuple(g) for g in mcfg.token_groups))
    seq_len = cfg.seq_len or mcfg.context
    if seq_len > mcfg.context:
        raise InputError(f"seq_len {seq_len} is longer than the model's context {mcfg.context}: raise "
                         "model.context or shorten seq_len")
    # the model is as long as what it learned: a rollout's window past seq_len would meet positions no step trained
    mcfg = replace(mcfg, context=seq_len)
    model = TradeFM(mcfg)
    if cfg.aggressor_weight != 1.0:
        if not cfg.aggressor_weight > 0:
            raise InputError(f"aggressor_weight must be positive, not {cfg.aggressor_weight}")
        weights = 1 + (cfg.aggressor_weight - 1) * Tokenizer.load(Path(cfg.shards) / "tokenizer.json").aggressors()
        model.target_weights = torch.tensor(weights, dtype=torch.float32)
        model.logit_bias = -model.target_weights.log()
    model = model.to(device)
    train_w = Windows(cfg.shards, "train", seq_len, cfg.seed)
    val_w = Windows(cfg.shards, "val", seq_len, cfg.seed)
    net = wrap(model, cfg, d, device)
    opt = optimizer_for(net, cfg)
    bf16_autocast = device.type == "cuda" and not (cfg.fsdp and d.world > 1)  # FSDP's policy does it instead
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if bf16_autocast else nullcontext()

    ckpt, step = out / "checkpoint.pt", 0
    best: dict[str, float] = {"step": 0, "val_loss": math.inf, "val_ppl": math.inf}
    if ckpt.exists():  # resume: everything that decides the next step comes back
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if state.get("token_space") != manifest["tokenizer_hash"]:
            raise InputError(f"{ckpt} was trained on token space {state.get('token_space')}, but the shards are "
                             f"{manifest['tokenizer_hash']}: resume only with the shards it was trained on, or "
                             "train into a new folder")
        _load_state(net, opt, state["model"], state["optimizer"])
        step, best = int(state["step"]), state.get("best", best)
        train_w.rng.bit_generator.state = state["sampler"]
        torch.set_rng_state(state["torch_rng"])
    log = _Log(out, step, d.main)
    if d.main:
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))
        (out / "model_config.json").write_text(json.dumps(asdict(mcfg), indent=1))

    tokens_per_step = cfg.batch_size * seq_len
    bar = tqdm(total=cfg.max_steps, initial=step, desc="train", unit="step", disable=not (cfg.progress and d.main))
    metrics: dict[str, float] = {}
    net.train()
    while step < cfg.max_steps:
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        x, c, y = _slice(train_w.batch(cfg.batch_size), d)
        micro = len(x) // cfg.grad_accum
        loss_sum = torch.zeros((), device=device)
        for k in range(cfg.grad_accum):
            part = slice(k * micro, (k + 1) * micro)
            sync = k == cfg.grad_accum - 1 or not isinstance(net, torch.nn.parallel.DistributedDataParallel)
            with (nullcontext() if sync else net.no_sync()), amp:
                _, loss = net(x[part].to(device), c[part].to(device), y[part].to(device))
                (loss / cfg.grad_accum).backward()
            loss_sum += loss.detach() / cfg.grad_accum
        norm = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if d.world > 1:
            dist.all_reduce(loss_sum)
            loss_sum /= d.world
        dt = time.perf_counter() - t0
        metrics = {"step": step, "loss": float(loss_sum), "lr": lr_at(step - 1, cfg), "grad_norm": float(norm),
                   "tokens_per_s": tokens_per_step / dt}
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            metrics["val_loss"] = evaluate(net, val_w, cfg, d, device, amp)
            metrics["val_ppl"] = math.exp(metrics["val_loss"])
            if metrics["val_loss"] < best["val_loss"]:  # the early-stopping model, kept as training goes on
                best = {"step": step, "val_loss": metrics["val_loss"], "val_ppl": metrics["val_ppl"]}
                _save_model(out / "best_model", _model_state(net), mcfg, cfg, d, best)
        log.write(metrics, every=cfg.log_every)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", tok_s=f"{metrics['tokens_per_s']:,.0f}")
        bar.update(1)
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
            save_checkpoint(ckpt, net, opt, step, train_w, d, manifest["tokenizer_hash"], best)
    bar.close()
    log.close()
    if d.world > 1 and not cfg.fsdp:  # replicas must hold the very same weights: record each one's fingerprint
        import hashlib

        digest = hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in model.parameters()))
        prints = [None] * d.world
        dist.all_gather_object(prints, digest.hexdigest())
        if d.main:
            (out / "replicas.json").write_text(json.dumps(prints))
    if d.main:  # the last step always checkpoints: the final model is that checkpoint's weights
        _save_model(out / "model", torch.load(ckpt, map_location="cpu", weights_only=True)["model"], mcfg, cfg, d)
    if d.world > 1:
        dist.barrier()
    return metrics


class _Log:
    """CSV and TensorBoard logs on the main process; a resumed run drops rows past its checkpoint."""

    COLUMNS = ("step", "loss", "lr", "grad_norm", "tokens_per_s", "val_loss", "val_ppl")

    def __init__(self, out: Path, step: int, main: bool) -> None:
        self.main = main
        if not main:
            return
        path = out / "log.csv"
        rows = []
        if path.exists() and step > 0:
            with open(path) as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        self.file = open(path, "w", newline="")  # noqa: SIM115 (kept open for the run)
        self.csv = csv.DictWriter(self.file, fieldnames=self.COLUMNS)
        self.csv.writeheader()
        self.csv.writerows(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=step + 1 if step else None)
        except ImportError:  # TensorBoard is optional; the CSV log always exists
            self.tb = None

    def write(self, m: dict[str, float], every: int) -> None:
        if not self.main:
            return
        self.csv.writerow({k: m.get(k, "") for k in self.COLUMNS})
        if m["step"] % every == 0 or "val_loss" in m:
            self.file.flush()
        if self.tb is not None:
            for k, v in m.items():
                if k != "step":
                    self.tb.add_scalar(f"train/{k}" if not k.startswith("val") else f"val/{k}", v, m["step"])

    def close(self) -> None:
        if self.main:
            self.file.close()
            if self.tb is not None:
                self.tb.close()
