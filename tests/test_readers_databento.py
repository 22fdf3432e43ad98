"""Databento reader on the real CME ES files, plus hand-made DBN files for the bad-input paths."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import databento_dbn as dbn
import numpy as np
import pytest
import zstandard

from tradefm.events import ASK, BID, BadInputError, Kind
from tradefm.readers import databento, detect

from .conftest import data_file, kinds

MBO = "databento/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"
DEFINITION = "databento/orderbooks_definition.dbn.zst"
TRADES = "databento/futures_trades_2024-07-01T23-58_2024-07-02T00-02.dbn.zst"
MBP1 = "databento/futures_mbp-1_2024-07-01T23-58_2024-07-02T00-02.dbn.zst"


def raw_records(path: Path) -> list:
    with open(path, "rb") as f:
        data = zstandard.ZstdDecompressor().stream_reader(f).read()
    return dbn.DBNDecoder().write_and_decode(data)[1:]


@pytest.fixture(scope="module")
def mbo_day():
    days = list(databento.read(data_file(MBO)))
    assert len(days) == 1
    return days[0]


def test_detect_and_dispatch():
    assert databento.detect(data_file(MBO))
    assert detect(data_file(TRADES)) == "databento"


def test_mbo_counts_match_readme(mbo_day):
    """README: 13,601 snapshot records then 195 live events; 5 fill echoes (2 C + 3 M) are dropped."""
    recs = raw_records(data_file(MBO))
    snap = [r for r in recs if r.flags & dbn.F_SNAPSHOT]
    assert (len(snap), len(recs) - len(snap)) == (13_601, 195)
    t = mbo_day.table
    assert kinds(t, snapshot=True) == {"CLEAR": 1, "ADD": 13_600}
    assert kinds(t, snapshot=False) == {"ADD": 78, "DELETE": 78, "MODIFY": 24, "EXECUTE": 5, "TRADE": 5}
    assert mbo_day.notes["fill_echoes_dropped"] == 5
    assert mbo_day.notes["bad_rows"] == 0
    assert t.num_rows == 13_601 + 190
    assert t.column("snapshot").to_pylist()[:13_601] == [True] * 13_601  # the snapshot comes first


def test_mbo_instrument_and_time(mbo_day):
    ins = mbo_day.instrument
    assert (ins.symbol, ins.venue, ins.price_scale, ins.tick_size, ins.size_scale) == (
        "ESM4", "cme", 1_000_000_000, 250_000_000, 1
    )
    assert ins.timezone == "America/Chicago" and mbo_day.date == "2024-05-08"
    t = mbo_day.table
    live = ~t.column("snapshot").to_numpy(zero_copy_only=False)
    ts = t.column("ts").to_numpy()
    assert ts[live][0] == 1_715_126_400_059_699_395  # 2024-05-08T00:00:00.059699395Z
    assert ts[live][-1] == 1_715_126_401_995_601_491
    assert np.all(np.diff(ts[live]) >= 0)
    # snapshot rows keep the resting orders' own entry times (days earlier) and the snapshot's receive time
    assert ts[~live].min() < 1_715_040_000_000_000_000
    assert set(t.column("ts_recv").to_numpy()[~live]) == {1_715_126_400_000_000_000}
    price = t.column("price").to_numpy()
    assert np.all(price[t.column("kind").to_numpy() != Kind.CLEAR] % ins.tick_size == 0)


def test_mbo_values_are_the_raw_integers(mbo_day):
    """Prices/sizes/ids are Databento's own integers, record by record (no float anywhere)."""
    recs = [r for r in raw_records(data_file(MBO)) if str(r.action) == "A"]
    t = mbo_day.table
    adds = t.filter(t.column("kind").to_numpy() == Kind.ADD)
    assert adds.column("price").to_pylist() == [r.price for r in recs]
    assert adds.column("size").to_pylist() == [r.size for r in recs]
    assert adds.column("order_id").to_pylist() == [r.order_id for r in recs]
    assert adds.column("side").to_pylist() == [BID if str(r.side) == "B" else ASK for r in recs]
    first_live = adds.filter(~adds.column("snapshot").to_numpy(zero_copy_only=False)).slice(0, 1).to_pylist()[0]
    assert (first_live["price"], first_live["order_id"]) == (5_214_000_000_000, 6_413_245_568_332)  # 5214.00


