"""The pooled held-out benchmark: realism measured over many windows, with intervals that respect them.

One window of minutes holds a few dozen independent 10 s returns, so one window decides nothing. Here:

- **windows**: ``windows`` start times evenly spread over the test part of every evaluable day (from the split's
  ``test_from`` to the session's end less the window), each ``minutes`` long; with splits by date, over every
  whole day of the test dates, pooled per instrument;
- **sources** per window: the model's closed-loop rollouts, Compound Hawkes and zero intelligence fitted on the
  day's training part (what the model learned from; with splits by date the instrument's last training day), and
  the day's real tokens decoded closed loop (what a perfect model would give), ``rollouts`` of each;
- **distances** per metric between the pooled real windows and each source's pooled rollouts (KS and W1 on
  :data:`~.metrics.DISTRIBUTIONS`, L1 on :data:`~.metrics.L1_SCORES`), per instrument and over all of them;
- **intervals** from a bootstrap over windows: the same resampled windows for the real flow and every source
  (within each instrument), so a window's noise moves both sides of a comparison together;
- **the floor** by the same protocol: as many windows of the validation part (also held out of training) against
  the test part's real windows (with splits by date, of the instrument's validation days);
- ``part="val"`` scores the validation part instead (the floor then being the test part's windows), so that
  settings such as the sampling are chosen without looking at the test part;
- **the headline**: the model's mean KS over the distribution rows divided by Compound Hawkes', with its
  interval from the same resamples, beside the same ratio for the floor (what real flow from another part of the
  day scores: a ratio a generator need not beat, since the scored windows disagree with any other real flow as
  much); and row by row, whether the model is ahead of Compound Hawkes or inside the
  floor's interval, and which stylized facts each source shows.

A day whose book file shows only the touch (LOBSTER level 1) is skipped: its flow leaves out every event behind
the touch, so it says nothing about depth. So is a trades-only day (Binance's trades): no book, no baselines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..events import EventDay, InputError, read_json
from ..generation.rollout import Sampling
from ..runs import model_folder
from ..shards import SplitConfig, manifest_splits, run_manifest
from .metrics import DISTRIBUTIONS, L1_SCORES, LABELS, book_series, l1_bins, samples, session, window
from .stylized import StylizedFacts, order_sign_acf, stylized_facts

MODEL, HAWKES, ZI, DECODED, FLOOR = "TradeFM", "Compound Hawkes", "zero intelligence", "real tokens, decoded", \
    "real vs real"
GENERATORS = (MODEL, HAWKES, ZI)
ALL = "all"


PARTS = ("test", "val")  # the part scored; the floor compares it with the other one


@dataclass(frozen=True)
class BenchmarkConfig:
    """How many windows, how long, how many rollouts of each source per window, and the bootstrap's size."""

    windows: int = 12  # per day, in the part scored
    minutes: float = 5.0
    rollouts: int = 4
    n_boot: int = 200
    seed: int = 0
    part: str = "test"  # the part scored; "val" chooses settings (sampling, ...) without looking at the test part
    sampling: Sampling = field(default_factory=Sampling)  # the model's rollouts
    dtype: str = "float32"  # the model's weights, as it was run (recorded by run)

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise InputError(f"part must be one of {', '.join(PARTS)}, not {self.part!r}")


PRESETS = {
    "demo": BenchmarkConfig(windows=2, minutes=2.0, rollouts=2, n_boot=50),  # inside the demo's time budget
    "standard": BenchmarkConfig(),
    "full": BenchmarkConfig(windows=24, minutes=10.0, rollouts=8, n_boot=500),
}


