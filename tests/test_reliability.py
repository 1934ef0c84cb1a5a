"""Nothing lost, nothing silent: run-folder locks, the encoder API's refusals, stable splits, files that
cannot be loaded named with what to do, and the smaller errors and warnings (docs/reliability.md)."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import collect_small

from mmrep.cli import main as cli
from mmrep.config import EvaluateConfig, ObsConfig, PolicyConfig, PolicyEvalConfig, TrainConfig, collect_config
from sim.collect import CollectConfig, collect
from sim.config import EnvConfig
from sim.dataset_format import info, read_manifest, split_of_index
from sim.run_lock import LOCK_NAME, FolderBusyError, run_lock

ROOT = Path(__file__).resolve().parents[1]
ENV = {"max_steps": 8, "image_size": 32}

HOLD = """
import sys, time
from sim.run_lock import run_lock
with run_lock(sys.argv[1], "train"):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(folder):
    """A process holding ``folder``'s run lock (as a running `mmrep train` does)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


# ------------------------------------------------------------------------------------------ locks
def test_every_app_refuses_a_folder_another_run_holds_and_names_it(tmp_path):
    from mmrep.evaluate import evaluate
    from mmrep.policy import train_policy
    from mmrep.policy_eval import evaluate_policy_run
    from mmrep.train import train

    folder = tmp_path / "run"
    policy = tmp_path / "p.pt"  # a policy file must exist before anything else is looked at
    policy.write_bytes(b"")
    proc = _holder(folder)
    try:
        runs = {
            "train": lambda: train(TrainConfig(data=str(tmp_path / "data"), out=str(folder))),
            "policy train": lambda: train_policy(PolicyConfig(obs=ObsConfig(kind="state"), out=str(folder))),
            "policy eval": lambda: evaluate_policy_run(PolicyEvalConfig(policy=str(policy), out=str(folder))),
            "evaluate": lambda: evaluate(EvaluateConfig(runs=[str(tmp_path / "r")], data=str(tmp_path / "d"),
                                                        out=str(folder))),
            "collect": lambda: collect(CollectConfig(episodes=1, out=str(folder)), progress=False),
        }
        for app, run in runs.items():
            with pytest.raises(FolderBusyError, match=rf"{folder} is in use by another run: pid {proc.pid} on "
                                                      rf".*\(mmrep train") as err:
                run()
            assert "wait for it to end" in str(err.value), app
        assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]  # nothing was written
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    proc = _holder(folder)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((folder / LOCK_NAME).read_text())["pid"] == proc.pid  # the dead run's lock file
    with run_lock(folder, "train"):
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_two_policy_trainings_into_one_folder_the_second_is_refused(tmp_path):
    folder = tmp_path / "pol"
    proc = _holder(folder)
    try:
        code = cli(["policy", "train", "obs=state", f"out={folder}", "total_steps=64"])
        assert code == 2
        assert not (folder / "eval.jsonl").exists() and not (folder / "config.json").exists()
    finally:
        proc.kill()
        proc.wait()


def test_out_pointing_at_a_file_is_refused_by_name(tmp_path, capsys):
    f = tmp_path / "a_file"
    f.write_text("x")
    for app in (["collect"], ["train"], ["policy", "train", "obs=state"]):
        assert cli([*app, f"out={f}"]) == 2
        assert f"out={f} is an existing file" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- encoder
@pytest.fixture(scope="module")
def encoder():
    from mmrep.encoder import Encoder
    from mmrep.models import ModelConfig

    torch.manual_seed(0)
    return Encoder(ModelConfig(image_size=64)).eval()


def _obs(b=2):
    rng = np.random.default_rng(0)
    return {"rgb": rng.integers(0, 255, (b, 64, 64, 3), dtype=np.uint8),
            "depth": rng.uniform(0.5, 1.0, (b, 64, 64, 1)).astype(np.float32),
            "force": rng.normal(size=(b, 50, 6)).astype(np.float32),
            "proprio": np.tile(np.array([0.6, 0, 0.1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], np.float32), (b, 1))}


def test_encoder_refuses_unknown_modality_names(encoder):
    with pytest.raises(ValueError, match=r"modalities names \['forse'\], not modalities of this encoder"):
        encoder.encode(_obs(), modalities=["rgb", "forse"])
    with pytest.raises(ValueError, match=r"\['touch'\]"):
        encoder.encode(_obs(), modalities=["touch"])
    with pytest.raises(ValueError, match="must be a list"):
        encoder.encode(_obs(), modalities="rgb")
    assert encoder.encode(_obs(), modalities=["rgb"]).shape == (2, encoder.z_dim)


@pytest.mark.parametrize("key,index", [("proprio", 1), ("depth", 0), ("force", 2)])
def test_encoder_refuses_non_finite_inputs_naming_key_and_index(encoder, key, index):
    obs = _obs(3)
    obs[key] = obs[key].copy()
    obs[key][index].flat[0] = np.nan if key != "depth" else np.inf
    with pytest.raises(ValueError, match=rf"obs\['{key}'\] holds NaN or inf at batch index {index}"):
        encoder.encode(obs)
    with pytest.raises(ValueError, match=key):
        encoder.flags(obs) if encoder.reliability else encoder.expert_logvars(obs)


def test_encoder_refuses_mismatched_batch_sizes_naming_the_key(encoder):
    obs = _obs(3)
    obs["force"] = obs["force"][:2]
    with pytest.raises(ValueError, match=r"batch sizes differ: 'force' has 2 samples, 'rgb' has 3"):
        encoder.encode(obs)


# ----------------------------------------------------------------------------------------- splits
def test_extending_a_dataset_keeps_every_episode_in_its_split(tmp_path):
    out = tmp_path / "d"
    cfg = dict(out=str(out), env=dict(ENV), workers=1, seed=2, policies={"random": 1.0})
    first = collect(CollectConfig(episodes=5, **cfg), progress=False)
    before = {e["name"]: e["split"] for e in first["episodes"]}
    extended = collect(CollectConfig(episodes=8, **cfg), progress=False)
    after = {e["name"]: e["split"] for e in extended["episodes"]}
    assert all(after[n] == s for n, s in before.items())
    assert all(e["split"] == split_of_index(e["index"], 2, 0.2) for e in extended["episodes"])


def test_an_old_dataset_keeps_its_recorded_splits_when_extended(tmp_path):
    """A dataset written by the earlier rule (a permutation of the planned episodes) keeps its splits."""
    out = tmp_path / "old"
    cfg = dict(out=str(out), env=dict(ENV), workers=1, seed=0, policies={"random": 1.0})
    collect(CollectConfig(episodes=4, **cfg), progress=False)
    manifest = read_manifest(out)
    for e in manifest["episodes"]:  # as the old rule might have put them: the opposite of the new rule
        e["split"] = "valid" if e["split"] == "train" else "train"
    manifest.pop("split_rule")
    (out / "manifest.json").write_text(json.dumps(manifest))
    old = {e["name"]: e["split"] for e in manifest["episodes"]}
    extended = collect(CollectConfig(episodes=6, **cfg), progress=False)
    assert {e["name"]: e["split"] for e in extended["episodes"][:4]} == old
    with h5py.File(out / "shard_000.h5", "r") as f:  # the shards' masks agree
        assert {n.decode() for n in f["mask/valid"][()]} == {n for n, s in old.items() if s == "valid"} | {
            e["name"] for e in extended["episodes"][4:] if e["split"] == "valid"}


def test_the_split_rule_gives_about_the_fraction_in_any_prefix():
    for seed in range(5):
        for n in (5, 10, 40, 200):
            valid = sum(split_of_index(i, seed, 0.2) == "valid" for i in range(n))
            assert abs(valid - 0.2 * n) <= 2, (seed, n, valid)


def test_policies_replaces_the_mixture_and_takes_every_policy_name():
    assert collect_config(["policies={random:1.0}"]).policies == {"random": 1.0}
    assert collect_config(["policies={expert:1.0}"]).policies == {"expert": 1.0}
    assert collect_config([]).mixture() == {"noisy_expert": 0.4, "random": 0.3, "contact_seeking": 0.3}
    with pytest.raises(ValueError, match=r"policies: unknown \['bogus'\]"):
        collect_config(["policies={bogus:1.0}"])


# ------------------------------------------------------------------------------------------ files
def _refused_pickle(path):
    torch.save({"format": "x", "payload": argparse.Namespace(a=1)}, path)  # not loadable with weights_only


def test_training_checkpoint_errors_name_the_file_and_what_to_do(tmp_path):
    from mmrep.torch_files import FileLoadError
    from mmrep.train import load_checkpoint

    good = tmp_path / "good.pt"
    torch.save({"a": torch.zeros(1000)}, good)
    (tmp_path / "last.pt").write_bytes(good.read_bytes()[:500])  # truncated
    with pytest.raises(FileLoadError, match=r"last.pt cannot be loaded: it is truncated .* copy best.pt") as err:
        load_checkpoint(tmp_path / "last.pt")
    assert "weights_only" not in str(err.value)
    _refused_pickle(tmp_path / "best.pt")
    with pytest.raises(FileLoadError, match="best.pt cannot be loaded: it holds objects") as err:
        load_checkpoint(tmp_path / "best.pt")
    assert "weights_only" not in str(err.value) and err.value.__cause__ is None and err.value.__suppress_context__
    (tmp_path / "config.pt").write_text('{"lr": 0.001}')  # a JSON file given where a checkpoint goes
    with pytest.raises(FileLoadError, match="config.pt cannot be loaded: it is not a torch file"):
        load_checkpoint(tmp_path / "config.pt")
    (tmp_path / "empty.pt").write_bytes(b"")  # a copy that never got its bytes
    with pytest.raises(FileLoadError, match="empty.pt cannot be loaded: it is truncated"):
        load_checkpoint(tmp_path / "empty.pt")
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(FileLoadError, match="folder.pt cannot be loaded: .*copy best.pt"):
        load_checkpoint(tmp_path / "folder.pt")


def test_policy_and_encoder_files_errors_name_the_file(tmp_path):
    import mmrep
    from mmrep.policy import load_policy

    (tmp_path / "policy.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match=rf"policy file {tmp_path / 'policy.pt'} cannot be loaded.*download"):
        load_policy(tmp_path / "policy.pt")
    _refused_pickle(tmp_path / "encoder.pt")
    with pytest.raises(ValueError, match=r"encoder file .*encoder.pt cannot be loaded: it holds objects") as err:
        mmrep.load_encoder(tmp_path / "encoder.pt")
    assert "weights_only" not in str(err.value)


def test_policy_eval_and_evaluate_name_a_refused_file_on_the_command_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    _refused_pickle(run / "policy.pt")
    assert cli(["policy", "eval", f"policy={run}", f"out={tmp_path / 'e'}", "episodes=1"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'policy.pt'} cannot be loaded" in err and "weights_only" not in err
    _refused_pickle(run / "last.pt")
    data = collect_small(tmp_path / "data", 2, 4)
    assert cli(["evaluate", f"runs=[{run}]", f"data={data}", f"out={tmp_path / 'v'}"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'last.pt'} cannot be loaded" in err and "weights_only" not in err


# -------------------------------------------------------------------------------- smaller items
@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("small") / "d"
    collect(CollectConfig(episodes=4, out=str(out), env=dict(ENV), workers=2, seed=1,
                          policies={"random": 1.0}), progress=False)
    return out


def test_info_warns_and_fails_on_a_deleted_shard(small_set, tmp_path, capsys):
    copy = tmp_path / "c"
    subprocess.run(["cp", "-r", str(small_set), str(copy)], check=True)
    (copy / "shard_001.h5").unlink()
    d = info(copy)
    assert any("shard_001.h5: missing" in w for w in d["warnings"])
    assert sum(d["splits"].values()) == d["episodes"]  # the split counts what is there
    assert cli(["data", "info", str(copy)]) == 1
    assert "WARNING" in capsys.readouterr().out


def test_info_warns_on_a_collection_that_has_not_finished(small_set, tmp_path, capsys):
    copy = tmp_path / "c"
    subprocess.run(["cp", "-r", str(small_set), str(copy)], check=True)
    (copy / "manifest.json").unlink()  # as a collection killed before its end leaves it
    assert cli(["data", "info", str(copy)]) == 1
    assert "has no manifest.json: its collection has not finished" in capsys.readouterr().out


def test_info_names_a_truncated_shard(small_set, tmp_path, capsys):
    copy = tmp_path / "c"
    subprocess.run(["cp", "-r", str(small_set), str(copy)], check=True)
    data = (copy / "shard_000.h5").read_bytes()
    (copy / "shard_000.h5").write_bytes(data[: len(data) // 2])
    assert cli(["data", "info", str(copy)]) == 1
    assert f"{copy / 'shard_000.h5'} cannot be opened" in capsys.readouterr().out


def test_export_of_a_corrupt_set_names_file_and_episode_and_leaves_no_folder(tmp_path, capsys):
    data = tmp_path / "d"
    collect(CollectConfig(episodes=1, out=str(data), env={"max_steps": 3, "image_size": 128}, workers=1,
                          policies={"random": 1.0}), progress=False)
    with h5py.File(data / "shard_000.h5", "r") as f:
        ds = f["data/ep_000000/obs/rgb"]
        offset = ds.id.get_chunk_info(1).byte_offset
    with open(data / "shard_000.h5", "r+b") as f:  # garble one compressed image chunk
        f.seek(offset)
        f.write(b"\xff" * 64)
    out = tmp_path / "exported"
    assert cli(["data", "export", str(data), str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{data / 'shard_000.h5'}:data/ep_000000 cannot be read" in err
    assert not out.exists()


def test_training_on_a_folder_without_its_manifest_says_so(small_set, tmp_path):
    from mmrep.data.dataset import MultimodalDataset

    copy = tmp_path / "c"
    subprocess.run(["cp", "-r", str(small_set), str(copy)], check=True)
    (copy / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"is an mmrep shard but .* has no manifest.json.*same `mmrep collect`"):
        MultimodalDataset(str(copy), "train")


def test_a_proprio_of_the_wrong_width_names_file_and_episode(small_set, tmp_path):
    from mmrep.data.dataset import MultimodalDataset

    copy = tmp_path / "c"
    subprocess.run(["cp", "-r", str(small_set), str(copy)], check=True)
    name = read_manifest(copy)["episodes"][0]
    with h5py.File(copy / name["shard"], "a") as f:
        g = f[f"data/{name['name']}/obs"]
        wide = g["proprio"][()]
        del g["proprio"]
        g.create_dataset("proprio", data=np.concatenate([wide, wide[:, :2]], axis=1))
    with pytest.raises(OSError, match=rf"{name['shard']}:data/{name['name']}.*proprio"):
        MultimodalDataset(str(copy), None)


def test_ctrl_c_during_collection_says_what_is_kept_and_resumes(tmp_path):
    out = tmp_path / "d"
    args = [sys.executable, "-m", "mmrep.cli", "collect", "episodes=6", f"out={out}", "workers=2", "progress=false",
            "env.max_steps=30", "env.image_size=32", "policies={random:1.0}"]
    proc = subprocess.Popen(args, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("shard_*.h5")):
        time.sleep(0.2)
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    err = proc.communicate(timeout=120)[1]
    if proc.returncode == 0:
        pytest.skip("the collection finished before Ctrl-C")
    assert proc.returncode == 130, err
    assert "interrupted: the complete episodes" in err and "Traceback" not in err
    assert subprocess.run(args, cwd=ROOT, capture_output=True).returncode == 0
    assert read_manifest(out)["complete"]


def test_gains_that_run_away_and_a_hole_outside_the_workspace_are_refused():
    with pytest.raises(ValueError, match=r"controller.kp_pos=1e\+12 N/m is unstable at physics_hz=1000"):
        EnvConfig.from_kwargs(controller={"kp_pos": 1e12}).validate()
    with pytest.raises(ValueError, match=r"kp_pos=100000 N/m is unstable at physics_hz=240"):
        EnvConfig.from_kwargs(physics_preset="fast", controller={"kp_pos": 1e5}).validate()
    with pytest.raises(ValueError, match=r"randomization.hole_xy_range=10 m puts positions outside the workspace"):
        EnvConfig.from_kwargs(randomization={"hole_xy_range": 10}).validate()
    with pytest.raises(ValueError, match="env.randomization.hole_xy_range"):
        collect_config(["env.randomization.hole_xy_range=10"])


def test_every_committed_config_still_validates():
    """The new refusals leave every env configuration in configs/ and benchmarks/results/ valid."""
    from mmrep.config import compose, group_options

    for option in group_options("env"):
        collect_config([f"env={option}"])
    checked = 0
    for path in sorted((ROOT / "benchmarks" / "results").rglob("*.json")):
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        for env in _env_sections(d):
            EnvConfig.from_kwargs(**env).validate()
            checked += 1
    assert checked > 0
    assert compose("collect", []).env.controller.kp_pos == 2000


def _env_sections(d, depth=0):
    if depth > 4 or not isinstance(d, dict):
        return
    for key, value in d.items():
        if key == "env" and isinstance(value, dict) and "controller" in value:
            yield value
        elif isinstance(value, dict):
            yield from _env_sections(value, depth + 1)


def test_a_resumed_policy_training_stops_at_total_steps(tmp_path):
    """A checkpoint taken in the middle of a rollout (every 24 steps, rollouts of 16) resumes to exactly
    total_steps, not a rollout beyond it."""
    from mmrep.config import app_config, compose
    from mmrep.policy import train_policy

    def cfg(total):
        return app_config(compose("policy", [f"out={tmp_path}", "progress=false", "vec_env=dummy", "eval_episodes=0",
                                             "ckpt_every_steps=24", "obs=state", "env.physics_hz=240.0",
                                             "env.image_size=64", "env.max_steps=8", f"total_steps={total}", "algo=ppo",
                                             "algo.params.n_steps=16", "algo.params.batch_size=16",
                                             "algo.params.n_epochs=1", "n_envs=1"]))

    assert train_policy(cfg(24))["timesteps"] == 24  # 1.5 rollouts
    assert train_policy(cfg(40))["timesteps"] == 40  # resumed from 24
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["num_timesteps"] == 40


def test_a_resume_draws_new_episodes_and_the_same_checkpoint_resumes_the_same_way(tmp_path):
    """The resumed sub-envs are seeded from (training seed, steps done), below every evaluation seed,
    not replaying the start's episodes; two resumes of one checkpoint end with the same weights."""
    import shutil

    from mmrep.config import app_config, compose
    from mmrep.policy import resume_env_seed, train_policy

    seeds = {resume_env_seed(s, done, 1_000_000 - 2) for s in (0, 1) for done in (10_000, 20_000, 30_000)}
    assert len(seeds) == 6 and all(0 <= x < 1_000_000 - 2 for x in seeds)
    assert resume_env_seed(1, 20_000, 999_998) == resume_env_seed(1, 20_000, 999_998)
    with pytest.raises(ValueError, match="eval_seed"):
        resume_env_seed(0, 10, 0)

    def cfg(out, total):
        return app_config(compose("policy", [f"out={out}", "progress=false", "vec_env=dummy", "eval_episodes=0",
                                             "ckpt_every_steps=16", "obs=state", "env.physics_hz=240.0",
                                             "env.image_size=64", "env.max_steps=8", f"total_steps={total}", "algo=ppo",
                                             "algo.params.n_steps=16", "algo.params.batch_size=16",
                                             "algo.params.n_epochs=1", "n_envs=1"]))

    train_policy(cfg(tmp_path / "a", 16))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    ends = []
    for name in ("a", "b"):
        train_policy(cfg(tmp_path / name, 48))
        ends.append(torch.load(tmp_path / name / "checkpoint.pt", weights_only=True))
    assert ends[0]["num_timesteps"] == ends[1]["num_timesteps"] == 48
    weights = [e["policy"] for e in ends]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_reset_seeds_run_gives_every_training_seed_its_own_episode_streams():
    """SB3's constructor seeds the sub-envs ``seed + i``, so training seeds 0 and 1 share a stream
    (sub-env 1 of seed 0, sub-env 0 of seed 1); ``reset_seeds=run`` seeds them ``seed * 1000 + i``."""
    from mmrep.config import app_config, compose
    from mmrep.policy import build_model, build_venv, seed_training_resets

    def first_obs(seed: int, scheme: str) -> np.ndarray:
        cfg = app_config(compose("policy", ["out=unused", "vec_env=dummy", "obs=state", "env.physics_hz=240.0",
                                            "env.max_steps=8", "algo=ppo", "n_envs=2", f"seed={seed}",
                                            f"reset_seeds={scheme}"]))
        venv = build_venv(cfg, cfg.n_envs, cfg.seed * 1000)
        try:
            build_model(cfg, venv)
            seed_training_resets(cfg, venv)
            obs = venv.reset()
            return np.concatenate([np.ravel(v) for v in obs.values()]) if isinstance(obs, dict) else obs
        finally:
            venv.close()

    shared = first_obs(0, "algorithm")[1], first_obs(1, "algorithm")[0]
    assert np.array_equal(*shared)  # the documented overlap, kept for the committed runs
    own = first_obs(0, "run"), first_obs(1, "run")
    assert not np.array_equal(own[0][1], own[1][0])
    assert not np.array_equal(own[0][0], own[0][1])
    with pytest.raises(ValueError, match="reset_seeds"):
        app_config(compose("policy", ["out=unused", "obs=state", "reset_seeds=distinct"]))


