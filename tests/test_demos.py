"""Demonstrations before RL (mmrep.rl.demos, PolicyConfig.demos) and the expert's advice in the env
(sim.wrappers.ExpertAdvice)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_policy import TINY_PPO, policy_cfg

from mmrep.config import AlgoConfig, ObsConfig, PolicyConfig
from mmrep.policy import (
    build_model,
    build_venv,
    load_policy,
    read_evaluations,
    run_episodes,
    run_episodes_together,
    train_policy,
)
from sim.experts import run_episode
from sim.rl_env import make_rl_env
from sim.task import make_expert

ENV = {"max_steps": 12, "physics_hz": 240.0, "image_size": 64}


def test_expert_advice_is_what_the_expert_does_in_its_own_rollout():
    """The wrapped env's ``expert_action()`` at each step is the action the expert takes when it runs the
    episode itself (same seed), and the wrapper changes nothing the env returns."""
    bare = make_rl_env(ENV)
    expert = make_expert("noisy_expert", bare.unwrapped.cfg)
    taken = []
    run_episode(bare.unwrapped, expert, seed=7, policy_seed=int(np.random.SeedSequence([7, 0]).generate_state(1)[0]),
                on_step=lambda rec: taken.append(rec.action))
    advised = make_rl_env(ENV, expert="noisy_expert")
    obs, _ = advised.reset(seed=7)
    first_bare, _ = bare.reset(seed=7)
    assert all(np.array_equal(obs[k], first_bare[k]) for k in obs)
    actions, done = [], False
    while not done:
        actions.append(advised.get_wrapper_attr("expert_action")())
        _, _, terminated, truncated, _ = advised.step(actions[-1])
        done = terminated or truncated
    assert len(actions) == len(taken) and all(np.array_equal(a, b) for a, b in zip(actions, taken))
    assert np.abs(np.stack(actions)).max() > 0  # it moves
    with pytest.raises(ValueError, match="unknown policy 'nobody'"):
        make_rl_env(ENV, expert="nobody")


def test_demonstrations_start_the_run_cloned_and_count_their_env_steps(tmp_path):
    """``demos.episodes``: the expert's episodes in the training env, the policy cloned from them (its
    likelihood of the expert's actions rises), their env steps the run's first ones (the first periodic
    evaluation is the cloned policy's, at that step), a checkpoint right after, so a resume does not
    collect again; same seed, same clone."""
    demos = ["demos.episodes=4", "demos.epochs=30", "demos.batch_size=16"]
    run = tmp_path / "run"
    cfg = policy_cfg(run, "obs=state", *TINY_PPO, "total_steps=96", "eval_every_steps=1000", *demos)
    train_policy(cfg)
    record = json.loads((run / "demos.json").read_text())
    assert record["episodes"] == 4 and record["env_steps"] % 2 == 0  # two sub-envs step together
    # the kept episodes' steps, plus the other sub-env's steps while one finished its share
    assert 4 <= record["samples"] <= record["env_steps"] <= record["samples"] + 2 * 8  # episodes of at most 8
    assert record["nll_after"] < record["nll_before"] and record["value_mse_after"] < record["value_mse_before"]
    assert min(record["action_std"]) >= 0.1 - 1e-6
    steps = [r["timesteps"] for r in read_evaluations(run)]
    assert steps[0] == record["env_steps"] and steps[-1] == 96  # the clone, then the end of training
    made = (run / "demos.json").stat().st_mtime_ns
    train_policy(policy_cfg(run, "obs=state", *TINY_PPO, "total_steps=128", "eval_every_steps=1000", *demos))
    assert (run / "demos.json").stat().st_mtime_ns == made  # resumed from the checkpoint: no second collection
    assert torch.load(run / "checkpoint.pt", weights_only=True)["num_timesteps"] == 128

    again = tmp_path / "again"
    train_policy(policy_cfg(again, "obs=state", *TINY_PPO, "total_steps=96", "eval_every_steps=1000", *demos))
    assert json.loads((again / "demos.json").read_text())["nll_after"] == record["nll_after"]
    first = [json.loads(x) for x in (run / "eval.jsonl").read_text().splitlines()][0]
    second = [json.loads(x) for x in (again / "eval.jsonl").read_text().splitlines()][0]
    assert first["mean_return"] == second["mean_return"]

    model, venv, saved, _ = load_policy(again / "policy.pt")
    venv.close()
    assert saved.demos.episodes == 4  # the config round-trips through the policy file


def test_cloning_fits_the_expert_better_than_the_untrained_policy(tmp_path):
    """On the demonstrations themselves the cloned policy's mean action is nearer the expert's than a
    fresh policy's (the fit is real, not just a lower std)."""
    from mmrep.policy import build_model, with_normalizer
    from mmrep.rl.demos import clone, collect_demonstrations

    cfg = policy_cfg(tmp_path, "obs=state", *TINY_PPO, "demos.epochs=60", "demos.batch_size=32")
    venv = with_normalizer(cfg, build_venv(cfg, 2, 0))
    demo_venv = build_venv(cfg, 2, 500, expert="expert")
    try:
        demos = collect_demonstrations(demo_venv, 6, 0.99)
        assert demos.episodes == 6 and len(demos.obs) == len(demos.actions) == len(demos.returns)
        model = build_model(cfg, venv)
        venv.obs_rms.update(demos.obs)
        obs = venv.normalize_obs(demos.obs).astype(np.float32)

        def error() -> float:
            with torch.no_grad():
                mean = model.policy.get_distribution(torch.as_tensor(obs)).distribution.mean.numpy()
            return float(np.abs(np.clip(mean, -1, 1) - demos.actions).mean())

        before = error()
        clone(model, obs, demos, cfg.demos, seed=0)
        assert error() < 0.7 * before
    finally:
        venv.close()
        demo_venv.close()


def test_the_clones_weights_can_be_averaged_over_its_last_passes_and_its_inputs_noised(tmp_path):
    """``demos.average_last=2``: the clone ends with the mean of its weights after the last two passes
    (those of a fit one pass shorter and of the full fit, from the same start); ``demos.obs_noise``
    fits another policy, the same one for the same seed, still nearer the expert than before."""
    from dataclasses import replace

    from mmrep.policy import build_model, with_normalizer
    from mmrep.rl.demos import clone, collect_demonstrations

    cfg = policy_cfg(tmp_path, "obs=state", *TINY_PPO, "demos.epochs=4", "demos.batch_size=32")
    venv = with_normalizer(cfg, build_venv(cfg, 2, 0))
    demo_venv = build_venv(cfg, 2, 500, expert="expert")
    try:
        demos = collect_demonstrations(demo_venv, 4, 0.99)
        venv.obs_rms.update(demos.obs)
        obs = venv.normalize_obs(demos.obs).astype(np.float32)

        def fitted(**changes) -> tuple[dict[str, torch.Tensor], dict]:
            model = build_model(cfg, venv)  # the same initial weights each time (cfg.seed)
            record = clone(model, obs, demos, replace(cfg.demos, **changes), seed=0)
            return {k: v.detach().clone() for k, v in model.policy.named_parameters()}, record

        shorter, _ = fitted(epochs=3)
        full, _ = fitted()
        averaged, _ = fitted(average_last=2)
        for k in full:
            torch.testing.assert_close(averaged[k], (shorter[k] + full[k]) / 2)
        assert any(not torch.equal(averaged[k], full[k]) for k in full)
        noised, record = fitted(obs_noise=0.5)
        again, _ = fitted(obs_noise=0.5)
        assert all(torch.equal(noised[k], again[k]) for k in full)
        assert any(not torch.equal(noised[k], full[k]) for k in full)
        assert record["nll_after"] < record["nll_before"]
    finally:
        venv.close()
        demo_venv.close()


def test_dagger_labels_the_learners_own_states_and_counts_their_steps(tmp_path):
    """``demos.dagger_rounds``: after the clone, the policy acts and the expert labels what it visits;
    the labels are the expert's actions at those states (not the learner's), every step stepped counts
    toward the run's env steps, and the refit sees all the data so far. Same seed, same rounds."""
    from mmrep.rl.demos import collect_demonstrations

    cfg = policy_cfg(tmp_path, "obs=state", *TINY_PPO)
    demo_venv = build_venv(cfg, 2, 500, expert="expert")
    try:
        still = collect_demonstrations(demo_venv, 2, 0.99, act=lambda obs: np.zeros((len(obs), 3), np.float32))
        # a learner that stands still: the expert still says where to go, and the episode times out
        assert np.abs(still.actions).max() > 0.1 and still.successes == 0
        assert still.env_steps == len(still.obs) == 2 * cfg.env.max_steps  # both ran to the time limit
    finally:
        demo_venv.close()

    demos = ["demos.episodes=4", "demos.epochs=20", "demos.batch_size=16", "demos.dagger_rounds=2",
             "demos.dagger_episodes=2"]
    run = tmp_path / "run"
    train_policy(policy_cfg(run, "obs=state", *TINY_PPO, "total_steps=128", "eval_every_steps=1000", *demos))
    record = json.loads((run / "demos.json").read_text())
    rounds = record["dagger"]
    assert len(rounds) == 2 and all(r["episodes"] == 2 and 0 <= r["learner_success"] <= 1 for r in rounds)
    assert rounds[0]["samples"] < rounds[1]["samples"] == record["samples"]  # aggregated, not replaced
    assert record["env_steps"] >= record["samples"] >= 4 + 2 * 2
    assert [r["timesteps"] for r in read_evaluations(run)][0] == record["env_steps"]
    again = tmp_path / "again"  # a budget the demonstrations alone exceed: the run ends with the clone
    final = train_policy(policy_cfg(again, "obs=state", *TINY_PPO, "total_steps=16", "eval_every_steps=1000",
                                    *demos))
    assert json.loads((again / "demos.json").read_text())["dagger"][1]["nll_after"] == rounds[1]["nll_after"]
    rows = (again / "eval.jsonl").read_text().splitlines()
    assert len(rows) == 1 and json.loads(rows[0]) == final  # evaluated once, not again at the end


def test_dart_noise_moves_the_states_but_not_the_labels(tmp_path):
    """``demos.noise``: the executed action is the expert's plus noise, so the episodes visit other
    states, while each recorded label is what the expert would do there (the first step, from the same
    reset, is labelled alike); the same seed draws the same noise."""
    from mmrep.rl.demos import collect_demonstrations

    cfg = policy_cfg(tmp_path, "obs=state", *TINY_PPO)
    demo_venv = build_venv(cfg, 2, 500, expert="expert")
    try:
        clean = collect_demonstrations(demo_venv, 2, 0.99)
        demo_venv.seed(500)
        noisy = collect_demonstrations(demo_venv, 2, 0.99, noise=0.5, seed=3)
        demo_venv.seed(500)
        again = collect_demonstrations(demo_venv, 2, 0.99, noise=0.5, seed=3)
    finally:
        demo_venv.close()
    assert np.array_equal(clean.obs[0], noisy.obs[0]) and np.array_equal(clean.actions[0], noisy.actions[0])
    n = min(len(clean.obs), len(noisy.obs))
    assert not np.allclose(clean.obs[:n], noisy.obs[:n])  # the noise took the peg elsewhere
    assert np.abs(noisy.actions).max() <= 1.0
    assert np.array_equal(noisy.obs, again.obs) and np.array_equal(noisy.actions, again.actions)


def test_the_clones_normaliser_statistics_are_kept_through_rl_unless_asked(tmp_path):
    """``demos.freeze_normalizer`` (default): RL goes on with the observation statistics the clone was
    fitted with, so the clone's inputs do not move under it; ``false``: they keep updating."""
    demos = ["demos.episodes=4", "demos.epochs=5", "demos.batch_size=16"]

    def stats(name: str, *extra: str) -> np.ndarray:
        run = tmp_path / name
        train_policy(policy_cfg(run, "obs=state", *TINY_PPO, "eval_every_steps=1000", *demos, *extra))
        return np.asarray(torch.load(run / "checkpoint.pt", weights_only=True)["obs_rms"]["mean"])

    cloned = stats("clone", "total_steps=8")  # the demonstrations exceed it: the run ends with the clone
    narrow = torch.load(tmp_path / "clone" / "checkpoint.pt", weights_only=True)["policy"]["log_std"]
    stats("narrow", "total_steps=8", "demos.action_std=0.05")  # demos.action_std: set once cloned
    set_to = torch.load(tmp_path / "narrow" / "checkpoint.pt", weights_only=True)["policy"]["log_std"]
    torch.testing.assert_close(set_to, torch.full_like(set_to, float(np.log(0.05))))
    assert not torch.allclose(narrow, set_to)  # as fitted, it was not that
    assert json.loads((tmp_path / "narrow" / "demos.json").read_text())["action_std"] == pytest.approx([0.05] * 3)
    np.testing.assert_array_equal(stats("frozen", "total_steps=128"), cloned)
    assert not np.array_equal(stats("moving", "total_steps=128", "demos.freeze_normalizer=false"), cloned)


def test_the_cloned_actor_is_held_while_the_critic_warms_up(tmp_path):
    """``demos.actor_held_until``: PPO's updates before that many env steps leave the actor's weights
    (and its action std) as cloned and fit the critic; after it, both learn."""
    from mmrep.rl.demos import VALUE_PARTS

    demos = ["demos.episodes=4", "demos.epochs=5", "demos.batch_size=16"]

    def weights(name: str, *extra: str) -> tuple[dict, dict]:
        run = tmp_path / name
        train_policy(policy_cfg(run, "obs=state", *TINY_PPO, "eval_every_steps=1000", *demos, *extra))
        state = torch.load(run / "checkpoint.pt", weights_only=True)["policy"]
        critic = {k: v for k, v in state.items() if k.startswith(VALUE_PARTS)}
        return {k: v for k, v in state.items() if k not in critic}, critic

    actor, critic = weights("clone", "total_steps=8")  # ends with the clone
    assert "log_std" in actor and critic
    held_actor, held_critic = weights("held", "total_steps=128", "demos.actor_held_until=1000")
    assert all(torch.equal(held_actor[k], actor[k]) for k in actor)
    assert any(not torch.equal(held_critic[k], critic[k]) for k in critic)
    free_actor, _ = weights("free", "total_steps=128", "demos.actor_held_until=40")
    assert any(not torch.equal(free_actor[k], actor[k]) for k in actor)


def test_replaying_the_demonstrations_keeps_rl_near_the_clone_and_resumes(tmp_path):
    """``demos.replay_steps``: after each PPO update, cloning steps on the saved demonstrations, so the
    policy at the end fits the expert's actions better than one trained by PPO alone from the same
    clone (a large learning rate makes PPO alone drift); a resumed run reads the saved
    demonstrations and goes on replaying them."""
    from mmrep.policy import DEMONSTRATIONS_FILE, normalize_obs
    from mmrep.rl.demos import load_demonstrations

    demos = ["demos.episodes=4", "demos.epochs=30", "demos.batch_size=16", "algo.params.learning_rate=0.01"]

    def fit(name: str, *extra: str) -> float:
        run = tmp_path / name
        train_policy(policy_cfg(run, "obs=state", *TINY_PPO, "total_steps=256", "eval_every_steps=1000",
                                *demos, *extra))
        model, venv, _, rms = load_policy(run / "policy.pt")
        try:
            saved = load_demonstrations(tmp_path / "replayed" / DEMONSTRATIONS_FILE)
            obs = torch.as_tensor(normalize_obs(saved.obs, rms))
            with torch.no_grad():
                return float(-model.policy.get_distribution(obs).log_prob(torch.as_tensor(saved.actions)).mean())
        finally:
            venv.close()

    replayed = fit("replayed", "demos.replay_steps=20")
    assert not (tmp_path / "alone" / DEMONSTRATIONS_FILE).exists()  # written only where it is replayed
    assert replayed < fit("alone")  # measured 2.2 against 3.7 nats
    run = tmp_path / "replayed"
    saved = load_demonstrations(run / DEMONSTRATIONS_FILE)
    assert len(saved.obs) == json.loads((run / "demos.json").read_text())["samples"]
    before = torch.load(run / "checkpoint.pt", weights_only=True)["policy"]
    train_policy(policy_cfg(run, "obs=state", *TINY_PPO, "total_steps=320", "eval_every_steps=1000", *demos,
                            "demos.replay_steps=20"))
    after = torch.load(run / "checkpoint.pt", weights_only=True)
    assert after["num_timesteps"] == 320 and any(not torch.equal(before[k], after["policy"][k]) for k in before)
    # benchmarks/clone_spread.py refits this run's clone from its saved demonstrations, as set
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "clone_spread.py"
    spread = tmp_path / "spread.json"
    subprocess.run([sys.executable, str(script), str(run), "--fits", "2", "--episodes", "2", "--set",
                    "average_last=2", "--out", str(spread)], check=True, capture_output=True, text=True)
    record = json.loads(spread.read_text())
    assert record["demos_changed"] == {"average_last": 2} and len(record["fits"]) == 2
    assert all(0 <= f["success_rate"] <= 1 and f["nll_after"] < 10 for f in record["fits"])
    assert record["fits"][0]["nll_after"] != record["fits"][1]["nll_after"]  # two fits, two torch seeds
    (run / DEMONSTRATIONS_FILE).write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="demonstrations file .*demonstrations.npz cannot be read"):
        train_policy(policy_cfg(run, "obs=state", *TINY_PPO, "total_steps=400", "eval_every_steps=1000",
                                *demos, "demos.replay_steps=20"))


