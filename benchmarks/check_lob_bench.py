"""Score the benchmark's rollouts with LOB-Bench's own code, side by side with ours.

    tradefm benchmark RUN --preset standard --lob-bench runs/lob_bench      # writes every window in its layout
    python benchmarks/check_lob_bench.py --code PATH/TO/lob_bench --data runs/lob_bench [--json out.json]

LOB-Bench (github.com/peernagy/lob_bench) is not a dependency: this runs its unconditional scores (its
``run_bench.DEFAULT_SCORING_CONFIG``: L1 and Wasserstein per score) in an environment where its own requirements
(pandas, statsmodels, scikit-learn, seaborn, plotly) are installed. Its ``Simple_Loader`` builds each generated
file's loader in a lambda that binds late, so every generated series of a window would be read from its last
file; the loader here binds each file, so every rollout is scored. Everything else is LOB-Bench's. With the floor
written too (the source ``real_vs_real``), it also prints each source's mean excess over it, and TradeFM's excess
as a share of Compound Hawkes'.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np


def _loader(data_loading, folder: Path):
    """LOB-Bench's own loader, with each generated file bound to its own sequence entry."""
    base = data_loading.Simple_Loader(str(folder / "data_real"), str(folder / "data_gen"), str(folder / "data_cond"))

    class Bound:
        def __len__(self) -> int:
            return len(base.paths)

        def __getitem__(self, i: int):
            if i >= len(base.paths):
                raise IndexError(i)
            entry = base.paths[i]  # (date, [real_id,] real msg, real book, gen msgs, gen books, cond msg, cond book)
            date, head, (rmp, rbp, gmp, gbp, cmp, cbp) = entry[0], entry[1:-6], entry[-6:]

            def messages(path: str):
                return lambda: data_loading.add_date_to_time(data_loading.load_message_df(path), date)

            def book(path: str):
                return lambda: data_loading.load_book_df(path)

            return data_loading.Lobster_Sequence(
                date, *head, messages(rmp), book(rbp), num_gen_series=(len(gmp),),
                m_gen=tuple(messages(p) for p in gmp), b_gen=tuple(book(p) for p in gbp),
                m_cond=messages(cmp) if cmp else None, b_cond=book(cbp) if cbp else None)

    return Bound()


def score(code: Path, folder: Path) -> dict[str, dict[str, float]]:
    """LOB-Bench's unconditional scores of one run folder (SOURCE/SYMBOL/DATE): {score: {"l1": .., ...}}."""
    sys.path.insert(0, str(code))  # LOB-Bench's modules, from its checkout
    import data_loading
    import run_bench
    import scoring

    loader = _loader(data_loading, folder)
    with contextlib.redirect_stdout(io.StringIO()):
        scores, _, _ = scoring.run_benchmark(loader, run_bench.DEFAULT_SCORING_CONFIG, run_bench.DEFAULT_METRICS)
    return {name: {m: float(v[0]) for m, v in per.items()} for name, per in scores.items()}


MODEL, HAWKES, FLOOR = "tradefm", "compound_hawkes", "real_vs_real"  # the source folders' names


def _excess(source: dict, floor: dict, metric: str) -> float:
    """A source's mean distance less the floor's (the other held-out part's windows scored the same way), over the
    scores and days both have."""
    diffs = [source[d][name][metric] - floor[d][name][metric] for d in source if d in floor
             for name in source[d] if name in floor[d]]
    diffs = [x for x in diffs if np.isfinite(x)]
    return float(np.mean(diffs)) if diffs else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--code", type=Path, required=True, help="a checkout of github.com/peernagy/lob_bench")
    p.add_argument("--data", type=Path, required=True, help="what `tradefm benchmark --lob-bench DIR` wrote")
    p.add_argument("--json", type=Path, help="also write the scores here")
    args = p.parse_args(argv)
    runs = sorted(d for d in args.data.glob("*/*/*") if (d / "data_gen").is_dir())
    if not runs:
        print(f"check_lob_bench: error: no SOURCE/SYMBOL/DATE/data_gen folders under {args.data}", file=sys.stderr)
        return 2
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for run in runs:
        source, stock, day = run.relative_to(args.data).parts
        print(f"scoring {source} {stock} {day} ...", flush=True)
        out.setdefault(source, {})[f"{stock} {day}"] = score(args.code, run)
    names = sorted({s for per in out.values() for d in per.values() for s in d})
    sources = list(out)
    for metric in ("l1", "wasserstein"):
        print(f"\n| {metric} | " + " | ".join(sources) + " |\n|---|" + "---:|" * len(sources))
        means = {s: [] for s in sources}
        for name in names:
            cells = []
            for s in sources:
                v = [d[name][metric] for d in out[s].values() if name in d and np.isfinite(d[name][metric])]
                cells.append(f"{np.mean(v):.3f}" if v else "-")
                if v:
                    means[s].append(np.mean(v))
            print(f"| {name} | " + " | ".join(cells) + " |")
        print("| **mean** | " + " | ".join(f"**{np.mean(means[s]):.3f}**" for s in sources) + " |")
        if FLOOR in out and MODEL in out and HAWKES in out:
            excess = {s: _excess(out[s], out[FLOOR], metric) for s in sources if s != FLOOR}
            print(f"\nmean {metric} excess over the real-vs-real floor: "
                  + ", ".join(f"{s} {v:.3f}" for s, v in excess.items())
                  + f"; {MODEL} / {HAWKES}: {excess[MODEL] / excess[HAWKES]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