def preset(name: str, **overrides: object) -> BenchmarkConfig:
    if name not in PRESETS:
        raise InputError(f"unknown benchmark preset {name!r}: choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


@dataclass(frozen=True)
class RunFolder:
    """What a benchmark takes from a run folder: the model, the splits its shards were cut by, the event store."""

    model: Path  # config.json, model.safetensors and tokenizer.json
    splits: SplitConfig
    events: Path


def find_run(run: str | Path, events: str | Path | None = None) -> RunFolder:
    """A run folder as the demo or a training run leaves it (``model/model`` or ``model``, ``shards/manifest.json``,
    ``events``), or a model folder itself; the splits are those of the shards it was trained on
    (:func:`~tradefm.shards.run_manifest`), the default ones only without any, ``events`` overriding the store."""
    run = Path(run)
    model, _ = model_folder(run)
    manifest = run_manifest(run) or (run_manifest(model) if model != run else None)
    splits, store = SplitConfig(), run / "events"
    if manifest is not None:
        m = read_json(manifest, "a shard manifest")
        splits = manifest_splits(manifest, m)
        store = store if store.exists() else Path(m.get("events_dir", store))
    return RunFolder(model, splits, Path(events) if events else store)


# ---------------------------------------------------------------- windows


def starts(day: EventDay, part: tuple[float, float], n: int, minutes: float) -> list[int]:
    """``n`` window starts evenly spread over the fraction ``part`` of the day's session, each window inside it
    (none when the part is shorter than one window)."""
    first, last = session(day)
    a, b = first + part[0] * (last - first), first + part[1] * (last - first) - minutes * 60e9
    if b <= a or n < 1:
        return []
    return [int(x) for x in np.linspace(a, b, n + 2)[1:-1]] if n > 1 else [int((a + b) / 2)]


def days_to_read(paths: Sequence[Path], splits: SplitConfig) -> list[Path]:
    """The files of a store (:func:`~tradefm.events.list_days`) that :func:`run` needs: all of them with splits by
    fractions of the day; with splits by date the held-out dates and each instrument's last training day, so a
    year of training days stays on disk."""
    if not splits.by_date:
        return list(paths)
    where = [dict(p.split("=", 1) for p in Path(path).parent.parts if "=" in p) for path in paths]
    if any(not {"venue", "symbol", "date"} <= set(w) for w in where):
        return list(paths)  # not a store's layout: read them all
    last: dict[tuple[str, str], str] = {}
    for w in where:
        if w["date"] < splits.val_from:
            key = (w["venue"], w["symbol"])
            last[key] = max(last.get(key, ""), w["date"])
    return [path for path, w in zip(paths, where, strict=True)
            if w["date"] >= splits.val_from or last[(w["venue"], w["symbol"])] == w["date"]]


# ---------------------------------------------------------------- distances with a window bootstrap


def _stats_of(metric: str) -> tuple[str, ...]:
    return tuple(s for s, names in (("KS", DISTRIBUTIONS), ("W1", DISTRIBUTIONS), ("L1", L1_SCORES))
                 if metric in names)


METRICS = tuple(dict.fromkeys(DISTRIBUTIONS + L1_SCORES))


def _tagged(per_window: Sequence[Sequence[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The finite values of every window's arrays, and the window each came from."""
    values, windows = [], []
    for w, arrays in enumerate(per_window):
        for a in arrays:
            a = np.asarray(a, np.float64)
            a = a[np.isfinite(a)]
            values.append(a)
            windows.append(np.full(len(a), w))
    if not values:
        return np.zeros(0), np.zeros(0, dtype=int)
    return np.concatenate(values), np.concatenate(windows)


class _Pooled:
    """One metric of the real windows and of one source's windows on their common grid of values, each value
    tagged with its window. A set of windows drawn with replacement is a weight per window, so every draw's
    pooled KS, W1 and L1 are weighted counts on the grid: exact, and with no sorting per draw."""

    def __init__(self, real: tuple[np.ndarray, np.ndarray], gen: tuple[np.ndarray, np.ndarray],
                 which: Sequence[str]) -> None:
        (self.r, self.wr), (self.g, self.wg) = real, gen
        self.which = which
        self.grid = np.unique(np.concatenate([self.r, self.g]))
        self.pr, self.pg = np.searchsorted(self.grid, self.r), np.searchsorted(self.grid, self.g)
        self.gaps = np.diff(self.grid)
        self.scale: dict[str, tuple[float, np.ndarray | None, np.ndarray | None, int]] = {}

    def fix(self, group: str, real_w: np.ndarray, gen_w: np.ndarray) -> None:
        """A group's normalisation (its real values' standard deviation, for W1) and its L1 bins (on its pooled
        values), kept for every draw of that group, as a bootstrap over events keeps them."""
        r, g = self.r[real_w[self.wr] > 0], self.g[gen_w[self.wg] > 0]
        sd = float(r.std()) if len(r) and r.std() > 0 else 1.0
        br = bg = None
        nb = 0
        if "L1" in self.which and len(r) and len(g):
            edges = l1_bins(np.concatenate([r, g]))
            nb = len(edges) - 1
            br = np.clip(np.searchsorted(edges, self.r, side="right") - 1, 0, nb - 1)
            bg = np.clip(np.searchsorted(edges, self.g, side="right") - 1, 0, nb - 1)
        self.scale[group] = (sd, br, bg, nb)

    def evaluate(self, group: str, real_w: np.ndarray, gen_w: np.ndarray) -> dict[str, float]:
        """KS, W1 and L1 of the pooled windows weighted ``real_w`` (real) and ``gen_w`` (this source)."""
        cr = np.bincount(self.pr, weights=real_w[self.wr], minlength=len(self.grid))
        cg = np.bincount(self.pg, weights=gen_w[self.wg], minlength=len(self.grid))
        nr, ng = cr.sum(), cg.sum()
        if nr <= 0 or ng <= 0:
            return dict.fromkeys(self.which, np.nan)
        diff = np.abs(np.cumsum(cr) / nr - np.cumsum(cg) / ng)
        sd, br, bg, nb = self.scale[group]
        out = {}
        if "KS" in self.which:
            out["KS"] = float(diff.max())
        if "W1" in self.which:  # the integral of |F - G| over values in units of the real standard deviation
            out["W1"] = float((diff[:-1] * self.gaps).sum()) / sd
        if "L1" in self.which:
            hr = np.bincount(br, weights=real_w[self.wr], minlength=nb) / nr
            hg = np.bincount(bg, weights=gen_w[self.wg], minlength=nb) / ng
            out["L1"] = 0.5 * float(np.abs(hr - hg).sum())
        return out


def mean_ks(d: Mapping[str, Mapping[str, float]], rows: Sequence[str] = DISTRIBUTIONS) -> float:
    """The headline's score: the mean KS over the distribution rows (those with a value: windows shorter than a
    horizon have no returns at it)."""
    v = np.array([d[m]["KS"] for m in rows], np.float64)
    return float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else float("nan")


def ratio(a: Mapping[str, Mapping[str, float]], b: Mapping[str, Mapping[str, float]]) -> float:
    """Mean KS of ``a`` over that of ``b``, over the rows both have."""
    rows = [m for m in DISTRIBUTIONS if np.isfinite(a[m]["KS"]) and np.isfinite(b[m]["KS"])]
    return mean_ks(a, rows) / mean_ks(b, rows) if rows else float("nan")


CAP_PACE, CAP_MIN, CAP_MAX = 10, 10_000, 200_000


def step_cap(real: EventDay) -> int:
    """The most steps a model's rollout of a window may take: ``CAP_PACE`` times the real window's market
    events (within ``CAP_MIN``-``CAP_MAX``). A model far faster than the market (an undertrained one) would
    otherwise run for hours on a fast feed; the rollouts it cuts are counted."""
    n = int((~real.table.column("snapshot").to_numpy()).sum())
    return int(min(CAP_MAX, max(CAP_MIN, CAP_PACE * n)))


@dataclass
class Benchmark:
    """What a benchmark run measured; ``rows[group][source][metric][stat] = (value, low, high)``."""

    config: BenchmarkConfig
    windows: dict[str, list[int]]  # instrument -> test-part window starts (ns)
    floor_windows: dict[str, list[int]]
    rows: dict[str, dict[str, dict[str, dict[str, tuple[float, float, float]]]]]
    headline: dict[str, tuple[float, float, float]]  # group -> TradeFM mean KS / Compound Hawkes mean KS
    mean_ks: dict[str, dict[str, tuple[float, float, float]]]  # group -> source -> mean KS
    facts: dict[str, dict[str, object]] = field(default_factory=dict)  # source -> stylized facts (pooled)
    skipped: dict[str, str] = field(default_factory=dict)  # day -> why
    floor_headline: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # the floor's, as headline
    cut_short: int = 0  # TradeFM rollouts stopped by the step cap (:func:`step_cap`) before the window's end

    def to_json(self) -> dict:
        """Plain JSON: intervals as [value, low, high], a missing value (no sample) as null."""
        return _plain({"config": asdict(self.config), "windows": self.windows, "floor_windows": self.floor_windows,
                       "headline": self.headline, "floor_headline": self.floor_headline, "mean_ks": self.mean_ks,
                       "rows": self.rows,
                       "verdicts": {g: verdicts(r) for g, r in self.rows.items() if MODEL in r and HAWKES in r},
                       "facts": self.facts, "skipped": self.skipped, "cut_short": self.cut_short})


def _plain(x: object) -> object:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, float | np.floating):
        return float(x) if np.isfinite(x) else None
    return x


def _groups(inst: Sequence[str]) -> dict[str, np.ndarray]:
    """Window indices per instrument, and all of them (ALL)."""
    out = {k: np.flatnonzero(np.asarray(inst) == k) for k in dict.fromkeys(inst)}
    return {**out, ALL: np.arange(len(inst))} if len(out) > 1 else {**out}


def _resample(idx: np.ndarray, inst: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """``idx`` resampled with replacement within each instrument: a draw keeps the pooled mix of instruments."""
    if not len(idx):
        return idx
    keys = np.asarray(inst)[idx]
    return np.concatenate([rng.choice(idx[keys == k], int((keys == k).sum())) for k in dict.fromkeys(keys)])


def _interval(value: float, boots: Sequence[float]) -> tuple[float, float, float]:
    b = np.asarray(boots, np.float64)
    b = b[np.isfinite(b)]
    if not len(b):
        return (float(value), float("nan"), float("nan"))
    lo, hi = np.quantile(b, [0.025, 0.975])
    return (float(value), float(lo), float(hi))


def measure(real: Sequence[Mapping], inst: Sequence[str], sources: Mapping[str, Sequence[Sequence[Mapping]]],
            floor_real: Sequence[Mapping], floor_inst: Sequence[str], n_boot: int, seed: int,
            progress: bool = False) -> tuple[dict, dict, dict, dict]:
    """Point values and window-bootstrap intervals, per group (each instrument, and ALL): of every (source,
    metric, stat), of each source's mean KS, of the headline ratio, and of the floor's ratio to Compound Hawkes.
    ``real[i]`` holds the samples of test window i, ``sources[name][i]`` the samples of each of its rollouts,
    ``floor_real[j]`` those of validation window j. Each draw resamples windows with replacement within each
    instrument; the real flow and every source take the same windows."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng([seed, 16])
    n, nf = len(real), len(floor_real)
    groups, floor_groups = _groups(inst), _groups(floor_inst) if nf else {}
    pooled_: dict[str, dict[str, _Pooled]] = {}
    for m in METRICS:
        r = _tagged([[w[m]] for w in real])
        for name, per_window in sources.items():
            pooled_.setdefault(name, {})[m] = _Pooled(r, _tagged([[s[m] for s in days] for days in per_window]),
                                                      _stats_of(m))
        if nf:
            pooled_.setdefault(FLOOR, {})[m] = _Pooled(r, _tagged([[w[m]] for w in floor_real]), _stats_of(m))
    rows: dict = {}
    means: dict = {}
    headline: dict = {}
    floor_headline: dict = {}
    bar = tqdm(total=len(groups) * (n_boot + 1), desc="bootstrap", unit="draw", disable=not progress)
    for group, idx in groups.items():
        fidx = floor_groups.get(group, np.zeros(0, dtype=int))
        names = [name for name in pooled_ if name != FLOOR or len(fidx)]

        def weights(pick: np.ndarray, fpick: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return np.bincount(pick, minlength=n).astype(np.float64), \
                np.bincount(fpick, minlength=nf).astype(np.float64) if nf else np.zeros(0)

        w, fw = weights(idx, fidx)
        for name in names:
            for m in METRICS:
                pooled_[name][m].fix(group, w, fw if name == FLOOR else w)

        def draw(w: np.ndarray, fw: np.ndarray, group: str = group, names: list[str] = names) -> dict:
            return {name: {m: pooled_[name][m].evaluate(group, w, fw if name == FLOOR else w) for m in METRICS}
                    for name in names}

        point = draw(w, fw)
        bar.update()
        boots = []
        for _ in range(n_boot):
            boots.append(draw(*weights(_resample(idx, inst, rng), _resample(fidx, floor_inst, rng))))
            bar.update()
        rows[group] = {name: {m: {s: _interval(point[name][m][s], [b[name][m][s] for b in boots])
                                  for s in _stats_of(m)} for m in METRICS} for name in point}
        means[group] = {name: _interval(mean_ks(point[name]), [mean_ks(b[name]) for b in boots]) for name in point}
        for name, into in ((MODEL, headline), (FLOOR, floor_headline)):  # the model's ratio, and the floor's
            if name in point and HAWKES in point:
                into[group] = _interval(ratio(point[name], point[HAWKES]), [ratio(b[name], b[HAWKES]) for b in boots])
    bar.close()
    return rows, means, headline, floor_headline


# ---------------------------------------------------------------- the run


def _facts(days: Sequence[EventDay], series: Sequence[Mapping[str, np.ndarray]]) -> dict[str, object]:
    """The stylized facts of one source's pooled windows (``series``: their :func:`~.metrics.book_series`), and
    how often its book had a side empty (the real books of these windows never do; one that thins out does)."""
    f: StylizedFacts = stylized_facts(series)
    events = sum(len(x["mid"]) for x in series)
    empty = sum(int(np.isnan(x["mid"]).sum()) for x in series) / events if events else float("nan")
    return {"kurtosis": {str(k): v for k, v in f.kurtosis.items()}, "acf_returns": f.acf_returns[:20].tolist(),
            "acf_abs": f.acf_abs[:20].tolist(), "hill": f.hill, "order_sign_acf": order_sign_acf(days).tolist(),
            "empty_side": empty, "n_returns": f.n_returns}


class _Planned(NamedTuple):
    name: str  # the group its windows pool in: the symbol-day, or with date splits the instrument
    day: EventDay
    starts: list[int]
    fit: EventDay | None = None  # what the baselines are fitted on (scored days only)


def _plan(days: Sequence[EventDay], splits: SplitConfig, cfg: BenchmarkConfig, skipped: dict[str, str]
          ) -> tuple[list[_Planned], list[_Planned]]:
    """The scored windows and the floor's. Split by fractions of the day: each day's ``cfg.part`` against its
    other part, the baselines fitted on its training part. Split by date: the whole days of ``cfg.part`` pooled per
    instrument against its days of the other part, the baselines of each scored day fitted on the instrument's
    last training day before it (held-out symbols and venues have none: they are skipped)."""
    other = next(p for p in PARTS if p != cfg.part)
    deep = []
    for day in days:
        if day.levels == 1:
            skipped[f"{day.instrument.key} {day.date}"] = \
                "a level-1 file: its flow leaves out every event behind the touch"
        elif day.trades_only:
            skipped[f"{day.instrument.key} {day.date}"] = \
                "a trades-only feed: the baselines place orders in a book, and it has none"
        else:
            deep.append(day)
    plan, floor = [], []
    if not splits.by_date:
        parts = {"test": (splits.test_from, 1.0), "val": (splits.val_from, splits.test_from)}
        for day in deep:
            name = f"{day.instrument.key} {day.date}"
            scored, versus = (starts(day, parts[p], cfg.windows, cfg.minutes) for p in (cfg.part, other))
            if not scored:
                skipped[name] = f"its {cfg.part} part is shorter than one window of {cfg.minutes:g} minutes"
                continue
            first, last = session(day)
            plan.append(_Planned(name, day, scored, window(day, first, int(first + splits.val_from * (last - first)))))
            floor.append(_Planned(name, day, versus))
        return plan, floor
    trained: dict[str, list[EventDay]] = {}
    for day in sorted(deep, key=lambda d: d.date):
        inst = day.instrument
        name, part = inst.key, splits.whole_day(inst.venue, inst.symbol, day.date)
        if part == "train":
            trained.setdefault(name, []).append(day)
        elif part in (cfg.part, other):
            scored = starts(day, (0.0, 1.0), cfg.windows, cfg.minutes)
            if part == other:
                floor.append(_Planned(name, day, scored))
            elif not scored:
                skipped[f"{name} {day.date}"] = f"shorter than one window of {cfg.minutes:g} minutes"
            elif not trained.get(name):
                skipped[f"{name} {day.date}"] = "no training day of the instrument before it to fit the baselines on"
            else:
                plan.append(_Planned(name, day, scored, trained[name][-1]))
    return plan, floor


def run(model, tok, days: Sequence[EventDay], splits, cfg: BenchmarkConfig, progress: bool = True,
        say: Callable[[str], None] = print, lob_bench: str | Path | None = None) -> Benchmark:
    """Every source on every window of every evaluable day in ``days`` (see the module's docstring), for a
    model (:class:`~tradefm.model.TradeFM`) and its tokenizer, with the split (a
    :class:`~tradefm.shards.SplitConfig`) the model was trained with. With ``lob_bench``, every window is also
    written there in LOB-Bench's layout (:func:`~tradefm.generation.output.write_lob_bench`), so its own code
    can score the same rollouts; the floor's windows too, as the source "real vs real" (the i-th floor window of
    an instrument as the one series generated for its i-th scored window)."""
    from tqdm.auto import tqdm

    from ..baselines import hawkes, zero_intelligence
    from ..generation.output import write_lob_bench
    from ..generation.rollout import decode_real, generate

    cfg = replace(cfg, dtype=str(next(model.parameters()).dtype).removeprefix("torch."))

    length = int(cfg.minutes * 60e9)
    real, inst, floor_real, floor_inst = [], [], [], []
    sources: dict[str, list[list[dict]]] = {MODEL: [], HAWKES: [], ZI: [], DECODED: []}
    kept: dict[str, list[EventDay]] = {"real": [], **{name: [] for name in sources}}  # for the stylized facts
    books: dict[str, list[dict]] = {name: [] for name in kept}  # their replayed books, one replay per day

    def keep(source: str, d: EventDay) -> dict[str, np.ndarray]:
        series = book_series(d)
        kept[source].append(d)
        books[source].append(series)
        return samples(d, series)

    windows: dict[str, list[int]] = {}
    floor_windows: dict[str, list[int]] = {}
    written: dict[str, list[tuple[int, EventDay, int]]] = {}  # per instrument, its scored windows in LOB-Bench's
    skipped: dict[str, str] = {}
    plan, floor_plan = _plan(days, splits, cfg, skipped)
    scored_days, cut = 0, 0
    bar = tqdm(total=sum(len(p.starts) for p in plan), desc="windows", unit="window", disable=not progress)
    for p in plan:
        name, day, label = p.name, p.day, f"{p.name} {p.day.date}" if splits.by_date else p.name
        try:
            generate(model, tok, day, p.starts[0], 1, 1, cfg.seed)  # scales and start checked before any fitting
        except ValueError as e:
            skipped[label] = str(e)
            bar.update(len(p.starts))
            continue
        hp, zp = hawkes.fit([p.fit]), zero_intelligence.fit([p.fit])
        before = len(windows.setdefault(name, []))  # the group's windows so far: each window has its own seed
        windows[name].extend(p.starts)
        scored_days += 1
        for w, start in enumerate(p.starts, before):
            seed = cfg.seed + 1_000 * w
            k = range(cfg.rollouts)
            real_window = window(day, start, start + length)
            made = {MODEL: generate(model, tok, day, start, step_cap(real_window), cfg.rollouts, seed, cfg.sampling,
                                    duration_s=cfg.minutes * 60),
                    HAWKES: [hawkes.generate(hp, day, start, cfg.minutes * 60, seed + r) for r in k],
                    ZI: [zero_intelligence.generate(zp, day, start, cfg.minutes * 60, seed + r) for r in k],
                    DECODED: decode_real(tok, day, start, cfg.minutes * 60, cfg.rollouts, seed)}
            cut += sum(bool(d.notes.get("cut_short")) for d in made[MODEL])
            real.append(keep("real", real_window))
            inst.append(name)
            if lob_bench is not None:
                write_lob_bench(lob_bench, len(real) - 1, kept["real"][-1], window(day, start - length, start), made,
                                day.levels)
                written.setdefault(name, []).append((len(real) - 1, day, start))
            for source, rollouts in made.items():
                sources[source].append([keep(source, d) for d in rollouts])
            bar.update()
    for p in floor_plan:
        if p.name not in windows:
            continue  # no scored windows to compare with
        before = len(floor_windows.setdefault(p.name, []))
        floor_windows[p.name].extend(p.starts)
        for w, start in enumerate(p.starts, before):
            other = window(p.day, start, start + length)
            floor_real.append(samples(other))
            floor_inst.append(p.name)
            if lob_bench is not None and w < len(written[p.name]):  # its scored twin, with the floor as its rollout
                i, twin_day, twin = written[p.name][w]
                write_lob_bench(lob_bench, i, kept["real"][i], window(twin_day, twin - length, twin),
                                {FLOOR: [other]}, twin_day.levels)
    bar.close()
    if not real:
        raise InputError("no day could be evaluated: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    say(f"{len(real)} windows of {cfg.minutes:g} minutes on {scored_days} day(s), {cfg.rollouts} rollouts of each "
        f"source per window; bootstrap over windows ({cfg.n_boot} draws)")
    rows, means, headline, floor_headline = measure(real, inst, sources, floor_real, floor_inst, cfg.n_boot,
                                                    cfg.seed, progress)
    facts = {source: _facts(d, books[source]) for source, d in kept.items()}
    return Benchmark(cfg, windows, floor_windows, rows, headline, means, facts, skipped, floor_headline, cut)


# ---------------------------------------------------------------- verdicts


AHEAD, INSIDE, BEHIND = "ahead of Compound Hawkes", "inside the real-vs-real floor", "behind"


def verdicts(rows: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]]) -> dict[str, str]:
    """Per distribution row of one group: TradeFM's KS at or below Compound Hawkes' (AHEAD), else at or below the
    upper end of the real-vs-real floor's interval (INSIDE: the real data disagrees with itself as much), else
    BEHIND; a row with no value (windows shorter than its horizon) is left out."""
    out = {}
    for m in DISTRIBUTIONS:
        t, h = _value(rows[MODEL][m]["KS"][0]), _value(rows[HAWKES][m]["KS"][0])
        high = _value(rows[FLOOR][m]["KS"][2]) if FLOOR in rows else np.nan
        if np.isnan(t):
            continue
        if t <= h:
            out[m] = AHEAD
        elif t <= high:
            out[m] = INSIDE
        else:
            out[m] = BEHIND
    return out


def fact_checks(facts: Mapping[str, object], real: Mapping[str, object]) -> dict[str, bool | None]:
    """The stylized facts a realistic flow shows, for one source's pooled facts against the real windows':
    volatility clustering (ACF of absolute 1 s returns positive at lags 1-5), no return memory (|ACF| below 0.05
    at lags 2-10 s) and 10 s kurtosis within 30% of the real value (None where a fact has no value)."""
    absolute, returns = (np.array([_value(x) for x in v]) for v in (facts["acf_abs"][:5], facts["acf_returns"][1:10]))
    k, kr = _value(facts["kurtosis"].get("10.0")), _value(real["kurtosis"].get("10.0"))

    def check(values: np.ndarray, ok: np.ndarray | bool) -> bool | None:
        return bool(np.all(ok)) if len(values) and np.isfinite(values).all() else None

    return {"volatility clustering": check(absolute, absolute > 0),
            "no return memory beyond lag 1": check(returns, np.abs(returns) < 0.05),
            "10 s kurtosis within 30% of the real": check(np.array([k, kr]), abs(k - kr) <= 0.3 * abs(kr))}


def _value(x: float | None) -> float:
    """A value as JSON or a run left it (None or NaN: none) as a float."""
    return np.nan if x is None else float(x)


# ---------------------------------------------------------------- output


def _cell(v: tuple[float, float, float]) -> str:
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" if np.isfinite(v[1]) else _num(v[0], ".3f")


def _sampling(s: Sampling) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in asdict(s).items() if k != "guidance")


def _num(v: float, fmt: str) -> str:
    return format(v, fmt) if np.isfinite(v) else "–"


def markdown(b: Benchmark) -> str:
    """The headline, the per-metric table of the pooled group, the stylized facts and what was skipped."""
    group = ALL if ALL in b.rows else next(iter(b.rows))
    cfg = b.config
    n = sum(len(w) for w in b.windows.values())
    part = "" if cfg.part == "test" else f" of the {cfg.part} part"
    lines = [f"# Pooled held-out benchmark: {n} windows{part} of {cfg.minutes:g} minutes, {cfg.rollouts} rollouts per "
             f"window and source, 95% intervals from {cfg.n_boot} bootstrap draws of windows", "",
             f"TradeFM's sampling: {_sampling(cfg.sampling)}; weights in {cfg.dtype}", ""]
    for g, h in b.headline.items():
        lines.append(f"- **{g}**: TradeFM mean KS ÷ Compound Hawkes mean KS = **{_cell(h)}** "
                     f"(TradeFM {_cell(b.mean_ks[g][MODEL])}, Compound Hawkes {_cell(b.mean_ks[g][HAWKES])}"
                     + (f", real vs real {_cell(b.mean_ks[g][FLOOR])}" if FLOOR in b.mean_ks[g] else "") + ")"
                     + (f"; the floor's own ratio {_cell(b.floor_headline[g])}" if g in b.floor_headline else ""))
    names = list(b.rows[group])
    if MODEL in b.rows[group] and HAWKES in b.rows[group]:
        v = verdicts(b.rows[group])
        floor = FLOOR in names
        lines += ["", f"## Row by row ({group}): TradeFM's KS against Compound Hawkes'"
                  + (" and the floor's interval" if floor else ""), "",
                  "| row | TradeFM | Compound Hawkes | " + ("real vs real | " if floor else "") + "verdict |",
                  "|---|---:|---:|" + ("---:|" if floor else "") + "---|"]
        r = b.rows[group]
        for m, what in v.items():
            cells = [_num(r[MODEL][m]["KS"][0], ".3f"), _num(r[HAWKES][m]["KS"][0], ".3f")]
            lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells + [_cell(r[FLOOR][m]["KS"])] * floor)
                         + f" | {what} |")
        lines += ["", f"{sum(x != BEHIND for x in v.values())} of {len(v)} rows ahead of Compound Hawkes or inside "
                  "the real-vs-real floor."]
    lines += ["", f"## Every metric ({group})", "", "| metric | stat | " + " | ".join(names) + " |",
              "|---|---|" + "---:|" * len(names)]
    for m in METRICS:
        for s in _stats_of(m):
            cells = [b.rows[group][name][m][s] for name in names]
            best = min((c[0] for c, name in zip(cells, names, strict=True) if name in GENERATORS), default=np.nan)
            lines.append(f"| {LABELS.get(m, m)} | {s} | " + " | ".join(
                f"**{_cell(c)}**" if name in GENERATORS and c[0] == best else _cell(c)
                for c, name in zip(cells, names, strict=True)) + " |")
    lines += ["", "## Stylized facts (pooled windows)", "", "| fact | " + " | ".join(b.facts) + " |",
              "|---|" + "---:|" * len(b.facts)]
    f = b.facts
    for h in ("1.0", "10.0", "60.0"):
        lines.append(f"| excess kurtosis, {float(h):g} s returns | " + " | ".join(
            _num(f[k]['kurtosis'][h], ".2f") for k in f) + " |")
    for lag in (1, 2, 5, 10):
        lines.append(f"| ACF of returns, lag {lag} s | " + " | ".join(_num(f[k]['acf_returns'][lag - 1], "+.3f")
                                                                       for k in f) + " |")
    for lag in (1, 2, 5, 10):
        lines.append(f"| ACF of absolute returns, lag {lag} s | " + " | ".join(
            _num(f[k]['acf_abs'][lag - 1], "+.3f") for k in f) + " |")
    lines.append("| Hill tail index, 10 s | " + " | ".join(_num(f[k]['hill'], ".2f") for k in f) + " |")
    for lag in (1, 10):
        lines.append(f"| order-sign ACF, lag {lag} | " + " | ".join(
            _num(f[k]['order_sign_acf'][lag - 1], "+.3f") for k in f) + " |")
    lines.append("| book states with a side empty (share of events) | " + " | ".join(
        _num(f[k]["empty_side"], ".2%") for k in f) + " |")
    if "real" in f:
        checks = {k: fact_checks(f[k], f["real"]) for k in f}
        for fact in next(iter(checks.values())):
            lines.append(f"| {fact} | " + " | ".join({True: "yes", False: "no", None: "–"}[checks[k][fact]]
                                                     for k in f) + " |")
    if b.cut_short:
        lines += ["", f"{b.cut_short} TradeFM rollouts were cut short: they reached {CAP_PACE}x the real window's "
                  "events before its end (a model far too fast; their windows are scored as far as they go)"]
    if b.skipped:
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in b.skipped.items())]
    return "\n".join(lines) + "\n"


def plot(b: Benchmark, path: Path) -> None:
    """KS per distribution row for each generator with its interval, over the floor's band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    group = ALL if ALL in b.rows else next(iter(b.rows))
    rows = b.rows[group]
    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    x = np.arange(len(DISTRIBUTIONS))
    if FLOOR in rows:
        lo = [rows[FLOOR][m]["KS"][1] for m in DISTRIBUTIONS]
        hi = [rows[FLOOR][m]["KS"][2] for m in DISTRIBUTIONS]
        ax.bar(x, np.subtract(hi, lo), bottom=lo, width=0.8, color="0.85", label="real vs real (interval)")
    names = [n for n in (MODEL, HAWKES, ZI, DECODED) if n in rows]
    for k, name in enumerate(names):
        v = np.array([rows[name][m]["KS"] for m in DISTRIBUTIONS], dtype=np.float64)
        at = x + (k - (len(names) - 1) / 2) * 0.15
        # a distance's bootstrap interval can lie wholly above its point (resampling adds noise): drawn as it is
        line = ax.plot(at, v[:, 0], "o", label=name)[0]
        ax.vlines(at, v[:, 1], v[:, 2], color=line.get_color())
    ax.set_xticks(x, [LABELS[m].split(" (")[0] for m in DISTRIBUTIONS], rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="KS against the real windows", title=f"pooled held-out windows ({group})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    FigureCanvasAgg(fig).print_png(str(path), metadata={"Software": None})


def write(b: Benchmark, out: str | Path) -> Path:
    """``benchmark.json``, ``benchmark.md`` and ``benchmark.png`` in ``out``, each written whole or not at all."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    as_json = json.dumps(b.to_json(), indent=1, allow_nan=False)
    for name, text in (("benchmark.json", as_json), ("benchmark.md", markdown(b))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
    tmp = out / ".benchmark.png.tmp"
    plot(b, tmp)
    tmp.replace(out / "benchmark.png")
    return out / "benchmark.md"


__all__ = [
    "PRESETS",
    "Benchmark",
    "BenchmarkConfig",
    "fact_checks",
    "markdown",
    "mean_ks",
    "measure",
    "plot",
    "preset",
    "run",
    "starts",
    "verdicts",
    "write",
]
