"""Feed mappings (TOML): the example recipes on real files, orders + trades feeds, and mapping errors.

Bitstamp's two real files go through the orders + trades path and are compared with the dedicated reader; no
real China level-2 file is on disk, so the SSE and SZSE recipes read one tiny hand-written session written in
each exchange's own convention, and must give the same canonical events."""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tradefm.cli import main
from tradefm.events import ASK, BID, BadInputError, Kind
from tradefm.readers import bitstamp, lobster, mapped
from tradefm.readers.mapping import load_mapping

from .conftest import data_file, kinds

MAPPINGS = Path(__file__).resolve().parents[1] / "examples" / "mappings"
COLS = ["ts", "kind", "side", "price", "size", "order_id", "snapshot"]


def test_every_example_mapping_parses():
    files = sorted(MAPPINGS.glob("*.toml"))
    assert {f.stem for f in files} >= {"lobster", "bitstamp", "china-sse", "china-szse"}
    for f in files:
        spec = load_mapping(f)
        assert spec.layout in ("events", "orders+trades") and spec.price_scale > 0, f


def test_lobster_recipe_matches_lobster_reader():
    folder = data_file("lobster/fixture_aapl_level10_999")
    (ours,) = mapped.read(folder, mapping=MAPPINGS / "lobster.toml")
    (theirs,) = lobster.read(folder)
    assert (ours.instrument.symbol, ours.date, ours.num_events) == ("AAPL", "2012-06-21", 999)
    live = theirs.table.filter(~theirs.table.column("snapshot").to_numpy(zero_copy_only=False))
    assert live.select([*COLS, "src_type"]).equals(ours.table.select([*COLS, "src_type"]))
    assert ours.instrument == theirs.instrument


# ---------------------------------------------------------------------------------------------- Bitstamp


@pytest.fixture(scope="module")
def bitstamp_pair():
    folder = data_file("bitstamp/2026-05-02")
    (ours,) = mapped.read(folder, mapping=MAPPINGS / "bitstamp.toml")
    (theirs,) = bitstamp.read(folder / "orders.csv.gz")
    return folder, ours, theirs


def test_bitstamp_two_files_match_the_dedicated_reader(bitstamp_pair):
    """Same events as the orders.csv reader, except for the takers (the orders trades.csv names as aggressor):

    the dedicated reader shows a taker as an ADD of its whole order at its limit price (the book crosses), then
    an EXECUTE of the taker itself at each fill. Through the mapping the taker's fills are only the EXECUTEs of
    the resting orders, and the taker appears after them as an ADD of what is left, or not at all if it filled."""
    folder, ours, theirs = bitstamp_pair
    with open(folder / "trades.csv") as f:
        rows = [line.rstrip("\n").split(",") for line in f][1:]
    takers = {int(r[5] if r[7] == "buy" else r[6]) for r in rows}
    taker_volume = Counter()
    for r in rows:
        taker_volume[int(r[5] if r[7] == "buy" else r[6])] += round(float(r[4]) * 1e8)
    a, b = ours.table, theirs.table
    not_taker = ~np.isin(a.column("order_id").to_numpy(), list(takers))
    not_taker_b = ~np.isin(b.column("order_id").to_numpy(), list(takers))
    assert a.filter(not_taker).select(COLS).equals(b.filter(not_taker_b).select(COLS))
    # every trade is exactly one EXECUTE, of its passive order, carrying its trade id
    ex = a.filter(a.column("kind").to_numpy() == Kind.EXECUTE).to_pydict()
    assert len(ex["ts"]) == len(rows) == 284
    assert sorted(ex["trade_id"]) == sorted(int(r[0]) for r in rows)
    by_id = {int(r[0]): r for r in rows}
    for oid, side, tid in zip(ex["order_id"], ex["side"], ex["trade_id"], strict=True):
        r = by_id[tid]
        assert oid == int(r[6] if r[7] == "buy" else r[5]) and side == (ASK if r[7] == "buy" else BID)
    # a taker's first event is an ADD of its order less what it took, at its limit price, after its fills
    theirs_add = {r["order_id"]: r for r in b.filter(b.column("kind").to_numpy() == Kind.ADD).to_pylist()}
    ours_t = a.filter(~not_taker).to_pylist()
    first = {}
    for r in ours_t:
        first.setdefault(r["order_id"], r)
    assert all(r["kind"] == Kind.ADD for r in first.values())
    assert (len(takers), len(first)) == (170, 36)  # 7 takers are market orders, dropped by both readers
    taker_fills = (b.column("kind").to_numpy() == Kind.EXECUTE) & ~not_taker_b
    later = (a.column("kind").to_numpy() == Kind.EXECUTE) & ~not_taker  # a taker hit later, once resting
    assert int(taker_fills.sum()) - int(later.sum()) == 270  # the takers' own fill rows: no events here
    for oid, r in first.items():
        full = theirs_add[oid]
        assert (r["price"], r["side"]) == (full["price"], full["side"])
        assert r["size"] == full["size"] - taker_volume[oid] and r["ts"] >= full["ts"]
    filled = [oid for oid in takers if oid in theirs_add and oid not in first]
    assert len(filled) == ours.notes["takers_filled_on_entry"] == 127
    assert kinds(a, snapshot=False) == {"ADD": 150_370 - 127, "DELETE": 150_080 + 2, "EXECUTE": 284}
    assert ours.notes["stale_orders_deleted"] == theirs.notes["stale_orders_deleted"] == 2  # [sessions] stale_after
    assert kinds(a, snapshot=True) == kinds(b, snapshot=True)
    assert ours.notes["synthetic_deletes_dropped"] == theirs.notes["synthetic_deletes_dropped"] == 6_518


