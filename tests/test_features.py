"""Features on real LOBSTER days: causality, the aggressor rebuild, and the reference price."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tradefm.codec import ADD, BUY, CANCEL, SELL, FeatureConfig
from tradefm.events import EventDay, Kind
from tradefm.features import book_before, order_factor, order_flow
from tradefm.readers import read

from .conftest import data_file

FIELDS = ("ts", "action", "side", "price", "size", "dt", "depth_bps", "log_volume", "level_change", "flag",
          "recent_volume", "recent_events", "spread_bps", "log_unit")


@pytest.fixture(scope="module")
def aapl() -> EventDay:
    return next(read(data_file("lobster/LOBSTER_SampleFile_AAPL_2012-06-21_1.zip")))


def _with_table(day: EventDay, table: pa.Table) -> EventDay:
    return EventDay(day.instrument, day.date, table, day.sources, day.notes)


@pytest.mark.parametrize("reference", ["vwap", "mid", "vwap+book", "vwap+touch", "vwap+join", "vwap+clear",
                                       "vwap+relative", "vwap+addtouch"])
@pytest.mark.parametrize("cut", [500, 20_000, 90_000])
def test_no_future_leakage(aapl: EventDay, cut: int, reference: str) -> None:
    """Perturbing every event after ``cut`` (here: prices, sizes, and dropping half of them) leaves every
    feature of every order event before it unchanged."""
    cfg = FeatureConfig(reference=reference.split("+")[0], book_context=reference.endswith("+book"),
                        cancel_from="touch" if reference.endswith("+touch") else "reference",
                        join_touch=reference.endswith("+join"), clear_touch=reference.endswith("+clear"),
                        hidden=not reference.endswith("+clear"),
                        volume="relative" if reference.endswith("+relative") else "size",
                        add_from="touch" if reference.endswith("+addtouch") else "reference")
    full = order_flow(aapl, cfg)
    t = aapl.table
    head, tail = t.slice(0, cut), t.slice(cut)
    rng = np.random.default_rng(0)
    keep = rng.random(tail.num_rows) < 0.5
    tail = tail.filter(pa.array(keep))
    tail = tail.set_column(tail.schema.get_field_index("size"), t.schema.field("size"),
                           pa.array(tail.column("size").to_numpy() * 3 + 1))
    tail = tail.set_column(tail.schema.get_field_index("price"), t.schema.field("price"),
                           pa.array(tail.column("price").to_numpy() + 500))
    changed = order_flow(_with_table(aapl, pa.concat_tables([head, tail])), cfg)
    boundary = t.column("ts")[cut].as_py()
    n = int((full.ts < boundary).sum())  # order events strictly before the first perturbed event's time
    assert n > 0
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(full, f)[:n], getattr(changed, f)[:n], err_msg=f)


def test_cancels_measured_from_the_touch() -> None:
    """With ``cancel_from="touch"`` a cancel's depth is its distance behind its side's best quote: never
    negative, 0 for a cancel of the best level (about a fifth of GOOG's cancels); adds keep the paper's depth.
    On GOOG's 10 levels (a level-1 file has cancels at the touch only)."""
    goog = next(read(data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")))
    ref = order_flow(goog, FeatureConfig(book_context=True))
    touch = order_flow(goog, FeatureConfig(book_context=True, cancel_from="touch"))
    np.testing.assert_array_equal(ref.price, touch.price)
    adds, cancels = touch.action == ADD, (touch.action == CANCEL) & np.isfinite(ref.spread_bps)
    np.testing.assert_array_equal(touch.depth_bps[adds], ref.depth_bps[adds])
    assert np.all(touch.depth_bps[cancels] >= -1e-9)
    assert 0.1 < np.mean(np.isclose(touch.depth_bps[cancels], 0.0)) < 0.5
    # from the touch a cancel is nearer than from the reference (the reference sits inside the spread)
    assert np.median(touch.depth_bps[cancels]) < np.median(ref.depth_bps[cancels])


def test_adds_that_join_the_touch_have_depth_zero() -> None:
    """With ``join_touch`` a passive add on its side's best quote has depth exactly 0 (about a fifth of GOOG's
    passive adds), no other order has, every other add keeps the paper's depth (up to the hair that moves one
    exactly at the reference off 0) and cancels keep theirs. On GOOG's 10 levels."""
    goog = next(read(data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")))
    base = order_flow(goog, FeatureConfig(book_context=True, cancel_from="touch"))
    join = order_flow(goog, FeatureConfig(book_context=True, cancel_from="touch", join_touch=True))
    t = goog.table
    rows = np.flatnonzero(np.isin(t.column("kind").to_numpy(), (Kind.ADD, Kind.MODIFY))
                          & ~t.column("snapshot").to_numpy())
    passive = (join.action == ADD) & ~join.aggressive
    assert len(rows) == passive.sum()
    bid, ask = book_before(goog)
    on_quote = join.price[passive] == np.where(join.side[passive] == 0, bid[rows], ask[rows])
    assert 0.1 < on_quote.mean() < 0.4
    np.testing.assert_array_equal(join.depth_bps[passive] == 0, on_quote)
    np.testing.assert_allclose(join.depth_bps[passive][~on_quote], base.depth_bps[passive][~on_quote], atol=1e-9)
    np.testing.assert_allclose(join.depth_bps[~passive], base.depth_bps[~passive], atol=1e-9)
    np.testing.assert_array_equal(join.depth_bps[join.action == CANCEL], base.depth_bps[join.action == CANCEL])
    assert not np.any(join.depth_bps[join.action == ADD][~passive[join.action == ADD]] == 0)


def test_aggressors_at_the_best_level_have_depth_clear_or_take() -> None:
    """With ``clear_touch`` an aggressor that took the whole opposite best level, and no deeper, has depth CLEAR:
    priced at that level and sized as all that rested there (checked against the book replayed up to it), about
    three in five of GOOG's visible aggressors; one that took part of it has depth TAKE, priced at it and smaller
    than what rested there; no other order has either. On GOOG no aggressor went deeper: every one is one of the
    two. With ``hidden=False`` executions of hidden orders make no aggressor: every one left fills at or through
    the opposite best quote. On GOOG's 10 levels."""
    from tradefm.codec import CLEAR, TAKE
    from tradefm.generation.market import book_at

    goog = next(read(data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")))
    base = FeatureConfig(book_context=True, cancel_from="touch", join_touch=True)
    with_hidden = order_flow(goog, base)
    flow = order_flow(goog, FeatureConfig(book_context=True, cancel_from="touch", join_touch=True, clear_touch=True,
                                          hidden=False))
    hidden = (goog.table.column("kind").to_numpy() == Kind.EXECUTE_HIDDEN).sum()
    assert hidden > 100 and flow.aggressive.sum() < with_hidden.aggressive.sum()
    agg = np.flatnonzero(flow.aggressive)
    clear, take = flow.depth_bps == CLEAR, flow.depth_bps == TAKE
    assert not np.any((clear | take) & ~flow.aggressive)
    assert 0.4 < clear[agg].mean() < 0.8 and np.all(clear[agg] | take[agg])
    bid, ask = book_before(goog)
    t = goog.table
    first_exec = {int(ts): i for i, ts in reversed(list(enumerate(t.column("ts").to_numpy())))}
    rows = np.array([first_exec[int(ts)] for ts in flow.ts[agg]])
    other = np.where(flow.side[agg] == BUY, ask[rows], bid[rows])
    assert np.mean(np.where(flow.side[agg] == BUY, flow.price[agg] >= other, flow.price[agg] <= other)) > 0.99
    whole, part = [], []
    for i in agg[::10]:
        side = 1 if flow.side[i] == BUY else -1
        level = book_at(goog, int(flow.ts[i])).levels(-side)[0]
        (whole if clear[i] else part).append(level[0] == flow.price[i] and (level[1] == flow.size[i]) == clear[i])
    assert len(whole) > 50 and np.mean(whole) > 0.95
    assert len(part) > 30 and np.mean(part) > 0.95


def test_executions_become_one_marketable_add_per_aggressor(aapl: EventDay) -> None:
    flow = order_flow(aapl)
    t = aapl.table
    kind = t.column("kind").to_numpy()
    market = ~t.column("snapshot").to_numpy()
    adds = int(((kind == Kind.ADD) & market).sum())
    cancels = int((np.isin(kind, (Kind.CANCEL, Kind.DELETE)) & market).sum())
    assert int((flow.action == CANCEL).sum()) == cancels
    assert int((flow.action == ADD).sum()) == adds + int(flow.aggressive.sum())
    execs = np.isin(kind, (Kind.EXECUTE, Kind.EXECUTE_HIDDEN))
    assert flow.size[flow.aggressive].sum() == t.column("size").to_numpy()[execs].sum()  # no share lost
    assert 0 < flow.aggressive.sum() < execs.sum()  # several executions per aggressor happen
    # an aggressive buy is priced at or through the reference, so its depth is <= 0 mostly
    buy = flow.aggressive & (flow.side == BUY)
    sell = flow.aggressive & (flow.side == SELL)
    assert np.median(flow.depth_bps[buy]) < 0 and np.median(flow.depth_bps[sell]) < 0
    assert np.median(flow.depth_bps[~flow.aggressive & (flow.action == ADD)]) > 0


def test_features_are_finite_and_ordered(aapl: EventDay) -> None:
    flow = order_flow(aapl)
    for f in ("dt", "depth_bps", "log_volume", "level_change"):
        assert np.isfinite(getattr(flow, f)).all(), f
    assert (flow.dt >= 0).all() and (np.diff(flow.ts) >= 0).all()
    assert flow.notional > 1e9  # AAPL traded well over a billion dollars that day


def test_vwap_and_mid_references_agree_closely(aapl: EventDay) -> None:
    v = order_flow(aapl, FeatureConfig(reference="vwap")).depth_bps
    m = order_flow(aapl, FeatureConfig(reference="mid")).depth_bps
    assert np.median(np.abs(v - m)) < 5  # basis points


def test_relative_volume_is_the_same_in_any_size_unit(aapl: EventDay) -> None:
    """Sizes 1,024 times larger (shares counted in 1/1,024ths: a unit a power of 2 apart) give the same relative
    volumes and regimes; sizes in units 3 times larger give volumes within a factor 2 (the unit is a power of 2)
    and, once the running unit has settled, mostly the same."""
    cfg = FeatureConfig(volume="relative")
    base = order_flow(aapl, cfg)
    t = aapl.table
    for k in (1024, 3):
        scaled = t.set_column(t.schema.get_field_index("size"), t.schema.field("size"),
                              pa.array(t.column("size").to_numpy() * k))
        flow = order_flow(_with_table(aapl, scaled), cfg)
        np.testing.assert_array_equal(flow.size, base.size * k)
        v, w = np.expm1(base.log_volume), np.expm1(flow.log_volume)
        if k == 1024:
            np.testing.assert_allclose(w, v, rtol=1e-12)
            np.testing.assert_allclose(flow.recent_volume, base.recent_volume, rtol=1e-9)
        else:
            assert np.all((w >= v / 2 - 1e-9) & (w <= 2 * v + 1e-9))
    raw = order_flow(aapl)
    assert np.isclose(np.median(np.expm1(raw.log_volume)), 100)  # AAPL's median order: a round lot
    assert not np.allclose(np.expm1(raw.log_volume), np.expm1(base.log_volume))


def test_a_coarser_clock_floors_every_timestamp_first(aapl: EventDay) -> None:
    """``resolution_ns`` reads the day as a millisecond feed would record it: the same events as flooring the
    timestamps by hand, every dt a whole number of milliseconds, and more of them simultaneous."""
    ms = 1_000_000
    flow = order_flow(aapl, FeatureConfig(resolution_ns=ms))
    t = aapl.table
    floored = t.set_column(t.schema.get_field_index("ts"), t.schema.field("ts"),
                           pa.array(t.column("ts").to_numpy() // ms * ms))
    by_hand = order_flow(_with_table(aapl, floored))
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(flow, name), getattr(by_hand, name), err_msg=name)
    assert np.all(flow.ts % ms == 0)
    raw = order_flow(aapl)
    assert np.mean(flow.dt == 0) > np.mean(raw.dt == 0) + 0.2  # about half of AAPL's gaps are under 1 ms
    with pytest.raises(ValueError, match="resolution_ns"):
        FeatureConfig(resolution_ns=-1)


def test_size_jitter_smears_round_lots_and_nothing_else(aapl: EventDay) -> None:
    """``size_jitter`` reads the day as a feed without round lots: each order's volume times one factor in
    [e^-j, e^j] on all its events, the same on every run; every other feature as recorded."""
    j = 0.35
    raw, jit = order_flow(aapl), order_flow(aapl, FeatureConfig(size_jitter=j))
    for name in FIELDS:
        if name not in ("log_volume", "recent_volume"):
            np.testing.assert_array_equal(getattr(jit, name), getattr(raw, name), err_msg=name)
    factor = np.expm1(jit.log_volume) / np.expm1(raw.log_volume)
    assert np.all((factor >= np.exp(-j) - 1e-9) & (factor <= np.exp(j) + 1e-9))
    assert np.std(np.log(factor)) == pytest.approx(j / np.sqrt(3), rel=0.05)  # uniform in log
    f = order_factor(np.array([7, 7, 8], dtype=np.int64), j)  # one factor per order, whatever its event
    assert f[0] == f[1] != f[2]
    # AAPL's modal order is a round lot of 100 shares; jittered, hardly any volume is a whole round lot
    share = [np.mean(np.isclose(np.expm1(f.log_volume), 100)) for f in (raw, jit)]
    assert share[0] > 0.3 and share[1] < 0.01, share
    np.testing.assert_array_equal(order_flow(aapl, FeatureConfig(size_jitter=j)).log_volume, jit.log_volume)
    with pytest.raises(ValueError, match="size_jitter"):
        FeatureConfig(size_jitter=-0.1)


def test_the_feed_kind_tells_a_full_book_from_trades_only(aapl: EventDay) -> None:
    """``book_feed`` is whether the feed has shown a resting order by each event: from the first event on a
    LOBSTER day (its start snapshot), never on Binance's trade stream, and causal on a day cut short."""
    from tradefm.readers import binance

    full = order_flow(aapl)
    assert full.book_feed.all()
    (trades,) = binance.read(data_file("binance/hftbacktest_ws_capture/usdm/btcusdt_20240808.gz"))
    flow = order_flow(trades)
    assert len(flow) > 1000 and not flow.book_feed.any() and flow.aggressive.all()
    # a trades-only start and a first add later: 0 before it, 1 from it on
    t = aapl.table
    kinds = t.column("kind").to_numpy().copy()
    snap = t.column("snapshot").to_numpy()
    first = int(np.argmax(~snap & np.isin(kinds, [Kind.EXECUTE, Kind.EXECUTE_HIDDEN])))
    keep = np.flatnonzero(~snap)[np.flatnonzero(~snap) >= first]  # no snapshot, from an execution on
    cut = order_flow(_with_table(aapl, t.take(pa.array(keep))))
    assert not cut.book_feed[0] and cut.book_feed[-1] and np.all(np.diff(cut.book_feed.astype(int)) >= 0)


def test_trades_only_reads_a_day_as_a_trades_feed_shows_it(aapl: EventDay) -> None:
    """``trades_only`` keeps the executions only: every order event an aggressor, no share of them lost, none
    at a time the full day has no aggressor, and a feed kind of trades only throughout."""
    full, trades = order_flow(aapl), order_flow(aapl, FeatureConfig(trades_only=True))
    assert trades.aggressive.all() and not trades.book_feed.any() and full.book_feed.all()
    assert trades.size.sum() == full.size[full.aggressive].sum()
    assert np.isin(trades.ts, full.ts[full.aggressive]).all() and np.isfinite(trades.depth_bps).all()
    assert 0.8 * full.aggressive.sum() < len(trades) <= full.aggressive.sum()  # a trades feed merges more


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="reference"):
        FeatureConfig(reference="last")


def test_tokens_before_a_perturbation_are_unchanged(aapl: EventDay) -> None:
    from tradefm.tokenizer import Tokenizer

    full = order_flow(aapl)
    tok = Tokenizer.fit({"nasdaq/AAPL": [full]})
    cut = 40_000
    t = aapl.table
    tail = t.slice(cut)
    tail = tail.set_column(tail.schema.get_field_index("price"), t.schema.field("price"),
                           pa.array(tail.column("price").to_numpy()[::-1].copy()))  # the future, scrambled
    changed = order_flow(_with_table(aapl, pa.concat_tables([t.slice(0, cut), tail])))
    n = int((full.ts < t.column("ts")[cut].as_py()).sum())
    a, ca = tok.encode(full, "nasdaq/AAPL")
    b, cb = tok.encode(changed, "nasdaq/AAPL")
    np.testing.assert_array_equal(a[:n], b[:n])
    np.testing.assert_array_equal(ca[:n], cb[:n])
    assert not np.array_equal(a[n:], b[n: len(a)])  # and the perturbation did reach the tokens after it


@pytest.mark.parametrize("keep", ["no executions", "one event", "snapshot only"])
def test_degenerate_days(aapl: EventDay, keep: str) -> None:
    from tradefm.tokenizer import Tokenizer

    t = aapl.table.slice(0, 5000)
    kind, snap = t.column("kind").to_numpy(), t.column("snapshot").to_numpy()
    mask = {"no executions": ~np.isin(kind, (4, 5)), "one event": np.arange(len(t)) <= int(np.argmin(snap)),
            "snapshot only": snap}[keep]
    flow = order_flow(_with_table(aapl, t.filter(pa.array(mask))))
    assert len(flow) == {"no executions": int((~snap & np.isin(kind, (1, 2, 3))).sum()), "one event": 1,
                         "snapshot only": 0}[keep]
    assert not flow.aggressive.any()
    for f in ("dt", "depth_bps", "log_volume", "level_change"):
        assert np.isfinite(getattr(flow, f)).all()
    tok = Tokenizer.fit({"nasdaq/AAPL": [order_flow(aapl)]})
    ids, ctx = tok.encode(flow, "nasdaq/AAPL")
    assert ctx.shape == (len(flow), 6)
    assert len(ids) == len(flow) and (ids < tok.vocab_size).all()
