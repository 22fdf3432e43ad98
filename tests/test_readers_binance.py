"""Binance reader on the real websocket captures, freqtrade aggTrades and nautilus parquet."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tradefm.events import ASK, BID, BadInputError, Kind
from tradefm.readers import binance, detect

from .conftest import data_file

ETH = "binance/hftbacktest_ws_capture/spot/ethusdt_20240808.gz"
USDM = "binance/hftbacktest_ws_capture/usdm/btcusdt_20240808.gz"
SPOT_DIR = "binance/hftbacktest_ws_capture/spot"
NAUTILUS = "binance/nautilus_trades/btcusdt-trades.parquet"
FREQTRADE = "binance/freqtrade_xrpeth_aggtrades/XRP_ETH-trades.json.gz"
MIDNIGHT = 1_723_161_600_000_000_000  # 2024-08-09T00:00:00Z


def source_trades(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line.split(" ", 1)[1])["data"] for line in f if '@trade"' in line]


@pytest.fixture(scope="module")
def eth_days():
    return list(binance.read(data_file(ETH)))


def test_detect():
    for rel in (ETH, USDM, SPOT_DIR, NAUTILUS, FREQTRADE):
        assert binance.detect(data_file(rel)), rel
    assert detect(data_file(ETH)) == "binance"
    assert detect(data_file(NAUTILUS)) == "binance"


def test_eth_capture_counts_and_days(eth_days):
    """6,106 trades; the exchange clock passes midnight before the local one, so 8 land on 2024-08-09."""
    assert [(d.date, d.num_events) for d in eth_days] == [("2024-08-08", 6_098), ("2024-08-09", 8)]
    notes = eth_days[0].notes
    assert notes["trades"] == 6_106 and notes["bad_rows"] == 0
    assert notes["ignored_messages"] == {"bookTicker": 24_077, "depth@100ms": 3_434, "rest_snapshot": 1}
    ins = eth_days[0].instrument
    assert (ins.symbol, ins.venue, ins.price_scale, ins.size_scale, ins.tick_size, ins.currency) == (
        "ETHUSDT", "binance", 100, 100_000_000, 1, "USDT"
    )
    assert eth_days[0].table.column("ts").to_numpy().max() < MIDNIGHT <= eth_days[1].table.column("ts")[0].as_py()


def test_eth_values_match_source_text(eth_days):
    """Every price/qty is the exact decimal text x scale; side is the passive side; ts = T, ts_recv = local ns."""
    src = source_trades(data_file(ETH))
    t = pa.concat_tables([d.table for d in eth_days]).to_pydict()
    assert t["price"] == [int(Decimal(m["p"]) * 100) for m in src]
    assert t["size"] == [int(Decimal(m["q"]) * 10**8) for m in src]
    assert t["trade_id"] == [m["t"] for m in src]
    assert t["ts"] == [m["T"] * 1_000_000 for m in src]
    assert t["side"] == [BID if m["m"] else ASK for m in src]
    assert set(t["kind"]) == {Kind.TRADE} and set(t["order_id"]) == {0}
    assert np.all(np.diff(t["trade_id"]) == 1)
    lag = (np.array(t["ts"]) - np.array(t["ts_recv"])) / 1e9
    assert 1.2 < np.median(lag) < 1.35  # the local clock is ~1.27 s behind the exchange's
    assert (t["price"][0], t["size"][0]) == (268_380, 200_000)  # "2683.80000000", "0.00200000"


def test_usdm_capture():
    (day,) = binance.read(data_file(USDM))
    assert (day.date, day.num_events) == ("2024-08-08", 21_313)
    ins = day.instrument
    assert (ins.symbol, ins.venue, ins.price_scale, ins.tick_size) == ("BTCUSDT", "binance-usdm", 10, 1)
    assert day.notes["ignored_messages"] == {"bookTicker": 66_089, "depth@0ms": 6_551, "rest_snapshot": 1}
    first = day.table.slice(0, 1).to_pylist()[0]
    assert (first["price"], first["size"], first["side"]) == (618_003, 600_000, ASK)  # "61800.30", "0.006", m false


def test_spot_folder_joins_files_across_midnight():
    """Read as a folder, BTCUSDT's two files give whole days: 19 trades of *_20240808.gz belong to 08-09."""
    days = list(binance.read(data_file(SPOT_DIR)))
    got = {(d.instrument.symbol, d.date): d.num_events for d in days}
    assert got == {("BTCUSDT", "2024-08-08"): 9_757 - 19, ("BTCUSDT", "2024-08-09"): 10_147 + 19,
                   ("ETHUSDT", "2024-08-08"): 6_098, ("ETHUSDT", "2024-08-09"): 8}
    btc = [d for d in days if d.instrument.symbol == "BTCUSDT"]
    ids = np.concatenate([d.table.column("trade_id").to_numpy() for d in btc])
    assert np.all(np.diff(ids) == 1)  # no gap or duplicate where the files meet
    assert btc[0].notes["files"] == ["btcusdt_20240808.gz", "btcusdt_20240809.gz", "ethusdt_20240808.gz"]


