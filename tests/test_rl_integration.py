"""The encoder inside RL agents: latent observation wrappers (single, Gymnasium vector, SB3 vector)
and the SB3 features extractor."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.vec_env import DummyVecEnv, VecTransposeImage

from mmrep.encoder import export_encoder, load_encoder
from mmrep.models import ModelConfig
from mmrep.models.multimodal import MultimodalEncoder
from mmrep.rl.latent import LatentObservation, LatentVectorObservation
from mmrep.rl.sb3 import MultimodalExtractor, VecLatentObservation
from sim.wrappers import PerturbObservation

ENV = {"image_size": 64, "max_steps": 4, "physics_hz": 240.0}


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("enc") / "encoder.pt"
    export_encoder(MultimodalEncoder(ModelConfig(image_size=64, z_dim=16)), path)
    return path


def make(**kw):
    return gym.make("mmrep/PegInsertion-v0", **{**ENV, **kw})


def test_latent_observation_is_the_encoders_z_plus_extra_keys(encoder_file):
    env = LatentObservation(make(), encoder_file, extra_keys=("proprio",))
    try:
        assert env.observation_space.shape == (16 + 13,) and env.observation_space.dtype == np.float32
        obs, _ = env.reset(seed=3)
        raw, _ = env.env.reset(seed=3)
        z = load_encoder(encoder_file).encode({k: raw[k] for k in ("rgb", "depth", "force", "proprio")}).numpy()
        np.testing.assert_allclose(obs[:16], z, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(obs[16:], raw["proprio"])
        again, _ = env.reset(seed=3)
        np.testing.assert_array_equal(again, obs)  # seeds replay
        step_obs, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(step_obs)
    finally:
        env.close()


def test_latent_observation_passes_gymnasium_and_sb3_env_checkers(encoder_file):
    for checker in (check_env, sb3_check_env):
        env = LatentObservation(make(), encoder_file)
        try:
            checker(env, skip_render_check=True) if checker is check_env else checker(env)
        finally:
            env.close()


def test_latent_observation_sees_what_a_perturbation_wrapper_did(encoder_file):
    clean = LatentObservation(make(), encoder_file)
    dark = LatentObservation(PerturbObservation(make(), ["rgb/occlusion_zeros:0.9"]), encoder_file)
    try:
        a, _ = clean.reset(seed=1)
        b, _ = dark.reset(seed=1)
        assert np.abs(a - b).max() > 1e-4
    finally:
        clean.close()
        dark.close()


def test_latent_observation_refuses_an_env_without_the_encoders_senses(encoder_file):
    env = make(use_camera=False)
    try:
        with pytest.raises(ValueError, match="use_camera"):
            LatentObservation(env, encoder_file)
        with pytest.raises(ValueError, match="extra_keys"):
            LatentObservation(make(), encoder_file, extra_keys=("joint_angles",))
    finally:
        env.close()


def test_vector_wrappers_encode_every_sub_env_in_one_batch_like_the_single_wrapper(encoder_file):
    single = LatentObservation(make(), encoder_file, extra_keys=("proprio",))
    expected = [single.reset(seed=s)[0] for s in (10, 11)]
    single.close()

    genv = LatentVectorObservation(gym.vector.SyncVectorEnv([make, make]), encoder_file, extra_keys=("proprio",))
    obs, _ = genv.reset(seed=[10, 11])
    assert obs.shape == (2, 29) and genv.single_observation_space.shape == (29,)
    np.testing.assert_allclose(obs, np.stack(expected), rtol=1e-5, atol=1e-6)
    obs, *_ = genv.step(genv.action_space.sample())
    assert genv.observation_space.contains(obs)
    genv.close()

    venv = VecLatentObservation(DummyVecEnv([make, make]), encoder_file, extra_keys=("proprio",))
    venv.seed(10)
    obs = venv.reset()
    np.testing.assert_allclose(obs, np.stack(expected), rtol=1e-5, atol=1e-6)
    for _ in range(ENV["max_steps"]):  # the episodes end: SB3's terminal observation is encoded too
        obs, _, dones, infos = venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
    assert dones.all() and all(info["terminal_observation"].shape == (29,) for info in infos)
    assert obs.shape == (2, 29)
    venv.close()


def test_extractor_features_equal_the_deployed_encoder_after_sb3_preprocessing(encoder_file):
    venv = VecTransposeImage(DummyVecEnv([make]))  # what SB3 does to a channel-last uint8 image
    space = venv.observation_space
    assert space["rgb"].shape == (3, 64, 64)
    ext = MultimodalExtractor(space, encoder=encoder_file, extra_keys=("proprio",))
    obs = venv.reset()
    tensors = {k: torch.as_tensor(v) for k, v in obs.items()}
    feats = ext(preprocess_obs(tensors, space, normalize_images=True))
    raw = dict(obs, rgb=obs["rgb"].transpose(0, 2, 3, 1))
    z = load_encoder(encoder_file).encode({k: raw[k] for k in ("rgb", "depth", "force", "proprio")})
    assert feats.shape == (1, 16 + 13)
    torch.testing.assert_close(feats[:, :16], z, rtol=1e-4, atol=1e-5)
    venv.close()


@pytest.mark.parametrize("freeze", [True, False])
def test_extractor_trains_with_ppo_frozen_or_fine_tuned(encoder_file, freeze):
    env = make()
    model = PPO("MultiInputPolicy", env, n_steps=16, batch_size=8, n_epochs=1, seed=0, device="cpu",
                policy_kwargs=dict(features_extractor_class=MultimodalExtractor,
                                   features_extractor_kwargs=dict(encoder=str(encoder_file), freeze=freeze)))
    before = {k: v.clone() for k, v in model.policy.features_extractor.net.state_dict().items()}
    model.learn(16)
    after = model.policy.features_extractor.net.state_dict()
    changed = any(not torch.equal(before[k], after[k]) for k in before)
    assert changed is (not freeze)
    assert not model.policy.features_extractor.net.training or not freeze
    env.close()


def test_extractor_randomly_initialised_and_with_sac_and_trpo(encoder_file):
    from sb3_contrib import TRPO

    cfg = {"image_size": 64, "z_dim": 8, "depth": False}
    for algo, kw in ((SAC, dict(learning_starts=4, batch_size=4, buffer_size=64)),
                     (TRPO, dict(n_steps=8, batch_size=8))):
        env = make()
        model = algo("MultiInputPolicy", env, seed=0, device="cpu", **kw,
                     policy_kwargs=dict(features_extractor_class=MultimodalExtractor,
                                        features_extractor_kwargs=dict(model_config=cfg)))
        model.learn(8)
        ext = model.policy.actor.features_extractor if algo is SAC else model.policy.features_extractor
        assert isinstance(ext, MultimodalExtractor) and ext.features_dim == 8
        env.close()


def test_the_extractor_names_an_image_size_or_key_the_env_does_not_have_and_present_takes_booleans():
    from stable_baselines3 import PPO

    import mmrep
    from mmrep.rl.sb3 import MultimodalExtractor
    from sim.rl_env import make_rl_env

    env = make_rl_env({"image_size": 64, "max_steps": 4})
    try:
        def ppo(**kwargs):
            extractor = dict(features_extractor_class=MultimodalExtractor, features_extractor_kwargs=kwargs)
            return PPO("MultiInputPolicy", env, n_steps=8, batch_size=8, policy_kwargs=extractor)

        assert ppo(model_config={"z_dim": 8}).policy.features_extractor.net.cfg.image_size == 64  # the env's size
        with pytest.raises(ValueError, match="reads 128 px images but the env renders 64 px"):
            ppo(encoder="benchmarks/results/insertion/encoders/insertion.pt")
        with pytest.raises(ValueError, match=r"extra_keys \['nope'\] are not in the observation space"):
            ppo(model_config={"z_dim": 8}, extra_keys=["nope"])
    finally:
        env.close()
    enc = mmrep.load_encoder("benchmarks/results/insertion/encoders/insertion.pt")
    big = make_rl_env({})
    try:
        obs, _ = big.reset(seed=0)
        with pytest.raises(ValueError, match=r"present\['rgb'\] must be booleans"):
            enc.encode(obs, present={"rgb": [2]})  # a weight would scale the expert's precision
        assert enc.encode(obs, present={"rgb": [True]}).shape == (128,)
    finally:
        big.close()


def test_an_empty_batch_is_named_not_a_reshape_error():
    import numpy as np

    import mmrep
    from mmrep.encoder import ObservationShapeError
    from sim.rl_env import make_rl_env

    enc = mmrep.load_encoder("benchmarks/results/insertion/encoders/insertion.pt")
    env = make_rl_env({})
    try:
        obs, _ = env.reset(seed=0)
    finally:
        env.close()
    with pytest.raises(ObservationShapeError, match="an empty batch"):
        enc.encode({k: np.zeros((0, *v.shape), v.dtype) for k, v in obs.items()})
