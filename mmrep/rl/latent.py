"""The frozen encoder as an observation: env observation dicts in, z (plus chosen raw entries) out.

``LatentObservation`` wraps one Gymnasium env; ``LatentVectorObservation`` wraps a Gymnasium vector
env and encodes every sub-environment's observation in one batch in the main process (torch is never
loaded in the workers; the SB3 equivalent is ``mmrep.rl.sb3.VecLatentObservation``). Both put
perturbation wrappers (``sim.wrappers.PerturbObservation``) before them: what is perturbed is the
observation the encoder sees.

The observation becomes a ``Box`` (D,) float32, D = z_dim + the sizes of ``extra_keys``:
``[z, obs[extra_keys[0]].ravel(), ...]``; z is the posterior mean (``Encoder.encode``), unbounded.
With ``camera_memory=True`` (``LatentObservation`` and the SB3 wrapper) z fuses the camera experts of
the last step the camera looked clean while it looks corrupted (``mmrep.camera_memory``), reset at
each episode's start; with ``camera_odometry=True`` as well, z is followed by the memory's odometry
(4 values: whether the camera experts are held, and the tip's displacement in m since the held view),
before the extra keys: ``[z, odometry, obs[extra_keys[0]].ravel(), ...]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

from mmrep.camera_memory import CameraMemory
from mmrep.encoder import Encoder, Transfer, load_encoder


class LatentCodec:
    """Turns (batched) observation dicts into (B, D) float32 latents with a frozen ``Encoder``.

    ``encoder``: an ``Encoder`` or the path of an ``encoder.pt``; ``extra_keys``: raw observation
    entries appended after z (e.g. ``("proprio",)``: the env's PROPRIO13, 13 floats); ``device``:
    where the encoder runs ("cpu", "cuda", "auto"); ``camera_memory``: hold the camera experts while
    the camera looks corrupted (``mmrep.camera_memory``; sample b of a batch is slot b, and the
    wrapper resets a slot when its episode starts: ``reset_memory``); ``jit``: run the encoder as a
    frozen TorchScript trace (``FrozenEncoder``; without camera memory), z bit-identical to eager in the
    tests, about 10-15% less CPU per observation on one thread; ``onnx``: run it under ONNX Runtime
    (``mmrep.formats.encoder_export.OnnxRuntimeEncoder``; CPU, without camera memory), z equal to eager
    torch's to about 1e-6, about half the CPU per observation (``pip install 'mmrep[deploy]'``);
    ``reject_flagged``: leave out of each step's product the experts the encoder's reliability thresholds
    flag (``Encoder.encode(reject=True)``; with camera memory the camera's are held instead, or used as
    they are while nothing is held, the other senses' left out: ``CameraMemory(reject=True)``); torch's
    encoder, not with jit or onnx; ``camera_odometry`` (with camera memory, an env observing
    ``proprio``): z is followed by the memory's odometry (``CameraMemory(odometry=True)``).
    """

    def __init__(self, encoder: Encoder | str | Path, obs_space: spaces.Dict, extra_keys: Sequence[str] = (),
                 device: str = "cpu", camera_memory: bool = False, jit: bool = False, onnx: bool = False,
                 reject_flagged: bool = False, camera_odometry: bool = False) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        enc = load_encoder(encoder, device) if isinstance(encoder, (str, Path)) else encoder.to(device)
        self.encoder = enc.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        if not isinstance(obs_space, spaces.Dict):
            raise TypeError(f"the latent wrappers need a Dict observation space, got {type(obs_space).__name__}")
        missing = [m for m in self.encoder.cfg.modalities if m not in obs_space.spaces]
        if missing:
            raise ValueError(f"the encoder reads {missing}, which the env does not observe (keys "
                             f"{sorted(obs_space.spaces)}; is the camera off, env use_camera=False?)")
        unknown = [k for k in extra_keys if k not in obs_space.spaces]
        if unknown:
            raise ValueError(f"extra_keys {unknown} are not observation keys ({sorted(obs_space.spaces)})")
        if camera_odometry and not camera_memory:
            raise ValueError("camera_odometry is the camera memory's: it needs camera_memory=True")
        if camera_odometry and "proprio" not in obs_space.spaces:
            raise ValueError(f"camera_odometry reads the tip position from 'proprio', which the env does not "
                             f"observe (keys {sorted(obs_space.spaces)})")
        self.extra_keys = tuple(extra_keys)
        self.extra_sizes = [int(np.prod(obs_space[k].shape)) for k in self.extra_keys]
        self.odometry = camera_odometry
        self.dim = (self.encoder.z_dim + (CameraMemory.ODOMETRY_DIM if camera_odometry else 0)
                    + sum(self.extra_sizes))
        self.space = spaces.Box(-np.inf, np.inf, (self.dim,), np.float32)
        self.memory = (CameraMemory(self.encoder, reject=reject_flagged, odometry=camera_odometry)
                       if camera_memory else None)
        self.reject = reject_flagged
        if reject_flagged:
            if jit or onnx:
                raise ValueError("reject_flagged needs torch's encoder (the reliability flags): not with jit or onnx")
            self.encoder.require_reliability()  # raises, naming the fix, when the encoder has no thresholds
        self.transfer = PinnedTransfer(device)
        self.frozen = FrozenEncoder(self.encoder, self.transfer) if jit and self.memory is None else None
        self.onnx = None
        if onnx:
            if self.memory is not None or torch.device(device).type != "cpu":
                raise ValueError("onnx runs the encoder on the CPU without camera memory")
            from mmrep.formats.encoder_export import OnnxRuntimeEncoder

            force = obs_space.spaces.get("force")
            self.onnx = OnnxRuntimeEncoder(self.encoder, int(force.shape[0]) if force is not None else 50,
                                           threads=torch.get_num_threads())

    def reset_memory(self, slots: Sequence[int] | None = None) -> None:
        """A new episode starts in ``slots`` (all when None): forget their held camera experts."""
        if self.memory is not None:
            self.memory.reset(slots)

    def encode(self, obs: dict[str, np.ndarray], slots: Sequence[int] | None = None,
               update_memory: bool = True) -> np.ndarray:
        """(B, D) float32 from a batched observation dict (every value with a leading batch axis);
        with camera memory, sample b is in slot ``slots[b]`` (b when None), and ``update_memory=False``
        leaves the memory as it is (a terminal observation)."""
        inputs = {m: obs[m] for m in self.encoder.cfg.modalities}
        if self.memory is not None:
            tip = np.asarray(obs["proprio"])[:, :3] if self.odometry else None  # PROPRIO13: x, y, z first (m)
            z = self.memory.encode(inputs, slots, update=update_memory, tip=tip).float().cpu().numpy()
        elif self.onnx is not None:
            z = self.onnx(inputs)
        elif self.frozen is not None:
            z = self.frozen(inputs).float().cpu().numpy()
        else:
            z = self.encoder.encode(inputs, reject=self.reject, transfer=self.transfer).float().cpu().numpy()
        parts = ([z] + ([self.memory.last_odometry] if self.odometry else [])
                 + [np.asarray(obs[k], dtype=np.float32).reshape(z.shape[0], -1) for k in self.extra_keys])
        out = np.concatenate(parts, axis=1) if len(parts) > 1 else z
        if not np.isfinite(out).all():  # cheap on (B, D); a NaN met later is PPO's unnamed "invalid values"
            raise ValueError(non_finite_message(obs, z, self.encoder.cfg.modalities, self.extra_keys))
        return out

    def encode_one(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """(D,) float32 from a single observation dict."""
        return self.encode({k: np.asarray(v)[None] for k, v in obs.items()})[0]


def non_finite_message(obs: dict[str, np.ndarray], z: np.ndarray, modalities: Sequence[str],
                       extra_keys: Sequence[str]) -> str:
    """Which observation entries were not finite where a latent was: the inputs the encoder read, the
    raw entries appended after z, or z itself from finite inputs, per sample of the batch."""
    def bad_samples(a) -> list[int]:
        a = np.asarray(a, dtype=np.float64)
        return np.flatnonzero(~np.isfinite(a.reshape(a.shape[0], -1)).all(1)).tolist()

    inputs = {m: bad_samples(obs[m]) for m in modalities}
    extras = {k: bad_samples(obs[k]) for k in extra_keys}
    named = {k: v for k, v in {**inputs, **extras}.items() if v}
    if named:
        where = "; ".join(f"observation '{k}' in samples {v}" for k, v in named.items())
        return f"non-finite values (NaN or inf) in the observation: {where}"
    return (f"the frozen encoder returned a non-finite z (samples {bad_samples(z)}) from finite inputs "
            f"({', '.join(modalities)})")


class PinnedTransfer:
    """Host-to-device copies of the encoder's inputs through pinned (page-locked) buffers reused from
    step to step, so the copy is asynchronous and nothing is allocated per step (``Encoder.model_inputs``'s
    ``transfer``). On the CPU the tensors stay where they are; on a device without CUDA's pinned memory
    (or a CPU-only torch) a plain ``.to(device)``. The caller reads z back (``.cpu()``), which waits for
    the copies, so a buffer is never overwritten while its copy is in flight."""

    def __init__(self, device: str | torch.device) -> None:
        self.device = torch.device(device)
        self.pinned = self.device.type == "cuda" and torch.cuda.is_available()
        self.buffers: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, t: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            return t
        if not self.pinned:
            return t.to(self.device)
        buf = self.buffers.get(name)
        if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
            buf = self.buffers[name] = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        buf.copy_(t)
        return buf.to(self.device, non_blocking=True)


class FrozenEncoder:
    """An ``Encoder``'s z of a batched observation dict (every modality of it), through
    ``torch.jit.trace`` + ``torch.jit.freeze`` of its forward: the same kernels without the Python
    module overhead, which dominates at batch 1 on a CPU. One trace per input signature (shapes and
    dtypes), so a batch of another size or an env with fewer F/T readings gets its own."""

    def __init__(self, encoder: Encoder, transfer: Transfer | None = None) -> None:
        self.encoder, self.transfer = encoder, transfer
        self.modalities = list(encoder.cfg.modalities)
        self._traces: dict[tuple, torch.jit.ScriptModule] = {}

    def __call__(self, obs: dict[str, np.ndarray]) -> torch.Tensor:
        """(B, z_dim) posterior means, as ``Encoder.encode`` of the same batch."""
        inputs, single = self.encoder.model_inputs(obs, self.transfer)
        if single:
            raise ValueError("FrozenEncoder needs a batched observation dict (a leading batch axis)")
        args = tuple(inputs[m] for m in self.modalities)
        key = tuple((tuple(a.shape), a.dtype) for a in args)
        with torch.no_grad():
            fn = self._traces.get(key)
            if fn is None:
                with warnings.catch_warnings():  # TorchScript is deprecated in favour of torch.compile, which
                    warnings.simplefilter("ignore", DeprecationWarning)  # was slower here (docs/results/speed.md)
                    # shape-dependent branches (fewer F/T readings than the window) are baked in: hence
                    # one trace per input signature
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    traced = torch.jit.trace(_Positional(self.encoder, self.modalities).eval(), args,
                                             check_trace=False)
                    fn = torch.jit.freeze(traced)
                self._traces[key] = fn
            return fn(*args)


class _Positional(torch.nn.Module):
    """The encoder's forward with one positional tensor per modality (what ``torch.jit.trace`` takes)."""

    def __init__(self, encoder: Encoder, modalities: list[str]) -> None:
        super().__init__()
        self.encoder, self.modalities = encoder, modalities

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.encoder(dict(zip(self.modalities, tensors)), self.modalities)


class LatentObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """A Gymnasium env whose observation is the frozen encoder's latent (see the module doc)."""

    def __init__(self, env: gym.Env, encoder: Encoder | str | Path, extra_keys: Sequence[str] = (),
                 device: str = "cpu", camera_memory: bool = False, jit: bool = False, onnx: bool = False,
                 reject_flagged: bool = False, camera_odometry: bool = False) -> None:
        # recorded so that gym.make can rebuild the wrapped env from its spec (env checkers do)
        gym.utils.RecordConstructorArgs.__init__(self, encoder=encoder, extra_keys=tuple(extra_keys), device=device,
                                                 camera_memory=camera_memory, jit=jit, onnx=onnx,
                                                 reject_flagged=reject_flagged, camera_odometry=camera_odometry)
        gym.ObservationWrapper.__init__(self, env)
        self.codec = LatentCodec(encoder, env.observation_space, extra_keys, device, camera_memory, jit, onnx,
                                 reject_flagged, camera_odometry)
        self.observation_space = self.codec.space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.codec.reset_memory()
        return super().reset(seed=seed, options=options)

    def observation(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        return self.codec.encode_one(observation)


class LatentVectorObservation(gym.vector.VectorObservationWrapper):
    """A Gymnasium vector env whose observations are latents, encoded in one batch per step."""

    def __init__(self, env: gym.vector.VectorEnv, encoder: Encoder | str | Path, extra_keys: Sequence[str] = (),
                 device: str = "cpu") -> None:
        super().__init__(env)
        self.codec = LatentCodec(encoder, env.single_observation_space, extra_keys, device)
        self.single_observation_space = self.codec.space
        self.observation_space = batch_space(self.codec.space, env.num_envs)

    def observations(self, observations: dict[str, Any]) -> np.ndarray:
        return self.codec.encode(observations)
