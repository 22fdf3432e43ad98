"""Realism evaluation: the replayed book, the distances and their floor, stylized facts, fill fidelity, the report."""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from tradefm.evaluation import metrics as M
from tradefm.evaluation.dynamics import Dynamics, dynamics
from tradefm.evaluation.fills import fill_fidelity
from tradefm.evaluation.report import write_report
from tradefm.evaluation.stylized import MAX_LAG, compare_facts, hill_index, pooled_acf, side_by_side
from tradefm.events import EventDay, Instrument, table_from_columns
from tradefm.generation import Market
from tradefm.readers import lobster, read

from .conftest import data_file, random_orders

AAPL = "lobster/LOBSTER_SampleFile_AAPL_2012-06-21_1.zip"


@pytest.fixture(scope="module")
def aapl() -> EventDay:
    return next(read(data_file(AAPL)))


def at(day: EventDay, hhmm: str) -> int:
    """ns UTC of a New York wall-clock time on the day."""
    local = datetime.fromisoformat(f"{day.date}T{hhmm}").replace(tzinfo=ZoneInfo(day.instrument.timezone))
    return int(local.timestamp()) * 1_000_000_000


@pytest.fixture(scope="module")
def real_window(aapl: EventDay) -> EventDay:
    return M.window(aapl, at(aapl, "10:00"), at(aapl, "10:30"))


def zero_intelligence(day: EventDay, start: int, orders: int, seed: int, seconds: float = 600.0) -> EventDay:
    """A cheap generator for the tests: Poisson arrivals of random limit orders around the mid (some marketable)
    and cancels of random own resting orders, inside a Market seeded with the real book."""
    rng = np.random.default_rng(seed)
    market = Market(day, start)
    tick = day.instrument.tick_size
    times = start + np.cumsum(rng.exponential(seconds / orders, orders) * 1e9).astype(np.int64)
    random_orders(market, times, rng, 5_850_000.0, tick, (-3, 20), (1, 4))
    return market.to_day(f"zi-{seed}")


# ---------------------------------------------------------------- the replayed book and returns


def _hand_day() -> EventDay:
    """Bid 100 / ask 102 at 0 s; bid 101 at 1.5 s; the ask deleted at 3.2 s (one side empty) and back at 103 at
    3.7 s; a deep bid at 5 s."""
    s = 1_000_000_000
    rows = [(0, 1, 1, 100, 5, 1), (0, 1, -1, 102, 7, 2), (int(1.5 * s), 1, 1, 101, 3, 3),
            (int(3.2 * s), 3, -1, 102, 7, 2), (int(3.7 * s), 1, -1, 103, 1, 4), (5 * s, 1, 1, 90, 2, 5)]
    cols = dict(zip(("ts", "kind", "side", "price", "size", "order_id"), map(np.array, zip(*rows, strict=True)),
                    strict=True))
    n = len(rows)
    table = table_from_columns({**cols, "snapshot": np.zeros(n, dtype=bool), "src_type": ["t"] * n})
    return EventDay(Instrument("X", "test", price_scale=100, tick_size=1), "2020-01-02", table)


def test_book_series_and_returns_on_a_hand_made_day() -> None:
    s = M.book_series(_hand_day())
    np.testing.assert_array_equal(s["spread"][[1, 2, 4, 5]], [2, 1, 2, 2])
    assert math.isnan(s["spread"][3]) and math.isnan(s["mid"][3]) and s["ask"][3] == 0
    np.testing.assert_allclose(s["imbalance"][[1, 2]], [(5 - 7) / 12, (3 - 7) / 10])
    np.testing.assert_array_equal(s["touch_volume"][[2, 4]], [10, 4])
    # grid 0..5 s: mids 101, 101, 101.5, 101.5 (ask empty at 3.2 s: the last defined mid), 102, 102
    expected = np.diff(np.log([101, 101, 101.5, 101.5, 102, 102]))
    np.testing.assert_allclose(M.mid_returns(_hand_day(), 1.0), expected)
    np.testing.assert_allclose(M.mid_returns(_hand_day(), 2.0), np.diff(np.log([101, 101.5, 102])))


