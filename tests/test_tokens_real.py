"""The universal tokenizer on every LOBSTER sample and the Bitstamp 2026 day: one vocabulary for both venues."""

from __future__ import annotations

import numpy as np
import pytest

from tradefm.cli import ingest
from tradefm.features import FeatureConfig
from tradefm.shards import SplitConfig, fit_tokenizer, token_stats, tokenize

from .conftest import DATA, data_file


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    data_file("bitstamp/2026-05-02/orders.csv.gz")
    out = tmp_path_factory.mktemp("events")
    sources = sorted(str(p) for p in (DATA / "lobster").glob("*.zip"))
    ingest([*sources, str(DATA / "bitstamp/2026-05-02/orders.csv.gz")], out, None, False, quiet=True)
    return out


@pytest.mark.parametrize("volume", ["size", "notional"])
def test_pooled_bins_fit_equities_and_bitcoin(store, tmp_path, volume: str) -> None:
    tok = fit_tokenizer(store, features=FeatureConfig(volume=volume), progress=False)
    assert set(tok.instruments) == {"bitstamp/BTCUSD", "nasdaq/AAPL", "nasdaq/AMZN", "nasdaq/GOOG"}
    manifest = tokenize(store, tok, tmp_path, progress=False)
    stats = token_stats(tmp_path, tok)
    for inst, s in stats.items():
        for field, share in s["out_of_range"].items():
            assert share < 0.05, (inst, field, share)  # the 1st/99th-percentile tails, not a misfit
    assert sum(s["tokens"] for s in stats.values()) == sum(manifest["counts"].values())
    btc = stats["bitstamp/BTCUSD"]["hist"]["volume"]
    # the paper's unit (coins) squeezes bitcoin into one volume bin; currency units spread it out
    assert (btc.max() > 0.9) if volume == "size" else (btc.max() < 0.7)


@pytest.mark.parametrize("volume", ["size", "notional"])
def test_a_held_out_venue_is_neither_calibrated_on_nor_cut_by_time(store, tmp_path, volume: str) -> None:
    split = SplitConfig(holdout_venues=("bitstamp",))
    tok = fit_tokenizer(store, split, features=FeatureConfig(volume=volume), progress=False)
    assert "bitstamp/BTCUSD" not in tok.instruments
    m = tokenize(store, tok, tmp_path, split, progress=False)
    venue = [f for f in m["files"] if f["split"] == "test_venue"]
    assert [f["instrument"] for f in venue] == ["bitstamp/BTCUSD"] and m["counts"]["test_venue"] > 300_000
    oor = token_stats(tmp_path, tok)["bitstamp/BTCUSD"]["out_of_range"]
    assert oor["depth"] < 0.1 and oor["dt"] < 0.1  # zero-shot: bins fitted on equities only still hold bitcoin
    # ... except volume in the paper's unit: a fraction of a coin is below every equity order (one share or more)
    assert oor["volume"] > 0.9 if volume == "size" else oor["volume"] < 0.1
    tokens = np.fromfile(tmp_path / venue[0]["path"], dtype=np.uint16)
    assert tokens.max() < tok.vocab_size
