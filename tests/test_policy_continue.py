"""``init_policy``: a run continued from another run's final policy goes on from its env steps, its
weights and its periodic evaluations, and only the same learning may be continued."""

import json

import pytest
import torch

BASE = ["progress=false", "vec_env=dummy", "env.max_steps=8", "env.physics_hz=240.0", "obs=state",
        "algo=ppo", "algo.params.n_steps=16", "algo.params.batch_size=16", "algo.params.n_epochs=1",
        "eval_every_steps=32", "eval_episodes=1", "eval_stochastic=false"]


def config(*extra: str):
    from mmrep.config import app_config, compose

    return app_config(compose("policy", [*BASE, *extra]))


def test_a_run_continues_from_a_finished_policy_and_refuses_another_learning(tmp_path):
    from mmrep.policy import load_policy, train_policy

    train_policy(config(f"out={tmp_path / 'first'}", "total_steps=32"))
    first = torch.load(tmp_path / "first" / "policy.pt", weights_only=True)
    final = train_policy(config(f"out={tmp_path / 'more'}", "total_steps=64", f"init_policy={tmp_path / 'first'}"))
    assert final["timesteps"] == 64
    more = torch.load(tmp_path / "more" / "policy.pt", weights_only=True)
    assert more["num_timesteps"] == 64 and more["train_seconds"] > first["train_seconds"]
    steps = [json.loads(line)["timesteps"] for line in (tmp_path / "more" / "eval.jsonl").read_text().splitlines()]
    assert steps[0] == 32 and steps[-1] == 64  # the first run's evaluations, then this one's
    changed = [k for k in first["policy"] if not torch.equal(first["policy"][k], more["policy"][k])]
    assert changed  # it learned on from there
    load_policy(tmp_path / "more" / "policy.pt")[1].close()  # an ordinary policy file
    with pytest.raises(ValueError, match="other seed than this run"):
        train_policy(config(f"out={tmp_path / 'other_seed'}", "total_steps=64", "seed=1",
                            f"init_policy={tmp_path / 'first'}"))
    assert not (tmp_path / "other_seed" / "config.json").exists()  # refused before the run wrote its config
    from dataclasses import replace

    from mmrep.policy import read_init_policy

    more_cfg = config(f"out={tmp_path / 'x'}", "total_steps=64", f"init_policy={tmp_path / 'first'}")
    faster = replace(more_cfg, obs=replace(more_cfg.obs, encode_in="workers", onnx=True))
    assert read_init_policy(faster)[1]["num_timesteps"] == 32  # how the encoder runs is no other learning
    with pytest.raises(ValueError, match="32 env steps already, total_steps is 32"):
        train_policy(config(f"out={tmp_path / 'none_left'}", "total_steps=32", f"init_policy={tmp_path / 'first'}"))
    with pytest.raises(ValueError, match="init_policy: .*does not exist"):
        config(f"out={tmp_path / 'x'}", f"init_policy={tmp_path / 'missing'}")