def test_book_series_matches_lobster_orderbook(aapl: EventDay) -> None:
    """The touch after each message is the venue's own level 1 (reveals included), every row of the day."""
    files = lobster.find(data_file(AAPL))[0]
    book = np.concatenate(list(lobster.iter_orderbook(files)))
    s = M.book_series(aapl)
    assert len(s["ts"]) == len(book)
    for col, key in enumerate(("ask", "ask_size", "bid", "bid_size")):
        np.testing.assert_array_equal(s[key], book[:, col], err_msg=key)


def test_window_is_the_day_from_its_book(aapl: EventDay, real_window: EventDay) -> None:
    """A window opens with the book at its start, so its touch matches the whole day's over the same events."""
    full = M.book_series(aapl)
    part = M.book_series(real_window)
    a = np.searchsorted(full["ts"], part["ts"][0])
    for key in ("bid", "ask", "bid_size", "ask_size"):
        np.testing.assert_array_equal(part[key], full[key][a:a + len(part["ts"])], err_msg=key)


# ---------------------------------------------------------------- distances


def test_distance_point_values_are_scipy_and_resamples_use_the_same_formulas() -> None:
    rng = np.random.default_rng(3)
    x = np.round(rng.standard_t(3, 4000), 1)
    y = np.round(1.3 * rng.standard_t(3, 2500) + 0.2, 1)
    pair = M._Pair(x, y)
    weighted = pair.evaluate(pair.x.counts, pair.y.counts)
    mu, sd = x.mean(), x.std()
    assert weighted["KS"] == pytest.approx(stats.ks_2samp(x, y).statistic, abs=1e-12)
    assert weighted["W1"] == pytest.approx(stats.wasserstein_distance((x - mu) / sd, (y - mu) / sd), rel=1e-9)
    res = M.distance(x, y, n_boot=100, rng=np.random.default_rng(0))
    assert res == M.distance(x, y, n_boot=100, rng=np.random.default_rng(0))  # seeded
    for value, low, high in res.values():
        assert 0 < low <= high and low < value * 3 and high > value / 3


def test_l1_bins() -> None:
    spread = np.array([1, 1, 2, 3, 3, 3, 5] * 100, dtype=float)
    edges = M.l1_bins(spread)
    assert np.isinf(edges[[0, -1]]).all() and np.allclose(edges[1:-1], [1.5, 2.5, 3.5, 4.5])  # one bin per tick
    heavy = np.random.default_rng(0).standard_cauchy(100_000)
    assert len(M.l1_bins(heavy)) - 1 <= M.MAX_BINS


def test_real_window_against_itself_and_a_perturbed_copy(real_window: EventDay) -> None:
    rows = M.compare(real_window, [real_window], seed=1, n_boot=20)
    assert len(rows) == 2 * len(M.DISTRIBUTIONS) + len(M.L1_SCORES)
    for r in rows:
        assert r.value == pytest.approx(0, abs=1e-12), r
        assert r.n_real == r.n_generated > 0
    # the same window with time running 1.5 times slower and every size tripled
    t = real_window.table
    ts = t.column("ts").to_numpy()
    slow = ts[0] + ((ts - ts[0]) * 1.5).astype(np.int64)
    t = t.set_column(t.schema.get_field_index("ts"), "ts", pa.array(slow))
    t = t.set_column(t.schema.get_field_index("size"), "size", pa.array(t.column("size").to_numpy() * 3))
    t = t.cast(real_window.table.schema)
    perturbed = EventDay(real_window.instrument, real_window.date, t, real_window.sources, real_window.notes)
    got = M.as_table(M.compare(real_window, [perturbed], seed=1, n_boot=20))
    assert got["all", "inter_arrival", "KS"].value > 0.1
    assert got["all", "order_volume", "KS"].value > 0.3
    assert got["all", "touch_volume", "L1"].value > 0.3
    assert got["all", "returns_10s", "KS"].value > 0.02
    assert got["all", "spread", "KS"].value == pytest.approx(0, abs=1e-12)  # neither change touches the spread


