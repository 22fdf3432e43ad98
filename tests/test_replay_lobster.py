"""The engine reproduces every LOBSTER sample's orderbook file, row by row, every level."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tradefm.book import OrderBook
from tradefm.book.replay import replay_lobster
from tradefm.readers import lobster, read

from .conftest import data_file

ZIPS = [
    ("LOBSTER_SampleFile_AAPL_2012-06-21_1.zip", 118_497),
    ("LOBSTER_SampleFile_AMZN_2012-06-21_1.zip", 57_515),
    ("LOBSTER_SampleFile_AMZN_2012-06-21_5.zip", 155_935),
    ("LOBSTER_SampleFile_GOOG_2012-06-21_1.zip", 49_482),
    ("LOBSTER_SampleFile_GOOG_2012-06-21_5.zip", 112_673),
    ("LOBSTER_SampleFile_GOOG_2012-06-21_10.zip", 147_916),
]


@pytest.mark.parametrize(("name", "messages"), ZIPS)
def test_every_row_of_every_sample_matches(name: str, messages: int) -> None:
    (report,) = replay_lobster(data_file(f"lobster/{name}"))
    assert report.rows == messages
    assert report.exact, f"first mismatch at message {report.first_mismatch}"
    c = report.counters
    assert c.missing == 0 and c.crossed_adds == 0
    assert c.unknown_refs > 0  # orders resting before the open are referenced by ids the file never submitted
    assert report.reveals > 0


def test_fixture_999_rows() -> None:
    (report,) = replay_lobster(data_file("lobster/fixture_aapl_level10_999"))
    assert (report.rows, report.matched_rows, report.levels) == (999, 999, 10)


def test_a_wrong_message_is_caught(tmp_path) -> None:
    """Negative control: the comparison really can fail."""
    src = data_file("lobster/fixture_aapl_level10_999")
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    msg = next(tmp_path.glob("*message*"))
    lines = msg.read_text().splitlines()
    fields = lines[500].split(",")
    fields[3] = str(int(fields[3]) + 1)  # one more share in message 501
    lines[500] = ",".join(fields)
    msg.write_text("\n".join(lines))
    (report,) = replay_lobster(tmp_path)
    assert not report.exact
    assert report.first_mismatch == 500


def test_initial_book_undoes_the_first_message() -> None:
    files = lobster.find(data_file("lobster/fixture_aapl_level10_999"))[0]
    row0 = lobster.first_row(files)
    # message 1 adds 18 shares at 585.33 on the bid, which is row 0's best bid: before it, that level was empty
    book = lobster.initial_book(row0, {"kind": 1, "side": 1, "price": 5853300, "size": 18})
    bids = [(p, q) for s, p, q in book if s == 1]
    asks = [(p, q) for s, p, q in book if s == -1]
    assert bids[0] == (5853000, 150) and len(bids) == 9
    assert asks[0] == (5859400, 200) and len(asks) == 10


def _rows(name: str) -> tuple[object, np.ndarray]:
    files = lobster.find(data_file(name))[0]
    return files, np.concatenate(list(lobster.iter_orderbook(files)))


@pytest.mark.parametrize("name", [f"lobster/{z}" for z, _ in ZIPS])
def test_the_stored_events_alone_rebuild_the_top_of_book(name: str) -> None:
    """With the reveals in the event stream, no orderbook file is needed: the canonical events reproduce the
    best bid and ask after every message."""
    (day,) = read(data_file(name))
    files, rows = _rows(name)
    t = day.table
    cols = [t.column(c).to_numpy() for c in ("kind", "side", "price", "size", "order_id")]
    _, touch = OrderBook(replay=True, depth=files.level).apply_many(*cols)
    best = touch[:, [0, 2]]
    market = ~t.column("snapshot").to_numpy()
    # the state after a message is the state after the last reveal that follows it
    last = np.flatnonzero(np.append(market[1:], True))  # rows after which the next row is a message (or none)
    after = best[last[np.searchsorted(last, np.flatnonzero(market))]]
    bid = np.where(rows[:, 3] > 0, rows[:, 2], 0)
    ask = np.where(rows[:, 1] > 0, rows[:, 0], 0)
    np.testing.assert_array_equal(after[:, 0], bid)
    np.testing.assert_array_equal(after[:, 1], ask)


def test_the_stored_events_alone_rebuild_every_level() -> None:
    name = "lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"
    (day,) = read(data_file(name))
    files, rows = _rows(name)
    book = OrderBook(replay=True, depth=files.level)
    t = day.table
    market = t.column("snapshot").to_numpy() == 0
    events = zip(*(t.column(c).to_numpy().tolist() for c in ("kind", "side", "price", "size", "order_id")),
                 strict=True)
    states = []
    for (k, s, p, q, o), is_market in zip(events, market, strict=True):
        if is_market:
            states.append(None)  # the state after this message, updated by the reveals that follow it
        book.apply(k, s, p, q, o)
        if states:
            states[-1] = book.top(files.level)
    got = np.array(states)
    want = np.where(np.repeat(rows[:, 1::2] > 0, 2, axis=1), rows, 0)
    assert (got == want).all(axis=1).mean() == 1.0
