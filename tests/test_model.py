"""The model: the paper's 524M shape, causality, the KV cache, context fields, and self-contained folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tradefm.model import PRESETS, KVCache, ModelConfig, TradeFM, preset

RADIX = (2, 2, 16, 16, 16)  # the tokenizer's: action, side, depth, volume, dt


def _batch(cfg: ModelConfig, b: int = 2, t: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, cfg.vocab_size, (b, t), generator=g)
    ctx = torch.stack([torch.randint(0, n, (b, t), generator=g) for n in cfg.context_fields], dim=-1)
    return tokens, ctx


def test_the_524m_preset_is_the_papers_shape() -> None:
    cfg = PRESETS["524m"]
    assert (cfg.context, cfg.width, cfg.layers, cfg.heads) == (1024, 1024, 32, 32)
    assert cfg.kv_heads < cfg.heads  # grouped-query attention
    with torch.device("meta"):
        model = TradeFM(cfg)
    assert abs(model.num_params() - 524e6) / 524e6 < 0.02


@pytest.mark.parametrize(("name", "low", "high"), [("tiny", 1e6, 10e6), ("small", 15e6, 25e6),
                                                   ("125m", 115e6, 135e6), ("250m", 235e6, 265e6)])
def test_preset_sizes(name: str, low: float, high: float) -> None:
    with torch.device("meta"):
        assert low < TradeFM(PRESETS[name]).num_params() < high


def test_predictions_do_not_see_the_future() -> None:
    torch.manual_seed(0)
    model = TradeFM(preset("tiny")).eval()
    tokens, ctx = _batch(model.cfg)
    a, _ = model(tokens, ctx)
    tokens2, ctx2 = tokens.clone(), ctx.clone()
    tokens2[:, 12:] = (tokens2[:, 12:] + 7) % model.cfg.vocab_size
    ctx2[:, 12:, 1] = (ctx2[:, 12:, 1] + 3) % 32
    b, _ = model(tokens2, ctx2)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_context_fields_condition_the_prediction() -> None:
    torch.manual_seed(0)
    model = TradeFM(preset("tiny")).eval()
    tokens, ctx = _batch(model.cfg)
    flagged = ctx.clone()
    flagged[..., 2] = 1  # every event a participant's
    assert not torch.allclose(model(tokens, ctx)[0], model(tokens, flagged)[0])


def test_kv_cache_gives_the_same_logits_as_a_full_pass() -> None:
    torch.manual_seed(0)
    model = TradeFM(preset("tiny")).eval()
    tokens, ctx = _batch(model.cfg, b=3, t=30)
    full, _ = model(tokens, ctx)
    cache = KVCache.empty(model.cfg, 3, "cpu", torch.float32)
    with torch.no_grad():
        first, _ = model(tokens[:, :10], ctx[:, :10], cache=cache)
        torch.testing.assert_close(first[:, 0], full[:, 9], atol=1e-5, rtol=1e-4)
        for t in range(10, 30):
            step, _ = model(tokens[:, t:t + 1], ctx[:, t:t + 1], cache=cache)
            torch.testing.assert_close(step[:, 0], full[:, t], atol=1e-5, rtol=1e-4)
    too_long = _batch(model.cfg, b=1, t=model.cfg.context + 1)
    with pytest.raises(ValueError, match="longer than"):
        model(*too_long)


def test_a_bf16_copy_generates_what_the_fp32_model_does(tmp_path) -> None:
    """Generation in bf16 (weights and caches; softmax and rotary angles stay fp32) keeps the next-token
    distribution of the fp32 model to within bf16 rounding."""
    torch.manual_seed(0)
    TradeFM(preset("tiny", token_fields=RADIX)).save_pretrained(tmp_path)
    fp32 = TradeFM.from_pretrained(tmp_path).eval()
    bf16 = TradeFM.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert bf16.head.weight.dtype == torch.bfloat16 and bf16.rope.dtype == torch.float32
    torch.testing.assert_close(bf16.rope, fp32.rope)
    tokens, ctx = _batch(fp32.cfg, b=3, t=40)
    with torch.no_grad():
        want = fp32(tokens, ctx)[0].log_softmax(-1)
        cache = KVCache.empty(bf16.cfg, 3, "cpu", torch.bfloat16)
        got = [bf16(tokens[:, :20], ctx[:, :20], cache=cache)[0]]
        got += [bf16(tokens[:, t:t + 1], ctx[:, t:t + 1], cache=cache)[0] for t in range(20, 40)]
    got = torch.cat(got, dim=1).float().log_softmax(-1)
    torch.testing.assert_close(got, want[:, 19:], atol=0.05, rtol=0.0)  # log-probabilities, in nats
    assert (got - want[:, 19:]).abs().max() > 0  # it did run in bf16


@pytest.mark.parametrize("token_fields", [(), RADIX])
def test_a_saved_folder_is_a_complete_model(tmp_path, token_fields: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = TradeFM(preset("tiny", layers=2, token_fields=token_fields)).eval()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["layers"] == 2
    assert (tmp_path / "model.safetensors").read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle
    again = TradeFM.from_pretrained(tmp_path).eval()
    tokens, ctx = _batch(model.cfg)
    torch.testing.assert_close(model(tokens, ctx)[0], again(tokens, ctx)[0])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_fused_loss_is_cross_entropy(dtype: torch.dtype) -> None:
    """LinearCrossEntropy gives F.cross_entropy's loss and gradients, without keeping the logits."""
    from tradefm.model import LinearCrossEntropy

    g = torch.Generator().manual_seed(0)
    h = torch.randn(64, 16, dtype=dtype, generator=g, requires_grad=True)
    w = torch.randn(300, 16, dtype=dtype, generator=g, requires_grad=True)
    y = torch.randint(0, 300, (64,), generator=g)
    ours = LinearCrossEntropy.apply(h, w, y)
    grads = torch.autograd.grad(ours * 3, (h, w))
    ref = torch.nn.functional.cross_entropy(h @ w.t(), y)
    ref_grads = torch.autograd.grad(ref * 3, (h, w))
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(ours, ref, **tol)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, **tol)


