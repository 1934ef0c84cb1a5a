"""The Gymnasium env: API conformance, determinism, spaces, arguments, safety, rewards."""

import re
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sim
from sim.task import MAX_STEP_REWARD


@pytest.mark.parametrize("env_id", sim.ENV_IDS)
def test_check_env_every_id(env_id, make_env):
    env = make_env(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped)  # includes the step-determinism check
        sb3_check_env(env.unwrapped)


def test_env_ids_cover_every_shape():
    assert len(sim.ENV_IDS) == len(sim.PEG_SHAPES) + 1
    for shape in sim.PEG_SHAPES:
        assert gym.spec(f"mmrep/PegInsertion{shape.capitalize()}-v0").kwargs["peg_shape"] == shape


def _rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, *_ = env.step(a)
        out.append(obs)
    return out


def test_same_seed_bit_identical_observations(make_env):
    actions = [np.array([0.5, -0.3, -1.0], dtype=np.float32)] * 4
    a = _rollout(make_env(), 7, actions)
    b = _rollout(make_env(), 7, actions)
    env = make_env()
    _rollout(env, 99, actions)  # a different episode first must not change the replay
    c = _rollout(env, 7, actions)
    for x, y, z in zip(a, b, c):
        for key in x:
            assert np.array_equal(x[key], y[key]), key
            assert np.array_equal(x[key], z[key]), key


def test_different_seeds_give_different_hole_poses(make_env):
    env = make_env(use_camera=False)
    holes = [env.reset(seed=s)[1]["hole_pos"] for s in range(5)]
    assert len({tuple(h.round(6)) for h in holes}) == 5
    r = env.unwrapped.cfg.randomization
    for h in holes:
        assert np.all(np.abs(h[:2] - np.asarray(r.hole_xy_center)) <= r.hole_xy_range + 1e-9)


def test_hole_estimate_error_has_configured_length(make_env):
    env = make_env(use_camera=False, randomization={"hole_estimate_error": 0.003})
    for s in range(3):
        _, info = env.reset(seed=s)
        err = np.linalg.norm(info["hole_estimate"][:2] - info["hole_pos"][:2])
        assert err == pytest.approx(0.003, abs=1e-9)


def test_observation_shapes_dtypes_and_render(make_env):
    env = make_env(render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert obs["rgb"].shape == (128, 128, 3) and obs["rgb"].dtype == np.uint8
    assert obs["depth"].shape == (128, 128, 1) and obs["depth"].dtype == np.float32
    assert obs["force"].shape == (50, 6) and obs["force"].dtype == np.float32
    assert obs["proprio"].shape == (13,) and obs["contact"].shape == (50,)
    assert env.observation_space.contains(obs)
    frame = env.render()
    assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8
    # The workspace is in view: the scene is not a blank image, depth is metric and plausible.
    assert frame.std() > 10
    assert 0.2 < float(obs["depth"].min()) < float(obs["depth"].max()) < 2.0


def test_state_only_and_240hz_preset_shapes(make_env):
    env = make_env(use_camera=False, physics_preset="fast", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"force", "proprio", "contact"}
    assert obs["force"].shape == (12, 6)
    assert env.render().shape == (128, 128, 3)  # rendering still works on request


def test_close_twice_is_fine(make_env):
    env = make_env()
    env.reset(seed=0)
    env.close()
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.reset(seed=0)


@pytest.mark.parametrize("kwargs, name", [
    ({"peg_shape": "star"}, "peg_shape"),
    ({"clearance": -0.001}, "clearance"),
    ({"image_size": 0}, "image_size"),
    ({"physics_hz": 1000.0, "control_hz": 30.0}, "physics_hz / control_hz"),
    ({"action_dim": 2}, "action_dim"),
    ({"max_steps": 0}, "max_steps"),
    ({"peg_widht": 0.03}, "peg_widht"),
    ({"controller": {"kp_pos": -5.0}}, "controller.kp_pos"),
    ({"controller": {"kp": 5.0}}, "controller.'kp'"),
    ({"ft_sensor": {"lowpass_hz": 900.0}}, "ft_sensor.lowpass_hz"),
    ({"randomization": {"hole_xy_range": -1.0}}, "randomization.hole_xy_range"),
    ({"use_camera": False, "compute_flow": True}, "compute_flow"),
    ({"physics_preset": "turbo"}, "physics_preset"),
    ({"render_mode": "ascii"}, "render_mode"),
])
def test_bad_argument_raises_value_error_naming_it(kwargs, name):
    with pytest.raises(ValueError) as err:
        gym.make("mmrep/PegInsertion-v0", **kwargs)
    assert name in str(err.value)


def test_bad_action_raises(make_env):
    env = make_env(use_camera=False)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.0, 0.0]))