def test_mbo_trades_and_fills_agree(mbo_day):
    """T reports the aggressor (B here); the canonical TRADE side is the passive one, = the F resting side."""
    t = mbo_day.table
    kind = t.column("kind").to_numpy()
    trades, fills = t.filter(kind == Kind.TRADE).to_pydict(), t.filter(kind == Kind.EXECUTE).to_pydict()
    assert trades["side"] == [ASK] * 5 and fills["side"] == [ASK] * 5
    assert trades["ts"] == fills["ts"] and trades["size"] == fills["size"] == [1, 1, 1, 1, 2]
    assert set(trades["order_id"]) == {0} and min(fills["order_id"]) > 0


def test_mbo_keep_fill_echoes():
    day = next(databento.read(data_file(MBO), keep_fill_echoes=True))
    assert kinds(day.table, snapshot=False) == {"ADD": 78, "DELETE": 80, "MODIFY": 27, "EXECUTE": 5, "TRADE": 5}


def test_definition_gives_the_tick():
    day = next(databento.read(data_file(MBO), definition=data_file(DEFINITION)))
    assert day.instrument.tick_size == 250_000_000
    assert day.notes["tick_from"] == "definition min_price_increment"


def test_a_definition_file_beside_the_data_gives_the_tick(tmp_path):
    """As Databento's downloads ship them; without one the tick is the prices' gcd."""
    assert next(databento.read(data_file(MBO))).notes["tick_from"] == "definition min_price_increment"
    alone = tmp_path / Path(MBO).name
    alone.symlink_to(data_file(MBO))
    day = next(databento.read(alone))
    assert day.notes["tick_from"] == "gcd of observed prices" and day.instrument.tick_size == 250_000_000
    assert databento.not_events(data_file(DEFINITION)).startswith("instrument definitions")
    assert databento.not_events(data_file(MBO)) is None


def test_trades_and_mbp1_agree():
    """120 trades over 23:58-00:02 UTC: one CME trade date by default (the evening session belongs to the next
    day), two UTC days with session='utc'."""
    days = list(databento.read(data_file(TRADES), session="utc"))
    assert [(d.date, d.num_events) for d in days] == [("2024-07-01", 28), ("2024-07-02", 92)]
    assert all(d.instrument.symbol == "ESU4" for d in days)
    (cme,) = databento.read(data_file(TRADES))
    assert (cme.date, cme.num_events) == ("2024-07-02", 120)
    assert next(databento.read(data_file(TRADES), session="cme")).table.equals(cme.table)
    (mbp,) = databento.read(data_file(MBP1))
    assert mbp.notes["book_updates_skipped"] == 2_288 - 120
    assert mbp.table.equals(cme.table)
    raw = raw_records(data_file(TRADES))
    assert cme.table.column("price").to_pylist() == [r.price for r in raw]
    assert cme.table.column("side").to_pylist() == [{"B": ASK, "A": BID, "N": 0}[str(r.side)] for r in raw]
    assert kinds(cme.table) == {"TRADE": 120}


def test_unsupported_schema_is_named():
    with pytest.raises(BadInputError, match=r"schema.*definition.*unsupported"):
        list(databento.read(data_file(DEFINITION)))


def test_order_id_above_int64_keeps_its_bits():
    assert databento._signed(2**64 - 1) == -1
    assert databento._signed(2**63) == -(2**63)
    assert databento._signed(2**63 - 1) == 2**63 - 1
    assert np.array([databento._signed(2**64 - 5)], dtype=np.int64).view(np.uint64)[0] == 2**64 - 5


