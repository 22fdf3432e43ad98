"""The ``tradefm`` command: one sub-command per pipeline stage, plus ``demo`` that runs them end to end.

Bad input (a missing or wrong file, a setting out of range) ends a command with one line on stderr,
``tradefm CMD: error: ...``, and exit status 2; ``--debug`` shows the traceback instead."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import readers
from .events import EventDay, InputError
from .ingest import ingest, summarize  # noqa: F401  (the library's names, kept importable from here)
from .parallel import Workers, parse_workers
from .runs import model_folder


def cmd_ingest(args: argparse.Namespace) -> int:
    mapping = {"mapping": args.mapping} if args.mapping else {}
    ingest(args.sources, Path(args.out), args.format or ("generic" if args.mapping else None), args.skip_bad,
           workers=args.workers, **mapping)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .book.replay import replay_lobster

    ok = True
    for src in args.sources:
        for r in replay_lobster(src, progress=True):
            ok &= r.exact
            print(f"{r.symbol} L{r.levels}: {r.matched_rows:,}/{r.rows:,} rows exact, {r.reveals:,} reveals, "
                  f"{r.counters.unknown_refs:,} refs to unknown ids"
                  + ("" if r.exact else f", FIRST MISMATCH at message {r.first_mismatch}"))
    return 0 if ok else 1


def _splits(args: argparse.Namespace):
    from .shards import SplitConfig

    return SplitConfig(val_from=args.val_from, test_from=args.test_from, holdout_symbols=tuple(args.holdout_symbol),
                       holdout_venues=tuple(args.holdout_venue))


def _split_bound(text: str) -> float | str:
    """--val-from / --test-from: a fraction of each day (0.7) or a date (2024-05-01)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"want a fraction of the day (0.7) or a date (YYYY-MM-DD), not {text!r}") \
            from None
    return text