def test_nautilus_parquet():
    (day,) = binance.read(data_file(NAUTILUS))
    assert (day.instrument.symbol, day.date, day.num_events) == ("BTCUSDT", "2021-01-08", 2_001)
    assert day.instrument.price_scale == 100
    t = day.table.to_pydict()
    assert Counter(t["side"]) == {ASK: 1_087, BID: 914}  # buyer_maker True -> resting bid
    assert t["price"][:3] == [3_943_248, 3_943_944, 3_943_922]  # 39432.48, 39439.44, 39439.22
    assert t["size"][2] == 31_100  # stored as 0.00031099999999999997, rounded to 8 decimals
    assert day.notes["float_values_rounded_to_8_decimals"] > 0
    assert np.all(np.diff(t["trade_id"]) == 1) and t["ts"][0] == 1_610_064_000_278_000_000


def test_freqtrade_aggtrades():
    days = list(binance.read(data_file(FREQTRADE)))
    assert [(d.date, d.num_events) for d in days] == [("2019-10-11", 5_929), ("2019-10-12", 4_134),
                                                       ("2019-10-13", 2_414)]
    assert sum(d.num_events for d in days) == 12_477
    ins = days[0].instrument
    assert (ins.symbol, ins.price_scale, ins.size_scale, ins.currency) == ("XRPETH", 10**8, 10**8, "ETH")
    first = days[0].table.slice(0, 1).to_pylist()[0]
    assert (first["price"], first["size"], first["side"], first["trade_id"]) == (141_342, 23 * 10**8, BID, 13_519_807)
    sides = Counter(s for d in days for s in d.table.column("side").to_pylist())
    assert sides == {ASK: 6_524, BID: 5_953}  # taker "buy" rows hit resting asks


# ---------------------------------------------------------------------------------------------- bad input


def trade_line(recv: int, t: int, p: str = "2683.80000000", q: str = "0.00200000", ts: int = 1723161255611) -> str:
    data = {"e": "trade", "E": ts, "s": "ETHUSDT", "t": t, "p": p, "q": q, "T": ts, "m": True, "M": True}
    return f"{recv} " + json.dumps({"stream": "ethusdt@trade", "data": data}, separators=(",", ":"))


def write_capture(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "ethusdt_20240808.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


BASE = 1723161254340863867


@pytest.mark.parametrize(
    ("bad", "field", "value", "reason"),
    [
        (trade_line(BASE + 2, 2, p="abc"), "price", "abc", "not a number"),
        (trade_line(BASE + 2, 2, q="0.000000001"), "quantity", "0.000000001", "more decimals"),
        (trade_line(BASE + 2, 2, q="0"), "size", 0, "size must be positive"),
        (trade_line(BASE + 2, 2, ts=1723161255000), "ts", 1723161255000 * 10**6, "time goes backwards"),
        (f"{BASE + 2} " + '{"stream":"ethusdt@trade","data":{"e":"trade"', "json", None, "invalid trade message"),
        ("x1723 {}", "local_recv_ns", "x1723", "not a number"),
    ],
)
def test_bad_capture_line(tmp_path, bad, field, value, reason):
    lines = [trade_line(BASE, 1), '1723161254340863999 {"stream":"ethusdt@bookTicker","data":{}}', bad,
             trade_line(BASE + 3, 3, ts=1723161255700)]
    path = write_capture(tmp_path, lines)
    with pytest.raises(BadInputError) as e:
        list(binance.read(path))
    err = e.value
    assert (err.path, err.where, err.field) == (str(path), "line 3", field)
    if value is not None:
        assert err.value == value
    assert reason in err.reason
    (day,) = binance.read(path, skip_bad=True)
    assert day.notes["bad_rows"] == 1 and day.table.column("trade_id").to_pylist() == [1, 3]


def test_bad_freqtrade_row(tmp_path):
    path = tmp_path / "XRP_ETH-trades.json"
    rows = [[1570752011620, "1", None, "sell", 0.00141342, 23.0, 0.03],
            [1570752011621, "2", None, "hold", 0.00141342, 23.0, 0.03],
            [1570752011622, "3", None, "buy", 0.00141343, 5.0, 0.01]]
    path.write_text(json.dumps(rows))
    assert binance.detect(path)
    with pytest.raises(BadInputError) as e:
        list(binance.read(path))
    assert (e.value.where, e.value.field, e.value.value) == ("record 2", "side", "hold")
    (day,) = binance.read(path, skip_bad=True)
    assert day.notes["bad_rows"] == 1 and day.table.column("trade_id").to_pylist() == [1, 3]
