"""The TradeFM model: a Llama-family decoder over order-flow tokens, in one file.

Input is tabular: each position has an event token and context fields (liquidity tier, price-level bin,
market/participant flag). Each has its own embedding table; the embeddings are concatenated and projected to
the model width. Then: pre-norm blocks of RMSNorm, grouped-query attention with rotary positions through
``scaled_dot_product_attention``, and a SwiGLU feed-forward. Only the event token is predicted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .events import InputError, read_json

WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}  # what a model is loaded in, by name


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 16_384
    context: int = 1024  # longest sequence (the RoPE table and the KV cache are this long)
    width: int = 1024
    layers: int = 32
    heads: int = 32
    kv_heads: int = 8  # grouped-query attention: heads share this many key/value heads
    ffn_hidden: int = 4096
    # vocabulary of each context field: tier, level bin, flag, volume regime, activity regime, spread bin
    context_fields: tuple[int, ...] = (3, 32, 2, 3, 3, 8)
    field_width: int = 64  # embedding width of each context field
    # the ids' mixed radix (the tokenizer's: action, side, depth, volume, dt) to give every id, in and out, its own
    # vector plus one per field value; () gives each id its own vector only
    token_fields: tuple[int, ...] = ()
    # groups of those fields (indices) that also get one vector per joint value, in and out: the side of an
    # aggressor is a joint value of (action, side, depth), which per-field vectors cannot say and per-id ones,
    # each seen a few times, learn slowly
    token_groups: tuple[tuple[int, ...], ...] = ()
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.width % self.heads or self.heads % self.kv_heads:
            raise InputError("width must divide by heads, and heads by kv_heads")
        if (self.width // self.heads) % 2:
            raise InputError("the head width must be even for rotary positions")
        if self.token_fields and math.prod(self.token_fields) != self.vocab_size:
            raise InputError(f"token_fields {self.token_fields} do not make a vocabulary of {self.vocab_size}")
        for g in self.token_groups:
            if list(g) != sorted(set(g)) or len(g) < 2 or not all(0 <= i < len(self.token_fields) for i in g):
                raise InputError(f"token_groups {g}: not two or more increasing indices of token_fields "
                                 f"{self.token_fields}")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


PRESETS: dict[str, ModelConfig] = {
    # trains in minutes on 2 CPU cores
    "tiny": ModelConfig(context=256, width=128, layers=4, heads=4, kv_heads=2, ffn_hidden=384, field_width=16),
    # ~20M parameters
    "small": ModelConfig(context=512, width=384, layers=6, heads=6, kv_heads=2, ffn_hidden=768, field_width=32),
    "125m": ModelConfig(context=1024, width=768, layers=14, heads=12, kv_heads=4, ffn_hidden=2560),
    "250m": ModelConfig(context=1024, width=1024, layers=18, heads=16, kv_heads=4, ffn_hidden=3072),
    # the paper's: context 1024, width 1024, 32 layers, 32 heads with GQA
    "524m": ModelConfig(context=1024, width=1024, layers=32, heads=32, kv_heads=8, ffn_hidden=4096),
}


def preset(name: str, **overrides: object) -> ModelConfig:
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def rope_table(cfg: ModelConfig, device: torch.device | str | None = None) -> torch.Tensor:
    """The rotary angles as unit complex numbers, [context, head_dim / 2, 2] (real, imaginary)."""
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, device=device).float() / cfg.head_dim))
    angles = torch.outer(torch.arange(cfg.context, device=device).float(), inv)
    return torch.stack((angles.cos(), angles.sin()), dim=-1)


def apply_rope(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of channels of ``x`` [B, H, T, D] by position-dependent angles: one complex product, which
    is 2.5x faster on CPU than rotating the pairs with real arithmetic and stacking them back."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * torch.view_as_complex(rope.float())).flatten(-2).type_as(x)


class LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of the logits ``h @ weight.T`` against ``targets`` (weighted by ``target_weights``
    when given), computed as one operation.

    The vocabulary is 16,384 ids, so at small widths the logits and their loss are most of a training step.
    ``F.cross_entropy`` keeps logits, log-probabilities and then two gradients of that size; here the logits are
    turned into probabilities in place in the forward pass and into their own gradient in place in the backward
    pass (softmax minus one-hot), in fp32 whatever the compute dtype. So its backward runs once: a second
    backward through the same graph (``retain_graph``) is refused by autograd's in-place check."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                target_weights: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
        logits = F.linear(h, weight, bias)
        ctx.compute_dtype = logits.dtype  # bf16 under autocast: the backward matmuls use it too
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        peak = logits.amax(dim=1, keepdim=True)
        picked = logits.gather(1, targets[:, None])
        probs = logits.sub_(peak).exp_()  # unnormalised; the sum is kept instead of dividing every entry
        total = probs.sum(dim=1, keepdim=True)
        # each position's share of the loss: 1 / N, or its weight over the weights' sum
        share = (torch.full_like(total, 1 / len(targets)) if target_weights is None
                 else (target_weights / target_weights.sum())[:, None].to(total.dtype))
        ctx.save_for_backward(h, weight, targets, probs, total, share)
        return ((total.log() + peak - picked) * share).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None, None]:
        h, weight, targets, probs, total, share = ctx.saved_tensors
        scale = grad * share
        g = probs.mul_(scale / total)  # d loss / d logits = (softmax - onehot) * grad * share
        g.scatter_add_(1, targets[:, None], (-scale).to(g.dtype))
        g = g.to(ctx.compute_dtype)
        return (g @ weight.to(g.dtype)).to(h.dtype), (g.t() @ h.to(g.dtype)).to(weight.dtype), None, None, None


@dataclass
class KVCache:
    """Keys and values of every layer for batched generation, filled left to right."""

    k: list[torch.Tensor] = field(default_factory=list)  # per layer [B, kv_heads, context, head_dim]
    v: list[torch.Tensor] = field(default_factory=list)
    length: int = 0

    @classmethod
    def empty(cls, cfg: ModelConfig, batch: int, device: torch.device | str, dtype: torch.dtype) -> KVCache:
        shape = (batch, cfg.kv_heads, cfg.context, cfg.head_dim)
        return cls([torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.layers)],
                   [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.layers)])


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.q = nn.Linear(cfg.width, cfg.heads * cfg.head_dim, bias=False)
        self.kv = nn.Linear(cfg.width, 2 * cfg.kv_heads * cfg.head_dim, bias=False)
        self.o = nn.Linear(cfg.heads * cfg.head_dim, cfg.width, bias=False)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, cache: KVCache | None = None, layer: int = 0
                ) -> torch.Tensor:
        b, t, _ = x.shape
        cfg = self.cfg
        q = self.q(x).view(b, t, cfg.heads, cfg.head_dim).transpose(1, 2)
        k, v = self.kv(x).view(b, t, 2, cfg.kv_heads, cfg.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, rope), apply_rope(k, rope)
        causal = True
        if cache is not None:  # append this step's keys and values, attend to everything so far
            start = cache.length
            cache.k[layer][:, :, start:start + t] = k
            cache.v[layer][:, :, start:start + t] = v
            k, v = cache.k[layer][:, :, :start + t], cache.v[layer][:, :, :start + t]
            causal = t > 1  # one new query may see every cached key; a prompt needs the causal mask
            if causal and start > 0:
                raise ValueError("a multi-token step after the first needs an explicit mask")
        if t == 1 and not self.training:
            y = attend_one(q, k, v)
        else:
            dt = torch.float32 if x.device.type == "cpu" else x.dtype  # CPU kernels are slow below fp32
            y = F.scaled_dot_product_attention(q.to(dt), k.to(dt), v.to(dt), is_causal=causal,
                                               enable_gqa=cfg.kv_heads != cfg.heads,
                                               dropout_p=cfg.dropout if self.training else 0.0).to(x.dtype)
        return self.o(y.transpose(1, 2).reshape(b, t, cfg.heads * cfg.head_dim))


def attend_one(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention of one query per row ``q`` [B, H, 1, D] over keys and values [B, KV, T, D] (generation): two
    batched products with each group of heads sharing its key/value head, and the softmax in fp32 whatever the
    weights' dtype. On CPU this beats ``scaled_dot_product_attention``, three times over in bf16."""
    b, h, _, d = q.shape
    scores = (q.view(b, k.shape[1], h // k.shape[1], d) @ k.transpose(-1, -2)).float().mul_(d ** -0.5)
    return (scores.softmax(dim=-1).to(v.dtype) @ v).view(b, h, 1, d)


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(cfg.width, 2 * cfg.ffn_hidden, bias=False)
        self.down = nn.Linear(cfg.ffn_hidden, cfg.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.width, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = nn.RMSNorm(cfg.width, eps=cfg.norm_eps)
        self.ffn = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, cache: KVCache | None = None, layer: int = 0
                ) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), rope, cache, layer))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class TradeFM(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.token_embed = nn.Embedding(cfg.vocab_size, cfg.width)
        self.field_embeds = nn.ModuleList(nn.Embedding(n, cfg.field_width) for n in cfg.context_fields)
        self.project = nn.Linear(cfg.width + cfg.field_width * len(cfg.context_fields), cfg.width, bias=False)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.RMSNorm(cfg.width, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        # factorized ids: a rare id (most of the 16,384 are) shares what its fields' values learn from common ones
        self.token_field_embeds = nn.ModuleList(nn.Embedding(r, cfg.width) for r in cfg.token_fields)
        self.head_fields = nn.ModuleList(nn.Embedding(r, cfg.width) for r in cfg.token_fields)
        joint = [math.prod(cfg.token_fields[i] for i in g) for g in cfg.token_groups]
        self.token_group_embeds = nn.ModuleList(nn.Embedding(n, cfg.width) for n in joint)
        self.head_groups = nn.ModuleList(nn.Embedding(n, cfg.width) for n in joint)
        # an id's digit of field i is id // stride_i % radix_i (most significant first, as the tokenizer composes)
        self.strides = [math.prod(cfg.token_fields[i + 1:]) for i in range(len(cfg.token_fields))]
        self._head_key: tuple | None = None  # head_weight's cache (no-grad only)
        self._head_cache: torch.Tensor | None = None
        self.register_buffer("rope", rope_table(cfg), persistent=False)
        # training's weight of each id as a target ([vocab]; None: every position counts the same), not saved;
        # the weighted loss learns the data's frequencies times the weights, so outside training the logits get
        # minus their log (``logit_bias``, saved): samples and perplexities are of the data's own frequencies
        self.register_buffer("target_weights", None, persistent=False)
        self.register_buffer("logit_bias", torch.zeros(cfg.vocab_size))
        self.checkpointing = False
        self.apply(self._init)
        for name, p in self.named_parameters():  # residual branches scaled down with depth (GPT-2)
            if name.endswith(("attn.o.weight", "ffn.down.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.layers))

    def _apply(self, fn: Callable, recurse: bool = True) -> TradeFM:
        """The rotary table stays fp32 whatever the weights are cast to: bf16 angles would blur positions."""
        super()._apply(fn, recurse)
        self.rope = rope_table(self.cfg, self.rope.device)
        return self

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def embed(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """[B, T] tokens and [B, T, fields] context -> [B, T, width]."""
        tok = self.token_embed(tokens)
        radix = self.cfg.token_fields
        digits = [tokens // stride % r for r, stride in zip(radix, self.strides, strict=True)]
        for e, d in zip(self.token_field_embeds, digits, strict=True):
            tok = tok + e(d)
        for e, g in zip(self.token_group_embeds, self.cfg.token_groups, strict=True):
            joint = digits[g[0]]
            for i in g[1:]:  # the group's digits as one mixed-radix number
                joint = joint * radix[i] + digits[i]
            tok = tok + e(joint)
        parts = [tok] + [e(context[..., i]) for i, e in enumerate(self.field_embeds)]
        return self.project(torch.cat(parts, dim=-1))

    def head_weight(self) -> torch.Tensor:
        """[vocab, width] output vectors: each id's own, plus its fields' when ids are factorized. Without
        gradients (generation: one position per step) the sum is kept until a weight changes."""
        if not self.head_fields:
            return self.head.weight
        weights = [self.head.weight, *(e.weight for e in (*self.head_fields, *self.head_groups))]
        key = tuple((w._version, w.data_ptr()) for w in weights)
        if torch.is_grad_enabled() or self._head_key != key:
            # broadcast over the ids' grid (row-major is the mixed radix), not gathered: its backward is a plain
            # sum, the same bits on every run, where a gather's scatter-add of 1,024 duplicates per value is not
            radix, w = self.cfg.token_fields, self.head.weight.view(*self.cfg.token_fields, -1)
            for i, e in enumerate(self.head_fields):
                w = w + e.weight.view(*(r if j == i else 1 for j, r in enumerate(radix)), -1)
            for e, g in zip(self.head_groups, self.cfg.token_groups, strict=True):
                w = w + e.weight.view(*(r if j in g else 1 for j, r in enumerate(radix)), -1)
            w = w.reshape(self.cfg.vocab_size, -1)
            if torch.is_grad_enabled():
                return w
            self._head_cache, self._head_key = w, key
        return self._head_cache

    def forward(self, tokens: torch.Tensor, context: torch.Tensor, targets: torch.Tensor | None = None,
                cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits [B, T, vocab] (the last position only when generating with a cache), or, given ``targets``,
        the mean cross-entropy against them (and no logits)."""
        t = tokens.shape[1]
        start = cache.length if cache is not None else 0
        if start + t > self.cfg.context:
            raise ValueError(f"sequence of {start + t} is longer than the model's context {self.cfg.context}")
        rope = self.rope[start:start + t]
        x = self.embed(tokens, context.long())
        for i, block in enumerate(self.blocks):
            if self.checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, rope, use_reentrant=False)
            else:
                x = block(x, rope, cache, i)
        if cache is not None:
            cache.length += t
            return F.linear(self.norm(x[:, -1:]), self.head_weight(), self.logit_bias), None
        if targets is not None:  # training: the loss without keeping the logits
            targets = targets.flatten().long()
            h, w = self.norm(x).flatten(0, 1), self.head_weight()
            if self.training and self.target_weights is not None:
                return None, LinearCrossEntropy.apply(h, w, targets, self.target_weights[targets])
            return None, LinearCrossEntropy.apply(h, w, targets, None, None if self.training else self.logit_bias)
        return F.linear(self.norm(x), self.head_weight(), None if self.training else self.logit_bias), None

    # ------------------------------------------------------------------ files
    def save_pretrained(self, directory: str | Path, tokenizer: object | None = None) -> Path:
        """safetensors weights + JSON config (+ the tokenizer file): one folder is a complete model. A model with
        no token groups and no logit bias is written without them, as earlier versions read it."""
        from safetensors.torch import save_file

        from .events import atomic_path

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        if not state["logit_bias"].any():
            del state["logit_bias"]
        cfg = asdict(self.cfg)
        if not cfg["token_groups"]:
            del cfg["token_groups"]
        with atomic_path(directory / WEIGHTS) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        with atomic_path(directory / CONFIG) as tmp:
            tmp.write_text(json.dumps({"model_type": "tradefm", **cfg}, indent=1))
        if tokenizer is not None:
            tokenizer.save(directory / TOKENIZER)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype | str = torch.float32) -> TradeFM:
        """Load a saved folder; safetensors never unpickles anything. ``dtype`` (or its name, one of
        :data:`DTYPES`) bfloat16 halves the weights and the KV caches of generation, and is the fast one on CPUs
        with bf16 matrix units (see BENCHMARKS.md)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if isinstance(dtype, str):
            if dtype not in DTYPES:
                raise InputError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
            dtype = DTYPES[dtype]

        directory = Path(directory)
        if not ((directory / CONFIG).is_file() and (directory / WEIGHTS).is_file()):
            why = "does not exist" if not directory.exists() else f"no {CONFIG} and {WEIGHTS} in it"
            raise InputError(f"{directory}: not a model folder ({why})")
        raw = read_json(directory / CONFIG, "a model config")
        try:
            if raw.pop("model_type", "tradefm") != "tradefm":
                raise ValueError("model_type is not tradefm")
            raw["context_fields"] = tuple(raw["context_fields"])
            raw["token_fields"] = tuple(raw.get("token_fields", ()))
            raw["token_groups"] = tuple(tuple(g) for g in raw.get("token_groups", ()))
            model = cls(ModelConfig(**raw))
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            why = f"no {e} setting" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
            raise InputError(f"{directory / CONFIG}: not a tradefm model config ({why})") from None
        try:
            state = load_file(str(directory / WEIGHTS), device=str(torch.device(device)))
            state.setdefault("logit_bias", torch.zeros(model.cfg.vocab_size))  # a model saved before it existed
        except SafetensorError as e:
            raise InputError(f"{directory / WEIGHTS}: not a safetensors file ({e})") from None
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            why = str(e).strip().splitlines()[0]
            raise InputError(f"{directory / WEIGHTS}: not the weights of the model {CONFIG} describes ({why})"
                             ) from None
        return model.to(device=device, dtype=dtype)