def _workers(text: str) -> Workers:
    try:
        return parse_workers(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _feature_values(flag: str, pairs: list[str], allowed: tuple[str, ...] | None = None) -> dict[str, object]:
    """``KEY=VALUE`` pairs of :class:`~tradefm.codec.FeatureConfig` fields (``allowed`` ones only), typed."""
    from dataclasses import fields

    from .codec import FeatureConfig

    kinds = {f.name: f.type for f in fields(FeatureConfig) if allowed is None or f.name in allowed}
    overrides: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in kinds:
            raise InputError(f"{flag} wants KEY=VALUE with KEY one of {', '.join(kinds)}, got {pair!r}")
        kind = kinds[key]
        if kind == "bool":
            if value.lower() not in ("true", "false", "1", "0"):
                raise InputError(f"{flag} {key} wants true or false, got {value!r}")
            overrides[key] = value.lower() in ("true", "1")
        elif kind in ("float", "int"):
            try:
                overrides[key] = float(value) if kind == "float" else int(value)
            except ValueError:
                raise InputError(f"{flag} {key} wants {'a' if kind == 'float' else 'a whole'} number, "
                                 f"got {value!r}") from None
        else:
            overrides[key] = value
    return overrides


def _features(name: str, pairs: list[str]):
    """A named feature preset with ``KEY=VALUE`` overrides (``--feature cancel_from=reference``)."""
    from .codec import features

    return features(name, **_feature_values("--feature", pairs))


def cmd_fit_tokenizer(args: argparse.Namespace) -> int:
    from .shards import fit_tokenizer

    features = _features(args.features, args.feature)
    tok = fit_tokenizer(args.events, _splits(args), features=features, days=args.calibration_days,
                        workers=args.workers)
    tok.save(args.out)
    tiers = ", ".join(f"{k}: tier {v['tier']}" for k, v in tok.instruments.items())
    print(f"tokenizer {tok.hash} ({tok.vocab_size:,} ids) fitted on {len(tok.instruments)} instruments "
          f"({tiers}) -> {args.out}")
    return 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    from .shards import AUGMENTABLE, AUGMENTS, tokenize
    from .tokenizer import Tokenizer

    augment = []
    for copy in args.augment:
        if "=" not in copy and copy not in AUGMENTS:
            raise InputError(f"--augment wants a preset ({', '.join(AUGMENTS)}) or KEY=VALUE pairs, got {copy!r}")
        augment += AUGMENTS.get(copy) or [_feature_values("--augment", copy.split(","), AUGMENTABLE)]
    manifest = tokenize(args.events, Tokenizer.load(args.tokenizer), args.out, _splits(args), workers=args.workers,
                        augment=augment)
    counts = ", ".join(f"{k} {v:,}" for k, v in manifest["counts"].items() if v)
    print(f"{len(manifest['files'])} shards, tokens per split: {counts} -> {args.out}/manifest.json")
    return 0


def cmd_token_stats(args: argparse.Namespace) -> int:
    from .shards import token_report, token_stats
    from .tokenizer import Tokenizer

    print(token_report(token_stats(args.shards, Tokenizer.load(args.tokenizer))))
    return 0


def _overrides(pairs: list[str]) -> dict[str, object]:
    """--set key=value, with values read as JSON when they parse (numbers, true/false, lists)."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InputError(f"--set wants key=value, not {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from .training import TrainConfig, train

    cfg = TrainConfig.load(args.config, **_overrides(args.set))
    m = train(cfg)
    if "val_ppl" in m and os.environ.get("RANK", "0") == "0":
        print(f"step {m['step']}: train loss {m['loss']:.3f}, validation perplexity {m['val_ppl']:.1f} "
              f"-> {Path(cfg.out) / 'model'}")
    return 0


def cmd_perplexity(args: argparse.Namespace) -> int:
    from .evaluation.perplexity import perplexity, plot, table
    from .model import TradeFM
    from .shards import SPLITS

    splits = tuple(args.split) or ("val", "test", "test_symbol", "test_venue")
    if unknown := [s for s in splits if s not in SPLITS]:
        raise InputError(f"--split {', '.join(unknown)}: not a split (choose from {', '.join(SPLITS)})")
    if args.plot:  # a plot that cannot be written fails now, not after the scoring
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    rows = perplexity(TradeFM.from_pretrained(model_folder(args.model)[0]), args.shards, splits)
    print(table(rows))
    if args.plot:
        print(f"plot -> {plot(rows, args.plot)}")
    return 0


def _start_ts(day: EventDay, start: str | None, option: str = "--start") -> int:
    """--start as a fraction of the day's session (0.85) or a local clock time (14:30 or 14:30:15). A time
    outside the session is refused here, in the day's own clock, rather than deep inside a generator."""
    from zoneinfo import ZoneInfo

    ts = day.table.column("ts").to_numpy()[~day.table.column("snapshot").to_numpy()]
    name = f"{day.instrument.symbol} {day.date}"
    if not len(ts):
        raise InputError(f"{name}: no market events to start from")
    start = start or "0.85"
    tz = ZoneInfo(day.instrument.timezone)
    wants = "a fraction of the session (0.85) or a local time (14:30)"
    if ":" not in start:
        try:
            fraction = float(start)
        except ValueError:
            raise InputError(f"{option} {start!r}: not {wants}") from None
        if not 0 <= fraction <= 1:
            raise InputError(f"{option} {start}: a fraction of the session is between 0 and 1")
        return int(ts[0] + fraction * (ts[-1] - ts[0]))
    try:
        clock = datetime.fromisoformat(f"{day.date}T{start}").replace(tzinfo=tz)
    except ValueError:
        raise InputError(f"{option} {start!r}: not {wants}") from None
    at = int(clock.timestamp() * 1e9)
    if not ts[0] <= at <= ts[-1]:
        first, last = (datetime.fromtimestamp(t / 1e9, tz).strftime("%H:%M:%S") for t in (ts[0], ts[-1]))
        raise InputError(f"{option} {start} is outside the session of {name} ({first} to {last} "
                         f"{day.instrument.timezone})")
    return at


def _participant(spec: str | None):
    """--twap SIDE:SIZE:MINUTES:SLICES (side buy or sell)."""
    if not spec:
        return None
    from .generation.rollout import twap

    wants = f"--twap {spec!r}: wants SIDE:SIZE:MINUTES:SLICES, e.g. sell:5000:10:20"
    try:
        side, size, minutes, slices = spec.split(":")
        size, minutes, slices = int(size), float(minutes), int(slices)
    except ValueError:
        raise InputError(wants) from None
    if side not in ("buy", "sell"):
        raise InputError(f"--twap side must be buy or sell, not {side!r}")
    if size < 1 or not minutes > 0 or slices < 1:
        raise InputError(f"{wants} (size and slices at least 1, minutes above 0)")
    return twap(1 if side == "buy" else -1, size, minutes, slices)


def _control(spec: str | None) -> dict[str, int] | None:
    """--control volume=N,activity=N."""
    if not spec:
        return None
    out = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep or key not in ("volume", "activity") or not value.isdigit():
            raise InputError(f"--control {spec!r}: wants volume=N,activity=N (0 low, 1 normal, 2 high)")
        out[key] = int(value)
    return out


def cmd_generate(args: argparse.Namespace) -> int:
    import torch

    from .events import read_day
    from .generation.output import write_rollouts
    from .generation.rollout import generate
    from .model import TradeFM
    from .tokenizer import Tokenizer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")  # the books stay on the CPU
    try:
        torch.device(device)
    except RuntimeError as e:
        raise InputError(f"--device {device!r}: not a device ({e})") from None
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA device here")
    folder, _ = model_folder(args.model)
    model = TradeFM.from_pretrained(folder, device=device, dtype=args.dtype)
    tok = Tokenizer.load(folder / "tokenizer.json")
    day = read_day(args.source)
    sampling = _sampling(args, guidance=args.guidance, pace=args.pace)
    control = _control(args.control)
    days = generate(model, tok, day, _start_ts(day, args.start), args.events, args.rollouts, args.seed, sampling,
                    _participant(args.twap), control, progress=True)
    folders = write_rollouts(days, args.out)
    print(f"{len(folders)} rollouts of {args.events:,} events -> {args.out}")
    return 0


BASELINES = ("hawkes", "zero-intelligence")


def _baseline(kind: str):
    """The module of a baseline (``fit`` and ``generate``) and its parameters class (``from_json``)."""
    from .baselines import hawkes, zero_intelligence

    return {"hawkes": (hawkes, hawkes.HawkesParams),
            "zero-intelligence": (zero_intelligence, zero_intelligence.ZIParams)}[kind]


def _seconds_after_midnight(clock: str, option: str) -> float:
    try:
        h, m, *sec = (float(x) for x in clock.split(":"))
        if len(sec) > 1 or not (0 <= h <= 24 and 0 <= m < 60 and 0 <= (sec[0] if sec else 0) < 60):
            raise ValueError(clock)
    except ValueError:
        raise InputError(f"{option} {clock!r}: not a local clock time (HH:MM or HH:MM:SS)") from None
    return h * 3600 + m * 60 + (sec[0] if sec else 0.0)


def cmd_baseline_fit(args: argparse.Namespace) -> int:
    """Fit a baseline on real symbol-days (optionally one clock window of each) and write its parameters."""
    from .events import atomic_path, read_day

    days = [read_day(p) for p in args.events]
    window = None
    if args.start or args.end:
        window = (_seconds_after_midnight(args.start or "00:00", "--start"),
                  _seconds_after_midnight(args.end or "24:00", "--end"))
    params = _baseline(args.kind)[0].fit(days, window=window)
    out = Path(args.out)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps({"kind": args.kind, **json.loads(params.to_json())}))
    print((params.summary() + "\n" if hasattr(params, "summary") else "") + f"{args.kind} parameters -> {out}")
    return 0


