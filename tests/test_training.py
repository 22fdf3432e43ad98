"""Training on real LOBSTER tokens: it learns, a killed run resumes exactly, and DDP on 2 CPU processes
takes the same steps as one process with the same global batch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tradefm.cli import main
from tradefm.model import TradeFM

from .conftest import data_file

SMALL = {"layers": 2, "width": 64, "heads": 4, "kv_heads": 2, "ffn_hidden": 128, "field_width": 8, "context": 64}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tokens")
    zips = [data_file(f"lobster/LOBSTER_SampleFile_{z}.zip") for z in ("AAPL_2012-06-21_1", "GOOG_2012-06-21_1")]
    assert main(["ingest", *map(str, zips), "--out", str(root / "events")]) == 0
    assert main(["fit-tokenizer", str(root / "events"), "--out", str(root / "tok.json")]) == 0
    assert main(["tokenize", str(root / "events"), "--tokenizer", str(root / "tok.json"), "--out",
                 str(root / "shards")]) == 0
    return root / "shards"


def _config(tmp: Path, shards: Path, **kw: object) -> Path:
    cfg = {"shards": str(shards), "out": str(tmp / "run"), "preset": "tiny", "model": SMALL, "seq_len": 64,
           "batch_size": 8, "max_steps": 12, "warmup_steps": 2, "lr": 3e-3, "eval_every": 6, "eval_batches": 2,
           "ckpt_every": 4, "log_every": 1, "progress": False, **kw}
    path = tmp / "train.json"
    path.write_text(json.dumps(cfg))
    return path


def _losses(run: Path) -> list[float]:
    import csv

    with open(run / "log.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def _cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tradefm.cli", *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_training_learns_and_saves_a_complete_model(shards: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path, shards, max_steps=40, eval_every=20, seq_len=32)
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "run"
    losses = _losses(run)
    assert len(losses) == 40 and np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    model = TradeFM.from_pretrained(run / "model")
    assert (run / "model" / "tokenizer.json").exists() and model.cfg.layers == 2
    assert model.cfg.context == 32  # the trained length (seq_len, the preset's 64), which rollouts keep to
    assert (run / "tensorboard").is_dir()
    assert main(["perplexity", str(run / "model"), str(shards), "--split", "val"]) == 0
    from tradefm.evaluation.perplexity import FIELDS, perplexity, plot, table

    for row in perplexity(model, shards, ("val",), progress=False):  # the loss split by field sums to it
        assert set(row.fields) == set(FIELDS) and all(v > 0 for v in row.fields.values())
        assert sum(row.fields.values()) == pytest.approx(row.loss, rel=1e-4)
    rows = perplexity(model, shards, ("val", "test"), progress=False)  # every row against the pooled test split
    home, val = (next(r for r in rows if r.group == "all" and r.split == s) for s in ("test", "val"))
    assert home.tokens == sum(r.tokens for r in rows if r.split == "test" and "/" in r.group)
    md = table(rows)
    assert "x in domain" in md.splitlines()[0]
    assert f"| {home.ppl:.1f} | {home.ppl_low:.1f}-{home.ppl_high:.1f} | 1.00 |" in md
    assert f"| {val.ppl:.1f} | {val.ppl_low:.1f}-{val.ppl_high:.1f} | {val.ppl / home.ppl:.2f} |" in md
    a, b = plot(rows, tmp_path / "a.png"), plot(rows, tmp_path / "b.png")  # the same rows, the same bytes
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and a.read_bytes() == b.read_bytes()
    with pytest.raises(ValueError, match="nothing to plot"):
        plot([r for r in rows if r.split == "val"], tmp_path / "c.png")


def test_a_tokens_loss_splits_by_field_as_the_chain_rule_says() -> None:
    """Each field's NLL given the fields before it, from the joint logits over mixed-radix ids: the four sum to
    the id's NLL, and each is what marginalizing the joint by hand gives."""
    from tradefm.evaluation.perplexity import field_nll

    torch.manual_seed(0)
    radix = (2, 2, 4, 3, 5)
    logits, target = torch.randn(9, 240), torch.randint(0, 240, (9,))
    parts = field_nll(logits, target, radix)
    whole = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    assert torch.allclose(parts.sum(1), whole, atol=1e-5)
    lp = torch.log_softmax(logits, -1).view(9, 4, 4, 3, 5)
    for i, t in enumerate(target.tolist()):
        a, d, v, dt = t // 60, t // 15 % 4, t // 5 % 3, t % 5
        joint = [lp[i, a].logsumexp((0, 1, 2)), lp[i, a, d].logsumexp((0, 1)), lp[i, a, d, v].logsumexp(0),
                 lp[i, a, d, v, dt]]
        want = [-joint[0]] + [joint[k - 1] - joint[k] for k in (1, 2, 3)]
        assert torch.allclose(parts[i], torch.stack(want), atol=1e-5)


