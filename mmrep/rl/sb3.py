"""Stable-Baselines3 integration: a latent ``VecEnvWrapper`` and a ``BaseFeaturesExtractor``.

Two ways to give an SB3 agent the representation:

* ``VecLatentObservation(venv, "runs/x/encoder.pt")``: the frozen encoder turns every
  sub-environment's observation dict into z in one batch, in the main process (the cheap way for a
  frozen encoder: the policy is an ``MlpPolicy`` on z, and the workers of a ``SubprocVecEnv`` never
  load torch).
* ``MultimodalExtractor`` through ``policy_kwargs`` of a ``MultiInputPolicy``: the encoder inside the
  policy, frozen, fine-tuned (``freeze=False``) or randomly initialised (``encoder=None`` with a
  ``model_config``, the baseline of an untrained representation)::

      PPO("MultiInputPolicy", env, policy_kwargs=dict(
          features_extractor_class=MultimodalExtractor,
          features_extractor_kwargs=dict(encoder="runs/x/encoder.pt", freeze=True)))

  SB3 divides uint8 images by 255 (``normalize_images=True``, its default) and transposes a
  channel-last ``rgb`` to channel-first (``VecTransposeImage``); the extractor undoes the first
  (``images_normalized`` must match the policy's ``normalize_images``) and reads either layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from mmrep.encoder import Encoder, load_encoder
from mmrep.models import ModelConfig
from mmrep.models.network import build_network
from mmrep.rl.latent import LatentCodec
from sim.modalities import to_model_inputs


class VecLatentObservation(VecEnvWrapper):
    """An SB3 vectorised env whose observations are the frozen encoder's latents (B, D), encoded in
    one batch per step; ``infos[i]["terminal_observation"]`` (the last observation of an episode that
    ended, used for bootstrapping) is encoded too. D, ``extra_keys`` and ``device``: as
    ``mmrep.rl.latent.LatentCodec`` (and ``jit``, ``onnx``, ``reject_flagged``, ``camera_odometry``); with
    ``camera_memory`` a sub-environment's memory is reset when its episode ends (SB3 vec envs reset it in
    the same step)."""

    def __init__(self, venv: VecEnv, encoder: Encoder | str | Path, extra_keys: Sequence[str] = (),
                 device: str = "cpu", camera_memory: bool = False, jit: bool = False, onnx: bool = False,
                 reject_flagged: bool = False, camera_odometry: bool = False) -> None:
        self.codec = LatentCodec(encoder, venv.observation_space, extra_keys, device, camera_memory, jit, onnx,
                                 reject_flagged, camera_odometry)
        super().__init__(venv, observation_space=self.codec.space)

    def reset(self) -> np.ndarray:
        self.codec.reset_memory()
        return self.codec.encode(self.venv.reset())

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        ended = [i for i, info in enumerate(infos) if "terminal_observation" in info]
        if ended:
            finals = [infos[i]["terminal_observation"] for i in ended]
            batch = {k: np.stack([f[k] for f in finals]) for k in finals[0]}
            # each terminal observation's z with its sub-environment's memory, before that is reset
            rows = self.codec.encode(batch, slots=ended, update_memory=False)
            for i, z in zip(ended, rows):
                infos[i]["terminal_observation"] = z
        self.codec.reset_memory([i for i, d in enumerate(dones) if d])
        return self.codec.encode(obs), rewards, dones, infos


class MultimodalExtractor(BaseFeaturesExtractor):
    """The multimodal encoder as an SB3 features extractor for ``MultiInputPolicy``.

    Features: z (the posterior mean, z_dim) followed by the flattened ``extra_keys`` entries.

    Args:
        observation_space: the env's Dict space (``rgb`` (S, S, 3) or (3, S, S), ``depth`` (S, S, 1),
            ``force`` (n, 6), ``proprio`` (13,) PROPRIO13, as the peg-insertion env observes them).
        encoder: an ``Encoder`` or the path of an ``encoder.pt``; None: a randomly initialised
            encoder of ``model_config`` (a ``ModelConfig`` or its dict).
        freeze: keep the encoder's weights fixed (and in eval mode); False fine-tunes them with the
            policy's optimiser.
        extra_keys: raw observation entries appended after z.
        images_normalized: whether the policy divided uint8 images by 255 (its ``normalize_images``).
    """

    def __init__(self, observation_space: spaces.Dict, encoder: Encoder | str | Path | None = None,
                 model_config: ModelConfig | dict[str, Any] | None = None, freeze: bool = True,
                 extra_keys: Sequence[str] = (), images_normalized: bool = True) -> None:
        if encoder is None:
            cfg = model_config if isinstance(model_config, ModelConfig) else ModelConfig.from_dict(model_config or {})
            if cfg.image_size is None and "rgb" in observation_space.spaces:  # a fresh network: the env's size
                shape = observation_space["rgb"].shape
                cfg.image_size = int(shape[1] if shape[-1] == 3 else shape[-1])
            net: torch.nn.Module = build_network(cfg)  # MultimodalEncoder, or cfg.encoder_target
        else:
            net = load_encoder(encoder) if isinstance(encoder, (str, Path)) else encoder
        cfg = net.cfg
        missing = [m for m in cfg.modalities if m not in observation_space.spaces]
        if missing:
            raise ValueError(f"the encoder reads {missing}, which the observation space lacks "
                             f"(keys {sorted(observation_space.spaces)})")
        unknown = [k for k in extra_keys if k not in observation_space.spaces]
        if unknown:
            raise ValueError(f"extra_keys {unknown} are not in the observation space (keys "
                             f"{sorted(observation_space.spaces)})")
        if "rgb" in cfg.modalities and cfg.image_size is not None:
            shape = observation_space["rgb"].shape  # (H, W, 3), or (3, H, W) once SB3 transposed it
            side = shape[1] if shape[-1] == 3 else shape[-1]
            if side != cfg.image_size:
                raise ValueError(f"the encoder reads {cfg.image_size} px images but the env renders {side} px; "
                                 f"make the env with image_size={cfg.image_size}")
        extra = [int(np.prod(observation_space[k].shape)) for k in extra_keys]
        super().__init__(observation_space, features_dim=cfg.z_dim + sum(extra))
        self.net = net
        self.freeze = freeze
        self.extra_keys = tuple(extra_keys)
        self.images_normalized = images_normalized
        self.rgb_channels_last = "rgb" in observation_space.spaces and observation_space["rgb"].shape[-1] == 3
        if freeze:
            # Frozen by running the encoder without a graph, not by requires_grad=False: TRPO asks
            # autograd for the gradient of every policy parameter, which fails on one that does not
            # require grad; a parameter outside the graph gets None and is left alone by every optimiser.
            self.net.eval()

    def train(self, mode: bool = True) -> MultimodalExtractor:
        super().train(mode)
        if self.freeze:  # a frozen encoder stays in eval mode whatever the policy does
            self.net.eval()
        return self

    def model_inputs(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The encoder's input batch from SB3's preprocessed observations."""
        out: dict[str, torch.Tensor] = {}
        for m in self.net.cfg.modalities:
            x = obs[m].float()
            if m == "rgb":  # undo what SB3 did (VecTransposeImage, /255) to get the env's observation back
                x = x if self.rgb_channels_last else x.permute(0, 2, 3, 1)
                x = x * 255.0 if self.images_normalized else x
            elif m == "depth" and x.shape[-1] != 1:
                x = x.permute(0, 2, 3, 1)
            out[m] = to_model_inputs({m: x})[m]  # the one env-to-model conversion (sim.modalities)
        return out

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            z = self.net(self.model_inputs(observations))
        parts = [z] + [observations[k].float().flatten(1) for k in self.extra_keys]
        return torch.cat(parts, dim=1) if len(parts) > 1 else z