def test_time_limit_truncates_with_reason(make_env):
    env = make_env(use_camera=False, max_steps=3)
    env.reset(seed=0)
    for _ in range(3):
        _, _, terminated, truncated, info = env.step(np.zeros(3, dtype=np.float32))
    assert truncated and not terminated and info["truncation_reason"] == "time_limit"


def test_leaving_workspace_truncates_with_reason(make_env):
    # Episodes start 10-16 cm above the 4 cm block, so a ceiling at 12 cm puts the tip outside.
    env = make_env(use_camera=False, workspace_high=(0.85, 0.3, 0.12),
                   randomization={"start_height": (0.12, 0.16)})
    env.reset(seed=0)
    obs, _, terminated, truncated, info = env.step(np.zeros(3, dtype=np.float32))
    assert truncated and not terminated and info["truncation_reason"] == "workspace"
    assert np.isfinite(obs["proprio"]).all()


def test_runaway_speed_truncates(make_env):
    env = make_env(use_camera=False, max_ee_speed=0.05)  # any brisk motion counts as runaway
    env.reset(seed=0)
    for _ in range(10):
        obs, _, _, truncated, info = env.step(np.array([1.0, 1.0, -1.0], dtype=np.float32))
        if truncated:
            break
    assert truncated and info["truncation_reason"] == "runaway"
    assert np.isfinite(obs["proprio"]).all()


def test_lead_bound_caps_target_distance(make_env):
    """A 5 cm action asks for more than the 1.5 cm lead bound: the target lands exactly on the bound,
    measured from the tip where the step started (the arm is at rest after the reset)."""
    env = make_env(use_camera=False, action_scale=0.05)
    obs, _ = env.reset(seed=0)
    max_lead = env.unwrapped.cfg.controller.max_lead
    assert max_lead == pytest.approx(0.015)
    _, _, _, _, info = env.step(np.array([1.0, 1.0, 1.0], dtype=np.float32))
    lead = np.linalg.norm(info["target_pos"] - obs["proprio"][:3])
    assert lead == pytest.approx(max_lead, abs=1e-6)
    # a small action stays inside the bound and moves the target by exactly action x scale
    small = np.array([0.1, 0.0, 0.0], dtype=np.float32)
    before, tip = info["target_pos"], info["tip_pos"]
    _, _, _, _, info = env.step(small)
    wanted = before + small * 0.05
    if np.linalg.norm(wanted - tip) <= max_lead:
        assert np.allclose(info["target_pos"], wanted, atol=1e-9)
    else:
        assert np.linalg.norm(info["target_pos"] - tip) == pytest.approx(max_lead, abs=1e-6)


def test_pressing_on_block_reads_bounded_positive_z_force(make_env):
    """Pushing the peg onto the block top: the tared F/T z force is about kp x lead, tens of newtons."""
    env = make_env(use_camera=False, randomization={"hole_estimate_error": 0.0})
    obs, info = env.reset(seed=1)
    spot = info["hole_pos"] + np.array([0.03, 0.0, 0.0])  # on the block, beside the hole
    u = env.unwrapped
    for _ in range(60):
        goal = np.array([spot[0], spot[1], obs["proprio"][2] - 0.02])
        a = np.clip((goal - u.robot.target_pos) / u.cfg.action_scale, -1, 1).astype(np.float32)
        obs, _, _, _, info = env.step(a)
    assert obs["contact"].all()
    fz = float(obs["force"][:, 2].mean())
    assert 20.0 < fz < 40.0, fz  # lead capped at 30 N / 2000 N/m
    assert abs(info["insertion_depth"]) < 0.002  # resting on the top surface