def test_policy_eval_of_a_folder_without_a_policy_names_it_and_writes_nothing(tmp_path):
    from mmrep.policy_eval import evaluate_policy_run

    run = tmp_path / "run"  # a training still running, or the wrong folder: no policy.pt yet
    run.mkdir()
    with pytest.raises(FileNotFoundError, match=rf"policy={run}: no policy file {run / 'policy.pt'}"):
        evaluate_policy_run(PolicyEvalConfig(policy=str(run)))
    assert list(run.iterdir()) == []  # no eval/ folder left behind


def test_a_run_lock_removes_what_a_killed_run_left_half_written(tmp_path):
    from sim.run_lock import run_lock

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process that wrote and was killed: its pid is free now
    (tmp_path / "best").mkdir()
    stale = [tmp_path / f"last.{dead.pid}.tmp.pt", tmp_path / "best" / f"policy.{dead.pid}.tmp.pt"]
    live = tmp_path / f"eval.{os.getpid()}.tmp.json"  # a process still running: left alone
    fresh = tmp_path / f"metrics.{dead.pid}.tmp.json"  # recent: perhaps another machine's live writer
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / ".run.lock").write_text("")
    nested = tmp_path / "eval" / f"results.{dead.pid}.tmp.json"  # a folder with a run of its own
    for f in [*stale, live, fresh, nested]:
        f.write_bytes(b"half")
    for f in [*stale, live, nested]:
        os.utime(f, (time.time() - 3600, time.time() - 3600))  # an hour without a write
    (tmp_path / "notes.tmp").write_text("not ours")
    with run_lock(tmp_path, "train"):
        assert not any(f.exists() for f in stale)
    assert all(f.exists() for f in (live, fresh, nested, tmp_path / "notes.tmp"))
