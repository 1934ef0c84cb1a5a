"""``benchmarks/occluder_paths.py``: the tip's path after the occluder appears, per held-out episode."""

import json
from pathlib import Path

import pytest
from conftest import load_benchmark

from mmrep.config import app_config, compose
from mmrep.encoder import export_encoder
from mmrep.models import ModelConfig
from mmrep.models.multimodal import MultimodalEncoder
from mmrep.policy import train_policy

ROOT = Path(__file__).resolve().parents[1]


def occluder_paths():
    return load_benchmark("occluder_paths")


def test_the_path_after_the_occluder_is_measured_from_the_step_it_appears(tmp_path):
    run, enc = tmp_path / "run", tmp_path / "encoder.pt"
    export_encoder(MultimodalEncoder(ModelConfig(image_size=64, z_dim=8)), enc)
    train_policy(app_config(compose("policy", [
        f"out={run}", "progress=false", "vec_env=dummy", "obs=latent", f"obs.encoder={enc}", "eval_episodes=0",
        "total_steps=16",
        "env.max_steps=6", "env.physics_hz=240.0", "env.image_size=64", "algo=ppo", "algo.params.n_steps=16",
        "algo.params.batch_size=16", "algo.params.n_epochs=1"])))
    mod = occluder_paths()
    out = tmp_path / "paths.json"
    assert mod.main([str(run), "--setting", "occluder", "--episodes", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["setting"] == "occluder" and len(result["episodes"]) == 2
    for ep in result["episodes"]:  # the static occluder is there from the first step
        assert ep["occluded"] and ep["step_occluded"] == 0 and ep["steps"] == 6
        assert ep["min_offset_after_mm"] <= min(ep["offset_at_occlusion_mm"], ep["offset_end_mm"])
        # the sideways path is at least how much the distance from the hole's axis changed along it
        assert ep["lateral_path_after_mm"] >= abs(ep["offset_end_mm"] - ep["offset_at_occlusion_mm"]) - 1e-6
    assert result["failures"]["episodes"] + result["successes"]["episodes"] == 2
    with pytest.raises(SystemExit):
        mod.main([str(run), "--setting", "clean", "--out", str(out)])  # no occluder there
