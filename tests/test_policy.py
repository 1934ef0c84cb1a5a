"""`mmrep policy train`: configs, the privileged state view, checkpoints and resume, the saved policy,
held-out evaluation and its confidence interval."""

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_benchmark
from omegaconf import OmegaConf

from mmrep.cli import main
from mmrep.config import app_config, compose, group_options
from mmrep.encoder import export_encoder
from mmrep.models import ModelConfig
from mmrep.models.multimodal import MultimodalEncoder
from mmrep.policy import build_model, build_venv, load_policy, run_episodes, summarize, train_policy, wilson_interval
from mmrep.policy_curves import read_evaluations
from sim.provenance import read_provenance
from sim.rl_env import make_rl_env
from sim.wrappers import FINE_SCALE, STATE_FIELDS

FAST_ENV = ["env.max_steps=8", "env.physics_hz=240.0", "env.image_size=64"]
TINY_PPO = ["algo=ppo", "algo.params.n_steps=16", "algo.params.batch_size=16", "algo.params.n_epochs=1"]


def policy_cfg(tmp_path, *overrides):
    return app_config(compose("policy", [f"out={tmp_path}", "progress=false", "vec_env=dummy", "eval_episodes=2",
                                         "eval_every_steps=32", "ckpt_every_steps=32", *FAST_ENV, *overrides]))


def test_every_algo_and_obs_option_composes(tmp_path):
    enc = tmp_path / "encoder.pt"
    export_encoder(MultimodalEncoder(ModelConfig(image_size=64, z_dim=8)), enc)
    for algo in group_options("algo"):
        for obs in group_options("obs"):
            cfg = app_config(compose("policy", [f"algo={algo}", f"obs={obs}", f"obs.encoder={enc}"]))
            assert cfg.algo.name == algo and cfg.obs.kind == obs
    assert app_config(compose("policy", ["obs=state"])).env.use_camera is False


def test_policy_config_refuses_bad_values_naming_the_field(tmp_path, capsys):
    with pytest.raises(ValueError, match="obs.encoder"):
        app_config(compose("policy", ["obs=latent"]))
    with pytest.raises(ValueError, match="obs.fine_scale"):
        app_config(compose("policy", ["obs=state", "obs.fine_scale=-1"]))
    with pytest.raises(ValueError, match="env: "):
        app_config(compose("policy", ["obs=state", "env.max_steps=0"]))
    assert main(["policy", "train", "obs=state", "algo.name=a2c", f"out={tmp_path / 'p'}"]) == 2
    assert "algo.name" in capsys.readouterr().err
    assert main(["policy", "eval", "settings=[foggy]"]) == 2
    assert "settings" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_state_observation_is_the_tip_to_hole_vector():
    env = make_rl_env({"use_camera": False, "physics_hz": 240.0}, state=True)
    try:
        obs, info = env.reset(seed=4)
        assert obs.shape == (len(STATE_FIELDS),) and obs.dtype == np.float32
        offset = info["tip_pos"] - info["hole_pos"]
        np.testing.assert_allclose(obs[:3], offset, atol=1e-6)
        fine = obs[[STATE_FIELDS.index(k) for k in ("dx_fine", "dy_fine", "dz_fine")]]
        np.testing.assert_allclose(fine, np.tanh(offset / FINE_SCALE), atol=1e-6)
        assert np.all(np.abs(fine) <= 1.0)
    finally:
        env.close()
    coarse = make_rl_env({"use_camera": False, "physics_hz": 240.0}, state=True, fine_scale=0.0)
    try:
        obs2, _ = coarse.reset(seed=4)
        keep = [i for i, f in enumerate(STATE_FIELDS) if not f.endswith("_fine")]
        assert obs2.shape == (len(keep),) and np.allclose(obs2, obs[keep])
    finally:
        coarse.close()


def test_policy_kwargs_from_the_config_reach_the_policy(tmp_path):
    cfg = policy_cfg(tmp_path, "obs=state", *TINY_PPO,
                     "+algo.params.policy_kwargs={net_arch:[32,16],log_std_init:-1.5,activation_fn:relu}")
    venv = build_venv(cfg, 1, 0, vec_env="dummy")
    try:
        model = build_model(cfg, venv)
        layers = [m for m in model.policy.mlp_extractor.policy_net if isinstance(m, torch.nn.Linear)]
        assert [m.out_features for m in layers] == [32, 16]
        assert isinstance(model.policy.mlp_extractor.policy_net[1], torch.nn.ReLU)
        assert torch.allclose(model.policy.log_std, torch.full((3,), -1.5))
        bad = policy_cfg(tmp_path, "obs=state", *TINY_PPO, "+algo.params.policy_kwargs={activation_fn:swish}")
        with pytest.raises(ValueError, match="activation_fn"):
            build_model(bad, venv)
    finally:
        venv.close()


def test_ended_in_hole_tells_finding_the_hole_from_finishing():
    from mmrep.policy import ended_in_hole, summarize

    def episode(success, depth, offset):
        return {"success": success, "steps": 60, "return": 0.0, "peak_force_step_mean_n": 1.0,
                "peak_force_substep_n": 1.0, "final_depth_mm": depth, "final_offset_mm": offset}

    inserted, short = episode(True, 30.0, 0.3), episode(False, 17.0, 0.7)  # in the hole, 8 mm short
    on_rim, beside = episode(False, 0.1, 3.6), episode(False, 40.0, 41.0)  # on the block; dropped beside it
    assert [ended_in_hole(e) for e in (inserted, short, on_rim, beside)] == [True, True, False, False]
    assert ended_in_hole({"success": False}) is False  # rows written before the final pose was kept
    summary = summarize([inserted, short, on_rim, beside])
    assert summary["success_rate"] == 0.25 and summary["in_hole_rate"] == 0.5


def test_wilson_interval_is_the_known_one():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-3)
    lo, hi = wilson_interval(10, 10)
    assert lo == pytest.approx(0.7225, abs=1e-3) and hi == 1.0
    lo, hi = wilson_interval(45, 100)
    assert lo == pytest.approx(0.3557, abs=1e-3) and hi == pytest.approx(0.5476, abs=1e-3)


