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


def test_a_folder_of_feeds_is_searched_and_each_file_read_by_its_reader(tmp_path, capsys) -> None:
    """A user points ingest at where the downloads are: zips, a websocket capture folder, DBN files with their
    definitions beside them, and files that are no feed."""
    feeds = tmp_path / "downloads"
    (feeds / "nasdaq").mkdir(parents=True)
    for name in ("GOOG_2012-06-21_1", "AMZN_2012-06-21_1"):
        (feeds / "nasdaq" / f"{name}.zip").symlink_to(data_file(f"lobster/LOBSTER_SampleFile_{name}.zip"))
    (feeds / "binance").symlink_to(data_file("binance/hftbacktest_ws_capture/spot"), target_is_directory=True)
    for name in ("orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst", "orderbooks_definition.dbn.zst"):
        (feeds / name).symlink_to(data_file(f"databento/{name}"))
    (feeds / "README.md").write_text("where these came from\n")
    (feeds / ".DS_Store").write_bytes(b"\0")
    out = tmp_path / "events"
    assert main(["ingest", str(feeds), "--out", str(out)]) == 0
    days = {p.relative_to(out).parent.as_posix() for p in list_days(out)}
    assert days == {f"venue={v}/symbol={s}/date={d}" for v, s, d in [
        ("nasdaq", "GOOG", "2012-06-21"), ("nasdaq", "AMZN", "2012-06-21"), ("cme", "ESM4", "2024-05-08"),
        ("binance", "BTCUSDT", "2024-08-08"), ("binance", "BTCUSDT", "2024-08-09"),
        ("binance", "ETHUSDT", "2024-08-08"), ("binance", "ETHUSDT", "2024-08-09")]}
    (es,) = [p for p in list_days(out) if "ESM4" in str(p)]
    assert read_day(es).notes["tick_from"] == "definition min_price_increment"
    said = capsys.readouterr()
    assert "set aside 2 files" in said.out + said.err and "README.md (no known format)" in said.out + said.err
    assert main(["ingest", str(feeds / "nasdaq" / "GOOG_2012-06-21_1.zip"), "--out", str(out)]) == 0
    said = capsys.readouterr()
    assert "GOOG 2012-06-21 49,482 events" in said.out
    assert "(replaces the store's earlier copy, 49,482 events)" in said.out  # a re-read source replaces its day
    only = tmp_path / "lobster_only"
    assert main(["ingest", str(feeds), "--format", "lobster", "--out", str(only)]) == 0
    assert {read_day(p).instrument.venue for p in list_days(only)} == {"nasdaq"}


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
    stress = summary["stress"]  # the presets' effect, next to the real flow of the same span
    assert set(stress) == {"real", "none", "withdrawal", "burst", "large_seller"}
    assert stress["burst"]["events_per_min"] > 3 * stress["real"]["events_per_min"]  # paced to 10x the real
    assert "## Stress presets" in table
    capsys.readouterr()  # the demo's own output
    assert main(["stress", str(tmp_path), "--seconds", "5", "--presets", "burst"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| real", "| burst"]
    (ratio, low, high), = summary["benchmark_headline"].values()  # the pooled held-out headline, with its interval
    assert 0 < ratio < 10 and low <= ratio <= high
    assert "TradeFM mean KS ÷ Compound Hawkes mean KS" in table
    assert json.loads((tmp_path / "benchmark" / "benchmark.json").read_text())["windows"]
    assert len(list((tmp_path / "rollouts" / "tradefm").glob("rollout_*/events.parquet"))) == 2


def test_a_demo_rerun_starts_afresh_and_never_clears_a_folder_it_did_not_write(tmp_path, capsys) -> None:
    """Left in place, an earlier demo's checkpoint would be resumed at its last step and nothing trained."""
    from tradefm.demo import MARK, _fresh

    earlier = tmp_path / "earlier"
    (earlier / "model").mkdir(parents=True)
    (earlier / "model" / "checkpoint.pt").write_bytes(b"x")
    (earlier / MARK).touch()
    (earlier / "notes.txt").write_text("mine")
    assert _fresh(earlier) == earlier
    assert not (earlier / "model").exists() and (earlier / "notes.txt").read_text() == "mine"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.csv").write_text("1,2")
    data = data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_1.zip").parent
    assert main(["demo", "--data", str(data), "--out", str(foreign)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not an earlier demo run" in err and len(err.splitlines()) == 1
    assert (foreign / "data.csv").exists()


def test_demo_without_data_says_where_to_get_it(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TRADEFM_DATA", raising=False)
    assert main(["demo", "--data", str(tmp_path / "empty")]) == 2
    assert "lobsterdata.com" in capsys.readouterr().err


def test_generate_baseline_evaluate_and_report_commands(tmp_path, capsys) -> None:
    """The commands of the realism workflow on the real GOOG day, each through the command line: fit and run both
    baselines, roll out a model, measure the rollouts against the real window, and write the report with the
    real tokens decoded beside them."""
    import torch

    from tradefm.model import TradeFM, preset
    from tradefm.tokenizer import Tokenizer

    events = tmp_path / "events"
    assert main(["ingest", str(data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")), "--out",
                 str(events)]) == 0
    (day,) = map(str, list_days(events))
    for kind in ("hawkes", "zero-intelligence"):
        params = tmp_path / f"{kind}.json"
        assert main(["baseline", "fit", kind, day, "--start", "10:00", "--end", "14:30", "--out", str(params)]) == 0
        assert json.loads(params.read_text())["kind"] == kind
        assert main(["baseline", "generate", str(params), "--from", day, "--start", "15:00", "--minutes", "2",
                     "--rollouts", "2", "--out", str(tmp_path / "gen" / kind)]) == 0
        rollouts = sorted((tmp_path / "gen" / kind).glob("rollout_*"))
        assert len(rollouts) == 2 and all(list(r.glob("*message*.csv")) for r in rollouts)
        first = read_day(rollouts[0] / "events.parquet")
        assert first.table.num_rows > 100 and read_day(rollouts[1] / "events.parquet").table != first.table
    assert main(["fit-tokenizer", str(events), "--out", str(tmp_path / "tok.json"), "--features", "book",
                 "--feature", "half_life_s=5"]) == 0
    features = Tokenizer.load(tmp_path / "tok.json").features
    assert features.clear_touch and not features.hidden and features.join_touch and features.half_life_s == 5
    torch.manual_seed(0)
    TradeFM(preset("tiny", layers=2, context=64)).save_pretrained(tmp_path / "out" / "model",
                                                                  Tokenizer.load(tmp_path / "tok.json"))
    assert main(["generate", str(tmp_path / "out" / "model"), "--from", day, "--start", "15:00", "--events", "200",
                 "--rollouts", "2", "--twap", "sell:500:0.5:5", "--out", str(tmp_path / "gen" / "tradefm")]) == 0
    assert len(list((tmp_path / "gen" / "tradefm").glob("rollout_*/events.parquet"))) == 2
    # the folder `tradefm train` wrote (its model in model/) stands for the model
    assert main(["generate", str(tmp_path / "out"), "--from", day, "--start", "15:00", "--events", "50",
                 "--rollouts", "2", "--dtype", "bfloat16", "--out", str(tmp_path / "gen" / "bf16")]) == 0
    assert len(list((tmp_path / "gen" / "bf16").glob("rollout_*/events.parquet"))) == 2
    capsys.readouterr()
    assert main(["evaluate", day, str(tmp_path / "gen" / "hawkes"), "--name", "Hawkes"]) == 0
    assert "| KS · spread (ticks, per event) |" in capsys.readouterr().out
    report = tmp_path / "report"
    assert main(["report", day, f"Hawkes={tmp_path / 'gen' / 'hawkes'}", f"ZI={tmp_path / 'gen' / 'zero-intelligence'}",
                 "--tokenizer", str(tmp_path / "tok.json"), "--out", str(report)]) == 0
    header = next(line for line in (report / "table.md").read_text().splitlines() if line.startswith("| metric"))
    assert header == "| metric | Hawkes | ZI | real tokens, decoded | real vs real |"
    assert (report / "report.html").exists()
    capsys.readouterr()
    assert main(["baseline", "generate", str(tmp_path / "tok.json"), "--from", day, "--out", str(tmp_path / "x")]) == 2
    assert "holds no baseline parameters" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_link_back_up_the_tree_is_searched_once(tmp_path) -> None:
    from tradefm import readers

    feeds = tmp_path / "feeds"
    (feeds / "sub").mkdir(parents=True)
    (feeds / "GOOG.zip").symlink_to(data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_1.zip"))
    (feeds / "sub" / "up").symlink_to(feeds, target_is_directory=True)
    found, skipped = readers.sources(feeds)
    assert [(s.path.name, s.fmt) for s in found] == [("GOOG.zip", "lobster")] and skipped == []
