"""Check the Compound Hawkes maximum-likelihood fit against the ``tick`` library on the same real events.

Run from the repository root:  .venv/bin/python benchmarks/check_hawkes_tick.py [--window 36000 39600]
(needs ``pip install tick numpydoc six``, the ``bench`` extra). tick's likelihood learner supports one decay shared
by all kernels and a constant baseline, so the comparison restricts our model to exactly that: time_of_day=False
and ``decays`` = the same value for all 12 types. For each decay it fits

  ours:       tradefm.baselines.hawkes.fit_events (projected Newton per type, compiled likelihood);
  tick+lbfgs: tick's ModelHawkesExpKernLogLik (C++ loss and gradient) minimised by SciPy's L-BFGS-B, mu >= 1e-10;
  tick learner: tick.hawkes.HawkesExpKern(decays, gofit='likelihood', penalty='none') with its default solver
              (AGD with line search), then with solver='gd', step=1e-4, 5,000 iterations;

and prints the log-likelihood of each solution (evaluated by our code and by tick's), the largest differences in
mu and alpha against ours, the branching ratios and the seconds. tick's loss is -(loglik + K * T) / n: its
``loss_dim_i`` starts each node at -end_time, a constant that does not move the optimum.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TRADEFM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--file", default="lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")
    ap.add_argument("--window", nargs=2, type=float, default=(36_000.0, 39_600.0),
                    help="seconds after local midnight (default 10:00-11:00)")
    ap.add_argument("--decays", nargs="+", type=float, default=(10.0, 100.0, 1000.0))
    ap.add_argument("--learner-iters", type=int, default=5000)
    args = ap.parse_args()

    from scipy.optimize import minimize

    from tradefm.baselines import hawkes as H
    from tradefm.readers import read

    try:
        import tick
        from tick.hawkes import HawkesExpKern, ModelHawkesExpKernLogLik
    except ImportError as e:
        raise SystemExit(f"tick is not importable ({e}); pip install tick numpydoc six") from None

    day = next(read(DATA / args.file))
    c = H.classify_days([day], tuple(args.window))[0]
    c = dataclasses.replace(c, t1=int(c.ts[-1]))  # tick's learner ends the window at the last event
    T = (c.t1 - c.t0) / H.NS
    t = (c.ts - c.t0) / H.NS
    events = [np.ascontiguousarray(t[c.etype == i]) for i in range(H.K)]
    print(f"tick {tick.__version__}; {args.file}, window {args.window[0]:.0f}-{args.window[1]:.0f} s: "
          f"{len(c)} events, T = {T:.1f} s, {H.K} types\n")
    print("| decay 1/s | fit | loglik (our code) | loglik (tick's code) | minus ours' | max abs d mu | max abs d alpha "
          "| branching ratio | seconds |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for decay in args.decays:
        t0 = time.perf_counter()
        ours = H.fit_events([c], time_of_day=False, decays=np.full(H.K, decay))
        rows = [("ours", ours.mu, ours.alpha, time.perf_counter() - t0)]
        model = ModelHawkesExpKernLogLik(decay).fit(events, end_times=T)
        x0 = np.concatenate([ours.n_events / T / 2, np.full(H.K * H.K, 0.01)])  # a neutral start, not ours
        t0 = time.perf_counter()
        res = minimize(lambda x, m=model: (m.loss(x), m.grad(x)), x0, jac=True, method="L-BFGS-B",
                       bounds=[(1e-10, None)] * H.K + [(0, None)] * H.K**2,
                       options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-10})
        rows.append(("tick+lbfgs", res.x[:H.K], res.x[H.K:].reshape(H.K, H.K), time.perf_counter() - t0))
        for label, kw in (("tick learner agd", {}),
                          ("tick learner gd", {"solver": "gd", "step": 1e-4, "max_iter": args.learner_iters})):
            t0 = time.perf_counter()
            try:
                learner = HawkesExpKern(decays=decay, gofit="likelihood", penalty="none", tol=1e-10,
                                        verbose=False, **kw)
                learner.fit(events, start=0.1)
                rows.append((label, learner.baseline.copy(), learner.adjacency.copy(), time.perf_counter() - t0))
            except RuntimeError as e:
                print(f"| {decay:g} | {label} | failed: {str(e).split('.')[0]} | | | | | | "
                      f"{time.perf_counter() - t0:.2f} |")
        for label, mu, alpha, sec in rows:
            p = dataclasses.replace(ours, mu=np.asarray(mu), alpha=np.asarray(alpha))
            ll_ours = H.log_likelihood_events(p, [c])
            ll_tick = -model.loss(np.concatenate([mu, alpha.ravel()])) * model.n_jumps - H.K * T
            print(f"| {decay:g} | {label} | {ll_ours:.4f} | {ll_tick:.4f} | {ll_ours - ours.loglik:.2e} | "
                  f"{np.abs(mu - ours.mu).max():.2e} | "
                  f"{np.abs(alpha - ours.alpha).max():.2e} | {p.branching_ratio:.4f} | {sec:.2f} |")


if __name__ == "__main__":
    main()
