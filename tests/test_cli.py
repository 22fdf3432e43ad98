"""The command line on real files: ingest writes complete symbol-days or nothing; replay and demo report."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq

from tradefm.cli import main
from tradefm.events import list_days, read_day

from .conftest import data_file


def test_ingest_writes_one_parquet_per_symbol_day(tmp_path, capsys) -> None:
    src = data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_1.zip")
    assert main(["ingest", str(src), "--out", str(tmp_path)]) == 0
    (path,) = list_days(tmp_path)
    assert path.relative_to(tmp_path).as_posix() == "venue=nasdaq/symbol=GOOG/date=2012-06-21/events.parquet"
    day = read_day(path)
    assert day.instrument.price_scale == 10_000
    assert day.num_events == 49_482 + day.notes["snapshot_levels"] + day.notes["reveals"]
    assert pq.read_metadata(path).num_rows == day.num_events
    out = capsys.readouterr()
    assert "GOOG 2012-06-21 49,482 events" in out.err + out.out


def test_bad_input_stops_with_a_located_error_and_leaves_nothing(tmp_path, capsys) -> None:
    src = data_file("lobster/fixture_aapl_level10_999")
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    msg = next(bad.glob("*message*"))
    lines = msg.read_text().splitlines()
    fields = lines[99].split(",")
    fields[1] = "8"  # no LOBSTER message type 8
    lines[99] = ",".join(fields)
    msg.write_text("\n".join(lines))
    out = tmp_path / "out"
    assert main(["ingest", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "line 100" in err and "'type' = 8" in err
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))
    assert main(["ingest", str(bad), "--out", str(out), "--skip-bad"]) == 0
    assert "skipped 1 bad rows" in capsys.readouterr().out


def test_replay_command_reports_exact_rows(capsys) -> None:
    assert main(["replay", str(data_file("lobster/fixture_aapl_level10_999"))]) == 0
    assert "999/999 rows exact" in capsys.readouterr().out


def test_demo_runs_end_to_end_on_the_samples(tmp_path, capsys) -> None:
    """The README's main command, shortened (few training steps, a one-minute window)."""
    data = data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_1.zip").parent
    assert main(["demo", "--data", str(data), "--out", str(tmp_path), "--steps", "30", "--minutes", "1",
                 "--rollouts", "2"]) == 0
    table = (tmp_path / "report" / "table.md").read_text()
    for column in ("TradeFM", "Compound Hawkes", "zero-intelligence", "real tokens, decoded", "real vs real"):
        assert column in table
    assert (tmp_path / "report" / "report.html").exists() and list((tmp_path / "report").glob("*.png"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["replay_exact"] == 1.0 and set(summary["control"]) == {"free", "volume=0", "volume=2", "activity=0",
                                                                          "activity=2"}
    assert set(summary["control_response"]) == set(summary["control"])
    assert len(list((tmp_path / "rollouts" / "tradefm").glob("rollout_*/events.parquet"))) == 2


def test_demo_without_data_says_where_to_get_it(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TRADEFM_DATA", raising=False)
    assert main(["demo", "--data", str(tmp_path / "empty")]) == 2
    assert "lobsterdata.com" in capsys.readouterr().err