def test_state_policy_trains_checkpoints_resumes_and_saves_a_weights_only_policy(tmp_path):
    cfg = policy_cfg(tmp_path, "obs=state", "total_steps=32", *TINY_PPO)
    first = train_policy(cfg)
    assert first["timesteps"] == 32 and 0.0 <= first["success_rate"] <= 1.0
    rows = [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert rows and rows[-1]["episodes"] == 2 and len(rows[-1]["success_ci95"]) == 2
    assert rows[-1]["stochastic"]["episodes"] == 2  # both curves: mean and sampled actions
    assert (tmp_path / "curves.png").stat().st_size > 5_000
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["num_timesteps"] == 32 and ckpt["obs_rms"]["mean"].shape == (len(STATE_FIELDS),)

    more = policy_cfg(tmp_path, "obs=state", "total_steps=64", *TINY_PPO)  # the same command, a larger budget
    assert train_policy(more)["timesteps"] == 64
    assert [r["timesteps"] for r in read_evaluations(tmp_path)] == [32, 64]  # the repeated step kept once
    runs = read_provenance(tmp_path)  # one line per start and resume, with the steps done then
    assert [(r["app"], r["timesteps"]) for r in runs] == [("policy train", 0), ("policy train", 32)]
    with pytest.raises(ValueError, match="seed"):
        train_policy(policy_cfg(tmp_path, "obs=state", "total_steps=64", "seed=3", *TINY_PPO))

    model, venv, saved, rms = load_policy(tmp_path / "policy.pt")
    try:
        assert saved.obs.kind == "state" and rms is not None
        a = run_episodes(model, venv, [7, 8], deterministic=True, obs_rms=rms)
        b = run_episodes(model, venv, [7, 8], deterministic=True, obs_rms=rms)
        assert a == b and all(e["steps"] <= 8 for e in a)  # seeded episodes replay
        assert summarize(a)["episodes"] == 2
    finally:
        venv.close()

    assert main(["policy", "eval", f"policy={tmp_path}", "episodes=2", "settings=[clean,pushes,ft_dead]",
                 "shapes=[square,round]", f"out={tmp_path / 'eval'}", "progress=false"]) == 0
    result = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert len(result["results"]) == 3 * 2 * 2  # settings x shapes x action modes
    assert {r["mode"] for r in result["results"]} == {"deterministic", "stochastic"}
    assert all(r["episode_results"][0]["seed"] == 2_000_000 for r in result["results"])
    assert (tmp_path / "eval" / "rollout_pushes.gif").stat().st_size > 10_000
    assert "95% CI" in (tmp_path / "eval" / "report.md").read_text()
    assert result["provenance"]["cpu"] and result["provenance"]["packages"]["stable-baselines3"]


def test_reward_normalisation_scales_what_the_learner_sees_and_resumes_with_its_statistics(tmp_path):
    from mmrep.policy import with_normalizer

    cfg = policy_cfg(tmp_path, "obs=state", "total_steps=32", "normalize_reward=true", *TINY_PPO)
    venv = with_normalizer(cfg, build_venv(cfg, 2, 0))
    try:
        venv.reset()
        for _ in range(4):
            _, scaled, _, _ = venv.step(np.zeros((2, cfg.env.action_dim), dtype=np.float32))
            raw = venv.get_original_reward()
            assert np.all(raw > 0) and not np.allclose(scaled, raw)  # the learner sees the return-scaled reward
        assert venv.norm_obs and venv.ret_rms.count > 4  # observations still normalised beside it
    finally:
        venv.close()
    plain = with_normalizer(policy_cfg(tmp_path, "obs=state", *TINY_PPO), build_venv(cfg, 2, 0))
    assert not plain.norm_reward  # off by default: every committed run
    plain.close()

    train_policy(cfg)
    first = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["ret_rms"]
    assert first["count"] == pytest.approx(32, abs=0.01)  # one return per sub-env and vector step
    rows = read_evaluations(tmp_path)
    assert rows[-1]["mean_return"] > 1.0  # evaluations report the env's own rewards, not the scaled ones
    train_policy(policy_cfg(tmp_path, "obs=state", "total_steps=64", "normalize_reward=true", *TINY_PPO))
    again = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["ret_rms"]
    assert again["count"] == pytest.approx(64, abs=0.01)  # resumed from the first 32 steps' statistics
    with pytest.raises(ValueError, match="normalize_reward"):  # a policy continues only the same learning
        train_policy(policy_cfg(tmp_path / "more", "obs=state", "total_steps=96", f"init_policy={tmp_path}",
                                *TINY_PPO))


def test_latent_policy_encodes_subprocess_envs_in_the_main_process(tmp_path):
    enc = tmp_path / "encoder.pt"
    torch.manual_seed(0)
    export_encoder(MultimodalEncoder(ModelConfig(image_size=64, z_dim=8)), enc)
    cfg = policy_cfg(tmp_path / "run", "obs=latent_proprio", f"obs.encoder={enc}", "total_steps=32", "algo=trpo",
                     "algo.params.n_steps=16", "algo.params.batch_size=16", "vec_env=subproc", "eval_episodes=1")
    final = train_policy(cfg)
    assert final["timesteps"] == 32
    model, venv, _, rms = load_policy(tmp_path / "run" / "policy.pt")
    try:
        assert venv.observation_space.shape == (8 + 13,) and rms.mean.shape == (21,)
    finally:
        venv.close()


def test_proprio8_policy_observes_z_and_the_tilt_free_proprioception(tmp_path):
    """obs.proprio=8: z then PROPRIO8 (sim.wrappers.Proprio8Observation), in the main process and in the
    workers alike; the orientation's tilt (PROPRIO13's qx, qy) is not in the observation."""
    from sim.observation import proprio8_from_proprio13

    enc = tmp_path / "encoder.pt"
    torch.manual_seed(0)
    export_encoder(MultimodalEncoder(ModelConfig(image_size=64, z_dim=8)), enc)
    env = make_rl_env({"max_steps": 4, "physics_hz": 240.0, "image_size": 64}, proprio8=True)
    obs, _ = env.reset(seed=3)
    assert env.observation_space["proprio8"].shape == (8,)
    np.testing.assert_array_equal(obs["proprio8"], proprio8_from_proprio13(obs["proprio"]))
    env.close()
    latents = []
    for encode_in in ("main", "workers"):
        cfg = policy_cfg(tmp_path / encode_in, "obs=latent_proprio", f"obs.encoder={enc}", "obs.proprio=8",
                         f"obs.encode_in={encode_in}", "vec_env=subproc")
        venv = build_venv(cfg, 2, seed=5)
        try:
            latents.append(venv.reset())
        finally:
            venv.close()
    assert latents[0].shape == (2, 8 + 8)
    np.testing.assert_allclose(latents[0], latents[1], atol=1e-5)
    with pytest.raises(ValueError, match="obs.proprio"):
        policy_cfg(tmp_path / "bad", "obs=latent_proprio", f"obs.encoder={enc}", "obs.proprio=7").validate()


def test_state_policy_summary_and_curves_read_the_runs(tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    runs = []
    for name, extra in (("state_fine_s0", []), ("state_coarse_s0", ["obs.fine_scale=0"])):
        run = tmp_path / name
        train_policy(policy_cfg(run, "obs=state", "total_steps=32", *TINY_PPO, *extra))
        assert main(["policy", "eval", f"policy={run}", "episodes=2", "video=false", "progress=false"]) == 0
        runs.append(str(run))
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "summary"
    subprocess.run([sys.executable, str(root / "benchmarks" / "state_policy_summary.py"), *runs, "--out", str(out)],
                   check=True, capture_output=True)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["variants"]) == {"fine", "coarse"}
    assert [r["fine_scale"] for r in summary["runs"]] == [0.002, 0.0]
    assert all(r["final_100_seeds"]["deterministic"]["episodes"] == 2 for r in summary["runs"])
    assert (out / "curves.png").stat().st_size > 5_000 and "state_coarse_s0" in (out / "table.md").read_text()
    assert (out / "runs" / "state_fine_s0" / "eval.jsonl").exists()
    subprocess.run([sys.executable, "-m", "mmrep.policy_curves", *runs, "--out", str(tmp_path / "c.png")], check=True,
                   capture_output=True)
    assert (tmp_path / "c.png").stat().st_size > 5_000
    from mmrep.policy_curves import plot_curve_panels  # the paper table's figure: a panel per row, seeds inside
    panels = plot_curve_panels({"state_fine": {"s0": runs[0]}, "state_coarse": {"s0": runs[1]}}, tmp_path / "p.png")
    assert panels.stat().st_size > 5_000
    with pytest.raises(ValueError, match="no runs"):
        plot_curve_panels({}, tmp_path / "empty.png")
    paper = tmp_path / "paper_summary"  # the paper table reads the same run folders as rows
    running = tmp_path / "state_running_s0"  # an evaluation still running: the rows it kept so far
    shutil.copytree(runs[1], running)
    done = json.loads((running / "eval" / "results.json").read_text())
    (running / "eval" / "results.json").unlink()
    key = {"policy": "p.pt", "seed": done["seeds"][0], "episodes": 2}
    (running / "eval" / "rows.partial.jsonl").write_text(
        json.dumps({"run": key, "shape_asked": None, "trained_shape": "square", "row": done["results"][0]})
        + "\n" + '{"run": {"cut short by a kill')
    cut = Path(runs[1]) / "eval_pushes"  # a finished run's second evaluation, cut short: only its setting is marked
    cut.mkdir()
    pushes = {**done["results"][0], "setting": "pushes"}
    (cut / "rows.partial.jsonl").write_text(
        json.dumps({"run": key, "shape_asked": None, "trained_shape": "square", "row": pushes}))
    assert main(["policy", "eval", f"policy={runs[0]}", f"out={runs[0]}/eval_transfer", "episodes=1", "video=false",
                 "progress=false", "shapes=[round]", "modes=[deterministic]"]) == 0
    subprocess.run([sys.executable, str(root / "benchmarks" / "paper_summary.py"), str(tmp_path), "--out", str(paper)],
                   check=True, capture_output=True)
    rows = json.loads((paper / "summary.json").read_text())["rows"]
    assert set(rows) == {"state_fine", "state_coarse", "state_running"}
    assert rows["state_running"]["partial"] == ["state_running_s0"] and rows["state_fine"]["partial"] == []
    assert len(rows["state_running"]["cells"]) == 1  # its one finished row
    assert "| state_running (square) (evaluation unfinished) | 1 |" in (paper / "table.md").read_text()
    cell = rows["state_fine"]["cells"]["clean/square/deterministic"]
    assert cell["episodes"] == 2 and 0 <= cell["pooled_ci95"][0] <= cell["pooled"] <= cell["pooled_ci95"][1]
    assert "| state_coarse (square) | 1 | 32 |" in (paper / "table.md").read_text()  # clean: finished
    assert "| state_coarse (square) (evaluation unfinished) | 1 | 32 |" in (paper / "table.md").read_text()
    assert rows["state_fine"]["cells"]["clean/round/deterministic"]["episodes"] == 1  # from eval_transfer/
    assert "| state_fine (round) | 1 | 32 |" in (paper / "table.md").read_text()  # a mode left out: dashes
    assert (paper / "runs" / "state_fine_s0" / "eval_transfer" / "results.json").exists()
    restored = tmp_path / "restored" / "paper"  # the committed copies are run folders too: the same table
    shutil.copytree(paper / "runs", restored)
    subprocess.run([sys.executable, str(root / "benchmarks" / "paper_summary.py"), str(restored), "--out",
                    str(tmp_path / "again")], check=True, capture_output=True)
    again = json.loads((tmp_path / "again" / "summary.json").read_text())["rows"]
    assert (tmp_path / "again" / "table.md").read_text() == (paper / "table.md").read_text()
    wall = rows["state_fine"]["wall_minutes"]  # read back from train_wall.json: the copy has no tb/
    assert again["state_fine"]["wall_minutes"] == wall and wall["state_fine_s0"] > 0
    cpu = rows["state_fine"]["cpu_hours"]  # from the copied eval.jsonl, as the table shows it
    assert again["state_fine"]["cpu_hours"] == cpu and cpu["state_fine_s0"] > 0
    assert f"({cpu['state_fine_s0']:.1f} CPU h)" in (paper / "table.md").read_text()
    training = tmp_path / "state_training_s0"  # killed mid-training: a checkpoint, no policy.pt yet
    shutil.copytree(runs[0], training)
    (training / "policy.pt").unlink()
    status = subprocess.run([sys.executable, str(root / "benchmarks" / "paper_summary.py"), str(tmp_path), "--status"],
                            check=True, capture_output=True, text=True).stdout.splitlines()
    wall = r", \d+ min"  # training wall minutes, from the checkpoint
    assert any(re.fullmatch(f"state_fine_s0: trained, 32 of 32 env steps{wall}; eval done, eval_transfer done", line)
               for line in status), status
    assert any(re.fullmatch(f"state_running_s0: trained, 32 of 32 env steps{wall}; eval 1 rows kept", line)
               for line in status), status
    assert any(re.fullmatch(f"state_training_s0: training, 32 of 32 env steps{wall}; eval done, eval_transfer done",
                            line) for line in status), status
    copy = tmp_path / "state_copied_s0"  # restored from the committed results: evaluations, no policy
    shutil.copytree(paper / "runs" / "state_fine_s0", copy)
    status = subprocess.run([sys.executable, str(root / "benchmarks" / "paper_summary.py"), str(tmp_path), "--status"],
                            check=True, capture_output=True, text=True).stdout.splitlines()
    assert "state_copied_s0: a copy without its policy, 32 of 32 env steps; eval done, eval_transfer done" in status
    assert status[-1].startswith("no run yet: ")  # configs/paper rows with no run
    missing = status[-1].removeprefix("no run yet: ").split(", ")
    assert {"fused_concat", "fused_insertion", "fused_touch"} <= set(missing) and "state_fine" not in missing
    efficiency = tmp_path / "efficiency"  # env steps and minutes to a periodic success, two groups of runs
    speedup = root / "benchmarks" / "results" / "speed" / "policy_speedup_backdrop_onnx_workers.json"
    printed = subprocess.run([sys.executable, str(root / "benchmarks" / "sample_efficiency.py"), "--before", runs[0],
                              "--after", runs[1], "--threshold", "0", "--out", str(efficiency),
                              "--base-loop", str(speedup)], check=True, capture_output=True, text=True).stdout
    result = json.loads((efficiency / "summary.json").read_text())
    base = result["ratios"]["minutes_at_base_loop"]  # the minutes priced on the older tree's slower loop
    assert base["base"] == "a0db715" and base["base_median_minutes_at_least"] > 0
    assert "wall minutes against the tree a0db715" in printed
    wrong = subprocess.run([sys.executable, str(root / "benchmarks" / "sample_efficiency.py"), "--before", runs[0],
                            "--after", runs[1], "--threshold", "0", "--out", str(tmp_path / "wrong"),
                            "--base-loop", str(efficiency / "summary.json")], capture_output=True, text=True)
    assert wrong.returncode != 0 and "not a benchmarks/policy_speedup.py JSON (no 'ratio_median')" in wrong.stderr
    first = result["runs"]["before"][0]
    assert first["reached"] and first["steps_to_threshold"] == first["curve"][0]["timesteps"] > 0
    assert first["minutes_to_threshold"] > 0 and first["held_out_final"]["episodes"] == 2
    assert first["cpu_minutes_to_threshold"] > 0  # the run's CPU (its workers' too) before that evaluation
    assert result["ratios"]["cpu_minutes_after_over_before"] > 0 and "CPU min" in printed
    assert result["ratios"]["steps_after_over_before"] == 1.0 and "1/1 runs reach 0%" in printed
    assert (efficiency / "curves.png").stat().st_size > 5_000
    never = subprocess.run([sys.executable, str(root / "benchmarks" / "sample_efficiency.py"), "--before", runs[0],
                            "--after", runs[1], "--threshold", "1.01", "--out", str(efficiency)],
                           check=True, capture_output=True, text=True).stdout
    assert "0/1 runs reach" in never  # a run that never gets there counts its last evaluation
    assert "median at least" in never and result["ratios"]["steps_ratio_is"] == "exact"
    assert json.loads((efficiency / "summary.json").read_text())["ratios"]["steps_ratio_is"].startswith("unknown")
    kept = Path(runs[1]) / "best" / "eval"  # an evaluation of the kept policy is read beside the final one
    kept.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(runs[1]) / "eval" / "results.json", kept / "results.json")
    printed = subprocess.run([sys.executable, str(root / "benchmarks" / "sample_efficiency.py"), "--before", runs[0],
                              "--after", runs[1], "--threshold", "0", "--out", str(efficiency)],
                             check=True, capture_output=True, text=True).stdout
    after = json.loads((efficiency / "summary.json").read_text())["groups"]
    assert after["after"]["held_out_kept_per_run"] == after["after"]["held_out_per_run"]
    assert after["before"]["held_out_kept_pooled"] is None and "kept policies" in printed