def test_bitstamp_through_the_command_line(tmp_path, bitstamp_pair):
    folder, ours, _ = bitstamp_pair
    out = tmp_path / "store"
    assert main(["ingest", str(folder), "--format", "generic", "--mapping", str(MAPPINGS / "bitstamp.toml"),
                 "--out", str(out)]) == 0
    (path,) = out.glob("venue=bitstamp/symbol=BTCUSD/date=2026-05-02/events.parquet")
    from tradefm.events import read_day

    assert read_day(path).table.select(COLS).equals(ours.table.select(COLS))


# ---------------------------------------------------------------------------------------------- China level 2

# One session, prices in CNY; order ids are SZSE's ApplSeqNum (one sequence over both files), the same in SSE's.
#   09:15 auction: buy 1 @10.00 x300, sell 2 @9.98 x200, buy 3 @9.99 x100; 09:25 uncross (4): 1 x 2, 200 @9.99
#   09:30:01 sell 5 @10.05 x500 rests
#   09:30:02 buy 6 @10.06 x700 takes 500 from 5 (trade 7), 200 rests
#   09:30:03 sell 8 @10.00 x400 takes 200 from 6 (9) and 100 from 1 (10), 100 rests
#   09:30:04 buy 3 cancelled (SZSE: record 11 of the trades file)
#   09:30:05 market buy 12 x100 takes 100 from 8 (13): filled, so SSE never shows the order
#   14:57:30 closing auction: buy 14 @10.02 x50, sell 15 @10.01 x50; 15:00 uncross (16) 50 @10.01
SZSE_ORDERS = """ApplSeqNum,TransactTime,Price,OrderQty,Side,OrdType
1,20240102091500000,10.0000,300,1,2
2,20240102091501000,9.9800,200,2,2
3,20240102091502000,9.9900,100,1,2
5,20240102093001000,10.0500,500,2,2
6,20240102093002000,10.0600,700,1,2
8,20240102093003000,10.0000,400,2,2
12,20240102093005000,0,100,1,1
14,20240102145730000,10.0200,50,1,2
15,20240102145731000,10.0100,50,2,2
"""
SZSE_TRADES = """ApplSeqNum,TransactTime,BidApplSeqNum,OfferApplSeqNum,LastPx,LastQty,ExecType
4,20240102092500000,1,2,9.9900,200,F
7,20240102093002000,6,5,10.0500,500,F
9,20240102093003000,6,8,10.0600,200,F
10,20240102093003000,1,8,10.0000,100,F
11,20240102093004000,3,0,0,100,4
13,20240102093005000,12,8,10.0000,100,F
16,20240102150000000,14,15,10.0100,50,F
"""
SSE_ORDERS = """BizIndex,TickTime,Type,OrderNo,Price,Qty,Side
1,9150000,A,1,10.000,300,B
2,9150100,A,2,9.980,200,S
3,9150200,A,3,9.990,100,B
5,9300100,A,5,10.050,500,S
7,9300200,A,6,10.060,200,B
10,9300300,A,8,10.000,100,S
11,9300400,D,3,9.990,100,B
13,14573000,A,14,10.020,50,B
14,14573100,A,15,10.010,50,S
"""
SSE_TRADES = """BizIndex,TickTime,TradeIndex,BuyNo,SellNo,Price,Qty,BSFlag
4,9250000,4,1,2,9.990,200,N
6,9300200,7,6,5,10.050,500,B
8,9300300,9,6,8,10.060,200,S
9,9300300,10,1,8,10.000,100,S
12,9300500,13,12,8,10.000,100,B
15,15000000,16,14,15,10.010,50,N
"""


