"""Two-sided reliability flags and the camera memory: while the camera looks corrupted, z fuses the
camera experts of the last step it looked clean."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import load_benchmark
from stable_baselines3.common.vec_env import DummyVecEnv

from mmrep.camera_memory import CameraMemory
from mmrep.encoder import Encoder, export_encoder, load_encoder, random_like
from mmrep.models import ModelConfig
from mmrep.reliability import Reliability, calibrate
from mmrep.rl.latent import LatentObservation
from mmrep.rl.sb3 import VecLatentObservation

ENV = {"image_size": 64, "max_steps": 4, "physics_hz": 240.0}
KEYS = ("rgb", "depth", "force", "proprio")


def make(**kw):
    return gym.make("mmrep/PegInsertion-v0", **{**ENV, **kw})


def first_obs(seed: int = 3, **kw) -> dict[str, np.ndarray]:
    env = make(**kw)
    try:
        obs, _ = env.reset(seed=seed)
        return {k: obs[k] for k in KEYS}
    finally:
        env.close()


def stack(*obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.stack([o[k] for o in obs]) for k in KEYS}


@pytest.fixture(scope="module")
def views():
    """The same reset seen clean and behind the static occluder, and the encoder's thresholds set
    between the two views' camera log-variances, so the occluded view is flagged and the clean one not."""
    torch.manual_seed(0)
    enc = Encoder(ModelConfig(image_size=64, z_dim=16)).eval()
    clean = first_obs()
    occluded = first_obs(occluder={"mode": "static", "probability": 1.0})
    assert not np.array_equal(clean["rgb"], occluded["rgb"])
    a, b = enc.expert_logvars(clean), enc.expert_logvars(occluded)
    high = {m: 1e9 for m in KEYS}
    low = {m: -1e9 for m in KEYS}
    for m in ("rgb", "depth"):
        mid = float(a[m] + b[m]) / 2
        if b[m] < a[m]:
            low[m] = mid  # the occluded view makes this expert surer than the clean one
        else:
            high[m] = mid
    enc.reliability = Reliability(high, 0.99, 10, low, 0.01)
    assert not any(bool(f) for f in enc.flags(clean).values())
    assert any(bool(enc.flags(occluded)[m]) for m in ("rgb", "depth"))
    return enc, clean, occluded


def test_two_sided_flags_fire_under_the_low_quantile_and_round_trip_through_json():
    lv = {"rgb": np.arange(1000, dtype=np.float64), "force": np.arange(1000, dtype=np.float64)}
    rel = calibrate(lv, 0.99, 0.01)
    flags = rel.flags({m: torch.as_tensor(v) for m, v in lv.items()})
    assert float(flags["rgb"].float().mean()) == pytest.approx(0.02, abs=0.003)  # both tails, 1% each
    assert bool(flags["rgb"][0]) and bool(flags["rgb"][-1]) and not bool(flags["rgb"][500])
    again = Reliability.from_json(rel.to_json())
    assert again == rel and again.low_quantile == 0.01
    one_sided = Reliability.from_json(json.dumps({"thresholds": {"rgb": 5.0}, "quantile": 0.99, "samples": 3}))
    assert one_sided.low == {} and not bool(one_sided.flags({"rgb": torch.tensor([-1e6])})["rgb"][0])
    assert "low" not in json.loads(one_sided.to_json())  # files written before stay as they were
    with pytest.raises(ValueError, match="low_quantile"):
        calibrate(lv, 0.99, 0.995)


def test_a_flatlined_sensor_is_flagged_whatever_its_expert_says(views):
    from mmrep.models.reliability import flatlined

    enc, clean, _ = views
    dead = {**clean, "force": np.zeros_like(clean["force"])}
    without = Encoder(enc.cfg)  # no F/T threshold: never flagged, flatlined or not
    without.load_state_dict(enc.state_dict())
    without.reliability = Reliability({m: v for m, v in enc.reliability.thresholds.items() if m != "force"})
    assert "force" not in without.flags(dead)
    assert not bool(enc.flags(clean)["force"])  # the thresholds never flag F/T here (set at 1e9)
    assert bool(enc.flags(dead)["force"]) and not bool(enc.flags(dead)["proprio"])
    stuck = {**clean, "force": np.broadcast_to(clean["force"][:1], clean["force"].shape).copy()}  # one reading held
    assert bool(enc.flags(stuck)["force"])
    # rejection leaves the dead sensor out: z as without F/T
    torch.testing.assert_close(enc.encode(stack(dead), reject=True),
                               enc.encode(stack(dead), modalities=["rgb", "depth", "proprio"]), rtol=1e-5, atol=1e-6)
    x = torch.zeros(3, 50, 6)
    x[1, 7, 2] = 1e-3  # one reading moved: live
    flat = flatlined({"force": x, "proprio": torch.zeros(3, 8)})
    assert set(flat) == {"force"} and flat["force"].tolist() == [True, False, True]


