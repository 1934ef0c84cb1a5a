"""Perturbations of the sensors: one definition, used by the env wrapper, the training augmentation and
``mmrep evaluate``. numpy only (no torch), seeded, each a function of a level ``p`` in [0, 1].

``perturb(obs, name, p, rng)`` returns a copy of an observation dict with one key perturbed; ``obs``
is the env's dict (``rgb`` (S, S, 3) uint8, ``depth`` (S, S, 1) float32 m, ``force`` (n, 6) float32
N / N m, ``proprio`` (D,) float32) or a batch of them (a leading axis on every key). ``p = 0`` is the
identity for every perturbation (the input comes back unchanged). The names, ``<modality>/<kind>``:

RGB, the MultiBench ten, each applied with probability p (``rgb/multibench`` applies all ten in turn,
each with probability p):
    grayscale       ITU-R 601 luma on all three channels
    low_contrast    pixels pulled halfway to the image mean
    inversion       255 - x
    white_balance   each channel scaled by a gain drawn from U(0.6, 1.4)
    tint            blended 30% with a random colour
    salt_pepper     5% of the pixels set to black or white
    gaussian_noise  additive N(0, p^2) on the [0, 1] scale
    rotation        rotated about the centre by U(-20, 20) degrees, corners filled black
    flip            mirrored left-right
    crop            a window U(80%, 100%) of the side, resized back (bilinear)
RGB and depth occlusion: a square patch covering the fraction p of the image at a random place, filled
with ``zeros`` (black; 0 m, the depth camera's "no reading"), the image's ``mean``, uniform ``noise``
or a random blocky ``texture``: ``rgb/occlusion_zeros`` ... ``depth/occlusion_texture``.
Depth: ``depth/gaussian_noise`` (N(0, (p x 5 cm)^2)), ``depth/missing`` (the fraction p of the pixels
read 0 m, in blobs).
F/T, per channel c with the sensor statistics' standard deviation s_c (``SensorStats``):
    gaussian_noise     N(0, (p s_c)^2) on every reading
    element_dropout    each value zeroed with probability p
    timestep_dropout   each reading (all six channels) zeroed with probability p
    bias               a constant offset of p x 3 s_c with a random sign per channel
    drift              an offset growing at p x s_c per second of the episode, in a random direction
    saturation         readings clipped to +- 4 s_c / p
    dead               with probability p, every reading is 0 (a dead sensor)
    taps               with probability p, one tap: a 3-reading spike of 10 s_c, random signs
Proprioception: ``proprio/gaussian_noise`` (N(0, (p s_i)^2) per element), ``proprio/element_dropout``.

Draws that model a fault of the episode rather than of a moment (bias signs, drift direction, whether
the sensor is dead) come from ``episode_rng`` when one is given (the env wrapper passes a generator
re-seeded identically at every step of an episode), from ``rng`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from sim.detmath import norm
from sim.modalities import MODALITIES, modality  # noqa: F401  (MODALITIES re-exported)

LEVELS = tuple(round(0.1 * i, 1) for i in range(10))
"""The MultiBench grid of levels p: 0.0, 0.1, ..., 0.9."""

DEPTH_NOISE_M = 0.05  # m, depth noise sigma at p = 1
FT_BIAS_STD = 3.0  # bias at p = 1, in standard deviations
FT_DRIFT_STD_PER_S = 1.0  # drift rate at p = 1, standard deviations per second
FT_SATURATION_STD = 4.0  # clip level at p = 1, in standard deviations (4 s / p below)
FT_TAP_STD = 10.0  # tap height, standard deviations
FT_TAP_READINGS = 3  # readings a tap lasts (3 ms at 1 kHz)


@dataclass(frozen=True)
class SensorStats:
    """Per-channel standard deviations that scale the sensor perturbations.

    force_std: (6,) N and N m. proprio_std: (D,) in the proprioception's units: the env's PROPRIO13
    or the model's PROPRIO8 (``proprio8_std`` serves 8-D inputs when ``proprio_std`` has 13 values).
    The defaults were measured over a 1200-episode collection of the default mixture
    (``benchmarks/sensor_stats.py data/quality``, ``benchmarks/results/sensor_stats.json``);
    ``from_arrays`` measures them on other data.
    """

    force_std: tuple[float, ...] = (1.175, 1.1004, 5.143, 0.0579, 0.0628, 0.0128)
    proprio_std: tuple[float, ...] = (0.03924, 0.03831, 0.04562, 5e-05, 1e-05, 0.00197, 0.00303,
                                      0.04035, 0.03949, 0.06347, 0.08496, 0.10113, 0.00443)

    proprio8_std: tuple[float, ...] = (0.03924, 0.03831, 0.04562, 0.00011, 0.04035, 0.03949, 0.06347, 0.00443)

    @classmethod
    def from_arrays(cls, force: np.ndarray, proprio: np.ndarray) -> SensorStats:
        """Statistics of ``force`` (..., 6) and ``proprio`` (..., D); tiny deviations are floored."""
        f = np.asarray(force, dtype=np.float64).reshape(-1, 6).std(axis=0)
        q = np.asarray(proprio, dtype=np.float64)
        q = q.reshape(-1, q.shape[-1]).std(axis=0)
        q = tuple(float(v) for v in np.maximum(q, 1e-6))
        return cls(tuple(float(v) for v in np.maximum(f, 1e-6)), q, q if len(q) == 8 else cls.proprio8_std)

    def std_for(self, key: str, size: int) -> np.ndarray:
        """The (size,) standard deviations of ``key`` ("force" or "proprio")."""
        std = np.asarray(self.force_std if key == "force" else self.proprio_std, dtype=np.float64)
        if key == "proprio" and size == len(self.proprio8_std) and std.shape != (size,):
            std = np.asarray(self.proprio8_std, dtype=np.float64)
        if std.shape != (size,):
            raise ValueError(f"SensorStats.{key}_std has {std.size} values but the {key!r} observation has "
                             f"{size} channels; measure them with SensorStats.from_arrays")
        return std


@dataclass
class Context:
    """What a perturbation may need besides the array: generators, statistics, time.

    rng: per-call randomness. episode_rng: draws constant over an episode (defaults to ``rng``).
    stats: ``SensorStats``. time_s: seconds since the episode began at the observation's first
    F/T reading (drift). reading_dt: seconds between F/T readings (1 / physics_hz).
    """

    rng: np.random.Generator
    stats: SensorStats = field(default_factory=SensorStats)
    episode_rng: np.random.Generator | None = None
    time_s: float = 0.0
    reading_dt: float = 1e-3

    @property
    def fault_rng(self) -> np.random.Generator:
        return self.episode_rng if self.episode_rng is not None else self.rng


Fn = Callable[[np.ndarray, float, Context], np.ndarray]


@dataclass(frozen=True)
class Perturbation:
    """One perturbation of one observation key: ``fn(x, p, ctx)`` on a single (unbatched) array."""

    name: str
    key: str
    fn: Fn
    doc: str

    def __call__(self, x: np.ndarray, p: float, ctx: Context) -> np.ndarray:
        return self.fn(x, p, ctx)


# ------------------------------------------------------------------------------------------ helpers
def _to_unit(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _bilinear(img: np.ndarray, ys: np.ndarray, xs: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Sample ``img`` (H, W, C) at float pixel coordinates (H, W); outside the image: ``fill``."""
    h, w = img.shape[:2]
    inside = (ys >= -0.5) & (ys <= h - 0.5) & (xs >= -0.5) & (xs <= w - 0.5)
    y = np.clip(ys, 0, h - 1)
    x = np.clip(xs, 0, w - 1)
    y0 = np.floor(y).astype(int)
    x0 = np.floor(x).astype(int)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = (y - y0)[..., None]
    wx = (x - x0)[..., None]
    out = (img[y0, x0] * (1 - wy) * (1 - wx) + img[y0, x1] * (1 - wy) * wx
           + img[y1, x0] * wy * (1 - wx) + img[y1, x1] * wy * wx)
    return np.where(inside[..., None], out, fill)