def _china(tmp_path: Path, exchange: str) -> Path:
    """The session in one exchange's files, in a folder per day as the recipes expect."""
    day = tmp_path / exchange / "20240102"
    day.mkdir(parents=True)
    orders, trades = (SZSE_ORDERS, SZSE_TRADES) if exchange == "szse" else (SSE_ORDERS, SSE_TRADES)
    (day / "000001_order.csv").write_text(orders)
    (day / "000001_trade.csv").write_text(trades)
    return tmp_path / exchange


def _read_china(tmp_path: Path, exchange: str, **changes: object):
    spec = tomllib.loads((MAPPINGS / f"china-{exchange}.toml").read_text())
    for key, value in changes.items():
        section, name = key.split("__")
        spec[section][name] = value
    return list(mapped.read(_china(tmp_path, exchange), mapping=spec))


def _expected() -> list[tuple]:
    return [  # (kind, side, price, size, order_id, snapshot)
        (Kind.ADD, BID, 10_000, 100, 1, True),  # what the opening auction left: the snapshot
        (Kind.ADD, BID, 9_990, 100, 3, True),
        (Kind.ADD, ASK, 10_050, 500, 5, False),
        (Kind.EXECUTE, ASK, 10_050, 500, 5, False),
        (Kind.ADD, BID, 10_060, 200, 6, False),
        (Kind.EXECUTE, BID, 10_060, 200, 6, False),
        (Kind.EXECUTE, BID, 10_000, 100, 1, False),
        (Kind.ADD, ASK, 10_000, 100, 8, False),
        (Kind.DELETE, BID, 9_990, 100, 3, False),
        (Kind.EXECUTE, ASK, 10_000, 100, 8, False),
    ]


def _rows(day) -> list[tuple]:
    t = day.table.to_pydict()
    return list(zip(t["kind"], t["side"], t["price"], t["size"], t["order_id"], t["snapshot"], strict=True))


def test_china_szse_and_sse_conventions_give_the_same_events(tmp_path):
    (sz,) = _read_china(tmp_path, "szse")
    (sh,) = _read_china(tmp_path, "sse")
    assert (sz.instrument.venue, sh.instrument.venue) == ("szse", "sse")
    for day in (sz, sh):
        assert (day.instrument.symbol, day.date) == ("000001", "2024-01-02")
        assert day.instrument.tick_size == 10 and day.instrument.timezone == "Asia/Shanghai"
        assert _rows(day) == _expected()
        assert day.notes["snapshot_orders_after_the_call_auction"] == 2
    assert sz.table.select(COLS).equals(sh.table.select(COLS))
    ts = sz.table.column("ts").to_numpy()
    assert ts[2] == 1_704_159_001_000_000_000  # 2024-01-02 09:30:01 Shanghai = 01:30:01 UTC
    # SSE shows the filled market buy 12 only through its trade, SZSE as an order then a trade: both vanish
    assert 12 not in set(sz.table.column("order_id").to_pylist()) | set(sh.table.column("order_id").to_pylist())
    assert sz.table.column("trade_id").to_pylist()[3] == 7 and sh.table.column("trade_id").to_pylist()[3] == 7


