"""sim.perturb against its definitions on known inputs; the env wrapper; the dataset transforms."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from sim.env import PegInsertionEnv
from sim.perturb import PERTURBATIONS, SensorStats, Setting, apply_all, get, patch_box, perturb
from sim.wrappers import PerturbObservation

S = 64


def _obs(seed=0, batch=None):
    rng = np.random.default_rng(seed)
    lead = () if batch is None else (batch,)
    return {"rgb": rng.integers(0, 256, lead + (S, S, 3), dtype=np.uint8),
            "depth": rng.uniform(0.4, 0.8, lead + (S, S, 1)).astype(np.float32),
            "force": rng.normal(0, 2, lead + (50, 6)).astype(np.float32),
            "proprio": rng.normal(0, 1, lead + (13,)).astype(np.float32)}


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_level_zero_is_the_identity_and_input_is_untouched(name):
    obs = _obs()
    copy = {k: v.copy() for k, v in obs.items()}
    out = perturb(obs, name, 0.0, np.random.default_rng(1))
    for k in obs:
        np.testing.assert_array_equal(out[k], copy[k])
    out = perturb(obs, name, 0.9, np.random.default_rng(1))
    key = get(name).key
    assert out[key].shape == obs[key].shape and out[key].dtype == obs[key].dtype
    for k in obs:
        np.testing.assert_array_equal(obs[k], copy[k])  # never in place


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_same_seed_same_result_and_batches_draw_per_sample(name):
    obs = _obs(batch=4)
    a = perturb(obs, name, 0.9, np.random.default_rng(7))
    b = perturb(obs, name, 0.9, np.random.default_rng(7))
    key = get(name).key
    np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("fill", ["zeros", "mean", "noise", "texture"])
@pytest.mark.parametrize("p", [0.1, 0.25, 0.5])
def test_occlusion_patch_covers_the_fraction_p(fill, p):
    obs = {"rgb": np.full((S, S, 3), 77, np.uint8), "depth": np.full((S, S, 1), 0.6, np.float32)}
    side = patch_box((S, S), p, np.random.default_rng(0))[2]
    assert abs(side * side / (S * S) - p) < 2 * side / (S * S)  # rounding of the side only
    out = perturb(obs, f"rgb/occlusion_{fill}", p, np.random.default_rng(3))
    changed = (out["rgb"] != 77).any(-1)
    rows, cols = np.nonzero(changed)
    if fill != "mean":  # the mean of a constant image is the image
        assert changed.sum() <= side * side and changed.sum() >= 0.9 * side * side
        assert rows.max() - rows.min() + 1 <= side and cols.max() - cols.min() + 1 <= side  # one square
    else:
        assert not changed.any()
    if fill == "zeros":
        d = perturb(obs, "depth/occlusion_zeros", p, np.random.default_rng(3))["depth"]
        assert (d == 0).sum() == side * side  # 0 m: "no reading"


def test_force_noise_sigma_is_p_times_the_channel_std():
    stats = SensorStats(force_std=(1.0, 2.0, 4.0, 0.1, 0.2, 0.4))
    x = np.zeros((20000, 6), np.float32)
    out = perturb({"force": x}, "force/gaussian_noise", 0.5, np.random.default_rng(0), stats=stats, batched=False)
    np.testing.assert_allclose(out["force"].std(0), 0.5 * np.array(stats.force_std), rtol=0.03)


def test_rgb_gaussian_noise_is_applied_with_probability_p_and_sigma_p():
    img = np.full((S, S, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    hits, sigmas = 0, []
    for _ in range(1500):
        out = perturb({"rgb": img}, "rgb/gaussian_noise", 0.1, rng)["rgb"]
        if (out != img).any():
            hits += 1
            sigmas.append((out.astype(float) - 128).std() / 255)
    assert 0.08 < hits / 1500 < 0.12  # binomial sd 0.008
    assert abs(np.mean(sigmas) - 0.1) < 0.005


def test_depth_missing_reads_zero_on_the_fraction_p_in_blobs():
    d = np.full((S, S, 1), 0.6, np.float32)
    out = perturb({"depth": d}, "depth/missing", 0.3, np.random.default_rng(0))["depth"][..., 0]
    hole = out == 0
    assert abs(hole.mean() - 0.3) < 0.01
    # blobs, not salt: most missing pixels have a missing right neighbour
    assert (hole[:, :-1] & hole[:, 1:]).sum() / hole[:, :-1].sum() > 0.8


def test_ft_faults_match_their_definitions():
    stats = SensorStats(force_std=(1.0,) * 6)
    x = np.ones((50, 6), np.float32)
    rng = np.random.default_rng(0)
    bias = perturb({"force": x}, "force/bias", 0.5, rng, stats=stats)["force"] - x
    assert np.allclose(np.abs(bias), 1.5) and np.allclose(bias, bias[0])  # p x 3 std, constant
    drift = perturb({"force": np.zeros((50, 6), np.float32)}, "force/drift", 1.0, rng, stats=stats, time_s=2.0,
                    reading_dt=1e-3)["force"]
    rate = np.linalg.norm(drift[-1] - drift[0]) / (49e-3)
    assert abs(rate - np.sqrt(6)) < 1e-3  # p x std per second on every channel, in norm
    assert np.linalg.norm(drift[0]) == pytest.approx(2.0 * np.sqrt(6), rel=1e-4)  # grown for 2 s
    sat = perturb({"force": np.full((50, 6), 100.0, np.float32)}, "force/saturation", 0.5, rng, stats=stats)["force"]
    assert np.allclose(sat, 8.0)  # 4 std / p
    dead = perturb({"force": x}, "force/dead", 1.0, rng)["force"]
    assert not dead.any()
    drop = perturb({"force": np.ones((5000, 6), np.float32)}, "force/timestep_dropout", 0.3, rng)["force"]
    rows_zero = ~drop.any(1)
    assert abs(rows_zero.mean() - 0.3) < 0.03 and ((drop == 0).any(1) == rows_zero).all()
    taps = perturb({"force": np.zeros((50, 6), np.float32)}, "force/taps", 1.0, rng, stats=stats)["force"]
    spiked = np.nonzero(np.abs(taps).max(1) > 0)[0]
    assert len(spiked) == 3 and np.allclose(np.abs(taps[spiked]), 10.0)


def test_fault_draws_are_constant_over_an_episode_rng():
    x = np.zeros((50, 6), np.float32)
    a = perturb({"force": x}, "force/bias", 1.0, np.random.default_rng(1), episode_rng=np.random.default_rng(9))
    b = perturb({"force": x}, "force/bias", 1.0, np.random.default_rng(2), episode_rng=np.random.default_rng(9))
    np.testing.assert_array_equal(a["force"], b["force"])


def test_bad_names_and_levels_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown perturbation 'rgb/blur'"):
        perturb(_obs(), "rgb/blur", 0.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"level of force/bias must be in \[0, 1\]"):
        perturb(_obs(), "force/bias", 1.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="has 6 values but the 'proprio' observation has 13"):
        perturb(_obs(), "proprio/gaussian_noise", 0.5, np.random.default_rng(0),
                stats=SensorStats(proprio_std=(1.0,) * 6))
    assert Setting.parse("rgb/occlusion_mean:0.5") == Setting("rgb/occlusion_mean", 0.5)


def test_apply_all_chains_settings():
    out = apply_all(_obs(), [Setting("force/dead", 1.0), Setting("rgb/inversion", 1.0)], np.random.default_rng(0))
    assert not out["force"].any()
    np.testing.assert_array_equal(out["rgb"], 255 - _obs()["rgb"])


def test_wrapper_passes_check_env_and_replays_seeds():
    env = PerturbObservation(PegInsertionEnv(image_size=32, max_steps=6),
                             ["rgb/occlusion_noise:0.3", "force/bias:1", "force/drift:1", "proprio/gaussian_noise:0.5"],
                             seed=3)
    try:
        check_env(env, skip_render_check=True)
        runs = []
        for _ in range(2):
            obs, _ = env.reset(seed=11)
            trace = [obs]
            for _ in range(3):
                trace.append(env.step(np.zeros(3, np.float32))[0])
            runs.append(trace)
        for a, b in zip(*runs):
            for k in a:
                np.testing.assert_array_equal(a[k], b[k])
        assert env.observation_space.contains(runs[0][-1])
    finally:
        env.close()


def test_wrapper_bias_is_constant_and_drift_grows_within_an_episode():
    base = PegInsertionEnv(use_camera=False, max_steps=30, ft_sensor={"force_noise_std": 0.0, "torque_noise_std": 0.0})
    clean = PegInsertionEnv(use_camera=False, max_steps=30, ft_sensor={"force_noise_std": 0.0, "torque_noise_std": 0.0})
    stats = SensorStats(force_std=(1.0,) * 6)
    env = PerturbObservation(base, ["force/bias:1", "force/drift:1"], seed=0, stats=stats)
    try:
        o, _ = env.reset(seed=5)
        c, _ = clean.reset(seed=5)
        diffs = [o["force"] - c["force"]]
        for _ in range(10):
            o = env.step(np.zeros(3, np.float32))[0]
            c = clean.step(np.zeros(3, np.float32))[0]
            diffs.append(o["force"] - c["force"])
        offsets = np.stack([d.mean(0) for d in diffs])
        growth = np.linalg.norm(offsets[-1] - offsets[1]) / (9 * 0.05)
        assert abs(growth - np.sqrt(6)) < 0.05  # drift of 1 std/s per channel
        # the bias part: the offset at the start of the episode, one sign per channel, 3 std
        assert np.allclose(np.abs(offsets[0]), 3.0, atol=0.05)
    finally:
        env.close()
        clean.close()


def test_a_share_of_episodes_draws_the_setting_into_that_share_seeded():
    assert Setting.parse("force/dead:1@0.25") == Setting("force/dead", 1.0, 0.25)
    assert Setting.parse("force/dead").episodes == 1.0
    with pytest.raises(ValueError, match=r"share of episodes of force/dead must lie in \(0, 1\]"):
        Setting.parse("force/dead:1@1.5")
    with pytest.raises(ValueError, match="nothing after '@'"):
        Setting.parse("force/dead:1@")
    env = PerturbObservation(PegInsertionEnv(use_camera=False, max_steps=4), ["force/dead:1@0.5"], seed=2)
    try:
        def dead(seed: int) -> bool:
            return not env.reset(seed=seed)[0]["force"].any()

        draws = [dead(s) for s in range(40)]
        assert 10 <= sum(draws) <= 30  # about half the episodes
        assert [dead(s) for s in range(40)] == draws  # the same seeds, the same episodes
        obs, _ = env.reset(seed=draws.index(True))
        assert all(not env.step(np.zeros(3, np.float32))[0]["force"].any() for _ in range(3))  # the whole episode
    finally:
        env.close()


def _forces(env, seed: int, steps: int = 4) -> np.ndarray:
    """The force windows of one seeded episode under a fixed sequence of actions, (steps + 1, n, 6)."""
    obs, _ = env.reset(seed=seed)
    out = [obs["force"]]
    for k in range(steps):
        action = np.full(env.action_space.shape, 0.5 if k % 2 else -0.5, dtype=np.float32)
        out.append(env.step(action)[0]["force"])
    return np.stack(out)


def test_the_tare_removes_a_bias_present_at_reset_and_leaves_a_dead_sensor_dead():
    from sim.rl_env import make_rl_env
    from sim.wrappers import TareForce

    env = {"use_camera": False, "max_steps": 6}
    clean = _forces(make_rl_env(env, (), ft_tare=True), seed=3)
    biased = _forces(make_rl_env(env, ("force/bias:1",), ft_tare=True), seed=3)
    untared = _forces(make_rl_env(env, ("force/bias:1",)), seed=3)
    assert np.abs(untared - clean).max() > 3.0  # N: the bias is 3 std per channel (15 N on z)
    np.testing.assert_allclose(biased, clean, atol=1e-4)  # the tare took it out, whatever its signs
    assert np.abs(clean[0].mean(0)).max() < 1e-5  # the reset readings are the zero
    dead = _forces(make_rl_env(env, ("force/dead:1",), ft_tare=True), seed=3)
    assert not dead.any()  # zeros stay zeros: a flatline is still a flatline
    with pytest.raises(ValueError, match="'force'"):
        TareForce(make_rl_env(env, state=True))  # the state view has no readings to tare
