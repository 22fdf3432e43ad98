"""Shards on real LOBSTER days: time and instrument splits, manifest, memory-mapped reading, determinism."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from tradefm.cli import main
from tradefm.shards import SplitConfig, load_shard

from .conftest import data_file


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("events")
    zips = [data_file(f"lobster/LOBSTER_SampleFile_{z}.zip") for z in ("AAPL_2012-06-21_1", "GOOG_2012-06-21_1")]
    assert main(["ingest", *map(str, zips), "--out", str(out)]) == 0
    return str(out)


def test_fit_and_tokenize_from_the_command_line(store: str, tmp_path) -> None:
    tok = tmp_path / "tok.json"
    assert main(["fit-tokenizer", store, "--out", str(tok), "--holdout-symbol", "GOOG"]) == 0
    fitted = json.loads(tok.read_text())
    assert list(fitted["instruments"]) == ["nasdaq/AAPL"]  # the held-out symbol is not calibrated on
    out = tmp_path / "shards"
    assert main(["tokenize", store, "--tokenizer", str(tok), "--out", str(out), "--holdout-symbol", "GOOG"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["tokenizer_hash"] == fitted["hash"] and m["vocab_size"] == 16_384
    by_split = {f["split"]: f for f in m["files"]}
    assert set(by_split) == {"train", "val", "test", "test_symbol"}
    assert by_split["test_symbol"]["instrument"] == "nasdaq/GOOG"
    # time splits of one day follow each other and do not overlap
    aapl = sorted((f for f in m["files"] if f["instrument"] == "nasdaq/AAPL"), key=lambda f: f["first_ts"])
    assert [f["split"] for f in aapl] == ["train", "val", "test"]
    assert all(a["last_ts"] <= b["first_ts"] for a, b in itertools.pairwise(aapl))
    for f in m["files"]:
        tokens, ctx = load_shard(out, f)
        assert len(tokens) == len(ctx) == f["tokens"] > 0
        assert tokens.max() < 16_384 and (ctx[:, 2] == 0).all() and (ctx[:, 1] < 32).all()
    assert sum(m["counts"].values()) == sum(f["tokens"] for f in m["files"])


def test_same_input_same_tokens(store: str, tmp_path) -> None:
    tok = tmp_path / "tok.json"
    main(["fit-tokenizer", store, "--out", str(tok)])
    for run in ("a", "b"):
        main(["tokenize", store, "--tokenizer", str(tok), "--out", str(tmp_path / run)])
    for f in sorted((tmp_path / "a").rglob("*.bin")):
        assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()


def test_split_cut_is_by_time() -> None:
    ts = np.arange(100) ** 2  # events thin out over the day
    cut = SplitConfig(val_from=0.5, test_from=0.75).cut(ts)
    assert ts[cut["val"].start] >= 0.5 * ts[-1] > ts[cut["val"].start - 1]
    with pytest.raises(ValueError):
        SplitConfig(val_from=0.9, test_from=0.5)


def test_everything_held_out_is_a_clear_error(store: str, tmp_path) -> None:
    assert main(["fit-tokenizer", store, "--out", str(tmp_path / "t.json"), "--holdout-venue", "nasdaq"]) == 2