def test_the_weighted_fused_loss_is_the_weighted_mean_cross_entropy() -> None:
    """With a weight per position the loss and its gradients are those of the weighted mean."""
    from tradefm.model import LinearCrossEntropy

    g = torch.Generator().manual_seed(1)
    h = torch.randn(64, 16, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(300, 16, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.randint(0, 300, (64,), generator=g)
    weights = torch.rand(64, dtype=torch.float64, generator=g) * 4
    ours = LinearCrossEntropy.apply(h, w, y, weights)
    nll = torch.nn.functional.cross_entropy(h @ w.t(), y, reduction="none")
    ref = (nll * weights).sum() / weights.sum()
    torch.testing.assert_close(ours, ref)
    for a, b in zip(torch.autograd.grad(ours, (h, w)), torch.autograd.grad(ref, (h, w)), strict=True):
        torch.testing.assert_close(a, b)


def test_target_weights_train_and_their_log_comes_off_outside_training() -> None:
    """Training weighs each target by its id's weight; outside training the logits get ``logit_bias`` (minus
    the weights' log, which undoes what the weighting adds to the learned frequencies), and losses are plain."""
    model = TradeFM(preset("tiny", context=32, token_fields=RADIX))
    tokens, ctx = _batch(model.cfg)
    targets = torch.roll(tokens, -1, 1)
    weights = torch.ones(model.cfg.vocab_size)
    weights[targets[0, :4]] = 50.0
    model.target_weights, model.logit_bias = weights, -weights.log()
    model.eval()
    logits, _ = model(tokens, ctx)
    _, plain = model(tokens, ctx, targets)
    ce = torch.nn.functional.cross_entropy
    torch.testing.assert_close(plain, ce(logits.flatten(0, 1), targets.flatten()), rtol=1e-5, atol=1e-5)
    model.train()
    raw, _ = model(tokens, ctx)
    torch.testing.assert_close(logits, raw - weights.log(), rtol=1e-5, atol=1e-5)
    _, weighted = model(tokens, ctx, targets)
    nll = ce(raw.flatten(0, 1), targets.flatten(), reduction="none")
    per = weights[targets.flatten()]
    torch.testing.assert_close(weighted, (nll * per).sum() / per.sum(), rtol=1e-5, atol=1e-5)
    assert "target_weights" not in model.state_dict() and "logit_bias" in model.state_dict()


def test_the_logit_bias_is_saved_and_a_model_without_it_loads(tmp_path) -> None:
    import json

    from safetensors.torch import load_file

    model = TradeFM(preset("tiny", context=32, token_fields=RADIX, token_groups=((0, 1, 2),))).eval()
    model.logit_bias = torch.linspace(-1, 0, model.cfg.vocab_size)
    model.save_pretrained(tmp_path / "biased")
    again = TradeFM.from_pretrained(tmp_path / "biased").eval()
    tokens, ctx = _batch(model.cfg)
    torch.testing.assert_close(again(tokens, ctx)[0], model(tokens, ctx)[0])
    plain = TradeFM(preset("tiny", context=32, token_fields=RADIX))
    plain.save_pretrained(tmp_path / "plain")  # nothing an earlier version would not know is written
    assert "logit_bias" not in load_file(str(tmp_path / "plain" / "model.safetensors"))
    assert "token_groups" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    assert not TradeFM.from_pretrained(tmp_path / "plain").logit_bias.any()


@pytest.mark.parametrize("token_fields", [(), RADIX])
def test_training_loss_is_the_mean_cross_entropy_of_the_logits(token_fields: tuple[int, ...]) -> None:
    model = TradeFM(preset("tiny", context=32, token_fields=token_fields))
    tokens, ctx = _batch(model.cfg)
    targets = torch.roll(tokens, -1, 1)
    logits, _ = model(tokens, ctx)
    _, loss = model(tokens, ctx, targets)
    ref = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)


def test_factorized_ids_share_their_fields_vectors() -> None:
    """With ``token_fields`` an id's input and output vectors are its own plus one per field value (the
    tokenizer's mixed radix), so two ids that share a field share that part, and its gradient."""
    from tradefm.tokenizer import Tokenizer, TokenizerConfig

    tok = Tokenizer.__new__(Tokenizer)  # only its id arithmetic is needed
    tok.config = TokenizerConfig(radix=RADIX)
    ids = torch.tensor([0, 1, 4097, 12345, 16_383])
    digits = torch.from_numpy(np.stack(tok.decompose(np.arange(16_384)), axis=1))
    torch.manual_seed(0)
    model = TradeFM(preset("tiny", layers=1, context=32, token_fields=RADIX))
    w = model.head_weight()
    expected = model.head.weight[ids] + sum(e.weight[digits[ids, i]] for i, e in enumerate(model.head_fields))
    torch.testing.assert_close(w[ids], expected)
    tokens, ctx = _batch(model.cfg)
    _, loss = model(tokens, ctx, torch.roll(tokens, -1, 1))
    loss.backward()
    seen = torch.roll(tokens, -1, 1).flatten()
    volume_grad = model.head_fields[3].weight.grad.abs().sum(1)
    assert (volume_grad > 0).all()  # every volume value's vector learns from every id that has it
    assert model.head.weight.grad[seen].abs().sum() > 0
    with torch.no_grad():  # generation keeps the sum, and makes it anew once a weight changes
        kept = model.head_weight()
        assert model.head_weight() is kept
        model.head_fields[3].weight.add_(1.0)
        torch.testing.assert_close(model.head_weight()[ids], expected + 1.0)


def test_token_groups_give_each_joint_value_its_own_vector(tmp_path) -> None:
    """A group of fields adds one vector per joint value of its digits, in and out: ids that agree on
    (action, side, depth) share it, ids that differ in any of the three do not."""
    from tradefm.tokenizer import Tokenizer, TokenizerConfig

    tok = Tokenizer.__new__(Tokenizer)
    tok.config = TokenizerConfig(radix=RADIX)
    digits = torch.from_numpy(np.stack(tok.decompose(np.arange(16_384)), axis=1))
    joint = (digits[:, 0] * 2 + digits[:, 1]) * 16 + digits[:, 2]
    torch.manual_seed(0)
    model = TradeFM(preset("tiny", layers=1, context=32, token_fields=RADIX, token_groups=((0, 1, 2),)))
    ids = torch.tensor([0, 1, 4097, 12345, 16_383])
    fields = sum(e.weight[digits[ids, i]] for i, e in enumerate(model.head_fields))
    torch.testing.assert_close(model.head_weight()[ids],
                               model.head.weight[ids] + fields + model.head_groups[0].weight[joint[ids]])
    inputs = sum(e.weight[digits[ids, i]] for i, e in enumerate(model.token_field_embeds))
    want = model.token_embed.weight[ids] + inputs + model.token_group_embeds[0].weight[joint[ids]]
    ctx = torch.zeros(1, len(ids), 6, dtype=torch.long)
    parts = torch.cat([want[None], *(e(ctx[..., i]) for i, e in enumerate(model.field_embeds))], dim=-1)
    torch.testing.assert_close(model.embed(ids[None], ctx), model.project(parts))
    model.save_pretrained(tmp_path)
    again = TradeFM.from_pretrained(tmp_path)
    assert again.cfg.token_groups == ((0, 1, 2),)
    torch.testing.assert_close(again.head_weight(), model.head_weight())


def test_config_checks() -> None:
    with pytest.raises(ValueError):
        ModelConfig(width=100, heads=3)
    with pytest.raises(ValueError, match="token_fields"):
        ModelConfig(vocab_size=16_384, token_fields=(2, 2, 16, 16, 8))
    with pytest.raises(ValueError, match="token_groups"):
        ModelConfig(vocab_size=16_384, token_fields=RADIX, token_groups=((2, 1),))
    with pytest.raises(ValueError, match="unknown preset"):
        preset("1b")