def test_completion_bonus_beats_hovering(make_env):
    env = make_env("mmrep/PegInsertionSquare-v0", use_camera=False,
                   randomization={"hole_estimate_error": 0.0})
    from sim.peg_hole_experts import ExpertPolicy
    policy = ExpertPolicy(env.unwrapped.cfg)
    obs, info = env.reset(seed=0)
    policy.reset(info, seed=0)
    steps = 0
    while True:
        obs, reward, terminated, truncated, info = env.step(policy.act(obs, info))
        steps += 1
        if terminated or truncated:
            break
    assert terminated and info["is_success"]
    remaining = env.unwrapped.cfg.max_steps - steps
    assert reward > MAX_STEP_REWARD * remaining  # more than hovering for the rest of the episode


def test_culled_render_is_pixel_identical_to_full_render(make_env):
    """Skipping arm links outside the view must not change a single pixel."""
    from sim.camera import Camera
    from sim.peg_hole_experts import RandomExplorer

    env = make_env()
    u = env.unwrapped
    cfg = u.cfg
    full = Camera(u.client, cfg.image_size, cfg.camera_target, cfg.camera_distance, cfg.camera_yaw,
                  cfg.camera_pitch, cfg.camera_fov)
    policy = RandomExplorer(cfg)
    obs, info = env.reset(seed=4)
    policy.reset(info, seed=4)
    culled_any = False
    for _ in range(15):
        obs, *_, info = env.step(policy.act(obs, info))
        culled = u.camera.render(segmentation=True)
        culled_any |= bool(u.camera.hidden_links)
        u.camera.show_all()
        reference = full.render(segmentation=True)
        assert np.array_equal(culled.rgb, reference.rgb)
        assert np.array_equal(culled.seg, reference.seg)
        assert np.array_equal(culled.depth, reference.depth)
    assert culled_any  # the test exercised the culling


def test_floor_drawn_once_per_view_gives_the_full_render(make_env):
    """The floor drawn once per camera pose and composited by depth must equal drawing everything, frame by
    frame, with the occluder in view and the camera moved each episode (calibration error)."""
    import pybullet as p

    from sim.camera import Camera
    from sim.peg_hole_experts import RandomExplorer

    env = make_env(occluder={"mode": "static"}, randomization={"camera_target_error": 0.01})
    u = env.unwrapped
    cfg = u.cfg
    full = Camera(u.client, cfg.image_size, cfg.camera_target, cfg.camera_distance, cfg.camera_yaw,
                  cfg.camera_pitch, cfg.camera_fov)  # no backdrop, no culling: every shape drawn
    policy = RandomExplorer(cfg)
    views = set()
    for seed in (5, 6):
        obs, info = env.reset(seed=seed)
        policy.reset(info, seed=seed)
        full.aim(np.asarray(cfg.camera_target) + u.camera_shift)
        for _ in range(12):
            obs, *_, info = env.step(policy.act(obs, info))
            u.camera.show_all()
            reference = full.render()
            assert np.array_equal(obs["rgb"], reference.rgb)
            assert np.array_equal(obs["depth"], reference.depth)
        views.add(u.camera._backdrop_frame[0])
    assert len(views) == 2  # each episode's camera pose drew its own floor
    # the floor is shown again after each frame, for other cameras
    assert p.getVisualShapeData(u._plane, physicsClientId=u.client)[0][7][3] == 1.0
    # a floor recoloured (as a task might) is drawn anew
    p.changeVisualShape(u._plane, -1, rgbaColor=(0.3, 0.6, 0.2, 1.0), physicsClientId=u.client)
    recoloured = u.camera.render()
    u.camera.show_all()
    reference = full.render()
    assert np.array_equal(recoloured.rgb, reference.rgb) and not np.array_equal(recoloured.rgb, obs["rgb"])
    assert u.camera.backdrop_redraws == 0


