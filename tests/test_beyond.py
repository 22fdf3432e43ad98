"""Depth beyond a feed's window: simulated books started from a level-N LOBSTER book keep N levels a side."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from tradefm.codec import FEATURES
from tradefm.evaluation.metrics import book_series
from tradefm.events import EventDay, Kind
from tradefm.features import order_flow
from tradefm.generation import Market
from tradefm.generation.rollout import decode_real
from tradefm.readers import read
from tradefm.tokenizer import Tokenizer

from .conftest import data_file


@pytest.fixture(scope="module", params=["GOOG_2012-06-21_10", "AMZN_2012-06-21_5"])
def day(request) -> EventDay:
    return next(read(data_file(f"lobster/LOBSTER_SampleFile_{request.param}.zip")))


def _start(day: EventDay, frac: float = 0.5) -> int:
    ts = day.table.column("ts").to_numpy()
    return int(ts[0] + frac * (ts[-1] - ts[0]))


def _depths(market: Market) -> tuple[int, int]:
    return len(market.book.levels(1)), len(market.book.levels(-1))


def test_sweeps_and_cancels_keep_the_window_full(day) -> None:
    """Market orders that take most of the other side, and cancels of the touch, leave both sides at the feed's
    N levels; without refill the same orders thin the book. Revealed levels are snapshot rows where they happened."""
    n, start = day.notes["levels"], _start(day)
    kept, thin = Market(day, start), Market(day, start, refill=False)
    assert _depths(kept) == _depths(thin) == (n, n)
    for i in range(6):
        for m in (kept, thin):
            side = 1 if i % 2 else -1
            volume = sum(q for _, q, _ in m.book.levels(-side)[: n - 2])
            m.market(start + i, side, volume)
            for p, q, _ in m.book.levels(side)[:1]:
                m.cancel(start + i, side, p, q, 0)
    assert min(_depths(kept)) >= n
    assert min(_depths(thin)) < n // 2
    t = kept.to_day("x").table
    snap, src = t.column("snapshot").to_numpy(), np.asarray(t.column("src_type").to_pylist())
    reveal = src == "reveal"
    assert reveal.sum() >= 6 * (n - 1) and snap[reveal].all()
    assert (t.column("kind").to_numpy()[reveal] == Kind.ADD).all()
    assert kept.events == int((~snap).sum())  # reveals are no events
    assert set(t.column("size").to_numpy()[reveal].tolist()) <= set(kept.beyond.sizes.tolist())


def test_an_add_behind_the_deepest_level_finds_the_levels_in_front_of_it(day) -> None:
    """A passive add far behind a side's deepest level (where a level-N feed shows nothing) meets the depth beyond
    the window: levels are revealed up to its price, so it never rests as a lone level behind a hole that would
    open the spread once the levels before it are gone. Without refill it rests alone."""
    start, tick = _start(day), day.instrument.tick_size
    for side in (1, -1):
        kept, thin = Market(day, start), Market(day, start, refill=False)
        widest = int(kept.beyond.gaps.max())
        for m in (kept, thin):
            deepest = m.book.levels(side)[-1][0]
            m.limit(start, side, deepest - side * 4 * widest, 100)
        prices = [p for p, _, _ in kept.book.levels(side)]
        assert deepest - side * 4 * widest in prices
        assert max(abs(a - b) for a, b in pairwise(prices)) <= widest
        thin_prices = [p for p, _, _ in thin.book.levels(side)]
        assert abs(thin_prices[-1] - thin_prices[-2]) > 3 * widest >= tick
        t = kept.to_day("x").table
        assert int((np.asarray(t.column("src_type").to_pylist()) == "reveal").sum()) >= 4
        assert kept.events == 1


def test_reveals_are_seeded_and_use_only_the_book_before_the_start(day) -> None:
    start = _start(day)
    a, b, c = Market(day, start, seed=1), Market(day, start, seed=1), Market(day, start, seed=2)
    for m in (a, b, c):
        m.market(start, 1, sum(q for _, q, _ in m.book.levels(-1)[:4]))
    rows = [np.asarray(m.rows["price"]) for m in (a, b, c)]
    assert np.array_equal(rows[0], rows[1]) and not np.array_equal(rows[0], rows[2])
    n = int(np.searchsorted(day.table.column("ts").to_numpy(), start))
    cut = EventDay(day.instrument, day.date, day.table.slice(0, n), day.sources, day.notes)
    early = Market(cut, start).beyond
    assert np.array_equal(early.gaps, a.beyond.gaps) and np.array_equal(early.sizes, a.beyond.sizes)


def test_a_full_depth_feed_reveals_nothing(day) -> None:
    full = EventDay(day.instrument, day.date, day.table, day.sources, {**day.notes, "levels": 0})
    m = Market(full, _start(day))
    assert m.beyond.levels == 0
    before = len(m.book.levels(-1))
    m.market(_start(day), 1, sum(q for _, q, _ in m.book.levels(-1)[:3]))
    assert len(m.book.levels(-1)) == before - 3


@pytest.mark.parametrize("frac", [0.3, 0.7])
def test_decoded_real_flow_never_empties_a_side(day, frac) -> None:
    """The real tokens decoded closed loop (the model's best case): the real book never shows an empty side,
    and neither does the decoded one, while without the depth beyond the window a side ran empty."""
    features = FEATURES["book"]  # the demo's
    tok = Tokenizer.fit({"nasdaq/AAPL": [order_flow(day, features)]}, features=features)
    for d in decode_real(tok, day, _start(day, frac), 300.0, rollouts=2, seed=0):
        s = book_series(d)
        assert len(s["ts"]) > 1000
        assert ((s["bid"] > 0) & (s["ask"] > 0)).all()


def test_lobster_files_show_each_reveal_with_the_message_that_uncovered_it(day) -> None:
    """In LOBSTER's layout a revealed level is in the orderbook row of its message, not a message itself."""
    from tradefm.book import engine as E
    from tradefm.generation.market import lobster_files

    n, start = day.notes["levels"], _start(day)
    m = Market(day, start)
    for i in range(4):
        side = 1 if i % 2 else -1
        m.market(start + i, side, sum(q for _, q, _ in m.book.levels(-side)[:3]))  # takes three levels
        if i == 1:
            p, q, _ = m.book.levels(1)[0]
            m.cancel(start + i, 1, p, q, 0)
    messages, book = lobster_files(m.to_day("x"), depth=n)
    assert len(messages.splitlines()) == len(book.splitlines()) == m.events
    top = np.zeros(4 * n, dtype=np.int64)
    E.top(m.book.state, n, top)
    assert book.splitlines()[-1] == ",".join(map(str, top))


def test_a_real_window_in_lobster_layout_is_the_files_own_orderbook(day) -> None:
    """A real window written back as LOBSTER files (LOB-Bench's real and conditioning data) shows the orderbook rows
    LOBSTER recorded for the same messages: the book is kept to the feed's window, as every replay keeps it, so a
    reveal does not add a level the book still held."""
    from tradefm.evaluation.metrics import window
    from tradefm.generation.market import lobster_files
    from tradefm.readers import lobster

    n = day.levels
    files = lobster.find(data_file(f"lobster/LOBSTER_SampleFile_{day.instrument.symbol}_{day.date}_{n}.zip"))[0]
    recorded = np.concatenate(list(lobster.iter_orderbook(files)))
    start = _start(day, 0.7)
    real = window(day, start, start + 60 * 10**9)
    _, book = lobster_files(real, n)
    written = np.loadtxt(book.splitlines(), delimiter=",", dtype=np.int64)
    first = int(np.searchsorted(day.table.filter(~day.table.column("snapshot").to_numpy()).column("ts").to_numpy(),
                                start))
    assert len(written) > 100
    np.testing.assert_array_equal(written, recorded[first:first + len(written)])
