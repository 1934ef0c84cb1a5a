"""Configs: every option of every group composes and validates; bad values are refused with the field's full
name before anything is written; the apps behave as Hydra apps (--cfg job, --info, -m)."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from mmrep.cli import main
from mmrep.config import (
    EvaluateConfig,
    ModelConfig,
    TrainConfig,
    app_config,
    collect_config,
    compose,
    config_dir,
    group_options,
    train_config,
)
from sim.collect import CollectConfig
from sim.config import EnvConfig
from sim.observation import ObservationShapeError

GROUPS = {"collect": ["env"], "train": ["model", "experiment", "augment"], "evaluate": ["perturb"]}
APP_CONFIG = {"collect": collect_config, "train": train_config,
              "evaluate": lambda overrides: app_config(compose("evaluate", overrides))}


@pytest.mark.parametrize("app, group, option", [(app, g, o) for app, groups in GROUPS.items()
                                                for g in groups for o in group_options(g)])
def test_every_option_of_every_group_composes_and_validates(app, group, option):
    overrides = [f"{group}={option}"] + (["runs=[runs/a]"] if app == "evaluate" else [])
    cfg = APP_CONFIG[app](overrides)
    assert isinstance(cfg, {"collect": CollectConfig, "train": TrainConfig, "evaluate": EvaluateConfig}[app])
    cfg.validate()


def test_groups_are_globbed_from_the_folders():
    folders = sorted(p.name for p in config_dir().iterdir() if p.is_dir())
    # tests/test_policy.py composes every option of these (a latent one needs an encoder file)
    policy_groups = ["algo", "obs", "paper"]
    assert sorted([g for groups in GROUPS.values() for g in groups] + policy_groups) == folders
    assert "no_force" in group_options("model") and "fast" in group_options("env")


def test_yaml_does_not_restate_dataclass_defaults():
    assert train_config([]).model == ModelConfig()
    assert dataclasses.replace(train_config([]), model=ModelConfig()) == TrainConfig()
    assert collect_config([]) == CollectConfig()
    assert compose("collect", ["env=fast"]).env.physics_hz == 240


@pytest.mark.parametrize("app, override, field", [
    ("collect", "env.image_size=7", "env.image_size"), ("collect", "env.physics_hz=13", "env.physics_hz"),
    ("collect", "env.peg_shape=round", "env.peg_shape"), ("collect", "episodes=0", "episodes"),
    ("collect", "env.image_sise=64", "env.image_sise"), ("collect", "env.clearance=wide", "env.clearance"),
    ("collect", "policy_kwargs.random.speed=2", "policy_kwargs.random"),
    ("train", "model.fusion=sum", "model.fusion"), ("train", "epochs=0", "epochs"),
    ("train", "model.image_size=100", "model.image_size"), ("train", "model.alignment_input=z", "alignment_input"),
    ("train", "lr_schedule=step", "lr_schedule"), ("train", "device=tpu", "device"),
    ("train", "model=nonexistent", "model/nonexistent"),
])
def test_bad_value_is_refused_naming_the_field_before_anything_is_written(app, override, field, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([app, override, f"out={out}", "progress=false"]) == 2
    assert field in capsys.readouterr().err
    assert not out.exists()


def test_documented_env_options_are_accepted():
    cfg = collect_config(["env.camera_fov=60", "env.ft_sensor.lowpass_hz=100", "env.randomization.hole_xy_range=0.02"])
    assert cfg.env.camera_fov == 60 and cfg.env.ft_sensor.lowpass_hz == 100


def test_cfg_job_and_info_work(capsys):
    assert main(["train", "--cfg", "job", "model=no_force"]) == 0
    out = capsys.readouterr().out
    assert "force: false" in out and "epochs: 10" in out
    assert main(["collect", "--info"]) == 0
    assert "collect" in capsys.readouterr().out
    assert main(["collect", "--help"]) == 0
    out = capsys.readouterr().out
    assert "episodes: 20" in out and "env: close, default, fast, small" in out


def test_gym_make_with_a_config_or_keyword_arguments():
    cfg = EnvConfig(peg_shape="round", use_camera=False, max_steps=7)
    env = gym.make("mmrep/PegInsertion-v0", config=cfg)
    assert env.unwrapped.cfg.peg_shape == "round" and env.unwrapped.cfg.max_steps == 7
    env.close()
    env = gym.make("mmrep/PegInsertionRound-v0", config=cfg)  # the same shape: fine
    env.close()
    with pytest.raises(ValueError, match="peg_shape='hexagon' but config.peg_shape='round'"):
        gym.make("mmrep/PegInsertionHexagon-v0", config=cfg)
    with pytest.raises(ValueError, match="not both"):
        gym.make("mmrep/PegInsertion-v0", config=cfg, max_steps=3)


def test_encoder_names_a_wrong_input_and_can_leave_a_modality_out():
    from mmrep.encoder import Encoder

    enc = Encoder(ModelConfig(image_size=128)).eval()
    obs = {"rgb": np.zeros((128, 128, 3), np.uint8), "depth": np.ones((128, 128, 1), np.float32),
           "force": np.zeros((50, 6), np.float32), "proprio": np.zeros(13, np.float32)}
    obs["proprio"][6] = 1.0
    assert enc.encode(obs).shape == (128,)
    with pytest.raises(ObservationShapeError, match=r"'rgb' must be \(128, 128, 3\).*got \(64, 64, 3\)"):
        enc.encode({**obs, "rgb": np.zeros((64, 64, 3), np.uint8)})
    with pytest.raises(ObservationShapeError, match=r"'proprio' must be \(13,\)"):
        enc.encode({**obs, "proprio": np.zeros(8, np.float32)})
    without_rgb = enc.encode(obs, modalities=["depth", "force", "proprio"])
    assert without_rgb.shape == (128,) and not torch.allclose(without_rgb, enc.encode(obs))
    concat = Encoder(ModelConfig(image_size=128, fusion="concat", modality_dropout=0.1)).eval()
    with torch.no_grad():
        concat.missing["rgb"].fill_(1.0)  # the learned "missing" vector stands in for the camera
    assert not torch.allclose(concat.encode(obs, modalities=["depth", "force", "proprio"]), concat.encode(obs))


def test_a_network_s_own_arguments_are_given_as_a_dict_on_the_command_line():
    """``model.encoder_kwargs`` holds the user's network's constructor arguments: any keys, as a dict."""
    cfg = compose("train", ["model.encoder_kwargs={channels: 8, depth: 2}"])
    assert dict(cfg.model.encoder_kwargs) == {"channels": 8, "depth": 2}
    assert compose("train", ["+model.encoder_kwargs.channels=4"]).model.encoder_kwargs.channels == 4
