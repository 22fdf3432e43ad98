"""Token shards: per symbol-day token and context arrays a model memory-maps, split by time and instrument.

``OUT/<split>/<venue>-<symbol>-<date>.tokens.bin`` holds the token ids (uint16 while the vocabulary fits),
``....context.bin`` a [n, fields] uint8 array (liquidity tier, price-level bin, market/participant flag, volume and
activity regimes, spread bin, the clock with ``clock=True`` and the feed's kind with ``feed=True``), in the spirit
of nanoGPT's ``train.bin``. Each file belongs to one split, so no training window can cross a split boundary.
``manifest.json`` names the tokenizer (hash), the sources and the counts per split.

Splits: a held-out venue or symbol sends whole days to ``test_venue`` / ``test_symbol``; every other day is cut
by time, the first ``val_from`` of its session to ``train``, then ``val``, and from ``test_from`` on ``test``, or,
with dates for ``val_from`` and ``test_from``, goes whole to the split its date falls in (a temporal holdout).
Features are computed on the whole day first (they are causal), so the cut changes no token. Training copies
(``OUT/train/....augK.tokens.bin``) are the day's events before its training part ends, read as another feed
would show them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date
from itertools import groupby
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from tqdm.auto import tqdm

from .events import InputError, atomic_path, list_days, read_day, read_json
from .events.store import stored_rows
from .features import COLUMNS, FeatureConfig, OrderFlow, order_flow
from .parallel import Workers, map_tasks
from .tokenizer import Calibration, DaySample, Limits, Tokenizer, TokenizerConfig

SPLITS = ("train", "val", "test", "test_symbol", "test_venue")


def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


@dataclass(frozen=True)
class SplitConfig:
    """Where validation and test start: fractions of each day's session (``0.70``: the same cut in every day),
    or dates (``"2024-05-01"``: every day from that date on goes whole to that split, the paper's temporal
    holdout). Both bounds are of one kind."""

    val_from: float | str = 0.70  # fraction of each day's session, or the first validation date
    test_from: float | str = 0.85  # ... and where (or the date when) the test part starts
    holdout_symbols: tuple[str, ...] = ()
    holdout_venues: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        kinds = {_is_date(self.val_from), _is_date(self.test_from)}
        if kinds == {True}:
            if not self.val_from <= self.test_from:
                raise InputError(f"the validation date {self.val_from} is after the test date {self.test_from}")
        elif kinds == {False} and all(isinstance(v, int | float) for v in (self.val_from, self.test_from)):
            if not 0 < self.val_from <= self.test_from <= 1:
                raise InputError(f"splits need 0 < val_from <= test_from <= 1, got val_from {self.val_from:g}, "
                                 f"test_from {self.test_from:g}")
        else:
            raise InputError(f"val_from and test_from must both be fractions of the day or both dates "
                             f"(YYYY-MM-DD), got {self.val_from!r} and {self.test_from!r}")

    @property
    def by_date(self) -> bool:
        return _is_date(self.val_from)

    def whole_day(self, venue: str, symbol: str, day: str | None = None) -> str | None:
        """The split a whole symbol-day goes to (a held-out venue or symbol, or by its date), else None."""
        if venue in self.holdout_venues:
            return "test_venue"
        if symbol in self.holdout_symbols:
            return "test_symbol"
        if self.by_date and day is not None:
            return "test" if day >= self.test_from else "val" if day >= self.val_from else "train"
        return None

    def trains_on(self, day: str) -> bool:
        """Whether a day of a kept instrument has a training part (by date: it is before the validation date)."""
        return not self.by_date or day < self.val_from

    def cut(self, ts: np.ndarray) -> dict[str, slice]:
        """Index ranges of train / val / test within one day's time-ordered events (fractions of the day)."""
        if self.by_date:
            raise InputError("date splits send whole days to one split: there is nothing to cut")
        if not len(ts):
            return {"train": slice(0, 0)}
        a, b = ts[0], ts[-1]
        i = int(np.searchsorted(ts, a + self.val_from * (b - a), side="left"))
        j = int(np.searchsorted(ts, a + self.test_from * (b - a), side="left"))
        return {"train": slice(0, i), "val": slice(i, j), "test": slice(j, len(ts))}

    def parts(self, venue: str, symbol: str, day: str, ts: np.ndarray) -> dict[str, slice]:
        """Each split's index range of one symbol-day's events."""
        whole = self.whole_day(venue, symbol, day)
        return {whole: slice(0, len(ts))} if whole else self.cut(ts)

    @classmethod
    def from_manifest(cls, raw: dict) -> SplitConfig:
        """The splits a manifest recorded (``asdict`` of this class)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def run_manifest(folder: str | Path) -> Path | None:
    """The shard manifest a run folder, or a model folder, was trained from: ``shards/manifest.json`` or
    ``manifest.json`` in it, else the ``shards`` named by the ``train_config.json`` that training writes beside
    the model (so a model scored on its own is held to the splits it was trained on)."""
    folder = Path(folder)
    for m in (folder / "shards" / "manifest.json", folder / "manifest.json"):
        if m.exists():
            return m
    for cfg in (folder / "train_config.json", folder.parent / "train_config.json",
                folder / "model" / "train_config.json"):
        if cfg.exists():
            shards = read_json(cfg, "a training configuration")
            shards = shards.get("shards") if isinstance(shards, dict) else None
            m = (cfg.parent / shards / "manifest.json") if isinstance(shards, str) else None
            if m is not None and m.exists():
                return m
            raise InputError(f"{cfg}: the shards it trained on ({shards}) have no manifest.json: the splits to "
                             "score by are unknown")
    return None


def manifest_splits(manifest: Path, read: object = None) -> SplitConfig:
    """The splits a shard manifest was cut by (``read``: the manifest, where the caller has read it already)."""
    m = read_json(manifest, "a shard manifest") if read is None else read
    raw = m.get("splits", {}) if isinstance(m, dict) else None
    try:
        return SplitConfig.from_manifest(raw)
    except (AttributeError, TypeError) as e:
        raise InputError(f"{manifest}: its splits are not a split configuration ({e})") from None


def day_date(path: Path) -> str:
    """A store file's date, from its partition folder (``date=YYYY-MM-DD``): known without opening it."""
    return path.parent.name.removeprefix("date=")


