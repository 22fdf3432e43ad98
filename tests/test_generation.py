"""Closed-loop rollouts on a real LOBSTER book: determinism, output formats, participants, sampling."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from tradefm.book.replay import replay_lobster
from tradefm.features import order_flow
from tradefm.generation.output import write_rollouts
from tradefm.generation.rollout import Sampling, ScheduledOrder, decode_real, generate, paced, sample, twap
from tradefm.model import KVCache, TradeFM, preset
from tradefm.readers import read
from tradefm.tokenizer import Tokenizer

from .conftest import data_file


@pytest.fixture(scope="module")
def setup():
    day = next(read(data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")))
    tok = Tokenizer.fit({"nasdaq/GOOG": [order_flow(day)]})
    torch.manual_seed(0)
    model = TradeFM(preset("tiny", layers=2, context=64))
    ts = day.table.column("ts").to_numpy()
    return model, tok, day, int(ts[0] + 0.5 * (ts[-1] - ts[0]))


def test_same_seed_same_bytes(setup, tmp_path) -> None:
    model, tok, day, start = setup
    runs = []
    for name in ("a", "b"):
        days = generate(model, tok, day, start, events=150, rollouts=3, seed=7)
        write_rollouts(days, tmp_path / name)
        runs.append(sorted((tmp_path / name).rglob("*")))
    for a, b in zip(*runs, strict=True):
        assert a.name == b.name
        if a.suffix == ".csv":
            assert a.read_bytes() == b.read_bytes()
    ta = pq.read_table(tmp_path / "a" / "rollout_00" / "events.parquet")
    assert ta.equals(pq.read_table(tmp_path / "b" / "rollout_00" / "events.parquet"))
    other = generate(model, tok, day, start, events=150, rollouts=3, seed=8)
    assert not other[0].table.equals(ta.replace_schema_metadata(None))


def test_rollouts_are_feed_like_days_lobster_tools_can_read(setup, tmp_path) -> None:
    model, tok, day, start = setup
    days = generate(model, tok, day, start, events=300, rollouts=2, seed=1)
    for g in days:
        t = g.table
        market = ~t.column("snapshot").to_numpy()
        assert (np.diff(t.column("ts").to_numpy()[market]) >= 0).all()
        kinds = set(t.column("kind").to_numpy()[market].tolist())
        assert kinds <= {1, 2, 3, 4} and 1 in kinds
    assert not days[0].table.equals(days[1].table)  # rollouts differ from each other
    folders = write_rollouts(days, tmp_path)
    (message,) = folders[0].glob("*_message_*.csv")
    ids = np.loadtxt(message, delimiter=",", usecols=2, dtype=np.int64)
    assert ids.max() < 2**31 and days[0].table.column("order_id").to_numpy().max() >= 2**31  # int32 loaders
    (report,) = replay_lobster(folders[0])  # our own LOBSTER reader and replay on the exported files
    assert report.exact and report.rows == int((~days[0].table.column("snapshot").to_numpy()).sum())


def test_a_twap_participant_is_executed_and_flagged(setup) -> None:
    model, tok, day, start = setup
    plan = twap(side=-1, total=3000, minutes=0.5, slices=10)
    (g,) = generate(model, tok, day, start, events=400, rollouts=1, seed=3, participant=plan)
    t = g.table
    src = t.column("src_type").to_numpy(zero_copy_only=False)
    mine = src == "participant"
    kinds = t.column("kind").to_numpy()[mine]
    assert (kinds == 4).all() and t.column("size").to_numpy()[mine].sum() <= 3000
    assert mine.sum() >= 10  # every slice traded (a slice may take several resting orders)
    assert (t.column("side").to_numpy()[mine] == 1).all()  # a sell hits bids


def test_participant_callback(setup) -> None:
    model, tok, day, start = setup
    calls = []

    def buy_when_idle(market, elapsed: float) -> list[ScheduledOrder]:
        calls.append(elapsed)
        return [ScheduledOrder(elapsed, 1, 100)] if len(calls) % 50 == 0 else []

    (g,) = generate(model, tok, day, start, events=200, rollouts=1, seed=3, participant=buy_when_idle)
    assert len(calls) == 200 and (g.table.column("src_type").to_numpy(zero_copy_only=False) == "participant").any()


def test_sampling_rules() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.tensor([[5.0, 4.0, 1.0, -2.0]]).repeat(500, 1)
    none = torch.zeros((500, 0), dtype=torch.long)
    top1 = sample(logits, none, Sampling(top_k=1, repetition_penalty=1.0), gen)
    assert (top1 == 0).all()
    nucleus = sample(logits, none, Sampling(top_p=0.7, repetition_penalty=1.0), gen)
    assert set(nucleus.tolist()) == {0}  # token 0 alone holds > 70% of the mass
    free = sample(logits, none, Sampling(repetition_penalty=1.0), gen)
    hist = torch.zeros((500, 1), dtype=torch.long)  # token 0 was just seen: a strong penalty moves mass away
    penalised = sample(logits, hist, Sampling(repetition_penalty=5.0), gen)
    assert (penalised == 0).float().mean() < (free == 0).float().mean()
    with pytest.raises(ValueError):
        Sampling(temperature=0)
    with pytest.raises(ValueError, match="pace > 0"):
        Sampling(pace=0)


def test_pace_holds_the_expected_wait_and_keeps_the_rest() -> None:
    logits = torch.randn(3, 64, generator=torch.Generator().manual_seed(0)) * 2  # 16 ids of 4 dt bins each
    waits = torch.tensor([1e-4, 1e-2, 0.5, 50.0])

    def wait(x: torch.Tensor) -> torch.Tensor:
        return (x.softmax(dim=1).view(3, 16, 4).sum(dim=1) * waits).sum(dim=1)

    for target in (wait(logits) / 10, torch.tensor([0.3, 2.0, 40.0])):
        tilted = paced(logits, waits, target)
        assert torch.allclose(wait(tilted), target, rtol=1e-3)
        # inside a dt bin the other digits keep their odds: only the wait's marginal moves
        odds = (tilted - logits).view(3, 16, 4)
        assert torch.allclose(odds, odds[:, :1], atol=1e-4)
    assert torch.allclose(paced(logits, waits, wait(logits)).softmax(1), logits.softmax(1), atol=1e-5)
    beyond = paced(logits, waits, torch.full((3,), 1e-9))  # shorter than the bins can say: all on the shortest
    assert (beyond.softmax(1).view(3, 16, 4).sum(dim=1)[:, 0] > 0.99).all()


def test_pace_sets_the_rate_against_the_real_flow(setup) -> None:
    model, tok, day, start = setup
    rates = []
    for pace in (1.0, 4.0):
        (g,) = generate(model, tok, day, start, events=150, rollouts=1, seed=2, sampling=Sampling(pace=pace))
        ts = g.table.column("ts").to_numpy()
        rates.append(150 / ((ts[-1] - start) / 1e9))
    flow = order_flow(day)
    before = flow.ts[(flow.ts < start) & (flow.ts >= start - 60e9)]
    real = len(before) / 60.0
    assert 2.5 * real < rates[1] < 6 * real  # about four times the real rate before the start
    assert rates[1] > 2 * rates[0]


def test_control_fixes_the_regime_fields(setup) -> None:
    from tradefm.generation.rollout import Rollouts

    model, tok, day, start = setup
    for value in (0, 2):
        r = Rollouts(model, tok, day, start, rollouts=2, seed=0, control={"volume": value, "activity": value})
        r.run(40)
        assert (r.ctx[:, -40:, 3] == value).all() and (r.ctx[:, -40:, 4] == value).all()
    free = Rollouts(model, tok, day, start, rollouts=1, seed=0)
    free.run(40)
    assert free.ctx[:, :, 3].max() < tok.config.regimes
    with pytest.raises(ValueError, match="control"):
        Rollouts(model, tok, day, start, control={"volume": 5})


def test_guidance_scales_the_controls_push(setup) -> None:
    """Guidance 0 samples from the measured context alone: the same bytes as no control at all. Guidance 1 is
    plain conditioning (one pass). Any other guidance samples from free + g * (controlled - free)."""
    from tradefm.generation.rollout import Rollouts

    model, tok, day, start = setup
    control = {"volume": 2, "activity": 2}
    plain = generate(model, tok, day, start, events=80, rollouts=2, seed=3)
    zero = generate(model, tok, day, start, events=80, rollouts=2, seed=3, sampling=Sampling(guidance=0.0),
                    control=control)
    assert all(a.table.equals(b.table) for a, b in zip(plain, zero, strict=True))
    steered = generate(model, tok, day, start, events=80, rollouts=2, seed=3, control=control)
    assert not all(a.table.equals(b.table) for a, b in zip(plain, steered, strict=True))
    r = Rollouts(model, tok, day, start, rollouts=2, seed=0, sampling=Sampling(guidance=3.0), control=control)
    free = r.ctx.clone()
    r.ctx[:, :, 3:5] = 2
    steered_logits, _ = model(r.tokens, r.ctx)
    free_logits, _ = model(r.tokens, free)
    cache = [KVCache.empty(model.cfg, 2, "cpu", torch.float32) for _ in range(2)]
    got = r._logits(r.tokens, r.ctx, free, *cache)
    torch.testing.assert_close(got[:, -1], (free_logits + 3.0 * (steered_logits - free_logits))[:, -1])
    with pytest.raises(ValueError, match="guidance"):
        Sampling(guidance=-1.0)


def test_a_marketable_add_is_immediate_or_cancel(setup) -> None:
    """A decoded aggressor is its executions: with ``ioc`` the part the other side cannot fill is dropped, so
    it never rests through the spread; without, it rests at its limit price."""
    from tradefm.events import Kind
    from tradefm.generation import Market

    _, _, day, start = setup
    for ioc in (True, False):
        market = Market(day, start)
        bid, ask = market.best()
        touch = next(q for p, q, _ in market.book.levels(-1) if p == ask)
        fills = market.limit(start, 1, ask, touch + 500, ioc=ioc)
        assert sum(f.size for f in fills) == touch
        new_bid, new_ask = market.best()
        assert new_ask > ask
        assert new_bid == (bid if ioc else ask)
        t = market.to_day("t").table  # the market's own rows: a level revealed behind the ask is not one
        kinds = t.column("kind").to_numpy()[~t.column("snapshot").to_numpy()][-len(fills) - 1:]
        assert (kinds[-1] == Kind.ADD) != ioc


@pytest.mark.parametrize("reference", ["vwap", "mid"])
def test_a_token_enters_the_model_with_the_book_it_met(setup, reference: str) -> None:
    """Training pairs token i with the features before event i; a rollout must too. An add that halves the
    spread comes back with the spread bin of the book before it, and it is priced from the reference the
    features use (the book mid with ``reference="mid"``)."""
    from tradefm.features import FeatureConfig, spread_bps
    from tradefm.generation.rollout import Rollouts

    model, _, day, start = setup
    features = FeatureConfig(book_context=True, reference=reference)
    tok = Tokenizer.fit({"nasdaq/GOOG": [order_flow(day, features)]}, features=features)
    ro = Rollouts(model, tok, day, start, rollouts=1, seed=0)
    bid, ask = ro.sim.book(0).best()
    before = int(tok.spread_bin(spread_bps(bid, ask)))
    ref = (bid + ask) / 2 if reference == "mid" else ro.sim.vwap[0, 0] / ro.sim.vwap[0, 1]
    depth = (ref - (bid + ask) / 2) / ref * 1e4  # a bid priced at the book mid: it halves the spread
    vbin = int(tok.volume.index(np.log1p([100]))[0])
    token = int(tok.compose(0, 0, tok.depth.index(np.array([depth]))[0], vbin, 0))
    row = ro.sim.step(np.array([token]))[0]
    new_bid, new_ask = ro.sim.book(0).best()
    assert bid < new_bid < ask and new_ask == ask
    assert int(tok.spread_bin(spread_bps(new_bid, new_ask))) != before  # the add moved the spread to another bin
    assert row[5] == before


def test_rollouts_of_different_starts_are_each_what_their_start_alone_gives(setup) -> None:
    """One batch of books from two starts (their engine arrays of different sizes stacked, the id index rebuilt
    at one size, the depth beyond the window of each its own) decodes each start's real tokens exactly as a
    batch of that start alone does."""
    from tradefm.generation.rollout import Rollouts

    _, tok, day, start = setup
    later = start + 1_800_000_000_000  # half an hour on: another book
    mixed = Rollouts(None, tok, day, [start, later], rollouts=2, seed=4)
    alone = [Rollouts(None, tok, day, s, rollouts=2, seed=4) for s in (start, later)]
    assert mixed.sim.snapshots[0].shape != mixed.sim.snapshots[1].shape or \
        not np.array_equal(mixed.sim.snapshots[0], mixed.sim.snapshots[1])
    for i in range(400):
        mixed.sim.step(np.array([a.real_tokens[i] for a in alone], dtype=np.int64))
        for a in alone:
            a.sim.step(np.full(2, a.real_tokens[i], dtype=np.int64))
    days = mixed.sim.days("x")
    for b, a in enumerate(alone):
        assert days[b].table.equals(a.sim.days("x")[b].table)
        assert np.array_equal(mixed.tokens[b], a.tokens[b])
    with pytest.raises(ValueError, match="3 starts for 2 rollouts"):
        Rollouts(None, tok, day, [start] * 3, rollouts=2)


def test_books_of_different_sizes_stack_into_one_batch() -> None:
    from tradefm.book import OrderBook
    from tradefm.book import engine as E
    from tradefm.events import Kind
    from tradefm.generation.simulator import _STATE, _stacked

    small, big = OrderBook(replay=False), OrderBook(replay=False)
    small.apply(Kind.ADD, 1, 100, 5, 7)
    for i in range(3000):  # its arrays and its id index grow past the small book's
        big.apply(Kind.ADD, -1, 200 + i % 50, 1, 10 + i)
    assert len(big.state.keys) > len(small.state.keys)
    stacked = _stacked([small.state, big.state], np.array([1, 0, 1]))
    for b, want in enumerate((big, small, big)):
        view = OrderBook(replay=False)
        view.state = E.BookState(*(stacked[name][b] for name in _STATE))
        assert view.levels(1) == want.levels(1) and view.levels(-1) == want.levels(-1)
        assert view.holds(7) == (want is small) and view.holds(3009) == (want is big)
        view.apply(Kind.DELETE, -1, 200, 1, 10) if want is big else view.apply(Kind.DELETE, 1, 100, 5, 7)
        assert not view.holds(10 if want is big else 7)  # found by its id through the rebuilt index


def test_real_tokens_decoded_closed_loop_keep_the_spread(setup) -> None:
    """The real GOOG tokens of ten minutes, decoded against the simulated book as a model's samples are: a
    perfect model's rollout, with the demo's book context. Cancels (depth from their side's touch) delete known
    orders whole, as real ones do (GOOG: 19 partial cancels in 65,000), and the spread stays near the real one
    in a book kept whole by the depth beyond the window: medians 19-22 ticks against 25, KS 0.17-0.19 for four
    rollouts of each of three seeds (two rollouts scatter from 0.16 to 0.23, too wide to read the bound) (cancelling
    an order larger than the token's volume bin in part instead silted the book up and narrowed the spread to 9
    ticks, KS 0.5-0.7; without CLEAR and TAKE, aggressors decoded from a lagging reference rest one tick short of
    the other side's quote: over the demo's 30-minute window, median 11 ticks against 25, KS 0.46)."""
    from scipy.stats import ks_2samp

    from tradefm.codec import FEATURES
    from tradefm.evaluation.dynamics import dynamics
    from tradefm.evaluation.metrics import pooled, samples, window
    from tradefm.events import Kind

    _, _, day, start = setup
    features = FEATURES["book"]
    tok = Tokenizer.fit({"nasdaq/GOOG": [order_flow(day, features)]}, features=features)
    real = window(day, start, start + 600 * 10**9)
    decoded = decode_real(tok, day, start, 600.0, rollouts=4, seed=0)
    for d in decoded:
        kind, oid = (d.table.column(c).to_numpy() for c in ("kind", "order_id"))
        assert (kind == Kind.DELETE).sum() > 500
        assert (oid[kind == Kind.CANCEL] == 0).all()  # only the snapshot's anonymous volume loses a part
        assert len(d.table) > 0.6 * len(real.table)
    spread = [dynamics([d]).median_spread for d in (real, *decoded)]
    assert all(s > 0.75 * spread[0] for s in spread[1:]), spread
    sr, sd = (pooled(samples(d) for d in days)["spread"] for days in ([real], decoded))
    assert ks_2samp(sr, sd).statistic < 0.25


def test_control_response_reads_the_regime_fields(setup) -> None:
    """The model's expected next inter-arrival, volume and add probability on real GOOG flow under each control
    setting. A setting changes only its field: once a field's embedding no longer tells its values apart, fixing
    it gives back the free response exactly, while the other field still moves it."""
    import copy

    from tradefm.evaluation.control import SETTINGS, control_response

    model, tok, day, start = setup
    end = start + 600 * 10**9
    response = control_response(model, tok, day, start, end)
    assert set(response) == set(SETTINGS)
    for row in response.values():
        assert np.isfinite(row["log_dt"]) and np.isfinite(row["log_volume"]) and 0 < row["p_add"] < 1
    assert response["volume=2"] != response["free"] and response == control_response(model, tok, day, start, end)
    blind = copy.deepcopy(model)
    with torch.no_grad():
        blind.field_embeds[3].weight[:] = blind.field_embeds[3].weight[0]  # the volume regime: one vector for all
    blind_response = control_response(blind, tok, day, start, end)
    assert blind_response["volume=0"] == blind_response["volume=2"] == blind_response["free"]
    assert blind_response["activity=2"] != blind_response["free"]
    with pytest.raises(ValueError, match="fewer than one context"):
        control_response(model, tok, day, start, start + 10**9)


def test_the_simulator_gives_the_same_books_on_any_number_of_threads(setup) -> None:
    """Rollouts share nothing, so the parallel step is deterministic: one thread and every core give the same
    record, through the record's growth (thousands of events) and many blocks of uniforms."""
    import numba

    _, tok, day, start = setup
    runs = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        try:
            runs.append(decode_real(tok, day, start, 1800.0, rollouts=5, seed=3))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert len(runs[0][0].table) > 4096
    for a, b in zip(*runs, strict=True):
        assert a.table.equals(b.table)
    assert not runs[0][0].table.equals(runs[0][1].table)


def test_relative_volume_decodes_into_the_instruments_own_sizes(setup) -> None:
    """With ``volume="relative"`` a token's volume is in the running unit, which the simulator carries on from the
    real events before the start: the real GOOG tokens decoded closed loop add orders sized like the real ones,
    and on the same day with sizes in 1/1,024ths of a share, 1,024 times as large."""
    import pyarrow as pa
    from scipy.stats import ks_2samp

    from tradefm.evaluation.metrics import window
    from tradefm.events import EventDay, Kind
    from tradefm.features import FeatureConfig

    _, _, day, start = setup
    features = FeatureConfig(book_context=True, cancel_from="touch", join_touch=True, clear_touch=True, hidden=False,
                             volume="relative")
    t = day.table
    fine = EventDay(day.instrument, day.date, t.set_column(t.schema.get_field_index("size"), t.schema.field("size"),
                                                            pa.array(t.column("size").to_numpy() * 1024)),
                    day.sources, day.notes)
    tok = Tokenizer.fit({"nasdaq/GOOG": [order_flow(day, features)]}, features=features)
    assert np.array_equal(tok.encode(order_flow(fine, features), "nasdaq/GOOG")[0],
                          tok.encode(order_flow(day, features), "nasdaq/GOOG")[0])

    def add_sizes(d: EventDay) -> np.ndarray:
        m = (d.table.column("kind").to_numpy() == Kind.ADD) & ~d.table.column("snapshot").to_numpy()
        return d.table.column("size").to_numpy()[m].astype(float)

    real = add_sizes(window(day, start, start + 120 * 10**9))
    base, scaled = (np.concatenate([add_sizes(x) for x in decode_real(tok, d, start, 120.0, rollouts=2, seed=0)])
                    for d in (day, fine))
    assert ks_2samp(np.log(real), np.log(base)).statistic < 0.3  # 0.20; in units of 1, not the running one: 0.86
    assert np.median(base) == pytest.approx(np.median(real), rel=0.5)  # 16 against 13; in units of 1: 1.5
    assert np.median(scaled) / np.median(base) == pytest.approx(1024, rel=0.1)
    # the rollout holds the unit of the real events before its start: moved by its own sizes (drawn in that unit)
    # it would drift (closed loop on these tokens, from 32 to 16 shares within 3,000 events)
    from tradefm.codec import unit_of
    from tradefm.generation.rollout import Rollouts
    from tradefm.generation.simulator import R_UNIT

    ro = Rollouts(None, tok, day, start, rollouts=1, seed=0)
    held = float(ro.sim.vwap[0, R_UNIT])
    flow = order_flow(day, features)
    first = int(np.searchsorted(flow.ts, start))
    assert unit_of(held) == unit_of(float(flow.log_unit[first]))
    for token in ro.real_tokens[:3000]:
        ro.sim.step(np.array([token], dtype=np.int64))
    assert float(ro.sim.vwap[0, R_UNIT]) == held


def test_the_feed_kind_ends_the_context_in_training_and_in_rollouts(setup) -> None:
    """With ``feed=True`` (and the clock before it) the last context field is the feed's kind: 1 on a LOBSTER
    day, and 1 in every row a rollout measures, whose book is whole."""
    from tradefm.features import FeatureConfig
    from tradefm.generation.rollout import Rollouts

    _, _, day, start = setup
    features = FeatureConfig(clock=True, feed=True)
    tok = Tokenizer.fit({"nasdaq/GOOG": [order_flow(day, features)]}, features=features)
    _, ctx = tok.encode(order_flow(day, features), "nasdaq/GOOG")
    assert tok.context_fields[-2:] == ("clock", "feed") and tok.context_sizes[-1] == 2 and ctx.shape[1] == 8
    assert (ctx[:, 7] == 1).all()
    ro = Rollouts(None, tok, day, start, rollouts=2, seed=0)
    for token in ro.real_tokens[:100]:
        rows = ro.sim.step(np.full(2, token, dtype=np.int64))
        assert rows.shape[1] == 8 and (rows[:, 7] == 1).all() and (rows[:, 6] > 0).all()
    days = generate(TradeFM(preset("tiny", layers=2, context=64, context_fields=tok.context_sizes)), tok, day, start,
                    events=60, rollouts=2, seed=0)
    assert len(days) == 2


def test_a_participants_order_is_stamped_on_the_tokenizers_clock(setup) -> None:
    """With ``resolution_ns`` a participant's own order gets the wait a feed of that clock would record: one in
    the same millisecond as the event before it is simultaneous, as every real one is in the training tokens."""
    from dataclasses import replace

    from tradefm.features import FeatureConfig
    from tradefm.generation.rollout import Rollouts
    from tradefm.generation.simulator import P_PRICE, P_SIDE, P_SIZE, P_TS, P_VALID

    _, _, day, start = setup
    ms = 1_000_000
    tok = Tokenizer.fit({"nasdaq/GOOG": [order_flow(day, FeatureConfig(resolution_ns=ms))]},
                        features=FeatureConfig(resolution_ns=ms))
    waits = []
    for t in (tok, replace(tok, features=replace(tok.features, resolution_ns=0))):  # the same bins, either clock
        ro = Rollouts(None, t, day, start, rollouts=1, seed=0)
        now = int(ro.sim.ts[0])
        due = np.zeros((1, 5), dtype=np.int64)
        due[0, [P_VALID, P_TS, P_SIDE, P_SIZE, P_PRICE]] = 1, now - now % ms + ms - 1, 1, 100, 0  # this ms's last ns
        assert due[0, P_TS] - now > 100_000
        tokens = np.zeros(1, dtype=np.int64)
        ro.sim.step(tokens, due)
        waits.append(int(t.decompose(tokens)[4][0]))
    simultaneous = t.decompose(tok.encode(order_flow(day, tok.features), "nasdaq/GOOG")[0])[4].min()
    assert waits[0] == simultaneous < waits[1]


def test_the_clock_is_the_local_half_hour_in_training_and_in_rollouts(setup) -> None:
    """With ``clock=True`` every token carries the half hour of the venue's local day (New York for Nasdaq), read
    off its own timestamp: in the tokens a model trains on, and in the context rows a rollout measures for the
    events it writes. A model that embeds fewer fields than the tokenizer writes is refused in one line."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from tradefm.features import FeatureConfig
    from tradefm.generation.rollout import Rollouts

    model, _, day, start = setup
    features = FeatureConfig(clock=True)
    tok = Tokenizer.fit({"nasdaq/GOOG": [order_flow(day, features)]}, features=features)
    flow = order_flow(day, features)
    _, ctx = tok.encode(flow, "nasdaq/GOOG")
    tz = ZoneInfo("America/New_York")

    def half_hour(ts: int) -> int:
        local = datetime.fromtimestamp(ts / 1e9, tz)
        return 2 * local.hour + local.minute // 30

    assert tok.context_fields[-1] == "clock" and ctx.shape[1] == 7
    for i in np.linspace(0, len(flow) - 1, 50).astype(int):
        assert ctx[i, 6] == half_hour(int(flow.ts[i]))
    assert ctx[0, 6] == 19 and ctx[-1, 6] == 31  # 09:30-10:00 ... 15:30-16:00
    ro = Rollouts(None, tok, day, start, rollouts=2, seed=0)
    assert (ro.ctx[:, :, 6] == torch.from_numpy(ctx[:, 6][np.searchsorted(flow.ts, start) - ro.ctx.shape[1]:
                                                           np.searchsorted(flow.ts, start)].astype(np.int64))).all()
    for token in ro.real_tokens[:300]:
        rows = ro.sim.step(np.full(2, token, dtype=np.int64))
        assert all(rows[b, 6] == half_hour(int(ro.sim.ts[b])) for b in range(2))
    with pytest.raises(ValueError, match="not the model's tokenizer"):
        Rollouts(model, tok, day, start, rollouts=1, seed=0)
    clocked = TradeFM(preset("tiny", layers=2, context=64, context_fields=tok.context_sizes))
    days = generate(clocked, tok, day, start, events=60, rollouts=2, seed=0)
    assert len(days) == 2


def test_a_rollout_the_step_cap_stops_before_its_end_says_so(setup) -> None:
    from tradefm.evaluation.benchmark import CAP_MIN, step_cap
    from tradefm.evaluation.metrics import window

    model, tok, day, start = setup
    short = generate(model, tok, day, start, events=5, rollouts=2, seed=0, duration_s=600)
    assert [d.notes["cut_short"] for d in short] == [True, True]
    whole = generate(model, tok, day, start, events=2_000, rollouts=2, seed=0, duration_s=1e-3)
    assert [d.notes["cut_short"] for d in whole] == [False, False]
    assert step_cap(window(day, start, start + 10**9)) == CAP_MIN  # a second of GOOG: under a thousand events
    busy = window(day, day.table.column("ts").to_numpy()[0], start)
    assert step_cap(busy) > CAP_MIN


def test_a_relative_side_is_read_against_the_last_aggressor_in_training_and_in_rollouts(setup) -> None:
    """``side="relative"``: a token's side bit says whether it is on the last aggressor's side. Real GOOG
    aggressors repeat the side of the one before most of the time (the order-sign memory). Decoded closed loop,
    the real tokens give the same rollouts as with absolute sides; a rollout starts from the last real aggressor's
    side, and its own aggressors, a participant's market order included, move it."""
    import hashlib
    from dataclasses import replace

    from tradefm.codec import CLEAR, FEATURES, aggressor_before, relative_sides
    from tradefm.features import BUY, SELL
    from tradefm.generation.rollout import Rollouts
    from tradefm.generation.simulator import P_PRICE, P_SIDE, P_SIZE, P_TS, P_VALID, R_SIDE

    side = np.array([BUY, SELL, SELL, BUY, SELL, BUY], dtype=np.int8)
    aggressive = np.array([False, True, False, True, True, False])
    assert relative_sides(side, aggressive).tolist() == [0, 1, 0, 1, 1, 1]  # against buy, buy, sell, sell, buy, sell
    assert relative_sides(side[:3], aggressive[:3]).tolist() == [0, 1, 0]  # the future does not reach back
    assert aggressor_before(side, aggressive, np.array([0, 2, 4, 6])).tolist() == [1, -1, 1, -1]

    _, _, day, start = setup
    hashes, toks, share = [], {}, {}
    for s in ("absolute", "relative"):
        f = replace(FEATURES["book"], side=s)
        flow = order_flow(day, f)
        toks[s] = tok = Tokenizer.fit({"nasdaq/GOOG": [flow]}, features=f)
        bits = tok.decompose(tok.encode(flow, "nasdaq/GOOG")[0])[1]
        share[s] = float((bits[flow.aggressive] == 0).mean())  # relative: on the last one's side; absolute: buys
        days = decode_real(tok, day, start, 120.0, rollouts=2, seed=0)
        hashes.append([hashlib.sha256(repr(d.table.to_pydict()).encode()).hexdigest() for d in days])
    assert 0.7 < share["relative"] < 0.95 and abs(share["absolute"] - 0.5) < 0.1, share
    assert hashes[0] == hashes[1]

    tok, flow = toks["relative"], order_flow(day, toks["relative"].features)
    ro = Rollouts(None, tok, day, start, rollouts=1, seed=0)
    last = int(aggressor_before(flow.side, flow.aggressive, [np.searchsorted(flow.ts, start)])[0])
    assert ro.sim.vwap[0, R_SIDE] == last
    clear = int(tok.depth.index(np.array([CLEAR]))[0])
    for bit, now in ((0, last), (1, -last)):  # an aggressor on the last one's side, then one on the other
        n = int(ro.sim.nlog[0])
        ro.sim.step(np.array([int(tok.compose(0, bit, clear, 5, 0))]))
        rows = ro.sim.log[0, n: ro.sim.nlog[0]]
        fills = rows[rows[:, 1] == 4]
        assert len(fills) and (fills[:, 2] == -now).all()  # it took the opposite best level
        assert ro.sim.vwap[0, R_SIDE] == now
    due = np.zeros((1, 5), dtype=np.int64)
    due[0, [P_VALID, P_TS, P_SIDE, P_SIZE, P_PRICE]] = 1, int(ro.sim.ts[0]), last, 100, 0  # a market order
    tokens = np.zeros(1, dtype=np.int64)
    ro.sim.step(tokens, due)
    assert tok.decompose(tokens)[1][0] == 1 and ro.sim.vwap[0, R_SIDE] == last  # the other side, now the last