@pytest.mark.parametrize("shape", sim.PEG_SHAPES)
def test_clearance_as_built(shape, make_env):
    """A peg centred in its hole is clearance/2 from the walls (no hidden collision margin)."""
    import pybullet as p

    from sim.observation import tool_down_quat

    env = make_env(f"mmrep/PegInsertion{shape.capitalize()}-v0", use_camera=False)
    u = env.unwrapped
    _, info = env.reset(seed=0)
    u.robot.solve_ik(info["hole_pos"] + np.array([0.0, 0.0, -0.01]), tool_down_quat(0.0))
    points = p.getClosestPoints(u.robot.uid, u.task.uid, 0.01, 7, -1, physicsClientId=u.client)
    gap = min(pt[8] for pt in points)
    assert gap == pytest.approx(u.cfg.clearance / 2, abs=1e-4)


def test_programmatic_arm_matches_urdf():
    """The arm built with createMultiBody has the URDF's kinematics and dynamics."""
    import pybullet as p

    from sim.assets import peg_hull, robot_urdf
    from sim.robot import build_arm_with_peg

    c = p.connect(p.DIRECT)
    try:
        urdf = robot_urdf("square", 0.03, 0.08)
        ref = p.loadURDF(str(urdf), useFixedBase=True, flags=p.URDF_USE_INERTIA_FROM_FILE,
                         physicsClientId=c)
        arm = build_arm_with_peg(c, urdf, peg_hull("square", 0.03, 0.08), 0.0002)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        rng = np.random.default_rng(0)
        for _ in range(3):
            q = rng.uniform(-1.5, 1.5, 7)
            qd = rng.uniform(-1, 1, 7)
            for body in (ref, arm):
                for j in range(7):
                    p.resetJointState(body, j, q[j], physicsClientId=c)
            for link in range(8):
                a = p.getLinkState(ref, link, computeForwardKinematics=1, physicsClientId=c)
                b = p.getLinkState(arm, link, computeForwardKinematics=1, physicsClientId=c)
                assert np.allclose(a[4], b[4], atol=1e-7) and np.allclose(a[0], b[0], atol=1e-7)
            m_ref = np.asarray(p.calculateMassMatrix(ref, q.tolist(), physicsClientId=c))
            m_arm = np.asarray(p.calculateMassMatrix(arm, q.tolist(), physicsClientId=c))
            assert np.allclose(m_ref, m_arm, atol=1e-6)
            tau_ref = p.calculateInverseDynamics(ref, q.tolist(), qd.tolist(), [0.0] * 7, physicsClientId=c)
            tau_arm = p.calculateInverseDynamics(arm, q.tolist(), qd.tolist(), [0.0] * 7, physicsClientId=c)
            assert np.allclose(tau_ref, tau_arm, atol=1e-6)
    finally:
        p.disconnect(physicsClientId=c)


_ROLLOUT_SCRIPT = """
import hashlib, sys
import gymnasium as gym
import numpy as np
import sim
env = gym.make("mmrep/PegInsertion-v0")
h = hashlib.sha256()
obs, _ = env.reset(seed=5)
for _ in range(4):
    for key in sorted(obs):
        h.update(obs[key].tobytes())
    obs, *_ = env.step(np.array([0.4, 0.2, -1.0], dtype=np.float32))
print(h.hexdigest())
"""


def test_rollouts_are_bit_identical_across_processes():
    """Datasets collected by worker processes must not depend on which process made them."""
    import subprocess
    import sys

    digests = {subprocess.run([sys.executable, "-c", _ROLLOUT_SCRIPT], capture_output=True, text=True,
                              check=True).stdout.strip() for _ in range(2)}
    assert len(digests) == 1 and len(next(iter(digests))) == 64


def test_unstable_controller_truncates_without_nan_in_observations(make_env):
    """Absurd gains blow the simulation up: the config refuses them, and should they reach the controller
    anyway, the env must truncate and never emit a NaN."""
    with pytest.raises(ValueError, match="kp_pos"):
        make_env(use_camera=False, controller={"kp_pos": 1e9, "kd_pos": 1e7})
    env = make_env(use_camera=False)
    env.unwrapped.robot._stiffness[:3] = 1e9  # past validation: the runtime guard is what is tested
    env.unwrapped.robot._damping[:3] = 1e7
    obs, _ = env.reset(seed=0)
    truncated = False
    for _ in range(20):
        obs, _, _, truncated, info = env.step(np.array([1.0, -1.0, -1.0], dtype=np.float32))
        for key, value in obs.items():
            assert np.isfinite(value).all(), key
        if truncated:
            break
    assert truncated and info["truncation_reason"] in ("nan", "runaway", "workspace")


