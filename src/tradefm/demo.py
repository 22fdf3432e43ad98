"""The end-to-end demo on the LOBSTER samples: every stage of tradefm, one command, one report.

ingest -> exact book replay -> fit the tokenizer -> tokenize -> train the tiny preset -> closed-loop rollouts
from a held-out start -> fit and run Compound Hawkes and zero intelligence from the same book -> evaluate
against the real flow of the same window, with the real-vs-real floor -> participant impact and control ->
fill fidelity -> report (HTML + markdown).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from .events import EventDay, InputError, list_days, read_day


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


MARK = ".tradefm-demo"  # in every demo output folder: a rerun may replace what it holds


def _fresh(out: Path) -> Path:
    """An empty output folder for this run: an earlier demo's outputs are replaced (left there, its checkpoint
    would be resumed and nothing trained); a folder that is not a demo's is refused, never cleared."""
    if out.exists() and any(out.iterdir()):
        if not ((out / MARK).exists() or (out / "summary.json").exists()):
            raise InputError(f"{out} is not empty and is not an earlier demo run: pick another --out")
        _say(f"replacing the earlier demo run in {out}")
        for sub in ("events", "shards", "model", "rollouts", "report", "benchmark", "summary.json"):
            path = out / sub
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARK).touch()
    return out


CONTROL_ROLLOUTS, CONTROL_MINUTES, IMPACT_MINUTES = 6, 2.0, 2.0
RESPONSE_WINDOWS = 48  # context windows of the held-out flow the model's control response is averaged over
CONTROL_GUIDANCE = 4.0  # the tiny model reads the regime fields weakly: guidance makes their push measurable
STRESS_SECONDS = 60.0  # market time of each stress preset's rollouts


def _mid_path(day: EventDay) -> tuple[np.ndarray, np.ndarray]:
    from .evaluation.metrics import book_series

    s = book_series(day)
    return s["ts"], s["mid"]