def cmd_baseline_generate(args: argparse.Namespace) -> int:
    """Rollouts of fitted baseline parameters from a real book, in the same formats as the model's."""
    from .events import read_day, read_json
    from .generation.output import write_rollouts

    raw = read_json(args.params, "a baseline parameters file")
    kind = raw.get("kind") if isinstance(raw, dict) else None
    if kind not in BASELINES:
        raise InputError(f"{args.params}: holds no baseline parameters (kind {kind!r}, expected one of {BASELINES})")
    module, params_class = _baseline(kind)
    try:
        params = params_class.from_json(json.dumps(raw))
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{args.params}: incomplete {kind} parameters ({type(e).__name__}: {e})") from None
    day = read_day(args.source)
    if day.trades_only:
        raise InputError(f"{args.source}: a trades-only feed: the baselines place orders in a book, and no order "
                         "rests in this day")
    start = _start_ts(day, args.start)
    days = [module.generate(params, day, start, args.minutes * 60, args.seed + k) for k in range(args.rollouts)]
    write_rollouts(days, args.out)
    print(f"{len(days)} {kind} rollouts of {args.minutes:g} minutes -> {args.out}")
    return 0


def _generated(folders: list[str]) -> list[EventDay]:
    """Rollout folders (with events.parquet) or Parquet files."""
    from .events import read_day

    paths = []
    for f in map(Path, folders):
        paths += sorted(f.glob("**/events.parquet")) if f.is_dir() else [f]
    if not paths:
        raise InputError(f"{', '.join(folders)}: no events.parquet (rollout folders or their Parquet files)")
    return [read_day(p) for p in paths]


