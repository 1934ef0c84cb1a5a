"""The worked examples of docs/extending.md run as a user runs them: their code is the code under
docs/examples/, executed here, so the guide cannot drift from what works."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _run_example(script: str, workdir: Path) -> str:
    """Run ``docs/examples/<script>`` with bash as a user would (``mmrep`` on PATH); its stdout."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run(["bash", str(EXAMPLES / script), str(workdir)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_second_task_runs_in_the_env_unedited_and_its_expert_succeeds():
    press = _load("press_task")
    result = press.main(seed=0)
    assert result["success"] and result["steps"] < 60
    # the env asked the task: its info, its contact body, its reward; the peg-in-hole keys are gone
    env = gym.make("mmrep/PegInsertion-v0", config=press.EnvConfig(task="press", use_camera=False, physics_hz=240.0))
    try:
        _, info = env.reset(seed=1)
        assert "plate_pos" in info and "hole_pos" not in info
        assert np.allclose(env.unwrapped.task.goal_pos, info["plate_pos"])
    finally:
        env.close()


def test_second_task_is_collected_with_its_own_experts_and_options(tmp_path):
    """`mmrep collect` draws from the task's experts() (its default: all of them alike), and the task's own
    options come from env.task_options, checked against its options dataclass."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLES), os.environ.get("PYTHONPATH", "")])}
    base = [sys.executable, "-m", "mmrep.cli", "collect", "episodes=2", "workers=1", "env.task=press",
            "env.plugins=[press_task]", "env.image_size=32", "env.physics_hz=240.0", "env.max_steps=30",
            "env.task_options={target_force: 8.0}"]
    run = subprocess.run([*base, f"out={tmp_path / 'data'}"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["config"]["policies"] == {"press_down": 1.0}
    assert manifest["config"]["env"]["task_options"] == {"target_force": 8.0}
    bad = subprocess.run([*base[:-1], "env.task_options={force: 8.0}", "policies={expert: 1.0}",
                          f"out={tmp_path / 'bad'}"], env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "unknown ['expert'] for task 'press'" in bad.stderr + bad.stdout
    press = _load("press_task")
    with pytest.raises(ValueError, match=r"task_options: unknown \['force'\] for task 'press'"):
        gym.make("mmrep/PegInsertion-v0", config=press.EnvConfig(task="press", use_camera=False,
                                                                 task_options={"force": 1.0}))


def test_unknown_task_is_refused_naming_the_registered_ones():
    from sim.config import EnvConfig

    with pytest.raises(ValueError, match="unknown task 'nope'"):
        gym.make("mmrep/PegInsertion-v0", config=EnvConfig(task="nope", use_camera=False))


def test_own_encoder_is_trained_exported_loaded_and_drives_a_policy(tmp_path):
    assert "z (128,)" in _run_example("own_encoder.sh", tmp_path)
    assert (tmp_path / "policy" / "policy.pt").exists()
    # the file records the user's class, and the standard tools accept what load_encoder returns
    import torch

    blob = torch.load(tmp_path / "run" / "encoder.pt", weights_only=True)
    assert blob["network"] == "my_encoder.TinyEncoder"


def test_new_modality_is_collected_trained_loaded_and_used_by_a_policy(tmp_path):
    assert "joints (14,) z (128,) joints alone (128,)" in _run_example("new_modality.sh", tmp_path)
    assert (tmp_path / "policy" / "policy.pt").exists()


def test_plugin_modality_rows_are_the_recorded_arrays_side_by_side(tmp_path):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import joints_modality  # noqa: F401  (registers "joints")
    finally:
        sys.path.remove(str(EXAMPLES))
    import h5py
    from conftest import collect_small

    from mmrep.data import MultimodalDataset

    data = collect_small(tmp_path / "d", episodes=2, max_steps=6)
    ds = MultimodalDataset(data, split=None, extra_modalities=("joints",))
    ep, t = ds.locate(3)
    e = ds.episodes[ep]
    with h5py.File(e.file, "r") as f:
        want = np.concatenate([f[e.group]["obs/joint_pos"][t], f[e.group]["obs/joint_vel"][t]])
    sample = ds[3]
    assert np.array_equal(sample["joints"].numpy(), want) and sample["joints_neg"].shape == (14,)


def test_registries_refuse_unknown_names_naming_what_is_registered():
    from mmrep.config import ModelConfig
    from mmrep.models.network import resolve_network
    from sim.modalities import modality

    with pytest.raises(ValueError, match="unknown modality 'tactile'"):
        modality("tactile")
    with pytest.raises(ValueError, match="extra_modalities"):
        ModelConfig(extra_modalities=["tactile"]).validate()
    with pytest.raises(ValueError, match="cannot import"):
        resolve_network("no_such_module.Net")


def test_a_network_without_feature_maps_refuses_the_flow_head():
    from mmrep.config import ModelConfig
    from mmrep.models import MultimodalModel

    sys.path.insert(0, str(EXAMPLES))
    try:
        with pytest.raises(ValueError, match="model.flow=false"):
            MultimodalModel(ModelConfig(image_size=64, encoder_target="my_encoder.TinyEncoder", depth=False,
                                        force=False))
    finally:
        sys.path.remove(str(EXAMPLES))


def test_unrecorded_plugin_modality_is_recorded_by_collect_and_read_by_training(tmp_path, monkeypatch):
    """A plug-in that names no recorded arrays is stored as obs/<key> when collected with
    env.extra_observations; a dataset without it is refused when opened, naming the key."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import h5py
    import torque_modality  # noqa: F401  (registers "joint_torque")
    from conftest import collect_small

    from mmrep.data import MultimodalDataset
    from sim.collect import CollectConfig, collect
    from sim.dataset_format import scan_shards

    out = tmp_path / "torque"
    collect(CollectConfig(episodes=2, out=str(out), workers=1, policies={"noisy_expert": 1.0},
                          env={"max_steps": 6, "image_size": 32,
                               "plugins": ["torque_modality"], "extra_observations": ["joint_torque"]}),
            progress=False)
    assert len(scan_shards(out)) == 2  # validated against the specs, obs/joint_torque included
    ds = MultimodalDataset(out, split=None, extra_modalities=("joint_torque",))
    ep, t = ds.locate(2)
    e = ds.episodes[ep]
    with h5py.File(e.file, "r") as f:
        stored = f[e.group]["obs/joint_torque"]
        assert stored.dtype == np.float32 and stored.shape == (e.num_obs, 7)
        want = stored[t]
        assert np.abs(stored[1:]).max() > 1.0  # the arm holds itself up: real torques, not zeros
    assert np.array_equal(ds[2]["joint_torque"].numpy(), want)
    plain = collect_small(tmp_path / "plain", episodes=1, max_steps=4)
    with pytest.raises(ValueError, match=r"does not hold the plug-in modality 'joint_torque'.*"
                                         r"env.extra_observations=\[joint_torque\]"):
        MultimodalDataset(plain, split=None, extra_modalities=("joint_torque",))
