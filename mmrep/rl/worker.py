"""Encoding inside the env workers: each worker of a vectorised env holds its own copy of the frozen
encoder and returns z, so images never cross the pipe and the encoders of all sub-envs run in
parallel, one per worker (``obs.encode_in=workers`` of ``mmrep policy train``).

On a CPU-only machine whose cores all step envs, encoding in the main process serialises every
sub-env's encoder behind the env step; in the workers it overlaps with the other workers' physics and
rendering. With a GPU, encoding all sub-envs in one batch in the main process (``encode_in=main``,
``mmrep.rl.sb3.VecLatentObservation``) is the right choice.

z is then encoded one observation at a time: it equals the main process's batched z to about 1e-6
(convolutions are not batch-invariant bit for bit); the env's own observations, rewards and episode
ends are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import torch

from mmrep.encoder import load_encoder, random_like
from mmrep.rl.latent import LatentObservation
from sim.rl_env import make_rl_env
from sim.wrappers import FINE_SCALE


def make_latent_policy_env(env: dict[str, Any] | None, perturbations: Sequence[str], perturb_seed: int,
                           render_mode: str | None, encoder: str, extra_keys: Sequence[str] = (),
                           camera_memory: bool = False, random_init_seed: int | None = None,
                           threads: int = 1, fine_scale: float = FINE_SCALE, jit: bool = False,
                           onnx: bool = False, proprio8: bool = False, reject_flagged: bool = False,
                           command: bool = False, camera_odometry: bool = False, ft_tare: bool = False,
                           expert: str | None = None) -> gym.Env:
    """A picklable factory (``functools.partial`` of it) for one ``SubprocVecEnv`` worker:
    ``sim.rl_env.make_rl_env`` wrapped in ``LatentObservation`` with the encoder loaded from
    ``encoder`` (a path: weights are read in the worker, never pickled) on the CPU; with
    ``random_init_seed`` its architecture with fresh weights (``mmrep.encoder.random_like``).

    ``threads``: torch threads of the worker (1: the workers already use every core; more threads
    would oversubscribe them); ``jit``: the frozen TorchScript encoder (``mmrep.rl.latent.FrozenEncoder``);
    ``onnx``: the encoder under ONNX Runtime (``mmrep.rl.latent.LatentCodec``); ``proprio8``: as
    ``make_rl_env`` (the ``proprio8`` entry for ``extra_keys``), and ``command`` (the ``command`` entry);
    ``ft_tare`` and ``expert``: as ``make_rl_env``; ``reject_flagged`` and ``camera_odometry``: as ``LatentCodec``.
    Observation: ``Box`` (z_dim + extras,) float32, as ``LatentCodec``.
    """
    torch.set_num_threads(threads)
    e = make_rl_env(env, perturbations, False, perturb_seed, render_mode, fine_scale, proprio8, command, ft_tare,
                    expert)
    enc = load_encoder(encoder, "cpu")
    if random_init_seed is not None:
        enc = random_like(enc, seed=random_init_seed)
    return LatentObservation(e, enc, extra_keys=tuple(extra_keys), device="cpu", camera_memory=camera_memory,
                             jit=jit, onnx=onnx, reject_flagged=reject_flagged, camera_odometry=camera_odometry)