def test_sample_efficiency_reads_the_final_policy_as_the_kept_one_only_where_keep_best_kept_it():
    kept_is_final = load_benchmark("sample_efficiency").kept_is_final

    def rows(*rates):
        return [{"success_rate": r} for r in rates]

    assert kept_is_final(rows(0.5, 0.9, 0.9), {"keep_best": True})  # a tie: keep_best keeps the later policy
    assert not kept_is_final(rows(0.5, 0.93, 0.9), {"keep_best": True})  # an earlier policy was kept
    assert not kept_is_final(rows(0.5, 0.9), {"keep_best": False})  # nothing was kept
    # the ranking is keep_best's own: the mean over the evaluation settings where a row has one
    assert not kept_is_final([{"success_rate": 0.9, "selection": 0.9}, {"success_rate": 1.0, "selection": 0.8}],
                             {"keep_best": True})


def test_sample_efficiency_compares_wall_minutes_on_the_older_trees_slower_loop():
    at_base_loop = load_benchmark("sample_efficiency").at_base_loop

    def run(minutes, steps=100_000):  # a run whose last periodic evaluation came after `minutes` of learning
        return {"curve": [{"timesteps": steps // 2, "learning_minutes": minutes / 2},
                          {"timesteps": steps, "learning_minutes": minutes}]}

    speedup = {"base": "a0db715", "ratio_median": 1.5, "new_options": ["obs.onnx=true"]}
    before = [run(12.0), run(24.0), run(40.0)]  # the two slower ones shared the cores with other jobs
    got = at_base_loop(before, {"median_steps_to_threshold": 100_000}, speedup, after_minutes_upper=9.0)
    assert got["before_fastest_minutes_per_100k"] == pytest.approx(12.0)  # the least loaded run's pace
    assert got["base_median_minutes_at_least"] == pytest.approx(18.0)  # 12 min per 100k, 1.5x slower there
    assert got["after_over_base_at_most"] == pytest.approx(0.5) and got["base"] == "a0db715"
    # the median env steps scale it: a median reached at 50k costs half the minutes
    half = at_base_loop(before, {"median_steps_to_threshold": 50_000}, speedup, after_minutes_upper=9.0)
    assert half["after_over_base_at_most"] == pytest.approx(1.0)
    assert at_base_loop(before, {"median_steps_to_threshold": 1}, speedup, after_minutes_upper=None) is None
    unmeasured = {"curve": [{"timesteps": 100_000, "learning_minutes": None}]}  # written before runs kept minutes
    assert at_base_loop([unmeasured], {"median_steps_to_threshold": 1}, speedup, after_minutes_upper=1.0) is None


def test_sample_efficiency_plots_groups_of_any_size(tmp_path):
    """Five runs a group (the shade per run once went past matplotlib's alpha range at four)."""
    plot = load_benchmark("sample_efficiency").plot
    run = {"run": "r", "periodic_episodes": 30,
           "curve": [{"timesteps": 1000 * k, "success_rate": k / 4, "learning_minutes": k} for k in range(4)]}
    out = plot({"before": [run] * 5, "after": [run] * 5}, 0.9, tmp_path / "curves.png")
    assert Path(out).stat().st_size > 5_000


def test_sample_efficiency_median_is_a_bound_where_a_run_stopped_short():
    median_is_lower_bound = load_benchmark("sample_efficiency").median_is_lower_bound

    def runs(*steps):  # a negative number: a run that stopped there without reaching the threshold
        return [{"steps_to_threshold": abs(s), "reached": s > 0} for s in steps]

    assert not median_is_lower_bound(runs(75_000, 87_500, -100_000))  # the short run stopped beyond the median
    assert median_is_lower_bound(runs(-50_000, -50_000, -50_000))
    assert median_is_lower_bound(runs(-37_500, 60_000, 70_000))  # it might have needed more than 60k
    assert not median_is_lower_bound(runs(40_000, 60_000, 70_000))
    assert not median_is_lower_bound(runs(40_000, -50_000, 50_000))  # the one that reached 50k is the median


def test_sample_efficiency_median_upper_bound_counts_short_runs_as_never_reaching():
    upper = load_benchmark("sample_efficiency").median_upper

    def runs(*minutes):  # a negative number: a run that stopped there without reaching the threshold
        return [{"m": abs(m), "reached": m > 0} for m in minutes]

    # recorded median 6.2 (a run that stopped short): the true one lies between it and 6.7
    assert upper(runs(1.6, 4.4, -6.2, 6.7, -6.8), "m") == 6.7
    assert upper(runs(1.6, 4.4, 5.0, -6.2, -6.8), "m") == 5.0  # exact where it is the recorded median
    assert upper(runs(1.6, -6.2, -6.8), "m") is None  # half or more never reached: no bound
    assert upper([{"m": None, "reached": True}], "m") is None


def test_sample_efficiency_counts_runs_at_the_threshold_by_half_the_baseline_budget():
    shares = load_benchmark("sample_efficiency").reached_at_half_budget

    def runs(budget, *steps):  # a negative number: a run that stopped there without reaching the threshold
        return [{"steps_to_threshold": abs(s), "reached": s > 0, "total_steps": budget} for s in steps]

    before = runs(100_000, 75_000, 87_500, -100_000, 100_000, -100_000)  # 100k reached: counts, at the budget
    after = runs(50_000, 14_222, -50_000, 50_000, 37_500, -50_000)
    got = shares(before, after)
    assert got["before_by_budget"] == {"steps": 100_000, "reached": 3, "runs": 5, "share": 0.6}
    assert got["before_by_half"]["reached"] == 0 and got["before_by_half"]["steps"] == 50_000
    assert got["after_by_half"] == {"steps": 50_000, "reached": 3, "runs": 5, "share": 0.6}
    # a candidate trained past half the baseline's budget is counted only up to that half
    assert shares(before, runs(100_000, 60_000, 14_222))["after_by_half"]["reached"] == 1


def test_random_init_encoder_keeps_the_architecture_and_statistics_not_the_weights(tmp_path):
    from mmrep.encoder import load_encoder, random_like

    torch.manual_seed(123)  # not a seed random_like is asked for below
    net = MultimodalEncoder(ModelConfig(image_size=64, z_dim=8))
    with torch.no_grad():
        for _, buf in net.named_buffers():
            buf.add_(0.5)  # statistics that differ from a fresh module's defaults
    export_encoder(net, tmp_path / "encoder.pt")
    trained = load_encoder(tmp_path / "encoder.pt")
    rng_before = torch.random.get_rng_state()
    a, b, c = random_like(trained, 0), random_like(trained, 0), random_like(trained, 1)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the caller's stream is untouched
    for (name, p), (_, q), (_, r), (_, t) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters(),
                                                 trained.named_parameters()):
        assert torch.equal(p, q), name  # seeded
        if p.numel() > 1 and p.dim() > 1:
            assert not torch.equal(p, r) and not torch.equal(p, t), name
    for (name, x), (_, y) in zip(a.named_buffers(), trained.named_buffers()):
        assert torch.equal(x, y), name
    cfg = policy_cfg(tmp_path / "run", "obs=latent_proprio", f"obs.encoder={tmp_path / 'encoder.pt'}",
                     "obs.random_init=true", "total_steps=16", *TINY_PPO, "eval_episodes=1")
    assert train_policy(cfg)["timesteps"] >= 16
    with pytest.raises(ValueError, match="obs.random_init"):
        app_config(compose("policy", ["obs=state", "obs.random_init=true"]))