def test_a_run_killed_after_its_demonstrations_resumes_from_the_cloned_policy(tmp_path):
    """Killed while learning (after the demonstrations' checkpoint), the same command goes on from the
    cloned policy: no second collection, the clone's evaluation kept, the steps counted once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    args = [sys.executable, "-m", "mmrep.cli", "policy", "train", "obs=state", *TINY_PPO, "total_steps=100000",
            "eval_every_steps=100000", "eval_episodes=2", "ckpt_every_steps=100000", "vec_env=dummy",
            "progress=false", "demos.episodes=2", "demos.epochs=5", "env.max_steps=8", "env.physics_hz=240.0",
            "env.image_size=64", f"out={run}"]
    proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    # the provenance line follows the checkpoint (it reads the commit and package versions: slow on a
    # loaded machine), so wait for both before the kill
    while time.time() < deadline and not (
            (run / "checkpoint.pt").exists() and (run / "provenance.jsonl").exists()) and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, "training ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    record = json.loads((run / "demos.json").read_text())
    made = (run / "demos.json").stat().st_mtime_ns
    assert [r["timesteps"] for r in read_evaluations(run)] == [record["env_steps"]]  # the clone's
    from sim.provenance import read_provenance

    # the command as typed, to run again (it read "mmrep policy ...", without "train")
    assert read_provenance(run)[0]["command"].startswith("mmrep policy train obs=state ")
    total = record["env_steps"] + 32
    train_policy(policy_cfg(run, "obs=state", *TINY_PPO, f"total_steps={total}", "eval_every_steps=100000",
                            "ckpt_every_steps=100000", "demos.episodes=2", "demos.epochs=5"))
    assert (run / "demos.json").stat().st_mtime_ns == made
    assert [r["timesteps"] for r in read_evaluations(run)] == [record["env_steps"], total]


def test_the_best_of_several_clones_is_kept_by_its_episodes_whose_steps_count(tmp_path):
    """``demos.select_fits``: that many clones of the same demonstrations, the first the single fit's
    own, each scored on the same ``select_episodes`` episodes; the run goes on from the one with the
    most successes (ties: the earlier), and the selection's env steps count before the first periodic
    evaluation. Same seed, same selection."""
    demos = ["demos.episodes=4", "demos.epochs=30", "demos.batch_size=16"]
    single = tmp_path / "single"
    train_policy(policy_cfg(single, "obs=state", *TINY_PPO, "total_steps=40", "eval_every_steps=1000", *demos))
    one = json.loads((single / "demos.json").read_text())
    assert "selection" not in one

    runs = []
    for name in ("sel", "again"):
        run = tmp_path / name
        train_policy(policy_cfg(run, "obs=state", *TINY_PPO, "total_steps=40", "eval_every_steps=1000", *demos,
                                "demos.select_fits=3", "demos.select_episodes=3"))
        runs.append(json.loads((run / "demos.json").read_text()))
    record = runs[0]
    selection = record["selection"]
    assert [f["fit"] for f in selection["fits"]] == [0, 1, 2] and selection["episodes"] == 3
    assert selection["fits"][0]["nll_after"] == one["nll_after"]  # the first fit is the single one
    assert len({f["nll_after"] for f in selection["fits"]}) == 3  # each other from its own weights and order
    successes = [f["successes"] for f in selection["fits"]]
    assert selection["kept"] == successes.index(max(successes)) and record["nll_after"] == (
        selection["fits"][selection["kept"]]["nll_after"])
    # 3 episodes of at most 12 steps on the two sub-envs, which step together until the last ends
    assert all(3 <= f["env_steps"] <= 2 * 2 * 12 for f in selection["fits"])
    assert selection["env_steps"] == sum(f["env_steps"] for f in selection["fits"])
    assert record["env_steps"] == one["env_steps"] + selection["env_steps"]  # same demonstrations, their steps count
    assert read_evaluations(tmp_path / "sel")[0]["timesteps"] == record["env_steps"]
    assert runs[1]["selection"] == selection and runs[1]["nll_after"] == record["nll_after"]


def test_episodes_run_side_by_side_are_the_ones_run_one_at_a_time(small_encoder):
    """``run_episodes_together`` (the clone selection's episodes on the demonstrations' workers, the
    encoder in each worker) gives each seed the episode ``run_episodes`` gives it on one env encoding
    in place: same steps, same return to the encoders' 1e-5, in the seeds' order; the steps it counts
    are every step the sub-envs took, the idle one's after the last seed included."""
    cfg = PolicyConfig(obs=ObsConfig(kind="latent_proprio", encoder=str(small_encoder), encode_in="workers"),
                       algo=AlgoConfig("ppo", {}), n_envs=2, device="cpu", eval_episodes=0)
    cfg.env.max_steps, cfg.env.physics_hz, cfg.env.image_size = 6, 240.0, 64
    cfg.validate()
    seeds = [41, 42, 43]  # odd: one sub-env idles while the last episode runs
    workers = build_venv(cfg, 2, 5, vec_env="subproc")
    single = build_venv(cfg, 1, 5, vec_env="dummy")
    try:
        assert type(workers).__name__ == "WatchedSubprocVecEnv"
        torch.manual_seed(0)
        model = build_model(cfg, workers)
        together, steps = run_episodes_together(model, workers, seeds)
        alone = run_episodes(model, single, seeds, True)
    finally:
        workers.close()
        single.close()
    assert [e["seed"] for e in together] == seeds
    for a, b in zip(together, alone):
        assert (a["seed"], a["success"], a["steps"]) == (b["seed"], b["success"], b["steps"])
        assert a["return"] == pytest.approx(b["return"], abs=1e-4)
    assert len({round(e["return"], 6) for e in together}) == 3  # each seed its own start
    assert steps == 2 * (together[0]["steps"] + together[2]["steps"])  # sub-env 0 runs seeds 41 and 43
    with pytest.raises(ValueError, match="VecNormalize"):
        from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

        run_episodes_together(model, VecNormalize(DummyVecEnv([lambda: make_rl_env(ENV)])), seeds)


