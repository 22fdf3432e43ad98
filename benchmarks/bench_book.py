"""Throughput and memory of the tradefm order book against bourse, on one LOBSTER day, pinned to one core.

    .venv/bin/python benchmarks/bench_book.py [--file ZIP] [--repeat N]

Rows (messages = the market events of the message file; the few snapshot rows are applied but not counted):

* tradefm replay, depth L: ``OrderBook(replay=True, depth=L)`` + ``apply_many`` (snapshot, then events).
* tradefm replay + row check: the same events through the kernel that compares the book with every row of
  LOBSTER's orderbook file (rows already in memory), as ``replay_lobster`` does; and ``replay_lobster`` itself
  end to end (unzip, parse both CSV files, replay, check).
* tradefm replay, depth 0 and matching, depth 0: the whole stream with no window, without / with matching.
* bourse (``bourse.core.OrderBook``, Rust), trading off / on: the same stream driven from Python, one call per
  event (bourse 0.4 has no batch path for its ``OrderBook``; ``StepEnvNumpy`` batches shuffle the order of the
  instructions within a step and only place or cancel, so they cannot replay a feed).

Mapping to bourse: add -> ``set_time(t)`` (t = a counter: bourse keys resting orders by (price, time), so two
orders at one price and one time would overwrite each other) + ``place_order``, keeping a dict from the LOBSTER
id to bourse's id; partial cancel and visible execution -> ``modify_order(id, None, remaining)`` (an in-place
volume decrease that keeps priority) or ``cancel_order`` when nothing remains; delete -> ``cancel_order``;
hidden execution -> nothing. Events naming ids the book does not hold (orders resting before the open, orders
already filled) are skipped, as tradefm's matching mode rejects them. The remaining volume for each reduce is
worked out before timing (with matching on, a resting order may have been partly filled by a crossing add, which
a Python driver cannot see without reading bourse's whole trade list). Bourse's final book and trade tape are
checked against tradefm's after timing.

Timings are the best of ``--repeat`` runs after one warm-up run (which also loads Numba's compiled code).
Memory: each engine runs once more in a fresh process (this script with ``--only``); the table shows the peak RSS
(VmHWM) during the run and, in parentheses, that peak minus the RSS after imports, data loading and a warm-up
on the first 1,000 events. ``ru_maxrss`` is not used: a child started by ``subprocess`` (vfork + exec) reports
its parent's peak there.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILE = "lobster/LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"
NOP, PLACE, REDUCE, CANCEL = 0, 1, 2, 3  # bourse driver actions
ADD, PARTIAL_CANCEL, DELETE, EXECUTE = 1, 2, 3, 4  # tradefm.events.Kind
REDUCING = frozenset((PARTIAL_CANCEL, DELETE, EXECUTE))
WARM_EVENTS = 1000


def shared_data() -> Path:
    return Path(os.environ.get("TRADEFM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def pin_to_one_core() -> int:
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


# ---------------------------------------------------------------- memory (this process's own mm, not ru_maxrss)


def _status_kb(name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise KeyError(name)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def git_rev() -> str:
    """The commit benchmarked, read-only (no index refresh), and whether tradefm.book differs from it."""
    try:
        git = ["git", "--no-optional-locks", "-C", str(ROOT)]
        rev = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "src/tradefm/book"]).returncode != 0
        return rev.stdout.strip() + (" (+ uncommitted changes in src/tradefm/book)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "(no git)"


# ---------------------------------------------------------------- data


@dataclass
class Data:
    path: Path
    level: int
    tick: int
    snap: list[np.ndarray]  # kind, side, price, size, order_id (int64)
    ev: list[np.ndarray]
    rows: np.ndarray | None = None  # the orderbook file, [messages, 4 * level]
    bourse: dict[bool, np.ndarray] = field(default_factory=dict)  # trading -> [n, 5] action, bid, price, vol, id
    expect: dict[str, Any] = field(default_factory=dict)

    @property
    def messages(self) -> int:
        return len(self.ev[0])

    def save(self, to: Path) -> None:
        arrays = {f"snap{i}": a for i, a in enumerate(self.snap)} | {f"ev{i}": a for i, a in enumerate(self.ev)}
        arrays |= {"rows": self.rows, "b_on": self.bourse[True], "b_off": self.bourse[False],
                   "meta": np.array([self.level, self.tick])}
        np.savez(to, **arrays)

    @classmethod
    def load(cls, npz: Path, path: Path) -> Data:
        z = np.load(npz)
        level, tick = (int(x) for x in z["meta"])
        return cls(path, level, tick, [z[f"snap{i}"] for i in range(5)], [z[f"ev{i}"] for i in range(5)],
                   z["rows"], {True: z["b_on"], False: z["b_off"]})


def load(path: Path) -> Data:
    from tradefm.book.replay import event_arrays
    from tradefm.readers import lobster, read

    day = next(read(path, "lobster", reveals=False))  # the message file as it is: reveals come from the row check
    files = lobster.find(path)[0]
    rows = np.concatenate(list(lobster.iter_orderbook(files)))
    return Data(path, int(day.notes["levels"]), int(day.instrument.tick_size), event_arrays(day, snapshot=True),
                event_arrays(day, snapshot=False), rows)


def bourse_stream(d: Data, trading: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """The events as bourse instructions: (action, bid, price, volume, LOBSTER id) with absolute volumes.

    With ``trading`` the fills come from tradefm's matching run (price-time priority, as bourse matches), so a
    reduce names the volume the order really has left; the final check against bourse confirms it."""
    from tradefm.book import engine as E
    from tradefm.book.orderbook import OrderBook

    kind, side, price, size, oid = (a.tolist() for a in d.ev)
    fills: list[list[int]] = []
    expect: dict[str, Any] = {}
    if trading:
        book = OrderBook(replay=False)
        book.apply_many(*d.snap)
        book.apply_many(*d.ev, chunk=d.messages + 1)  # one chunk: the fill log holds the whole day
        fills = book.state.fills[: int(book.state.meta[E.M_NFILL])].tolist()
        bids, asks = book.levels(1), book.levels(-1)
        expect = {"bid_vol": sum(q for _, q, _ in bids), "ask_vol": sum(q for _, q, _ in asks),
                  "best_bid": bids[0][0] if bids else 0, "best_ask": asks[0][0] if asks else None,
                  "trades": len(fills), "trade_vol": sum(f[2] for f in fills)}
    left: dict[int, int] = {}  # LOBSTER id -> remaining volume
    side_of: dict[int, int] = {}
    out = np.zeros((len(kind), 5), dtype=np.int64)
    fp = 0
    for i in range(len(kind)):
        k, o, q = kind[i], oid[i], size[i]
        if k == ADD:
            out[i] = PLACE, side[i] > 0, price[i], q, o
            while fp < len(fills) and fills[fp][3] == o:  # fills this add took as the aggressor
                maker, take = fills[fp][0], fills[fp][2]
                q -= take
                if maker > 0:
                    left[maker] -= take
                    if left[maker] == 0:
                        del left[maker]
                fp += 1
            if q > 0:
                left[o], side_of[o] = q, side[i]
        elif k in (PARTIAL_CANCEL, DELETE, EXECUTE) and o in left:
            r = left[o]
            if k == DELETE or q >= r:
                out[i] = CANCEL, 0, 0, 0, o
                del left[o]
            else:
                left[o] = r - q
                out[i] = REDUCE, 0, 0, r - q, o
    if fp != len(fills):
        raise RuntimeError(f"fill log not consumed: {fp} of {len(fills)}")
    if not trading:
        snap_vol = {s: int(d.snap[3][d.snap[1] == s].sum()) for s in (1, -1)}
        expect = {"bid_vol": snap_vol[1] + sum(v for o, v in left.items() if side_of[o] > 0),
                  "ask_vol": snap_vol[-1] + sum(v for o, v in left.items() if side_of[o] < 0), "trades": 0}
    expect["skipped"] = int((out[:, 0] == NOP).sum())
    return out, expect


# ---------------------------------------------------------------- engines


def run_tradefm(d: Data, replay: bool, depth: int, n: int | None = None) -> Any:
    from tradefm.book.orderbook import OrderBook

    book = OrderBook(replay=replay, depth=depth)
    book.apply_many(*d.snap)
    book.apply_many(*(a[:n] for a in d.ev))
    return book


def run_check(d: Data, n: int | None = None) -> np.ndarray:
    """What ``replay_lobster`` does after reading the files: replay with the per-row check (one chunk)."""
    from tradefm.book import engine as E
    from tradefm.book.orderbook import OrderBook

    assert d.rows is not None
    rows = d.rows[:n]
    book = OrderBook(replay=True, depth=d.level)
    book.apply_many(*d.snap)
    stats = np.zeros(4, dtype=np.int64)
    stats[E.R_FIRST_BAD] = -1
    book._reserve(len(rows) + rows.shape[1])
    reveals = np.zeros((rows.size // 2, 4), dtype=np.int64)
    E.replay_check(book.state, *(a[: len(rows)] for a in d.ev), rows, 0, stats, reveals)
    return stats


def run_replay_lobster(d: Data, n: int | None = None) -> Any:
    from tradefm.book.replay import replay_lobster

    return replay_lobster(d.path)[0]


def bourse_rows(d: Data, trading: bool, driver: str) -> tuple[list[tuple[bool, int, int]], list[tuple]]:
    """The snapshot and the events as Python tuples (built before timing, like tradefm's int64 arrays)."""
    snap = [(bool(s > 0), int(p), int(q)) for s, p, q in zip(d.snap[1], d.snap[2], d.snap[3], strict=True)]
    if driver == "raw":
        cols = np.column_stack(d.ev).tolist()
        return snap, [(k, s == 1, p, q, o) for k, s, p, q, o in cols]
    return snap, [(a, b == 1, p, v, o) for a, b, p, v, o in d.bourse[trading].tolist()]


def _bourse_book(tick: int, snap: list, trading: bool, stub: bool) -> tuple[Any, tuple[Callable[..., Any], ...], int]:
    """A bourse book holding the opening snapshot, the calls the drivers make (C builtins taking the same
    arguments with ``stub``: the driver loop alone), and the clock after the snapshot."""
    import bourse

    book = bourse.core.OrderBook(0, tick, trading)
    calls = (max, abs, slice, abs) if stub else \
        (book.place_order, book.cancel_order, book.modify_order, book.set_time)
    place, _, _, set_time = calls
    t = 0
    for bid, p, v in snap:
        t += 1
        set_time(t)
        place(bid, v, 0, p)
    return book, calls, t


def run_bourse(tick: int, snap: list, rows: list, trading: bool, stub: bool = False) -> Any:
    """Pre-translated instructions: (action, bid, price, absolute volume, LOBSTER id)."""
    book, (place, cancel, modify, set_time), t = _bourse_book(tick, snap, trading, stub)
    ids = {}
    for a, bid, p, v, oid in rows:
        if a == PLACE:
            t += 1
            set_time(t)
            ids[oid] = place(bid, v, 0, p)
        elif a == REDUCE:
            modify(ids[oid], None, v)
        elif a == CANCEL:
            cancel(ids.pop(oid))
    return book


def run_bourse_raw(tick: int, snap: list, rows: list, trading: bool, stub: bool = False) -> Any:
    """The LOBSTER events as they come: (kind, bid, price, size, LOBSTER id); the driver keeps each order's
    bourse id and remaining volume, skips ids it does not hold and turns "reduce by" into bourse's "set to"."""
    book, (place, cancel, modify, set_time), t = _bourse_book(tick, snap, trading, stub)
    live: dict[int, list[int]] = {}
    for k, bid, p, q, oid in rows:
        if k == ADD:
            t += 1
            set_time(t)
            live[oid] = [place(bid, q, 0, p), q]
        elif k in REDUCING:
            e = live.get(oid)
            if e is None:
                continue
            if k == DELETE or q >= e[1]:
                cancel(e[0])
                del live[oid]
            else:
                e[1] -= q
                modify(e[0], None, e[1])
    return book


DRIVERS = {"raw": run_bourse_raw, "pre": run_bourse}


def raw_driver_divergence(d: Data, exact: np.ndarray) -> dict[str, int]:
    """Where the raw-event driver's own remaining-volume bookkeeping disagrees with the exact instructions
    (with matching on it cannot see the volume crossing adds took from resting orders)."""
    live: dict[int, int] = {}
    out = {"calls on orders bourse already filled": 0, "modify to a wrong volume": 0}
    for (k, o, q), (a, v) in zip(np.column_stack([d.ev[0], d.ev[4], d.ev[3]]).tolist(),
                                  exact[:, [0, 3]].tolist(), strict=True):
        if k == ADD:
            live[o] = q
        elif k in REDUCING and o in live:
            r = live.pop(o)
            if not (k == DELETE or q >= r):
                live[o] = r - q
            if a == NOP:
                out["calls on orders bourse already filled"] += 1
            elif (o not in live) != (a == CANCEL) or (o in live and live[o] != v):
                out["modify to a wrong volume"] += 1
    return out


def check_bourse(book: Any, expect: dict[str, Any]) -> list[str]:
    trades = book.get_trades()
    got = {"bid_vol": book.bid_vol(), "ask_vol": book.ask_vol(), "trades": len(trades),
           "trade_vol": sum(t[3] for t in trades)}
    bid, ask = book.bid_ask()
    got["best_bid"], got["best_ask"] = bid, (None if ask == 2**32 - 1 else ask)
    return [f"{k}: bourse {got[k]} != expected {v}" for k, v in expect.items() if k in got and got[k] != v]


# ---------------------------------------------------------------- timing and memory


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    out = fn()  # warm-up (Numba loads its compiled code from the cache on the first call)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


ENGINES = ("tradefm-replay", "tradefm-check", "tradefm-lobster", "tradefm-replay0", "tradefm-match",
           "bourse-off-raw", "bourse-off-pre", "bourse-on-raw", "bourse-on-pre")


def measure_memory(engine: str, npz: Path, path: Path) -> dict[str, Any]:
    """Run in a fresh process: imports, data loading and a small warm-up, then one full run."""
    d = Data.load(npz, path)
    fn: Callable[[int | None], Any]
    if engine.startswith("bourse"):
        _, on, driver = engine.split("-")
        snap, rows = bourse_rows(d, on == "on", driver)

        def fn(n: int | None) -> Any:
            return DRIVERS[driver](d.tick, snap, rows[:n], on == "on")
    else:
        fn = {
            "tradefm-replay": lambda n: run_tradefm(d, True, d.level, n),
            "tradefm-check": lambda n: run_check(d, n),
            "tradefm-lobster": lambda n: run_replay_lobster(d, n),
            "tradefm-replay0": lambda n: run_tradefm(d, True, 0, n),
            "tradefm-match": lambda n: run_tradefm(d, False, 0, n),
        }[engine]
        run_tradefm(d, True, d.level, WARM_EVENTS)  # loads the compiled kernels
        run_tradefm(d, False, 0, WARM_EVENTS)
        run_check(d, WARM_EVENTS)
    if engine != "tradefm-lobster":
        fn(WARM_EVENTS)
    if engine != "tradefm-check":
        d.rows = None
    gc.collect()
    base = _status_kb("VmRSS")
    reset = _reset_peak()
    out = fn(None)
    peak = _status_kb("VmHWM")
    del out
    return {"engine": engine, "base_kb": base, "peak_kb": peak, "reset": reset}


def memory_in_subprocess(engine: str, npz: Path, path: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--only", engine, "--npz", str(npz), "--file", str(path)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"memory run of {engine} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- report


@dataclass
class Row:
    engine: str
    mode: str
    messages: int
    seconds: float
    compare: str | None = None  # "no matching" / "matching": the bourse rows a tradefm row is divided by
    memory: str | None = None  # ENGINES key
    mem: dict[str, Any] | None = None

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def table(rows: list[Row]) -> str:
    peer = {(r.compare, r.memory.rsplit("-", 1)[1]): r for r in rows if r.engine == "bourse" and r.memory}
    out = ["| engine | mode | messages | seconds | messages/s | ÷ bourse raw-event driver | ÷ bourse pre-translated "
           "| peak RSS MB (run delta) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratios = [f"{r.rate / peer[r.compare, drv].rate:.2f}x" if r.engine == "tradefm" and r.compare else "—"
                  for drv in ("raw", "pre")]
        mem = "—"
        if r.mem:
            mem = f"{r.mem['peak_kb'] / 1024:.0f} ({(r.mem['peak_kb'] - r.mem['base_kb']) / 1024:+.1f})"
        out.append(f"| {r.engine} | {r.mode} | {r.messages:,} | {r.seconds:.4f} | {r.rate:,.0f} | "
                   f"{' | '.join(ratios)} | {mem} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--file", type=Path, default=shared_data() / DEFAULT_FILE, help="a LOBSTER zip (or folder)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per row; the best is kept")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-engine memory subprocesses")
    ap.add_argument("--only", choices=ENGINES, help=argparse.SUPPRESS)
    ap.add_argument("--npz", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only:
        print(json.dumps(measure_memory(args.only, args.npz, args.file)))
        return 0
    if not args.file.exists():
        sys.exit(f"{args.file}: not found (set TRADEFM_SHARED_DATA or pass --file)")

    cpu = pin_to_one_core()
    t_start = time.perf_counter()
    import numba

    d = load(args.file)
    for trading in (True, False):
        d.bourse[trading], d.expect[f"bourse-{'on' if trading else 'off'}"] = bourse_stream(d, trading)
    n, rep = d.messages, args.repeat
    print(f"# tradefm {git_rev()}; {args.file.name}: {n:,} messages (+{len(d.snap[0])} snapshot rows), "
          f"level {d.level}; pinned to cpu {cpu}; numba {numba.__version__}, bourse {version('bourse')}, "
          f"python {sys.version.split()[0]}; best of {rep} after a warm-up", flush=True)

    rows: list[Row] = []
    notes: list[str] = []
    problems: list[str] = []

    s, book = best_of(lambda: run_tradefm(d, True, d.level), rep)
    rows.append(Row("tradefm", f"replay, depth {d.level} (apply_many)", n, s, "no matching", "tradefm-replay"))
    c = book.counters
    notes.append(f"tradefm replay depth {d.level} without the orderbook rows: crossed adds {c.crossed_adds:,}, "
                 f"unknown refs {c.unknown_refs:,}, missing qty {c.missing:,} (nothing reveals the levels that "
                 f"enter the window, so this book drifts from the real one; the checked replay below is exact)")
    s, stats = best_of(lambda: run_check(d), rep)
    rows.append(Row("tradefm", f"replay, depth {d.level} + check of every orderbook row (kernel)", n, s,
                    "no matching", "tradefm-check"))
    notes.append(f"row check: {int(stats[0]) - int(stats[1]):,} of {int(stats[0]):,} rows match, "
                 f"{int(stats[3]):,} reveals")
    if stats[1]:
        problems.append(f"row check: {int(stats[1])} rows differ")
    s, report = best_of(lambda: run_replay_lobster(d), max(1, min(rep, 3)))
    rows.append(Row("tradefm", "replay_lobster() end to end (unzip, parse, replay, check)", n, s, None,
                    "tradefm-lobster"))
    if not report.exact:
        problems.append(f"replay_lobster: first mismatch at {report.first_mismatch}")
    s, book = best_of(lambda: run_tradefm(d, True, 0), rep)
    rows.append(Row("tradefm", "replay, depth 0 (adds rest, no matching)", n, s, "no matching", "tradefm-replay0"))
    s, book = best_of(lambda: run_tradefm(d, False, 0), rep)
    rows.append(Row("tradefm", "matching, depth 0", n, s, "matching", "tradefm-match"))
    e_on = d.expect["bourse-on"]
    notes.append(f"matching depth 0: {e_on['trades']:,} fills, {e_on['trade_vol']:,} shares, all from adds that cross "
                 f"(orders whose cancels fell outside the {d.level}-level window stay in a full book); "
                 f"{e_on['skipped']:,} events name no live order or are hidden executions")

    for trading, mode in ((False, "no matching"), (True, "matching")):
        key = f"bourse-{'on' if trading else 'off'}"
        for driver, label in (("raw", "raw-event driver"), ("pre", "pre-translated")):
            snap, brows = bourse_rows(d, trading, driver)
            run = DRIVERS[driver]
            s, bbook = best_of(lambda snap=snap, brows=brows, run=run, trading=trading:
                               run(d.tick, snap, brows, trading), rep)
            rows.append(Row("bourse", f"{mode}, {label}", n, s, mode, f"{key}-{driver}"))
            bad = check_bourse(bbook, d.expect[key])
            if bad and not (trading and driver == "raw"):
                problems += [f"{key}-{driver}: {b}" for b in bad]
            what = "tradefm's matching book and fills" if trading else "snapshot + tracked remaining volumes"
            notes.append(f"{key}-{driver}: final volumes, touch and trade tape "
                         + (f"match ({what})" if not bad else "DIFFER: " + "; ".join(bad)))
            if trading and driver == "raw":
                div = raw_driver_divergence(d, d.bourse[True])
                notes.append(f"{key}-raw: its remaining-volume bookkeeping misses fills taken by crossing adds: "
                             + ", ".join(f"{v:,} {k}" for k, v in div.items()))
            if not trading:
                s, _ = best_of(lambda snap=snap, brows=brows, run=run: run(d.tick, snap, brows, False, stub=True),
                               rep)
                rows.append(Row("(driver only)", f"{label} loop, bourse calls replaced by C builtins", n, s))

    if not args.no_memory:
        with tempfile.TemporaryDirectory() as tmp:
            npz = Path(tmp) / "data.npz"
            d.save(npz)
            for r in rows:
                if r.memory:
                    r.mem = memory_in_subprocess(r.memory, npz, args.file)
                    if not r.mem["reset"]:
                        notes.append(f"{r.memory}: could not reset VmHWM; its peak includes data loading")

    print()
    print(table(rows))
    print()
    for note in notes:
        print(f"- {note}")
    print(f"\ntotal wall time {time.perf_counter() - t_start:.1f} s")
    if problems:
        print("\nPROBLEMS:\n" + "\n".join(f"- {p}" for p in problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
