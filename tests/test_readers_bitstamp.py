"""Bitstamp reader on the real 2015 and 2026 captures, plus corrupted copies for the bad-input paths."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pytest

from tradefm.book import OrderBook
from tradefm.book.stale import STALE
from tradefm.events import ASK, BID, BadInputError, Kind
from tradefm.readers import bitstamp, detect

from .conftest import data_file, kinds

ORDERS_2015 = "bitstamp/2015-05-01/orders.csv.xz"
LOG_2015 = "bitstamp/2015-05-01/2015-05-01.log.xz"
ORDERS_2026 = "bitstamp/2026-05-02/orders.csv.gz"
TRADES_2026 = "bitstamp/2026-05-02/trades.csv"


@pytest.fixture(scope="module")
def day2015():
    (day,) = bitstamp.read(data_file(ORDERS_2015))
    return day


@pytest.fixture(scope="module")
def day2026():
    (day,) = bitstamp.read(data_file(ORDERS_2026))
    return day


def test_detect():
    for rel in (ORDERS_2015, LOG_2015, ORDERS_2026, TRADES_2026):
        assert bitstamp.detect(data_file(rel)), rel
        assert detect(data_file(rel)) == "bitstamp"


def test_2015_orders(day2015):
    """50,414 rows: created 24,894 / changed 602 / deleted 24,918 (580 of them with volume 0 = filled)."""
    t = day2015.table
    assert day2015.notes["rows"] == 50_414 and day2015.notes["bad_rows"] == 0
    assert kinds(t) == {"ADD": 24_894, "DELETE": 24_338, "EXECUTE": 1_135, "MODIFY": 25}
    # 602 changed = 577 decreases (EXECUTE) + 21 price-only changes + 4 of orders older than the file (MODIFY)
    assert day2015.notes["changed_price_only"] == 21 and day2015.notes["changed_unknown_order"] == 4
    # 580 deletes at volume 0: 558 orders we saw become the EXECUTE of their rest, 22 older ones are dropped
    assert day2015.notes["filled_deletes"] == 558 and day2015.notes["filled_deletes_unknown_size"] == 22
    assert t.num_rows == 50_414 - 22
    assert day2015.date == "2015-05-01"
    ins = day2015.instrument
    assert (ins.symbol, ins.venue, ins.price_scale, ins.size_scale, ins.tick_size) == (
        "BTCUSD", "bitstamp", 100, 100_000_000, 1
    )
    ts = t.column("ts").to_numpy()
    assert (ts[0], ts[-1]) == (1_430_438_404_518_000_000, 1_430_456_682_957_000_000)  # 00:00:04.518-05:04:42.957
    assert np.all(np.diff(ts) >= 0)
    assert t.slice(0, 2).to_pylist()[1] | {"ts_recv": None} == {
        "ts": 1_430_438_404_635_000_000, "kind": Kind.EXECUTE, "side": BID, "price": 23_647, "size": 21_144_331,
        "order_id": 65_595_247, "snapshot": False, "ts_recv": None, "trade_id": None, "src_type": "changed",
    }  # 2.00000000 -> 1.78855669 BTC: a 0.21144331 fill


def test_2015_prices_and_adds_are_exact(day2015):
    """Every ADD carries the source row's price text x 100 and volume, no float involved."""
    with bitstamp.open_binary(data_file(ORDERS_2015)) as f:
        src = pcsv.read_csv(f, convert_options=pcsv.ConvertOptions(column_types={"price": "string"}))
    created = src.filter(src.column("action").to_numpy(zero_copy_only=False) == "created")
    t = day2015.table
    adds = t.filter(t.column("kind").to_numpy() == Kind.ADD)
    assert adds.column("price").to_pylist() == [int(Decimal(p) * 100) for p in created.column("price").to_pylist()]
    assert adds.column("size").to_pylist() == created.column("volume").to_pylist()
    assert adds.column("order_id").to_pylist() == created.column("id").to_pylist()


def test_2015_log_matches_orders_csv(day2015):
    """The raw log has the same order events plus 575 trades; its volumes are exact where orders.csv (made from
    it through floats) is sometimes one satoshi short."""
    (log,) = bitstamp.read(data_file(LOG_2015))
    assert log.notes["order_book_lines_skipped"] == 5_011
    t = log.table
    assert kinds(t) == {"ADD": 24_894, "DELETE": 24_338, "EXECUTE": 1_135, "MODIFY": 25, "TRADE": 575}
    trades = t.filter(t.column("kind").to_numpy() == Kind.TRADE)
    assert trades.column("trade_id").to_pylist()[:2] == [8_111_041, 8_111_042]
    assert trades.column("size").to_pylist()[:2] == [21_144_331, 178_855_669]  # 1.7885566900000001 in the log
    assert set(trades.column("side").to_pylist()) == {0}
    orders = t.filter(t.column("kind").to_numpy() != Kind.TRADE)
    for col in ("ts", "kind", "side", "price", "order_id"):
        assert orders.column(col).equals(day2015.table.column(col)), col
    diff = orders.column("size").to_numpy() - day2015.table.column("size").to_numpy()
    assert set(np.unique(diff)) <= {-1, 0, 1} and np.count_nonzero(diff) > 0


