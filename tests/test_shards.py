"""Shards on real LOBSTER days: time and instrument splits, manifest, memory-mapped reading, determinism."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from tradefm.cli import main
from tradefm.codec import FEATURES
from tradefm.features import order_flow
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


def test_a_coarser_clock_adds_training_shards_only(store: str, tmp_path) -> None:
    """``--augment resolution_ns=...`` writes each training part again as a millisecond feed records it: the tokens a
    tokenizer with that clock gives, beside the day as recorded; validation and test stay as recorded."""
    from dataclasses import replace

    from tradefm.shards import tokenize
    from tradefm.tokenizer import Tokenizer

    tok = tmp_path / "tok.json"
    main(["fit-tokenizer", store, "--out", str(tok)])
    plain, aug = tmp_path / "plain", tmp_path / "aug"
    main(["tokenize", store, "--tokenizer", str(tok), "--out", str(plain)])
    copy = ["--augment", "resolution_ns=1000000"]
    assert main(["tokenize", store, "--tokenizer", str(tok), "--out", str(aug), *copy]) == 0
    p, a = (json.loads((d / "manifest.json").read_text()) for d in (plain, aug))
    extra = [f for f in a["files"] if "augment" in f]
    assert a["augment"] == [{"resolution_ns": 1_000_000}] and {f["split"] for f in extra} == {"train"}
    assert len(extra) == 2 and [f for f in a["files"] if "augment" not in f] == p["files"]
    for f in p["files"]:
        assert (plain / f["path"]).read_bytes() == (aug / f["path"]).read_bytes()
    assert a["counts"]["train"] == p["counts"]["train"] + sum(f["tokens"] for f in extra)
    t = Tokenizer.load(tok)
    ms = replace(t, features=replace(t.features, resolution_ns=1_000_000))
    again = tokenize(store, ms, tmp_path / "ms", progress=False)
    for f in extra:
        # the copy is the millisecond day's tokens up to the recorded training part's end (features are causal)
        same = [g for g in p["files"] if g["instrument"] == f["instrument"]]
        train_end = min(g["first_ts"] for g in same if g["split"] != "train")
        assert f["last_ts"] < train_end
        twin = np.concatenate([load_shard(tmp_path / "ms", g)[0] for g in sorted(
            (g for g in again["files"] if g["instrument"] == f["instrument"]), key=lambda g: g["first_ts"])])
        np.testing.assert_array_equal(load_shard(aug, f)[0], twin[:f["tokens"]])
        dt = t.decompose(np.asarray(load_shard(aug, f)[0]))[4]
        recorded = next(g for g in same if g["split"] == "train")
        assert np.mean(dt == 1) > np.mean(t.decompose(np.asarray(load_shard(plain, recorded)[0]))[4] == 1) + 0.2
        assert f["tokens"] > 0.8 * recorded["tokens"]  # no more than what merges under a coarser clock is lost
    with pytest.raises(ValueError, match="coarser"):
        tokenize(store, t, tmp_path / "bad", augment=[{"resolution_ns": 0}], progress=False)


def test_the_feeds_preset_writes_a_book_copy_and_a_trades_copy(store: str, tmp_path) -> None:
    """``--features universal --augment feeds``: each training part once more as a crypto book feed records it
    and once as its trades feed does. The feed's kind is the last context field: 1 but in the trades copy, whose
    tokens are all adds (the aggressors), far fewer than the part's order events."""
    from tradefm.shards import AUGMENTS
    from tradefm.tokenizer import Tokenizer

    tok, out = tmp_path / "tok.json", tmp_path / "shards"
    assert main(["fit-tokenizer", store, "--out", str(tok), "--features", "universal"]) == 0
    assert main(["tokenize", store, "--tokenizer", str(tok), "--out", str(out), "--augment", "feeds"]) == 0
    m, t = json.loads((out / "manifest.json").read_text()), Tokenizer.load(tok)
    assert m["augment"] == [dict(c) for c in AUGMENTS["feeds"]] and m["context_fields"][-1] == "feed"
    for f in m["files"]:
        tokens, ctx = load_shard(out, f)
        trades = f.get("augment", {}).get("trades_only", False)
        assert (ctx[:, -1] == (0 if trades else 1)).all()
        action = t.decompose(np.asarray(tokens))[0]
        if trades:
            recorded = next(g for g in m["files"] if g["path"] == f["path"].replace(".aug2", ""))
            assert f["split"] == "train" and (action == 0).all() and f["tokens"] < recorded["tokens"] / 2
            # cut where the recorded part ends, not by its own (narrower) span: no trade of validation time
            val = next(g for g in m["files"] if g["instrument"] == f["instrument"] and g["split"] == "val")
            assert recorded["last_ts"] < val["first_ts"] and f["last_ts"] < val["first_ts"]
    copies = [f for f in m["files"] if "augment" in f]
    assert len(copies) == 4 and {f["path"].split(".")[-3] for f in copies} == {"aug1", "aug2"}


def test_a_copy_ends_where_the_recorded_training_part_does(tmp_path) -> None:
    """A day whose trades begin late (none in its first 40%): by its own span, the trades-only copy would be cut
    at 0.4 + 0.7 x 0.6 of the day, deep in validation time. It ends where the recorded training part does."""
    from dataclasses import replace

    from tradefm.events import Kind, read_day, write_day
    from tradefm.readers import read
    from tradefm.shards import tokenize
    from tradefm.tokenizer import Tokenizer

    day = next(read(data_file("lobster/LOBSTER_SampleFile_AAPL_2012-06-21_1.zip")))
    t = day.table
    ts, kind = t.column("ts").to_numpy(), t.column("kind").to_numpy()
    early = ts < ts[0] + 0.4 * (ts[-1] - ts[0])
    trade = np.isin(kind, [Kind.EXECUTE, Kind.EXECUTE_HIDDEN, Kind.TRADE])
    write_day(replace(day, table=t.filter(~(early & trade))), tmp_path / "events")
    late = read_day(next((tmp_path / "events").rglob("*.parquet")))
    features = FEATURES["universal"]
    tok = Tokenizer.fit({"nasdaq/AAPL": [order_flow(late, features)]}, features=features)
    m = tokenize(tmp_path / "events", tok, tmp_path / "shards", augment=[{"trades_only": True}], progress=False)
    val = next(f for f in m["files"] if f["split"] == "val")
    (copy,) = [f for f in m["files"] if "augment" in f]
    assert copy["first_ts"] >= ts[0] + 0.4 * (ts[-1] - ts[0]) and copy["last_ts"] < val["first_ts"]


def test_split_cut_is_by_time() -> None:
    ts = np.arange(100) ** 2  # events thin out over the day
    cut = SplitConfig(val_from=0.5, test_from=0.75).cut(ts)
    assert ts[cut["val"].start] >= 0.5 * ts[-1] > ts[cut["val"].start - 1]
    with pytest.raises(ValueError):
        SplitConfig(val_from=0.9, test_from=0.5)


def test_everything_held_out_is_a_clear_error(store: str, tmp_path) -> None:
    assert main(["fit-tokenizer", store, "--out", str(tmp_path / "t.json"), "--holdout-venue", "nasdaq"]) == 2
