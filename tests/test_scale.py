"""Many days: the calibration sample against the exact bins, date splits, and the same output from 1 worker, 2
processes and Ray, on real LOBSTER days (copied under other dates where a test needs several)."""

from __future__ import annotations

import importlib.util
import json
import multiprocessing as mp
import platform
from pathlib import Path

import numpy as np
import pytest

from tradefm.cli import main
from tradefm.codec import CLEAR, DT_FLOOR, TAKE, FeatureConfig
from tradefm.events import copy_day, list_days, read_day, write_day
from tradefm.ingest import ingest
from tradefm.parallel import keep_freed_memory
from tradefm.shards import SplitConfig, fit_tokenizer, iter_flows, tokenize
from tradefm.tokenizer import (
    KEYS,
    NO_LIMIT,
    Calibration,
    DaySample,
    Reservoir,
    Sample,
    TokenizerConfig,
    _strictly_increasing,
    _tail_edges,
)
from tradefm.training import Windows

from .conftest import data_file

LEVEL1 = ("AAPL", "AMZN", "GOOG")
D0, D1, D2 = "2012-06-21", "2012-06-22", "2012-06-25"


def _zip(symbol: str) -> Path:
    return data_file(f"lobster/LOBSTER_SampleFile_{symbol}_2012-06-21_1.zip")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("events")
    ingest([str(_zip(s)) for s in LEVEL1], out, None, False, quiet=True)
    return out


@pytest.fixture(scope="module")
def dated(tmp_path_factory, store) -> dict[str, Path]:
    """GOOG and AMZN on three dates; the copies' sizes times 7, so that fitting on them would show in the bins.
    ``all``: every date; ``first``: the first date only."""
    root = tmp_path_factory.mktemp("dated")
    stores = {"all": root / "all", "first": root / "first"}
    for path in list_days(store):
        day = read_day(path)
        if day.instrument.symbol == "AAPL":
            continue
        for target in stores.values():
            write_day(day, target)
        for date in (D1, D2):
            copy = read_day(copy_day(path, root / "tmp", date=date))
            size = copy.table.column("size").to_numpy() * 7
            copy.table = copy.table.set_column(copy.table.schema.get_field_index("size"), "size", [size])
            write_day(copy, stores["all"])
    return stores


def _exact(store: Path, splits: SplitConfig) -> dict[str, np.ndarray]:
    """Every training-part value of every day, pooled: what the bins were cut on before sampling."""
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("depth", "volume", "dt", "level", "rv", "re")}
    for _, _, _, _, flow in iter_flows(store, FeatureConfig(), progress=False):
        part = splits.cut(flow.ts)["train"]
        cols["depth"].append(flow.depth_bps[part])
        cols["volume"].append(flow.log_volume[part])
        cols["dt"].append(np.log(flow.dt[part] + DT_FLOOR))
        cols["level"].append(flow.level_change[part])
        cols["rv"].append(np.log1p(flow.recent_volume[part]))
        cols["re"].append(np.log1p(flow.recent_events[part]))
    return {k: np.sort(np.concatenate(v)) for k, v in cols.items()}


def test_a_reservoir_holds_every_event_until_full_then_the_smallest_keys_in_any_order() -> None:
    rng = np.random.default_rng(0)
    days = [Sample(rng.integers(0, 2**62, n).astype(np.uint64), rng.normal(size=(n, 2))) for n in (300, 50, 700)]
    whole = {int(k): tuple(v) for d in days for k, v in zip(d.keys, d.values, strict=True)}
    for cap, slack in ((2000, None), (500, None), (40, None), (40, 40), (500, 1)):
        results = []
        for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
            r = Reservoir(cap, 2, slack)
            for i in order:
                r.add(days[i])
            got = r.sample()
            assert len(got) == min(cap, len(whole))
            rows = {int(k): tuple(v) for k, v in zip(got.keys, got.values, strict=True)}
            assert sorted(rows) == sorted(whole)[:cap]  # the cap smallest keys, each with its own values
            assert all(whole[k] == v for k, v in rows.items())
            results.append(sorted(rows.items()))
        assert results[0] == results[1] == results[2]


