"""Teacher-forced order-sign memory: how likely a model makes the next aggressor take the last one's side.

Run from the repository root:  .venv/bin/python benchmarks/check_sign_memory.py MODEL_FOLDER SHARDS [--split val]
(``MODEL_FOLDER`` holds ``config.json`` and ``tokenizer.json``, e.g. runs/demo/model/model; ``SHARDS`` the
run's shard folder). At every real aggressor of the split, it takes the model's next-token distribution over the
aggressor ids (``Tokenizer.aggressors()``, the book features' CLEAR and TAKE adds) and sums the share whose side
is the last aggressor's. It prints the mean of that share and the real share of aggressors that repeat the side.
Sides are resolved whether the tokenizer writes them absolute or relative (``side="relative"``); an aggressor that
reached past the opposite best level has no id of its own, so a relative side after one is read against the one
before it (the real share then moves in the third decimal). Windows are the
model's context, half overlapping; only the second half of each is scored, so every score has half a context
before it.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from tradefm.model import TradeFM
from tradefm.shards import load_shard, read_manifest
from tradefm.tokenizer import Tokenizer


def sign_memory(model_dir: str, shards: str, split: str = "val") -> tuple[float, float, int]:
    model = TradeFM.from_pretrained(model_dir).eval()
    tok = Tokenizer.load(f"{model_dir}/tokenizer.json")
    relative = tok.features.side == "relative"
    manifest = read_manifest(shards)
    aggressor = tok.aggressors()
    bit = torch.from_numpy(tok.decompose(np.arange(tok.vocab_size))[1])[torch.from_numpy(aggressor)]
    width = model.cfg.context
    model_share, real_same = [], []
    for entry in manifest["files"]:
        if entry["split"] != split:
            continue
        tokens, ctx = (np.asarray(a, np.int64) for a in load_shard(shards, entry, manifest["token_dtype"]))
        is_aggr = aggressor[tokens]
        side_bit = tok.decompose(tokens)[1]
        last, before, side = 0, np.empty(len(tokens), np.int64), np.empty(len(tokens), np.int64)
        for i in range(len(tokens)):  # each token's absolute side, and the last aggressor's before it
            before[i] = last
            side[i] = side_bit[i] ^ last if relative else side_bit[i]
            if is_aggr[i]:
                last = side[i]
        with torch.no_grad():
            for start in range(0, len(tokens) - width, width // 2):
                x = torch.from_numpy(tokens[start:start + width])[None]
                c = torch.from_numpy(ctx[start:start + width])[None]
                p = model(x, c)[0][0, :-1].float().softmax(-1)[:, torch.from_numpy(aggressor)]
                targets = np.arange(start + 1, start + width)
                scored = (np.arange(1, width) >= (width // 2 if start else 1)) & is_aggr[targets]
                for j in np.flatnonzero(scored):
                    i = targets[j]
                    same = bit == (0 if relative else before[i])
                    model_share.append(float(p[j][same].sum() / p[j].sum()))
                    real_same.append(side[i] == before[i])
    return float(np.mean(model_share)), float(np.mean(real_same)), len(model_share)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("shards")
    ap.add_argument("--split", default="val")
    args = ap.parse_args()
    torch.set_num_threads(1)
    share, real, n = sign_memory(args.model, args.shards, args.split)
    print(f"{args.model}: {n} aggressors; the model gives the last aggressor's side {share:.3f}, the real {real:.3f}")
