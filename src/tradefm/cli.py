"""The ``tradefm`` command: one sub-command per pipeline stage, plus ``demo`` that runs them end to end."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import readers
from .events import BadInputError, EventDay, Kind, write_day


def _span(day: EventDay) -> str:
    """First and last market event (snapshot records may carry old entry times)."""
    ts = day.table.column("ts").to_numpy()[~day.table.column("snapshot").to_numpy()]
    if not len(ts):
        return "-"
    fmt = "%H:%M:%S"
    a, b = (datetime.fromtimestamp(t / 1e9, UTC).strftime(fmt) for t in (ts.min(), ts.max()))
    return f"{a}-{b} UTC"


def summarize(day: EventDay) -> dict[str, object]:
    t = day.table
    snap = t.column("snapshot").to_numpy()
    kinds = Counter(Kind(k).name.lower() for k in t.column("kind").to_numpy()[~snap])
    reveals = day.notes.get("reveals")
    reveals = reveals if isinstance(reveals, int) else 0
    return {"symbol": day.instrument.symbol, "venue": day.instrument.venue, "date": day.date,
            "events": int((~snap).sum()), "snapshot": int(snap.sum()) - reveals, "reveals": reveals,
            "span": _span(day),
            "kinds": dict(sorted(kinds.items())), "bad_rows": int(day.notes.get("bad_rows", 0))}


def ingest(sources: list[str], out: Path, fmt: str | None, skip_bad: bool, quiet: bool = False) -> list[dict]:
    """Read every source and write its symbol-days. One symbol-day is one unit: when two sources hold the same
    one (LOBSTER's level-1 and level-10 files of a day), the one with more events is kept, and that is said."""
    rows: dict[str, dict] = {}
    for src in tqdm(sources, desc="ingest", unit="file", disable=quiet):
        for day in readers.read(src, fmt, skip_bad=skip_bad):
            s = {"source": src, **summarize(day)}
            key = f"{s['venue']}/{s['symbol']}/{s['date']}"
            kept = rows.get(key)
            if kept is not None and kept["events"] >= s["events"]:
                note = f"  (not kept: {Path(kept['source']).name} has more events for this symbol-day)"
            else:
                s["path"] = str(write_day(day, out))
                note = f"  (replaces {Path(kept['source']).name})" if kept else ""
                rows[key] = s
            if not quiet:
                kinds = " ".join(f"{k}={v}" for k, v in s["kinds"].items())
                tqdm.write(f"{Path(src).name}: {s['symbol']} {s['date']} {s['events']:,} events "
                           f"(+{s['snapshot']} snapshot" + (f", {s['reveals']:,} reveals" if s["reveals"] else "")
                           + f") {s['span']}  {kinds}"
                           + (f"  skipped {s['bad_rows']} bad rows" if s["bad_rows"] else "") + note)
    return list(rows.values())


def cmd_ingest(args: argparse.Namespace) -> int:
    ingest(args.sources, Path(args.out), args.format, args.skip_bad)
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


def _features(name: str, pairs: list[str]):
    """A named feature preset with ``KEY=VALUE`` overrides (``--feature cancel_from=reference``)."""
    from dataclasses import fields

    from .codec import FeatureConfig, features

    kinds = {f.name: f.type for f in fields(FeatureConfig)}
    overrides: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in kinds:
            raise ValueError(f"--feature wants KEY=VALUE with KEY one of {', '.join(kinds)}, got {pair!r}")
        kind = kinds[key]
        if kind == "bool":
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--feature {key} wants true or false, got {value!r}")
            overrides[key] = value.lower() in ("true", "1")
        else:
            overrides[key] = float(value) if kind == "float" else value
    return features(name, **overrides)


def cmd_fit_tokenizer(args: argparse.Namespace) -> int:
    from .shards import fit_tokenizer

    features = _features(args.features, args.feature)
    tok = fit_tokenizer(args.events, _splits(args), features=features)
    tok.save(args.out)
    tiers = ", ".join(f"{k}: tier {v['tier']}" for k, v in tok.instruments.items())
    print(f"tokenizer {tok.hash} ({tok.vocab_size:,} ids) fitted on {len(tok.instruments)} instruments "
          f"({tiers}) -> {args.out}")
    return 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    from .shards import tokenize
    from .tokenizer import Tokenizer

    manifest = tokenize(args.events, Tokenizer.load(args.tokenizer), args.out, _splits(args))
    counts = ", ".join(f"{k} {v:,}" for k, v in manifest["counts"].items() if v)
    print(f"{len(manifest['files'])} shards, tokens per split: {counts} -> {args.out}/manifest.json")
    return 0


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


def cmd_token_stats(args: argparse.Namespace) -> int:
    from .shards import token_stats
    from .tokenizer import Tokenizer

    print(token_report(token_stats(args.shards, Tokenizer.load(args.tokenizer))))
    return 0


def _overrides(pairs: list[str]) -> dict[str, object]:
    """--set key=value, with values read as JSON when they parse (numbers, true/false, lists)."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set wants key=value, not {pair!r}")
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
    from .evaluation.perplexity import perplexity, table
    from .model import TradeFM

    splits = tuple(args.split) or ("val", "test", "test_symbol", "test_venue")
    rows = perplexity(TradeFM.from_pretrained(args.model), args.shards, splits)
    print(table(rows))
    return 0


def _start_ts(day: EventDay, start: str | None) -> int:
    """--start as a fraction of the day's session (0.85) or a local clock time (14:30 or 14:30:15)."""
    from zoneinfo import ZoneInfo

    ts = day.table.column("ts").to_numpy()[~day.table.column("snapshot").to_numpy()]
    start = start or "0.85"
    if ":" not in start:
        return int(ts[0] + float(start) * (ts[-1] - ts[0]))
    clock = datetime.fromisoformat(f"{day.date}T{start}").replace(tzinfo=ZoneInfo(day.instrument.timezone))
    return int(clock.timestamp() * 1e9)


def _participant(spec: str | None):
    """--twap SIDE:SIZE:MINUTES:SLICES (side buy or sell)."""
    if not spec:
        return None
    from .generation.rollout import twap

    side, size, minutes, slices = spec.split(":")
    if side not in ("buy", "sell"):
        raise ValueError(f"--twap side must be buy or sell, not {side!r}")
    return twap(1 if side == "buy" else -1, int(size), float(minutes), int(slices))


def cmd_generate(args: argparse.Namespace) -> int:
    import torch

    from .events import read_day
    from .generation.output import write_rollouts
    from .generation.rollout import Sampling, generate
    from .model import TradeFM
    from .tokenizer import Tokenizer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")  # the books stay on the CPU
    model = TradeFM.from_pretrained(args.model, device=device)
    tok = Tokenizer.load(Path(args.model) / "tokenizer.json")
    day = read_day(args.source)
    sampling = Sampling(args.temperature, args.top_k, args.top_p, args.repetition_penalty, args.guidance)
    control = {k: int(v) for k, v in (item.split("=") for item in args.control.split(","))} if args.control else None
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


def _seconds_after_midnight(clock: str) -> float:
    h, m, *sec = (float(x) for x in clock.split(":"))
    return h * 3600 + m * 60 + (sec[0] if sec else 0.0)


def cmd_baseline_fit(args: argparse.Namespace) -> int:
    """Fit a baseline on real symbol-days (optionally one clock window of each) and write its parameters."""
    from .events import atomic_path, read_day

    days = [read_day(p) for p in args.events]
    window = None
    if args.start or args.end:
        window = (_seconds_after_midnight(args.start or "00:00"), _seconds_after_midnight(args.end or "24:00"))
    params = _baseline(args.kind)[0].fit(days, window=window)
    out = Path(args.out)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps({"kind": args.kind, **json.loads(params.to_json())}))
    print((params.summary() + "\n" if hasattr(params, "summary") else "") + f"{args.kind} parameters -> {out}")
    return 0