def _days(events_dir: str | Path) -> list[Path]:
    days = list_days(events_dir)
    if not days:
        why = "does not exist" if not Path(events_dir).exists() else "run `tradefm ingest` first"
        raise InputError(f"{events_dir}: no symbol-days ({why})")
    return days


def iter_flows(events_dir: str | Path, features: FeatureConfig, progress: bool = True, desc: str = "features"
               ) -> Iterator[tuple[str, str, str, str, OrderFlow]]:
    """(venue, symbol, date, key, order flow) per stored symbol-day, one day in memory at a time."""
    for path in tqdm(_days(events_dir), desc=desc, unit="day", disable=not progress):
        yield _flow(path, features)


def _flow(path: Path, features: FeatureConfig) -> tuple[str, str, str, str, OrderFlow]:
    day = read_day(path, columns=COLUMNS)
    inst = day.instrument
    return inst.venue, inst.symbol, day.date, inst.key, order_flow(day, features)


def _take(flow: OrderFlow, part: slice) -> OrderFlow:
    arrays = {k: v[part] for k, v in vars(flow).items() if isinstance(v, np.ndarray)}
    return OrderFlow(**arrays, notional=flow.notional)


def calibration_days(events_dir: str | Path, splits: SplitConfig, days: int | None = None) -> list[Path]:
    """The store files of the calibration window: the days with a training part, of the first ``days``
    training dates (all of them when None). Held-out instruments are dropped when their days are read."""
    paths = [p for p in _days(events_dir) if splits.trains_on(day_date(p))]
    if days is not None:
        if days < 1:
            raise InputError(f"the calibration window needs at least one date, not {days}")
        window = set(sorted({day_date(p) for p in paths})[:days])
        paths = [p for p in paths if day_date(p) in window]
    if not paths:
        raise InputError("no day before the validation date: nothing to calibrate the tokenizer on")
    return paths


