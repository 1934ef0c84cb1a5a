"""Encoders as safetensors + JSON and as ONNX, policies as ONNX, and the torch-free closed loop of the docs."""

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import sim  # noqa: F401
from mmrep.cli import main
from mmrep.encoder import export_encoder, load_encoder
from mmrep.models import ModelConfig
from mmrep.models.multimodal import MultimodalEncoder

ort = pytest.importorskip("onnxruntime", reason="the deploy extra is not installed (pip install -e '.[deploy]')")
pytest.importorskip("onnx", reason="the deploy extra is not installed")
pytest.importorskip("safetensors", reason="the deploy extra is not installed")

ROOT = Path(__file__).resolve().parents[1]
ENCODERS = ROOT / "benchmarks" / "results" / "robustness" / "encoders"
MODALITIES = ("rgb", "depth", "force", "proprio")


def env_batch(image_size: int, n: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` consecutive observations of the env (random actions), stacked."""
    env = gym.make("mmrep/PegInsertion-v0", image_size=image_size, physics_hz=240.0)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    rows = []
    for _ in range(n):
        rows.append(obs)
        obs, *_ = env.step(env.action_space.sample())
    env.close()
    return {k: np.stack([r[k] for r in rows]).astype(np.uint8 if k == "rgb" else np.float32) for k in MODALITIES}


@pytest.mark.parametrize("name", ["robust_flow_rgb", "concat"])
def test_onnx_encoder_equals_torch(tmp_path, name):
    src = ENCODERS / f"{name}.pt"
    assert main(["export-encoder", str(src), "--format", "onnx", "--out", str(tmp_path / name)]) == 0
    enc = load_encoder(src)
    batch = env_batch(enc.image_size)
    n = batch["force"].shape[1]
    if n != 50:  # the graph's F/T window is fixed at export
        assert main(["export-encoder", str(src), "--format", "onnx", "--out", str(tmp_path / name),
                     "--force-readings", str(n)]) == 0
    sess = ort.InferenceSession(str(tmp_path / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, batch)))
    np.testing.assert_allclose(outs["z_mean"], enc.encode(batch).numpy(), atol=1e-5, rtol=0)
    if enc.cfg.fusion == "poe":
        lv = enc.expert_logvars(batch)
        for m in enc.cfg.modalities:
            np.testing.assert_allclose(outs[f"logvar_{m}"].mean(1), lv[m].numpy(), atol=1e-5, rtol=0)
        # the fused log-variance: the product of the experts' precisions and the prior's
        precision = 1 + sum(np.exp(-outs[f"logvar_{m}"]) for m in enc.cfg.modalities)
        np.testing.assert_allclose(outs["z_logvar"], -np.log(precision), atol=1e-5, rtol=0)
    else:
        assert list(outs) == ["z_mean"]


def test_safetensors_round_trip_loads_like_the_torch_file(tmp_path):
    src = ENCODERS / "robust_flow_rgb.pt"
    assert main(["export-encoder", str(src), "--format", "safetensors", "--out", str(tmp_path / "enc")]) == 0
    st = tmp_path / "enc.safetensors"
    assert st.exists() and (tmp_path / "enc.json").exists()
    a, b = load_encoder(src), load_encoder(st)
    assert a.cfg.to_dict() == b.cfg.to_dict()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert a.reliability.thresholds == b.reliability.thresholds
    batch = env_batch(a.image_size, n=2)
    assert torch.equal(a.encode(batch), b.encode(batch))
    # the weights alone (no JSON beside them) still load: the config is in the file's metadata
    (tmp_path / "enc.json").unlink()
    assert torch.equal(load_encoder(st).encode(batch), a.encode(batch))


def test_export_encoder_names_a_foreign_file(tmp_path, capsys):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not safetensors")
    assert main(["export-encoder", str(bad), "--format", "onnx"]) == 2
    assert str(bad) in capsys.readouterr().err


def test_policy_onnx_closed_loop_without_torch(tmp_path):
    from test_policy import TINY_PPO, policy_cfg

    from mmrep.policy import load_policy, train_policy

    enc = tmp_path / "encoder.pt"
    torch.manual_seed(0)
    export_encoder(MultimodalEncoder(ModelConfig(image_size=64, z_dim=8)), enc)
    run = tmp_path / "run"
    train_policy(policy_cfg(run, "obs=latent_proprio", f"obs.encoder={enc}", "total_steps=32", *TINY_PPO,
                            "eval_episodes=1"))
    assert main(["policy", "export", f"policy={run}", f"out={tmp_path / 'policy.onnx'}"]) == 0
    assert main(["export-encoder", str(enc), "--format", "onnx", "--force-readings", "12"]) == 0
    # the graph acts as the SB3 policy does on normalised observations (mean action)
    model, venv, _, rms = load_policy(run / "policy.pt")
    venv.close()
    obs = np.random.default_rng(0).normal(size=(5, 8 + 13)).astype(np.float32) * 3
    want, _ = model.predict(np.clip((obs - rms.mean) / np.sqrt(rms.var + 1e-8), -5, 5).astype(np.float32),
                            deterministic=True)
    sess = ort.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(["action"], {"obs": obs})[0], want, atol=1e-5)
    # the docs' example, in a fresh interpreter that must never load torch
    example = ROOT / "docs" / "examples" / "onnx_closed_loop.py"
    code = ("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
            "assert 'torch' not in sys.modules, 'torch was imported'; print('NO_TORCH_OK')")
    res = subprocess.run([sys.executable, "-c", code, str(example), str(tmp_path / "encoder.onnx"),
                          str(tmp_path / "policy.onnx"), "5"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "NO_TORCH_OK" in res.stdout and res.stdout.count("step ") >= 5


@pytest.mark.parametrize("algo", [["algo=sac", "algo.params.buffer_size=64", "algo.params.learning_starts=8",
                                   "algo.params.batch_size=8"],
                                  ["algo=trpo", "algo.params.n_steps=16", "algo.params.batch_size=16"]])
def test_policy_onnx_equals_sb3_mean_action(tmp_path, algo):
    from test_policy import policy_cfg

    from mmrep.policy import load_policy, train_policy

    run = tmp_path / "run"
    train_policy(policy_cfg(run, "obs=state", "total_steps=16", *algo, "eval_episodes=1"))
    assert main(["policy", "export", f"policy={run}"]) == 0
    model, venv, _, rms = load_policy(run / "policy.pt")
    venv.close()
    dim = model.observation_space.shape[0]
    obs = np.random.default_rng(1).normal(size=(6, dim)).astype(np.float32) * 2
    want, _ = model.predict(np.clip((obs - rms.mean) / np.sqrt(rms.var + 1e-8), -5, 5).astype(np.float32),
                            deterministic=True)
    sess = ort.InferenceSession(str(run / "policy.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(["action"], {"obs": obs})[0], want, atol=1e-5)