CONTINUED = ("_300k_touch", "_250k_selected_touch")  # touch rows that go on from a 200k row's policy


def test_every_paper_row_shares_the_algorithm_budget_and_evaluation():
    rows = [r for r in group_options("paper") if r != "base"]
    assert {"fused_poe", "fused_concat", "no_haptics", "no_vision", "random_init", "pixels", "state"} <= set(rows)
    # The touch rows' encoders are trained by `make paper-touch` (runs/touch_*): a committed encoder stands in
    # for validation; what is compared here is the shared budget, algorithm and evaluation.
    stand_in = Path(__file__).resolve().parents[1] / "benchmarks/results/insertion/encoders/insertion.pt"
    # and a committed run for the policy a continued row starts from (runs/paper/<row>_200k_touch_s<seed>)
    policy_in = Path(__file__).resolve().parents[1] / \
        "benchmarks/results/paper_touch/runs/fused_memory_odometry_camera_error_200k_touch_s2"
    cfgs = {r: app_config(compose("policy", [f"+paper={r}", "seed=2",
                                             *([f"obs.encoder={stand_in}"] if r.endswith("_touch") else []),
                                             *([f"init_policy={policy_in}"] if r.endswith(CONTINUED) else [])]))
            for r in rows}
    touch = [r for r in rows if r.endswith("_touch")]
    assert touch and all(cfgs[r].env.clearance < cfgs["fused_insertion"].env.clearance for r in touch)
    # the touch rows' proprioception has no tilt (PROPRIO8); the default rows keep the env's PROPRIO13
    assert all(cfgs[r].obs.proprio == 8 for r in touch) and cfgs["fused_insertion"].obs.proprio == 13
    def shared(names):
        return {(cfgs[r].algo.name, json.dumps(cfgs[r].algo.params, sort_keys=True), cfgs[r].total_steps,
                 cfgs[r].n_envs, cfgs[r].eval_every_steps, cfgs[r].eval_episodes, cfgs[r].eval_seed, cfgs[r].seed,
                 cfgs[r].env.peg_shape) for r in names if "lstm" not in r}
    half = [r for r in rows if r.endswith("_150k")]  # a row at half the budget, under its own name
    demos = [r for r in rows if r.endswith("_demos")]  # cloned from demonstrations, ending with the clone
    demos_ppo = [r for r in rows if r.endswith("_demos_ppo")]  # the clone, then PPO with the replay
    select = [r for r in rows if r.endswith("_demos_ppo_select")]  # the same, the best of several clones
    gentle = [r for r in rows if r.endswith("_demos_ppo_select_gentle")]  # the same, PPO gentler after the clone
    default_rows = shared([r for r in rows if r not in touch + half + demos + demos_ppo + select + gentle])
    # a row named <row>_gentle is <row> with PPO's learning rate and clip range lowered and the
    # demonstrations' replay off: nothing else differs
    assert gentle
    for r in gentle:
        row, base = cfgs[r], cfgs[r.removesuffix("_gentle")]
        params = {**base.algo.params, "learning_rate": 1e-4, "clip_range": 0.1}
        assert row.algo.params == params and row.demos.replay_steps == 0 < base.demos.replay_steps
        assert replace(row, algo=base.algo, demos=replace(row.demos, replay_steps=base.demos.replay_steps)) == base
    # a row named <row>_demos_ppo_select is <row>_demos_ppo keeping the best of several clones: nothing else
    assert select and all(cfgs[r].demos.select_fits > 1 and replace(
        cfgs[r], demos=replace(cfgs[r].demos, select_fits=1, select_episodes=cfgs[r.removesuffix("_select")]
                               .demos.select_episodes)) == cfgs[r.removesuffix("_select")] for r in select)
    # a row named <row>_demos_ppo is <row>_demos carried on with PPO to its own 50k budget (the clone's std
    # set, the demonstrations replayed) under the sample-efficiency protocol: nothing else differs
    assert demos_ppo
    for r in demos_ppo:
        row, base = cfgs[r], cfgs[r.removesuffix("_ppo")]
        assert row.total_steps == 50_000 and row.demos.replay_steps > 0 and row.demos.action_std is not None
        own = ("demos", "total_steps", "eval_every_steps", "eval_episodes", "eval_stochastic", "keep_best")
        assert replace(row, **{k: getattr(base, k) for k in own}) == base
        # of the demonstrations, only the replay and the std differ (the episodes, expert and fit are the row's)
        assert replace(row.demos, replay_steps=base.demos.replay_steps, action_std=base.demos.action_std) == base.demos
    # a row named <row>_demos is <row> with demonstrations and a budget below their env steps (about 14k):
    # nothing else differs
    assert demos and all(cfgs[r].demos.episodes > 0 and cfgs[r].total_steps < 14_000 and replace(
        cfgs[r], demos=cfgs[r.removesuffix("_demos")].demos, total_steps=300_000) == cfgs[r.removesuffix("_demos")]
        for r in demos)
    assert len(default_rows) == 1 and next(iter(default_rows))[0] == "ppo"
    # a default row named <row>_150k is <row> at half the budget and differs from it in nothing else
    assert half and all(cfgs[r].total_steps == 150_000
                        and replace(cfgs[r], total_steps=300_000) == cfgs[r.removesuffix("_150k")] for r in half)
    # a default row named <row>_300k is <row> under its own name (that row's committed runs are 150k
    # screens); it differs from it in nothing, the budget included
    full = [r for r in rows if r.endswith("_300k")]
    assert full and all(cfgs[r] == cfgs[r.removesuffix("_300k")] and cfgs[r].total_steps == 300_000 for r in full)
    # the touch rows share their own budget (60-step episodes): 100k env steps, evaluated every 25k; a row
    # named <row>_200k_touch is <row>_touch at twice that, and differs from it in nothing else
    longer = [r for r in touch if r.endswith("_200k_touch")]
    continued = [r for r in touch if r.endswith("_300k_touch")]
    selected = [r for r in touch if r.endswith("_250k_selected_touch")]
    touch_rows = shared([r for r in touch if r not in longer + continued + selected])
    assert len(touch_rows) == 1 and next(iter(touch_rows))[2:5] == (100_000, 2, 25_000)
    for r in longer:
        assert cfgs[r].total_steps == 200_000
        assert replace(cfgs[r], total_steps=100_000) == cfgs[r.replace("_200k_touch", "_touch")]
    # a row named <row>_300k_touch goes on from <row>_200k_touch's policy of the same seed to 300k
    for r in continued:
        before = r.replace("_300k_touch", "_200k_touch")
        assert replace(cfgs[r], total_steps=200_000, init_policy=None) == cfgs[before]
        raw = OmegaConf.to_container(compose("policy", [f"+paper={r}", "seed=2"]), resolve=True)
        assert cfgs[r].total_steps == 300_000 and raw["init_policy"] == f"runs/paper/{before}_s2"
    # a row named <row>_250k_selected_touch goes on from <row>_200k_touch's policy to 250k, evaluated every 10k
    # on the clean setting and the occluder at first contact, and keeps the policy best on both
    assert selected
    for r in selected:
        before = r.replace("_250k_selected_touch", "_200k_touch")
        assert cfgs[r].keep_best and cfgs[r].eval_settings == ["clean", "occluder_after_contact"]
        assert replace(cfgs[r], total_steps=200_000, init_policy=None, eval_every_steps=25_000, eval_episodes=10,
                       eval_stochastic=True, eval_settings=[]) == cfgs[before]
        raw = OmegaConf.to_container(compose("policy", [f"+paper={r}", "seed=2"]), resolve=True)
        assert cfgs[r].total_steps == 250_000 and raw["init_policy"] == f"runs/paper/{before}_s2"
    # The memory remedy differs only in the policy's LSTM: PPO's settings, budget and evaluation otherwise.
    lstm, fused = cfgs["fused_lstm_occluder"], cfgs["fused_insertion"]
    assert lstm.algo.name == "recurrent_ppo" and lstm.obs == fused.obs and lstm.total_steps == fused.total_steps
    assert {k: v for k, v in lstm.algo.params.items() if k not in ("batch_size", "policy_kwargs")} == \
        {k: v for k, v in fused.algo.params.items() if k != "batch_size"}
    assert lstm.env.occluder.mode == "after_contact" and lstm.env.occluder.probability == 0.5
    # The camera-memory remedy: the fused z with memory, the same occluder episodes as the LSTM row
    memory = cfgs["fused_memory_occluder"]
    assert memory.obs.camera_memory and not fused.obs.camera_memory
    assert memory.obs.encoder == fused.obs.encoder and memory.env.occluder == lstm.env.occluder
    # The default setting's fault remedies: fused_insertion's representation, faults and the occluder in
    # training; detect-reject-hold adds the flagged experts left out and the camera held
    faults, drc = cfgs["fused_faults_insertion"], cfgs["fused_drc_insertion"]
    assert faults.obs.encoder == drc.obs.encoder == fused.obs.encoder and faults.perturbations == drc.perturbations
    assert len(faults.perturbations) == 3 and faults.env.occluder.mode == "after_contact" and not fused.perturbations
    assert drc.obs.reject_flagged and drc.obs.camera_memory and not faults.obs.reject_flagged
    # ... and its odometry variant: one change, the displacement since the held view
    odometry = cfgs["fused_drc_odometry_insertion"]
    assert odometry.obs.camera_odometry and not drc.obs.camera_odometry
    assert replace(odometry, obs=replace(odometry.obs, camera_odometry=False)) == drc
    # ... and on the memory remedy: one change from fused_memory_occluder
    memory_odometry = cfgs["fused_memory_odometry_insertion"]
    assert replace(memory_odometry, obs=replace(memory_odometry.obs, camera_odometry=False)) == memory
    # ... and detect-reject-hold with odometry and the memory row's occluder share: one change
    occluder_half = cfgs["fused_drc_odometry_occluder_insertion"]
    assert occluder_half.env.occluder.probability == memory.env.occluder.probability == 0.5
    assert replace(occluder_half, env=replace(occluder_half.env, occluder=odometry.env.occluder)) == odometry
    # ... and the memory row with the F/T faults in training, no experts left out: one change
    memory_faults = cfgs["fused_faults_memory_odometry_insertion"]
    assert memory_faults.perturbations == faults.perturbations and not memory_faults.obs.reject_flagged
    assert replace(memory_faults, perturbations=[]) == memory_odometry
    assert cfgs["state"].obs.kind == "state" and cfgs["pixels"].obs.kind == "pixels"
    assert cfgs["random_init"].obs.random_init and not cfgs["fused_poe"].obs.random_init
    for r in ("fused_poe", "fused_concat", "no_haptics", "no_vision", "random_init"):
        assert cfgs[r].obs.kind == "latent_proprio"  # every frozen representation beside proprioception
    assert len({cfgs[r].obs.encoder for r in ("fused_poe", "fused_concat", "no_haptics", "no_vision")}) == 4