# ---------------------------------------------------------------------------------------------- hand-made files


class _Interval:
    def __init__(self, symbol: str) -> None:
        self.start_date, self.end_date, self.symbol = dt.date(2024, 5, 8), dt.date(2024, 5, 9), symbol


class _Mapping:
    def __init__(self, raw: str, iid: int) -> None:
        self.raw_symbol, self.intervals = raw, [_Interval(str(iid))]


def _mbo(ts: int, oid: int, price: int, size: int, action: str, side: str) -> bytes:
    rec = dbn.MBOMsg(1, 7, ts, oid, price, size, dbn.Action("A"), dbn.Side(side if side != "N" else "N"), ts + 10)
    raw = bytearray(bytes(rec))
    raw[38] = ord(action)  # the action byte: lets a test write actions the library would refuse
    return bytes(raw)


def _write(tmp_path: Path, records: list[bytes], zst: bool = True) -> Path:
    meta = dbn.Metadata(
        dataset="GLBX.MDP3", start=0, stype_in=dbn.SType.RAW_SYMBOL, stype_out=dbn.SType.INSTRUMENT_ID,
        schema=dbn.Schema.MBO, symbols=["ESX"], mappings=[_Mapping("ESX", 7)],
    )
    data = meta.encode() + b"".join(records)
    path = tmp_path / ("bad.mbo.dbn.zst" if zst else "bad.mbo.dbn")
    path.write_bytes(zstandard.ZstdCompressor().compress(data) if zst else data)
    return path


T0 = 1_715_126_400_000_000_000
P = 5_000_000_000_000


def test_handmade_file_reads(tmp_path):
    path = _write(tmp_path, [_mbo(T0, 1, P, 2, "A", "B"), _mbo(T0 + 1, 1, P, 2, "C", "B")], zst=False)
    assert databento.detect(path)
    (day,) = databento.read(path)
    assert day.instrument.symbol == "ESX"
    assert day.table.column("kind").to_pylist() == [Kind.ADD, Kind.DELETE]


@pytest.mark.parametrize(
    ("bad", "field", "value", "reason"),
    [
        (_mbo(T0 + 5, 2, P, 1, "X", "B"), "action", "X", "unknown MBO action"),
        (_mbo(T0 + 5, 2, P, 0, "A", "B"), "size", 0, "size must be positive"),
        (_mbo(T0 - 5, 2, P, 1, "A", "B"), "ts", T0 - 5, "time goes backwards"),
        (_mbo(T0 + 5, 2, 2**63 - 1, 1, "A", "B"), "price", 2**63 - 1, "undefined price"),
    ],
)
def test_bad_record_is_named_and_can_be_skipped(tmp_path, bad, field, value, reason):
    good = [_mbo(T0, 1, P, 2, "A", "B"), _mbo(T0 + 10, 3, P, 1, "A", "A")]
    path = _write(tmp_path, [good[0], bad, good[1]])
    with pytest.raises(BadInputError) as e:
        list(databento.read(path))
    err = e.value
    assert (err.path, err.where, err.field, err.value) == (str(path), "record 2", field, value)
    assert reason in err.reason and str(path) in str(err) and "record 2" in str(err)
    (day,) = databento.read(path, skip_bad=True)
    assert day.num_events == 2 and day.notes["bad_rows"] == 1
    assert day.table.column("order_id").to_pylist() == [1, 3]


def test_truncated_file(tmp_path):
    path = _write(tmp_path, [_mbo(T0, 1, P, 2, "A", "B")], zst=False)
    path.write_bytes(path.read_bytes() + bytes(_mbo(T0 + 1, 2, P, 1, "A", "B"))[:20])
    with pytest.raises(BadInputError, match="record"):
        list(databento.read(path))


# ---------------------------------------------------------------------------------------------- side N