def test_china_auctions_marked(tmp_path):
    """outside = "mark": the auctions stay; each uncross is a CROSS print and an EXECUTE of both its orders."""
    days = {}
    for exchange in ("szse", "sse"):
        (days[exchange],) = _read_china(tmp_path, exchange, sessions__outside="mark")
    for day in days.values():
        t = day.table
        assert not t.column("snapshot").to_numpy(zero_copy_only=False).any()
        assert kinds(t)["CROSS"] == 2 and day.notes["auction_matches"] == 2
        r = _rows(day)
        cross = r.index((Kind.CROSS, 0, 9_990, 200, 0, False))
        assert r[cross + 1:cross + 3] == [(Kind.EXECUTE, BID, 9_990, 200, 1, False),
                                          (Kind.EXECUTE, ASK, 9_990, 200, 2, False)]
        assert r[-3:] == [(Kind.CROSS, 0, 10_010, 50, 0, False), (Kind.EXECUTE, BID, 10_010, 50, 14, False),
                          (Kind.EXECUTE, ASK, 10_010, 50, 15, False)]
    assert days["szse"].table.select(COLS).equals(days["sse"].table.select(COLS))


def test_china_marketable_order_before_or_after_its_trades(tmp_path):
    """The same buy 6 (700 @10.06, 500 filled on entry) as SZSE writes it (700, before its trade) and as SSE does
    (200, after it): one EXECUTE of the resting sell, then an ADD of 200."""
    for exchange in ("szse", "sse"):
        (day,) = _read_china(tmp_path, exchange)
        r = _rows(day)
        i = r.index((Kind.EXECUTE, ASK, 10_050, 500, 5, False))
        assert r[i + 1] == (Kind.ADD, BID, 10_060, 200, 6, False)


# ---------------------------------------------------------------------------------------------- mapping errors

BASE = """layout = "events"
[instrument]
symbol = "X"
venue = "v"
price_scale = 100
[time]
unit = "ms"
[events]
kind = "trade"
[events.columns]
ts = "t"
price = "p"
size = "q"
"""