def cmd_baseline_generate(args: argparse.Namespace) -> int:
    """Rollouts of fitted baseline parameters from a real book, in the same formats as the model's."""
    from .events import read_day
    from .generation.output import write_rollouts

    text = Path(args.params).read_text()
    kind = json.loads(text).get("kind")
    if kind not in BASELINES:
        raise ValueError(f"{args.params} holds no baseline parameters (kind {kind!r}, expected one of {BASELINES})")
    module, params_class = _baseline(kind)
    params = params_class.from_json(text)
    day = read_day(args.source)
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
        raise FileNotFoundError(f"no events.parquet under {', '.join(folders)}")
    return [read_day(p) for p in paths]


def _real_window(args: argparse.Namespace, real: EventDay, generated: list[EventDay]) -> EventDay:
    """The real day cut to the generated days' time span (the same window), unless --start/--end say otherwise."""
    from .evaluation.metrics import window

    ts = np.concatenate([g.table.column("ts").to_numpy()[~g.table.column("snapshot").to_numpy()] for g in generated])
    start = _start_ts(real, args.start) if args.start else int(ts.min())
    end = _start_ts(real, args.end) if args.end else int(ts.max())
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
    from .shards import SplitConfig
    from .tokenizer import Tokenizer

    run = Path(args.run)
    model_dir = next((d for d in (run / "model" / "model", run / "model", run) if (d / "tokenizer.json").exists()),
                     None)
    if model_dir is None:
        raise FileNotFoundError(f"{run}: no trained model (a folder with tokenizer.json, or RUN/model/model)")
    manifest = next((m for m in (run / "shards" / "manifest.json", run / "manifest.json") if m.exists()), None)
    splits, events = SplitConfig(), run / "events"
    if manifest is not None:
        m = json.loads(manifest.read_text())
        raw = m.get("splits", {})
        splits = SplitConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        events = events if events.exists() else Path(m.get("events_dir", events))
    events = Path(args.events) if args.events else events
    cfg = benchmark.preset(args.preset, **{k: v for k, v in (("windows", args.windows), ("minutes", args.minutes),
                                                             ("rollouts", args.rollouts), ("seed", args.seed))
                                           if v is not None})
    model = TradeFM.from_pretrained(model_dir).eval()
    tok = Tokenizer.load(model_dir / "tokenizer.json")
    days = [read_day(p) for p in list_days(events)]
    if not days:
        raise FileNotFoundError(f"no symbol-days under {events}")
    b = benchmark.run(model, tok, days, splits, cfg)
    path = benchmark.write(b, args.out or run / "benchmark")
    print(path.read_text() + f"\nwritten: {path} (and benchmark.json, benchmark.png)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run

    run(args.data, args.out, steps=args.steps, minutes=args.minutes, rollouts=args.rollouts, seed=args.seed,
        book_context=not args.paper, join_touch=args.join_touch)
    return 0


def _rollout_args(p: argparse.ArgumentParser) -> None:
    """Where rollouts start and how many: shared by every generator's command."""
    p.add_argument("--from", dest="source", required=True, help="a symbol-day events.parquet (from ingest)")
    p.add_argument("--start", help="fraction of the session (0.85, the default) or local time (14:30)")
    p.add_argument("--rollouts", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tradefm", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ingest", help="read raw venue files into canonical Parquet symbol-days")
    s.add_argument("sources", nargs="+", help="files, zips or folders")
    s.add_argument("--out", required=True, help="event store folder")
    s.add_argument("--format", choices=readers.FORMATS, help="source format (detected when omitted)")
    s.add_argument("--skip-bad", action="store_true", help="count and report bad rows instead of stopping")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("replay", help="replay LOBSTER messages and check the book against the orderbook file")
    s.add_argument("sources", nargs="+")
    s.set_defaults(func=cmd_replay)

    def split_options(s: argparse.ArgumentParser) -> None:
        s.add_argument("--val-from", type=float, default=0.70, help="fraction of each day where validation starts")
        s.add_argument("--test-from", type=float, default=0.85, help="fraction of each day where test starts")
        s.add_argument("--holdout-symbol", action="append", default=[], help="a symbol kept out (repeatable)")
        s.add_argument("--holdout-venue", action="append", default=[], help="a venue kept out (repeatable)")

    s = sub.add_parser("fit-tokenizer", help="fit the universal bins on the calibration window of an event store")
    s.add_argument("events", help="event store folder (from ingest)")
    s.add_argument("--out", required=True, help="tokenizer JSON file")
    s.add_argument("--features", choices=("paper", "book"), default="paper",
                   help="feature preset: the paper's, or with book context (docs/TOKENS.md)")
    s.add_argument("--feature", action="append", default=[], metavar="KEY=VALUE",
                   help="override one preset field, e.g. volume=notional, half_life_s=5, cancel_from=reference")
    split_options(s)
    s.set_defaults(func=cmd_fit_tokenizer)

    s = sub.add_parser("tokenize", help="write token shards and a manifest from an event store")
    s.add_argument("events")
    s.add_argument("--tokenizer", required=True)
    s.add_argument("--out", required=True)
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
    s.add_argument("model", help="a folder saved by training (model.safetensors + config.json)")
    s.add_argument("shards")
    s.add_argument("--split", action="append", default=[], help="splits to score (default: all but train)")
    s.set_defaults(func=cmd_perplexity)

    s = sub.add_parser("generate", help="closed-loop rollouts of a model from a real book (Parquet + LOBSTER CSV)")
    s.add_argument("model", help="a model folder (with tokenizer.json)")
    _rollout_args(s)
    s.add_argument("--events", type=int, default=1000)
    s.add_argument("--device", help="where the model runs: cpu, cuda, cuda:1 (default: cuda when there is one)")
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--top-k", type=int, default=0)
    s.add_argument("--top-p", type=float, default=1.0)
    s.add_argument("--repetition-penalty", type=float, default=1.2)
    s.add_argument("--guidance", type=float, default=1.0,
                   help="with --control: free + G * (controlled - free) logits (1: plain conditioning)")
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
    b.add_argument("--minutes", type=float, default=10.0)
    b.add_argument("--out", required=True)
    b.set_defaults(func=cmd_baseline_generate)

    s = sub.add_parser("benchmark", help="pooled held-out realism: many windows, every generator, the floor, CIs")
    s.add_argument("run", help="a run folder (model/model, events/, shards/manifest.json), or a model folder")
    s.add_argument("--events", help="the event store to take days from (default: the run's, or its manifest's)")
    s.add_argument("--preset", default="standard", help="demo, standard or full (windows, minutes, rollouts)")
    s.add_argument("--windows", type=int, help="windows per day in its test part (overrides the preset)")
    s.add_argument("--minutes", type=float, help="window length")
    s.add_argument("--rollouts", type=int, help="rollouts of each source per window")
    s.add_argument("--seed", type=int)
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

    s = sub.add_parser("demo", help="the whole pipeline on the LOBSTER samples, ending in a report")
    s.add_argument("--data", help="folder with the LOBSTER sample zips")
    s.add_argument("--out", default="runs/demo")
    s.add_argument("--steps", type=int, default=300, help="training steps of the tiny model")
    s.add_argument("--minutes", type=float, default=10.0, help="length of the generated window")
    s.add_argument("--rollouts", type=int, default=4)
    s.add_argument("--seed", type=int, default=0)
    which = s.add_mutually_exclusive_group()
    which.add_argument("--paper", action="store_true", help="the paper's features only (no book context)")
    which.add_argument("--no-join-touch", dest="join_touch", action="store_false",
                       help="book context without giving adds that join the best quote a depth of their own")
    s.set_defaults(func=cmd_demo)
    return p


def cmd_agents(args: argparse.Namespace) -> int:
    try:
        from .env import agents, core
    except ImportError as e:
        raise ValueError(f"the agents need gymnasium: pip install 'tradefm[agents]' ({e})") from None
    source = core.Source(args.run, args.day)
    cfg = agents.Evaluation(starts=args.starts, seeds=args.seeds, steps=args.steps, events=args.events,
                            side=1 if args.side == "buy" else -1, quantity=args.quantity,
                            backgrounds=tuple(b.strip() for b in args.backgrounds.split(",") if b.strip()),
                            seed=args.seed)
    bad = [b for b in cfg.backgrounds if b not in core.BACKGROUNDS]
    if bad:
        raise ValueError(f"unknown background(s) {', '.join(bad)}: choose from {', '.join(core.BACKGROUNDS)}")
    res = agents.evaluate(source, cfg)
    md = agents.write(res, args.out or Path(args.run) / "agents")
    print(md.read_text())
    print(f"wrote {md}, {md.with_suffix('.json')} and {md.with_suffix('.png')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BadInputError as e:
        print(f"tradefm: bad input: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as e:
        print(f"tradefm: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
