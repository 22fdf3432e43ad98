"""Trading environment speed against the number of parallel environments, and its ratio to the bare rollouts.

Run from the repository root after ``make demo`` (or point ``--run`` at any run folder):

    .venv/bin/python benchmarks/bench_env.py [--run runs/demo] [--envs 1,16,256] [--steps 20] [--events 10] \
        [--dtype bfloat16] [--starts one|each]

Per N: a :class:`tradefm.env.TradingVectorEnv` of N execution environments on the model background (the
batched simulator, one model call per market event for all N) stepped ``--steps`` decisions of ``--events``
market events each, the actions drawn up front from its action space (market and limit orders, cancels, waits);
then :class:`tradefm.generation.rollout.Rollouts` with N rollouts from the same starts for the same number of
events: the first evaluation start for all (``--starts one``), or a start each drawn from the evaluation part
(``each``, as a vector env's reset draws them). Rows: environment steps per second (decisions x N / s), the
market events per second inside the environment, the rollouts' events per second, and their ratio. Wall clock,
best of ``--repeat`` after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from tradefm.env import Execution, Source, TradingVectorEnv
from tradefm.generation.rollout import Rollouts

ROOT = Path(__file__).resolve().parents[1]


def best(fn, repeat: int) -> float:
    fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default=str(ROOT / "runs" / "demo"))
    ap.add_argument("--envs", default="1,16,256")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--events", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="the model's weights")
    ap.add_argument("--starts", choices=("one", "each"), default="one", help="one start for all, or one each")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    source = Source(args.run)
    source.model.to(getattr(torch, args.dtype))
    lo, hi = source.part("eval", 300.0)
    rows = []
    for n in (int(x) for x in args.envs.split(",")):
        vec = TradingVectorEnv(n, source=source, task=Execution(quantity=100 * args.steps), background="model",
                               steps=args.steps, events=args.events)
        rng = np.random.default_rng(0)
        plan = [rng.integers(vec.single_action_space.n, size=n) for _ in range(args.steps)]
        starts = np.full(n, lo) if args.starts == "one" else rng.integers(lo, hi, size=n)

        def episode(vec=vec, plan=plan, starts=starts) -> None:
            vec.reset(seed=0, options={"start_ts": starts})
            for a in plan:
                vec.step(a)

        def rollouts(n=n, starts=starts) -> None:
            ro = Rollouts(source.model, source.tokenizer, source.day, starts, n, 0)
            ro.run(args.steps * args.events)

        t_env, t_ro = best(episode, args.repeat), best(rollouts, args.repeat)
        events = args.steps * args.events * n
        rows.append({"envs": n, "env_steps_per_s": args.steps * n / t_env, "env_events_per_s": events / t_env,
                     "rollout_events_per_s": events / t_ro, "ratio": t_ro / t_env})
        r = rows[-1]
        print(f"N={n:>4}: {r['env_steps_per_s']:>9,.0f} env steps/s  {r['env_events_per_s']:>9,.0f} events/s in the "
              f"env  {r['rollout_events_per_s']:>9,.0f} rollout events/s  ratio {r['ratio']:.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "dtype": args.dtype, "steps": args.steps,
                                               "events": args.events, "starts": args.starts,
                                               "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