def test_human_mode_without_display_falls_back_with_a_warning(make_env, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.warns(UserWarning, match="needs a display"):
        env = make_env(render_mode="human", use_camera=False)
    obs, _ = env.reset(seed=0)
    assert env.render() is None  # the GUI would show the scene; headless there is nothing to return
    env.step(np.zeros(3, dtype=np.float32))


def test_robot_urdf_cache_is_per_pybullet_data_location(tmp_path, monkeypatch):
    """The generated URDF names pybullet_data's meshes by absolute path: a copy made from another
    environment (a removed virtualenv) must not be reused."""
    import shutil

    import pybullet_data

    from sim import assets

    monkeypatch.setenv("MMREP_ASSET_DIR", str(tmp_path / "assets"))
    here = assets.robot_urdf("square", 0.03, 0.1)
    moved = tmp_path / "other_env" / "pybullet_data"
    shutil.copytree(Path(pybullet_data.getDataPath()) / "kuka_iiwa", moved / "kuka_iiwa")
    monkeypatch.setattr(pybullet_data, "getDataPath", lambda: str(moved))
    there = assets.robot_urdf("square", 0.03, 0.1)
    assert there != here and str(moved) in there.read_text() and str(moved) not in here.read_text()


def _push_sideways_in_hole(make_env, seed: int, **overrides) -> dict:
    """Go to the true hole, drop in, then command mostly sideways (0.3, 1, -0.3): the target runs off
    laterally until the lead bound holds it there, as the wedged touch policies did."""
    env = make_env(use_camera=False, clearance=0.001, max_steps=60, randomization={"hole_estimate_error": 0.0},
                   **overrides)
    obs, info = env.reset(seed=seed)
    hole = env.unwrapped.task.hole.pos
    for _ in range(60):
        tip, target = obs["proprio"][:3], info.get("target_pos", obs["proprio"][:3])
        if tip[2] > hole[2] - 0.003:  # above the hole: straight over it, then down
            over = np.linalg.norm(hole[:2] - tip[:2]) > 0.0003
            goal = np.r_[hole[:2], max(hole[2] + 0.005, tip[2] - 0.02) if over else tip[2] - 0.01]
            a = np.clip((goal - target) / 0.01, -1, 1)
        else:
            a = np.array([0.3, 1.0, -0.3])
        obs, _, terminated, truncated, info = env.step(a.astype(np.float32))
        if terminated or truncated:
            return info
    return info


@pytest.mark.parametrize("seed", [0, 1])
def test_lateral_lead_bound_in_hole_stops_the_wedge(make_env, seed):
    """A peg pushed sideways in a 1 mm clearance hole tilts and jams short of the insertion depth; with
    the lateral lead bounded in the hole (0.5 mm, about 1 N) the same commands insert."""
    stiff = _push_sideways_in_hole(make_env, seed)
    assert not stiff["is_success"] and 0.005 < stiff["insertion_depth"] < 0.025
    assert np.linalg.norm(stiff["target_pos"][:2] - stiff["tip_pos"][:2]) > 0.005  # pushing sideways at ~10+ N
    compliant = _push_sideways_in_hole(make_env, seed, controller={"max_lateral_lead_in_hole": 0.0005})
    assert compliant["is_success"]


def test_lateral_lead_bound_is_validated(make_env):
    with pytest.raises(ValueError, match="max_lateral_lead_in_hole"):
        make_env(use_camera=False, controller={"max_lateral_lead_in_hole": 0.02})


def test_action_origin_tip_starts_each_action_at_the_measured_tip(make_env):
    """With ``controller.action_origin="tip"`` a zero action sets the target on the tip (nothing held
    from earlier commands) and -1 on z leads it by ``action_scale``; with "target" (the default) a
    zero action keeps the earlier command, which goes on pulling the tip."""
    down = np.array([0.0, 0.0, -1.0], dtype=np.float32)
    zero = np.zeros(3, dtype=np.float32)
    held = make_env(use_camera=False)
    held.reset(seed=0)
    held.step(down)
    _, _, _, _, info = held.step(zero)
    assert info["target_pos"][2] - info["tip_pos"][2] < -0.002  # the earlier command still leads the tip

    fresh = make_env(use_camera=False, controller={"action_origin": "tip"})
    fresh.reset(seed=0)
    fresh.step(down)
    tip_before = fresh.unwrapped.robot.tip_state().pos.copy()
    fresh.step(zero)
    assert np.allclose(fresh.unwrapped.robot.target_pos, tip_before)
    fresh.step(down)
    tip_before = fresh.unwrapped.robot.tip_state().pos.copy()
    _, _, _, _, info = fresh.step(down)
    assert np.allclose(fresh.unwrapped.robot.target_pos, tip_before + [0.0, 0.0, -0.01])
    assert info["tip_pos"][2] < tip_before[2] - 0.002  # and the tip follows


def test_action_origin_is_validated_and_left_out_of_files_at_its_default(make_env):
    from sim.config import EnvConfig

    with pytest.raises(ValueError, match="controller.action_origin"):
        make_env(use_camera=False, controller={"action_origin": "flange"})
    assert "action_origin" not in EnvConfig().to_dict()["controller"]
    assert EnvConfig.from_kwargs(controller={"action_origin": "tip"}).to_dict()["controller"]["action_origin"] == "tip"


def test_command_observation_is_the_controllers_lead_over_the_tip():
    """``make_rl_env(command=True)`` observes the desired tip position minus the measured one: zero at
    reset, the lead a held push builds (-z), and the env's own ``target_pos - tip_pos`` each step."""
    from sim.rl_env import make_rl_env

    env = make_rl_env({"use_camera": False}, ("proprio/gaussian_noise:1.0",), command=True)
    try:
        obs, _ = env.reset(seed=0)
        assert obs["command"].shape == (3,) and np.abs(obs["command"]).max() < 1e-6
        for _ in range(2):
            obs, _, _, _, info = env.step(np.array([0.0, 0.0, -1.0], dtype=np.float32))
            lead = info["target_pos"] - info["tip_pos"]
            # the controller's own state: the proprio noise does not reach it
            assert np.allclose(obs["command"], lead, atol=1e-6) and lead[2] < -0.005
    finally:
        env.close()


def _drop_in_then_pull_up(make_env, seed: int, **overrides) -> dict:
    """Go to the true hole and drop 6 mm in, then command straight up (0, 0, 0.3) for the rest of the
    episode: a policy that pulls back once inside, as the learned touch policies often did."""
    env = make_env(use_camera=False, clearance=0.001, max_steps=60, randomization={"hole_estimate_error": 0.0},
                   **overrides)
    obs, info = env.reset(seed=seed)
    hole = env.unwrapped.task.hole.pos
    inside = False
    for _ in range(60):
        tip, target = obs["proprio"][:3], info.get("target_pos", obs["proprio"][:3])
        inside = inside or tip[2] < hole[2] - 0.006
        if not inside:
            over = np.linalg.norm(hole[:2] - tip[:2]) > 0.0003
            goal = np.r_[hole[:2], max(hole[2] + 0.005, tip[2] - 0.02) if over else tip[2] - 0.01]
            a = np.clip((goal - target) / 0.01, -1, 1)
        else:
            a = np.array([0.0, 0.0, 0.3])
        obs, _, terminated, truncated, info = env.step(a.astype(np.float32))
        if terminated or truncated:
            return info
    return info


def test_press_in_hole_scripts_the_vertical_action_below_its_depth(make_env):
    """``controller.press_in_hole``: once the tip is that far below the block's top, the vertical action
    is a steady press whatever the policy commands, so a policy that pulls up after dropping in still
    inserts; without it the same commands leave the hole."""
    pulled = _drop_in_then_pull_up(make_env, 0)
    assert not pulled["is_success"] and pulled["insertion_depth"] < 0.005
    pressed = _drop_in_then_pull_up(make_env, 0, controller={"press_in_hole": 0.005})
    assert pressed["is_success"]
    with pytest.raises(ValueError, match="press_in_hole"):
        make_env(use_camera=False, controller={"press_in_hole": 0.03})  # deeper than the insertion depth
    from sim.config import EnvConfig

    assert "press_in_hole" not in EnvConfig().to_dict()["controller"]  # files stay as they were at its default
    assert EnvConfig.from_kwargs(controller={"press_in_hole": 0.005}).to_dict()["controller"]["press_in_hole"] == 0.005


def test_max_lateral_lead_bounds_lateral_and_vertical_leads_each_on_its_own(make_env):
    """With the default ball bound a sideways command while pressing at the force cap shrinks the press
    and gets only part of the sideways lead; ``controller.max_lateral_lead`` keeps both whole."""
    def lead_after(**controller) -> np.ndarray:
        env = make_env(use_camera=False, controller=controller)
        env.reset(seed=0)
        e = env.unwrapped
        tip = e.robot.tip_state().pos
        max_lead = e.cfg.controller.max_lead
        e.robot.target_pos = tip + np.array([0.0, 0.0, -max_lead])  # pressing at the cap
        e._set_target(tip, np.array([1.0, 0.0, 0.0]))
        return (e.robot.target_pos - tip) / max_lead

    ball = lead_after()
    assert np.linalg.norm(ball) == pytest.approx(1.0) and ball[0] < 0.6 and ball[2] > -0.9
    cylinder = lead_after(max_lateral_lead=0.015)
    assert cylinder[0] == pytest.approx(0.01 / 0.015) and cylinder[2] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="max_lateral_lead"):
        make_env(use_camera=False, controller={"max_lateral_lead": -0.01})