def test_held_z_is_the_clean_camera_with_the_live_touch_and_proprioception(views):
    enc, clean, occluded = views
    memory = CameraMemory(enc)
    z_clean = memory.encode(stack(clean))
    torch.testing.assert_close(z_clean, enc.encode(stack(clean)))  # nothing flagged: as Encoder.encode
    held = memory.encode(stack(occluded))
    expected = enc.encode(stack({**occluded, "rgb": clean["rgb"], "depth": clean["depth"]}))
    torch.testing.assert_close(held, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(held, enc.encode(stack(occluded)))
    assert (memory.held_steps, memory.steps) == (1, 2)
    memory.reset()
    torch.testing.assert_close(memory.encode(stack(occluded)), enc.encode(stack(occluded)))  # nothing held yet


def test_memory_is_per_slot_and_a_terminal_read_leaves_it(views):
    enc, clean, occluded = views
    memory = CameraMemory(enc)
    memory.encode(stack(clean, occluded))  # slot 0 holds the clean view; slot 1 starts occluded
    out = memory.encode(stack(occluded, occluded), slots=[1, 0])
    torch.testing.assert_close(out[0], enc.encode(stack(occluded))[0])  # slot 1: nothing to hold
    torch.testing.assert_close(out[1], memory.encode(stack(occluded), slots=[0])[0])
    other = {**clean, "proprio": clean["proprio"] + 0.01}
    memory.encode(stack(other), slots=[0], update=False)
    held = memory.encode(stack(occluded), slots=[0])
    torch.testing.assert_close(held, enc.encode(stack({**occluded, "rgb": clean["rgb"], "depth": clean["depth"]})),
                               rtol=1e-5, atol=1e-6)
    memory.reset([0])
    assert memory.held == {}
    with pytest.raises(ValueError, match="slots for a batch"):
        memory.encode(stack(clean), slots=[0, 1])


def test_odometry_says_when_the_camera_is_held_and_how_far_the_tip_moved_since(views):
    enc, clean, occluded = views
    memory = CameraMemory(enc, odometry=True)
    tip = lambda *xyz: np.array(xyz, np.float64)[None]  # noqa: E731
    memory.encode(stack(clean), tip=tip(0.10, 0.20, 0.30))
    np.testing.assert_array_equal(memory.last_odometry, [[0, 0, 0, 0]])  # clean: nothing held
    z = memory.encode(stack(occluded), tip=tip(0.13, 0.16, 0.30))
    np.testing.assert_allclose(memory.last_odometry, [[1, 0.03, -0.04, 0.0]], atol=1e-7)
    expected = enc.encode(stack({**occluded, "rgb": clean["rgb"], "depth": clean["depth"]}))
    torch.testing.assert_close(z, expected, rtol=1e-5, atol=1e-6)  # the held z is as without odometry
    memory.encode(stack(clean), tip=tip(0.50, 0.50, 0.50))  # a new clean view moves the anchor
    memory.encode(stack(occluded), tip=tip(0.51, 0.50, 0.48))
    np.testing.assert_allclose(memory.last_odometry, [[1, 0.01, 0.0, -0.02]], atol=1e-7)
    memory.encode(stack(clean), slots=[0], update=False, tip=tip(0.0, 0.0, 0.0))  # a terminal read: no anchor
    memory.encode(stack(occluded), tip=tip(0.52, 0.50, 0.50))
    np.testing.assert_allclose(memory.last_odometry, [[1, 0.02, 0.0, 0.0]], atol=1e-7)
    memory.reset([0])
    memory.encode(stack(occluded), tip=tip(0.0, 0.0, 0.0))  # a new episode that starts occluded: nothing held
    np.testing.assert_array_equal(memory.last_odometry, [[0, 0, 0, 0]])
    with pytest.raises(ValueError, match="tip positions"):
        memory.encode(stack(clean))


def test_the_latent_with_odometry_puts_it_after_z_and_refuses_without_memory(views, tmp_path):
    enc, clean, occluded = views
    path = tmp_path / "encoder.pt"
    export_encoder(enc, path, enc.reliability)
    env = LatentObservation(make(), path, extra_keys=("proprio",), camera_memory=True, camera_odometry=True)
    try:
        assert env.observation_space.shape == (16 + 4 + 13,)
        codec = env.codec
        out = codec.encode(stack(clean))
        np.testing.assert_array_equal(out[0, 16:20], 0.0)
        moved = {**occluded, "proprio": occluded["proprio"] + np.float32(0.01)}
        out = codec.encode(stack(moved))
        np.testing.assert_allclose(out[0, 16:20], [1, 0.01, 0.01, 0.01], atol=1e-6)
        np.testing.assert_array_equal(out[0, 20:], moved["proprio"])  # the extra keys follow
    finally:
        env.close()
    with pytest.raises(ValueError, match="camera_memory=True"):
        LatentObservation(make(), path, camera_odometry=True)


def test_camera_memory_refuses_encoders_it_cannot_read(views):
    enc, *_ = views
    with pytest.raises(ValueError, match="product of experts"):
        CameraMemory(Encoder(ModelConfig(image_size=64, fusion="concat")))
    no_camera = Encoder(ModelConfig(image_size=64, rgb=False, depth=False))
    with pytest.raises(ValueError, match="camera modality"):
        CameraMemory(no_camera)
    one_sided = Encoder(ModelConfig(image_size=64))
    one_sided.reliability = Reliability(dict(enc.reliability.thresholds))
    with pytest.raises(ValueError, match="two-sided.*mmrep.reliability"):
        CameraMemory(one_sided)
    one_sided.reliability = None
    with pytest.raises(ValueError, match="no reliability thresholds"):
        CameraMemory(one_sided)


def test_wrappers_reset_the_memory_when_an_episode_starts(views, tmp_path):
    enc, clean, _ = views
    # the camera always flagged: the memory then changes only by what the wrappers reset
    always = Encoder(enc.cfg)
    always.load_state_dict(enc.state_dict())
    always.reliability = Reliability({m: 1e9 for m in KEYS}, 0.99, 10, {"depth": 1e9}, 0.01)
    path = tmp_path / "encoder.pt"
    export_encoder(always, path, always.reliability)
    assert load_encoder(path).reliability == always.reliability
    inputs, _ = always.model_inputs(stack(clean))
    mus, logvars, _, names = always.image_experts(inputs)
    sentinel = {m: (mu[0], lv[0]) for m, mu, lv in zip(names, mus, logvars)}

    single = LatentObservation(make(), path, camera_memory=True)
    try:
        z, _ = single.reset(seed=5)
        single.codec.memory.held[0] = sentinel
        held_z = single.observation(single.env.reset(seed=5)[0])  # the wrapper's own reset not called
        assert not np.allclose(held_z, z)
        again, _ = single.reset(seed=5)
        np.testing.assert_array_equal(again, z)  # reset forgot the held view
    finally:
        single.close()

    venv = VecLatentObservation(DummyVecEnv([make, make]), path, camera_memory=True)
    try:
        venv.seed(3)
        venv.reset()
        assert venv.codec.memory.held == {}
        venv.codec.memory.held.update({0: sentinel, 1: sentinel})
        for t in range(ENV["max_steps"]):
            obs, _, dones, infos = venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
            assert set(venv.codec.memory.held) == (set() if t == ENV["max_steps"] - 1 else {0, 1})
        assert dones.all() and all(info["terminal_observation"].shape == (16,) for info in infos)
    finally:
        venv.close()


def paper_summary():
    return load_benchmark("paper_summary")


def test_policy_eval_with_camera_memory_keeps_its_rows_apart(views, tmp_path):
    from mmrep.cli import main
    from mmrep.config import app_config, compose
    from mmrep.policy import load_policy, train_policy
    from mmrep.policy_eval import PARTIAL

    enc, *_ = views
    path = tmp_path / "encoder.pt"
    export_encoder(enc, path, enc.reliability)
    cfg = app_config(compose("policy", [f"out={tmp_path / 'run'}", "progress=false", "vec_env=dummy",
                                        "eval_episodes=1", "eval_every_steps=32", "ckpt_every_steps=32",
                                        "env.max_steps=8", "env.physics_hz=240.0", "env.image_size=64",
                                        "obs=latent_proprio", f"obs.encoder={path}", "obs.onnx=true",
                                        "total_steps=32", "algo=ppo",
                                        "algo.params.n_steps=16", "algo.params.batch_size=16",
                                        "algo.params.n_epochs=1"]))
    train_policy(cfg)
    run = tmp_path / "run"
    args = ["policy", "eval", f"policy={run}", "episodes=2", "settings=[occluder]", "video=false",
            "progress=false", "modes=[deterministic]"]
    assert main([*args, f"out={run / 'eval'}"]) == 0
    plain = json.loads((run / "eval" / "results.json").read_text())["results"][0]
    assert "camera_held_fraction" not in plain and plain["reject_flagged"] is False
    # a plain row kept from a killed evaluation is not taken for a camera-memory evaluation's
    stat = (run / "policy.pt").stat()
    key = {"policy": str((run / "policy.pt").resolve()), "policy_bytes": stat.st_size,
           "policy_mtime_ns": stat.st_mtime_ns, "seed": 2_000_000, "episodes": 2}
    (run / "eval_memory").mkdir()
    (run / "eval_memory" / PARTIAL).write_text(json.dumps(
        {"run": key, "shape_asked": None, "trained_shape": "square", "row": {**plain, "marker": "plain"}}) + "\n")
    # trained under ONNX Runtime: the memory reads torch's experts, so the evaluation runs torch's encoder
    assert main([*args, "camera_memory=true", f"out={run / 'eval_memory'}"]) == 0
    row = json.loads((run / "eval_memory" / "results.json").read_text())["results"][0]
    assert "marker" not in row and 0.0 <= row["camera_held_fraction"] <= 1.0
    assert main([*args, "camera_memory=true", "reject_flagged=true", f"out={run / 'eval_drc'}"]) == 0
    row = json.loads((run / "eval_drc" / "results.json").read_text())["results"][0]
    assert row["reject_flagged"] and set(row["rejected_fraction"]) == {"force", "proprio"}
    # the flags set on the policy's own clean rollouts: a copy of its encoder, the same weights
    from mmrep.reliability import CALIBRATION_SEED, calibrate_on_rollouts, rollout_logvars

    calibrated = tmp_path / "encoder_rollouts.pt"
    rel = calibrate_on_rollouts(run, calibrated, episodes=2)
    _, logvars = rollout_logvars(run, episodes=2, first_seed=CALIBRATION_SEED)
    assert rel.samples == 2 * 8 and set(rel.thresholds) == set(logvars)  # every observation the policy acted on
    assert rel.thresholds["force"] == pytest.approx(float(np.quantile(logvars["force"], rel.quantile)))
    assert load_encoder(path).reliability.thresholds != rel.thresholds  # the policy's own file is unchanged
    with pytest.raises(ValueError, match="the encoder .* was trained with"):
        calibrate_on_rollouts(run, path, episodes=1)
    assert load_encoder(path).reliability.thresholds == enc.reliability.thresholds  # refused, not overwritten
    # only the F/T expert's thresholds from the rollouts; the camera's stay the dataset's (an occluder
    # never appears in clean rollouts)
    force_only = calibrate_on_rollouts(run, tmp_path / "encoder_force.pt", episodes=2, modalities=["force"])
    assert force_only.thresholds["force"] == rel.thresholds["force"] and force_only.low["force"] == rel.low["force"]
    assert {m: v for m, v in force_only.thresholds.items() if m != "force"} == \
        {m: v for m, v in enc.reliability.thresholds.items() if m != "force"}
    assert load_encoder(tmp_path / "encoder_force.pt").reliability.thresholds == force_only.thresholds
    with pytest.raises(ValueError, match=r"--modalities \['smell'\]"):
        calibrate_on_rollouts(run, tmp_path / "encoder_smell.pt", episodes=1, modalities=["smell"])
    assert not (tmp_path / "encoder_smell.pt").exists()
    assert main([*args, "camera_memory=true", "reject_flagged=true", f"encoder={calibrated}",
                 f"out={run / 'eval_drc_rollouts'}"]) == 0
    row = json.loads((run / "eval_drc_rollouts" / "results.json").read_text())["results"][0]
    assert row["encoder"] == str(calibrated) and row["reject_flagged"]
    # a scripted insertion stage below 5 mm: its own rows, keyed apart from the plain ones
    assert main([*args, "press_in_hole=0.005", f"out={run / 'eval_press'}"]) == 0
    row = json.loads((run / "eval_press" / "results.json").read_text())["results"][0]
    assert row["press_in_hole"] == 0.005 and "camera_held_fraction" not in row
    other = tmp_path / "other.pt"
    export_encoder(random_like(enc, seed=1), other, enc.reliability)
    with pytest.raises(ValueError, match="does not hold the weights"):
        load_policy(run / "policy.pt", encoder=other)
    # the paper summary keeps the five apart
    summary = paper_summary().row_summary([run])
    assert {c["setting"] for c in summary["cells"].values()} == {
        "occluder", "occluder+memory", "occluder+memory+reject", "occluder+memory+reject+rollout_flags",
        "occluder+press"}
    # ... and the remedy table puts them side by side: one line per evaluation, one column per setting
    lines = paper_summary().remedy_tables({"fused": summary})
    body = [line for line in lines if line.startswith("| fused |")]
    assert lines[2] == "| row | evaluated | seeds | occluder |"
    assert [line.split(" | ")[1] for line in body] == ["as trained", "memory", "memory+reject",
                                                        "memory+reject+rollout_flags", "press"]
    assert all(line.count("(") == 1 for line in body)  # each cell a pooled rate with its interval

    train_policy(app_config(compose("policy", [f"out={tmp_path / 'state'}", "progress=false", "vec_env=dummy",
                                               "obs=state", "total_steps=16", "eval_every_steps=16", "eval_episodes=1",
                                               "env.max_steps=8", "env.physics_hz=240.0", "algo=ppo",
                                               "algo.params.n_steps=16", "algo.params.batch_size=16"])))
    with pytest.raises(ValueError, match="camera_memory needs a policy on a frozen latent"):
        load_policy(tmp_path / "state" / "policy.pt", camera_memory=True)
    with pytest.raises(ValueError, match="reject_flagged needs a policy on a frozen latent"):
        load_policy(tmp_path / "state" / "policy.pt", reject_flagged=True)


def test_rejecting_leaves_the_flagged_senses_out_of_the_product(views, tmp_path):
    from mmrep.config import app_config, compose
    from mmrep.rl.latent import LatentCodec

    enc, clean, occluded = views
    ft_flagged = Encoder(enc.cfg)  # F/T flagged on every step (its threshold under any log-variance)
    ft_flagged.load_state_dict(enc.state_dict())
    ft_flagged.reliability = Reliability({**enc.reliability.thresholds, "force": -1e9}, 0.99, 10,
                                         dict(enc.reliability.low), 0.01)
    both = stack(clean, occluded)
    without_ft = ft_flagged.encode(both, modalities=["rgb", "depth", "proprio"])
    memory = CameraMemory(ft_flagged, reject=True)
    z = memory.encode(both)
    torch.testing.assert_close(z[0], without_ft[0], rtol=1e-5, atol=1e-6)  # clean camera: F/T alone left out
    held = ft_flagged.encode(stack({**occluded, "rgb": clean["rgb"], "depth": clean["depth"]}),
                             modalities=["rgb", "depth", "proprio"])
    torch.testing.assert_close(memory.encode(stack(occluded), slots=[0])[0], held[0], rtol=1e-5, atol=1e-6)
    assert memory.rejected == {"force": 3, "proprio": 0}
    torch.testing.assert_close(CameraMemory(ft_flagged).encode(both), ft_flagged.encode(both))  # off: unchanged
    # without the memory the codec leaves every flagged expert out, the occluded camera's too
    codec = LatentCodec(ft_flagged, make().observation_space, reject_flagged=True)
    np.testing.assert_allclose(codec.encode(both), ft_flagged.encode(both, reject=True).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(codec.encode(both)[0], without_ft[0].numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="reject_flagged needs torch's encoder"):
        LatentCodec(ft_flagged, make().observation_space, reject_flagged=True, onnx=True)
    bare = Encoder(enc.cfg)
    with pytest.raises(ValueError, match="no reliability thresholds"):
        LatentCodec(bare, make().observation_space, reject_flagged=True)
    path = tmp_path / "encoder.pt"
    export_encoder(ft_flagged, path, ft_flagged.reliability)
    with pytest.raises(ValueError, match="obs.reject_flagged needs"):
        app_config(compose("policy", ["obs=latent_proprio", f"obs.encoder={path}", "obs.reject_flagged=true",
                                      "obs.onnx=true"]))


def test_observations_without_the_camera_encode_as_the_encoder_does(views):
    enc, clean, _ = views
    memory = CameraMemory(enc)
    blind = {k: v for k, v in stack(clean).items() if k in ("force", "proprio")}
    torch.testing.assert_close(memory.encode(blind), enc.encode(blind))