def test_2026_snapshot_and_synthetic_rows(day2026):
    """The leading REST snapshot (6,512 created) is kept as snapshot rows, the trailing 6,518 synthetic deletes
    dropped: both detected from the data and equal to the capture's own meta.json."""
    meta = json.loads(data_file("bitstamp/2026-05-02/meta.json").read_text())
    n = day2026.notes
    dropped = (n["snapshot_rows"], n["synthetic_deletes_dropped"])
    assert dropped == (meta["synthetic_created"], meta["synthetic_deleted"]) == (6_512, 6_518)
    assert n["snapshot_zero_price_rows"] == 22  # sub-cent bids the snapshot writes as 0.0
    assert n["market_order_rows"] == 23  # market orders never rest: created at 0.0 / 999999999 and their fills
    t = day2026.table
    assert kinds(t, snapshot=True) == {"ADD": 6_512 - 22}
    assert kinds(t, snapshot=False) == {"ADD": 150_370, "DELETE": 150_080 + 2, "EXECUTE": 554}  # 2 stale (below)
    assert t.num_rows - 6_490 == meta["live_orders"] - 23 + 2
    ts = t.column("ts").to_numpy()
    snap = t.column("snapshot").to_numpy(zero_copy_only=False)
    assert set(ts[snap]) == {meta["snapshot_microtimestamp"] // 1000 * 1_000_000}
    assert (ts[~snap][0], ts[~snap][-1]) == (1_777_689_381_262_000_000, 1_777_691_180_412_000_000)
    assert np.all(np.diff(ts) >= 0)
    assert day2026.instrument.tick_size == 100  # whole dollars in 2026
    assert day2026.date == "2026-05-02"


def crossed_share(day) -> float:
    """The share of the capture's live time in which the replayed book is crossed (best bid above best ask).

    By time, not by event: a post-only order that would cross is shown created, then deleted at the next event,
    a crossing of a millisecond or less (a fifth of the 2026 capture's events)."""
    t = day.table
    _, touch = OrderBook(replay=True).apply_many(*(t.column(c).to_numpy() for c in ("kind", "side", "price", "size",
                                                                                    "order_id")))
    live = ~np.asarray(t.column("snapshot").to_numpy(zero_copy_only=False), dtype=bool)
    ts = t.column("ts").to_numpy()[live]
    crossed = ((touch[:, 0] > 0) & (touch[:, 2] > 0) & (touch[:, 0] > touch[:, 2]))[live]
    held = np.diff(ts).astype(np.float64)  # how long each state lasted
    return float(held[crossed[:-1]].sum() / held.sum())


def test_2026_a_missed_delete_no_longer_crosses_the_book(day2026):
    """The capture lost the deletes of two asks: as read, every later bid above them rests through them and the
    book stays crossed for 27 minutes. The reader deletes each once the book has been crossed for 1 s, and changes
    nothing else."""
    (raw,) = bitstamp.read(data_file(ORDERS_2026), stale_after_ms=None)
    assert crossed_share(raw) > 0.9
    assert crossed_share(day2026) < 0.005
    t = day2026.table
    stale = t.filter(pc.equal(t.column("src_type"), STALE)).to_pylist()
    assert day2026.notes["stale_orders_deleted"] == len(stale) == 2
    lost = {(Kind.DELETE, ASK, p) for p in (7_833_300, 7_837_400)}
    assert {(r["kind"], r["side"], r["price"]) for r in stale} == lost
    assert t.filter(pc.not_equal(t.column("src_type"), STALE)).equals(raw.table)
    created = {r["order_id"]: r["ts"] for r in raw.table.to_pylist() if r["kind"] == Kind.ADD}
    assert all(r["ts"] - created[r["order_id"]] > 60 * 10**9 for r in stale)  # resting for minutes


def test_2015_crossings_are_the_feeds_delay_and_stay(day2015):
    """The 2015 file's times are local receive times: its book crosses for 0.1-0.6 s at a time, under the grace."""
    assert 0 < crossed_share(day2015) < 0.005
    assert "stale_orders_deleted" not in day2015.notes


def test_2026_exponent_volumes_are_exact(day2026):
    t = day2026.table
    (row,) = t.filter(t.column("order_id").to_numpy() == 1_625_574_131_032_064).to_pylist()
    assert (row["price"], row["size"], row["side"], row["snapshot"]) == (9_856_210_000, 260, ASK, True)
    # "98562100.0,2.6e-06,created,ask" in the source


def test_2026_fills_match_trades(day2026):
    """Every trade in trades.csv is an EXECUTE of its resting order in orders.csv, same id and amount."""
    (trades,) = bitstamp.read(data_file(TRADES_2026))
    assert trades.num_events == 284 and kinds(trades.table) == {"TRADE": 284}
    assert Counter(trades.table.column("side").to_pylist()) == {ASK: 162, BID: 122}  # 162 buys hit asks
    with open(data_file(TRADES_2026)) as f:
        rows = [line.rstrip("\n").split(",") for line in f][1:]
    t = day2026.table
    ex = t.filter(t.column("kind").to_numpy() == Kind.EXECUTE).to_pydict()
    fills = set(zip(ex["order_id"], ex["size"], strict=True))
    passive = [(int(r[6] if r[7] == "buy" else r[5]), int(Decimal(r[4]) * 10**8)) for r in rows]
    assert all(p in fills for p in passive)


def test_2026_snapshot_drop():
    (day,) = bitstamp.read(data_file(ORDERS_2026), snapshot="drop")
    assert not day.table.column("snapshot").to_numpy(zero_copy_only=False).any()
    # without the snapshot, fills of orders resting before the capture have no known size: 12 are lost
    assert day.notes["filled_deletes_unknown_size"] == 12 and day.notes["changed_unknown_order"] == 3
    assert day.num_events == 301_004 - 12


# ---------------------------------------------------------------------------------------------- bad input

HEADER = "id,timestamp,exchange.timestamp,price,volume,action,direction"
GOOD = [
    "1,1430438404518,1430438404000,236.47,200000000,created,bid",
    "2,1430438404600,1430438404000,236.50,100000000,created,ask",
    "1,1430438404635,1430438404000,236.47,178855669,changed,bid",
    "2,1430438404700,1430438404000,236.50,100000000,deleted,ask",
]


def write_csv(tmp_path: Path, rows: list[str], name: str = "orders.csv") -> Path:
    path = tmp_path / name
    data = "\n".join([HEADER, *rows]) + "\n"
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(data.encode()))
    else:
        path.write_text(data)
    return path


