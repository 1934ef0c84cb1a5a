"""The faster policy loop changes nothing the policy sees: the env's observations, rewards and episode
ends are those of the tree before it (a digest recorded there), and encoding inside the env workers
gives the main process's z to 1e-5 with the same rewards, ends and terminal observations."""

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mmrep.config import AlgoConfig, ObsConfig, PolicyConfig
from mmrep.encoder import load_encoder
from mmrep.policy import build_venv
from mmrep.rl.latent import FrozenEncoder, LatentCodec, PinnedTransfer
from sim.rl_env import make_rl_env

# sha256 of rollout_digest() below, computed with the tree before the speed work (commit a0db715) on the
# project's machine. The simulation calls no BLAS (sim.detmath); a different CPU's libm inside PyBullet
# could still change the last bits (benchmarks/determinism.py measures that boundary).
# the encoder of configs/paper/fused_insertion.yaml
FUSED_ENCODER = Path(__file__).resolve().parent.parent / "benchmarks/results/insertion/encoders/insertion.pt"
DIGEST_BEFORE = "881469402f2147ae03b1892211b1cb38a9272ad56ff94d8fa35f72ece51a0a7c"


def rollout_digest(steps: int = 12, seed: int = 7) -> str:
    """sha256 over a short rollout at 1 kHz with the camera on: every observation entry's bytes, every
    reward and termination flag, with one episode end (max_steps 5) and reset inside it."""
    env = make_rl_env({"physics_hz": 1000.0, "max_steps": 5}, (), False, 0)
    h = hashlib.sha256()
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        for k in sorted(obs):
            h.update(k.encode())
            h.update(np.ascontiguousarray(obs[k]).tobytes())
        obs, r, term, trunc, _ = env.step(rng.uniform(-1, 1, 3).astype(np.float32))
        h.update(np.float64(r).tobytes())
        h.update(bytes([term, trunc]))
        if term or trunc:
            obs, _ = env.reset()
    env.close()
    return h.hexdigest()


def test_env_rollout_is_bit_identical_to_the_tree_before_the_speed_work():
    assert rollout_digest() == DIGEST_BEFORE


def latent_cfg(encoder, encode_in: str) -> PolicyConfig:
    cfg = PolicyConfig(obs=ObsConfig(kind="latent_proprio", encoder=str(encoder), encode_in=encode_in),
                       algo=AlgoConfig("ppo", {}), n_envs=2, device="cpu", eval_episodes=0)
    cfg.env.max_steps, cfg.env.physics_hz, cfg.env.image_size = 4, 240.0, 64
    cfg.validate()
    return cfg


def test_encoding_in_the_workers_gives_the_main_process_latents(small_encoder):
    main = build_venv(latent_cfg(small_encoder, "main"), 2, 11, vec_env="subproc")
    workers = build_venv(latent_cfg(small_encoder, "workers"), 2, 11, vec_env="subproc")
    try:
        assert type(workers).__name__ == "WatchedSubprocVecEnv"  # nothing encodes in the main process
        assert main.observation_space == workers.observation_space
        np.testing.assert_allclose(workers.reset(), main.reset(), atol=1e-5, rtol=0)
        rng = np.random.default_rng(3)
        ends = 0
        for _ in range(10):
            actions = rng.uniform(-1, 1, (2, 3)).astype(np.float32)
            om, rm, dm, im = main.step(actions)
            ow, rw, dw, iw = workers.step(actions)
            np.testing.assert_allclose(ow, om, atol=1e-5, rtol=0)
            assert np.array_equal(rw, rm) and np.array_equal(dw, dm)
            for a, b in zip(im, iw):
                assert ("terminal_observation" in a) == ("terminal_observation" in b)
                if "terminal_observation" in a:
                    ends += 1
                    np.testing.assert_allclose(b["terminal_observation"], a["terminal_observation"], atol=1e-5, rtol=0)
        assert ends >= 2  # episodes of 4 steps ended inside the 10
    finally:
        main.close()
        workers.close()


