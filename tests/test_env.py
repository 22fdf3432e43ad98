"""Trading environments on a real LOBSTER book: Gymnasium's checker, determinism, the start split, bad actions,
the agent's events in the record and the model's context, and the vector env's one model call per event."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

gym = pytest.importorskip("gymnasium", reason="the environments need gymnasium (the 'agents' extra)")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from tradefm.book import engine as E  # noqa: E402
from tradefm.env import Action, InvalidAction, MarketMaking, Source, TradingVectorEnv  # noqa: E402
from tradefm.features import order_flow  # noqa: E402
from tradefm.model import TradeFM, preset  # noqa: E402
from tradefm.readers import read  # noqa: E402
from tradefm.tokenizer import Tokenizer  # noqa: E402

from .conftest import data_file  # noqa: E402

SHORT = {"steps": 4, "events": 6, "margin_s": 300.0}


@pytest.fixture(scope="module")
def source() -> Source:
    day = next(read(data_file("lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")))
    tok = Tokenizer.fit({"nasdaq/GOOG": [order_flow(day)]})
    torch.manual_seed(0)
    model = TradeFM(preset("tiny", layers=2, context=64))
    # a short training part keeps the Hawkes fit quick; the test part is the day's last fifth
    return Source((model, tok), day, splits=(0.15, 0.8))


def make(source: Source, env_id: str = "tradefm/Execution-v0", **kw):
    return gym.make(env_id, source=source, **{**SHORT, **kw}).unwrapped


def episode(env, seed: int, actions: list) -> tuple[list[np.ndarray], list[float]]:
    obs, _ = env.reset(seed=seed)
    seen, rewards = [obs], []
    for a in actions:
        obs, r, term, _, _ = env.step(a)
        seen.append(obs)
        rewards.append(r)
        if term:
            break
    return seen, rewards


@pytest.mark.parametrize("env_id, kw", [
    ("tradefm/Execution-v0", {"background": "model"}),
    ("tradefm/Execution-v0", {"background": "replay", "continuous": True}),
    ("tradefm/MarketMaking-v0", {"background": "model", "continuous": True}),
    ("tradefm/MarketMaking-v0", {"background": "hawkes"}),
])
def test_check_env_passes(source, env_id, kw) -> None:
    check_env(make(source, env_id, **kw), skip_render_check=True)


@pytest.mark.parametrize("background", ["model", "hawkes", "replay"])
def test_same_seed_same_actions_same_episode(source, background) -> None:
    env = make(source, background=background)
    actions = [1, 2, 3, 1]
    a_obs, a_rew = episode(env, 5, actions)
    b_obs, b_rew = episode(env, 5, actions)
    assert a_rew == b_rew
    for x, y in zip(a_obs, b_obs, strict=True):
        np.testing.assert_array_equal(x, y)
    c_obs, _ = episode(env, 6, actions)  # another seed: another start, another market
    assert not all(np.array_equal(x, y) for x, y in zip(a_obs, c_obs, strict=False))


def test_training_and_evaluation_starts_never_overlap(source) -> None:
    train, test = source.part("train", 300.0), source.part("eval", 300.0)
    span = source.last - source.first
    assert train[1] < source.first + 0.15 * span <= source.first + 0.8 * span < test[0]
    env = make(source, background="replay")
    starts = {p: [env.reset(seed=s, options={"part": p})[1]["start_ts"] for s in range(20)] for p in ("train", "eval")}
    assert all(train[0] <= s <= train[1] for s in starts["train"])
    assert all(test[0] <= s <= test[1] for s in starts["eval"])
    assert max(starts["train"]) < min(starts["eval"])
    assert len(set(starts["train"])) > 10  # sampled, not one start
    # the replay of a training episode stops where the training part ends: it never reads test flow
    end = source.part_end(starts["train"][0])
    assert end == source.first + int(0.15 * span)
    near = source.markets("replay", end - 2_000_000_000, 1, 0, 0)  # two seconds before the end
    for _ in range(2_000):
        near.step([None])
    assert end - 2_000_000_000 < near.now(0) < end


def test_execution_accounting_matches_the_record(source) -> None:
    env = make(source, background="model", quantity=600)
    _, rewards = episode(env, 3, [1, 1, 2, 1])  # market orders and a limit at the touch
    core, acc = env.core, env.core.accounts[0]
    rows = core.markets.rows(0, 0)
    agent = rows[:, 6] == 1
    aggressive = rows[agent & (rows[:, 1] == E.K_EXECUTE)]
    assert len(aggressive) > 0  # the agent's market orders traded, flagged as participant events
    assert acc.inventory < 0 and -acc.inventory <= 600  # a seller, never past its quantity
    # the rewards sum to minus the shortfall (the penalty of what is left included)
    assert sum(rewards) == pytest.approx(-core.shortfall_bps(0), rel=1e-9, abs=1e-9)
    # the model saw the agent's orders as participant events: the flag field of their context rows
    flags = core.markets.ctx[0, :, 2].numpy()
    assert (flags == 1).sum() >= 3


def test_bad_actions_are_clipped_or_refused_in_one_line(source) -> None:
    env = make(source, background="replay", quantity=300, steps=10)
    env.reset(seed=1)
    _, _, _, _, info = env.step(Action("market", -1, 10_000))  # beyond what is left to trade
    assert any("clipped to 300" in n for n in info["notes"])
    assert info["executed"] <= 300
    _, _, _, _, info = env.step(Action("market", -1, 50))
    assert info["executed"] <= 300
    env.reset(seed=2)
    bid, ask = env.core.markets.book(0).best()
    off = ask + 10 * env.core.tick + 37  # off the tick grid, far above the ask: it rests
    _, _, _, _, info = env.step(Action("limit", -1, 100, price=off))
    assert any("off the tick grid" in n for n in info["notes"])
    (oid,) = info["order_ids"]
    assert oid in env.core.accounts[0].own
    assert env.core.markets.book(0).order(oid)[1] == off - 37 + env.core.tick  # a sell moves up to the grid
    env.step(Action("cancel", order_id=oid))
    _, _, _, _, info = env.step(Action("cancel", order_id=oid))  # already gone
    assert any("not resting" in n for n in info["notes"])
    # a filled order: a marketable limit fills at once; cancelling it afterwards does nothing
    _, _, _, _, info = env.step(Action("limit", -1, 100, price=bid - 5 * env.core.tick))
    (gone,) = info["order_ids"]
    assert not env.core.markets.book(0).holds(gone)
    _, _, _, _, info = env.step(Action("cancel", order_id=gone))
    assert any("not resting" in n for n in info["notes"])
    for bad, msg in ((Action("market", 1, 100), "other side"), (Action("limit", -1, 0), "size >= 1"),
                     (Action("limit", -1, 100, price=-5), "positive"), (99, "not in Discrete"),
                     (Action("teleport"), "unknown action kind")):
        env.reset(seed=3)
        with pytest.raises(InvalidAction, match=msg):
            env.step(bad)


def test_market_making_position_limit_and_reward(source) -> None:
    env = make(source, "tradefm/MarketMaking-v0", background="model", lot=100, max_inventory=150)
    env.reset(seed=4)
    env.step(Action("market", 1, 100))
    _, _, _, _, info = env.step(Action("market", 1, 100))  # 50 fit under the limit
    assert any("position limit" in n for n in info["notes"]) and info["inventory"] <= 150
    obs, r, _, _, info = env.step(Action("quote", 0, 100, offset=1))
    assert np.isfinite(r) and np.isfinite(obs).all()
    assert info["resting"] <= 2


def test_vector_env_steps_every_book_with_one_model_call_per_event(source, monkeypatch) -> None:
    model = source.model
    calls = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: (calls.append(a[0].shape[0]), forward(*a, **k))[1])
    vec = TradingVectorEnv(8, source=source, background="model", task=MarketMaking(), **SHORT)
    obs, infos = vec.reset(seed=0)
    assert obs.shape == (8, *vec.single_observation_space.shape)
    lo, hi = source.part("train", vec.core.cfg.margin_s)
    assert len(set(infos["start_ts"])) == 8 and all(lo <= s <= hi for s in infos["start_ts"])  # a start each
    assert len(set(obs[:, 1].tolist())) > 1  # and so a book each
    calls.clear()
    obs, rewards, term, _, infos = vec.step(np.array([0, 1, 2, 3, 4, 5, 6, 7]))
    assert len(infos["inventory"]) == 8
    assert calls == [8] * SHORT["events"]  # one call per event, batch 8: not 8 simulators
    assert obs.shape == (8, obs.shape[1]) and rewards.shape == (8,)
    for _ in range(SHORT["steps"] - 1):
        obs, rewards, term, _, _ = vec.step(vec.action_space.sample())
    assert term.all()
    obs, rewards, term, _, _ = vec.step(vec.action_space.sample())  # next-step autoreset
    assert not term.any() and (rewards == 0).all()
    made = gym.make_vec("tradefm/Execution-v0", num_envs=3, source=source, background="replay", **SHORT)
    obs, _ = made.reset(seed=1)
    assert obs.shape[0] == 3
    given = [int(lo), int(lo), int(hi)]
    assert made.reset(options={"start_ts": given})[1]["start_ts"].tolist() == given
    with pytest.raises(ValueError, match="2 starts for 3 environments"):
        made.reset(options={"start_ts": given[:2]})


def test_agents_evaluate_on_held_out_starts_and_write_a_table(source, tmp_path) -> None:
    from tradefm.env import agents

    cfg = agents.Evaluation(starts=2, seeds=1, steps=4, events=6, quantity=400)
    res = agents.evaluate(source, cfg, progress=False)
    lo, _ = source.part("eval", 300.0)
    assert min(res.starts) >= lo  # held out: the test part only
    s = res.summary()
    assert set(s) == {"model", "hawkes", "replay"}
    for bg in s:
        assert s[bg]["immediate"]["executed"] == pytest.approx(1.0)  # all at once: nothing left
        assert all(np.isfinite(v["shortfall_bps"]) for v in s[bg].values())
    # immediate trades at the first decision, so its episodes differ from TWAP's on the same market
    assert res.shortfall_bps["replay"]["immediate"] != res.shortfall_bps["replay"]["twap"]
    md = agents.write(res, tmp_path)
    assert "| twap |" in md.read_text() and (tmp_path / "agents.png").stat().st_size > 0
    assert set(json.loads((tmp_path / "agents.json").read_text())["summary"]) == set(s)


def test_agents_command_refuses_bad_input_in_one_line(capsys, tmp_path) -> None:
    from tradefm.cli import main

    assert main(["agents", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tradefm agents: error:") and "\n" not in err


def test_load_gives_a_simulator_with_rollout_and_env(source, tmp_path) -> None:
    import tradefm
    from tradefm.events import write_day

    run = tmp_path / "run"
    source.model.save_pretrained(run / "model" / "model", source.tokenizer)
    write_day(source.day, run / "events")
    sim = tradefm.load(run, device="cpu")
    days = sim.rollout(start=0.5, events=40, rollouts=2, seed=1)
    assert len(days) == 2 and not days[0].table.equals(days[1].table)
    env = sim.env("market_making", background="replay", steps=3, events=4)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    vec = sim.env("execution", num_envs=3, background="model", steps=2, events=3)
    assert vec.reset(seed=0)[0].shape == (3, *vec.single_observation_space.shape)
    with pytest.raises(ValueError, match="not a model folder"):
        tradefm.load(tmp_path / "nothing")


def test_load_and_rollout_need_no_gymnasium(source, tmp_path) -> None:
    """Environments are the `agents` extra; loading a model and rolling it out are not."""
    import subprocess
    import sys

    from tradefm.events import write_day

    run = tmp_path / "run"
    source.model.save_pretrained(run / "model" / "model", source.tokenizer)
    write_day(source.day, run / "events")
    code = ("import sys; sys.modules['gymnasium'] = None\nimport tradefm\n"
            "print(len(tradefm.load(sys.argv[1], device='cpu').rollout(start=0.5, events=20, rollouts=1)))")
    done = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("1")


def test_stress_presets_reach_the_rollouts(source) -> None:
    from tradefm.generation import stress

    model, tok, day = source.model, source.tokenizer, source.day
    start = source.part("eval", 300.0)[0]
    seller = stress.run(model, tok, day, start, "large_seller", events=60, rollouts=2, seed=0)
    p = stress.PRESETS["large_seller"]
    for d in seller:  # one participant sell every sell_every events, flagged as the participant's
        src = d.table.column("src_type").to_numpy(zero_copy_only=False)
        kinds = d.table.column("kind").to_numpy()
        assert (src == "participant").any()
        assert ((src == "participant") & (kinds == 1)).sum() == 0  # market orders: nothing of theirs rests
        sold = d.table.column("size").to_numpy()[(src == "participant") & (kinds == 4)].sum()
        assert sold == (60 // p.sell_every) * p.sell_size
    free = stress.run(model, tok, day, start, "none", events=60, rollouts=2, seed=0)
    low = stress.run(model, tok, day, start, "withdrawal", events=60, rollouts=2, seed=0)
    assert not free[0].table.equals(low[0].table)  # the control changes what the model writes
    m = stress.measure(free)
    assert m["spread_ticks"] > 0 and m["touch_size"] > 0 and m["events_per_min"] > 0
    from tradefm.evaluation.metrics import window

    real = stress.measure([window(day, start, start + 60_000_000_000)])
    burst = stress.measure(stress.run(model, tok, day, start, "burst", events=60, rollouts=2, seed=0))
    assert burst["events_per_min"] > 3 * real["events_per_min"]  # paced to ten times the real rate
    with pytest.raises(ValueError, match="unknown stress preset"):
        stress.preset("meteor")


def test_ppo_trains_on_the_batched_env(source) -> None:
    pytest.importorskip("stable_baselines3", reason="PPO needs stable-baselines3 (the 'rl' extra)")
    from stable_baselines3 import PPO

    from tradefm.env import Config, Execution, Trading
    from tradefm.env.sb3 import SB3VecEnv

    core = Trading(source, Config(background="replay", task=Execution(quantity=300), steps=3, events=4), 4)
    env = SB3VecEnv(core, seed=0)
    agent = PPO("MlpPolicy", env, n_steps=6, batch_size=12, n_epochs=1, seed=0, device="cpu")
    agent.learn(total_timesteps=48)  # two rollouts of 4 envs x 6 steps: episodes end and reset inside
    assert agent.num_timesteps >= 48
    obs = env.reset()
    action, _ = agent.predict(obs, deterministic=True)
    assert action.shape == (4,) and all(core.single_action_space.contains(np.int64(a)) for a in action)