def test_bins_on_the_samples_are_the_exact_ones(store: Path) -> None:
    """The window (3 LOBSTER days, about 150k order events) fits in the default sample: the bins are exactly
    those of every pooled value."""
    tok = fit_tokenizer(store, progress=False)
    x = _exact(store, SplitConfig())
    assert len(x["depth"]) < TokenizerConfig().max_fit_values
    cfg = tok.config
    assert tok.level.edges == list(_strictly_increasing(np.quantile(x["level"], np.linspace(0, 1, 33)[1:-1])))
    assert tok.volume.edges == list(_tail_edges(x["volume"], 16, cfg.tail, equal_frequency=False))
    assert tok.dt.edges == list(_tail_edges(x["dt"], 16, cfg.tail, equal_frequency=False))
    q = np.linspace(0, 1, 4)[1:-1]
    assert tok.volume_regime.edges == list(_strictly_increasing(np.quantile(x["rv"], q)))
    assert tok.activity_regime.edges == list(_strictly_increasing(np.quantile(x["re"], q)))
    assert tok.depth.edges == list(_tail_edges(x["depth"], 16, cfg.tail, equal_frequency=True,
                                               sentinels=(CLEAR, TAKE)))
    assert len(tok.instruments) == 3


def _rank(x: np.ndarray, e: float) -> tuple[float, float]:
    return np.searchsorted(x, e, "left") / len(x), np.searchsorted(x, e, "right") / len(x)


def test_a_sampled_window_gives_bins_within_a_percent_of_rank(store: Path) -> None:
    """With a third of the window sampled (50,000 of about 150,000 events) every edge is, in the exact pooled
    values, within 1% of rank of the exact edge. Why 1%: a uniform sample of m events gives a quantile whose rank
    has a standard deviation of at most sqrt(0.25 / m) = 0.22% here; 1% is over four of them. At the default
    2,000,000 it is 0.035%."""
    exact, sampled = fit_tokenizer(store, progress=False), fit_tokenizer(
        store, config=TokenizerConfig(max_fit_values=50_000), progress=False)
    assert sampled.hash != exact.hash  # it did sample
    x = _exact(store, SplitConfig())
    eps = 0.01
    # equal-frequency bins: each edge; equal-width bins: the two tail quantiles they are cut between
    checks = {"depth": (x["depth"], slice(None)), "level": (x["level"], slice(None)),
              "volume_regime": (x["rv"], slice(None)), "activity_regime": (x["re"], slice(None)),
              "volume": (x["volume"], [0, -1]), "dt": (x["dt"], [0, -1])}
    for name, (values, which) in checks.items():
        a, b = np.asarray(getattr(exact, name).edges), np.asarray(getattr(sampled, name).edges)
        assert len(a) == len(b), name
        for ea, eb in zip(a[which], b[which], strict=True):
            (la, ha), (lb, hb) = _rank(values, ea), _rank(values, eb)
            assert lb - eps <= ha and la <= hb + eps, (name, ea, eb)
    for key, own in exact.instruments.items():
        assert sampled.instruments[key]["tier"] == own["tier"]
        for field in ("volume_regime_edges", "activity_regime_edges"):
            assert np.allclose(sampled.instruments[key][field], own[field], rtol=0.01)