def test_a_run_from_before_a_new_config_field_resumes(tmp_path):
    cfg = policy_cfg(tmp_path, "obs=state", "total_steps=32", *TINY_PPO)
    train_policy(cfg)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["obs"]["random_init"], saved["eval_stochastic"]  # as a run started before these existed wrote it
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert train_policy(policy_cfg(tmp_path, "obs=state", "total_steps=64", *TINY_PPO))["timesteps"] == 64
    saved["obs"]["fine_scale"] = 0.0  # a real difference still refuses
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="obs"):
        train_policy(policy_cfg(tmp_path, "obs=state", "total_steps=96", *TINY_PPO))


def test_a_wall_clock_budget_stops_training_and_holds_across_resume(tmp_path):
    # 0.002 min is about 0.1 s: spent inside the first rollout, long before the 100,000 steps
    cfg = policy_cfg(tmp_path, "obs=state", "total_steps=100000", "max_train_minutes=0.002", *TINY_PPO)
    first = train_policy(cfg)
    assert 0 < first["timesteps"] < 1000
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["train_seconds"] >= 0.12 and ckpt["num_timesteps"] == first["timesteps"]
    saved = torch.load(tmp_path / "policy.pt", weights_only=True)
    assert saved["num_timesteps"] == first["timesteps"] and saved["train_seconds"] == ckpt["train_seconds"]
    assert ckpt["cpu_seconds"] > 0 and saved["cpu_seconds"] == ckpt["cpu_seconds"]  # this process and its workers
    assert train_policy(cfg)["timesteps"] == first["timesteps"]  # resumed with the budget spent: no more steps
    more = policy_cfg(tmp_path, "obs=state", "total_steps=100000", "max_train_minutes=0.01", *TINY_PPO)
    assert train_policy(more)["timesteps"] > first["timesteps"]  # a larger budget continues the run
    # the CPU seconds carry on from the checkpoint's (this process alone has spent more than them since)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["cpu_seconds"] > ckpt["cpu_seconds"]
    with pytest.raises(ValueError, match="max_train_minutes"):
        app_config(compose("policy", ["obs=state", "max_train_minutes=0"]))


def test_killed_evaluation_resumes_keeping_finished_rows_and_replays_sampled_actions(tmp_path):
    from mmrep.policy_eval import PARTIAL

    train_policy(policy_cfg(tmp_path, "obs=state", "total_steps=32", *TINY_PPO))
    args = ["policy", "eval", f"policy={tmp_path}", "episodes=3", "settings=[clean,pushes]", "video=false",
            "progress=false", f"out={tmp_path / 'eval'}"]
    assert main(args) == 0
    full = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert not (tmp_path / "eval" / PARTIAL).exists()  # removed once results.json is written
    assert main(args) == 0  # sampled actions are seeded per episode: a second run replays the first
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["results"] == full["results"]

    # What a kill after the first row leaves: that row (marked, to see it kept rather than re-run), a row
    # of another evaluation (other episodes: ignored) and a line cut short by the kill.
    stat = (tmp_path / "policy.pt").stat()
    key = {"policy": str((tmp_path / "policy.pt").resolve()), "policy_bytes": stat.st_size,
           "policy_mtime_ns": stat.st_mtime_ns, "seed": 2_000_000, "episodes": 3}
    first = {**full["results"][0], "marker": "kept"}
    other = {**full["results"][1], "marker": "other evaluation"}
    (tmp_path / "eval" / PARTIAL).write_text(
        json.dumps({"run": key, "shape_asked": None, "trained_shape": "square", "row": first}) + "\n"
        + json.dumps({"run": {**key, "episodes": 5}, "shape_asked": None, "trained_shape": "square", "row": other})
        + "\n" + '{"run": {"poli')
    assert main(args) == 0
    resumed = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert resumed["results"][0] == first and resumed["trained_shape"] == "square"
    assert resumed["results"][1:] == full["results"][1:]  # the rest re-run, equal to the uninterrupted run's
    order = [(r["setting"], r["mode"]) for r in full["results"]]
    assert [(r["setting"], r["mode"]) for r in resumed["results"]] == order


def test_paper_targets_compare_pooled_cells_and_say_what_has_not_run():
    from mmrep.policy import wilson_interval

    mod = load_benchmark("paper_summary")

    def row(**rates):  # setting -> successes of 100, both modes alike
        return {"cells": {f"{s}/square/{m}": {"pooled": k / 100, "pooled_ci95": wilson_interval(k, 100)}
                          for s, k in rates.items() for m in ("deterministic", "stochastic")}}

    goals = mod.targets({"fused_insertion": row(clean=95, occluder=80, pushes=90), "no_haptics": row(clean=60),
                         "no_vision": row(clean=92)})
    assert len(goals) == 2 * 6  # six targets, each for the mean and the sampled action
    for mode in ("deterministic", "stochastic"):
        met = {t["target"]: t["met"] for t in goals if t["mode"] == mode}
        assert met["fused_insertion >= 90%"] is True
        assert met["no_haptics clearly below fused_insertion"] is True  # 0.50-0.69 wholly under 0.89-0.98
        assert met["no_vision clearly below fused_insertion"] is False  # overlapping intervals
        assert met["fused_insertion under occluder within 10 points of clean"] is False  # 15 points
        assert met["fused_insertion under pushes within 10 points of clean"] is True
        assert met["fused_insertion under occluder_after_contact within 10 points of clean"] is None  # not run
    assert "not measured yet" in "\n".join(mod.targets_table(goals))
    # a rate that two decimals round onto the threshold prints a third, so "0.90" never reads "not met"
    assert mod.rate({"pooled": 0.895, "pooled_ci95": [0.86, 0.92]}).startswith("0.895 (")
    assert mod.rate({"pooled": 0.9, "pooled_ci95": [0.86, 0.92], "seeds": {"s0": 0.9}}) == "0.90 (0.86-0.92, 1 seed)"
    # a fused row also evaluated with camera memory: its settings scored beside, never merged
    memory = mod.targets({"fused_insertion": row(clean=95, occluder_after_contact=40,
                                                 **{"occluder_after_contact+memory": 88})})
    met = {t["target"]: t["met"] for t in memory if t["mode"] == "deterministic"}
    assert met["fused_insertion under occluder_after_contact within 10 points of clean"] is False
    assert met["fused_insertion under occluder_after_contact+memory within 10 points of clean"] is True
    assert not any("occluder+memory" in t for t in met)  # only the settings evaluated with memory


IQM_SEEDING_CHECK = """
import numpy as np
from conftest import load_benchmark

mod = load_benchmark("paper_summary")
def row(*rates):
    return {"cells": {"ft_dead/square/stochastic": {"seeds": {f"s{i}": r for i, r in enumerate(rates)}}}}
# three seeds whose lowest resamples sit on the 2.5% quantile: an unseeded bootstrap moves its low end
rows = {"a": row(0.94, 0.87, 0.88)}
lows = set()
for outer in range(12):  # rliable draws from NumPy's global generator, whatever state a caller left
    np.random.seed(outer)
    lows.add(mod.iqm_over_seeds(rows, reps=300)["a"]["ft_dead/square/stochastic"]["ci95"][0])
assert len(lows) == 1, lows
np.random.seed(5)
before = mod.iqm_over_seeds(rows, reps=300)
after_state = np.random.rand()
np.random.seed(5)
grown = mod.iqm_over_seeds({"b": row(0.5, 0.6, 0.9, 0.1), **rows}, reps=300)
assert np.random.rand() == after_state  # the caller's global state is left as it was
assert grown["a"] == before["a"], (grown["a"], before["a"])
assert grown["b"]["ft_dead/square/stochastic"]["seeds"] == 4
"""