@pytest.mark.parametrize(
    ("row", "field", "value", "reason"),
    [
        ("3,1430438404650,1430438404000,abc,100,created,bid", "price", "abc", "not a number"),
        ("3,1430438404650,1430438404000,236.40,100,moved,bid", "action", "moved", "unknown action"),
        ("3,1430438404650,1430438404000,236.40,-5,created,bid", "volume", "-5", "must not be negative"),
        ("3,1430438404650,1430438404000,236.40,100,created,up", "direction", "up", "unknown direction"),
        ("3,1430438404650,1430438404000,236.401,100,created,bid", "price", "236.401", "more decimals"),
        ("3,1430438404650,1430438404000,236.40,100,created", "columns", "3,1430438404650,1430438404000,236.40,100,"
         "created", "expected 7 columns, got 6"),
        ("3,1430438400000,1430438404000,236.40,100,created,bid", "ts", 1_430_438_400_000_000_000, "backwards"),
    ],
)
@pytest.mark.parametrize("name", ["orders.csv", "orders.csv.gz"])
def test_bad_row_names_file_line_field_value(tmp_path, row, field, value, reason, name):
    path = write_csv(tmp_path, [*GOOD[:2], row, *GOOD[2:]], name)
    with pytest.raises(BadInputError) as e:
        list(bitstamp.read(path))
    err = e.value
    assert (err.path, err.where, err.field, err.value) == (str(path), "line 4", field, value)
    assert reason in err.reason
    assert str(path) in str(err) and "line 4" in str(err) and repr(value) in str(err)
    (day,) = bitstamp.read(path, skip_bad=True)
    assert day.notes["bad_rows"] == 1 and sum(day.notes["bad_rows_by_reason"].values()) == 1
    assert kinds(day.table) == {"ADD": 2, "EXECUTE": 1, "DELETE": 1}


def test_several_bad_rows_are_counted(tmp_path):
    rows = [GOOD[0], "9,1430438404601,0,x,1,created,bid", GOOD[1], "9,1430438404602,0,1.00,1,zap,bid", *GOOD[2:]]
    path = write_csv(tmp_path, rows)
    with pytest.raises(BadInputError, match="line 3"):  # the first bad line raises
        list(bitstamp.read(path))
    (day,) = bitstamp.read(path, skip_bad=True)
    assert day.notes["bad_rows"] == 2 and day.num_events == 4
    assert any("line 5" in ex for ex in day.notes["bad_row_examples"])


def test_bad_log_line(tmp_path):
    path = tmp_path / "feed.log"
    path.write_text(
        '1430438404518 order_created {"price": "236.47", "amount": "2.00000000", "datetime": "1430438404", '
        '"id": 65595247, "order_type": 0}\n'
        '1430438404645 trade {"price": 236.47, "amount": 0.21144331, "id": 8111041}\n'
        "1430438404700 trade {not json}\n"
        '1430438404800 order_moved {"id": 1}\n'
    )
    assert bitstamp.detect(path)
    with pytest.raises(BadInputError) as e:
        list(bitstamp.read(path))
    assert (e.value.where, e.value.field) == ("line 3", "json")
    (day,) = bitstamp.read(path, skip_bad=True)
    assert day.notes["bad_rows"] == 2 and kinds(day.table) == {"ADD": 1, "TRADE": 1}
    assert day.notes["bad_rows_by_reason"] == {"invalid JSON: Expecting property name enclosed in double quotes": 1,
                                               "unknown event type": 1}


def test_not_bitstamp(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    assert not bitstamp.detect(path)
    with pytest.raises(BadInputError, match="not a Bitstamp"):
        list(bitstamp.read(path))
