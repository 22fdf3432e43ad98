"""Every command on bad input: one line on stderr, ``tradefm CMD: error: ...`` naming the problem, a non-zero
exit, never a traceback; ``--debug`` shows the traceback instead.

The inputs are tiny synthetic ones made here (a random order flow through the matching engine, a model trained
for two steps), so the whole table runs in seconds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tradefm.cli import main
from tradefm.events import EventDay, Instrument, empty_table, write_day
from tradefm.generation.market import Market

from .conftest import random_orders

SESSION = (34_200, 34_200 + 3_600)  # 09:30-10:30 New York time, seconds after midnight


def _flow_day(seed: int = 0, orders: int = 4_000) -> EventDay:
    """Random limit orders around the mid and cancels of resting ones, through the engine: a consistent day."""
    rng = np.random.default_rng(seed)
    inst = Instrument("SYN", "test", price_scale=10_000, tick_size=100, timezone="America/New_York")
    date = "2024-03-01"
    midnight = int(np.datetime64(f"{date}T05:00:00", "ns").astype(np.int64))  # 00:00 in New York (EST)
    start = midnight + SESSION[0] * 10**9
    market = Market(EventDay(inst, date, empty_table()), start)
    times = start + np.cumsum(rng.exponential((SESSION[1] - SESSION[0]) / orders, orders) * 1e9).astype(np.int64)
    random_orders(market, times, rng, 1_000_000.0, 100, (-2, 12), (1, 5))
    return market.to_day("synthetic")


SMALL = {"layers": 1, "width": 32, "heads": 2, "kv_heads": 1, "ffn_hidden": 64, "field_width": 4, "context": 32}


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    """One of each good input: an event store and its day, a tokenizer, shards, a model, baseline parameters and
    rollouts, each made by the command that makes it."""
    root = tmp_path_factory.mktemp("good")
    day = write_day(_flow_day(), root / "events")
    run = {"root": root, "events": root / "events", "day": day, "tok": root / "tok.json",
           "shards": root / "shards", "config": root / "train.json", "model": root / "run" / "model",
           "params": root / "zi.json", "rollouts": root / "zi"}
    assert main(["fit-tokenizer", str(run["events"]), "--out", str(run["tok"])]) == 0
    assert main(["tokenize", str(run["events"]), "--tokenizer", str(run["tok"]), "--out", str(run["shards"])]) == 0
    run["config"].write_text(json.dumps({
        "shards": "shards", "out": "run", "preset": "tiny", "model": SMALL, "seq_len": 32, "batch_size": 2,
        "max_steps": 2, "warmup_steps": 1, "eval_every": 2, "eval_batches": 1, "ckpt_every": 2, "progress": False,
        "device": "cpu"}))
    assert main(["train", str(run["config"])]) == 0
    assert main(["baseline", "fit", "zero-intelligence", str(day), "--out", str(run["params"])]) == 0
    assert main(["baseline", "generate", str(run["params"]), "--from", str(day), "--minutes", "0.5",
                 "--rollouts", "1", "--out", str(run["rollouts"])]) == 0
    return run



def _bad_files(tmp: Path) -> dict[str, Path]:
    """Inputs that are not what they claim: each a different way to be wrong."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = {"missing": tmp / "missing.parquet", "folder": tmp / "a_folder", "empty": tmp / "empty.csv",
             "garbage_csv": tmp / "garbage.csv", "corrupt_parquet": tmp / "corrupt.parquet",
             "foreign_parquet": tmp / "foreign.parquet", "not_json": tmp / "not.json", "empty_json": tmp / "empty.json",
             "a_file": tmp / "a_file", "corrupt_zip": tmp / "LOBSTER_SampleFile_XYZ_2012-06-21_1.zip",
             "lobster_garbage": tmp / "lob" / "XYZ_2012-06-21_34200000_57600000_message_1.csv",
             "not_model": tmp / "not_a_model", "wrong_config": tmp / "wrong_config"}
    files["folder"].mkdir()
    files["not_model"].mkdir()
    files["empty"].write_text("")
    files["garbage_csv"].write_text("this,is\nnot;a,feed\n\x00\x01,,\n")
    files["corrupt_parquet"].write_bytes(b"PAR1" + bytes(range(256)) * 4)
    pq.write_table(pa.table({"x": [1, 2, 3]}), files["foreign_parquet"])
    files["not_json"].write_text("{not json")
    files["empty_json"].write_text("{}")
    files["a_file"].write_text("a file, where a folder is wanted")
    files["corrupt_zip"].write_bytes(b"PK\x03\x04 truncated")
    files["lobster_garbage"].parent.mkdir()
    files["lobster_garbage"].write_text("34200.1,1,x,100,5850000,1\nnot,a,message\n")
    return files


