"""Configuration of the peg-insertion environment: every option, its default, its unit.

All lengths are metres, angles radians, forces newtons, rates hertz. ``EnvConfig.validate`` raises
``ValueError`` naming the offending argument, so a typo in a Hydra config fails loudly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

DEFAULT_TASK = "peg_hole"  # sim.task: the task an env runs unless EnvConfig.task names another

PEG_SHAPES: tuple[str, ...] = ("square", "round", "triangle", "semicircle", "hexagon")
"""Peg cross-sections. ``peg_width`` is twice the inradius (across flats; the diameter when round)."""

OCCLUDER_MODES: tuple[str, ...] = ("off", "static", "after_contact", "moving")
NEAR_PLANE = 0.05  # m, the camera's near clipping plane (sim.camera.NEAR)
FAR_PLANE = 2.0  # m, the camera's far clipping plane (sim.camera.FAR): the depth observation's upper bound

PHYSICS_PRESETS: dict[str, float] = {"accurate": 1000.0, "fast": 240.0}
"""Named physics rates: 1 kHz (50 F/T readings per 20 Hz control step, as in the paper) and 240 Hz."""


@dataclass
class ControllerConfig:
    """Cartesian impedance controller gains (torque mode, run at the physics rate).

    The desired peg-tip position may lead the measured one by at most ``max_contact_force / kp_pos``
    metres, which bounds the steady contact force (force is about stiffness x lead).
    """

    kp_pos: float = 2000.0  # N/m, translational stiffness
    kd_pos: float = 150.0  # N s/m, translational damping
    kp_rot: float = 100.0  # N m/rad, rotational stiffness
    kd_rot: float = 1.5  # N m s/rad, rotational damping (above ~2.5 the 240 Hz preset goes unstable)
    kp_null: float = 10.0  # 1/s^2, nullspace posture stiffness (scaled by the mass-matrix diagonal)
    kd_null: float = 3.0  # 1/s, nullspace posture damping (scaled by the mass-matrix diagonal)
    max_contact_force: float = 30.0  # N, sets the lead bound kp_pos * lead <= this
    model_update_hz: float = 100.0  # Hz, how often Jacobian, mass matrix and bias torques are refreshed
    # m, the lateral lead bound once the tip is in the hole (more than IN_HOLE_DEPTH below the block's
    # top, EnvConfig.box_height, which proprioception knows); None: only max_lead. A lateral command
    # held against the hole's wall then pushes with at most kp_pos x this, as a compliant wrist
    # (remote centre compliance) would, instead of tilting and wedging the peg.
    max_lateral_lead_in_hole: float | None = None
    # m; when set, the lateral (x, y) lead is bounded by this and the vertical one by max_lead, each on
    # its own (a cylinder instead of the ball of radius max_lead), so pressing down at the force cap
    # leaves the whole lateral authority for sliding on the block. None: the ball.
    max_lateral_lead: float | None = None
    # Where an action's displacement (action x EnvConfig.action_scale) starts. "target": the previous
    # step's target, so a held command accumulates (the recorded datasets' semantics; the controller
    # state it builds is hidden from a policy). "tip": the measured tip, as an operational-space
    # controller given a displacement from the current pose; the command then is the whole state of
    # the controller (an action of -1 on z always presses with kp_pos x action_scale, 20 N).
    action_origin: str = "target"
    # m below the block's top (EnvConfig.box_height, which proprioception knows) past which the
    # action's vertical component is replaced by IN_HOLE_PRESS_ACTION: a scripted insertion stage after
    # a learned search, as robot systems often put one (the lateral components stay the policy's).
    # None: the policy's action throughout. The tip can only be that deep inside the hole.
    press_in_hole: float | None = None

    @property
    def max_lead(self) -> float:
        """Largest distance (m) the desired tip position may lead the measured one."""
        return self.max_contact_force / self.kp_pos


ACTION_ORIGINS = ("target", "tip")  # ControllerConfig.action_origin
IN_HOLE_DEPTH = 0.001  # m, below the block's top: where ControllerConfig.max_lateral_lead_in_hole applies
IN_HOLE_PRESS_ACTION = -0.5  # ControllerConfig.press_in_hole's vertical action: 5 mm a step at the default scale


@dataclass
class ForceTorqueConfig:
    """Wrist force/torque sensor model, applied to each physics substep's reading.

    The reading is tared for the peg's weight (a real sensor is zeroed with the tool mounted).
    ``lowpass_hz`` is a first-order low-pass cut-off (None: unfiltered). Noise is white Gaussian.
    """

    lowpass_hz: float | None = None
    force_noise_std: float = 0.05  # N
    torque_noise_std: float = 0.002  # N m
    tare: bool = True
    # Sensor faults, off by default: a constant offset and one growing linearly from the reset.
    bias: tuple[float, ...] = (0.0,) * 6  # N (x3) then N m (x3), added to every reading
    drift: tuple[float, ...] = (0.0,) * 6  # N/s (x3) then N m/s (x3), times the time since reset

    def __post_init__(self) -> None:
        _tuples(self, "bias", "drift")


@dataclass
class OccluderConfig:
    """A thin box between the camera and the workspace that the camera renders (nothing collides
    with it), off by default.

    ``mode``: "off"; "static" (there from the reset); "after_contact" (appears at the first control
    step with contact: the paper's video); "moving" (sweeps left-right across the view). It faces the
    camera at ``distance`` m from it along the optical axis, ``size`` (width, height) m, its centre
    offset by ``offset`` (right, up) m in the image plane plus a uniform draw of +- ``offset_range``
    m on each axis per episode (seeded). It covers about (size / (2 distance tan(fov / 2)))^2 of the
    image: 0.1 m at 0.25 m with the 45 deg camera is about 23%. "moving" sweeps +- ``amplitude`` m
    sideways with period ``period`` s. ``probability``: the share of episodes it appears in at all.
    """

    mode: str = "off"
    size: tuple[float, float] = (0.1, 0.1)  # m, width and height
    distance: float = 0.25  # m from the camera along its optical axis
    offset: tuple[float, float] = (0.0, 0.0)  # m, (right, up) in the image plane
    offset_range: float = 0.0  # m, per-episode uniform jitter of the offset on each axis
    amplitude: float = 0.08  # m, "moving": sideways sweep
    period: float = 2.0  # s, "moving": one full sweep
    color: tuple[float, float, float] = (0.55, 0.35, 0.2)  # RGB in [0, 1]
    # The share of episodes it is in, drawn per episode from the env's generator (only when below 1,
    # so episodes with the default draw nothing more): to train a policy on occluded and clear views.
    probability: float = 1.0

    def __post_init__(self) -> None:
        _tuples(self, "size", "offset", "color")


@dataclass
class PushConfig:
    """External pushes on the peg (below the wrist sensor, which feels them), off by default.

    Pushes arrive at random (a Poisson process of ``rate_hz`` per second, drawn at each control step
    from the env's seeded generator), each a constant force lasting ``duration`` s with impulse
    ``impulse`` N s, horizontal at an azimuth drawn from ``azimuth_range`` deg (world frame, 0 = +x)
    and tilted by an elevation drawn from ``elevation_range`` deg.
    """

    rate_hz: float = 0.0  # pushes per second; 0: off
    impulse: float = 0.5  # N s per push (force = impulse / duration)
    duration: float = 0.02  # s
    azimuth_range: tuple[float, float] = (-180.0, 180.0)  # deg
    elevation_range: tuple[float, float] = (0.0, 0.0)  # deg

    def __post_init__(self) -> None:
        _tuples(self, "azimuth_range", "elevation_range")


@dataclass
class RandomizationConfig:
    """Per-episode randomisation ranges, sampled uniformly from the env's seeded generator."""

    hole_xy_center: tuple[float, float] = (0.6, 0.0)  # m, world frame
    hole_xy_range: float = 0.05  # m, hole centre is centre +- this on x and y
    hole_yaw_range: float = 0.0  # rad, +- this; keep 0 with 3-D actions (they cannot turn the peg)
    start_height: tuple[float, float] = (0.10, 0.16)  # m, initial peg-tip height above the box top
    start_xy_range: float = 0.06  # m, initial tip offset from the nominal hole centre on x and y
    hole_estimate_error: float = 0.002  # m, length of the (randomly directed) error of info["hole_estimate"]
    # m: per episode the camera (eye and target together) moves by this length in a random horizontal
    # direction, an extrinsic calibration error; the images show a scene shifted the same way as a
    # moved block, so the camera alone cannot tell it. 0: the camera stays where camera_target puts it
    camera_target_error: float = 0.0

    def __post_init__(self) -> None:
        _tuples(self, "hole_xy_center", "start_height")


@dataclass
class EnvConfig:
    """Every option of ``PegInsertionEnv`` (the docs' configuration reference is generated from this class)."""

    task: str = "peg_hole"  # what the robot must do: a name of sim.task.TASKS (DEFAULT_TASK)
    plugins: list[str] = field(default_factory=list)  # modules imported first: they register tasks, modalities
    # a registered task's own options (``sim.task.task_options`` reads them into its options dataclass);
    # the peg-in-hole task's are the fields below (clearance, box_height, insertion_depth, randomization)
    task_options: dict[str, Any] = field(default_factory=dict)
    # registered modalities (sim.modalities) observed besides rgb, depth, force, proprio (their ``observe``)
    extra_observations: list[str] = field(default_factory=list)
    peg_shape: str = "square"
    peg_width: float = 0.03  # m, twice the peg's inradius
    peg_length: float = 0.08  # m
    clearance: float = 0.002  # m, hole width minus peg width
    box_height: float = 0.04  # m, depth of the hole
    insertion_depth: float = 0.025  # m, tip below the box top that counts as success
    image_size: int = 128  # px, square RGB-D images
    use_camera: bool = True  # False: state-only observations (no rgb/depth), much faster
    camera_target: tuple[float, float, float] = (0.6, 0.0, 0.07)  # m, world point the camera looks at
    camera_distance: float = 0.5  # m
    camera_yaw: float = 0.0  # deg, PyBullet's convention (around world z)
    camera_pitch: float = -35.0  # deg
    camera_fov: float = 45.0  # deg, vertical field of view
    physics_hz: float = 1000.0  # Hz; 240 is the fast preset
    control_hz: float = 20.0  # Hz; physics_hz / control_hz substeps per step, an integer
    action_dim: int = 3  # 3: (dx, dy, dz); 4 adds a yaw rate
    action_scale: float = 0.01  # m per step for an action of 1 (yaw: action_scale_yaw)
    action_scale_yaw: float = 0.1  # rad per step for a yaw action of 1
    max_steps: int = 200
    compute_flow: bool = False  # True: info["flow"] holds the exact optical flow of the step
    max_ee_speed: float = 2.0  # m/s, faster counts as a runaway (truncation)
    workspace_low: tuple[float, float, float] = (0.35, -0.3, -0.005)  # m, safety box for the tip
    workspace_high: tuple[float, float, float] = (0.85, 0.3, 0.45)  # m
    completion_bonus: float = 10.0  # added to the remaining steps' maximum reward on success
    # subtracted from the reward per unit of squared change of the translational action from the
    # previous step's (|a_t - a_t-1|^2, actions in [-1, 1], zero before the first): a cost on
    # alternating pushes and pulls. 0: none.
    action_change_penalty: float = 0.0
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    ft_sensor: ForceTorqueConfig = field(default_factory=ForceTorqueConfig)
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    occluder: OccluderConfig = field(default_factory=OccluderConfig)
    push: PushConfig = field(default_factory=PushConfig)

    def __post_init__(self) -> None:
        # Hydra's structured configs hand over lists; the fields are fixed-length tuples.
        _tuples(self, "camera_target", "workspace_low", "workspace_high")

    @property
    def n_substeps(self) -> int:
        """Physics substeps per control step (50 at the defaults)."""
        return int(round(self.physics_hz / self.control_hz))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (for HDF5 attributes and logs). ``task`` is left out at its
        default, so files of the peg-in-hole task stay byte-identical to those written before tasks
        were pluggable (and read back to the same config)."""
        d = asdict(self)
        for name, default in (("task", DEFAULT_TASK), ("plugins", []), ("task_options", {}),
                              ("extra_observations", [])):
            if d[name] == default:  # left out at their defaults: files stay as they were before them
                del d[name]
        if d["controller"]["max_lateral_lead_in_hole"] is None:  # the same, for the in-hole lateral bound
            del d["controller"]["max_lateral_lead_in_hole"]
        if d["controller"]["action_origin"] == "target":  # and for where an action starts
            del d["controller"]["action_origin"]
        if d["controller"]["press_in_hole"] is None:  # and for the scripted insertion stage
            del d["controller"]["press_in_hole"]
        if d["controller"]["max_lateral_lead"] is None:  # and for the separate lateral lead bound
            del d["controller"]["max_lateral_lead"]
        if d["action_change_penalty"] == 0.0:  # and for the action-change cost
            del d["action_change_penalty"]
        if d["randomization"]["camera_target_error"] == 0.0:  # and for the camera's calibration error
            del d["randomization"]["camera_target_error"]
        return d

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> EnvConfig:
        """Build from keyword arguments; nested sections may be dicts. Unknown names raise ValueError."""
        nested = {"controller": ControllerConfig, "ft_sensor": ForceTorqueConfig,
                  "randomization": RandomizationConfig, "occluder": OccluderConfig, "push": PushConfig}
        known = {f.name for f in fields(cls)}
        if "physics_preset" in kwargs:
            preset = kwargs.pop("physics_preset")
            if preset not in PHYSICS_PRESETS:
                raise ValueError(f"physics_preset must be one of {sorted(PHYSICS_PRESETS)}, got {preset!r}")
            kwargs.setdefault("physics_hz", PHYSICS_PRESETS[preset])
        values: dict[str, Any] = {}
        for name, value in kwargs.items():
            if name not in known:
                raise ValueError(f"unknown argument {name!r}; valid arguments: {sorted(known)}")
            if name in nested and isinstance(value, dict):
                sub_known = {f.name for f in fields(nested[name])}
                for sub in value:
                    if sub not in sub_known:
                        raise ValueError(f"unknown argument {name}.{sub!r}; valid: {sorted(sub_known)}")
                value = nested[name](**value)
            values[name] = value
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ValueError naming the first argument that is out of range."""
        wrong = _type_problem(self)
        # before any comparison, which would fail with a TypeError naming nothing (a wrong type) or pass
        # every `x < 0` check and reach the physics (NaN)
        if wrong is not None:
            raise ValueError(wrong)
        for name in ("plugins", "extra_observations"):  # a plain string would be read letter by letter
            names = getattr(self, name)
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"{name} must be a list of names, got {names!r}")
        if self.peg_shape not in PEG_SHAPES:
            raise ValueError(f"peg_shape must be one of {PEG_SHAPES}, got {self.peg_shape!r}")
        _positive(self, "peg_width", "peg_length", "box_height", "insertion_depth", "physics_hz",
                  "control_hz", "action_scale", "action_scale_yaw", "camera_distance", "max_ee_speed")
        if not 0.0 <= self.clearance <= 0.02:
            raise ValueError(f"clearance must be in [0, 0.02] m, got {self.clearance!r}")
        if self.insertion_depth > self.box_height:
            raise ValueError(f"insertion_depth ({self.insertion_depth}) must not exceed box_height "
                             f"({self.box_height})")
        if not isinstance(self.image_size, int) or not 16 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be an int in [16, 1024], got {self.image_size!r}")
        if not 1.0 <= self.camera_fov <= 170.0:
            raise ValueError(f"camera_fov must be in [1, 170] deg, got {self.camera_fov!r}")
        ratio = self.physics_hz / self.control_hz
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-6:
            raise ValueError(f"physics_hz / control_hz must be a positive integer, got "
                             f"{self.physics_hz} / {self.control_hz} = {ratio}")
        if self.compute_flow and not self.use_camera:
            raise ValueError("compute_flow=True needs use_camera=True (flow is computed from the images)")
        if self.action_dim not in (3, 4):
            raise ValueError(f"action_dim must be 3 or 4, got {self.action_dim!r}")
        if not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {self.max_steps!r}")
        if any(lo >= hi for lo, hi in zip(self.workspace_low, self.workspace_high)):
            raise ValueError("workspace_low must be below workspace_high on every axis")
        if self.completion_bonus < 0:
            raise ValueError(f"completion_bonus must be >= 0, got {self.completion_bonus!r}")
        c = self.controller
        _positive(c, "kp_pos", "kd_pos", "kp_rot", "kd_rot", "max_contact_force", "model_update_hz",
                  prefix="controller.")
        if c.kp_null < 0 or c.kd_null < 0:
            raise ValueError("controller.kp_null and controller.kd_null must be >= 0")
        if c.max_lateral_lead_in_hole is not None and not 0 <= c.max_lateral_lead_in_hole <= c.max_lead:
            raise ValueError(f"controller.max_lateral_lead_in_hole must be None or in [0, max_lead = "
                             f"{c.max_lead:g}] m, got {c.max_lateral_lead_in_hole!r}")
        if c.max_lateral_lead is not None and not c.max_lateral_lead > 0:
            raise ValueError(f"controller.max_lateral_lead must be None or > 0 (m), got {c.max_lateral_lead!r}")
        if not self.action_change_penalty >= 0:
            raise ValueError(f"action_change_penalty must be >= 0, got {self.action_change_penalty!r}")
        if c.press_in_hole is not None and not 0 < c.press_in_hole < self.insertion_depth:
            raise ValueError(f"controller.press_in_hole must be None or in (0, insertion_depth = "
                             f"{self.insertion_depth:g}) m, got {c.press_in_hole!r}")
        if c.action_origin not in ACTION_ORIGINS:
            raise ValueError(f"controller.action_origin must be one of {ACTION_ORIGINS}, got {c.action_origin!r}")
        f = self.ft_sensor
        if f.lowpass_hz is not None and not 0 < f.lowpass_hz < self.physics_hz / 2:
            raise ValueError(f"ft_sensor.lowpass_hz must be in (0, physics_hz/2), got {f.lowpass_hz!r}")
        if f.force_noise_std < 0 or f.torque_noise_std < 0:
            raise ValueError("ft_sensor.force_noise_std and ft_sensor.torque_noise_std must be >= 0")
        for name in ("bias", "drift"):
            if len(getattr(f, name)) != 6 or not all(math.isfinite(v) for v in getattr(f, name)):
                raise ValueError(f"ft_sensor.{name} must be 6 finite values (N x3, N m x3), got {getattr(f, name)!r}")
        o = self.occluder
        if o.mode not in OCCLUDER_MODES:
            raise ValueError(f"occluder.mode must be one of {OCCLUDER_MODES}, got {o.mode!r}")
        if o.mode != "off" and not self.use_camera:
            raise ValueError("occluder.mode needs use_camera=True (the occluder is only seen by the camera)")
        if o.mode == "off":  # an occluder that never appears: its geometry does not matter
            pass
        elif len(o.size) != 2 or min(o.size) <= 0 or len(o.offset) != 2 or len(o.color) != 3:
            raise ValueError(f"occluder.size must be 2 positive values, offset 2 values, color 3 values; got "
                             f"{o.size!r}, {o.offset!r}, {o.color!r}")
        elif not NEAR_PLANE < o.distance < self.camera_distance:
            raise ValueError(f"occluder.distance must be between the near plane ({NEAR_PLANE} m) and the "
                             f"camera_distance ({self.camera_distance} m), got {o.distance!r}")
        elif o.offset_range < 0 or o.amplitude < 0 or not o.period > 0:
            raise ValueError("occluder.offset_range and occluder.amplitude must be >= 0, occluder.period > 0")
        elif not 0.0 <= o.probability <= 1.0:
            raise ValueError(f"occluder.probability must be in [0, 1], got {o.probability!r}")
        u = self.push
        if u.rate_hz < 0 or u.impulse < 0 or not u.duration > 0:
            raise ValueError(f"push.rate_hz and push.impulse must be >= 0 and push.duration > 0, got "
                             f"{u.rate_hz!r}, {u.impulse!r}, {u.duration!r}")
        if u.duration > 1.0 / self.control_hz:
            raise ValueError(f"push.duration must fit in one control step (<= {1.0 / self.control_hz} s), "
                             f"got {u.duration!r}")
        for name in ("azimuth_range", "elevation_range"):
            lo_hi = getattr(u, name)
            if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
                raise ValueError(f"push.{name} must be (low, high) deg with low <= high, got {lo_hi!r}")
        r = self.randomization
        hz = self.physics_hz
        if c.kp_pos > hz * hz:
            # Torque control integrated explicitly at the physics rate diverges once kp dt^2 / m passes ~4;
            # measured on the KUKA: runaway at step 0 from 1e5 N/m at 240 Hz and 3e6 N/m at 1 kHz, none
            # at 2e4 and 1e6 (an effective mass of about 0.25 kg): the bound kp_pos <= physics_hz^2.
            raise ValueError(f"controller.kp_pos={c.kp_pos:g} N/m is unstable at physics_hz={hz:g}: above about "
                             f"physics_hz^2 = {hz * hz:g} N/m the arm runs away at the first step; lower kp_pos "
                             f"or raise physics_hz")
        for name in ("hole_xy_range", "hole_yaw_range", "start_xy_range", "hole_estimate_error",
                     "camera_target_error"):
            if getattr(r, name) < 0:
                raise ValueError(f"randomization.{name} must be >= 0, got {getattr(r, name)!r}")
        for obj, name, size in ((self, "camera_target", 3), (self, "workspace_low", 3), (self, "workspace_high", 3),
                                (r, "hole_xy_center", 2), (r, "start_height", 2)):
            value = getattr(obj, name)
            if len(value) != size:
                where = name if obj is self else f"randomization.{name}"
                raise ValueError(f"{where} must have {size} values, got {list(value)!r}")
        for name, reach in (("hole_xy_range", r.hole_xy_range), ("start_xy_range", r.start_xy_range)):
            for axis, centre in enumerate(r.hole_xy_center):
                lo, hi = self.workspace_low[axis], self.workspace_high[axis]
                if not (lo <= centre - reach and centre + reach <= hi):
                    raise ValueError(f"randomization.{name}={reach:g} m puts positions outside the workspace: "
                                     f"{'xy'[axis]} = {centre:g} +- {reach:g} m, workspace {lo:g} to {hi:g} m "
                                     f"(workspace_low / workspace_high)")
        if r.hole_yaw_range > math.pi:
            raise ValueError("randomization.hole_yaw_range must be <= pi")
        if not 0 < r.start_height[0] <= r.start_height[1]:
            raise ValueError(f"randomization.start_height must be (low, high) with 0 < low <= high, "
                             f"got {r.start_height!r}")


def merge_nested(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, section by section: ``{"occluder": {"mode": "static"}}``
    changes the occluder's mode and keeps its other fields. Neither input is modified."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge_nested(dict(out[k]), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _tuples(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, list):
            setattr(obj, name, tuple(value))


def _type_problem(obj: Any, prefix: str = "") -> str | None:
    """What is wrong with the first field of dataclass ``obj`` (nested ones included) that is NaN or
    infinite (a float, or in a sequence), or does not have the type of its default (a bool for a bool,
    an integer for an int, a number for a float, a sequence of numbers of the default's length for a
    tuple, a section for a section), or None. The types of fields whose default is None are not checked."""
    import numbers

    default = type(obj)()
    for f in dataclasses.fields(obj):
        value, want, name = getattr(obj, f.name), getattr(default, f.name), prefix + f.name
        is_bool = isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy's too, without numpy
        if (isinstance(value, float) and not math.isfinite(value)) or (isinstance(value, (tuple, list)) and any(
                isinstance(v, float) and not math.isfinite(v) for v in value)):
            return f"{name} must be finite, got {value!r}"
        if dataclasses.is_dataclass(want):
            if not dataclasses.is_dataclass(value):
                return f"{name} must be a section of options (a dict of {type(want).__name__} fields), got {value!r}"
            found = _type_problem(value, name + ".")
            if found:
                return found
        elif want is None:
            continue
        elif isinstance(want, bool):
            if not is_bool:
                return f"{name} must be true or false, got {value!r}"
        elif isinstance(want, int):
            if is_bool or not isinstance(value, numbers.Integral):
                return f"{name} must be an integer, got {value!r}"
        elif isinstance(want, float):
            if is_bool or not isinstance(value, numbers.Real):
                return f"{name} must be a number, got {value!r}"
        elif isinstance(want, str):
            if not isinstance(value, str):
                return f"{name} must be a string, got {value!r}"
        elif isinstance(want, tuple) and want and all(isinstance(v, numbers.Real) for v in want):
            if (not isinstance(value, (tuple, list)) or len(value) != len(want)
                    or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)):
                return f"{name} must be {len(want)} numbers, got {value!r}"
    return None


def _positive(obj: Any, *names: str, prefix: str = "") -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 \
                or not math.isfinite(value):
            raise ValueError(f"{prefix}{name} must be a positive finite number, got {value!r}")
