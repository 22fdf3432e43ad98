"""Many symbol-days: time and peak memory of ingest, fit-tokenizer, tokenize and one epoch of data loading at
10, 100 (and, with ``--sizes 10 100 1000``, 1,000) symbol-days, events/s per core against the Parquet read floor,
and the speedup of ``--workers 2``.

Run from the repository root:  .venv/bin/python benchmarks/bench_scale.py [--sizes 10 100] [--workers 2]
The symbol-days are the real LOBSTER sample days (the deepest file of AAPL, AMZN and GOOG) under new symbols
and dates, ten dates per symbol:
  ingest:   N message files named for their new symbol and date, each a link to a real day's CSV (the reader
            takes the symbol and date from the name), read and written as a store;
  the rest: a store of N copies of the ingested days' Parquet files (``tradefm.events.copy_day``), not ingested
            again.
Every stage runs in a fresh process; its time is the stage alone (imports and the compiled kernels' cache
load excluded, after a warm-up run), its memory the peak RSS (VmHWM) of that process, the peak of its
anonymous memory (sampled every 5 ms: for data loading, VmHWM also counts the shard pages that the memory map
touched, which the kernel can drop), the peak RSS of its largest worker process and the peak of the RSS summed
over the process and its workers (shared pages counted in each; worker figures sampled every 0.1 s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TRADEFM_SHARED_DATA", ROOT.parent / "shared" / "data"))
BASES = ("AAPL_2012-06-21_1", "AMZN_2012-06-21_5", "GOOG_2012-06-21_10")
DATES_PER_SYMBOL = 10
STAGES = ("ingest", "fit", "tokenize", "load")

DRIVER = r"""
import json, os, sys, threading, time
peak = {"anon": 0, "worker": 0, "tree": 0, "watch_cpu": 0.0}
cpu = {}  # worker pid -> its CPU seconds when last seen
tck = os.sysconf("SC_CLK_TCK")
def status(pid, key):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
def descendants():
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [os.getpid()]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out
def watch():
    tick = 0
    while True:
        peak["anon"] = max(peak["anon"], status("self", "RssAnon"))
        if tick % 20 == 0:  # the worker processes (children of the forkserver): every 0.1 s
            kids = descendants()
            peak["worker"] = max([peak["worker"]] + [status(k, "VmHWM") for k in kids])
            for k in kids:
                try:
                    f = open(f"/proc/{k}/stat").read().rsplit(")", 1)[1].split()
                    cpu[k] = (int(f[11]) + int(f[12])) / tck
                except (OSError, IndexError, ValueError):
                    pass
            peak["tree"] = max(peak["tree"], status("self", "VmRSS") + sum(status(k, "VmRSS") for k in kids))
        tick += 1
        peak["watch_cpu"] = time.thread_time()
        time.sleep(0.005)
threading.Thread(target=watch, daemon=True).start()
stage, args = sys.argv[1], json.load(open(sys.argv[2]))
from pathlib import Path
w = args.get("workers", 1)
if stage == "ingest":  # each stage imports only what it needs: the memory is the stage's own
    from tradefm.ingest import ingest
elif stage in ("fit", "tokenize"):
    from tradefm.shards import fit_tokenizer, tokenize
    from tradefm.tokenizer import Tokenizer
elif stage == "load":
    from tradefm.training import Windows
else:
    import pyarrow.parquet as pq
    from tradefm.events import list_days
import resource
def own_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime - peak["watch_cpu"]  # less the watching thread's own
c0 = own_cpu()
t0 = time.perf_counter()
if stage == "ingest":
    ingest(args["sources"], Path(args["out"]), None, False, quiet=True, workers=w)
elif stage == "fit":
    fit_tokenizer(args["events"], progress=False, workers=w).save(args["out"])
elif stage == "tokenize":
    tokenize(args["events"], Tokenizer.load(args["tokenizer"]), args["out"], progress=False, workers=w)
elif stage == "load":  # one epoch: as many random windows as the training tokens hold
    win = Windows(args["shards"], "train", 256, 0)
    total, seen = sum(len(t) for t, _ in win.shards), 0
    while seen < total:
        x, c, y = win.batch(16)
        seen += x.numel()
elif stage == "floor":  # every file read twice: the second read is timed (the first fills the page cache)
    days = list_days(args["events"])
    for p in days:
        pq.read_table(p)
    t0 = time.perf_counter()
    for p in days:
        pq.read_table(p)
