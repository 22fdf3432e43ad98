"""The pooled held-out benchmark: windows stay in their split, intervals come from windows, every source is scored."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tradefm.cli import main
from tradefm.evaluation import benchmark as bm
from tradefm.evaluation.metrics import DISTRIBUTIONS
from tradefm.events import InputError
from tradefm.features import order_flow
from tradefm.generation.output import slug
from tradefm.model import TradeFM, preset
from tradefm.readers import read
from tradefm.shards import SplitConfig
from tradefm.tokenizer import Tokenizer

from .conftest import data_file


def _samples(rng: np.random.Generator, shift: float = 0.0, n: int = 300) -> dict[str, np.ndarray]:
    return {m: rng.normal(shift, 1.0, n) for m in bm.METRICS}


def test_a_source_drawn_like_the_real_windows_scores_near_the_floor_and_a_shifted_one_far() -> None:
    rng = np.random.default_rng(0)
    real = [_samples(rng) for _ in range(6)]
    inst = ["a"] * 3 + ["b"] * 3
    sources = {bm.MODEL: [[_samples(rng)] for _ in range(6)], bm.HAWKES: [[_samples(rng, 0.5)] for _ in range(6)]}
    floor = [_samples(rng) for _ in range(6)]
    rows, means, headline, floor_ratio = bm.measure(real, inst, sources, floor, inst, n_boot=30, seed=1)
    assert set(rows) == {"a", "b", bm.ALL} and set(rows[bm.ALL]) == {bm.MODEL, bm.HAWKES, bm.FLOOR}
    value, low, high = headline[bm.ALL]
    assert value < 0.5 and low <= value <= high < 1.0  # like the real flow: far below the shifted source
    f, f_low, f_high = floor_ratio[bm.ALL]  # the floor is real flow too: the same ratio, within the noise
    assert f < 0.5 and f_low < f_high < 1.0 and abs(f - value) < 0.15
    for m in DISTRIBUTIONS:
        v, lo, hi = rows[bm.ALL][bm.HAWKES][m]["KS"]
        assert lo <= v <= hi and v > 0.1
    assert abs(means[bm.ALL][bm.MODEL][0] - means[bm.ALL][bm.FLOOR][0]) < 0.05
    again = bm.measure(real, inst, sources, floor, inst, n_boot=30, seed=1)
    assert again[2] == headline  # the same seed, the same resamples


def test_a_row_is_ahead_inside_the_floor_or_behind() -> None:
    """Ahead: at or below Compound Hawkes; inside: above it but within a floor's interval; else behind."""
    def rows(model: float, hawkes: float, floor_high: float) -> dict:
        ks = {bm.MODEL: (model, 0, 1), bm.HAWKES: (hawkes, 0, 1), bm.FLOOR: (0.0, 0.0, floor_high)}
        return {name: {m: {"KS": v} for m in DISTRIBUTIONS} for name, v in ks.items()}

    cases = [(0.05, 0.06, 0.01, bm.AHEAD), (0.06, 0.06, 0.01, bm.AHEAD), (0.08, 0.06, 0.09, bm.INSIDE),
             (0.08, 0.06, 0.07, bm.BEHIND), (float("nan"), 0.06, 0.07, None), (0.08, None, 0.09, bm.INSIDE)]
    for *case, expect in cases:
        assert bm.verdicts(rows(*case)) == ({} if expect is None else dict.fromkeys(DISTRIBUTIONS, expect))
    no_floor = rows(0.08, 0.06, 1.0)
    del no_floor[bm.FLOOR]  # a floor left out is not a floor that allows everything
    assert set(bm.verdicts(no_floor).values()) == {bm.BEHIND}


def test_the_fact_checks_read_the_pooled_facts() -> None:
    real = {"acf_abs": [0.2, 0.1, 0.08, 0.06, 0.05], "acf_returns": [0.02] * 10, "kurtosis": {"10.0": 5.0}}
    assert set(bm.fact_checks(real, real).values()) == {True}
    bounce = {**real, "acf_returns": [-0.2, -0.08] + [0.0] * 8, "kurtosis": {"10.0": 7.0},
              "acf_abs": [0.2, 0.1, -0.01, 0.06, 0.05]}
    assert set(bm.fact_checks(bounce, real).values()) == {False}
    assert set(bm.fact_checks({**real, "acf_abs": [None] * 5, "kurtosis": {}}, real).values()) == {True, None}


