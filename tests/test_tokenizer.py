"""The universal tokenizer: the paper's id layout, every id round-trips, edge cases stay in the vocabulary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tradefm.features import FeatureConfig, OrderFlow, order_flow
from tradefm.readers import read
from tradefm.tokenizer import QUANTILES, Bins, Reservoir, Sample, Tokenizer, TokenizerConfig, sorted_quantile

from .conftest import data_file


def synthetic_flow(n: int, seed: int = 0, **override: np.ndarray) -> OrderFlow:
    """Edge cases only: real-data behaviour is tested on LOBSTER below."""
    rng = np.random.default_rng(seed)
    cols = dict(
        ts=np.cumsum(rng.integers(0, 10**9, n)), action=rng.integers(0, 2, n).astype(np.int8),
        side=rng.integers(0, 2, n).astype(np.int8), price=rng.integers(1000, 1100, n), size=rng.integers(1, 500, n),
        aggressive=np.zeros(n, bool), dt=rng.exponential(0.5, n), depth_bps=rng.normal(3, 5, n),
        log_volume=np.log1p(rng.integers(1, 500, n)), level_change=rng.normal(0, 0.01, n),
        flag=np.zeros(n, np.int8), reference=np.full(n, 1050.0), recent_volume=rng.exponential(2000, n),
        recent_events=rng.poisson(30, n).astype(float), spread_bps=rng.uniform(0.5, 10, n), log_unit=np.zeros(n),
        book_feed=np.ones(n, bool),
    )
    cols.update(override)
    return OrderFlow(**cols, notional=float(n))


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.fit({"x/A": [synthetic_flow(5000)], "x/B": [synthetic_flow(3000, 1)],
                          "x/C": [synthetic_flow(100, 2)]})


def test_the_papers_worked_example(tok: Tokenizer) -> None:
    assert tok.vocab_size == 16_384
    assert int(tok.compose(action=0, side=1, depth=7, volume=7, dt=11)) == 6011
    assert [int(x) for x in tok.decompose(6011)] == [0, 1, 7, 7, 11]


def test_every_id_round_trips(tok: Tokenizer) -> None:
    ids = np.arange(tok.vocab_size)
    fields = tok.decompose(ids)
    np.testing.assert_array_equal(tok.compose(*fields), ids)
    # a decoded value re-encodes to the same bins, with bin medians and with seeded draws
    for rng in (None, np.random.default_rng(7)):
        v = tok.values(ids, rng)
        assert (tok.depth.index(v["depth_bps"]) == fields[2]).all()
        assert (tok.volume.index(v["log_volume"]) == fields[3]).all()
        flow = synthetic_flow(len(ids), dt=v["dt"], depth_bps=v["depth_bps"], log_volume=v["log_volume"],
                              action=fields[0].astype(np.int8), side=fields[1].astype(np.int8))
        np.testing.assert_array_equal(tok.encode(flow, "x/A")[0], ids)


def test_seeded_draws_are_deterministic(tok: Tokenizer) -> None:
    ids = np.arange(0, tok.vocab_size, 7)
    a = tok.values(ids, np.random.default_rng(3))
    b = tok.values(ids, np.random.default_rng(3))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize(
    "override",
    [
        {"depth_bps": np.array([np.nan, np.inf, -np.inf, 1e9])},
        {"log_volume": np.zeros(4)},  # zero size
        {"dt": np.zeros(4)},
        {"depth_bps": np.zeros(4)},  # a constant price
        {"level_change": np.array([np.nan, 5.0, -5.0, 0.0])},
    ],
)
def test_no_value_falls_outside_the_vocabulary(tok: Tokenizer, override) -> None:
    flow = synthetic_flow(4, **override)
    ids, ctx = tok.encode(flow, "x/A")
    assert ids.dtype == np.uint16 and ((ids >= 0) & (ids < tok.vocab_size)).all()
    assert (ctx[:, 1] < tok.config.level_bins).all()


def test_degenerate_calibrations_still_give_a_valid_tokenizer() -> None:
    one = synthetic_flow(1)
    const = synthetic_flow(50, depth_bps=np.zeros(50), log_volume=np.full(50, 2.0), dt=np.zeros(50),
                           level_change=np.zeros(50))
    for flows in ({"x/one": [one]}, {"x/const": [const]}):
        t = Tokenizer.fit(flows)
        assert all(np.all(np.diff(b.edges) > 0) for b in (t.depth, t.volume, t.dt, t.level))
        ids, _ = t.encode(synthetic_flow(100), "new/asset")
        assert ((ids >= 0) & (ids < t.vocab_size)).all()
    with pytest.raises(ValueError, match="no order events"):
        Tokenizer.fit({"x/empty": [synthetic_flow(0)]})


def test_tiers_for_known_and_new_instruments(tok: Tokenizer) -> None:
    assert [tok.instruments[k]["tier"] for k in ("x/A", "x/B", "x/C")] == [2, 1, 0]
    _, ctx = tok.encode(synthetic_flow(3), "new/venue")
    assert (ctx[:, 0] == 1).all()  # unknown and no ADV given: the middle tier, never the day's own volume
    _, ctx = tok.encode(synthetic_flow(3), "new/venue", adv=1e12)
    assert (ctx[:, 0] == 2).all()


def test_saved_file_is_versioned_hashed_and_checked(tok: Tokenizer, tmp_path) -> None:
    path = tok.save(tmp_path / "tok.json")
    again = Tokenizer.load(path)
    assert again.hash == tok.hash and again.to_dict() == tok.to_dict()
    d = json.loads(path.read_text())
    d["depth"]["edges"][3] += 0.5
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="hash mismatch"):
        Tokenizer.load(path)


def test_a_setting_newer_than_the_file_format_keeps_older_files_loading(tok: Tokenizer, tmp_path) -> None:
    """A tokenizer without the clock (or with adds from the reference) writes no ``clock`` (``add_from``) key, so a
    file saved before the setting existed has the same content hash and loads; with it set, the key is there, the
    hash differs and the file round-trips."""
    from dataclasses import replace

    assert not {"clock", "add_from", "feed", "size_jitter", "resolution_ns"} & set(tok.to_dict()["features"])
    touch = replace(tok, features=replace(tok.features, add_from="touch"))
    assert touch.to_dict()["features"]["add_from"] == "touch" and touch.hash != tok.hash
    clocked = replace(tok, features=replace(tok.features, clock=True))
    assert clocked.to_dict()["features"]["clock"] is True and clocked.hash != tok.hash
    again = Tokenizer.load(clocked.save(tmp_path / "clocked.json"))
    assert again.features.clock and again.hash == clocked.hash and again.context_fields[-1] == "clock"


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        TokenizerConfig(radix=(3, 2, 16, 16, 16))
    assert TokenizerConfig(radix=(2, 2, 32, 32, 32)).vocab_size == 2**17


@pytest.fixture(scope="module")
def two_stocks() -> tuple[dict[str, list[OrderFlow]], Tokenizer]:
    """AAPL and GOOG order flow of the LOBSTER samples, and the tokenizer fitted on both."""
    flows = {}
    for z in ("AAPL_2012-06-21_1", "GOOG_2012-06-21_10"):
        day = next(read(data_file(f"lobster/LOBSTER_SampleFile_{z}.zip")))
        flows[f"nasdaq/{day.instrument.symbol}"] = [order_flow(day)]
    return flows, Tokenizer.fit(flows)


def test_universal_bins_fit_lobster_stocks(two_stocks) -> None:
    flows, t = two_stocks
    for key, (flow,) in flows.items():
        ids, _ = t.encode(flow, key)
        _, _, d, v, dt = t.decompose(ids)
        for b in (d, v, dt):
            out = np.mean((b == 0) | (b == 15))
            assert out < 0.06, key  # the tails hold a few percent, as the 1st/99th percentiles intend
        assert len(np.unique(ids)) > 2000


def test_decoded_values_keep_the_real_distribution_inside_each_bin() -> None:
    """Drawing a value for each real token from its bin's quantiles gives back the real values' distribution
    (round lots included): KS against the real values is far below a uniform draw over the bin's range."""
    from scipy.stats import ks_2samp

    day = next(read(data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")))
    flow = order_flow(day)
    t = Tokenizer.fit({"nasdaq/GOOG": [flow]})
    ids, _ = t.encode(flow, "nasdaq/GOOG")
    v = t.values(ids, np.random.default_rng(0))
    _, _, _, vb, _ = t.decompose(ids)
    lo, hi = np.asarray(t.volume.lows)[vb], np.asarray(t.volume.highs)[vb]
    uniform = lo + (hi - lo) * np.random.default_rng(0).random(len(ids))
    drawn = ks_2samp(v["log_volume"], flow.log_volume).statistic
    assert drawn < 0.02 < ks_2samp(uniform, flow.log_volume).statistic
    size = np.round(np.expm1(v["log_volume"]))
    assert abs(np.mean(size == 100) - np.mean(flow.size == 100)) < 0.02  # the round lot survives decoding
    assert ks_2samp(v["depth_bps"], flow.depth_bps).statistic < 0.02
    assert ks_2samp(v["dt"], flow.dt).statistic < 0.02


def test_regimes_are_each_instruments_own_terciles(two_stocks) -> None:
    """Low / normal / high are relative to the instrument: on its calibration day each regime holds about a
    third of every instrument's events; an instrument the tokenizer never saw falls back to the pooled
    terciles."""
    flows, t = two_stocks
    for key, (flow,) in flows.items():
        _, ctx = t.encode(flow, key)
        for field in (3, 4):
            shares = np.bincount(ctx[:, field], minlength=3) / len(ctx)
            assert np.all((shares > 0.25) & (shares < 0.42)), (key, field, shares)
        _, unseen = t.encode(flow, "elsewhere/" + key)
        np.testing.assert_array_equal(unseen[:, 4], t.activity_regime.index(np.log1p(flow.recent_events)))
        assert not np.array_equal(unseen[:, 4], ctx[:, 4])


def test_the_spread_context_is_relative_to_the_price() -> None:
    """In ticks AMZN ($220) and GOOG ($570) spreads barely overlap (median 13 against 28 ticks); in bps of the mid,
    the unit of every depth, both stocks fill every spread bin, so a spread bin means the same for both."""
    flows = {}
    features = FeatureConfig(book_context=True)
    for z in ("AMZN_2012-06-21_5", "GOOG_2012-06-21_10"):
        day = next(read(data_file(f"lobster/LOBSTER_SampleFile_{z}.zip")))
        flows[f"nasdaq/{day.instrument.symbol}"] = [order_flow(day, features)]
    t = Tokenizer.fit(flows, features=features)
    assert t.context_sizes[5] == t.config.spread_bins
    for key, (flow,) in flows.items():
        _, ctx = t.encode(flow, key)
        shares = np.bincount(ctx[:, 5], minlength=t.config.spread_bins) / len(ctx)
        assert np.all((shares > 0.05) & (shares < 0.25)), (key, shares)


def test_aggressor_ids_are_the_orders_that_take_the_opposite_level() -> None:
    """Under the book features an id is an aggressor's exactly when its order took the opposite best level
    (depth CLEAR or TAKE), on a real day; the paper's features cannot say, and say so."""
    from tradefm.codec import ADD, CLEAR, FEATURES, TAKE
    from tradefm.events import InputError

    day = next(read(data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")))
    flow = order_flow(day, FEATURES["book"])
    tok = Tokenizer.fit({"nasdaq/GOOG": [flow]}, features=FEATURES["book"])
    tokens, _ = tok.encode(flow, "nasdaq/GOOG")
    took = (flow.action == ADD) & np.isin(flow.depth_bps, [CLEAR, TAKE])
    assert 0.01 < took.mean() < 0.5
    np.testing.assert_array_equal(tok.aggressors()[tokens], took)
    with pytest.raises(InputError, match="clear_touch"):
        Tokenizer.fit({"nasdaq/GOOG": [order_flow(day)]}).aggressors()


@pytest.mark.parametrize("n", [1, 2, 3, 10, 1001])
def test_quantiles_read_off_sorted_values_are_numpys(n: int) -> None:
    rng = np.random.default_rng(n)
    for x in (np.sort(rng.normal(size=n)), np.sort(rng.integers(0, 4, n).astype(float))):  # ties too
        q = np.r_[0.0, rng.random(40), 0.5, 1.0]
        assert np.array_equal(sorted_quantile(x, q), np.quantile(x, q))


def test_bins_fit_sorted_or_not_gives_numpys_medians_and_quantiles() -> None:
    rng = np.random.default_rng(3)
    x = np.r_[rng.integers(0, 50, 5000) / 7, np.nan, np.inf]
    edges = np.array([0.5, 2.0, 2.0 + 1e-9, 5.0, 100.0])  # the last bin is empty
    a, b = Bins.fit(x, edges), Bins.fit(np.sort(x), edges)
    assert a == b
    finite = np.sort(x[np.isfinite(x)])
    idx = np.searchsorted(edges, finite, side="right")
    for k in range(len(edges) + 1):
        run = finite[idx == k]
        if len(run):
            assert a.centers[k] == float(np.median(run))
            assert a.quantiles[k] == [float(v) for v in np.quantile(run, np.linspace(0, 1, QUANTILES))]
    assert a.quantiles[-1] == [float(v) for v in np.linspace(finite[-1], 100.0, QUANTILES + 1)[:-1]]


def test_a_reservoir_keeps_cap_rows_when_keys_repeat() -> None:
    keys = np.array([5, 1, 5, 5, 2, 5, 9, 5], dtype=np.uint64)
    r = Reservoir(3, 1, slack=1)
    for k in keys:
        r.add(Sample(np.array([k]), np.array([[float(k)]])))
    got = r.sample()
    assert sorted(got.keys.tolist()) == [1, 2, 5] and got.values[:, 0].tolist() == got.keys.astype(float).tolist()