def test_iqm_intervals_are_the_same_on_every_run_and_do_not_move_when_rows_are_added():
    """In a subprocess: importing rliable installs absl's logging handler on the stderr of the moment,
    which in pytest is a capture that later closes (a later test's error output then went nowhere)."""
    import subprocess
    import sys

    pytest.importorskip("rliable")
    tests = Path(__file__).resolve().parent
    done = subprocess.run([sys.executable, "-c", IQM_SEEDING_CHECK], cwd=tests, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{tests}{os.pathsep}{tests.parent}"})
    assert done.returncode == 0, done.stderr


def test_default_setting_remedy_rows_are_scored_against_their_own_clean_rate():
    from mmrep.policy import wilson_interval

    mod = load_benchmark("paper_summary")

    def row(**rates):  # setting -> successes of 100, both modes alike
        return {"cells": {f"{s}/square/{m}": {"pooled": k / 100, "pooled_ci95": wilson_interval(k, 100)}
                          for s, k in rates.items() for m in ("deterministic", "stochastic")}}

    rows = {"fused_drc_insertion": row(clean=88, occluder_after_contact=62, ft_bias=83, ft_dead=78, pushes=94),
            "fused_drc_odometry_insertion": row(clean=95, occluder_after_contact=86, ft_bias=90),
            "fused_insertion": row(clean=92)}
    goals = mod.remedy_targets(rows)
    assert {t["target"].split()[0] for t in goals} == {"fused_drc_insertion", "fused_drc_odometry_insertion"}
    assert len(goals) == 2 * 2 * (1 + len(mod.SENSE_FAILURES))  # two rows, two modes
    by = {(t["target"], t["mode"]): t for t in goals}
    drc = "fused_drc_insertion under {} within 10 points of clean"
    assert by[("fused_drc_insertion >= 90%", "deterministic")]["met"] is False
    assert by[(drc.format("occluder_after_contact"), "deterministic")]["met"] is False  # 26 points
    assert by[(drc.format("ft_dead"), "deterministic")]["met"] is True  # 10 points, but clean is under 90%
    assert by[(drc.format("ft_dead"), "deterministic")]["vacuous"] is True
    odo = "fused_drc_odometry_insertion under {} within 10 points of clean"
    assert by[(odo.format("occluder_after_contact"), "stochastic")]["met"] is True  # 9 points
    assert by[(odo.format("occluder_after_contact"), "stochastic")]["vacuous"] is False
    assert by[(odo.format("ft_noise"), "stochastic")]["met"] is None  # not evaluated
    assert mod.remedy_targets({"fused_insertion": row(clean=92)}) == []


def test_touch_setting_targets_and_the_robustness_figure(tmp_path):
    from mmrep.policy import wilson_interval

    mod = load_benchmark("paper_summary")

    def row(**rates):  # setting -> successes of 100, both modes alike
        return {"cells": {f"{s}/square/{m}": {"pooled": k / 100, "pooled_ci95": wilson_interval(k, 100),
                                              "seeds": {"s0": k / 100}}
                          for s, k in rates.items() for m in ("deterministic", "stochastic")}}

    assert mod.touch_targets({"fused_insertion": row(clean=95)}) == []  # no touch row: no touch targets
    rows = {"fused_touch": row(clean=94, occluder_after_contact=80, ft_bias=85, ft_dead=70, ft_noise=93, pushes=90),
            "no_haptics_touch": row(clean=70, occluder_after_contact=52)}
    goals = mod.touch_targets(rows)
    assert len(goals) == 2 * 8  # eight targets, each for the mean and the sampled action
    met = {t["target"]: t["met"] for t in goals if t["mode"] == "deterministic"}
    assert met["fused_touch >= 90%"] is True
    assert met["fused_touch under ft_bias within 10 points of clean"] is True  # 9 points
    assert met["fused_touch under ft_dead within 10 points of clean"] is False  # 24 points
    assert met["fused_touch under occluder_after_contact within 10 points of clean"] is False  # 14 points
    # 24 points below, and 0.61-0.78 wholly under 0.88-0.97
    assert met["no_haptics_touch at least 20 points below fused_touch (clean, disjoint 95% intervals)"] is True
    assert met["no_haptics_touch at least 30 points below fused_touch (occluder_after_contact)"] is False  # 28
    few = {"fused_touch": {"cells": {f"clean/square/{m}": {"pooled": 0.95, "pooled_ci95": wilson_interval(19, 20)}
                                     for m in ("deterministic", "stochastic")}},
           "no_haptics_touch": {"cells": {f"clean/square/{m}": {"pooled": 0.70, "pooled_ci95": wilson_interval(14, 20)}
                                          for m in ("deterministic", "stochastic")}}}
    close = mod.touch_targets(few)  # 25 points on 20 episodes each: the intervals overlap
    met = {t["target"]: t["met"] for t in close if t["mode"] == "stochastic"}
    assert met["no_haptics_touch at least 20 points below fused_touch (clean, disjoint 95% intervals)"] is False
    assert met["no_haptics_touch at least 30 points below fused_touch (occluder_after_contact)"] is None  # not run
    # a policy that fails clean loses nothing to a fault: "met", marked vacuous; +press cells scored apart
    failing = {"fused_touch": row(clean=2, ft_bias=3, **{"clean+press": 99, "ft_bias+press": 60,
                                                         "occluder_after_contact+press": 27,
                                                         "occluder_after_contact+memory+press": 49}),
               "no_haptics_touch": row(clean=25, **{"clean+press": 40, "occluder_after_contact+press": 8})}
    goals = {t["target"]: t for t in mod.touch_targets(failing) if t["mode"] == "deterministic"}
    bias = goals["fused_touch under ft_bias within 10 points of clean"]
    assert bias["met"] is True and bias["vacuous"] is True
    assert "vacuously" in "\n".join(mod.targets_table(list(goals.values()) + [
        {**t, "mode": "stochastic"} for t in goals.values()]))
    assert goals["fused_touch >= 90% (+press)"]["met"] is True
    pressed_bias = goals["fused_touch under ft_bias within 10 points of clean (+press)"]
    assert pressed_bias["met"] is False and not pressed_bias["vacuous"]  # 39 points
    gap = "no_haptics_touch at least 20 points below fused_touch (clean, disjoint 95% intervals) (+press)"
    assert goals[gap]["met"]
    occluded = "no_haptics_touch at least 30 points below fused_touch (occluder_after_contact) (+press)"
    assert goals[occluded]["met"] is False  # 19 points
    memory = occluded.replace("fused_touch (", "fused_touch with camera memory (")
    assert goals[memory]["met"] is True  # 41 points
    assert not any("with camera memory" in t and "(+press)" not in t for t in goals)  # only where evaluated
    smooth = {"fused_smooth_touch": row(clean=95, occluder_after_contact=20),
              "no_haptics_smooth_touch": row(clean=60, occluder_after_contact=5)}
    paired = {t["target"]: t["met"] for t in mod.touch_targets(smooth, fused_row="fused_smooth_touch",
                                                                other_row="no_haptics_smooth_touch")}
    assert paired["fused_smooth_touch >= 90%"] is True and len(paired) == 8
    assert paired["no_haptics_smooth_touch at least 20 points below fused_smooth_touch (clean, disjoint 95% intervals)"]
    assert mod.touch_targets(smooth) == []  # the default pair has no run here
    # camera memory on both rows: the gap is scored against the other row's memory cell
    fair = {"fused_smooth_touch": row(clean=95, **{"occluder_after_contact+memory": 50}),
            "no_haptics_smooth_touch": row(clean=95, occluder_after_contact=5, **{"occluder_after_contact+memory": 30})}
    scored = {t["target"]: t for t in mod.touch_targets(fair, fused_row="fused_smooth_touch",
                                                         other_row="no_haptics_smooth_touch")}
    both = scored["no_haptics_smooth_touch at least 30 points below fused_smooth_touch with camera memory "
                  "(both rows) (occluder_after_contact)"]
    assert both["met"] is False and "0.30" in both["measured"]  # 20 points, not the 45 against no memory
    assert mod.plot_robustness({"state": row(clean=100)}, tmp_path / "none.png") is False
    assert not (tmp_path / "none.png").exists()
    assert mod.plot_robustness({**rows, "no_haptics": row(clean=96, ft_bias=96)}, tmp_path / "robustness.png")
    assert (tmp_path / "robustness.png").stat().st_size > 10_000  # two panels: default and touch
    import matplotlib.image

    two = matplotlib.image.imread(tmp_path / "robustness.png").shape[1]
    assert mod.plot_robustness({**rows, **failing, "no_haptics": row(clean=96)}, tmp_path / "pressed.png")  # + press
    assert matplotlib.image.imread(tmp_path / "pressed.png").shape[1] > 1.3 * two
    # a name with a setting suffix reads that row's cells evaluated so; past three panels, a second line
    kept = "fused_memory_odometry_camera_error_250k_selected_touch"
    tared = {kept: row(**{"clean+tare": 91, "ft_bias+tare": 91, "ft_dead+tare+handover": 67})}
    assert mod.plot_robustness(tared, tmp_path / "tare.png")  # no cell of the row as trained: plotted all the same
    assert mod.plot_robustness({kept: row(clean=91, ft_bias=91, ft_dead=67)}, tmp_path / "as_trained.png")
    assert mod.plot_robustness({kept: row(clean=10)}, tmp_path / "other.png")
    drawn = {name: matplotlib.image.imread(tmp_path / f"{name}.png") for name in ("tare", "as_trained", "other")}
    assert np.array_equal(drawn["as_trained"], drawn["other"])  # the row's cells as trained are not drawn there
    assert not np.array_equal(drawn["tare"], drawn["as_trained"])  # its +tare cells are
    many = {**rows, **failing, **tared, "fused_smooth_touch": row(clean=97)}  # five panels
    assert mod.plot_robustness(many, tmp_path / "many.png")
    grid = matplotlib.image.imread(tmp_path / "many.png").shape
    assert grid[0] > 1.6 * matplotlib.image.imread(tmp_path / "pressed.png").shape[0]  # two lines of panels
    assert grid[1] < 1.1 * matplotlib.image.imread(tmp_path / "pressed.png").shape[1]  # of at most three


def test_paper_table_counts_the_seeds_evaluated_in_each_setting_not_the_seeds_trained():
    from mmrep.policy import wilson_interval

    mod = load_benchmark("paper_summary")

    def cell(setting, seeds):  # seeds: run name -> successes of 100
        wins = sum(seeds.values())
        return {"setting": setting, "shape": "square", "seeds": {k: v / 100 for k, v in seeds.items()},
                "pooled": wins / (100 * len(seeds)), "pooled_ci95": wilson_interval(wins, 100 * len(seeds))}

    settings = (("clean", {"s0": 96, "s1": 90, "s2": 80}), ("ft_bias", {"s0": 96}))
    cells = {f"{s}/square/{m}": cell(s, seeds) for s, seeds in settings for m in ("deterministic", "stochastic")}
    row = {"runs": ["s0", "s1", "s2"], "cells": cells, "total_steps": [300_000], "max_train_minutes": [0],
           "env_steps_done": {"s0": 300_000, "s1": 300_000, "s2": 300_000},
           "wall_minutes": {"s0": 95, "s1": 140, "s2": 140}}
    clean, = [line for line in mod.table({"no_haptics": row}, "clean") if line.startswith("| no_haptics")]
    bias, = [line for line in mod.table({"no_haptics": row}, "ft_bias") if line.startswith("| no_haptics")]
    assert clean.split(" | ")[1] == "3" and "0.89 |" in clean  # 266 of 300 pooled
    assert bias.split(" | ")[1] == "1"  # one seed evaluated under bias, though three were trained


def test_recurrent_policy_carries_its_memory_through_an_episode_and_resets_it_after(tmp_path):
    from sb3_contrib import RecurrentPPO

    cfg = policy_cfg(tmp_path, "obs=state", "total_steps=32", "algo=recurrent_ppo", "algo.params.n_steps=16",
                     "algo.params.batch_size=16", "algo.params.n_epochs=1")
    assert train_policy(cfg)["timesteps"] == 32
    more = policy_cfg(tmp_path, "obs=state", "total_steps=64", "algo=recurrent_ppo", "algo.params.n_steps=16",
                      "algo.params.batch_size=16", "algo.params.n_epochs=1")
    assert train_policy(more)["timesteps"] == 64  # resumes from the checkpoint
    model, venv, saved, rms = load_policy(tmp_path / "policy.pt")
    try:
        assert isinstance(model, RecurrentPPO) and saved.algo.name == "recurrent_ppo"
        calls = []
        predict = model.predict

        def spy(obs, state=None, episode_start=None, deterministic=False):
            action, new_state = predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)
            calls.append((state, episode_start.copy(), new_state))
            return action, new_state

        model.predict = spy
        first = run_episodes(model, venv, [5, 6], deterministic=True, obs_rms=rms)
        steps = first[0]["steps"]
        assert calls[0][0] is None and calls[0][1].all()  # a fresh memory at the first step
        for prev, cur in zip(calls[:steps - 1], calls[1:steps]):
            assert not cur[1].any() and cur[0] is prev[2]  # each step gets the state the last one returned
        assert calls[steps][0] is None and calls[steps][1].all()  # the next episode starts afresh
        assert run_episodes(model, venv, [5, 6], deterministic=True, obs_rms=rms) == first  # and replays
    finally:
        venv.close()