def test_action_change_penalty_costs_the_squared_change(make_env):
    """The same seed and actions with and without ``action_change_penalty``: rewards differ by the
    penalty times |a_t - a_t-1|^2 (the first step from zero), and nothing else changes."""
    actions = [np.array(a, dtype=np.float32) for a in ([0, 0, -1], [0, 0, 1], [0.5, 0, 1], [0.5, 0, 1])]
    runs = []
    for penalty in (0.0, 0.25):
        env = make_env(use_camera=False, action_change_penalty=penalty)
        obs, _ = env.reset(seed=3)
        rewards, proprio = [], []
        for a in actions:
            obs, r, *_ = env.step(a)
            rewards.append(r)
            proprio.append(obs["proprio"])
        runs.append((np.array(rewards), np.array(proprio)))
    changes = np.array([1.0, 4.0, 0.25, 0.0])
    np.testing.assert_allclose(runs[0][0] - runs[1][0], 0.25 * changes, atol=1e-12)
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    with pytest.raises(ValueError, match="action_change_penalty"):
        make_env(use_camera=False, action_change_penalty=-1.0)


def test_camera_target_error_moves_the_camera_not_the_scene(make_env):
    """``randomization.camera_target_error``: each episode the camera (and the occluder in front of it)
    moves that far in a seeded horizontal direction; the scene, the arm and the other draws do not."""
    import numpy as np

    from sim.config import EnvConfig

    plain = make_env(occluder={"mode": "static"}).unwrapped
    moved = make_env(occluder={"mode": "static"}, randomization={"camera_target_error": 0.004}).unwrapped
    a, info_a = plain.reset(seed=5)
    b, info_b = moved.reset(seed=5)
    assert np.linalg.norm(moved.camera_shift) == pytest.approx(0.004) and moved.camera_shift[2] == 0.0
    assert not plain.camera_shift.any()
    assert np.array_equal(a["proprio"], b["proprio"])  # the same scene and arm ...
    assert np.array_equal(info_a["hole_pos"], info_b["hole_pos"])
    assert not np.array_equal(a["rgb"], b["rgb"])  # ... seen from elsewhere
    assert np.allclose(moved.occluder.centre - plain.occluder.centre, moved.camera_shift)
    first = moved.camera_shift.copy()
    moved.reset(seed=6)
    assert not np.allclose(moved.camera_shift, first)  # a new direction each episode ...
    moved.reset(seed=5)
    assert np.array_equal(moved.camera_shift, first)  # ... drawn from the episode's seed
    assert "camera_target_error" not in EnvConfig().to_dict()["randomization"]  # files stay as they were
    with pytest.raises(ValueError, match="camera_target_error"):
        EnvConfig.from_kwargs(randomization={"camera_target_error": -0.001})


