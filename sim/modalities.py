"""The modality registry, torch-free half: one entry per sensor modality, defined once.

An entry (``Modality``) says what a modality is to every part of the house:

    key          the observation key (``rgb``), also the model input's key and the perturbations' prefix
    camera       whether it comes from the camera (absent with ``use_camera=False``; occluded by the
                 occluder; the image experts; camera memory keeps it)
    shape        the env observation's shape (one sample) for an image side S and n F/T readings;
                 ``None`` in a place means "any size" (the number of F/T readings per step)
    dtype        the dtype the env observation must have (``None``: anything numeric)
    space        the env's ``gymnasium`` Box for it
    to_model     THE conversion from the env's observation to the model's input: numpy or torch,
                 one sample or any leading batch axes (HWC images to CHW, PROPRIO13 to PROPRIO8, ...)
    perturbations the names of ``sim.perturb`` that apply to it: ``sim.perturb.perturbations_for(key)``
                 (the perturbation library reads this registry, not the other way round)

The torch half (the encoder network each modality gets) is ``mmrep.modalities``. A new modality is
one ``register_modality(Modality(...))`` here plus one ``register_encoder_builder`` there
(``docs/extending.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from sim.config import FAR_PLANE as FAR
from sim.observation import PROPRIO8_DIM, PROPRIO13_DIM, ObservationShapeError, check_shape, proprio8_from_proprio13

FORCE_LIMIT = 1e4  # N or N m; readings are clipped to this so the observation space is finite
PROPRIO_LIMIT = 10.0  # m, m/s, rad/s: far beyond the workspace and the runaway speed; values are clipped


def channels_first(x: Any) -> Any:
    """(..., H, W, C) -> (..., C, H, W), contiguous; numpy arrays stay numpy, torch tensors torch."""
    if hasattr(x, "movedim"):  # a torch tensor (sim never imports torch)
        return x.movedim(-1, -3).contiguous()
    return np.ascontiguousarray(np.moveaxis(np.asarray(x), -1, -3))


def as_float32(x: Any) -> Any:
    """``x`` as float32, numpy or torch as given."""
    if hasattr(x, "movedim"):
        return x.float()
    return np.asarray(x, dtype=np.float32)


def _rgb_to_model(x: Any) -> Any:
    return channels_first(x)  # uint8 stays uint8: the image encoder scales by 1/255 itself


def _depth_to_model(x: Any) -> Any:
    return as_float32(channels_first(x))


def _proprio_to_model(x: Any) -> Any:
    """PROPRIO13 (the env's) -> PROPRIO8 (the model's); PROPRIO8 (the datasets' ``proprio8``) as is."""
    if x.shape[-1] == PROPRIO8_DIM:
        return as_float32(x)
    if hasattr(x, "movedim"):  # the yaw of a quaternion is defined once, in numpy; no gradient needed
        import torch  # only reached with a torch input, so torch is there

        return torch.from_numpy(proprio8_from_proprio13(x.detach().cpu().numpy())).to(x.device)
    return proprio8_from_proprio13(x)


@dataclass(frozen=True)
class Modality:
    """One sensor modality (see the module doc). ``shape(image_size, n_readings)`` -> shape of one
    observation; ``space(image_size, n_readings)`` -> its Box; ``to_model(x)`` -> the model input."""

    key: str
    camera: bool
    shape: Callable[[int, int], tuple[int | None, ...]]
    to_model: Callable[[Any], Any]
    space: Callable[[int, int], spaces.Box]
    dtype: str | None = None
    doc: str = ""
    # a plug-in's: how the env observes it (``observe(env) -> (*shape,)`` array, for
    # ``EnvConfig.extra_observations``), and the arrays under ``obs/`` of a native dataset whose rows,
    # concatenated on the last axis, are its rows (``mmrep.data`` reads them)
    observe: Callable[[Any], np.ndarray] | None = None
    recorded: tuple[str, ...] = ()

    @property
    def dataset_arrays(self) -> tuple[str, ...]:
        """The arrays under ``obs/`` of a native dataset that hold this modality: ``recorded``, or,
        for a plug-in the env observes (``observe``), its own ``obs/<key>``, which ``mmrep collect``
        writes when the key is in ``env.extra_observations``; empty for a built-in modality."""
        if self.recorded:
            return self.recorded
        return (self.key,) if self.observe is not None else ()

    @property
    def rank(self) -> int:
        """Number of axes of one observation (without a batch axis)."""
        return len(self.shape(1, 1))

    def check(self, x: Any, image_size: int, batched: bool | None = None) -> bool:
        """Check an env observation's shape (and dtype); return whether it carries a batch axis.
        Raises ``ObservationShapeError`` naming the key and the expected shape."""
        shape = tuple(np.shape(x))
        want = self.shape(image_size, 0)
        if None in want:  # a free axis (F/T readings): match the rest, any size >= 1 there
            rank = len(want)
            is_batched = len(shape) == rank + 1
            ok = len(shape) in (rank, rank + 1) and all(
                w is None and s >= 1 or w == s for w, s in zip(want, shape[-rank:]))
            if not ok or (batched is not None and batched != is_batched):
                form = tuple("n" if w is None else w for w in want)
                raise ObservationShapeError(f"{self.key!r} must be {form} or (B, *{form}), got {shape}"
                                            .replace("'n'", "n"))
        else:
            is_batched = check_shape(self.key, x, want, batched)
        if self.dtype is not None and np.asarray(x).dtype != np.dtype(self.dtype):
            raise ObservationShapeError(f"{self.key!r} must be {self.dtype}, got {x.dtype}")
        return is_batched


MODALITY_REGISTRY: dict[str, Modality] = {}
"""Every modality by key, in registration order (the order of the model's experts)."""


def register_modality(modality: Modality, replace: bool = False) -> Modality:
    """Add ``modality`` to the registry; a key already there raises ``ValueError`` unless ``replace``."""
    if modality.key in MODALITY_REGISTRY and not replace:
        raise ValueError(f"modality {modality.key!r} is already registered")
    MODALITY_REGISTRY[modality.key] = modality
    return modality


def modality(key: str) -> Modality:
    """The registered modality ``key``; an unknown key raises ``ValueError`` listing the known ones."""
    try:
        return MODALITY_REGISTRY[key]
    except KeyError:
        raise ValueError(f"unknown modality {key!r}; registered: {list(MODALITY_REGISTRY)}") from None


def camera_modalities(keys: Any = None) -> tuple[str, ...]:
    """The camera modalities among ``keys`` (default: every registered one), in registry order."""
    keys = MODALITY_REGISTRY if keys is None else set(keys)
    return tuple(k for k, m in MODALITY_REGISTRY.items() if m.camera and k in keys)


def import_plugins(modules: Any) -> None:
    """Import each named module (``EnvConfig.plugins``, ``ModelConfig.plugins``): importing registers
    its tasks, modalities and encoder builders. A module that cannot be imported raises ``ValueError``."""
    import importlib

    for name in modules or ():
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ValueError(f"plugins: cannot import {name!r} ({err}); is it on PYTHONPATH?") from err


def to_model_inputs(obs: dict[str, Any], keys: Any = None) -> dict[str, Any]:
    """``{key: to_model(obs[key])}`` for the registered modalities in ``obs`` (or in ``keys``)."""
    keys = [k for k in MODALITY_REGISTRY if k in obs] if keys is None else keys
    return {k: modality(k).to_model(obs[k]) for k in keys}


register_modality(Modality(
    "rgb", True, lambda s, n: (s, s, 3), _rgb_to_model, lambda s, n: spaces.Box(0, 255, (s, s, 3), np.uint8),
    dtype="uint8", doc="fixed camera colour image, uint8 HWC; model: (3, S, S) uint8"))
register_modality(Modality(
    "depth", True, lambda s, n: (s, s, 1), _depth_to_model, lambda s, n: spaces.Box(0.0, FAR, (s, s, 1), np.float32),
    doc="metres along the optical axis, (S, S, 1); model: (1, S, S) float32"))
register_modality(Modality(
    "force", False, lambda s, n: (n or None, 6), as_float32,
    lambda s, n: spaces.Box(-FORCE_LIMIT, FORCE_LIMIT, (n, 6), np.float32),
    doc="wrist F/T readings of the last control step, (n, 6) N / N m, sensor frame"))
register_modality(Modality(
    "proprio", False, lambda s, n: (PROPRIO13_DIM,), _proprio_to_model,
    lambda s, n: spaces.Box(-PROPRIO_LIMIT, PROPRIO_LIMIT, (PROPRIO13_DIM,), np.float32),
    doc="PROPRIO13 (sim.observation); model: PROPRIO8"))

MODALITIES: tuple[str, ...] = tuple(MODALITY_REGISTRY)
"""The built-in modalities (a snapshot; ``MODALITY_REGISTRY`` also holds the ones registered later)."""
CAMERA: tuple[str, ...] = camera_modalities()
"""The built-in camera modalities, ("rgb", "depth")."""