def test_keep_best_keeps_the_policy_of_the_best_periodic_evaluation(tmp_path):
    """``keep_best``: best/policy.pt is the policy at the best periodic evaluation (the later one on
    ties) and is left alone by later, worse ones, also across a resume; it evaluates as a run."""
    run = tmp_path / "run"
    cfg = policy_cfg(run, "obs=state", *TINY_PPO, "total_steps=32", "eval_every_steps=16", "keep_best=true")
    train_policy(cfg)
    chosen = json.loads((run / "best" / "eval.json").read_text())
    assert chosen["timesteps"] == 32  # all evaluations tie at this size: the later one
    # an evaluation better than any that follows (as when PPO learns a skill and loses it)
    rows = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    rows[-1]["success_rate"] = 1.0
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "best" / "eval.json").write_text(json.dumps(rows[-1]))  # what later ones are compared with
    kept = (run / "best" / "policy.pt").read_bytes()
    train_policy(policy_cfg(run, "obs=state", *TINY_PPO, "total_steps=64", "eval_every_steps=16", "keep_best=true"))
    assert [r["timesteps"] for r in read_evaluations(run)] == [16, 32, 48, 64]
    assert (run / "best" / "policy.pt").read_bytes() == kept  # 48 and 64 did worse than 1.0
    assert json.loads((run / "best" / "eval.json").read_text())["timesteps"] == 32
    assert (run / "policy.pt").read_bytes() != kept  # the final policy trained on
    assert torch.load(run / "best" / "policy.pt", weights_only=True)["num_timesteps"] == 32
    _, venv, _, _ = load_policy(run / "best" / "policy.pt")  # a policy file like the final one
    venv.close()


def test_keep_best_selects_on_the_periodic_settings_named_and_counts_the_policy_continued_from(tmp_path):
    """``eval_settings``: each periodic evaluation runs every named setting on the same seeds (the env
    built as ``mmrep policy eval`` builds it), the row's top level is the first, and keep_best ranks by
    their mean success. A run continued from an ``init_policy`` evaluates that policy first, so it is a
    candidate; the rows it brought along (another selection) do not compete."""
    from mmrep.policy import build_eval_venvs, selection_score
    from sim.wrappers import PerturbObservation

    first = tmp_path / "first"
    train_policy(policy_cfg(first, "obs=state", *TINY_PPO, "total_steps=32", "eval_every_steps=16"))
    rows = [json.loads(line) for line in (first / "eval.jsonl").read_text().splitlines()]
    for r in rows:  # the earlier selection's rows: perfect, so they would win if they competed
        r["success_rate"] = 1.0
    (first / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    more = ["obs=state", *TINY_PPO, "total_steps=64", "eval_every_steps=16", "keep_best=true",
            f"init_policy={first}", "eval_settings=[clean,ft_dead]"]
    run = tmp_path / "run"
    cfg = policy_cfg(run, *more)
    venvs = build_eval_venvs(cfg)
    try:
        assert list(venvs) == ["clean", "ft_dead"]

        def perturbing(env):
            while hasattr(env, "env"):
                if isinstance(env, PerturbObservation):
                    return [(s.name, s.p) for s in env.settings]
                env = env.env
            return []

        assert perturbing(venvs["clean"].envs[0]) == []
        assert perturbing(venvs["ft_dead"].envs[0]) == [("force/dead", 1.0)]
    finally:
        for v in venvs.values():
            v.close()
    train_policy(cfg)
    history = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    # brought along (the 32 twice: periodic, then the end of training), the start, 48, 64, the end
    assert [r["timesteps"] for r in history] == [16, 32, 32, 32, 48, 64, 64]
    selected = [r for r in history if "settings" in r]
    assert [r["timesteps"] for r in selected] == [32, 48, 64, 64]
    for r in selected:
        assert list(r["settings"]) == ["clean", "ft_dead"]
        assert r["success_rate"] == r["settings"]["clean"]["success_rate"]
        assert r["selection"] == pytest.approx((r["settings"]["clean"]["success_rate"]
                                                + r["settings"]["ft_dead"]["success_rate"]) / 2)
    chosen = json.loads((run / "best" / "eval.json").read_text())
    assert "settings" in chosen  # never one of the rows brought along, though they read 1.0
    assert selection_score(chosen) == max(map(selection_score, selected))
    assert all(r.get("brought_along") for r in history[:3]) and not any(r.get("brought_along") for r in selected)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmrep.policy_curves import draw_curves

    fig, ax = plt.subplots()
    draw_curves(ax, {"run": run})  # the other setting drawn beside, over this run's own evaluations
    labels = ax.get_legend_handles_labels()[1]
    assert "run, ft_dead" in labels and "run, deterministic" in labels
    assert list(ax.lines[labels.index("run, ft_dead")].get_xdata()) == [32, 48, 64]
    plt.close(fig)
    # a resume does not evaluate the start again (only the end, as any finished run resumed does)
    train_policy(policy_cfg(run, *more))
    again = [json.loads(line)["timesteps"] for line in (run / "eval.jsonl").read_text().splitlines()]
    assert again == [r["timesteps"] for r in history] + [64]
    # ranked by the mean over the settings, not by the first one's rate: rows whose clean rate reads 1.0
    # (their mean no higher than the rows to come) do not hold on to best/
    rows = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    for r in rows:
        r.update(success_rate=1.0, selection=0.0) if "settings" in r else None
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    train_policy(policy_cfg(run, *[("total_steps=96" if o == "total_steps=64" else o) for o in more]))
    assert json.loads((run / "best" / "eval.json").read_text())["timesteps"] == 96

    # continuing with the same selection as the run it starts from (here the default, the training env):
    # the rows brought along read 1.0 but do not compete, and the start is evaluated as this run's own
    plain = tmp_path / "plain"
    train_policy(policy_cfg(plain, "obs=state", *TINY_PPO, "total_steps=48", "eval_every_steps=16", "keep_best=true",
                            f"init_policy={first}"))
    own = [r for r in read_evaluations(plain) if not r.get("brought_along")]
    assert [r["timesteps"] for r in own] == [32, 48]
    assert json.loads((plain / "best" / "eval.json").read_text())["timesteps"] == 48
    with pytest.raises(ValueError, match=r"eval_settings: unknown setting\(s\) \['fog'\]"):
        policy_cfg(tmp_path / "bad", "obs=state", "eval_settings=[clean,fog]").validate()


def test_a_non_finite_action_distribution_stops_training_saying_what_it_came_from(tmp_path, capsys):
    """A learner update that blows the weights up (here a learning rate near float32's range: one
    Adam step moves each weight by about 1e37) makes the next rollout's action distribution non-finite.
    Training stops naming the env step, the weights, the last observation and the learner's values not
    yet written (lost otherwise: SB3 writes an update's losses after the next rollout), not with
    torch's bare "invalid values"; no policy file is written, and the checkpoints stay."""
    run = tmp_path / "run"
    args = ["policy", "train", "obs=state", *TINY_PPO, "algo.params.learning_rate=1.0e37", "total_steps=48",
            f"out={run}", "progress=false", "vec_env=dummy", "eval_every_steps=1000", "ckpt_every_steps=16",
            *FAST_ENV]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert re.search(r"action distribution was not finite at env step (16|32): ", err), err
    assert "largest |w| 1e+37" in err or "non-finite weights" in err
    assert "the last observation read finite" in err
    assert "train/learning_rate=1e+37" in err
    assert "resumes from the last checkpoint" in err
    assert torch.load(run / "checkpoint.pt", weights_only=True)["num_timesteps"] in (16, 32)
    assert not (run / "policy.pt").exists()


def test_keep_best_counts_the_evaluation_at_a_wall_clock_stop(tmp_path):
    """The evaluation at the end of training (here at total_steps between two periodic ones; a
    ``max_train_minutes`` stop ends the same way) goes through keep_best too: when it is the best so far
    its policy is in best/, so that after a resume the kept policy is one that exists, not an earlier,
    worse one."""
    run = tmp_path / "run"
    train_policy(policy_cfg(run, "obs=state", *TINY_PPO, "total_steps=40", "eval_every_steps=16", "keep_best=true"))
    rows = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [r["timesteps"] for r in rows] == [16, 32, 40]  # 40: the end of training, not a periodic step
    chosen = json.loads((run / "best" / "eval.json").read_text())
    assert chosen["timesteps"] == 40  # all tie at this size: the later one, the one at the end
    assert torch.load(run / "best" / "policy.pt", weights_only=True)["num_timesteps"] == 40


def test_paper_summary_counts_a_run_chosen_on_settings_with_its_kept_policy_alone(tmp_path):
    """A keep_best run that chose on named periodic settings (``eval_settings``) stands for its kept
    policy, found and counted with ``best/``'s evaluations though the final policy was never evaluated."""
    mod = load_benchmark("paper_summary")
    run = tmp_path / "row_s0"
    train_policy(policy_cfg(run, "obs=state", *TINY_PPO, "total_steps=32", "eval_every_steps=16", "keep_best=true",
                            "eval_settings=[clean,pushes]"))
    kept = json.loads((run / "best" / "eval.json").read_text())["timesteps"]
    with pytest.raises(SystemExit, match="no <row>_s<seed>"):  # nothing evaluated yet
        mod.find_runs(tmp_path)
    assert main(["policy", "eval", f"policy={run / 'best'}", "episodes=1", "video=false", "progress=false",
                 "modes=[deterministic]", "settings=[clean]"]) == 0
    assert not (run / "eval").exists()
    assert mod.find_runs(tmp_path) == {"row": [run]}
    summary = mod.row_summary([run])
    assert summary["kept_best"] == {"row_s0": kept}
    assert {c["setting"] for c in summary["cells"].values()} == {"clean"}


def test_paper_summary_counts_a_kept_earlier_policy_and_a_tighter_clearance_apart(tmp_path, capsys):
    """A keep_best run whose kept policy is an earlier one counts with that policy's evaluations (the
    table names the step); an evaluation at another clearance is its own setting, and its report says so."""

    mod = load_benchmark("paper_summary")
    run = tmp_path / "row_s0"
    train_policy(policy_cfg(run, "obs=state", *TINY_PPO, "total_steps=32", "eval_every_steps=16", "keep_best=true"))
    ev = ["policy", "eval", "episodes=1", "video=false", "progress=false", "modes=[deterministic]"]
    assert main([*ev, f"policy={run}", "settings=[clean]"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert mod.kept_best_step(run, config) is None  # kept the final policy (ties go to the later one)
    rows = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    # the first periodic evaluation the best one, as if kept there: 10 of 10 against the final's 6 of 10
    rows[0].update(success_rate=1.0, success_ci95=[0.72, 1.0])
    rows[-1].update(success_rate=0.6, success_ci95=[0.31, 0.83])
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "best" / "eval.json").write_text(json.dumps(rows[0]))
    assert mod.kept_best_step(run, config) is None  # not evaluated yet: the final policy's cells stand
    assert main([*ev, f"policy={run / 'best'}", "settings=[clean,pushes]"]) == 0
    assert mod.kept_best_step(run, config) == 16
    rows[-1]["success_rate"] = 0.8  # inside the kept one's interval: the noise of 10 episodes, the final stands
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert mod.kept_best_step(run, config) is None
    rows[-1]["success_rate"] = 0.6
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main([*ev, f"policy={run / 'best'}", "clearance=0.001", f"out={run / 'best' / 'eval_tight'}"]) == 0
    assert main([*ev, f"policy={run / 'best'}", "camera_target_error=0.004", f"out={run / 'best' / 'eval_cam'}"]) == 0
    report = (run / "best" / "eval_tight" / "report.md").read_text()
    assert "Changed from training: the hole's clearance 1 mm." in report
    assert main([*ev, f"policy={run}", "clearance=0"]) != 0  # outside (0, 2 cm]: refused, naming the field
    assert "clearance must be None or in (0, 0.02] m" in capsys.readouterr().err
    summary = mod.row_summary([run])
    assert summary["kept_best"] == {"row_s0": 16}
    assert {c["setting"] for c in summary["cells"].values()} == {"clean", "pushes", "clean+clearance1mm",
                                                                 "clean+camera_error4mm"}
    line, = [x for x in mod.table({"row": summary}, "clean") if x.startswith("| row (")]
    assert "(the policy kept at: s0 16 steps)" in line
    out = tmp_path / "summary"
    mod_args = [str(tmp_path), "--out", str(out), "--iqm-reps", "0"]
    import subprocess
    import sys

    subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "benchmarks" / "paper_summary.py"),
                    *mod_args], check=True, capture_output=True)
    assert (out / "runs" / "row_s0" / "best" / "eval_tight" / "results.json").exists()  # the copy keeps best/
    assert mod.row_summary([out / "runs" / "row_s0"])["kept_best"] == {"row_s0": 16}