def _real_window(args: argparse.Namespace, real: EventDay, generated: list[EventDay]) -> EventDay:
    """The real day cut to the generated days' time span (the same window), unless --start/--end say otherwise."""
    from .evaluation.metrics import window

    ts = np.concatenate([g.table.column("ts").to_numpy()[~g.table.column("snapshot").to_numpy()] for g in generated])
    start = _start_ts(real, args.start) if args.start else int(ts.min())
    end = _start_ts(real, args.end, "--end") if args.end else int(ts.max())
    if end <= start:
        raise InputError(f"the window ends before it starts (--start {args.start or 'the rollouts'' start'}, "
                         f"--end {args.end or 'the rollouts'' end'})")
    return window(real, start, end)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.metrics import compare
    from .evaluation.report import markdown_table
    from .events import read_day

    generated = _generated(args.generated)
    real = _real_window(args, read_day(args.real), generated)
    print(markdown_table("generated vs real", {args.name: compare(real, generated, seed=args.seed)}))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .evaluation.metrics import split_halves
    from .evaluation.report import write_report
    from .events import read_day

    runs = {}
    for spec in args.generated:
        name, _, folder = spec.rpartition("=")
        runs[name or Path(folder).name] = _generated([folder])
    day = read_day(args.real)
    real = _real_window(args, day, [d for days in runs.values() for d in days])
    decoded = None
    if args.tokenizer:  # the real window's own tokens decoded closed loop: the tokens' share of the distances
        from .generation.rollout import decode_real
        from .tokenizer import Tokenizer

        ts = real.table.column("ts").to_numpy()[~real.table.column("snapshot").to_numpy()]
        decoded = decode_real(Tokenizer.load(args.tokenizer), day, int(ts[0]),
                              (ts[-1] - ts[0]) / 1e9, max(len(days) for days in runs.values()), args.seed)
    html = write_report(args.out, real, runs, floor_pair=split_halves(real), seed=args.seed, decoded=decoded)
    print((Path(args.out) / "table.md").read_text() + f"\nwritten: {html}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from .evaluation import benchmark
    from .events import list_days, read_day
    from .model import TradeFM
    from .tokenizer import Tokenizer

    run = benchmark.find_run(args.run, args.events)
    cfg = benchmark.preset(args.preset, sampling=_sampling(args), part=args.part,
                           **{k: v for k, v in (("windows", args.windows), ("minutes", args.minutes),
                                                ("rollouts", args.rollouts), ("seed", args.seed)) if v is not None})
    model = TradeFM.from_pretrained(run.model, dtype=args.dtype).eval()
    tok = Tokenizer.load(run.model / "tokenizer.json")
    days = [read_day(p) for p in benchmark.days_to_read(list_days(run.events), run.splits)]
    if not days:
        raise InputError(f"{run.events}: no symbol-days (an event store from `tradefm ingest`; --events names one)")
    b = benchmark.run(model, tok, days, run.splits, cfg, lob_bench=args.lob_bench)
    path = benchmark.write(b, args.out or Path(args.run) / "benchmark")
    print(path.read_text() + f"\nwritten: {path} (and benchmark.json, benchmark.png)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run

    run(args.data, args.out, steps=args.steps, minutes=args.minutes, rollouts=args.rollouts, seed=args.seed,
        book_context=not args.paper, join_touch=args.join_touch)
    return 0


def _number(kind: type, low: float, inclusive: bool) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` above ``low`` (or at least ``low``), refused on the spot."""
    what = f"{'an integer' if kind is int else 'a number'} {'>=' if inclusive else '>'} {low:g}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not (value >= low if inclusive else value > low):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value

    return parse


POSITIVE_INT, COUNT, POSITIVE = _number(int, 0, False), _number(int, 0, True), _number(float, 0, False)


def _rollout_args(p: argparse.ArgumentParser) -> None:
    """Where rollouts start and how many: shared by every generator's command."""
    p.add_argument("--from", dest="source", required=True, help="a symbol-day events.parquet (from ingest)")
    p.add_argument("--start", help="fraction of the session (0.85, the default) or local time (14:30)")
    p.add_argument("--rollouts", type=POSITIVE_INT, default=4)
    p.add_argument("--seed", type=int, default=0)


def _sampling_args(p: argparse.ArgumentParser) -> None:
    """How the model's next token is drawn (defaults: :class:`~tradefm.generation.rollout.Sampling`'s)."""
    p.add_argument("--temperature", type=POSITIVE)
    p.add_argument("--top-k", type=COUNT)
    p.add_argument("--top-p", type=POSITIVE)
    p.add_argument("--repetition-penalty", type=POSITIVE, help="1 switches it off")


def _dtype_arg(p: argparse.ArgumentParser) -> None:
    """What the model is loaded in (``tradefm.model.DTYPES``; kept literal so the parser needs no torch)."""
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="the model's weights and caches (bfloat16: about 1.5x the rollouts on CPUs with bf16 units)")


def _sampling(args: argparse.Namespace, **more: object):
    from .generation.rollout import Sampling

    given = {k: getattr(args, k) for k in ("temperature", "top_k", "top_p", "repetition_penalty")}
    return Sampling(**{k: v for k, v in given.items() if v is not None}, **more)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="tradefm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="on an error, show the traceback instead of one line")
    sub = p.add_subparsers(dest="command", required=True)

    def workers_option(s: argparse.ArgumentParser) -> None:
        s.add_argument("--workers", type=_workers, default=1, metavar="N|ray",
                       help="processes, one symbol-day (or source file) a task; 'ray': the Ray cluster (docs/DATA.md)")

    s = sub.add_parser("ingest", help="read raw venue files into canonical Parquet symbol-days")
    s.add_argument("sources", nargs="+", help="files, zips or folders")
    s.add_argument("--out", required=True, help="event store folder")
    s.add_argument("--format", choices=readers.FORMATS, help="source format (detected when omitted)")
    s.add_argument("--skip-bad", action="store_true", help="count and report bad rows instead of stopping")
    s.add_argument("--mapping", help="a feed mapping (TOML) for --format generic; recipes in docs/DATA.md")
    workers_option(s)
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("replay", help="replay LOBSTER messages and check the book against the orderbook file")
    s.add_argument("sources", nargs="+")
    s.set_defaults(func=cmd_replay)

    def split_options(s: argparse.ArgumentParser) -> None:
        s.add_argument("--val-from", type=_split_bound, default=0.70,
                       help="fraction of each day where validation starts, or the first validation date (YYYY-MM-DD)")
        s.add_argument("--test-from", type=_split_bound, default=0.85,
                       help="fraction of each day where test starts, or the first test date (YYYY-MM-DD)")
        s.add_argument("--holdout-symbol", action="append", default=[], help="a symbol kept out (repeatable)")
        s.add_argument("--holdout-venue", action="append", default=[], help="a venue kept out (repeatable)")
        workers_option(s)

    s = sub.add_parser("fit-tokenizer", help="fit the universal bins on the calibration window of an event store")
    s.add_argument("events", help="event store folder (from ingest)")
    s.add_argument("--out", required=True, help="tokenizer JSON file")
    s.add_argument("--features", choices=("paper", "book", "universal"), default="paper",
                   help="feature preset: the paper's, with book context, or for many venues (docs/TOKENS.md)")
    s.add_argument("--feature", action="append", default=[], metavar="KEY=VALUE",
                   help="override one preset field, e.g. volume=relative (sizes in a running unit: one set of bins "
                   "for shares, contracts and coins), half_life_s=5, cancel_from=reference")
    s.add_argument("--calibration-days", type=int, metavar="N",
                   help="calibrate on the first N training dates only (the paper: 30); default: every training day")
    split_options(s)
    s.set_defaults(func=cmd_fit_tokenizer)

    s = sub.add_parser("tokenize", help="write token shards and a manifest from an event store")
    s.add_argument("events")
    s.add_argument("--tokenizer", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--augment", action="append", default=[], metavar="feeds|KEY=VALUE[,KEY=VALUE]",
                   help="also write each training part as another feed records it, one copy each, repeatable: "
                        "resolution_ns=1000000 (a millisecond clock, as Bitstamp's and Binance's), size_jitter=0.7 "
                        "(sizes without round lots, as crypto's), trades_only=true (its trades alone), several in "
                        "one copy, or the preset feeds (both kinds of crypto feed); docs/TOKENS.md")
    split_options(s)
    s.set_defaults(func=cmd_tokenize)

    s = sub.add_parser("token-stats", help="out-of-range shares and bin histograms per instrument of shards")
    s.add_argument("shards")
    s.add_argument("--tokenizer", required=True)
    s.set_defaults(func=cmd_token_stats)

    s = sub.add_parser("train", help="train a model on token shards (also under torchrun, for DDP/FSDP)")
    s.add_argument("config", help="a TOML or JSON file of training settings (see docs/TRAINING.md)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("perplexity", help="loss and perplexity per instrument and venue, with bootstrap CIs")
    s.add_argument("model", help="a model folder (model.safetensors, config.json, tokenizer.json), or the run "
                   "or training out folder holding one")
    s.add_argument("shards")
    s.add_argument("--split", action="append", default=[], help="splits to score (default: all but train)")
    s.add_argument("--plot", metavar="PNG", help="also draw each venue against the in-domain perplexity")
    s.set_defaults(func=cmd_perplexity)

    s = sub.add_parser("generate", help="closed-loop rollouts of a model from a real book (Parquet + LOBSTER CSV)")
    s.add_argument("model", help="a model folder (with tokenizer.json), or the run or training out folder holding one")
    _rollout_args(s)
    s.add_argument("--events", type=POSITIVE_INT, default=1000)
    s.add_argument("--device", help="where the model runs: cpu, cuda, cuda:1 (default: cuda when there is one)")
    _sampling_args(s)
    _dtype_arg(s)
    s.add_argument("--guidance", type=_number(float, 0, True), default=1.0,
                   help="with --control: free + G * (controlled - free) logits (1: plain conditioning)")
    s.add_argument("--pace", type=POSITIVE, default=1.0,
                   help="events K times as frequent as the real flow before the start (each step's waits tilted)")
    s.add_argument("--twap", metavar="SIDE:SIZE:MINUTES:SLICES", help="inject a TWAP participant, e.g. sell:5000:10:20")
    s.add_argument("--control", metavar="volume=N,activity=N", help="fix the regimes: 0 low, 1 normal, 2 high")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("evaluate", help="distributional errors of generated days against the real window")
    s.add_argument("real", help="the real symbol-day events.parquet")
    s.add_argument("generated", nargs="+", help="rollout folders or events.parquet files")
    s.add_argument("--start", help="window start (fraction or local time); default: the generated span")
    s.add_argument("--end")
    s.add_argument("--name", default="generated")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("report", help="HTML report with plots and the paper-style table (real-vs-real floor)")
    s.add_argument("real", help="the real symbol-day events.parquet")
    s.add_argument("generated", nargs="+", metavar="NAME=FOLDER", help="e.g. TradeFM=runs/gen Hawkes=runs/hk")
    s.add_argument("--start")
    s.add_argument("--end")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--tokenizer", help="a tokenizer.json: add the real window's own tokens, decoded closed loop")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("baseline", help="Compound Hawkes and zero-intelligence baselines: fit, then generate")
    bsub = s.add_subparsers(dest="action", required=True)
    b = bsub.add_parser("fit", help="fit a baseline on real symbol-days and write its parameters (JSON)")
    b.add_argument("kind", choices=BASELINES)
    b.add_argument("events", nargs="+", help="symbol-day events.parquet files (from ingest)")
    b.add_argument("--start", help="local clock time to fit from (e.g. 09:30), each day")
    b.add_argument("--end", help="local clock time to fit up to (e.g. 14:30), each day")
    b.add_argument("--out", required=True, help="parameters file (JSON)")
    b.set_defaults(func=cmd_baseline_fit)
    b = bsub.add_parser("generate", help="rollouts of fitted parameters from a real book (Parquet + LOBSTER CSV)")
    b.add_argument("params", help="a parameters file from `tradefm baseline fit`")
    _rollout_args(b)
    b.add_argument("--minutes", type=POSITIVE, default=10.0)
    b.add_argument("--out", required=True)
    b.set_defaults(func=cmd_baseline_generate)

    s = sub.add_parser("benchmark", help="pooled held-out realism: many windows, every generator, the floor, CIs")
    s.add_argument("run", help="a run folder (model/model, events/, shards/manifest.json), or a model folder")
    s.add_argument("--events", help="the event store to take days from (default: the run's, or its manifest's)")
    s.add_argument("--preset", default="standard", help="demo, standard or full (windows, minutes, rollouts)")
    s.add_argument("--windows", type=POSITIVE_INT, help="windows per day in the part scored (overrides the preset)")
    s.add_argument("--part", default="test",
                   help="the part scored: test, or val to choose settings without looking at the test part")
    s.add_argument("--minutes", type=POSITIVE, help="window length")
    s.add_argument("--rollouts", type=POSITIVE_INT, help="rollouts of each source per window")
    s.add_argument("--seed", type=int)
    _sampling_args(s)
    _dtype_arg(s)
    s.add_argument("--lob-bench", metavar="DIR", help="also write every window in LOB-Bench's layout "
                   "(DIR/SOURCE/SYMBOL/DATE/data_real, data_gen, data_cond), for its run_bench.py")
    s.add_argument("--out", help="where benchmark.json/.md/.png go (default: RUN/benchmark)")
    s.set_defaults(func=cmd_benchmark)

    s = sub.add_parser("agents", help="baseline execution agents on held-out starts against every background")
    s.add_argument("run", help="a run folder (model/model, events/, shards/manifest.json), or a model folder")
    s.add_argument("--day", help="the events.parquet to trade in (default: the run's deepest book)")
    s.add_argument("--starts", type=int, default=6, help="starts evenly spaced in the day's test part")
    s.add_argument("--seeds", type=int, default=2, help="market seeds per start and agent")
    s.add_argument("--steps", type=int, default=20, help="decisions per episode")
    s.add_argument("--events", type=int, default=10, help="market events per decision")
    s.add_argument("--quantity", type=int, default=2000, help="units to execute")
    s.add_argument("--side", choices=("buy", "sell"), default="sell")
    s.add_argument("--backgrounds", default="model,hawkes,replay", help="comma-separated: model, hawkes, replay")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="where agents.md/.json/.png go (default: RUN/agents)")
    s.set_defaults(func=cmd_agents)

    s = sub.add_parser("stress", help="the stress presets' effect on spread, depth, volatility and event rate")
    s.add_argument("run", help="a run folder, or a model folder")
    s.add_argument("--day", help="the events.parquet to start from (default: the run's deepest book)")
    s.add_argument("--start", type=_number(float, 0, True), default=0.85,
                   help="where in the session, as a fraction (0.85: the test part)")
    s.add_argument("--seconds", type=POSITIVE, default=180.0, help="market time each rollout runs")
    s.add_argument("--rollouts", type=POSITIVE_INT, default=2)
    s.add_argument("--presets", default="none,withdrawal,burst,large_seller", help="comma-separated preset names")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_stress)

    s = sub.add_parser("demo", help="the whole pipeline on the LOBSTER samples, ending in a report")
    s.add_argument("--data", help="folder with the LOBSTER sample zips")
    s.add_argument("--out", default="runs/demo")
    s.add_argument("--steps", type=POSITIVE_INT, default=300, help="training steps of the tiny model")
    s.add_argument("--minutes", type=POSITIVE, default=10.0, help="length of the generated window")
    s.add_argument("--rollouts", type=POSITIVE_INT, default=4)
    s.add_argument("--seed", type=int, default=0)
    which = s.add_mutually_exclusive_group()
    which.add_argument("--paper", action="store_true", help="the paper's features only (no book context)")
    which.add_argument("--no-join-touch", dest="join_touch", action="store_false",
                       help="book context without giving adds that join the best quote a depth of their own")
    s.set_defaults(func=cmd_demo)
    _debug_anywhere(sub)
    return p


def cmd_agents(args: argparse.Namespace) -> int:
    try:
        from .env import agents, core
    except ImportError as e:
        raise InputError(f"the agents need gymnasium: pip install 'tradefm[agents]' ({e})") from None
    source = core.Source(args.run, args.day)
    cfg = agents.Evaluation(starts=args.starts, seeds=args.seeds, steps=args.steps, events=args.events,
                            side=1 if args.side == "buy" else -1, quantity=args.quantity,
                            backgrounds=tuple(b.strip() for b in args.backgrounds.split(",") if b.strip()),
                            seed=args.seed)
    bad = [b for b in cfg.backgrounds if b not in core.BACKGROUNDS]
    if bad:
        raise InputError(f"unknown background(s) {', '.join(bad)}: choose from {', '.join(core.BACKGROUNDS)}")
    res = agents.evaluate(source, cfg)
    md = agents.write(res, args.out or Path(args.run) / "agents")
    print(md.read_text())
    print(f"wrote {md}, {md.with_suffix('.json')} and {md.with_suffix('.png')}")
    return 0


def cmd_stress(args: argparse.Namespace) -> int:
    from . import load
    from .generation import stress

    if not 0 <= args.start <= 1:
        raise InputError(f"--start {args.start:g} is not a fraction of the session (0 to 1)")
    names = tuple(n.strip() for n in args.presets.split(",") if n.strip())
    for name in names:
        stress.preset(name)  # an unknown name is refused before anything runs
    sim = load(args.run, device="cpu")
    day = sim.day(args.day)
    if day.trades_only:
        raise InputError(f"{day.instrument.key} {day.date}: a trades-only feed: the stress presets are measured on a "
                         "book, and no order rests in this day")
    res = stress.effect(sim.model, sim.tokenizer, day, sim.start(day, args.start), names, seconds=args.seconds,
                        rollouts=args.rollouts, seed=args.seed)
    print(stress.markdown(res))
    return 0


def _debug_anywhere(sub: argparse._SubParsersAction) -> None:
    """``--debug`` after the command too (``tradefm ingest ... --debug``), not only before it."""
    for parser in sub.choices.values():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        for action in nested:
            _debug_anywhere(action)
        if not nested:
            parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                help="on an error, show the traceback instead of one line")


INPUT_ERRORS = (InputError, OSError, pa.ArrowInvalid, zipfile.BadZipFile)
"""What bad input raises: the library's own (:class:`~tradefm.events.InputError`), the operating system's
(a missing, unreadable or unwritable path), pyarrow's on a corrupt file, a zip that is not one."""

_OS_REASONS = {errno.ENOENT: "does not exist", errno.EISDIR: "is a folder, not a file",
               errno.ENOTDIR: "is not a folder (or a part of it is a file)", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied", errno.EROFS: "is on a read-only file system",
               errno.ENOSPC: "no space left on the device", errno.EEXIST: "already exists"}


def error_line(err: BaseException) -> str:
    """An error as one line: an OS error as ``PATH: why``, anything else as its message."""
    if isinstance(err, OSError) and err.filename is not None:
        why = _OS_REASONS.get(err.errno or 0, err.strerror or str(err))
        if err.errno == errno.EEXIST and Path(err.filename).is_file():  # a folder was to be made there
            why = "is a file, where a folder is wanted"
        text = f"{err.filename}: {why}" if err.filename2 is None else f"{err.filename} -> {err.filename2}: {why}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


class Parser(argparse.ArgumentParser):
    """argparse with its errors in the command's one-line form (the usage is one ``--help`` away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input is one line on stderr and exit status 2, a bug one line and status 1
    (``--debug``: the traceback, for either)."""
    args = build_parser().parse_args(argv)
    prog = " ".join(x for x in ("tradefm", args.command, getattr(args, "action", None)) if x)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except INPUT_ERRORS as e:
        if args.debug:
            raise
        print(f"{prog}: error: {error_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug, not bad input: said as such, in one line, with the way to see more
        if args.debug:
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {error_line(e)} (a bug in tradefm; run "
              f"`tradefm --debug {args.command} ...` for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