def test_floor_morning_against_afternoon_aapl(aapl: EventDay) -> None:
    """The market against itself: AAPL 09:30-12:45 against 12:45-16:00 (measured: KS 0.048 on 10 s returns,
    0.32 on spread, 0.11 on order depth; docs/EVALUATION.md)."""
    got = M.as_table(M.floor(aapl, at(aapl, "12:45"), seed=0, n_boot=50))
    assert 0.01 < got["all", "returns_10s", "KS"].value < 0.2
    assert 0.15 < got["all", "spread", "KS"].value < 0.5
    assert 0.03 < got["all", "order_depth", "KS"].value < 0.3
    for r in got.values():
        assert 0 <= r.low <= r.high and r.n_real > 0 and r.n_generated > 0


def test_tiers_pool_days_per_tier(aapl: EventDay, real_window: EventDay) -> None:
    start = at(aapl, "10:00")
    gen = [zero_intelligence(aapl, start, 400, seed=s, seconds=120) for s in (1, 2)]
    rows = M.compare(real_window, gen, seed=0, tiers={"nasdaq/AAPL": 2}, n_boot=10)
    groups = {r.group for r in rows}
    assert groups == {"all", "tier 2"}
    tier = M.as_table([r for r in rows if r.group == "tier 2"])
    for r in rows:
        if r.group == "all":
            assert tier["tier 2", r.metric, r.stat].value == r.value  # one instrument: the tier is everything


# ---------------------------------------------------------------- stylized facts


def test_hill_and_acf_recover_known_values() -> None:
    rng = np.random.default_rng(0)
    assert hill_index(rng.pareto(3.0, 200_000) + 1.0) == pytest.approx(3.0, rel=0.1)
    e = rng.standard_normal(50_000)
    ar = np.zeros_like(e)
    for i in range(1, len(e)):
        ar[i] = 0.5 * ar[i - 1] + e[i]
    acf = pooled_acf([ar[:25_000], ar[25_000:]], max_lag=3)
    np.testing.assert_allclose(acf, [0.5, 0.25, 0.125], atol=0.03)


def test_stylized_facts_side_by_side(aapl: EventDay, real_window: EventDay) -> None:
    gen = {"zi": [zero_intelligence(aapl, at(aapl, "10:00"), 600, seed=s, seconds=300) for s in (1, 2)]}
    facts = compare_facts(real_window, gen)
    assert list(facts) == ["real", "zi"]
    real = facts["real"]
    assert real.acf_returns.shape == real.acf_abs.shape == (MAX_LAG,)
    assert real.acf_abs[:10].mean() > 0.02  # volatility clusters in the real window
    assert real.kurtosis[1.0] > real.kurtosis[60.0] > -1  # tails thin out with the horizon
    assert 1 < real.hill < 10
    rows = side_by_side(facts)
    assert all(len(vals) == 2 for _, vals in rows)


# ---------------------------------------------------------------- fill fidelity


def test_fill_fidelity_on_real_aapl(aapl: EventDay) -> None:
    """The real flow of 10:00-11:00 replayed through the engine gives back the real fills (measured over the whole
    day: per-minute count correlation 0.995, volume correlation 1.0; docs/EVALUATION.md)."""
    f = fill_fidelity(aapl, at(aapl, "10:00"), at(aapl, "11:00"))
    assert f.minutes == 60 and f.real_fills > 1000 and f.sim_fills > 1000
    for c in (f.count_corr, f.volume_corr, f.size_hist_corr):
        assert -1 <= c <= 1
    assert f.count_corr > 0.5 and f.volume_corr > 0.5
    assert abs(f.sim_volume - f.real_volume) < 0.05 * f.real_volume
    assert 0 <= f.size_ks < 0.2
    hidden = fill_fidelity(aapl, at(aapl, "10:00"), at(aapl, "11:00"), hidden=True)
    assert hidden.real_fills > f.real_fills and -1 <= hidden.count_corr <= 1