def test_the_interval_comes_from_windows_not_events() -> None:
    """Windows that disagree widen the interval even when each holds many events."""
    rng = np.random.default_rng(2)
    real = [_samples(rng, n=2000) for _ in range(8)]
    steady = {bm.MODEL: [[_samples(rng, 0.2, 2000)] for _ in range(8)], bm.HAWKES: [[_samples(rng, 0.4, 2000)]
                                                                                  for _ in range(8)]}
    noisy = {bm.MODEL: [[_samples(rng, s, 2000)] for s in (-0.6, 0.9, -0.5, 0.8, 0.0, 0.7, -0.4, 0.6)],
             bm.HAWKES: steady[bm.HAWKES]}
    inst = ["a"] * 8
    width = [bm.measure(real, inst, s, [], [], n_boot=40, seed=0)[0]["a"][bm.MODEL]["returns_1s"]["KS"]
             for s in (steady, noisy)]
    assert width[1][2] - width[1][1] > 2 * (width[0][2] - width[0][1])


def test_windows_stay_inside_their_part_of_the_session() -> None:
    day = next(read(data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")))
    ts = day.table.column("ts").to_numpy()[~day.table.column("snapshot").to_numpy()]
    first, last = int(ts[0]), int(ts[-1])
    splits = SplitConfig()
    test = bm.starts(day, (splits.test_from, 1.0), 5, 3.0)
    val = bm.starts(day, (splits.val_from, splits.test_from), 5, 3.0)
    assert len(test) == len(val) == 5 and test == sorted(test)
    assert all(s >= first + splits.test_from * (last - first) and s + 180e9 <= last for s in test)
    assert all(s >= first + splits.val_from * (last - first) and s + 180e9 <= first + splits.test_from *
               (last - first) for s in val)
    assert bm.starts(day, (0.99, 1.0), 3, 60.0) == []  # a part shorter than one window holds none


def test_a_level_1_day_and_a_trades_only_day_are_skipped_with_why() -> None:
    from dataclasses import replace

    import pyarrow.compute as pc

    from tradefm.events import Instrument, Kind

    day = next(read(data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")))
    trades = day.table.filter(pc.equal(day.table.column("kind"), int(Kind.EXECUTE)))
    feed = replace(day, instrument=Instrument("TRD", "x", 10_000, 100), table=trades, notes={})
    touch = replace(day, instrument=Instrument("TOP", "x", 10_000, 100), notes={**day.notes, "levels": 1})
    skipped: dict[str, str] = {}
    plan, _ = bm._plan([day, feed, touch], SplitConfig(), bm.preset("demo"), skipped)
    assert [p.day.instrument.key for p in plan] == ["nasdaq/GOOG"]
    assert skipped == {"x/TRD 2012-06-21": "a trades-only feed: the baselines place orders in a book, and it has none",
                       "x/TOP 2012-06-21": "a level-1 file: its flow leaves out every event behind the touch"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A GOOG event store, a tokenizer fitted on its training part and an untrained tiny model, as a run folder."""
    from tradefm.cli import ingest

    out = tmp_path_factory.mktemp("run")
    ingest([str(data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"))], out / "events", "lobster", False,
           quiet=True)
    from tradefm.events import list_days, read_day

    day = read_day(list_days(out / "events")[0])
    flow = order_flow(day)
    tok = Tokenizer.fit({"nasdaq/GOOG": [flow]})
    torch.manual_seed(0)
    model = TradeFM(preset("tiny", layers=2, context=64))
    model.save_pretrained(out / "model" / "model", tok)
    return out


def test_the_benchmark_scores_every_source_on_real_windows_and_writes_its_files(tiny_run, capsys,
                                                                               monkeypatch) -> None:
    """Also: the baselines are fitted on the training part only, and every window lies in its held-out part."""
    from tradefm.baselines import hawkes, zero_intelligence

    fitted_until = []
    for module in (hawkes, zero_intelligence):
        def spy(days, *a, _fit=module.fit, **k):
            fitted_until.append(max(int(d.table.column("ts").to_numpy().max()) for d in days))
            return _fit(days, *a, **k)
        monkeypatch.setattr(module, "fit", spy)
    args = ["benchmark", str(tiny_run), "--preset", "demo", "--windows", "2", "--minutes", "0.5",
            "--rollouts", "1", "--out", str(tiny_run / "bench"), "--lob-bench", str(tiny_run / "lob_bench")]
    assert main(args) == 0
    from tradefm.events import list_days, read_day

    day = read_day(list_days(tiny_run / "events")[0])
    ts = day.table.column("ts").to_numpy()[~day.table.column("snapshot").to_numpy()]
    first, last, splits = int(ts[0]), int(ts[-1]), SplitConfig()
    assert len(fitted_until) == 2 and max(fitted_until) < first + splits.val_from * (last - first)
    saved = json.loads((tiny_run / "bench" / "benchmark.json").read_text())
    assert all(s >= first + splits.test_from * (last - first) for w in saved["windows"].values() for s in w)
    assert all(first + splits.val_from * (last - first) <= s < first + splits.test_from * (last - first)
               for w in saved["floor_windows"].values() for s in w)
    out = json.loads((tiny_run / "bench" / "benchmark.json").read_text())
    assert len(out["windows"]) == 1 and len(next(iter(out["windows"].values()))) == 2
    rows = out["rows"]["nasdaq/GOOG 2012-06-21"]
    assert set(rows) == {bm.MODEL, bm.HAWKES, bm.ZI, bm.DECODED, bm.FLOOR}
    short = {"returns_60s"}  # half-minute windows hold no 60 s return
    assert all(0 <= rows[s][m]["KS"][0] <= 1 for s in rows for m in DISTRIBUTIONS if m not in short)
    assert all(rows[s][m]["KS"][0] is None for s in rows for m in short)
    assert 0 < out["headline"]["nasdaq/GOOG 2012-06-21"][0] < 10
    assert set(out["facts"]) == {"real", bm.MODEL, bm.HAWKES, bm.ZI, bm.DECODED}
    assert out["facts"]["real"]["empty_side"] == 0  # a real GOOG book always shows both sides
    assert all(f["empty_side"] == 0 for f in out["facts"].values())  # and the depth beyond its window keeps theirs
    text = (tiny_run / "bench" / "benchmark.md").read_text()
    assert "mean KS ÷ Compound Hawkes" in text and (tiny_run / "bench" / "benchmark.png").stat().st_size > 0
    assert "rows ahead of Compound Hawkes or inside the real-vs-real floor" in text and "volatility clustering" in text
    assert set(out["verdicts"]["nasdaq/GOOG 2012-06-21"]) == set(DISTRIBUTIONS) - short
    assert main(args) == 0  # the same seed, the same numbers
    assert json.loads((tiny_run / "bench" / "benchmark.json").read_text()) == out
    _check_lob_bench_layout(tiny_run / "lob_bench", windows=2, rollouts=1)


def test_the_validation_part_is_scored_against_the_test_part_when_asked(tiny_run) -> None:
    """``--part val`` (choosing settings such as the sampling) scores the validation part's windows, the floor
    being the test part's; the sampling it used is in the report. A part that is neither is a one-line error."""
    args = ["benchmark", str(tiny_run), "--preset", "demo", "--windows", "1", "--minutes", "0.5", "--rollouts", "1",
            "--part", "val", "--repetition-penalty", "1", "--out", str(tiny_run / "val")]
    assert main(args) == 0
    from tradefm.events import list_days, read_day

    day = read_day(list_days(tiny_run / "events")[0])
    ts = day.table.column("ts").to_numpy()[~day.table.column("snapshot").to_numpy()]
    first, last, splits = int(ts[0]), int(ts[-1]), SplitConfig()
    out = json.loads((tiny_run / "val" / "benchmark.json").read_text())
    val_from, test_from = (first + f * (last - first) for f in (splits.val_from, splits.test_from))
    assert all(val_from <= s < test_from for w in out["windows"].values() for s in w)
    assert all(s >= test_from for w in out["floor_windows"].values() for s in w)
    assert out["config"]["part"] == "val" and out["config"]["sampling"]["repetition_penalty"] == 1.0
    assert "repetition penalty 1" in (tiny_run / "val" / "benchmark.md").read_text()
    with pytest.raises(InputError, match="part must be"):
        bm.preset("demo", part="train")


def _check_lob_bench_layout(root, windows: int, rollouts: int) -> None:
    """Files pair the way LOB-Bench's loader pairs them: by ``real_id_R`` and ``real_id_R_gen_id_G`` in the name,
    in its run folders (SOURCE/SYMBOL/DATE/data_real, data_gen, data_cond), the date as the name's second field,
    one orderbook row per message, ids that fit its int32. The floor is a source too: each scored window with one
    window of the other held-out part as its series."""
    for source in (bm.MODEL, bm.HAWKES, bm.ZI, bm.DECODED, bm.FLOOR):
        run = root / slug(source) / "GOOG" / "2012-06-21"
        real = sorted((run / "data_real").glob("*message*.csv"))
        assert len(real) == windows
        for path in real:
            rid = path.name.partition("real_id_")[2].split("_")[0].split(".")[0]
            assert path.name.split("_")[1] == "2012-06-21"
            assert len(list((run / "data_cond").glob(f"*message*real_id_{rid}.csv"))) == 1
            gen = sorted((run / "data_gen").glob(f"*message*real_id_{rid}_gen_id_*.csv"))
            books = sorted((run / "data_gen").glob(f"*orderbook*real_id_{rid}_gen_id_*.csv"))
            assert len(gen) == len(books) == (1 if source == bm.FLOOR else rollouts)
            for m, b in zip(gen, books, strict=True):
                rows = np.loadtxt(m, delimiter=",", ndmin=2)
                assert len(rows) == len(b.read_text().splitlines()) > 0
                assert rows[:, 2].max() < 2**31
                if source == bm.FLOOR:  # a window of the validation part, before the test part's
                    assert rows[0, 0] < np.loadtxt(path, delimiter=",", ndmin=2)[0, 0]


def test_with_splits_by_date_whole_days_are_scored_per_instrument(tiny_run, tmp_path, monkeypatch) -> None:
    """Splits by date (a temporal holdout: whole days): the test dates' windows pool per instrument, the floor is
    its validation days', and the baselines are fitted on its last training day, never a held-out one. Only the
    files it needs are read. (The GOOG day copied under later dates: the protocol's plumbing, not a result.)"""
    from tradefm.baselines import hawkes
    from tradefm.events import copy_day, list_days, read_day
    from tradefm.model import TradeFM as Model

    src = list_days(tiny_run / "events")[0]
    dates = ("2012-06-20", "2012-06-21", "2012-06-22", "2012-06-25")  # train, train, val, test
    for d in dates:
        copy_day(src, tmp_path / "events", date=d)
    splits = SplitConfig(val_from="2012-06-22", test_from="2012-06-25")
    paths = bm.days_to_read(list_days(tmp_path / "events"), splits)
    assert [p.parent.name for p in paths] == [f"date={d}" for d in dates[1:]]  # the last training day, val, test
    days = {d.date: d for d in map(read_day, paths)}
    fitted = []
    monkeypatch.setattr(hawkes, "fit", lambda ds, *a, _fit=hawkes.fit, **k: fitted.append(ds) or _fit(ds, *a, **k))
    model = Model.from_pretrained(tiny_run / "model" / "model").eval()
    tok = Tokenizer.load(tiny_run / "model" / "model" / "tokenizer.json")
    small = {"windows": 2, "minutes": 0.5, "rollouts": 1, "n_boot": 10}
    b = bm.run(model, tok, list(days.values()), splits, bm.preset("demo", **small), progress=False, say=print)

    def inside(date: str, starts: list[int]) -> bool:
        first, last = bm.session(days[date])
        return len(starts) == 2 and all(first < s and s + 30e9 <= last for s in starts)

    assert list(b.windows) == ["nasdaq/GOOG"] and inside("2012-06-25", b.windows["nasdaq/GOOG"])
    assert inside("2012-06-22", b.floor_windows["nasdaq/GOOG"])
    assert [[d.date for d in ds] for ds in fitted] == [["2012-06-21"]]
    assert set(b.rows["nasdaq/GOOG"]) == {bm.MODEL, bm.HAWKES, bm.ZI, bm.DECODED, bm.FLOOR}
    val = bm.run(model, tok, list(days.values()), splits, bm.preset("demo", part="val", **small), progress=False,
                 say=print)
    assert inside("2012-06-22", val.windows["nasdaq/GOOG"]) and inside("2012-06-25", val.floor_windows["nasdaq/GOOG"])


def test_a_model_folder_is_scored_by_the_splits_it_was_trained_on(tmp_path) -> None:
    """A model trained by ``tradefm train`` and given on its own (``benchmark OUT/model``): its splits come from
    the shards its train_config.json names, so a model trained on a temporal holdout is never scored on its own
    training days; without those shards' manifest, one line says the splits are unknown."""
    out = tmp_path / "run"
    (out / "model").mkdir(parents=True)
    (out / "model" / "tokenizer.json").write_text("{}")
    shards = tmp_path / "shards"
    shards.mkdir()
    manifest = {"splits": {"val_from": "2012-06-21", "test_from": "2012-06-22", "holdout_symbols": [],
                           "holdout_venues": []}, "events_dir": str(tmp_path / "events")}
    (shards / "manifest.json").write_text(json.dumps(manifest))
    (out / "train_config.json").write_text(json.dumps({"shards": str(shards), "out": str(out)}))
    for given in (out, out / "model"):
        found = bm.find_run(given)
        assert found.splits == SplitConfig(val_from="2012-06-21", test_from="2012-06-22")
        assert found.events == tmp_path / "events" and found.model == out / "model"
    from tradefm.env.core import _splits

    with pytest.raises(InputError, match="split by date"):
        _splits(out / "model")
    (shards / "manifest.json").unlink()
    with pytest.raises(InputError, match="splits to score by are unknown"):
        bm.find_run(out / "model")