def test_date_splits_keep_held_out_dates_out_of_fitting(dated: dict[str, Path], tmp_path: Path) -> None:
    by_date = SplitConfig(val_from=D1, test_from=D2)
    tok = fit_tokenizer(dated["all"], by_date, progress=False, workers=2)
    # the same tokenizer as with the held-out dates absent; and they would have changed it (sizes x 7)
    assert tok.hash == fit_tokenizer(dated["first"], by_date, progress=False).hash
    assert tok.hash != fit_tokenizer(dated["all"], SplitConfig(val_from="2013-01-01", test_from="2013-01-01"),
                                     progress=False).hash
    tok_path = tok.save(tmp_path / "tok.json")
    out = tmp_path / "shards"
    assert main(["tokenize", str(dated["all"]), "--tokenizer", str(tok_path), "--out", str(out),
                 "--val-from", D1, "--test-from", D2, "--workers", "2"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert SplitConfig.from_manifest(m["splits"]) == by_date
    dates = {split: {f["date"] for f in m["files"] if f["split"] == split} for split in ("train", "val", "test")}
    assert dates == {"train": {D0}, "val": {D1}, "test": {D2}}
    assert len(m["files"]) == 6  # whole days: one shard each
    # training reads the train shards only: the first date's
    windows = Windows(out, "train", 128, 0)
    assert len(windows.shards) == 2
    assert sum(len(t) for t, _ in windows.shards) == m["counts"]["train"]
    first = tokenize(dated["first"], tok, tmp_path / "first", by_date, progress=False)
    assert first["counts"]["train"] == m["counts"]["train"]


def test_the_calibration_window_is_the_first_dates(dated: dict[str, Path]) -> None:
    trains_two = SplitConfig(val_from=D2, test_from=D2)  # D0 and D1 are training dates
    one = fit_tokenizer(dated["all"], trains_two, days=1, progress=False)
    assert one.hash == fit_tokenizer(dated["first"], trains_two, progress=False).hash
    assert one.hash != fit_tokenizer(dated["all"], trains_two, days=2, progress=False).hash


def test_mixed_or_reversed_split_bounds_are_refused(store: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="both"):
        SplitConfig(val_from=0.7, test_from=D2)
    with pytest.raises(ValueError, match="after"):
        SplitConfig(val_from=D2, test_from=D1)
    assert main(["fit-tokenizer", str(store), "--out", str(tmp_path / "t.json"), "--val-from", D1]) == 2
    assert "both" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit-tokenizer", str(store), "--out", str(tmp_path / "t.json"), "--workers", "0"])
    assert "--workers" in capsys.readouterr().err


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _pipeline(root: Path, workers: str) -> dict[str, bytes]:
    sources = [str(_zip("GOOG")), str(_zip("AMZN")), str(_zip("GOOG"))]  # a symbol-day twice: one is kept
    assert main(["ingest", *sources, "--out", str(root / "events"), "--workers", workers]) == 0
    assert main(["fit-tokenizer", str(root / "events"), "--out", str(root / "tok.json"), "--workers", workers]) == 0
    assert main(["tokenize", str(root / "events"), "--tokenizer", str(root / "tok.json"), "--out",
                 str(root / "shards"), "--workers", workers]) == 0
    files = _files(root)
    m = json.loads(files.pop("shards/manifest.json"))
    m.pop("events_dir")
    return {**files, "manifest": json.dumps(m).encode()}


def test_two_processes_write_the_same_bytes_as_one(tmp_path: Path) -> None:
    one, two = _pipeline(tmp_path / "one", "1"), _pipeline(tmp_path / "two", "2")
    assert len(list((tmp_path / "one" / "events").rglob("events.parquet"))) == 2
    assert not [p for p in (tmp_path / "two").rglob("*") if p.name.startswith(".")]  # nothing staged is left
    assert one.keys() == two.keys() and all(one[k] == two[k] for k in one)


def _faults_of_reused_arrays() -> int:
    """In a forked process: page faults of 20 arrays of 3 MiB made and freed in turn, after the first."""
    import resource

    keep_freed_memory()
    np.ones(3 << 17)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        np.ones(3 << 17)  # 3 MiB of float64, every page written
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc (its mallopt)")
def test_a_task_process_reuses_the_arrays_it_frees() -> None:
    fork = mp.get_context("fork")
    with fork.Pool(1) as pool:  # a process of its own: this one's malloc settings stay as they are
        faults = pool.apply(_faults_of_reused_arrays)
    assert faults < 100  # with glibc's defaults the 3 MiB (768 pages) fault in again at least once


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (pip install 'tradefm[ray]'): the Ray path is not tested")
def test_ray_maps_the_same_per_day_function(tmp_path: Path) -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        one, on_ray = _pipeline(tmp_path / "one", "1"), _pipeline(tmp_path / "ray", "ray")
    finally:
        ray.shutdown()
    assert one.keys() == on_ray.keys() and all(one[k] == on_ray[k] for k in one)


def test_rows_left_out_once_the_sample_is_full_change_nothing(dated: dict[str, Path]) -> None:
    """A day sent out after the sample filled keeps only the rows that can still enter it: less travels back
    from a worker, and the calibration is the one it would be with every row."""
    from tradefm.shards import _calibration_sample

    shared = (FeatureConfig(), SplitConfig(), 20_000)
    limited, full = Calibration(20_000), Calibration(20_000)
    sent = []
    for path in list_days(dated["all"]):
        day = _calibration_sample(shared, (path, limited.limits()))
        limited.add(day)
        full.add(_calibration_sample(shared, (path, None)))
        sent.append(len(day.sample) + len(day.own))
    assert min(sent) < max(sent) / 2  # later days sent less
    assert limited.finish() == full.finish() and limited.regime_edges == full.regime_edges
    assert np.array_equal(np.sort(limited.pooled.sample().keys), np.sort(full.pooled.sample().keys))


@pytest.mark.parametrize("margin", [0.3, 1.5])
def test_a_planned_cut_never_changes_the_calibration(dated: dict[str, Path], monkeypatch, margin: float) -> None:
    """Cuts planned from the files' row counts leave most rows in the workers; one that keeps too few (a
    margin under 1 always does) is found and its sample taken again, so the bins are those of no plan."""
    import tradefm.tokenizer as tk

    cfg = TokenizerConfig(max_fit_values=20_000)
    monkeypatch.setattr(tk, "PLANNED_MARGIN", 1e12)  # every share >= 1: no plan
    unplanned = fit_tokenizer(dated["all"], config=cfg, progress=False)
    monkeypatch.setattr(tk, "PLANNED_MARGIN", margin)
    refits, exact = [], []
    refit_own, pooled_exact = tk.Calibration.refit_own, tk.Calibration.pooled_exact
    monkeypatch.setattr(tk.Calibration, "refit_own", lambda self, key, days: refits.append(key) or
                        refit_own(self, key, days))
    monkeypatch.setattr(tk.Calibration, "pooled_exact", lambda self: exact.append(pooled_exact(self)) or exact[-1])
    planned = fit_tokenizer(dated["all"], config=cfg, progress=False)
    assert planned.hash == unplanned.hash and planned.instruments == unplanned.instruments
    if margin < 1:
        assert exact[0] is False and len(refits) == 2  # the pooled plan and both own plans fell short
    else:
        assert exact == [True] and not refits


def test_planned_cuts_take_a_share_of_the_expected_rows() -> None:
    empty = Sample(np.zeros(0, dtype=np.uint64), np.zeros((0, 2)))
    cal = Calibration(1_000)
    cal.add(DaySample("W", 0.0, empty, empty, rows=0), stored_rows=50)  # a day with no training events plans nothing
    assert cal.limits(window_rows=1_000).pooled_plan == NO_LIMIT
    cal.add(DaySample("X", 1.0, empty, empty, rows=10), stored_rows=1)  # ten events a stored row
    limits = cal.limits(window_rows=1_000, instrument_rows=None)
    assert limits.own_plan == NO_LIMIT and limits.pooled_plan == pytest.approx(KEYS * 1.5 * 1_000 / 10_000, rel=1e-9)
    assert cal.limits(window_rows=100, instrument_rows=100).pooled_plan == NO_LIMIT  # 1,000 expected: keep all