# ---------------------------------------------------------------- the report


def test_report_writes_html_pngs_and_a_deterministic_table(aapl: EventDay, real_window: EventDay,
                                                           tmp_path: Path) -> None:
    start = at(aapl, "10:00")
    generated = {
        "zero-intelligence": [zero_intelligence(aapl, start, 800, seed=s) for s in (1, 2)],
        "other": [zero_intelligence(aapl, start, 1500, seed=s, seconds=300) for s in (3, 4)],
    }
    halves = M.split_halves(real_window)
    decoded = [zero_intelligence(aapl, start, 900, seed=5)]  # stands in for the decoded real tokens: a column
    paths = [write_report(tmp_path / name, real_window, generated, floor_pair=halves, seed=7, n_boot=30,
                          decoded=decoded) for name in ("a", "b")]
    for p in paths:
        assert p.name == "report.html" and p.exists()
        page = p.read_text()
        for png in ("returns_10s.png", "acf.png", "spread.png", "inter_arrival.png", "price_paths.png"):
            assert (p.parent / png).stat().st_size > 1000 and png in page
    tables = [(p.parent / "table.md").read_bytes() for p in paths]
    assert tables[0] == tables[1]
    distances, dynamics = tables[0].decode().split("## Book dynamics")
    lines = distances.splitlines()
    header = next(line for line in lines if line.startswith("| metric"))
    assert header == "| metric | zero-intelligence | other | real tokens, decoded | real vs real |"
    top = lines.index(header)
    body = lines[top + 2:lines.index("", top)]
    assert len(body) == 2 * len(M.DISTRIBUTIONS) + len(M.L1_SCORES)
    wins = {"KS": 0, "W1": 0, "L1": 0}
    for line in body:
        cells = line.strip("|").split(" | ")
        assert any("**" in c for c in cells[1:3]) and "**" not in "".join(cells[3:])  # bold: generators only
        zi, other = (float(c.replace("**", "").split()[0]) for c in cells[1:3])
        wins[cells[0].split()[0]] += zi < other
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| ")]
    pairs = [r for r in rows if " vs " in r[0]]
    assert pairs == [["zero-intelligence vs other", f"{wins['KS']} of 7", f"{wins['W1']} of 7",
                      f"{wins['L1']} of 6"]]  # head to head: generators only, counted as the cells read
    dyn = [line.strip("|").split(" | ") for line in dynamics.splitlines() if line.startswith("| ")]
    assert len(dyn[0]) == 6 and dyn[0][1:5] == ["real", "zero-intelligence", "other", "real tokens, decoded"]
    assert len(dyn) == 1 + len(fields(Dynamics)) and "Book dynamics" in paths[0].read_text()