def test_encode_in_is_checked_and_a_single_env_encodes_in_place(small_encoder):
    cfg = latent_cfg(small_encoder, "workers")
    venv = build_venv(cfg, 1, 0)  # one env (evaluation): no worker to encode in
    try:
        assert isinstance(venv.codec, LatentCodec)
    finally:
        venv.close()
    with pytest.raises(ValueError, match="obs.encode_in"):
        PolicyConfig(obs=ObsConfig(kind="state", encode_in="workers"), eval_episodes=0).validate()
    with pytest.raises(ValueError, match="obs.encode_in"):
        latent_cfg(small_encoder, "gpu")


def test_frozen_torchscript_encoder_gives_eager_z_bit_for_bit():
    """On the fused row's committed encoder, at batch 1 and 2, at 240 Hz (fewer F/T readings than the
    encoder's window) and 1 kHz; a new batch size or F/T length gets its own trace."""
    torch.set_num_threads(1)
    encoder = load_encoder(FUSED_ENCODER)
    env = make_rl_env({"physics_hz": 240.0}, (), False, 0)
    frames = [env.reset(seed=5)[0]]
    rng = np.random.default_rng(0)
    for _ in range(3):
        frames.append(env.step(rng.uniform(-1, 1, 3).astype(np.float32))[0])
    env.close()
    frozen = FrozenEncoder(encoder)
    for batch in ([frames[0]], frames[1:3], [frames[3]]):
        obs = {k: np.stack([f[k] for f in batch]) for k in frames[0]}
        assert torch.equal(frozen(obs), encoder.encode(obs))
    assert len(frozen._traces) == 2
    env = make_rl_env({"physics_hz": 1000.0}, (), False, 0)  # 50 F/T readings: the other branch
    obs = {k: v[None] for k, v in env.reset(seed=5)[0].items()}
    env.close()
    assert torch.equal(frozen(obs), encoder.encode(obs)) and len(frozen._traces) == 3
    with pytest.raises(ValueError, match="batched"):
        frozen(frames[0])


def assert_workers_match_main(small_encoder, **obs_options) -> None:
    """Encoding in the workers with ``obs_options`` gives the main process's (eager torch) z to 1e-5, with
    the same rewards and episode ends."""
    cfg = latent_cfg(small_encoder, "workers")
    for key, value in obs_options.items():
        setattr(cfg.obs, key, value)
    main = build_venv(latent_cfg(small_encoder, "main"), 2, 4, vec_env="subproc")
    workers = build_venv(cfg, 2, 4, vec_env="subproc")
    try:
        np.testing.assert_allclose(workers.reset(), main.reset(), atol=1e-5, rtol=0)
        actions = np.full((2, 3), 0.5, np.float32)
        for _ in range(5):
            om, rm, dm, _ = main.step(actions)
            ow, rw, dw, _ = workers.step(actions)
            np.testing.assert_allclose(ow, om, atol=1e-5, rtol=0)
            assert np.array_equal(rw, rm) and np.array_equal(dw, dm)
    finally:
        main.close()
        workers.close()


def test_jit_codec_in_the_workers_gives_the_main_process_latents(small_encoder):
    assert_workers_match_main(small_encoder, jit=True)


def test_codec_device_path_stages_inputs_and_keeps_z(small_encoder):
    """The device path of LatentCodec (inputs through PinnedTransfer, then the encoder) on the CPU: the
    same z as the encoder alone; the staging moves tensors to a non-CPU device ("meta" stands in for a
    GPU here) and, with CUDA, through reused pinned buffers."""
    env = make_rl_env({"physics_hz": 240.0, "image_size": 64}, (), False, 0)
    obs, _ = env.reset(seed=2)
    batch = {k: np.stack([v, v]) for k, v in obs.items()}
    codec = LatentCodec(str(small_encoder), env.observation_space, ("proprio",), device="cpu")
    env.close()
    z = codec.encode(batch)
    ref = load_encoder(small_encoder).encode(batch).numpy()
    assert z.shape == (2, 8 + 13) and np.array_equal(z[:, :8], ref)
    t = torch.ones(2, 3)
    assert PinnedTransfer("cpu")("rgb", t) is t
    moved = PinnedTransfer("meta")("rgb", t)
    assert moved.device.type == "meta" and moved.shape == t.shape
    if torch.cuda.is_available():
        stage = PinnedTransfer("cuda")
        a = stage("rgb", t)
        b = stage("rgb", t + 1)
        assert stage.buffers["rgb"].is_pinned() and a.is_cuda and torch.equal(b.cpu(), t + 1)


