"""The LOBSTER reader on the real sample zips, and its errors on broken copies."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tradefm.events import BadInputError
from tradefm.readers import detect, lobster, read

from .conftest import data_file

COUNTS = {  # messages and type counts 1..5, from the data's README
    "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip": (118_497, [54818, 252, 28437, 23658, 11332]),
    "LOBSTER_SampleFile_AMZN_2012-06-21_1.zip": (57_515, [27845, 16, 18235, 8974, 2445]),
    "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip": (155_935, [77381, 450, 66685, 8974, 2445]),
    "LOBSTER_SampleFile_GOOG_2012-06-21_1.zip": (49_482, [24368, 7, 13429, 7765, 3913]),
    "LOBSTER_SampleFile_GOOG_2012-06-21_5.zip": (112_673, [54907, 16, 46072, 7765, 3913]),
    "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip": (147_916, [71258, 19, 64961, 7765, 3913]),
}
FIXTURE = "lobster/fixture_aapl_level10_999"


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_reads_every_sample_zip_as_downloaded(name: str) -> None:
    path = data_file(f"lobster/{name}")
    assert detect(path) == "lobster"
    (day,) = read(path)
    t = day.table
    snap = t.column("snapshot").to_numpy()
    kinds = t.column("kind").to_numpy()[~snap]
    messages, per_type = COUNTS[name]
    assert len(kinds) == messages
    assert np.bincount(kinds, minlength=6)[1:].tolist() == per_type
    assert day.instrument.symbol == name.split("_")[2] and day.date == "2012-06-21"
    ts = t.column("ts").to_numpy()
    assert (np.diff(ts) >= 0).all()
    # 09:30 New York on 2012-06-21 is 13:30 UTC (daylight saving time)
    assert ts[~snap][0] >= 1340285400 * 10**9 and ts[-1] < 1340308800 * 10**9
    src = t.column("src_type").to_numpy(zero_copy_only=False)
    assert (src[snap] == "orderbook").sum() == day.notes["snapshot_levels"] > 0
    assert (src[snap] == "reveal").sum() == day.notes["reveals"] > 0  # levels entering the window, in stream
    assert (t.column("order_id").to_numpy()[snap] == 0).all()


def test_exact_integer_prices_and_nanosecond_times() -> None:
    (day,) = read(data_file(FIXTURE))
    t = day.table.filter(~day.table.column("snapshot").to_numpy())
    first = t.slice(0, 1).to_pylist()[0]
    # first line: 34200.004241176,1,16113575,18,5853300,1
    assert first["ts"] == 1340285400 * 10**9 + 4_241_176
    assert (first["kind"], first["order_id"], first["size"], first["price"], first["side"]) == (1, 16113575, 18,
                                                                                              5853300, 1)
    assert day.instrument.price_scale == 10_000 and day.instrument.tick_size == 100


def test_streams_the_orderbook_in_chunks() -> None:
    files = lobster.find(data_file(FIXTURE))[0]
    chunks = list(lobster.iter_orderbook(files, chunk_rows=100))
    assert len(chunks) > 3 and sum(len(c) for c in chunks) == 999
    assert all(c.shape[1] == 40 for c in chunks)


def _broken_copy(tmp_path: Path, line: int, edit, which: str = "message") -> Path:
    """A copy of the fixture with one line of its message (or orderbook) file edited."""
    src = data_file(FIXTURE)
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    target = next(tmp_path.glob(f"*{which}*"))
    lines = target.read_text().splitlines()
    lines[line - 1] = edit(lines[line - 1])
    target.write_text("\n".join(lines) + "\n")
    return tmp_path


def _fields(i: int, value: str):
    def edit(row: str) -> str:
        f = row.split(",")
        f[i] = value
        return ",".join(f)
    return edit


@pytest.mark.parametrize(
    ("line", "edit", "field", "value"),
    [
        (7, lambda row: row + ",5", "columns", 7),
        (12, _fields(4, "58a3300"), "price", "58a3300"),
        (20, _fields(3, "-5"), "size", -5),
        (30, _fields(3, "0"), "size", 0),
        (40, _fields(1, "9"), "type", 9),
        (50, _fields(0, "34100.5"), "ts", None),
        (60, _fields(5, "2"), "direction", 2),
    ],
)
def test_bad_messages_name_file_line_field_and_value(tmp_path, line, edit, field, value) -> None:
    folder = _broken_copy(tmp_path, line, edit)
    with pytest.raises(BadInputError) as err:
        list(read(folder))
    e = err.value
    assert "message_10.csv" in e.path and e.where == f"line {line}" and e.field == field
    if value is not None:
        assert e.value == value
    assert f"line {line}" in str(e) and field in str(e)


def test_crossed_orderbook_row_is_an_error(tmp_path) -> None:
    def crossed_book(row: str) -> str:
        f = row.split(",")
        f[0] = str(int(f[2]) - 100)  # best ask below best bid
        return ",".join(f)

    folder = _broken_copy(tmp_path, 5, crossed_book, "orderbook")
    files = lobster.find(folder)[0]
    with pytest.raises(BadInputError, match=r"orderbook_10.csv: line 5: field 'ask_price_1'.*crossed"):
        list(lobster.iter_orderbook(files))


def test_skip_bad_counts_and_reports(tmp_path) -> None:
    folder = _broken_copy(tmp_path, 20, _fields(3, "-5"))
    (day,) = read(folder, skip_bad=True)
    assert day.notes["bad_rows"] == 1 and day.notes["bad_rows_by_reason"] == {"size must be positive": 1}
    assert (day.table.column("kind").to_numpy() > 0).all()
    assert len(day.table) == 999 - 1 + day.notes["snapshot_levels"]
    assert "not added" in day.notes["reveals"]  # skipped rows break the message/orderbook row pairing


def test_unknown_container_is_a_clear_error(tmp_path) -> None:
    junk = tmp_path / "junk.zip"
    with zipfile.ZipFile(junk, "w") as z:
        z.writestr("readme.txt", "nothing here")
    with pytest.raises(ValueError, match="no LOBSTER message file"):
        list(read(junk, "lobster"))