def _with_side_n(path: Path, tmp_path: Path, pick) -> tuple[Path, list[int]]:
    """The real MBO file with the side byte set to N on the records ``pick(record)`` chooses, edited in memory.

    None of the real files has a side-N fill or trade (checked in the test), so this is how the case is built:
    CME sends side N for the fills and trades of an uncross (the reopening auction)."""
    with open(path, "rb") as f:
        data = bytearray(zstandard.ZstdDecompressor().stream_reader(f).read())
    pos = 8 + int.from_bytes(data[4:8], "little")  # "DBN", version, metadata length, metadata
    edited = []
    index = 0
    while pos < len(data):
        length = data[pos] * 4
        index += 1
        if data[pos + 1] == 0xA0 and pick(bytes(data[pos:pos + length])):  # rtype 0xA0: MBO
            data[pos + 39] = ord("N")  # the side byte of an MBO record
            edited.append(index)
        pos += length
    out = tmp_path / "side_n.mbo.dbn.zst"
    out.write_bytes(zstandard.ZstdCompressor().compress(bytes(data)))
    return out, edited


def test_real_files_have_no_side_n_fill_or_trade():
    for rel in (MBO, TRADES, MBP1):
        recs = raw_records(data_file(rel))
        assert not [r for r in recs if str(r.action) in ("F", "T") and str(r.side) == "N"], rel


def test_side_n_fills_and_trades_are_read(tmp_path, mbo_day):
    """Fills with side N take the side of the resting order (from its add in the snapshot); trades with side N
    have no aggressor and become CROSS prints. Everything else is the same day."""
    path, edited = _with_side_n(data_file(MBO), tmp_path, lambda raw: chr(raw[38]) in "FTC")
    assert len(edited) == 5 + 5 + 80  # F, T and the live C records
    (day,) = databento.read(path)
    t, ref = day.table, mbo_day.table
    assert day.notes["bad_rows"] == 0
    assert day.notes["side_n_F_resolved_from_the_order"] == 5 and day.notes["side_n_trades_as_cross"] == 5
    assert day.notes["side_n_C_resolved_from_the_order"] == 80  # fill echoes (2) and cancels alike
    trade = ref.column("kind").to_numpy() == Kind.TRADE
    assert (t.column("kind").to_numpy()[trade] == Kind.CROSS).all()
    assert (t.column("side").to_numpy()[trade] == 0).all()
    cols = ["ts", "side", "price", "size", "order_id", "snapshot"]
    assert t.filter(~trade).select(cols).equals(ref.filter(~trade).select(cols))
    assert t.filter(trade).select(["ts", "price", "size"]).equals(ref.filter(trade).select(["ts", "price", "size"]))


def test_side_n_fill_of_an_unknown_order_is_kept(tmp_path):
    good = [_mbo(T0, 1, P, 2, "A", "B")]
    path = _write(tmp_path, [*good, _mbo(T0 + 1, 1, P, 1, "F", "N"), _mbo(T0 + 2, 9, P, 1, "F", "N"),
                             _mbo(T0 + 3, 9, P, 1, "C", "N"), _mbo(T0 + 4, 0, P, 1, "T", "N"),
                             _mbo(T0 + 5, 0, P, 0, "N", "N")])
    (day,) = databento.read(path)
    rows = day.table.select(["kind", "side", "size", "order_id"]).to_pylist()
    assert [tuple(r.values()) for r in rows] == [(Kind.ADD, BID, 2, 1), (Kind.EXECUTE, BID, 1, 1),
                                                  (Kind.CROSS, 0, 1, 9), (Kind.CROSS, 0, 1, 0)]
    n = day.notes
    assert (n["side_n_fills_of_unknown_orders_as_cross"], n["side_n_C_of_unknown_orders_not_applied"],
            n["no_action_records"]) == (1, 1, 1)
    assert n["records"] == 6  # every record is in the table or counted