def test_an_env_refuses_to_be_copied_keeps_its_own_config_and_refuses_nan_settings():
    import copy
    import math
    import pickle

    from gymnasium.utils.env_checker import check_env

    from sim.config import EnvConfig
    from sim.rl_env import make_rl_env

    cfg = EnvConfig(max_steps=50, use_camera=False)
    env = gym.make("mmrep/PegInsertion-v0", config=cfg)
    try:
        cfg.max_steps = 2  # the caller's object changed afterwards: not this env's
        assert env.unwrapped.cfg.max_steps == 50
        for clone in (copy.deepcopy, pickle.dumps):  # a copy would share its PyBullet connection
            with pytest.raises(TypeError, match="holds a PyBullet connection and cannot be copied"):
                clone(env.unwrapped)
    finally:
        env.close()
    for bad in (dict(ft_sensor={"force_noise_std": math.nan}), dict(controller={"kd_null": math.inf}),
                dict(camera_target=(0.6, 0.0, math.nan))):
        with pytest.raises(ValueError, match=r"must be finite"):
            gym.make("mmrep/PegInsertion-v0", use_camera=False, **bad)
    gym.make("mmrep/PegInsertion-v0", camera_distance=0.2).close()  # the occluder is off: its geometry is not checked
    wrapped = make_rl_env({"use_camera": False}, ["force/bias:1"])
    try:
        check_env(wrapped, skip_render_check=True)  # the fault wrapper records its arguments (env.spec)
    finally:
        wrapped.close()