def test_the_best_validation_model_is_kept_as_training_goes_on(shards: Path, tmp_path: Path) -> None:
    import csv

    cfg = _config(tmp_path, shards, max_steps=30, eval_every=5, lr=3e-2, min_lr=3e-2)  # a rate that wanders
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "run"
    with open(run / "log.csv") as f:
        evals = [(int(r["step"]), float(r["val_loss"])) for r in csv.DictReader(f) if r["val_loss"]]
    assert len(evals) == 6
    best = json.loads((run / "best_model" / "best.json").read_text())
    step, loss = min(evals, key=lambda e: e[1])
    assert best["step"] == step and best["val_loss"] == pytest.approx(loss)
    kept = TradeFM.from_pretrained(run / "best_model").state_dict()
    final = TradeFM.from_pretrained(run / "model").state_dict()
    assert all(torch.equal(kept[k], final[k]) for k in kept) == (step == 30)


def test_a_killed_run_resumes_exactly(shards: Path, tmp_path: Path) -> None:
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir()
    broken.mkdir()
    assert _cli("train", str(_config(whole, shards))).wait() == 0
    proc = _cli("train", str(_config(broken, shards)))
    ckpt = broken / "run" / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # kill it once it has checkpointed step 8
        if ckpt.exists() and len(_losses(broken / "run")) >= 9:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = torch.load(ckpt, weights_only=True)["step"]
    assert 4 <= step < 12
    assert _cli("train", str(_config(broken, shards))).wait() == 0
    assert _losses(broken / "run") == _losses(whole / "run")  # every step, bit for bit
    a = TradeFM.from_pretrained(whole / "run" / "model").state_dict()
    b = TradeFM.from_pretrained(broken / "run" / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    a = TradeFM.from_pretrained(whole / "run" / "best_model").state_dict()  # the best model survives the kill
    b = TradeFM.from_pretrained(broken / "run" / "best_model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_resumes_only_on_its_own_token_space(shards: Path, tmp_path: Path, capsys) -> None:
    """Shards cut with another tokenizer (new bins, other features) are another token space: continuing a
    checkpoint on them would silently mix two vocabularies, so it is refused."""
    cfg = _config(tmp_path, shards, max_steps=4, eval_every=4)
    assert main(["train", str(cfg)]) == 0
    ckpt = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    state["token_space"] = "another tokenizer"
    torch.save(state, ckpt)
    cfg = _config(tmp_path, shards, max_steps=8, eval_every=4)
    assert main(["train", str(cfg)]) == 2
    assert "token space" in capsys.readouterr().err
    assert torch.load(ckpt, weights_only=True)["step"] == 4  # nothing was trained on the other shards


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_cpu_processes_match_one_process(shards: Path, tmp_path: Path, mode: str) -> None:
    """torchrun with gloo: DDP (replicas) and FSDP2 (shards) take the steps one process takes on the same
    global batch."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    assert _cli("train", str(_config(one, shards, max_steps=6))).wait() == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "tradefm.cli", "train",
           str(_config(two, shards, max_steps=6, fsdp=mode == "fsdp"))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    if mode == "ddp":
        replicas = json.loads((two / "run" / "replicas.json").read_text())
        assert len(replicas) == 2 and replicas[0] == replicas[1]  # both ranks hold identical weights
    a = TradeFM.from_pretrained(one / "run" / "model").state_dict()
    b = TradeFM.from_pretrained(two / "run" / "model").state_dict()
    np.testing.assert_allclose(_losses(one / "run"), _losses(two / "run"), rtol=1e-5)
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    # Summation order differs across processes; Adam divides by sqrt(v), so on the few embedding rows whose
    # gradients are ~0 that rounding becomes a step of up to lr. Everywhere else the weights agree to 1e-5.
    assert (diff > 1e-5).float().mean() < 1e-4 and diff.max() < 6 * 3e-3 and diff.mean() < 1e-7


def test_a_window_longer_than_the_model_is_one_line(shards: Path, tmp_path: Path, capsys) -> None:
    assert main(["train", str(_config(tmp_path, shards, seq_len=128))]) == 2
    err = capsys.readouterr()
    assert "seq_len 128 is longer than the model's context 64" in err.out + err.err
    assert "Traceback" not in err.out + err.err


def test_aggressor_weight_needs_features_that_mark_aggressors(shards: Path, tmp_path: Path, capsys) -> None:
    assert main(["train", str(_config(tmp_path, shards, aggressor_weight=4.0))]) == 2
    err = capsys.readouterr()
    assert "clear_touch" in err.out + err.err and "Traceback" not in err.out + err.err
    assert main(["train", str(_config(tmp_path, shards, aggressor_weight=-1.0))]) == 2
    assert "aggressor_weight must be positive" in capsys.readouterr().err