seconds = time.perf_counter() - t0
cpu_s = own_cpu() - c0
time.sleep(0.2)
cpu_s += sum(cpu.values())
hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "cpu_s": cpu_s, "loadavg": os.getloadavg()[0], "hwm_mb": hwm / 1024,
                  "anon_mb": peak["anon"] / 1024,
                  "worker_mb": peak["worker"] / 1024, "tree_mb": max(peak["tree"], hwm) / 1024}))
"""


def run_stage(stage: str, **args: object) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:  # a thousand paths: a file, not the command line
        json.dump(args, f)
        f.flush()
        r = subprocess.run([sys.executable, "-c", DRIVER, stage, f.name], capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"{stage} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def day_name(i: int) -> tuple[str, str, str]:
    """The i-th symbol-day: its base day, new symbol and new date (ten dates per symbol)."""
    d = date(2012, 6, 21) + timedelta(days=i % DATES_PER_SYMBOL)
    return BASES[i % len(BASES)], f"X{i // DATES_PER_SYMBOL:03d}", d.isoformat()


def raw_sources(tmp: Path, n: int) -> list[str]:
    """n message files, each a link (with its orderbook file) to one real day's CSV under a new name."""
    raw = tmp / "raw"
    if not raw.exists():
        for base in BASES:
            zipfile.ZipFile(DATA / "lobster" / f"LOBSTER_SampleFile_{base}.zip").extractall(raw / base)
    folder = tmp / f"sources{n}"
    folder.mkdir(exist_ok=True)
    out = []
    for i in range(n):
        base, symbol, day = day_name(i)
        for what in ("message", "orderbook"):
            real = next((raw / base).glob(f"*_{what}_*.csv"))
            link = folder / real.name.replace(real.name.split("_34200000")[0], f"{symbol}_{day}")
            if not link.exists():
                link.symlink_to(real)
            if what == "message":
                out.append(str(link))
    return out


def copied_store(tmp: Path, base_store: Path, n: int) -> Path:
    from tradefm.events import copy_day, list_days

    store = tmp / f"events{n}"
    if store.exists():
        return store
    bases = {p.parent.parent.name.removeprefix("symbol="): p for p in list_days(base_store)}
    for i in range(n):
        base, symbol, day = day_name(i)
        copy_day(bases[base.split("_")[0]], store, symbol=symbol, date=day)
    return store


def events_in(store: Path) -> int:
    import pyarrow.parquet as pq

    from tradefm.events import list_days

    return sum(pq.read_metadata(p).num_rows for p in list_days(store))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100], help="symbol-days (1000 is the full run)")
    ap.add_argument("--workers", type=int, default=2, help="the parallel run compared against 1 worker")
    ap.add_argument("--parallel-sizes", type=int, nargs="+", default=[100], help="sizes also run with --workers")
    ap.add_argument("--tmp", help="work folder (default: a temporary one, removed after)")
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                    help="the stages to time (the tokenizer that tokenize needs is fitted untimed if fit is not one)")
    ap.add_argument("--repeat", type=int, default=1, help="time each size and worker count this many times")
    args = ap.parse_args()
    if "load" in args.stages and "tokenize" not in args.stages:
        sys.exit("--stages load needs tokenize (it reads the shards tokenize writes)")
    if not (DATA / "lobster").exists():
        sys.exit(f"real data not found at {DATA}")
    sys.path.insert(0, str(ROOT / "src"))
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        base = tmp / "base"
        run_stage("ingest", sources=[str(DATA / "lobster" / f"LOBSTER_SampleFile_{b}.zip") for b in BASES],
                  out=str(base))
        rows = []
        for n in sorted(args.sizes):
            store = copied_store(tmp, base, n)
            events = events_in(store)
            if n == min(args.sizes):  # warm-up: the kernels' cache is written on a first run
                run_stage("tokenize", events=str(store), tokenizer=str(_fit(tmp, store)), out=str(tmp / "warm"))
            for i in range(args.repeat):  # 1 worker and N alternate, so that a slower spell of the machine hits both
                for w in sorted({1, args.workers} if n in args.parallel_sizes else {1}):
                    tag = f"{n}-{w}-{i}"
                    r = {"days": n, "workers": w, "repeat": i, "events": events,
                         "floor": run_stage("floor", events=str(store))}
                    if "ingest" in args.stages:
                        r["ingest"] = run_stage("ingest", sources=raw_sources(tmp, n),
                                                out=str(tmp / f"ingested{tag}"), workers=w)
                    if "fit" in args.stages:
                        r["fit"] = run_stage("fit", events=str(store), out=str(tmp / f"tok{tag}.json"), workers=w)
                    if "tokenize" in args.stages:
                        tok = tmp / f"tok{tag}.json" if "fit" in args.stages else _fit(tmp, store)
                        r["tokenize"] = run_stage("tokenize", events=str(store), tokenizer=str(tok),
                                                  out=str(tmp / f"shards{tag}"), workers=w)
                    if "load" in args.stages:
                        r["load"] = run_stage("load", shards=str(tmp / f"shards{tag}"))
                        r["train_tokens"] = json.loads((tmp / f"shards{tag}" / "manifest.json").read_text()
                                                       )["counts"]["train"]
                    rows.append(r)
                    print(json.dumps(r), flush=True)
        print(f"\nwhole run {time.perf_counter() - t0:.0f} s, {os.cpu_count()} cores\n")
    report(rows, args.workers, [s for s in STAGES if s in args.stages])


