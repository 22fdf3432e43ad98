"""The mapping-driven generic reader, checked against the dedicated readers on the same real files."""

from __future__ import annotations

import csv
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from tradefm.events import BadInputError, Kind
from tradefm.readers import binance, bitstamp, generic, mapped

from .conftest import data_file

LOBSTER_MSG = "lobster/fixture_aapl_level10_999/AAPL_2012-06-21_34200000_57600000_message_10.csv"
LOBSTER_OPTS = dict(mapping={
    "instrument": {"symbol": "AAPL", "venue": "nasdaq", "price_scale": 10_000, "timezone": "America/New_York"},
    "time": {"unit": "s", "date": "2012-06-21"},
    "events": {
        "column_names": ["time", "type", "order_id", "size", "price", "direction"], "price_factor": 1,
        "columns": {"ts": "time", "kind": "type", "order_id": "order_id", "size": "size", "price": "price",
                    "side": "direction"},
        "kinds": {"1": "add", "2": "cancel", "3": "delete", "4": "execute", "5": "execute_hidden", "6": "cross",
                  "7": "halt"},
        "sides": {"1": "buy", "-1": "sell"},
    },
})
TRADES_OPTS = dict(mapping={
    "instrument": {"symbol": "BTCUSD", "venue": "bitstamp", "price_scale": 100, "size_scale": 100_000_000},
    "time": {"unit": "ms"},
    "events": {
        "columns": {"ts": "exchange_timestamp", "ts_recv": "timestamp", "price": "price", "size": "amount",
                    "side": "side", "trade_id": "trade_id"},
        "kind": "trade", "sides": {"buy": "sell", "sell": "buy"},  # the file's side is the aggressor; ours passive
    },
})


def test_never_detects():
    assert not mapped.detect(data_file(LOBSTER_MSG))


def test_lobster_fixture_through_a_mapping():
    """999 messages, 34200.004241176-34249.086375027 s after midnight New York time, prices USD x 10000."""
    path = data_file(LOBSTER_MSG)
    (day,) = mapped.read(path, **LOBSTER_OPTS)
    t = day.table.to_pydict()
    with open(path) as f:
        rows = list(csv.reader(f))
    assert day.num_events == len(rows) == 999 and day.date == "2012-06-21"
    assert Counter(Kind(k).name for k in t["kind"]) == {"ADD": 471, "DELETE": 369, "EXECUTE": 98, "EXECUTE_HIDDEN": 61}
    midnight = 1_340_251_200 * 10**9  # 2012-06-21T00:00 EDT = 04:00Z
    assert t["ts"][0] == midnight + 34_200_004_241_176 and t["ts"][-1] == midnight + 34_249_086_375_027
    assert t["ts"] == [midnight + int(Decimal(r[0]) * 10**9) for r in rows]  # exact ns, no float
    assert t["price"] == [int(r[4]) for r in rows] and t["size"] == [int(r[3]) for r in rows]
    assert t["side"] == [int(r[5]) for r in rows] and t["src_type"] == [r[1] for r in rows]
    assert day.instrument.tick_size == 100 and day.instrument.timezone == "America/New_York"


def test_lobster_fixture_matches_lobster_reader():
    lobster = pytest.importorskip("tradefm.readers.lobster")
    (ours,) = mapped.read(data_file(LOBSTER_MSG), **LOBSTER_OPTS)
    (theirs,) = lobster.read(data_file(LOBSTER_MSG).parent)
    live = theirs.table.filter(~theirs.table.column("snapshot").to_numpy(zero_copy_only=False))
    cols = ["ts", "kind", "side", "price", "size", "order_id", "src_type"]
    assert live.select(cols).equals(ours.table.select(cols))


def test_bitstamp_trades_match_bitstamp_reader():
    path = data_file("bitstamp/2026-05-02/trades.csv")
    (ours,) = mapped.read(path, **TRADES_OPTS)
    (theirs,) = bitstamp.read(path)
    assert ours.num_events == 284
    assert ours.table.equals(theirs.table)
    assert ours.instrument == theirs.instrument