def _calibration_sample(shared: tuple[FeatureConfig, SplitConfig, int], task: tuple[Path, Limits]
                        ) -> DaySample | None:
    """One symbol-day's share of the calibration: the sample of its training part (None: it is held out)."""
    features, splits, cap = shared
    path, limits = task
    venue, symbol, day, key, flow = _flow(path, features)
    part = splits.parts(venue, symbol, day, flow.ts).get("train")
    if part is None:
        return None
    return DaySample.of(_take(flow, part), key, f"{key}/{day}", cap, limits)


def _calibrate(cal: Calibration, paths: list[Path], shared: tuple[FeatureConfig, SplitConfig, int],
               workers: Workers, progress: bool, planned: bool) -> Calibration:
    """Every calibration day merged into ``cal``, each cut by the limits known when it is sent out, and by cuts
    planned from the files' row counts when ``planned``; an own sample a plan left short is taken again."""
    stored = {p: stored_rows(p) for p in paths} if planned else {}
    window = sum(n or 0 for n in stored.values())

    def tasks() -> Iterator[tuple[Path, Limits]]:
        for _, group in groupby(paths, key=lambda p: p.parent.parent):  # one instrument's days
            group = list(group)
            expected = sum(stored.get(p) or 0 for p in group)
            for path in group:
                yield path, cal.limits(window, expected)  # made as each day is sent out: the limits then

    days_of: dict[str, list[Path]] = defaultdict(list)
    # one day ahead per worker: a day is cut by the limits of the days merged before it was sent out
    for path, sample in zip(paths, map_tasks(_calibration_sample, tasks(), shared, workers, "calibrate", progress,
                                             total=len(paths), ahead=1), strict=True):
        if sample is not None:
            cal.add(sample, stored.get(path))
            days_of[sample.instrument].append(path)
    if not days_of:
        raise InputError("every instrument is held out: nothing left to calibrate the tokenizer on")
    for key in cal.close():
        cal.refit_own(key, map_tasks(_calibration_sample, ((p, None) for p in days_of[key]), shared, workers,
                                     f"calibrate {key} again", progress, total=len(days_of[key])))
    return cal


def fit_tokenizer(events_dir: str | Path, splits: SplitConfig | None = None, config: TokenizerConfig | None = None,
                  features: FeatureConfig | None = None, progress: bool = True, days: int | None = None,
                  workers: Workers = 1) -> Tokenizer:
    """Fit on the calibration window: the training part of every day of the first ``days`` training dates
    (all when None) of every instrument that is not held out. Memory is bounded whatever the number of days:
    each day is reduced to a sample of at most ``config.max_fit_values`` order events as it is read, and the
    samples merge into one of that size (exact while the window holds no more events than that)."""
    splits, features, cfg = splits or SplitConfig(), features or FeatureConfig(), config or TokenizerConfig()
    paths = calibration_days(events_dir, splits, days)
    run = (paths, (features, splits, cfg.max_fit_values), workers, progress)
    cal = _calibrate(Calibration(cfg.max_fit_values, cfg.regimes), *run, planned=True)
    if not cal.pooled_exact():  # the window gave fewer events than its stored rows promised
        cal = _calibrate(Calibration(cfg.max_fit_values, cfg.regimes), *run, planned=False)
    return Tokenizer.from_calibration(cal, cfg, features)