def _wrong_config(good: dict[str, Path], tmp: Path) -> Path:
    """A copy of the trained model whose config.json misses a field (an older or foreign config)."""
    import shutil

    folder = tmp / "wrong_config"
    shutil.copytree(good["model"], folder, dirs_exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "tradefm", "width": 32}))
    return folder


def _trades_only(good: dict[str, Path], tmp: Path) -> Path:
    """The good day's executions alone, as a trades feed shows them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from tradefm.events import Kind, read_day

    day = read_day(good["day"])
    trades = pc.is_in(day.table.column("kind"), pa.array([int(Kind.EXECUTE), int(Kind.TRADE)], pa.int8()))
    only = EventDay(day.instrument, day.date, day.table.filter(trades), ["trades"])
    return write_day(only, tmp / "trades")


def _settings(tmp: Path, good: dict[str, Path], **kw: object) -> Path:
    cfg = json.loads(good["config"].read_text())
    cfg.update(shards=str(good["shards"]), out=str(tmp / "run"))
    cfg.update(kw)
    for key in [k for k, v in kw.items() if v is None]:
        del cfg[key]
    path = tmp / "settings.json"
    path.write_text(json.dumps(cfg))
    return path


G = dict[str, Path]
Case = tuple[str, Callable[[G, G, Path], list[str]], str]  # name, argv from (good, bad, tmp), what the line names

CASES: list[Case] = [
    # ingest
    ("ingest a missing file", lambda g, b, t: ["ingest", str(b["missing"]), "--out", str(t / "o")],
     "missing.parquet: does not exist"),
    ("ingest an empty file", lambda g, b, t: ["ingest", str(b["empty"]), "--out", str(t / "o")],
     "empty.csv: cannot tell the format"),
    ("ingest an empty folder", lambda g, b, t: ["ingest", str(b["folder"]), "--out", str(t / "o")],
     "a_folder: no file of a known format"),
    ("ingest a garbage CSV as LOBSTER", lambda g, b, t: ["ingest", str(b["garbage_csv"]), "--format", "lobster",
                                                         "--out", str(t / "o")], "garbage.csv"),
    ("ingest a garbage LOBSTER message file", lambda g, b, t: ["ingest", str(b["lobster_garbage"]), "--out",
                                                               str(t / "o")], "message_1.csv"),
    ("ingest a corrupt zip", lambda g, b, t: ["ingest", str(b["corrupt_zip"]), "--format", "lobster", "--out",
                                              str(t / "o")], "XYZ_2012-06-21_1.zip"),
    ("ingest a wrong format name", lambda g, b, t: ["ingest", str(b["empty"]), "--format", "csv", "--out",
                                                    str(t / "o")], "invalid choice: 'csv'"),
    ("ingest the generic format", lambda g, b, t: ["ingest", str(b["garbage_csv"]), "--format", "generic", "--out",
                                                   str(t / "o")], "needs a feed mapping"),
    # replay
    ("replay a missing file", lambda g, b, t: ["replay", str(b["missing"])], "missing.parquet: does not exist"),
    ("replay a folder without LOBSTER files", lambda g, b, t: ["replay", str(b["folder"])], "no LOBSTER message"),
    ("replay a garbage CSV", lambda g, b, t: ["replay", str(b["garbage_csv"])], "garbage.csv"),
    # fit-tokenizer
    ("fit on a missing store", lambda g, b, t: ["fit-tokenizer", str(b["missing"]), "--out", str(t / "t.json")],
     "missing.parquet: no symbol-days (does not exist)"),
    ("fit on an empty store", lambda g, b, t: ["fit-tokenizer", str(b["folder"]), "--out", str(t / "t.json")],
     "a_folder: no symbol-days"),
    ("fit with a bad --feature", lambda g, b, t: ["fit-tokenizer", str(g["events"]), "--out", str(t / "t.json"),
                                                  "--feature", "colour=red"], "colour=red"),
    ("fit with a bad --feature value", lambda g, b, t: ["fit-tokenizer", str(g["events"]), "--out",
                                                        str(t / "t.json"), "--feature", "half_life_s=soon"],
     "half_life_s"),
    ("fit with a clock that is not a whole number", lambda g, b, t: ["fit-tokenizer", str(g["events"]), "--out",
                                                                     str(t / "t.json"), "--feature",
                                                                     "resolution_ns=1ms"], "whole number"),
    ("fit with splits out of order", lambda g, b, t: ["fit-tokenizer", str(g["events"]), "--out",
                                                      str(t / "t.json"), "--val-from", "0.9", "--test-from", "0.5"],
     "val_from"),
    ("fit into an unwritable path", lambda g, b, t: ["fit-tokenizer", str(g["events"]), "--out",
                                                     str(b["a_file"] / "t.json")],
     "a_file: is a file, where a folder is wanted"),
    # tokenize and token-stats
    ("tokenize with a missing tokenizer", lambda g, b, t: ["tokenize", str(g["events"]), "--tokenizer",
                                                           str(b["missing"]), "--out", str(t / "s")], "missing"),
    ("tokenize with a tokenizer that is not JSON", lambda g, b, t: ["tokenize", str(g["events"]), "--tokenizer",
                                                                    str(b["not_json"]), "--out", str(t / "s")],
     "not.json: not a tokenizer file"),
    ("tokenize with an empty JSON as tokenizer", lambda g, b, t: ["tokenize", str(g["events"]), "--tokenizer",
                                                                  str(b["empty_json"]), "--out", str(t / "s")],
     "empty.json: not a tokenizer file"),
    ("tokenize with a folder as tokenizer", lambda g, b, t: ["tokenize", str(g["events"]), "--tokenizer",
                                                             str(b["folder"]), "--out", str(t / "s")], "a_folder"),
    ("tokenize with a copy that changes what a token means", lambda g, b, t: [
        "tokenize", str(g["events"]), "--tokenizer", str(g["tok"]), "--out", str(t / "s"), "--augment", "volume=size"],
     "--augment wants KEY=VALUE with KEY one of resolution_ns, trades_only, size_jitter"),
    ("tokenize with an unknown copy preset", lambda g, b, t: [
        "tokenize", str(g["events"]), "--tokenizer", str(g["tok"]), "--out", str(t / "s"), "--augment", "crypto"],
     "--augment wants a preset (feeds) or KEY=VALUE pairs, got 'crypto'"),
    ("tokenize with a trades-only copy and no feed kind", lambda g, b, t: [
        "tokenize", str(g["events"]), "--tokenizer", str(g["tok"]), "--out", str(t / "s"), "--augment", "feeds"],
     "a trades_only copy needs a tokenizer with the feed's kind"),
    ("tokenize with a jitter out of range", lambda g, b, t: [
        "tokenize", str(g["events"]), "--tokenizer", str(g["tok"]), "--out", str(t / "s"), "--augment",
        "size_jitter=5"], "size_jitter must be between 0"),
    ("tokenize with a clock no coarser than recorded", lambda g, b, t: [
        "tokenize", str(g["events"]), "--tokenizer", str(g["tok"]), "--out", str(t / "s"), "--augment",
        "resolution_ns=1,size_jitter=0.3"], "coarser than the tokenizer's"),
    ("tokenize a store with a corrupt day", lambda g, b, t: ["tokenize", str(_store_with(t, b["corrupt_parquet"])),
                                                             "--tokenizer", str(g["tok"]), "--out", str(t / "s")],
     "events.parquet: not a readable Parquet file"),
    ("tokenize a store with a foreign Parquet", lambda g, b, t: ["tokenize", str(_store_with(t, b["foreign_parquet"])),
                                                                 "--tokenizer", str(g["tok"]), "--out", str(t / "s")],
     "events.parquet: not a symbol-day file"),
    ("token-stats of a folder that holds no shards", lambda g, b, t: ["token-stats", str(b["folder"]), "--tokenizer",
                                                                      str(g["tok"])], "a_folder: not a shard folder"),
    ("token-stats with a garbage manifest", lambda g, b, t: ["token-stats", str(_shards_with(t, "{}")), "--tokenizer",
                                                             str(g["tok"])], "not a shard manifest"),
    # train
    ("train with a missing config", lambda g, b, t: ["train", str(b["missing"])], "missing.parquet: does not exist"),
    ("train a config without shards", lambda g, b, t: ["train", str(_settings(t, g, shards=None))],
     "no 'shards' setting"),
    ("train a config that is not JSON", lambda g, b, t: ["train", str(b["not_json"])], "not.json: not a JSON file"),
    ("train a TOML config that is not TOML", lambda g, b, t: ["train", str(_write(t / "bad.toml", "shards = [x"))],
     "bad.toml: not a TOML file"),
    ("train a config that is a list", lambda g, b, t: ["train", str(_write(t / "list.json", "[1, 2]"))],
     "list.json: not a table of training settings"),
    ("train a config with an unknown setting", lambda g, b, t: ["train", str(_settings(t, g, colour=1))], "colour"),
    ("train a config with a wrong type", lambda g, b, t: ["train", str(_settings(t, g, max_steps="many"))],
     "max_steps = 'many' is not an integer"),
    ("train on a folder that holds no shards", lambda g, b, t: ["train", str(_settings(t, g)), "--set",
                                                                f"shards={b['folder']}"], "not a shard folder"),
    ("train with an unknown preset", lambda g, b, t: ["train", str(_settings(t, g)), "--set", "preset=huge"],
     "huge"),
    ("train with a bad --set", lambda g, b, t: ["train", str(_settings(t, g)), "--set", "max_steps"], "max_steps"),
    # perplexity
    ("perplexity of a folder that is not a model", lambda g, b, t: ["perplexity", str(b["not_model"]),
                                                                    str(g["shards"])], "not_a_model: not a model"),
    ("perplexity of a missing model", lambda g, b, t: ["perplexity", str(b["missing"]), str(g["shards"])],
     "missing.parquet: not a model folder (does not exist)"),
    ("perplexity of a model with a wrong config.json", lambda g, b, t: ["perplexity", str(_wrong_config(g, t)),
                                                                        str(g["shards"])], "context_fields"),
    ("perplexity on a folder without shards", lambda g, b, t: ["perplexity", str(g["model"]), str(b["folder"])],
     "a_folder: not a shard folder"),
    ("perplexity of an unknown split", lambda g, b, t: ["perplexity", str(g["model"]), str(g["shards"]), "--split",
                                                        "bogus"], "--split bogus: not a split"),
    ("perplexity with a plot under a file", lambda g, b, t: ["perplexity", str(g["model"]), str(g["shards"]), "--plot",
                                                            str(b["a_file"] / "p.png")],
     "a_file: is a file, where a folder is wanted"),
    ("perplexity of a model with corrupt weights", lambda g, b, t: ["perplexity", str(_corrupt_weights(g, t)),
                                                                    str(g["shards"])],
     "model.safetensors: not a safetensors file"),
    # generate
    ("generate with a wrong config.json", lambda g, b, t: ["generate", str(_wrong_config(g, t)), "--from",
                                                           str(g["day"]), "--out", str(t / "gen")], "context_fields"),
    ("generate from a folder that is not a model", lambda g, b, t: ["generate", str(b["not_model"]), "--from",
                                                                    str(g["day"]), "--out", str(t / "gen")],
     "not a model folder"),
    ("generate from a missing day", lambda g, b, t: ["generate", str(g["model"]), "--from", str(b["missing"]),
                                                     "--out", str(t / "gen")], "missing.parquet: does not exist"),
    ("generate from a corrupt day", lambda g, b, t: ["generate", str(g["model"]), "--from", str(b["corrupt_parquet"]),
                                                     "--out", str(t / "gen")], "corrupt.parquet"),
    ("generate from a folder", lambda g, b, t: ["generate", str(g["model"]), "--from", str(b["folder"]),
                                                "--out", str(t / "gen")], "a_folder"),
    ("generate from a start after the session", lambda g, b, t: ["generate", str(g["model"]), "--from",
                                                                 str(g["day"]), "--start", "15:00", "--out",
                                                                 str(t / "gen")], "outside"),
    ("generate from a fraction beyond the day", lambda g, b, t: ["generate", str(g["model"]), "--from",
                                                                 str(g["day"]), "--start", "1.5", "--out",
                                                                 str(t / "gen")], "1.5"),
    ("generate from a start that is no time", lambda g, b, t: ["generate", str(g["model"]), "--from", str(g["day"]),
                                                               "--start", "noon", "--out", str(t / "gen")], "noon"),
    ("generate negative rollouts", lambda g, b, t: ["generate", str(g["model"]), "--from", str(g["day"]),
                                                    "--rollouts", "-2", "--out", str(t / "gen")], "-2"),
    ("generate zero events", lambda g, b, t: ["generate", str(g["model"]), "--from", str(g["day"]), "--events", "0",
                                              "--out", str(t / "gen")], "--events"),
    ("generate at temperature 0", lambda g, b, t: ["generate", str(g["model"]), "--from", str(g["day"]),
                                                   "--temperature", "0", "--out", str(t / "gen")], "temperature"),
    ("generate with a bad --twap", lambda g, b, t: ["generate", str(g["model"]), "--from", str(g["day"]),
                                                    "--twap", "sell:lots", "--out", str(t / "gen")], "sell:lots"),
    ("generate with a bad --control", lambda g, b, t: ["generate", str(g["model"]), "--from", str(g["day"]),
                                                       "--control", "loud", "--out", str(t / "gen")], "loud"),
    ("generate on a device that is none", lambda g, b, t: ["generate", str(g["model"]), "--from", str(g["day"]),
                                                           "--device", "bogus", "--out", str(t / "gen")],
     "--device 'bogus'"),
    ("generate into an unwritable path", lambda g, b, t: ["generate", str(g["model"]), "--from", str(g["day"]),
                                                          "--events", "5", "--rollouts", "1", "--out",
                                                          str(b["a_file"] / "gen")], "a_file"),
    # evaluate and report
    ("evaluate a missing real day", lambda g, b, t: ["evaluate", str(b["missing"]), str(g["rollouts"])],
     "missing.parquet: does not exist"),
    ("evaluate a folder without rollouts", lambda g, b, t: ["evaluate", str(g["day"]), str(b["folder"])],
     "a_folder"),
    ("evaluate a corrupt rollout", lambda g, b, t: ["evaluate", str(g["day"]), str(b["corrupt_parquet"])],
     "corrupt.parquet"),
    ("evaluate from a start that is no time", lambda g, b, t: ["evaluate", str(g["day"]), str(g["rollouts"]),
                                                               "--start", "soon"], "soon"),
    ("evaluate a window that ends before it starts", lambda g, b, t: ["evaluate", str(g["day"]), str(g["rollouts"]),
                                                                      "--start", "0.9", "--end", "0.1"],
     "ends before it starts"),
    ("report a folder without rollouts", lambda g, b, t: ["report", str(g["day"]), f"X={b['folder']}", "--out",
                                                          str(t / "r")], "a_folder"),
    ("report with a tokenizer that is not one", lambda g, b, t: ["report", str(g["day"]), f"ZI={g['rollouts']}",
                                                                 "--tokenizer", str(b["empty_json"]), "--out",
                                                                 str(t / "r")], "empty.json"),
    ("report into an unwritable path", lambda g, b, t: ["report", str(g["day"]), f"ZI={g['rollouts']}", "--out",
                                                        str(b["a_file"] / "r")], "a_file"),
    # baseline
    ("baseline fit on a missing day", lambda g, b, t: ["baseline", "fit", "hawkes", str(b["missing"]), "--out",
                                                       str(t / "p.json")], "missing.parquet: does not exist"),
    ("baseline fit on a foreign Parquet", lambda g, b, t: ["baseline", "fit", "hawkes", str(b["foreign_parquet"]),
                                                           "--out", str(t / "p.json")], "foreign.parquet"),
    ("baseline fit from a clock that is no time", lambda g, b, t: ["baseline", "fit", "hawkes", str(g["day"]),
                                                                   "--start", "9h30", "--out", str(t / "p.json")],
     "9h30"),
    ("baseline fit on a window without events", lambda g, b, t: ["baseline", "fit", "hawkes", str(g["day"]), "--start",
                                                                 "23:00", "--out", str(t / "p.json")],
     "no events to fit on"),
    ("baseline fit into an unwritable path", lambda g, b, t: ["baseline", "fit", "zero-intelligence", str(g["day"]),
                                                              "--out", str(b["a_file"] / "p.json")], "a_file"),
    ("baseline generate from missing parameters", lambda g, b, t: ["baseline", "generate", str(b["missing"]),
                                                                   "--from", str(g["day"]), "--out", str(t / "b")],
     "missing.parquet: does not exist"),
    ("baseline generate from parameters that are not JSON", lambda g, b, t: ["baseline", "generate",
                                                                             str(b["not_json"]), "--from",
                                                                             str(g["day"]), "--out", str(t / "b")],
     "not.json"),
    ("baseline generate from a JSON that holds none", lambda g, b, t: ["baseline", "generate", str(b["empty_json"]),
                                                                       "--from", str(g["day"]), "--out", str(t / "b")],
     "empty.json: holds no baseline parameters"),
    ("baseline generate zero rollouts", lambda g, b, t: ["baseline", "generate", str(g["params"]), "--from",
                                                         str(g["day"]), "--rollouts", "0", "--out", str(t / "b")],
     "--rollouts"),
    ("baseline generate negative minutes", lambda g, b, t: ["baseline", "generate", str(g["params"]), "--from",
                                                            str(g["day"]), "--minutes", "-1", "--out", str(t / "b")],
     "--minutes"),
    ("baseline generate from a start before the session", lambda g, b, t: ["baseline", "generate", str(g["params"]),
                                                                           "--from", str(g["day"]), "--start", "04:00",
                                                                           "--out", str(t / "b")], "outside"),
    ("baseline generate from a trades-only day", lambda g, b, t: ["baseline", "generate", str(g["params"]),
                                                                   "--from", str(_trades_only(g, t)), "--out",
                                                                   str(t / "b")], "a trades-only feed"),
    # benchmark and demo
    ("benchmark a missing run", lambda g, b, t: ["benchmark", str(b["missing"])], "missing.parquet"),
    ("benchmark a folder that is no run", lambda g, b, t: ["benchmark", str(b["folder"])], "a_folder"),
    ("benchmark an unknown preset", lambda g, b, t: ["benchmark", str(g["model"]), "--events", str(g["events"]),
                                                     "--preset", "huge"], "huge"),
    ("benchmark zero windows", lambda g, b, t: ["benchmark", str(g["model"]), "--windows", "0"], "--windows"),
    # stress
    ("stress a missing run", lambda g, b, t: ["stress", str(b["missing"])], "missing.parquet"),
    ("stress an unknown preset", lambda g, b, t: ["stress", str(g["model"]), "--presets", "none,meteor"], "meteor"),
    ("stress a start past the session", lambda g, b, t: ["stress", str(g["model"]), "--start", "1.5"], "--start"),
    ("demo without the samples", lambda g, b, t: ["demo", "--data", str(b["folder"]), "--out", str(t / "d")],
     "LOBSTER sample"),
    ("demo with zero steps", lambda g, b, t: ["demo", "--steps", "0"], "--steps"),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _corrupt_weights(good: dict[str, Path], tmp: Path) -> Path:
    """A copy of the trained model whose weights file is not one."""
    import shutil

    folder = tmp / "corrupt_weights"
    shutil.copytree(good["model"], folder)
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    return folder


def _store_with(tmp: Path, parquet: Path) -> Path:
    """An event store whose one symbol-day file is ``parquet``."""
    import shutil

    path = tmp / "store" / "venue=x" / "symbol=Y" / "date=2024-03-01" / "events.parquet"
    path.parent.mkdir(parents=True)
    shutil.copy(parquet, path)
    return tmp / "store"


def _shards_with(tmp: Path, manifest: str) -> Path:
    (tmp / "shards").mkdir()
    (tmp / "shards" / "manifest.json").write_text(manifest)
    return tmp / "shards"


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors
        return int(e.code or 0)


@pytest.mark.parametrize(("name", "argv", "names"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_a_failure(name: str, argv, names: str, good, tmp_path, capsys) -> None:
    bad = _bad_files(tmp_path)
    args = argv(good, bad, tmp_path)
    code = _run(args)
    err = capsys.readouterr().err
    lines = [line.rsplit("\r", 1)[-1] for line in err.splitlines()]
    said = [line for line in lines if line.startswith("tradefm ")]
    command = " ".join(["tradefm", *args[:2]] if args[0] == "baseline" else ["tradefm", args[0]])
    assert code != 0, f"{name}: exit status 0\n{err}"
    assert "Traceback" not in err, err
    assert len(said) == 1 and said[0] == lines[-1], f"{name}: not one line at the end:\n{err}"
    assert said[0].startswith(f"{command}: error: "), said[0]
    assert names in said[0], f"{name}: the line does not name {names!r}: {said[0]}"


def test_debug_shows_the_traceback_instead(tmp_path, capsys) -> None:
    missing = str(tmp_path / "missing.zip")
    assert _run(["ingest", missing, "--out", str(tmp_path / "o")]) == 2
    assert "Traceback" not in capsys.readouterr().err
    for argv in (["--debug", "ingest", missing, "--out", str(tmp_path / "o")],
                 ["ingest", missing, "--out", str(tmp_path / "o"), "--debug"]):  # before or after the command
        with pytest.raises(FileNotFoundError, match=r"missing\.zip"):
            main(argv)


def test_a_bug_is_one_line_that_says_so(tmp_path, capsys, monkeypatch) -> None:
    """Anything that is not bad input is an internal error: still one line, naming itself, pointing to --debug."""
    import tradefm.cli

    def broken(*args: object, **kw: object) -> None:
        raise ZeroDivisionError("division by zero in the ingest")

    monkeypatch.setattr(tradefm.cli, "ingest", broken)
    assert _run(["ingest", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("tradefm ingest: internal error: ZeroDivisionError: division by zero in the ingest")
    assert "--debug" in line
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "ingest", str(tmp_path), "--out", str(tmp_path / "o")])