@pytest.mark.parametrize("override, message", [
    ("algo=sac", "on-policy actor-critic"), ("demos.min_std=0", r"demos.min_std must be > 0, got 0"),
    ("demos.batch_size=0", r"demos.batch_size must be > 0"), ("demos.expert=nobody", "demos.expert: unknown expert"),
    ("normalize_reward=true", "not with normalize_reward"), ("init_policy=runs/x", "init_policy continues one"),
    ("demos.seed=999999", r"demos.seed: the demonstrations' resets \(from 999999\)"),
    ("demos.dagger_episodes=0", r"demos.dagger_episodes must be > 0"),
    ("demos.actor_held_until=-1", r"demos.actor_held_until must be >= 0"),
    ("demos.noise=-0.1", r"demos.noise must be >= 0"),
    ("demos.replay_steps=-1", r"demos.replay_steps must be >= 0"),
    ("demos.obs_noise=-1", r"demos.obs_noise must be >= 0"), ("demos.average_last=-2", r"must be >= 0"),
    ("demos.action_std=0", r"demos.action_std must be > 0"),
    ("demos.freeze_normalizer=false demos.replay_steps=4", "it needs demos.freeze_normalizer=true"),
    ("demos.select_fits=0", r"demos.select_fits must be > 0"),
    ("demos.select_fits=2 demos.select_episodes=0", r"demos.select_episodes must be > 0"),
    ("demos.select_fits=2 demos.select_episodes=501", r"demos.select_episodes=501 \(n_envs=2\)"),
    ("demos.select_fits=2 demos.seed=999500", r"the clone selection's resets \(from 1000000\) reach eval_seed"),
    ("demos.select_fits=2 demos.dagger_rounds=1", "demos.dagger_rounds refits one: choose one"),
])
def test_demonstrations_are_refused_where_they_cannot_clone(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        policy_cfg(tmp_path, "obs=state", "demos.episodes=2", *override.split()).validate()


def test_demos_ppo_row_is_the_measured_setting():
    """`+paper=fused_insertion_demos_ppo` composes to the config of the committed runs it cites (they added
    only the speed options obs.encode_in=workers obs.onnx=true), so its documented figures are its own."""
    from omegaconf import OmegaConf

    from mmrep.config import compose

    root = Path(__file__).parents[1]
    for seed in (0, 6):
        out = f"runs/se/std10_s{seed}"
        composed = OmegaConf.to_container(compose("policy", [
            "+paper=fused_insertion_demos_ppo", f"seed={seed}", "obs.encode_in=workers", "obs.onnx=true",
            "progress=false", f"out={out}"]), resolve=True)
        measured = json.loads((root / "benchmarks/results/sample_efficiency" / out.replace("runs/se", "runs")
                               / "config.json").read_text())
        # options added since the runs, at the defaults that leave a run as it was (one fit, no selection)
        assert composed["demos"].pop("select_fits") == 1
        composed["demos"].pop("select_episodes")
        assert composed.pop("pin_workers") is False  # how the workers are scheduled: added since, the same results
        assert composed == measured


def test_gentle_select_row_is_the_measured_setting():
    """`+paper=fused_insertion_demos_ppo_select_gentle` composes to the configs of the committed runs it
    cites: seed 0 ran before the row had its name (the select row with PPO's learning rate, clip range and
    the replay set on the command line), seed 1 from the row itself."""
    from omegaconf import OmegaConf

    from mmrep.config import compose

    root = Path(__file__).parents[1]
    for seed, out in ((0, "runs/se/genr0_s0"), (1, "runs/se/gr_s1")):
        composed = OmegaConf.to_container(compose("policy", [
            "+paper=fused_insertion_demos_ppo_select_gentle", f"seed={seed}", "obs.encode_in=workers",
            "obs.onnx=true", "progress=false", f"out={out}"]), resolve=True)
        measured = json.loads((root / "benchmarks/results/sample_efficiency" / out.replace("runs/se", "runs")
                               / "config.json").read_text())
        assert composed.pop("pin_workers") is False  # how the workers are scheduled: added since, the same results
        assert composed == measured