def _write(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        array.tofile(tmp)


# what a training copy may change: how a feed records the same flow, never what a token means
AUGMENTABLE = ("resolution_ns", "size_jitter", "trades_only")
_COARSE = {"resolution_ns": 1_000_000, "size_jitter": 0.7}  # a millisecond clock, sizes without round lots
# named sets of copies: "feeds", each training part as a crypto venue's book feed and as its trades feed show it
AUGMENTS: dict[str, tuple[dict, ...]] = {"feeds": (_COARSE, {**_COARSE, "trades_only": True})}


def _tokenize_day(shared: tuple[Tokenizer, Path, SplitConfig, tuple[dict, ...]], path: Path) -> list[dict]:
    """Write one symbol-day's shard files; return their manifest entries."""
    tokenizer, out, splits, augment = shared
    day = read_day(path, columns=COLUMNS)
    venue, symbol, date = day.instrument.venue, day.instrument.symbol, day.date
    key, stem = day.instrument.key, f"{venue}-{symbol.replace('/', '-')}-{date}"
    files = []

    def write(split: str, name: str, flow: OrderFlow, tokens: np.ndarray, ctx: np.ndarray, part: slice,
              changes: dict) -> None:
        _write(out / split / f"{name}.tokens.bin", tokens[part])
        _write(out / split / f"{name}.context.bin", ctx[part])
        files.append({"split": split, "instrument": key, "date": date, "tokens": part.stop - part.start,
                      "path": f"{split}/{name}.tokens.bin", "context": f"{split}/{name}.context.bin",
                      "first_ts": int(flow.ts[part.start]), "last_ts": int(flow.ts[part.stop - 1]),
                      **({"augment": changes} if changes else {})})

    flow = order_flow(day, tokenizer.features)
    tokens, ctx = tokenizer.encode(flow, key)
    parts = splits.parts(venue, symbol, date, flow.ts)
    for split, part in parts.items():
        if part.stop > part.start:
            write(split, stem, flow, tokens, ctx, part, {})
    train = parts.get("train", slice(0, 0))
    if not augment or train.stop == 0:
        return files  # a held-out day: nothing to train on in any copy
    # a copy holds the events before the recorded training part's end, as its own feed would show them: cut by its
    # own timestamps, a feed of trades only (or a coarser clock) would move the cut into validation time
    head = day if train.stop == len(flow) else replace(day, table=day.table.filter(
        pc.less(day.table.column("ts"), int(flow.ts[train.stop]))))
    for i, changes in enumerate(augment, 1):
        copy = order_flow(head, replace(tokenizer.features, **changes))
        if len(copy):
            write("train", f"{stem}.aug{i}", copy, *tokenizer.encode(copy, key), slice(0, len(copy)), changes)
    return files


def _augmentations(tokenizer: Tokenizer, augment: Sequence[Mapping[str, object]]) -> tuple[dict, ...]:
    """The training copies, checked: each changes only :data:`AUGMENTABLE` fields, to a valid value, and a
    clock only to a coarser one than the tokenizer's."""
    out = []
    for changes in augment:
        changes = dict(changes)
        wrong = [k for k in changes if k not in AUGMENTABLE]
        if not changes or wrong:
            raise InputError(f"an augmented copy changes {' or '.join(AUGMENTABLE)}, not {wrong or 'nothing'}")
        own = tokenizer.features.resolution_ns
        if "resolution_ns" in changes and (not isinstance(changes["resolution_ns"], int)
                                           or changes["resolution_ns"] <= max(own, 1)):
            raise InputError(f"an augmented clock is a whole number of nanoseconds coarser than the tokenizer's "
                             f"({own or 1} ns), not {changes['resolution_ns']!r}")
        if changes.get("trades_only") and not tokenizer.features.feed:
            raise InputError("a trades_only copy needs a tokenizer with the feed's kind (--feature feed=true, or "
                             "--features universal): without it the model takes a trades feed for a full book's")
        replace(tokenizer.features, **changes)  # a bad value is the config's own one-line error
        out.append(changes)
    return tuple(out)


def tokenize(events_dir: str | Path, tokenizer: Tokenizer, out: str | Path, splits: SplitConfig | None = None,
             progress: bool = True, workers: Workers = 1, augment: Sequence[Mapping[str, object]] = ()) -> dict:
    """Write token and context shards for every symbol-day, and the manifest (one day a task: the files are
    the same with any number of workers). Each entry of ``augment`` (feature changes, e.g. ``{"resolution_ns":
    1_000_000}``) also writes every training part as another feed would record it: timestamps floored to a
    coarser clock, sizes without round lots, or its trades only. A model that has seen both reads such a feed
    zero-shot, as Bitstamp's millisecond clock and crypto sizes, without losing the recorded one."""
    augment = _augmentations(tokenizer, augment)
    splits, out = splits or SplitConfig(), Path(out)
    files, counts = [], dict.fromkeys(SPLITS, 0)
    for entries in map_tasks(_tokenize_day, _days(events_dir), (tokenizer, out, splits, augment), workers, "tokenize",
                             progress):
        for entry in entries:
            files.append(entry)
            counts[entry["split"]] += entry["tokens"]
    tokenizer.save(out / "tokenizer.json")  # the shards carry the token space they are written in
    manifest = {"tokenizer_hash": tokenizer.hash, "vocab_size": tokenizer.vocab_size,
                "radix": list(tokenizer.config.radix),
                "token_dtype": tokenizer.token_dtype.name, "context_fields": list(tokenizer.context_fields),
                "context_sizes": list(tokenizer.context_sizes),
                "splits": asdict(splits), "counts": counts, "files": files, "events_dir": str(events_dir),
                "augment": list(augment)}
    with atomic_path(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return manifest


MANIFEST_KEYS = ("vocab_size", "context_sizes", "tokenizer_hash", "token_dtype", "files")


def read_manifest(root: str | Path) -> dict:
    """The manifest of a shard folder; a folder that is not one (or a manifest missing what readers of shards
    need) is an :class:`~tradefm.events.InputError` naming it."""
    root = Path(root)
    if not (root / "manifest.json").is_file():
        why = "does not exist" if not root.exists() else "no manifest.json in it"
        raise InputError(f"{root}: not a shard folder from `tradefm tokenize` ({why})")
    manifest = read_json(root / "manifest.json", "a shard manifest")
    missing = [k for k in MANIFEST_KEYS if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise InputError(f"{root / 'manifest.json'}: not a shard manifest (no {', '.join(missing)})")
    return manifest


def load_shard(root: str | Path, entry: dict, dtype: str = "uint16") -> tuple[np.ndarray, np.ndarray]:
    """Memory-map one shard's tokens and context."""
    root = Path(root)
    tokens = np.memmap(root / entry["path"], dtype=dtype, mode="r")
    ctx = np.memmap(root / entry["context"], dtype=np.uint8, mode="r").reshape(len(tokens), -1)
    return tokens, ctx


def token_stats(root: str | Path, tokenizer: Tokenizer) -> dict[str, dict]:
    """Per instrument: tokens, share of each field's out-of-range bins, and the histogram of each field."""
    root = Path(root)
    manifest = read_manifest(root)
    if manifest["tokenizer_hash"] != tokenizer.hash:
        raise InputError(f"{root}: shards were made by tokenizer {manifest['tokenizer_hash']}, not {tokenizer.hash}")
    by_inst: dict[str, list[np.ndarray]] = defaultdict(list)
    for entry in (e for e in manifest["files"] if "augment" not in e):  # the days as recorded
        by_inst[entry["instrument"]].append(np.asarray(load_shard(root, entry, manifest["token_dtype"])[0]))
    out = {}
    for inst, parts in sorted(by_inst.items()):
        fields = tokenizer.decompose(np.concatenate(parts))
        hist = {name: np.bincount(f, minlength=r) / len(f) for name, f, r in
                zip(("action", "side", "depth", "volume", "dt"), fields, tokenizer.config.radix, strict=True)}
        out[inst] = {"tokens": len(fields[0]), "hist": hist,
                     "out_of_range": {k: float(h[0] + h[-1]) for k, h in hist.items() if len(h) > 2}}
    return out


def token_report(stats: dict[str, dict]) -> str:
    """Markdown: out-of-range shares per instrument, then each field's histogram (percent per bin)."""
    lines = ["| instrument | tokens | depth out of range | volume out of range | dt out of range |",
             "|---|---|---|---|---|"]
    for k, v in stats.items():
        shares = " | ".join(f"{v['out_of_range'][f]:.1%}" for f in ("depth", "volume", "dt"))
        lines.append(f"| {k} | {v['tokens']:,} | {shares} |")
    for field in ("depth", "volume", "dt"):
        n = len(next(iter(stats.values()))["hist"][field])
        lines += ["", f"{field} bins (% of the instrument's tokens; bins 0 and {n - 1} are out of range):", "",
                  "| instrument | " + " | ".join(str(b) for b in range(n)) + " |", "|---" * (n + 1) + "|"]
        lines += [f"| {k} | " + " | ".join(f"{100 * x:.1f}" for x in v["hist"][field]) + " |" for k, v in stats.items()]
    return "\n".join(lines)
