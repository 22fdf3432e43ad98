"""Perplexity of a model on token shards, per instrument and per venue, with bootstrap confidence intervals.

The same table answers zero-shot transfer: train on one market, score another market's shards written in the
same token space. Each shard is cut into non-overlapping windows of the model's context; a window's mean
negative log-likelihood is the unit the bootstrap resamples. Beside each perplexity stands the unigram
baseline: token frequencies of the training split (add-one smoothed) scored on the same tokens.

A token is a mixed-radix number over its fields, so its NLL splits exactly by the chain rule into the NLL of
its action and side, of its depth bin given those, of its volume bin given all three, and of its dt bin given
the rest: where a market the model never saw loses (its clock, its prices or its sizes) can be read off.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..events import InputError, atomic_path
from ..model import TradeFM
from ..shards import load_shard, read_manifest


@dataclass(frozen=True)
class Perplexity:
    group: str  # an instrument (venue/symbol) or a venue
    split: str
    tokens: int
    loss: float  # mean NLL per token, nats
    ppl: float
    ppl_low: float  # 95% bootstrap interval
    ppl_high: float
    unigram_ppl: float
    fields: dict[str, float]  # FIELDS -> mean NLL per token (nats); they sum to ``loss``


FIELDS = ("action_side", "depth", "volume", "dt")  # the chain rule's order: the id's digits, most significant first
ALL = "all"  # every instrument pooled: its test split is the in-domain perplexity held-out markets are read against


def field_nll(logits: torch.Tensor, target: torch.Tensor, radix: Sequence[int]) -> torch.Tensor:
    """[N, 4]: each target id's NLL split by :data:`FIELDS`, each field's given the ones before it (the four sum to
    the id's NLL). ``logits`` [N, vocab] over ids that are mixed-radix numbers with ``radix``; ``target`` [N]."""
    n, rows = len(target), torch.arange(len(target))
    x = torch.log_softmax(logits.float(), dim=-1).view(n, radix[0] * radix[1], *radix[2:])
    digits, rest = [], target.long()
    for r in reversed(radix[2:]):
        digits.insert(0, rest % r)
        rest = rest // r
    joint = []  # log p(the first k fields)
    for d in (rest, *digits):
        joint.append(x.flatten(2).logsumexp(dim=2)[rows, d] if x.dim() > 2 else x[rows, d])
        x = x[rows, d]
    joint = torch.stack(joint, dim=1)
    return -torch.diff(joint, dim=1, prepend=torch.zeros(n, 1))


def unigram_logprobs(root: Path, manifest: dict, vocab: int) -> np.ndarray:
    counts = np.ones(vocab)  # add-one: a token never seen in training still has a probability
    for f in manifest["files"]:
        if f["split"] == "train":
            counts += np.bincount(load_shard(root, f, manifest["token_dtype"])[0], minlength=vocab)[:vocab]
    return np.log(counts / counts.sum())


@torch.no_grad()
def window_nll(model: TradeFM, tokens: np.ndarray, ctx: np.ndarray, radix: Sequence[int], batch: int = 8
               ) -> list[tuple[float, int, np.ndarray]]:
    """(sum of NLL, tokens scored, sum of NLL per field) per non-overlapping window of the model's context."""
    t = model.cfg.context
    starts = list(range(0, len(tokens) - 1, t))
    out = []
    for i in range(0, len(starts), batch):
        group = [(s, min(s + t, len(tokens) - 1)) for s in starts[i:i + batch]]
        width = max(e - s for s, e in group)
        x = torch.zeros((len(group), width), dtype=torch.long)
        y = torch.full((len(group), width), -100, dtype=torch.long)  # -100: padding, not scored
        c = torch.zeros((len(group), width, ctx.shape[1]), dtype=torch.long)
        for j, (s, e) in enumerate(group):
            x[j, :e - s] = torch.from_numpy(tokens[s:e].astype(np.int64))
            y[j, :e - s] = torch.from_numpy(tokens[s + 1:e + 1].astype(np.int64))
            c[j, :e - s] = torch.from_numpy(np.asarray(ctx[s:e], dtype=np.int64))
        logits, _ = model(x, c)
        scored = y >= 0
        fields = field_nll(logits[scored], y[scored], radix)  # [scored tokens, 4], window by window in order
        per = torch.zeros(len(group), width, len(FIELDS))
        per[scored] = fields
        out += [(float(per[j].sum()), e - s, per[j].sum(0).double().numpy()) for j, (s, e) in enumerate(group)]
    return out


def _bootstrap(windows: list[tuple[float, int, np.ndarray]], rng: np.random.Generator, n: int = 1000
               ) -> tuple[float, float]:
    nll = np.array([w[0] for w in windows])
    cnt = np.array([w[1] for w in windows])
    idx = rng.integers(0, len(windows), size=(n, len(windows)))
    losses = nll[idx].sum(1) / cnt[idx].sum(1)
    lo, hi = np.quantile(losses, [0.025, 0.975])
    return math.exp(lo), math.exp(hi)


def perplexity(model: TradeFM, shards: str | Path, splits: tuple[str, ...] = ("val", "test", "test_symbol",
               "test_venue"), seed: int = 0, progress: bool = True) -> list[Perplexity]:
    """Loss and perplexity per instrument and per venue (and split), with 95% bootstrap intervals."""
    root = Path(shards)
    manifest = read_manifest(root)
    tok_file = root / "tokenizer.json"
    if manifest["vocab_size"] != model.cfg.vocab_size:
        raise InputError(f"{root}: vocabulary {manifest['vocab_size']} is not the model's {model.cfg.vocab_size}")
    if tok_file.exists():
        saved = json.loads(tok_file.read_text()).get("hash")
        if saved and saved != manifest["tokenizer_hash"]:
            raise InputError(f"{root}: tokenizer.json does not match the manifest")
    if "radix" not in manifest:
        raise InputError(f"{root}: the manifest has no radix (written by an older tradefm): tokenize again")
    uni = unigram_logprobs(root, manifest, model.cfg.vocab_size)
    model.eval()
    groups: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
    uni_nll: dict[tuple[str, str], float] = defaultdict(float)
    files = [f for f in manifest["files"] if f["split"] in splits]
    for f in tqdm(files, desc="perplexity", unit="shard", disable=not progress):
        tokens, ctx = load_shard(root, f, manifest["token_dtype"])
        windows = window_nll(model, tokens, ctx, manifest["radix"])
        scored = -uni[tokens[1:].astype(np.int64)].sum()
        for key in ((f["instrument"], f["split"]), (f["instrument"].split("/")[0], f["split"]), (ALL, f["split"])):
            groups[key] += windows
            uni_nll[key] += scored
    rng = np.random.default_rng(seed)
    rows = []
    for (group, split), windows in sorted(groups.items()):
        n = sum(w[1] for w in windows)
        loss = sum(w[0] for w in windows) / n
        lo, hi = _bootstrap(windows, rng)
        fields = dict(zip(FIELDS, (sum(w[2] for w in windows) / n).tolist(), strict=True))
        rows.append(Perplexity(group, split, n, loss, math.exp(loss), lo, hi, math.exp(uni_nll[(group, split)] / n),
                               fields))
    return rows


def in_domain(rows: list[Perplexity]) -> float | None:
    """The in-domain perplexity: every instrument's test split pooled (None where no test split was scored)."""
    return next((r.ppl for r in rows if r.group == ALL and r.split == "test"), None)


def table(rows: list[Perplexity]) -> str:
    """Markdown: a row per group and split, with the loss split by field (nats per token), and each perplexity
    as a multiple of the in-domain one (every instrument's test split pooled) where that was scored."""
    home = in_domain(rows)
    lines = ["| group | split | tokens | loss (nats) | perplexity | 95% CI | x in domain | unigram perplexity "
             "| action, side | depth | volume | dt |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.group} | {r.split} | {r.tokens:,} | {r.loss:.3f} | {r.ppl:.1f} | {r.ppl_low:.1f}-{r.ppl_high:.1f}"
              f" | {f'{r.ppl / home:.2f}' if home else ''} | {r.unigram_ppl:.1f} | "
              + " | ".join(f"{r.fields[f]:.3f}" for f in FIELDS) + " |" for r in rows]
    return "\n".join(lines)


def plot(rows: list[Perplexity], path: str | Path) -> Path:
    """A PNG of each venue's perplexity on its scored tokens (test, held-out symbols, held-out venues), with its
    interval and its unigram, against the in-domain perplexity and three times it: how far from home each market
    is, at a glance."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .report import PNG_META

    shown = [r for r in rows if r.group != ALL and "/" not in r.group and r.split != "val"]
    if not shown:
        raise InputError("nothing to plot: no test or held-out split was scored")
    home = in_domain(rows)
    fig = Figure(figsize=(1.2 + 1.1 * len(shown), 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(len(shown))
    ppl = np.array([r.ppl for r in shown])
    err = np.array([[r.ppl - r.ppl_low for r in shown], [r.ppl_high - r.ppl for r in shown]])
    ax.bar(x, ppl, yerr=err, capsize=4, color=["C0" if r.split == "test" else "C1" for r in shown])
    ax.scatter(x, [r.unigram_ppl for r in shown], marker="_", s=600, color="k", label="unigram", zorder=3)
    if home:
        ax.axhline(home, color="C2", lw=1, label=f"in domain ({home:,.0f})")
        ax.axhline(3 * home, color="C2", lw=1, ls="--", label="3x in domain")
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{r.group}\n{r.split}" for r in shown], fontsize=8)
    ax.set_ylabel("perplexity (95% interval)")
    ax.set_title("blue: in domain (test), orange: never seen in training", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata=PNG_META)
    return path