def _rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    a = math.radians(degrees)
    # inverse map: the output pixel (y, x) reads the input rotated back by -a
    ys = cy + (yy - cy) * math.cos(a) - (xx - cx) * math.sin(a)
    xs = cx + (yy - cy) * math.sin(a) + (xx - cx) * math.cos(a)
    return _bilinear(img, ys, xs)


def _crop_resize(img: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    ch, cw = max(1.0, h * frac), max(1.0, w * frac)
    y0 = rng.uniform(0, h - ch)
    x0 = rng.uniform(0, w - cw)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ys = y0 - 0.5 + (yy + 0.5) * ch / h
    xs = x0 - 0.5 + (xx + 0.5) * cw / w
    return _bilinear(img, ys, xs)


def patch_box(shape: tuple[int, int], fraction: float, rng: np.random.Generator) -> tuple[int, int, int]:
    """(top, left, side) of a square covering ``fraction`` of an (H, W) image, placed uniformly."""
    h, w = shape
    side = int(round(math.sqrt(fraction * h * w)))
    side = min(side, h, w)
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    return top, left, side


def _fill(kind: str, patch_shape: tuple[int, ...], img: np.ndarray, rng: np.random.Generator,
          low: float, high: float) -> np.ndarray:
    if kind == "zeros":
        return np.zeros(patch_shape)
    if kind == "mean":
        return np.broadcast_to(img.reshape(-1, img.shape[-1]).mean(axis=0), patch_shape)
    if kind == "noise":
        return rng.uniform(low, high, size=patch_shape)
    # texture: random colour blocks of 1/8 of the patch side, nearest-neighbour upsampled
    side, c = patch_shape[0], patch_shape[-1]
    cells = max(2, side // 8)
    coarse = rng.uniform(low, high, size=(cells, cells, c))
    idx = np.arange(side) * cells // max(side, 1)
    return coarse[idx][:, idx]


def _occlude(fill: str, depth: bool) -> Fn:
    def fn(x: np.ndarray, p: float, ctx: Context) -> np.ndarray:
        if p <= 0:
            return x
        img = _to_unit(x) if not depth else x.astype(np.float32)
        top, left, side = patch_box(img.shape[:2], p, ctx.rng)
        out = img.copy()
        if side > 0:
            low, high = (0.0, 1.0) if not depth else (float(img.min()), float(img.max()))
            out[top:top + side, left:left + side] = _fill(fill, (side, side, img.shape[-1]), img, ctx.rng, low, high)
        return _to_uint8(out) if not depth else out.astype(np.float32)
    return fn


# ------------------------------------------------------------------------------------------ RGB
def _gray(x: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    # Spelled out rather than ``x @ w``: a BLAS product would round differently per CPU (sim.detmath).
    y = x[..., 0] * np.float32(0.299) + x[..., 1] * np.float32(0.587) + x[..., 2] * np.float32(0.114)
    return np.repeat(y[..., None], 3, axis=-1)


def _low_contrast(x, rng, p):
    return x.mean() + 0.5 * (x - x.mean())


def _invert(x, rng, p):
    return 1.0 - x


def _white_balance(x, rng, p):
    return x * rng.uniform(0.6, 1.4, size=3).astype(np.float32)


def _tint(x, rng, p):
    return 0.7 * x + 0.3 * rng.uniform(0, 1, size=3).astype(np.float32)


def _salt_pepper(x, rng, p):
    out = x.copy()
    hit = rng.random(x.shape[:2]) < 0.05
    out[hit] = rng.integers(0, 2, size=int(hit.sum()))[:, None].astype(np.float32)
    return out


def _gauss(x, rng, p):
    return x + rng.normal(0.0, p, size=x.shape).astype(np.float32)


def _rotation(x, rng, p):
    return _rotate(x, rng.uniform(-20.0, 20.0))


def _flip(x, rng, p):
    return x[:, ::-1]


def _crop(x, rng, p):
    return _crop_resize(x, rng.uniform(0.8, 1.0), rng)


MULTIBENCH_RGB: dict[str, Callable] = {
    "grayscale": _gray, "low_contrast": _low_contrast, "inversion": _invert, "white_balance": _white_balance,
    "tint": _tint, "salt_pepper": _salt_pepper, "gaussian_noise": _gauss, "rotation": _rotation,
    "flip": _flip, "crop": _crop,
}


def _with_probability(op: Callable) -> Fn:
    def fn(x: np.ndarray, p: float, ctx: Context) -> np.ndarray:
        if p <= 0 or ctx.rng.random() >= p:
            return x
        return _to_uint8(op(_to_unit(x), ctx.rng, p))
    return fn


def _multibench(x: np.ndarray, p: float, ctx: Context) -> np.ndarray:
    if p <= 0:
        return x
    img, changed = _to_unit(x), False
    for op in MULTIBENCH_RGB.values():
        if ctx.rng.random() < p:
            img, changed = np.clip(op(img, ctx.rng, p), 0.0, 1.0), True
    return _to_uint8(img) if changed else x


# ------------------------------------------------------------------------------------------ depth
def _depth_noise(x, p, ctx):
    if p <= 0:
        return x
    return np.maximum(x + ctx.rng.normal(0.0, p * DEPTH_NOISE_M, size=x.shape), 0.0).astype(np.float32)


def _depth_missing(x, p, ctx):
    """The fraction p of the pixels set to 0 m, in blobs: a smooth random field thresholded at its
    p-quantile (an 8x8 field bilinearly upsampled)."""
    if p <= 0:
        return x
    h, w = x.shape[:2]
    coarse = ctx.rng.random((8, 8, 1))
    ys = (np.arange(h) + 0.5) * 8 / h - 0.5
    xs = (np.arange(w) + 0.5) * 8 / w - 0.5
    field_ = _bilinear(coarse, *np.meshgrid(ys, xs, indexing="ij"))[..., 0]
    field_ = field_ + ctx.rng.random((h, w)) * 1e-6  # break ties so the quantile is exact
    hole = field_ < np.quantile(field_, p)
    out = x.copy()
    out[hole] = 0.0
    return out


# ------------------------------------------------------------------------------------------ F/T, proprio
def _noise(key: str) -> Fn:
    def fn(x, p, ctx):
        if p <= 0:
            return x
        std = ctx.stats.std_for(key, x.shape[-1])
        return (x + ctx.rng.normal(size=x.shape) * (p * std)).astype(np.float32)
    return fn


def _element_dropout(x, p, ctx):
    if p <= 0:
        return x
    return np.where(ctx.rng.random(x.shape) < p, 0.0, x).astype(np.float32)


def _timestep_dropout(x, p, ctx):
    if p <= 0:
        return x
    return np.where(ctx.rng.random(x.shape[:-1] + (1,)) < p, 0.0, x).astype(np.float32)


def _bias(x, p, ctx):
    if p <= 0:
        return x
    std = ctx.stats.std_for("force", 6)
    sign = ctx.fault_rng.choice([-1.0, 1.0], size=6)
    return (x + p * FT_BIAS_STD * std * sign).astype(np.float32)


def _drift(x, p, ctx):
    if p <= 0:
        return x
    std = ctx.stats.std_for("force", 6)
    direction = ctx.fault_rng.normal(size=6)
    direction /= norm(direction)
    t = ctx.time_s + ctx.reading_dt * np.arange(x.shape[0])
    return (x + t[:, None] * (p * FT_DRIFT_STD_PER_S * math.sqrt(6)) * std * direction).astype(np.float32)


def _saturation(x, p, ctx):
    if p <= 0:
        return x
    limit = FT_SATURATION_STD * ctx.stats.std_for("force", 6) / p
    return np.clip(x, -limit, limit).astype(np.float32)


def _dead(x, p, ctx):
    if p <= 0 or ctx.fault_rng.random() >= p:
        return x
    return np.zeros_like(x)


def _taps(x, p, ctx):
    if p <= 0 or ctx.rng.random() >= p:
        return x
    std = ctx.stats.std_for("force", 6)
    n = x.shape[0]
    start = int(ctx.rng.integers(0, max(n - FT_TAP_READINGS, 0) + 1))
    out = x.copy()
    out[start:start + FT_TAP_READINGS] += FT_TAP_STD * std * ctx.rng.choice([-1.0, 1.0], size=6)
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------------ registry
def _register() -> dict[str, Perturbation]:
    table: dict[str, Perturbation] = {}

    def add(name: str, key: str, fn: Fn, doc: str) -> None:
        table[name] = Perturbation(name, key, fn, doc)

    for kind, op in MULTIBENCH_RGB.items():
        add(f"rgb/{kind}", "rgb", _with_probability(op), f"MultiBench {kind}, applied with probability p")
    add("rgb/multibench", "rgb", _multibench, "all ten MultiBench perturbations in turn, each with probability p")
    for fill in ("zeros", "mean", "noise", "texture"):
        add(f"rgb/occlusion_{fill}", "rgb", _occlude(fill, depth=False), f"square patch over fraction p, {fill}")
        add(f"depth/occlusion_{fill}", "depth", _occlude(fill, depth=True), f"square patch over fraction p, {fill}")
    add("depth/gaussian_noise", "depth", _depth_noise, "N(0, (p x 5 cm)^2)")
    add("depth/missing", "depth", _depth_missing, "fraction p of the pixels read 0 m, in blobs")
    add("force/gaussian_noise", "force", _noise("force"), "N(0, (p s_c)^2)")
    add("force/element_dropout", "force", _element_dropout, "each value zeroed with probability p")
    add("force/timestep_dropout", "force", _timestep_dropout, "each reading zeroed with probability p")
    add("force/bias", "force", _bias, "constant offset p x 3 s_c, random signs")
    add("force/drift", "force", _drift, "offset growing at p x s per second")
    add("force/saturation", "force", _saturation, "clipped to +- 4 s_c / p")
    add("force/dead", "force", _dead, "all zeros with probability p")
    add("force/taps", "force", _taps, "a 3-reading spike of 10 s_c with probability p")
    add("proprio/gaussian_noise", "proprio", _noise("proprio"), "N(0, (p s_i)^2)")
    add("proprio/element_dropout", "proprio", _element_dropout, "each value zeroed with probability p")
    return table


PERTURBATIONS: dict[str, Perturbation] = _register()
"""Every perturbation by name (``<modality>/<kind>``)."""


def perturbations_for(key: str) -> list[str]:
    """The names of the perturbations of modality ``key`` (a ``sim.modalities`` key)."""
    return [name for name, pert in PERTURBATIONS.items() if pert.key == key]


def get(name: str) -> Perturbation:
    """The perturbation called ``name``; an unknown name raises ``ValueError`` listing the valid ones."""
    try:
        return PERTURBATIONS[name]
    except KeyError:
        raise ValueError(f"unknown perturbation {name!r}; valid: {sorted(PERTURBATIONS)}") from None


def check_level(p: float, what: str = "p") -> float:
    """``p`` as a float, or ``ValueError`` naming ``what`` when it is outside [0, 1]."""
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {p!r}")
    return p


def perturb(obs: dict[str, np.ndarray], name: str, p: float, rng: np.random.Generator, *,
            stats: SensorStats | None = None, episode_rng: np.random.Generator | None = None,
            time_s: float = 0.0, reading_dt: float = 1e-3, batched: bool | None = None) -> dict[str, np.ndarray]:
    """A shallow copy of ``obs`` with the key of perturbation ``name`` perturbed at level ``p``.

    ``batched`` (default: inferred from the key's rank) treats the leading axis as a batch; every
    sample then gets its own draws. ``obs`` itself is never modified.
    """
    pert = get(name)
    p = check_level(p, f"level of {name}")
    if pert.key not in obs:
        raise KeyError(f"perturbation {name!r} needs observation key {pert.key!r}; got {sorted(obs)}")
    x = np.asarray(obs[pert.key])
    single_rank = modality(pert.key).rank
    if batched is None:
        batched = x.ndim == single_rank + 1
    if x.ndim != single_rank + int(batched):
        raise ValueError(f"{pert.key!r} has shape {x.shape}; expected rank {single_rank} (or {single_rank + 1} "
                         f"batched)")
    ctx = Context(rng, stats or SensorStats(), episode_rng, time_s, reading_dt)
    out = dict(obs)
    if p == 0.0:
        return out
    if batched:
        out[pert.key] = np.stack([pert(xi, p, ctx) for xi in x]) if len(x) else x
    else:
        out[pert.key] = pert(x, p, ctx)
    return out


@dataclass(frozen=True)
class Setting:
    """A perturbation and its level, e.g. ``Setting("rgb/occlusion_mean", 0.5)``; parsed from
    ``"rgb/occlusion_mean:0.5"`` by ``Setting.parse``. ``episodes``: the share of env episodes it is
    drawn into (``sim.wrappers.PerturbObservation``, once per episode; ``"force/dead:1@0.25"``: a dead
    F/T sensor in a quarter of the episodes), 1 for every episode; datasets and ``apply_all`` apply it
    to every sample."""

    name: str
    p: float
    episodes: float = 1.0

    def __post_init__(self) -> None:
        get(self.name)
        check_level(self.p, f"level of {self.name}")
        if not 0.0 < self.episodes <= 1.0:
            raise ValueError(f"the share of episodes of {self.name} must lie in (0, 1], got {self.episodes!r}")

    @classmethod
    def parse(cls, text: str) -> Setting:
        """``"name"``, ``"name:level"`` or ``"name:level@share"`` (share of episodes)."""
        body, at, share = str(text).partition("@")
        name, _, level = body.partition(":")
        try:
            if at and not share.strip():
                raise ValueError("nothing after '@' (the share of episodes, e.g. @0.25)")
            return cls(name.strip(), float(level) if level else 1.0, float(share) if at else 1.0)
        except ValueError as err:
            raise ValueError(f"bad perturbation setting {text!r}: {err}") from None


def apply_all(obs: dict[str, np.ndarray], settings: Iterable[Setting], rng: np.random.Generator,
              **kwargs) -> dict[str, np.ndarray]:
    """Apply ``settings`` in order (each ``perturb``); keyword arguments go to ``perturb``."""
    for s in settings:
        obs = perturb(obs, s.name, s.p, rng, **kwargs)
    return obs