def test_nautilus_parquet_matches_binance_reader():
    path = data_file("binance/nautilus_trades/btcusdt-trades.parquet")
    spec = {
        "instrument": {"symbol": "BTCUSDT", "venue": "binance", "price_scale": 100, "size_scale": 100_000_000,
                       "currency": "USDT"},
        "events": {"columns": {"ts": "timestamp", "price": "price", "size": "quantity", "side": "buyer_maker",
                               "trade_id": "trade_id"},
                   "kind": "trade", "sides": {"True": "buy", "False": "sell"}, "float_decimals": 8},
    }
    (ours,) = mapped.read(path, mapping=spec)
    (theirs,) = binance.read(path)
    assert ours.num_events == 2_001
    cols = ["ts", "kind", "side", "price", "size", "order_id", "trade_id"]
    assert ours.table.select(cols).equals(theirs.table.select(cols))
    with pytest.raises(BadInputError, match="more decimals"):  # without rounding, float noise is refused
        events = {k: v for k, v in spec["events"].items() if k != "float_decimals"}
        list(mapped.read(path, mapping={**spec, "events": events}))


def test_decimal_conversion_is_exact():
    values = pa.array(["1.5", "-2", "3.", "0.00000001", "2.6e-06", "10.123456789", "abc", "", "1.230000000000"])
    out, bad, why = generic.decimal_units(values, 10**8)
    assert out[:5].tolist() == [150_000_000, -200_000_000, 300_000_000, 1, 260]
    assert bad.tolist() == [False] * 5 + [True, True, True, False]
    assert out[8] == 123_000_000
    assert why == ["more decimals than the scale 100000000 allows", "not a number", "not a number"]
    assert generic.to_units("7.25", 4) == 29 and generic.to_units(Decimal("1.7885566900000001"), 10**8,
                                                                     rounding=True) == 178_855_669
    with pytest.raises(ValueError, match="int64"):
        generic.to_units("1e30", 1)


# ---------------------------------------------------------------------------------------------- bad input

HEADER = "trade_id,timestamp,exchange_timestamp,price,amount,buy_order_id,sell_order_id,side"
GOOD = "568694537,1777689383889,1777689383817,78319.0,0.121,2002347659919360,2002347637526531,buy"


@pytest.mark.parametrize(
    ("bad", "field", "value", "reason"),
    [
        ("568694538,1777689383918,1777689383817,78,319,0.06,1,2,buy", "columns", None, "expected 8 columns, got 9"),
        ("568694538,1777689383918,1777689383817,7831x,0.06,1,2,buy", "price", "7831x", "not a number"),
        ("568694538,1777689383918,1777689383817,78319.0,0.06,1,2,hold", "side", "hold", "unknown side"),
        ("568694538,1777689383918,1777689383817,78319.0,-0.06,1,2,buy", "size", -6_000_000, "size must be positive"),
        ("568694538,1777689383918,1777689383000,78319.0,0.06,1,2,buy", "ts", 1777689383000 * 10**6, "backwards"),
    ],
)
def test_bad_row_is_named(tmp_path: Path, bad, field, value, reason):
    path = tmp_path / "trades.csv"
    path.write_text("\n".join([HEADER, GOOD, bad, GOOD.replace("568694537", "568694539")]))  # no final newline
    with pytest.raises(BadInputError) as e:
        list(mapped.read(path, **TRADES_OPTS))
    err = e.value
    assert (err.path, err.where, err.field) == (str(path), "line 3", field)
    if value is not None:
        assert err.value == value
    assert reason in err.reason and str(path) in str(err)
    (day,) = mapped.read(path, skip_bad=True, **TRADES_OPTS)
    assert day.notes["bad_rows"] == 1 and day.table.column("trade_id").to_pylist() == [568694537, 568694539]


def test_unknown_kind_value(tmp_path: Path):
    path = tmp_path / "msg.csv"
    path.write_text("34200.1,1,1,10,5853300,1\n34200.2,9,2,10,5853300,1\n34200.3,3,1,10,5853300,1\n")
    with pytest.raises(BadInputError) as e:
        list(mapped.read(path, **LOBSTER_OPTS))
    assert (e.value.where, e.value.field, e.value.value) == ("line 2", "type", "9")
    (day,) = mapped.read(path, skip_bad=True, **LOBSTER_OPTS)
    assert day.table.column("kind").to_pylist() == [Kind.ADD, Kind.DELETE]


