"""Periodic evaluations and ``keep_best`` at the edges a kill or a repeated command reaches: the row a
kill cut short is made again, ``best/`` is never replaced by a worse policy, a refused run leaves no
config that refuses the corrected command."""

import json

import pytest
import torch

BASE = ["progress=false", "vec_env=dummy", "env.max_steps=8", "env.physics_hz=240.0", "obs=state",
        "algo=ppo", "algo.params.n_steps=16", "algo.params.batch_size=16", "algo.params.n_epochs=1",
        "eval_every_steps=32", "ckpt_every_steps=32", "eval_episodes=2", "eval_stochastic=false"]


def config(*extra: str):
    from mmrep.config import app_config, compose

    return app_config(compose("policy", [*BASE, *extra]))


def rows(out):
    return [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]


def test_an_evaluation_a_kill_cut_short_is_made_again_from_its_checkpoint(tmp_path):
    """The checkpoint of step T is saved just before the evaluation of step T: a kill during that
    evaluation leaves the checkpoint and no row. The resume evaluates that same policy first."""
    from mmrep.policy import train_policy

    out = tmp_path / "run"
    train_policy(config(f"out={out}", "total_steps=32"))
    lost = rows(out)[-1]  # the evaluation of the policy the checkpoint at 32 holds (after its update)
    assert lost["timesteps"] == 32
    (out / "eval.jsonl").write_text("")  # as after a kill during the evaluation at 32 (checkpoint at 32)
    (out / "policy.pt").unlink()
    train_policy(config(f"out={out}", "total_steps=64"))
    again = rows(out)
    assert [r["timesteps"] for r in again] == [32, 64, 64]  # 32 made again; 64 periodic, then final
    # the same policy on the same held-out seeds: the same episodes
    assert again[0]["success_rate"] == lost["success_rate"] and again[0]["mean_return"] == lost["mean_return"]


def test_keep_best_compares_with_the_policy_kept_and_saves_it_before_its_row(tmp_path):
    from mmrep.policy import train_policy

    out = tmp_path / "run"
    cfg = config(f"out={out}", "total_steps=32", "keep_best=true")
    train_policy(cfg)
    kept = out / "best" / "eval.json"
    assert json.loads(kept.read_text())["timesteps"] == 32
    # Say the kept policy scored better than any this run can reach now: running the finished command
    # again evaluates the final policy once more (a second row at 32) and must not replace best/.
    better = {**json.loads(kept.read_text()), "success_rate": 2.0}
    kept.write_text(json.dumps(better))
    weights = (out / "best" / "policy.pt").read_bytes()
    train_policy(cfg)
    assert len(rows(out)) == 3 and (out / "best" / "policy.pt").read_bytes() == weights
    assert json.loads(kept.read_text())["success_rate"] == 2.0

    # best/ that cannot be written: the error comes before the row, so no row outranks the policy kept
    other = tmp_path / "unwritable"
    other.mkdir()
    (other / "best").write_text("a file where best/ goes")
    with pytest.raises(OSError):
        train_policy(config(f"out={other}", "total_steps=32", "keep_best=true"))
    assert not (other / "eval.jsonl").exists() or rows(other) == []


def test_a_run_refused_while_building_leaves_no_config_that_refuses_the_fixed_command(tmp_path):
    from mmrep.policy import train_policy

    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"algo.params: PPO does not take these parameters.*bogus"):
        train_policy(config(f"out={out}", "total_steps=32", "+algo.params.bogus=1"))
    assert not (out / "config.json").exists()
    assert train_policy(config(f"out={out}", "total_steps=32"))["timesteps"] == 32


def test_keep_best_without_periodic_evaluations_is_refused():
    with pytest.raises(ValueError, match="keep_best=true .* needs eval_episodes >= 1"):
        config("out=/tmp/never", "keep_best=true", "eval_episodes=0")


def test_continuing_from_a_kept_policy_brings_its_runs_evaluations_up_to_it(tmp_path):
    from mmrep.policy import train_policy

    first = tmp_path / "first"
    train_policy(config(f"out={first}", "total_steps=32", "keep_best=true"))
    kept = first / "best" / "eval.json"  # the policy at 32 made the one later ones cannot beat
    kept.write_text(json.dumps({**json.loads(kept.read_text()), "success_rate": 2.0}))
    train_policy(config(f"out={first}", "total_steps=64", "keep_best=true"))
    assert torch.load(first / "best" / "policy.pt", weights_only=True)["num_timesteps"] == 32
    assert max(r["timesteps"] for r in rows(first)) == 64
    train_policy(config(f"out={tmp_path / 'more'}", "total_steps=96", f"init_policy={first / 'best'}"))
    brought = [r["timesteps"] for r in rows(tmp_path / "more") if r.get("brought_along")]
    assert brought == [r["timesteps"] for r in rows(first) if r["timesteps"] <= 32] and max(brought) == 32


def test_a_continued_run_resumed_before_its_first_evaluation_adds_none(tmp_path):
    """The evaluations due up to the policy continued from were its run's: a resume of the continued
    run between its start and its own first evaluation makes none up."""
    from mmrep.policy import train_policy

    first = tmp_path / "first"
    train_policy(config(f"out={first}", "total_steps=32"))
    more = config(f"out={tmp_path / 'more'}", "total_steps=48", f"init_policy={first}", "ckpt_every_steps=16")
    train_policy(more)  # to 48: checkpoint at 48; the evaluation due at 32 was the first run's
    own = [r["timesteps"] for r in rows(tmp_path / "more") if not r.get("brought_along")]
    assert own == [48]  # the final one
    (tmp_path / "more" / "eval.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows(tmp_path / "more") if r.get("brought_along")))
    (tmp_path / "more" / "policy.pt").unlink()  # as if killed after the checkpoint at 48
    from dataclasses import replace

    train_policy(replace(more, total_steps=64))
    own = [r["timesteps"] for r in rows(tmp_path / "more") if not r.get("brought_along")]
    assert own == [64, 64]  # periodic and final at 64; nothing made up at 48