def test_landing_offsets_reads_where_a_policy_first_reaches_the_block(tmp_path):
    """benchmarks/landing_offsets.py: per episode the step the tip first reaches the block's top, its
    offset from the hole's axis there, and a summary; episodes that never touch down have none."""
    import subprocess
    import sys

    run = tmp_path / "run"
    train_policy(policy_cfg(run, "obs=state", *TINY_PPO, "total_steps=16", "eval_every_steps=16"))
    out = tmp_path / "landing.json"
    subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "benchmarks" / "landing_offsets.py"),
                    str(run), "--episodes", "2", "--out", str(out)], check=True, capture_output=True)
    result = json.loads(out.read_text())["policies"][str(run)]
    assert result["episodes"] == 2 and len(result["per_episode"]) == 2
    for e in result["per_episode"]:
        assert (e["first_contact_step"] is None) == (e["offset_at_contact_mm"] is None)
    # straight down from 10-16 cm at up to 1 cm a step, starting within 1 cm of the hole on each axis
    # (on the block): it touches down within about 10-20 steps, as far off the axis as it started
    mod = load_benchmark("landing_offsets")

    class StraightDown:  # the model interface landing() calls: predict(obs, state, episode_start, deterministic)
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return np.array([[0.0, 0.0, -1.0]], dtype=np.float32), None

    _, venv, _, rms = load_policy(run / "policy.pt", {"max_steps": 40, "randomization": {"start_xy_range": 0.01}})
    try:
        e = mod.landing(StraightDown(), venv, 2_000_000, rms)
        venv.seed(2_000_000)
        venv.reset()
        info = venv.step(np.zeros((1, 3), dtype=np.float32))[3][0]  # holding still: where it starts
        start, hole = np.asarray(info["tip_pos"]), np.asarray(info["hole_pos"])
    finally:
        venv.close()
    assert 8 <= e["first_contact_step"] <= 25
    assert e["offset_at_contact_mm"] == pytest.approx(1000 * np.linalg.norm(start[:2] - hole[:2]), abs=5.0)


SEED_COMPARISON_CHECK = """
import sys
from pathlib import Path

import pytest
from conftest import ROOT, load_benchmark

sys.path.insert(0, str(ROOT / "benchmarks"))  # sample_efficiency imports paper_summary, as when run as a script
compare = load_benchmark("sample_efficiency").held_out_comparison


def runs(*rates):
    return [{"run": f"runs/r{i}", "held_out_final": {"rate": r}} for i, r in enumerate(rates)]


before, after = runs(0.95, 0.97, 0.37, 0.94, 0.83), runs(0.86, 0.75, 0.83, 0.93, 0.62)
result = compare(before, after, reps=2000)
assert result["difference"] == pytest.approx(0.798 - 0.812) and result["runs"] == {"before": 5, "after": 5}
lo, hi = result["difference_ci95"]
assert lo < result["difference"] < hi and hi - lo > 0.2  # one seed at 0.37 makes the before group wide
assert compare(before, after, reps=2000) == result  # seeded
assert compare(before, runs(0.5, 0.5, 0.5), reps=2000)["difference_ci95"][1] < 0  # clearly worse: excluded
iqm = result["iqm"]  # a 25% trimmed mean: the middle three of five
assert iqm["before"]["iqm"] == pytest.approx((0.83 + 0.94 + 0.95) / 3) and iqm["after"]["seeds"] == 5
assert compare(before, after + [{"run": "runs/late", "held_out_final": None}]) is None  # not every run evaluated
same_name = [{"run": "a/r0", "held_out_final": {"rate": 0.1}}, {"run": "b/r0", "held_out_final": {"rate": 0.9}}]
assert compare(before, same_name, reps=200)["iqm"]["after"]["seeds"] == 2  # runs of one name stay apart
"""


def test_sample_efficiency_compares_held_out_success_by_seed():
    """Seeds as the unit: the difference of the per-run means with a seeded bootstrap interval, and each
    group's interquartile mean over seeds from rliable (paper_summary's helper). In a subprocess, as the
    IQM test above, since importing rliable installs absl's logging handler on pytest's capture."""
    import subprocess
    import sys

    pytest.importorskip("rliable")
    tests = Path(__file__).resolve().parent
    done = subprocess.run([sys.executable, "-c", SEED_COMPARISON_CHECK], cwd=tests, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{tests}{os.pathsep}{tests.parent}"})
    assert done.returncode == 0, done.stderr


def test_sample_efficiency_pairs_the_final_policies_by_training_seed():
    paired = load_benchmark("sample_efficiency").paired_by_seed

    def runs(**rates):  # seed name s<k> -> held-out rate
        return [{"seed": int(k[1:]), "held_out_final": {"rate": v}} for k, v in rates.items()]

    got = paired(runs(s0=0.9, s1=0.6, s2=0.8), runs(s2=0.85, s0=0.9, s1=0.7), reps=2000)
    assert got["seeds"] == [0, 1, 2] and abs(got["difference"] - 0.05) < 1e-9  # matched by seed, not by order
    assert (got["higher"], got["lower"], got["same"]) == (2, 0, 1)
    assert 0.0 <= got["difference_ci95"][0] <= 0.05 <= got["difference_ci95"][1] <= 0.1
    assert paired(runs(s0=0.9, s1=0.6), runs(s0=0.9, s2=0.6)) is None  # other seeds: no pairing
    assert paired(runs(s0=0.9, s1=0.6), [{"seed": None, "held_out_final": {"rate": 0.5}}] * 2) is None