@pytest.mark.parametrize(
    ("edit", "key", "value", "reason"),
    [
        (("size = \"q\"", "size = \"qty\""), "events.columns.size", "qty", "has no column 'qty'"),
        (("unit = \"ms\"", "unit = \"minutes\""), "time.unit", "minutes", "must be one of"),
        (("price_scale = 100", "price_scale = 0"), "instrument.price_scale", 0, "positive"),
        (("price_scale = 100", "price_scal = 100"), "instrument.price_scal", 100, "unknown key"),
        (("layout = \"events\"", "layout = \"ticks\""), "layout", "ticks", "must be one of"),
        (("kind = \"trade\"", "kind = \"fill\""), "events.kind", "fill", "must be one of"),
        (("size = \"q\"\n", "size = \"q\"\nside = \"s\"\n"), "events.sides", None, "map the values of column 's'"),
        (("[time]", "[time]\nformat = \"%H:%M\""), "time.format", "%H:%M", "digit layouts"),
        (("venue = \"v\"", "venue = \"v\"\ntimezone = \"Mars/Olympus\""), "instrument.timezone", "Mars/Olympus",
         "unknown time zone"),
        (("ts = \"t\"\n", ""), "events.columns.ts", None, "required"),
        (("[events]", "[sessions]\nstale_after = \"soon\"\n[events]"), "sessions.stale_after", "soon",
         "a duration is"),
    ],
)
def test_a_wrong_mapping_names_the_key_and_the_column(tmp_path, capsys, edit, key, value, reason):
    (tmp_path / "feed.csv").write_text("t,p,q,s\n1000,1.5,2,b\n")
    mapping = tmp_path / "feed.toml"
    assert edit[0] in BASE
    mapping.write_text(BASE.replace(edit[0], edit[1]))
    with pytest.raises(BadInputError) as e:
        list(mapped.read(tmp_path / "feed.csv", mapping=mapping))
    assert (e.value.path, e.value.field) == (str(mapping), key)
    assert e.value.value == value and reason in e.value.reason
    assert main(["ingest", str(tmp_path / "feed.csv"), "--mapping", str(mapping), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("tradefm ingest: error:")]  # beside the progress bar
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in err


def test_the_base_mapping_reads(tmp_path):
    (tmp_path / "feed.csv").write_text("t,p,q\n1000,1.5,2\n2000,1.6,3\n")
    (tmp_path / "feed.toml").write_text(BASE)
    (day,) = mapped.read(tmp_path / "feed.csv", mapping=tmp_path / "feed.toml")
    assert day.table.select(["ts", "kind", "price", "size"]).to_pylist() == [
        {"ts": 10**9, "kind": Kind.TRADE, "price": 150, "size": 2},
        {"ts": 2 * 10**9, "kind": Kind.TRADE, "price": 160, "size": 3},
    ]


def test_mapping_file_problems(tmp_path):
    (tmp_path / "feed.csv").write_text("t,p,q\n1000,1.5,2\n")
    with pytest.raises(BadInputError, match="no such mapping file"):
        list(mapped.read(tmp_path / "feed.csv", mapping=tmp_path / "missing.toml"))
    (tmp_path / "bad.toml").write_text("layout = \n")
    with pytest.raises(BadInputError, match="not valid TOML"):
        list(mapped.read(tmp_path / "feed.csv", mapping=tmp_path / "bad.toml"))
    with pytest.raises(BadInputError, match="needs a mapping file"):
        list(mapped.read(tmp_path / "feed.csv"))


def test_digit_time_layouts(tmp_path):
    """SZSE's 17-digit TransactTime and SSE's HHMMSSss (leading zero dropped) give the same instant."""
    (tmp_path / "a.csv").write_text("t,p,q\n20240102093000120,1,1\n")
    (tmp_path / "b.csv").write_text("t,p,q\n9300012,1,1\n")
    base = tomllib.loads(BASE)
    base["instrument"]["timezone"] = "Asia/Shanghai"
    a = {**base, "time": {"format": "%Y%m%d%H%M%S%3f"}}
    b = {**base, "time": {"format": "%H%M%S%2f", "date": "2024-01-02"}}
    (da,) = mapped.read(tmp_path / "a.csv", mapping=a)
    (db,) = mapped.read(tmp_path / "b.csv", mapping=b)
    assert da.table.column("ts").to_pylist() == db.table.column("ts").to_pylist() == [1_704_159_000_120_000_000]
    (tmp_path / "c.csv").write_text("t,p,q\n20241302093000120,1,1\n")
    with pytest.raises(BadInputError) as e:
        list(mapped.read(tmp_path / "c.csv", mapping=a))
    assert (e.value.where, e.value.field) == ("line 2", "t") and "not a valid" in e.value.reason


def test_symbol_column_and_sessions(tmp_path):
    """A file of many symbols splits into one symbol-day each; trades outside the sessions are marked CROSS."""
    (tmp_path / "feed.csv").write_text("sym,t,p,q\nA,34200000,1.5,2\nB,34201000,7.0,1\nA,57600000,1.6,3\n")
    spec = tomllib.loads(BASE)
    del spec["instrument"]["symbol"]
    spec["instrument"]["timezone"] = "America/New_York"
    spec["time"] = {"unit": "ms", "date": "2024-03-08"}
    spec["events"]["columns"]["symbol"] = "sym"
    spec["sessions"] = {"continuous": ["09:30-16:00"], "outside": "mark"}
    days = {d.instrument.symbol: d for d in mapped.read(tmp_path / "feed.csv", mapping=spec)}
    assert sorted(days) == ["A", "B"] and days["A"].date == days["B"].date == "2024-03-08"
    assert days["A"].table.column("kind").to_pylist() == [Kind.TRADE, Kind.CROSS]  # 16:00 is the closing cross
    assert days["A"].table.column("ts").to_pylist()[0] == 1_709_908_200 * 10**9  # 09:30 EST = 14:30 UTC
    spec["sessions"]["outside"] = "drop"
    days = {d.instrument.symbol: d for d in mapped.read(tmp_path / "feed.csv", mapping=spec)}
    assert days["A"].num_events == 1 and days["A"].notes["rows_outside_sessions_dropped"] == 1


def test_docs_hold_the_example_recipes():
    """docs/DATA.md shows each example mapping in full: the two must not drift apart."""
    docs = (MAPPINGS.parents[1] / "docs" / "DATA.md").read_text()
    for f in sorted(MAPPINGS.glob("*.toml")):
        assert f"```toml\n{f.read_text()}```" in docs, f.name


def test_szse_order_without_price_rests_at_its_side_best(tmp_path):
    """SZSE's own-side-best order carries price 0: it rests at the best bid, and its cancel removes it."""
    day = tmp_path / "szse" / "20240102"
    day.mkdir(parents=True)
    (day / "000001_order.csv").write_text(SZSE_ORDERS.splitlines()[0] + "\n"
                                          "1,20240102093000000,10.0000,100,1,2\n2,20240102093001000,0,50,1,U\n")
    (day / "000001_trade.csv").write_text(SZSE_TRADES.splitlines()[0] + "\n"
                                          "3,20240102093002000,2,0,0,50,4\n")
    spec = tomllib.loads((MAPPINGS / "china-szse.toml").read_text())
    (d,) = mapped.read(tmp_path / "szse", mapping=spec)
    assert _rows(d) == [(Kind.ADD, BID, 10_000, 100, 1, False), (Kind.ADD, BID, 10_000, 50, 2, False),
                        (Kind.DELETE, BID, 10_000, 50, 2, False)]
    assert d.notes["unpriced_orders_at_their_side_best"] == 1


def test_iso_times(tmp_path):
    (tmp_path / "a.csv").write_text("t,p,q\n2024-01-02 09:30:00.120,1,1\n2024-01-02T09:30:01,1,1\n")
    base = tomllib.loads(BASE)
    base["instrument"]["timezone"] = "Asia/Shanghai"
    (d,) = mapped.read(tmp_path / "a.csv", mapping={**base, "time": {"format": "iso"}})
    assert d.table.column("ts").to_pylist() == [1_704_159_000_120_000_000, 1_704_159_001_000_000_000]
    (tmp_path / "b.csv").write_text("t,p,q\n2024-01-02 09:30:00,1,1\nnoon,1,1\n")
    with pytest.raises(BadInputError) as e:
        list(mapped.read(tmp_path / "b.csv", mapping={**base, "time": {"format": "iso"}}))
    assert (e.value.where, e.value.value) == ("line 3", "noon")


@pytest.mark.parametrize("exchange", ["szse", "sse"])
@pytest.mark.parametrize("drop", [["seq"], ["aggressor"], ["seq", "aggressor"]])
def test_china_without_sequence_or_aggressor_columns(tmp_path, exchange, drop):
    """Without the sequence numbers the files merge by time; without the aggressor flag the resting order is the
    one already seen. The session reads the same."""
    spec = tomllib.loads((MAPPINGS / f"china-{exchange}.toml").read_text())
    for name in drop:
        for section in ("orders", "trades"):
            spec[section]["columns"].pop(name, None)
    if "sides" in spec["trades"] and "aggressor" not in spec["trades"]["columns"]:
        del spec["trades"]["sides"]
    (day,) = mapped.read(_china(tmp_path, exchange), mapping=spec)
    assert _rows(day) == _expected()


def test_files_pair_by_folder_and_by_placeholders(tmp_path):
    """Two days of one symbol in two folders (no placeholders: paired by folder); an orders file alone is an
    error naming it; two matches for one symbol-day are an error, not a silent choice."""
    for d in ("20240102", "20240103"):
        day = tmp_path / "x" / d
        day.mkdir(parents=True)
        (day / "000001_order.csv").write_text(SSE_ORDERS)
        (day / "000001_trade.csv").write_text(SSE_TRADES)
    spec = tomllib.loads((MAPPINGS / "china-sse.toml").read_text())
    days = list(mapped.read(tmp_path / "x", mapping=spec))
    assert [(d.instrument.symbol, d.date) for d in days] == [("000001", "2024-01-02"), ("000001", "2024-01-03")]
    assert _rows(days[0]) == _rows(days[1]) == _expected()
    ts0, ts1 = (d.table.column("ts").to_numpy() for d in days)
    assert np.all(ts1 - ts0 == 86_400 * 10**9)  # the date comes from each folder's name
    (tmp_path / "x" / "20240103" / "000001_trade.csv").unlink()
    with pytest.raises(BadInputError, match="no trades file matching the pattern pairs with this one") as e:
        list(mapped.read(tmp_path / "x", mapping=spec))
    assert e.value.path.endswith("20240103/000001_order.csv")
    (tmp_path / "x" / "20240103" / "000001_trade.csv").write_text(SSE_TRADES)
    (tmp_path / "x" / "20240103" / "000002_order.csv").write_text(SSE_ORDERS)
    no_names = {**spec, "orders": {**spec["orders"], "file": "*_order.csv"},
                "trades": {**spec["trades"], "file": "*_trade.csv"}}
    no_names["instrument"] = {**spec["instrument"], "symbol": "600000"}
    no_names["time"] = {**spec["time"], "date": "2024-01-02"}
    with pytest.raises(BadInputError, match="one file per symbol-day"):
        list(mapped.read(tmp_path / "x", mapping=no_names))
