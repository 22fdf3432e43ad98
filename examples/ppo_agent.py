"""PPO (stable-baselines3) trained for a bounded run against one background, tested on held-out starts of all.

    pip install -e '.[rl]'
    python examples/ppo_agent.py runs/demo [--background model|hawkes|replay] [--timesteps 25600] [--envs 16]

Training runs N execution environments in one batched simulator (:class:`tradefm.env.sb3.SB3VecEnv`), each from
its own start in the day's training part, with observations and rewards normalised by running statistics (SB3's
``VecNormalize``; frozen for the test); the test is the deterministic policy and TWAP on evenly spaced starts of
the test part, the same markets for both, on every background.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecNormalize

import tradefm
from tradefm.env import Config, Execution, Source, Trading
from tradefm.env.agents import twap
from tradefm.env.sb3 import SB3VecEnv

STEPS, EVENTS, QUANTITY = 20, 10, 2000


def test(source: Source, background: str, policy, starts: int, n: int, seed: int) -> tuple[np.ndarray, float]:
    """Shortfalls (bps) over ``starts`` held-out starts x ``n`` markets, and the share executed; ``policy`` (raw
    observations to actions) None is TWAP."""
    core = Trading(source, Config(background=background, task=Execution(quantity=QUANTITY), steps=STEPS,
                                  events=EVENTS, part="eval"), n)
    lo, hi = source.part("eval", core.cfg.margin_s)
    cost, done = [], []
    for k, start in enumerate(np.linspace(lo, hi, starts).astype(np.int64)):
        obs = core.reset(int(start), seed + k)
        while not all(a.done for a in core.accounts):
            acts = [twap(core, b) for b in range(n)] if policy is None else [int(a) for a in policy(obs)]
            obs, _, _, _ = core.step(acts)
        cost += [core.shortfall_bps(b) for b in range(n)]
        done += [-core.accounts[b].inventory / QUANTITY for b in range(n)]
    return np.asarray(cost), float(np.mean(done))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--background", default="model", choices=("model", "hawkes", "replay"))
    ap.add_argument("--timesteps", type=int, default=25_600)
    ap.add_argument("--envs", type=int, default=16)
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    sim = tradefm.load(args.run, device="cpu")
    source = Source((sim.model, sim.tokenizer), sim.day(), run=sim.run)
    core = Trading(source, Config(background=args.background, task=Execution(quantity=QUANTITY), steps=STEPS,
                                  events=EVENTS), args.envs)
    env = VecNormalize(SB3VecEnv(core, seed=args.seed), gamma=1.0)
    agent = PPO("MlpPolicy", env, n_steps=2 * STEPS, batch_size=8 * STEPS, n_epochs=4, learning_rate=1e-3,
                gamma=1.0, seed=args.seed, device="cpu", verbose=0)
    t0 = time.time()
    agent.learn(total_timesteps=args.timesteps)
    print(f"PPO trained against {args.background}: {args.timesteps:,} steps in {time.time() - t0:.0f} s")
    env.training = False  # the test reads observations with the statistics training ended with

    def ppo(obs: np.ndarray) -> np.ndarray:
        return agent.predict(env.normalize_obs(obs), deterministic=True)[0]

    print(f"held-out starts: mean shortfall (bps) over {args.starts} starts x {args.envs} markets, share executed")
    for bg in ("model", "hawkes", "replay"):
        for name, policy in (("PPO", ppo), ("TWAP", None)):
            cost, done = test(source, bg, policy, args.starts, args.envs, 10_000)
            print(f"  {bg:<7} {name:<5} {cost.mean():6.2f} ± {cost.std(ddof=1) / np.sqrt(len(cost)):.2f}  "
                  f"executed {done:.0%}")


if __name__ == "__main__":
    main()