def test_book_dynamics_of_a_real_window() -> None:
    """On ten minutes of GOOG: the placement shares add up, what adds narrow and what cancels and executions widen
    differ by exactly the spread's net change, and the real flow's known traits show (a sixth of passive adds
    join the best quote; cancelled orders are seconds old; the mid moves on about one event in ten, and the mid
    moves counted from metrics' own replay agree; almost no move by an aggressor is undone by the next one)."""
    from tradefm.features import book_before

    day = next(read(data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")))
    start = at(day, "15:00")
    w = M.window(day, start, start + 600 * 10**9)
    d = dynamics([w])
    shares = d.passive_inside + d.passive_at_touch + d.passive_near + d.passive_deep
    assert shares == pytest.approx(1)
    bid, ask = book_before(w)
    market = np.flatnonzero(~w.table.column("snapshot").to_numpy())
    spread = (ask - bid) / day.instrument.tick_size
    ts = w.table.column("ts").to_numpy()[market]
    minutes = (ts[-1] - ts[0]) / 60e9
    net = (d.widening_by_cancels + d.widening_by_executions - d.narrowing_by_adds) * minutes
    assert net == pytest.approx(spread[market[-1]] - spread[market[0]], abs=1e-6)
    assert d.narrowing_by_adds > 30 and 0.1 < d.passive_at_touch < 0.3 and 1 < d.cancel_age_s < 10
    assert d.median_spread == np.median(spread[market][np.isfinite(spread[market])])
    # the mid's moves, counted again from the touch after each event (metrics' replay, not the one above)
    series = M.book_series(w)
    step = np.diff(series["mid"])
    j = np.flatnonzero(np.isfinite(step) & (step != 0))
    t_move = series["ts"][1:][j]
    undone = (np.sign(step[j[1:]]) == -np.sign(step[j[:-1]])) & (np.diff(t_move) < 0.1e9)
    per_k = 1000 / len(step)
    assert d.mid_moves == pytest.approx(len(j) * per_k, abs=2 * per_k)  # the two count one event apart
    assert d.fast_reversals == pytest.approx(undone.sum() * per_k, abs=2 * per_k)
    assert 0 < d.fast_reversals < d.mid_moves < 1000
    assert d.fast_reversals_by_executions < 0.1 * d.fast_reversals  # real aggressors come in runs of one side


def test_the_papers_depth_bins_lose_the_touch() -> None:
    """Decoding real GOOG passive adds from their own tokens against the book each one met: with the paper's 16
    depth bins (about 3 ticks wide at $570) less than half of the adds that joined the best quote decode onto it,
    and a fifth land at their real price; with 128 bins the placement comes back (within 2 points), and so does
    every share with 16 bins and ``join_touch`` (joining the quote has a depth of its own, 0; within 4 points)."""
    from tradefm.evaluation.dynamics import decoded_placement
    from tradefm.features import FeatureConfig, order_flow
    from tradefm.tokenizer import Tokenizer, TokenizerConfig

    day = next(read(data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")))
    features = FeatureConfig(book_context=True, cancel_from="touch")
    flows = {"nasdaq/GOOG": [order_flow(day, features)]}
    w = M.window(day, at(day, "14:30"), at(day, "15:10"))
    got = {n: decoded_placement(w, Tokenizer.fit(flows, TokenizerConfig(radix=(2, 2, n, 16, 16)), features))
           for n in (16, 128)}
    real = got[16]["real"]
    assert real == got[128]["real"] and sum(real.values()) == pytest.approx(1) and real["at_touch"] > 0.1
    assert got[16]["decoded"]["at_touch"] < real["at_touch"] / 2 < got[128]["decoded"]["at_touch"]
    assert got[16]["decoded"]["inside"] > real["inside"] + 0.03  # what misses the touch mostly lands inside
    assert all(abs(got[128]["decoded"][k] - v) < 0.02 for k, v in real.items())
    assert got[16]["match"]["exact_price"] < 0.3 < 0.8 < got[128]["match"]["exact_price"]
    assert got[16]["match"]["crosses"] < 0.01
    join = FeatureConfig(book_context=True, cancel_from="touch", join_touch=True)
    joined = decoded_placement(w, Tokenizer.fit({"nasdaq/GOOG": [order_flow(day, join)]}, features=join))
    assert joined["real"] == real and all(abs(joined["decoded"][k] - v) < 0.04 for k, v in real.items())
    assert joined["decoded"]["at_touch"] >= real["at_touch"]  # the joiners, and a few adds whose bin holds it
    assert joined["match"]["exact_price"] > got[16]["match"]["exact_price"] + 0.1