def _fit(tmp: Path, store: Path) -> Path:
    out = tmp / "warm-tok.json"
    run_stage("fit", events=str(store), out=str(out))
    return out


def report(rows: list[dict], workers: int, stages: list[str]) -> None:
    print("| symbol-days | workers | events | stage | wall s | CPU s | events per CPU second | x floor (CPU) "
          "| peak RSS MB | peak anonymous MB | largest worker MB | all processes MB |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        fl = r["floor"]
        floor = fl["cpu_s"]
        print(f"| {r['days']} | 1 | {r['events']:,} | Parquet read (floor) | {fl['seconds']:.2f} | {floor:.2f} | "
              f"{r['events'] / floor / 1e6:.2f} M | 1.00 | {fl['hwm_mb']:.0f} | {fl['anon_mb']:.0f} | - | - |")
        for s in stages:
            m = r[s]
            cores = r["workers"] if s != "load" else 1
            worker, tree = (f"{m['worker_mb']:.0f}", f"{m['tree_mb']:.0f}") if cores > 1 else ("-", "-")
            print(f"| {r['days']} | {cores} | {r['events']:,} | {s} | {m['seconds']:.2f} | {m['cpu_s']:.2f} | "
                  f"{r['events'] / m['cpu_s'] / 1e6:.3f} M | {m['cpu_s'] / floor:.1f} | {m['hwm_mb']:.0f} | "
                  f"{m['anon_mb']:.0f} | {worker} | {tree} |")
    ones = {r["days"]: r for r in rows if r["workers"] == 1 and r["repeat"] == 0}
    sizes = sorted(ones)
    if len(sizes) > 1:
        a, b = ones[sizes[0]], ones[sizes[-1]]
        print(f"\n{sizes[0]} -> {sizes[-1]} symbol-days, 1 worker (per day: x1 is linear)")
        for s in stages:
            per_day = (b[s]["seconds"] / b["days"]) / (a[s]["seconds"] / a["days"])
            cpu_day = (b[s]["cpu_s"] / b["days"]) / (a[s]["cpu_s"] / a["days"])
            print(f"- {s}: wall time per day x{per_day:.2f}, CPU time per day x{cpu_day:.2f}, "
                  f"peak RSS x{b[s]['hwm_mb'] / a[s]['hwm_mb']:.2f}, "
                  f"peak anonymous x{b[s]['anon_mb'] / a[s]['anon_mb']:.2f}")
    parallel = [s for s in stages if s != "load"]
    for r in rows:
        if r["workers"] > 1:
            one = next(o for o in rows if o["workers"] == 1 and (o["days"], o["repeat"]) == (r["days"], r["repeat"]))
            print(f"\n--workers {workers} at {r['days']} symbol-days (repeat {r['repeat']}): wall-clock speedup "
                  + ", ".join(f"{s} x{one[s]['seconds'] / r[s]['seconds']:.2f}" for s in parallel)
                  + "; CPU time of all processes against 1 worker's "
                  + ", ".join(f"{s} x{r[s]['cpu_s'] / one[s]['cpu_s']:.2f}" for s in parallel))


if __name__ == "__main__":
    main()