def run(data: str | None, out: str | Path, steps: int = 300, minutes: float = 10.0, rollouts: int = 4,
        symbol: str = "GOOG", seed: int = 0, book_context: bool = True, join_touch: bool = True) -> Path:
    """The whole pipeline; returns the report's path. Deterministic for a seed."""
    from .book.replay import replay_lobster
    from .evaluation.control import control_effects, control_response
    from .evaluation.fills import fill_fidelity
    from .evaluation.metrics import session, window
    from .evaluation.report import write_report
    from .generation.output import write_rollouts
    from .generation.rollout import decode_real, generate, twap
    from .ingest import ingest
    from .model import TradeFM
    from .samples import find_samples
    from .shards import fit_tokenizer, tokenize
    from .tokenizer import Tokenizer
    from .training import TrainConfig, train

    t0 = time.time()
    torch.manual_seed(seed)
    zips = find_samples(data)
    out = _fresh(Path(out))
    _say(f"LOBSTER samples: {', '.join(z.name for z in zips)}")
    ingest([str(z) for z in zips], out / "events", "lobster", False, quiet=True)
    reports = [r for z in zips for r in replay_lobster(z)]
    exact = sum(r.matched_rows for r in reports) / sum(r.rows for r in reports)
    _say(f"book replay: {exact:.2%} of {sum(r.rows for r in reports):,} orderbook rows exact")

    from .codec import FEATURES
    from .shards import SplitConfig

    # a level-1 file is not a symbol's order flow: it leaves out every event behind the touch (all of AAPL's adds
    # are at or inside the spread there), so such days are held out of training, as an unseen-symbol test
    days = {p: read_day(p) for p in list_days(out / "events")}
    shallow = sorted({d.instrument.symbol for d in days.values() if d.levels == 1})
    splits = SplitConfig(holdout_symbols=tuple(s for s in shallow if s != symbol))
    if splits.holdout_symbols:
        _say(f"held out of training (level-1 files only): {', '.join(splits.holdout_symbols)}")
    # the book-context features (beyond the paper, tradefm.codec.FEATURES) or the paper's own
    features = FEATURES["book"] if book_context else FEATURES["paper"]
    features = replace(features, join_touch=join_touch and book_context)
    tok = fit_tokenizer(out / "events", splits, features=features, progress=False)
    manifest = tokenize(out / "events", tok, out / "shards", splits, progress=False)
    _say(f"tokens per split: {manifest['counts']}")

    cfg = TrainConfig(shards=str(out / "shards"), out=str(out / "model"), preset="tiny", seq_len=128, batch_size=16,
                      max_steps=steps, lr=3e-3, min_lr=3e-4, warmup_steps=min(50, steps // 5),
                      eval_every=max(steps // 4, 1), eval_batches=8, ckpt_every=steps, seed=seed)
    metrics = train(cfg)
    model = TradeFM.from_pretrained(out / "model" / "model")
    _say(f"trained tiny ({model.num_params() / 1e6:.1f}M parameters): validation perplexity "
         f"{metrics.get('val_ppl', float('nan')):.0f}")

    day = next(d for d in days.values() if d.instrument.symbol == symbol)
    first, last = session(day)
    start = int(first + 0.85 * (last - first))  # the start of the held-out test part of the day
    end = start + int(minutes * 60e9)
    real = window(day, start, end)
    before = window(day, start - (end - start), start)  # the real-vs-real floor: the window just before

    _say(f"generating {rollouts} TradeFM rollouts of {minutes:g} minutes of {symbol} from the held-out start")
    ours = generate(model, Tokenizer.load(out / "model" / "model" / "tokenizer.json"), day, start, 200_000,
                    rollouts, seed, duration_s=minutes * 60)
    write_rollouts(ours, out / "rollouts" / "tradefm")

    from .baselines import hawkes, zero_intelligence

    # the baselines learn from what the model learned from: the training part of the day (not the validation part
    # between it and the start, which the model never fits)
    fit_window = window(day, first, int(first + splits.val_from * (last - first)))
    _say("fitting Compound Hawkes and zero intelligence on the training part of the day")
    hp = hawkes.fit([fit_window])
    zp = zero_intelligence.fit([fit_window])
    hk = [hawkes.generate(hp, day, start, minutes * 60, seed + k) for k in range(rollouts)]
    zi = [zero_intelligence.generate(zp, day, start, minutes * 60, seed + k) for k in range(rollouts)]
    write_rollouts(hk, out / "rollouts" / "hawkes")
    write_rollouts(zi, out / "rollouts" / "zero_intelligence")

    _say("participant impact, control and stress presets")
    model_tok = Tokenizer.load(out / "model" / "model" / "tokenizer.json")
    impact_minutes = min(IMPACT_MINUTES, minutes)
    plan = twap(side=-1, total=20_000, minutes=impact_minutes, slices=20)
    with_twap = generate(model, model_tok, day, start, 200_000, 2, seed, participant=plan,
                         duration_s=impact_minutes * 60)
    without = generate(model, model_tok, day, start, 200_000, 2, seed, duration_s=impact_minutes * 60)
    control_minutes = min(CONTROL_MINUTES, minutes)
    control = control_effects(model, model_tok, day, start, seed, CONTROL_ROLLOUTS, control_minutes,
                              CONTROL_GUIDANCE)
    response = control_response(model, model_tok, day, start, last + 1, RESPONSE_WINDOWS)  # the held-out part
    from .generation import stress

    stressed = stress.effect(model, model_tok, day, start, seconds=STRESS_SECONDS, rollouts=2, seed=seed)
    impact = []
    for label, pair in (("with TWAP sell", with_twap), ("without", without)):
        paths = [m[np.isfinite(m)] for m in (_mid_path(d)[1] for d in pair)]
        moves = [m[-1] - m[0] for m in paths if len(m) > 1]
        impact.append((label, float(np.mean(moves)) / day.instrument.tick_size if moves else float("nan")))
    fills = fill_fidelity(day, first, start)

    _say("evaluating against the real window and writing the report")
    decoded = decode_real(model_tok, day, start, minutes * 60, rollouts, seed)
    html = write_report(out / "report", real, {"TradeFM": ours, "Compound Hawkes": hk, "zero-intelligence": zi},
                        floor_pair=(before, real), seed=seed, decoded=decoded)
    extra = ["", f"## Participant impact (TWAP sell of 20,000 shares over {impact_minutes:g} minutes, 2 rollouts "
             "each)", "", "| rollouts | mean mid change (ticks) |", "|---|---|"]
    extra += [f"| {label} | {move:+.1f} |" for label, move in impact]
    extra += ["", f"## Control (regime fields free or fixed, guidance {CONTROL_GUIDANCE:g}; {CONTROL_ROLLOUTS} "
              f"rollouts of {control_minutes:g} minutes each, mean ± standard error over rollouts)", "",
              "| control | volume added per minute | events per minute | inter-arrival variance (s^2) |",
              "|---|---|---|---|"]
    extra += [f"| {k} | {v['volume_per_min']:,.0f} ± {v['volume_per_min_se']:,.0f} | "
              f"{v['events_per_min']:,.0f} ± {v['events_per_min_se']:,.0f} | "
              f"{v['inter_arrival_var']:.3g} ± {v['inter_arrival_var_se']:.2g} |" for k, v in control.items()]
    extra += ["", "The model's own response on the real held-out flow (fields as recorded, or fixed at every position; "
              "expected values of the next event, no sampling):", "",
              "| control | E[log inter-arrival (s)] | E[log(1 + volume)] | P(add) |", "|---|---|---|---|"]
    extra += [f"| {k} | {v['log_dt']:.3f} | {v['log_volume']:.3f} | {v['p_add']:.3f} |" for k, v in response.items()]
    extra += ["", f"## Stress presets ({STRESS_SECONDS:g} s of market time from the start, 2 rollouts each; "
              "`tradefm stress RUN`)", "", stress.markdown(stressed)]
    extra += ["", "## Fill fidelity (real order flow replayed through the engine, training part of the day)", "",
              "| per-minute fill count corr | per-minute volume corr | fill-size KS |", "|---|---|---|",
              f"| {fills.count_corr:.3f} | {fills.volume_corr:.3f} | {fills.size_ks:.3f} |"]
    _say("pooled held-out benchmark: windows of every day's test part, every generator, intervals over windows")
    from .evaluation import benchmark

    bench = benchmark.run(model, model_tok, list(days.values()), splits, benchmark.preset("demo", seed=seed),
                          progress=False, say=_say)
    benchmark.write(bench, out / "benchmark")
    pooled_group = benchmark.ALL if benchmark.ALL in bench.headline else next(iter(bench.headline))
    headline = bench.headline[pooled_group]
    extra += ["", f"## Pooled held-out benchmark ({sum(len(w) for w in bench.windows.values())} windows of "
              f"{bench.config.minutes:g} minutes over {len(bench.windows)} days; `tradefm benchmark` for more)", "",
              *[line for line in benchmark.markdown(bench).splitlines()[2:] if line.startswith("- **")]]
    table = (out / "report" / "table.md").read_text() + "\n".join(extra) + "\n"
    (out / "report" / "table.md").write_text(table)
    (out / "summary.json").write_text(json.dumps({
        "replay_exact": exact, "tokens": manifest["counts"], "train": metrics, "window": [start, end],
        "impact_ticks": dict(impact), "control": control, "control_response": response, "stress": stressed,
        "fills": asdict(fills), "benchmark_headline": {pooled_group: headline},
        "minutes": round((time.time() - t0) / 60, 1)}, indent=1, default=str))
    print("\n" + table)
    _say(f"done in {(time.time() - t0) / 60:.1f} minutes: {html}")
    return html
