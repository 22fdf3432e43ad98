"""One per-day function, mapped over symbol-days in this process, in worker processes, or on a Ray cluster.

Every data stage (ingest, fit-tokenizer, tokenize) is a function of one task (a source file or a symbol-day) and
of some read-only state shared by all tasks (the output folder, the tokenizer). :func:`map_tasks` runs it and
yields the results **in task order**, whatever finished first, so the caller's reduction (de-duplication, the
calibration sample, the manifest) sees the same sequence with 1 worker, N processes or Ray, and writes the same
output. Workers write their own files (atomically); only small results travel back.

``workers`` is an int (1: in this process; N > 1: N processes, started the platform's way) or ``"ray"``: the
tasks go to the Ray cluster that ``ray.init()`` finds (``RAY_ADDRESS``, or one started with ``ray start``), else
a local one. On a cluster every node must see the same paths (shared storage).
"""

from __future__ import annotations

import ctypes
import functools
import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")
Workers = int | str

_SHARED: Any = None  # a worker process's copy of the shared state, set once by its initializer


def parse_workers(text: str) -> Workers:
    """``--workers``: a positive number of processes, or ``ray``."""
    if text.strip().lower() == "ray":
        return "ray"
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"--workers wants a positive number of processes or 'ray', not {text!r}")
    return n


# glibc's mallopt parameters, and what a process that runs tasks sets them to (bytes)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_FREED, MMAP_ABOVE = 64 << 20, 4 << 20


@functools.cache  # once a process (a forked worker inherits the settings with the heap)
def keep_freed_memory() -> None:
    """Let the process that runs the tasks reuse the memory of the arrays it frees (for the rest of its life).
    glibc's defaults hand an array above 128 KiB back to the system when it is freed; the limit adapts, but not
    in a worker forked from a fresh parent, so every day's arrays fault their pages in again, which costs fork
    workers a large share of their CPU (docs/BENCHMARKS.md). Arrays below ``MMAP_ABOVE`` now come from the
    heap, which keeps up to ``KEEP_FREED`` free. Nothing happens where the C library has no ``mallopt``."""
    try:
        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    except (OSError, TypeError):  # no C library to open by name None (Windows)
        return
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, MMAP_ABOVE)
        mallopt(_M_TRIM_THRESHOLD, KEEP_FREED)


def _init(shared: Any) -> None:
    global _SHARED
    _SHARED = shared
    keep_freed_memory()


def _call(fn: Callable[[Any, T], R], task: T) -> R:
    return fn(_SHARED, task)


def _context(module: str) -> mp.context.BaseContext:
    """The platform's way to start processes: fork on Linux (a worker starts with the modules and compiled
    kernels already loaded; numpy and pyarrow reset their thread pools in a forked child), forkserver or spawn
    elsewhere, where the server imports the task's module once for all workers."""
    ctx = mp.get_context()
    if ctx.get_start_method() == "forkserver" and module != "__main__":
        ctx.set_forkserver_preload([module])
    return ctx


def map_tasks(fn: Callable[[Any, T], R], tasks: Iterable[T], shared: Any = None, workers: Workers = 1,
              desc: str = "", progress: bool = True, unit: str = "day", total: int | None = None, ahead: int = 4
              ) -> Iterator[R]:
    """``fn(shared, task)`` for every task, yielded in task order. ``fn`` must be a module-level function (it is
    pickled by reference); ``shared`` is sent once per worker, not once per task. ``tasks`` is read as tasks
    are sent out, ``ahead`` tasks per worker (and one) in flight, so a task may depend on the results taken so
    far: fewer ahead, fresher the results it sees; more, the less a long task holds the others up."""
    if total is None:
        total = len(tasks) if isinstance(tasks, Sized) else None
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not progress)
    try:
        if workers == "ray":
            yield from _windowed(_ray_submit(fn, shared, ahead), tasks, bar)
        elif int(workers) <= 1 or (total is not None and total <= 1):
            keep_freed_memory()
            for task in tasks:
                yield fn(shared, task)
                bar.update()
        else:
            n = int(workers) if total is None else min(int(workers), total)
            ctx = _context(fn.__module__)
            with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init, initargs=(shared,)) as pool:
                yield from _windowed((lambda task: pool.submit(_call, fn, task), lambda f: f.result(),
                                      ahead * n + 1),
                                     tasks, bar)
    finally:
        bar.close()


def _windowed(how: tuple[Callable, Callable, int], tasks: Iterable[T], bar: tqdm) -> Iterator[Any]:
    """Keep ``window`` tasks in flight; yield their results in order (so results never pile up)."""
    submit, result, window = how
    pending: deque = deque()
    it = iter(tasks)
    for task in it:
        pending.append(submit(task))
        if len(pending) >= window:
            break
    while pending:
        done = result(pending.popleft())
        bar.update()
        yield done
        for task in it:  # the next task is made after the caller has taken this result
            pending.append(submit(task))
            break


def _ray_submit(fn: Callable[[Any, T], R], shared: Any, ahead: int) -> tuple[Callable, Callable, int]:
    try:
        import ray
    except ImportError:
        raise ValueError("--workers ray needs Ray: pip install 'tradefm[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    remote = ray.remote(_ray_call)
    ref = ray.put(shared)
    window = ahead * int(ray.cluster_resources().get("CPU", 1)) + 1
    return (lambda task: remote.remote(fn, ref, task)), ray.get, window


def _ray_call(fn: Callable[[Any, T], R], shared: Any, task: T) -> R:
    return fn(shared, task)