def test_codec_names_a_non_finite_observation(small_encoder):
    """A non-finite latent is refused, not passed on to the policy (PPO would fail later with an unnamed
    "invalid values" in its action distribution): a NaN input by the encoder's own check, naming the
    entry and sample; a non-finite z from finite inputs by the codec, saying so."""
    env = make_rl_env({"physics_hz": 240.0, "image_size": 64}, (), False, 0)
    obs, _ = env.reset(seed=2)
    codec = LatentCodec(str(small_encoder), env.observation_space, ("proprio",), device="cpu")
    env.close()
    batch = {k: np.stack([v, v]) for k, v in obs.items()}
    assert np.isfinite(codec.encode(batch)).all()
    bad = {**batch, "force": batch["force"].astype(np.float32).copy()}
    bad["force"][1, 3, 2] = np.nan
    with pytest.raises(ValueError, match=r"obs\['force'\] holds NaN or inf at batch index 1"):
        codec.encode(bad)
    enc = load_encoder(small_encoder)
    with torch.no_grad():  # finite weights that overflow float32: a non-finite z from finite inputs
        for p in enc.parameters():
            p.mul_(1e30)
    with pytest.raises(ValueError, match="the frozen encoder returned a non-finite z .* from finite inputs"):
        LatentCodec(enc, env.observation_space, ("proprio",), device="cpu").encode(batch)


def test_a_run_resumes_with_another_place_of_encoding_but_not_another_encoder(small_encoder, tmp_path):
    from dataclasses import replace

    from mmrep.policy import _check_same_config

    cfg = latent_cfg(small_encoder, "main")
    _check_same_config(tmp_path, cfg)
    _check_same_config(tmp_path, replace(cfg, obs=replace(cfg.obs, encode_in="workers", jit=True)))
    with pytest.raises(ValueError, match="obs"):
        _check_same_config(tmp_path, replace(cfg, obs=replace(cfg.obs, encoder=str(tmp_path / "other.pt"))))


def test_linear_learning_rate_schedule_is_a_learner_option(tmp_path):
    from mmrep.policy import build_model

    cfg = PolicyConfig(obs=ObsConfig(kind="state"), algo=AlgoConfig("ppo", {
        "n_steps": 16, "batch_size": 16, "n_epochs": 1, "learning_rate": 1e-3, "learning_rate_schedule": "linear"}),
        n_envs=1, device="cpu", eval_episodes=0)
    cfg.env.use_camera, cfg.env.physics_hz, cfg.env.max_steps = False, 240.0, 8
    cfg.validate()
    venv = build_venv(cfg, 1, 0, vec_env="dummy")
    try:
        model = build_model(cfg, venv)
        assert model.lr_schedule(1.0) == pytest.approx(1e-3) and model.lr_schedule(0.25) == pytest.approx(2.5e-4)
        model.learn(32)  # two rollouts: the optimiser's rate follows the schedule
        assert model.policy.optimizer.param_groups[0]["lr"] < 1e-3
        bad = PolicyConfig(obs=cfg.obs, algo=AlgoConfig("ppo", {"learning_rate_schedule": "cosine"}), env=cfg.env,
                           n_envs=1, device="cpu", eval_episodes=0)
        with pytest.raises(ValueError, match="learning_rate_schedule"):
            build_model(bad, venv)
    finally:
        venv.close()