@pytest.mark.parametrize("bad, message", [
    (dict(camera_yaw="abc"), "camera_yaw must be a number, got 'abc'"),
    (dict(camera_target=None), "camera_target must be 3 numbers, got None"),
    (dict(controller=None), "controller must be a section of options"),
    (dict(max_steps=True), "max_steps must be an integer, got True"),
    (dict(use_camera="no"), "use_camera must be true or false, got 'no'"),
])
def test_a_value_of_the_wrong_type_is_named(bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        gym.make("mmrep/PegInsertion-v0", **bad)


def test_extra_observations_and_plugins_are_lists_of_plug_in_names():
    with pytest.raises(ValueError, match="extra_observations must be a list of names, got 'wobble'"):
        gym.make("mmrep/PegInsertion-v0", extra_observations="wobble")
    with pytest.raises(ValueError, match="plugins must be a list of names, got 'press_task'"):
        gym.make("mmrep/PegInsertion-v0", plugins="press_task")
    with pytest.raises(ValueError, match="'rgb' is not a plug-in modality the env can observe"):
        gym.make("mmrep/PegInsertion-v0", extra_observations=["rgb"])


def test_a_plug_in_observation_of_another_shape_than_its_space_is_named():
    from gymnasium import spaces

    from sim.modalities import MODALITY_REGISTRY, Modality, as_float32, register_modality

    register_modality(Modality("wrong_shape_test", camera=False, shape=lambda s, n: (3,), to_model=as_float32,
                               space=lambda s, n: spaces.Box(-1, 1, (3,), np.float32),
                               observe=lambda env: np.zeros(5)), replace=True)  # 5 values for a space of 3
    try:
        env = gym.make("mmrep/PegInsertion-v0", use_camera=False, extra_observations=["wrong_shape_test"])
        with pytest.raises(ValueError, match=r"observe\(\) returned shape \(5,\), its space is \(3,\)"):
            env.reset(seed=0)
        env.close()
    finally:
        MODALITY_REGISTRY.pop("wrong_shape_test", None)
