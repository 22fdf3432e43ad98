"""Events per second from canonical Parquet to written token shards, next to pyarrow's own read (the floor).

Run from the repository root:  .venv/bin/python benchmarks/bench_tokenize.py
It ingests the real samples in ../shared/data (LOBSTER zips and the Bitstamp 2026 day) into a temporary
store, fits a tokenizer, then times, pinned to one core and in one run:
  floor:    pyarrow.parquet.read_table of every symbol-day file;
  tradefm:  tradefm.shards.tokenize (read + features + tokens + shard files + manifest).
Peak memory (VmHWM) is measured in fresh subprocesses on stores of 1x, 2x, 4x and 8x the days, to show it does
not grow with the number of files.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TRADEFM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def build_store(store: Path, copies: int) -> None:
    from tradefm.cli import ingest

    sources = sorted(str(p) for p in (DATA / "lobster").glob("*.zip"))
    sources.append(str(DATA / "bitstamp" / "2026-05-02" / "orders.csv.gz"))
    ingest(sources, store, None, False, quiet=True)
    days = sorted(store.rglob("events.parquet"))
    for c in range(1, copies):  # the same days under other symbols: more files, same size each
        for p in days:
            parts = list(p.relative_to(store).parts)
            parts[1] = f"{parts[1]}_copy{c}"
            (store / Path(*parts)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, store / Path(*parts))


def peak_rss_mb(store: Path, tok: Path) -> float:
    """Tokenize a store in a fresh process and return its peak RSS."""
    code = (
        "import resource, sys; from tradefm.shards import tokenize; from tradefm.tokenizer import Tokenizer;"
        f"tokenize({str(store)!r}, Tokenizer.load({str(tok)!r}), sys.argv[1], progress=False);"
        "print(next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM')))"
    )
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run([sys.executable, "-c", code, out], capture_output=True, text=True, check=True)
    return int(r.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if not (DATA / "lobster").exists():
        sys.exit(f"real data not found at {DATA}")
    pin_one_core()
    import pyarrow.parquet as pq

    from tradefm.events import list_days
    from tradefm.shards import fit_tokenizer, tokenize

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = tmp / "events"
        build_store(store, 1)
        tok = fit_tokenizer(store, progress=False)
        tok_path = tok.save(tmp / "tok.json")
        days = list_days(store)
        events = sum(pq.read_metadata(p).num_rows for p in days)
        tokenize(store, tok, tmp / "warm", progress=False)  # compile the engine kernels once

        def best(fn) -> float:
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return min(times)

        floor = best(lambda: [pq.read_table(p) for p in days])
        ours = best(lambda: tokenize(store, tok, tmp / "shards", progress=False))
        largest = max(days, key=lambda p: pq.read_metadata(p).num_rows)
        largest_name, largest_rows = largest.parent.parent.name, pq.read_metadata(largest).num_rows
        rss = {}
        for copies in (1, 2, 4, 8):
            many = tmp / f"events{copies}"
            build_store(many, copies)
            rss[copies * len(days)] = peak_rss_mb(many, tok_path)
        tokens = json.loads((tmp / "shards" / "manifest.json").read_text())["counts"]
    rows = [
        ("pyarrow read_table (floor)", floor, events / floor, 1.0),
        ("tradefm tokenize (Parquet -> shards)", ours, events / ours, ours / floor),
    ]
    print(f"{len(days)} symbol-days, {events:,} events -> {sum(tokens.values()):,} tokens; one core; best of "
          f"{args.repeat}; largest day {largest_name} ({largest_rows:,} events)\n")
    print("| step | seconds | events/s | x floor |\n|---|---|---|---|")
    for name, sec, rate, ratio in rows:
        print(f"| {name} | {sec:.3f} | {rate / 1e6:.2f} M | {ratio:.2f} |")
    print("\npeak RSS of `tokenize` in a fresh process: "
          + ", ".join(f"{mb:.0f} MB for {n} days" for n, mb in rss.items()))
    print(f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