def test_onnx_runtime_codec_gives_torch_latents_in_the_main_process_and_the_workers(small_encoder):
    """obs.onnx: the frozen encoder under ONNX Runtime gives eager torch's z to 1e-5 (fused row's encoder,
    1 kHz, batch 1 and 2), in the main process and in each env worker; rewards and ends unchanged."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.set_num_threads(1)
    encoder = load_encoder(FUSED_ENCODER)
    env = make_rl_env({"physics_hz": 1000.0}, (), False, 0)
    frames = [env.reset(seed=3)[0], env.step(np.full(3, 0.3, np.float32))[0]]
    codec = LatentCodec(encoder, env.observation_space, ("proprio",), onnx=True)
    env.close()
    for batch in ([frames[0]], frames):
        obs = {k: np.stack([f[k] for f in batch]) for k in frames[0]}
        np.testing.assert_allclose(codec.encode(obs)[:, :encoder.z_dim], encoder.encode(obs).numpy(), atol=1e-5, rtol=0)
    assert_workers_match_main(small_encoder, onnx=True)
    with pytest.raises(ValueError, match="obs.onnx"):
        PolicyConfig(obs=ObsConfig(kind="latent", encoder=str(small_encoder), onnx=True, jit=True),
                     eval_episodes=0).validate()


@pytest.mark.parametrize("backend", ["torch", "jit", "onnx"])
def test_every_codec_gives_a_finite_z_for_inputs_far_outside_training(backend):
    """A proprioception vector of zeros drives an expert's log-variance far below -88; the product of
    experts made z NaN there (a policy evaluation died of it). Torch, TorchScript and ONNX Runtime all
    trace the same product, with no data-dependent branch, so all give the same finite z."""
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
    torch.set_num_threads(1)
    encoder = load_encoder(FUSED_ENCODER)
    env = make_rl_env({"physics_hz": 1000.0}, (), False, 0)
    obs = {k: v[None] for k, v in env.reset(seed=3)[0].items()}
    codec = LatentCodec(encoder, env.observation_space, (), jit=backend == "jit", onnx=backend == "onnx")
    env.close()
    clean = codec.encode(obs)
    far = {**obs, "proprio": np.zeros_like(obs["proprio"])}
    z = codec.encode(far)  # raised "non-finite z ... from finite inputs" before
    assert np.isfinite(z).all() and not np.allclose(z, clean)
    np.testing.assert_allclose(z, encoder.encode(far).numpy(), atol=1e-4, rtol=1e-5)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux's")
def test_pinned_workers_encode_the_same_latents_on_their_own_cpus(small_encoder, tmp_path):
    from dataclasses import replace

    from mmrep.policy import _check_same_config
    from mmrep.rl.subproc import worker_cpus

    free_cfg = latent_cfg(small_encoder, "workers")
    pinned_cfg = replace(free_cfg, pin_workers=True)
    pinned_cfg.validate()
    free, pinned = build_venv(free_cfg, 2, 11), build_venv(pinned_cfg, 2, 11)
    try:
        assert [os.sched_getaffinity(p.pid) for p in pinned.processes] == [{c} for c in worker_cpus(2)]
        np.testing.assert_array_equal(pinned.reset(), free.reset())  # one process each, both one observation at a time
        rng = np.random.default_rng(3)
        for _ in range(6):
            actions = rng.uniform(-1, 1, (2, 3)).astype(np.float32)
            for x, y in zip(pinned.step(actions)[:3], free.step(actions)[:3]):
                np.testing.assert_array_equal(x, y)
    finally:
        free.close(), pinned.close()
    _check_same_config(tmp_path, free_cfg)
    _check_same_config(tmp_path, pinned_cfg)  # a run resumes pinned or not: the same results
    with pytest.raises(ValueError, match="pin_workers=true .* needs vec_env=subproc .*'dummy'"):
        replace(free_cfg, pin_workers=True, vec_env="dummy").validate()
