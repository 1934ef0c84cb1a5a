"""Every app's configuration, defined once as dataclasses and registered in Hydra's ConfigStore.

The dataclasses hold every default (``sim.config.EnvConfig``, ``sim.collect.CollectConfig``,
``ModelConfig``, ``TrainConfig``); the YAML files under ``configs/`` only pick group options and
override values. Composition checks names and types against the dataclasses (a typo or a string for
a number is refused with the field's full name, e.g. ``env.image_sise``); ``app_config`` and the
``ValidateConfig`` callback check ranges (``env.image_size must be ...``) before an app writes anything.

This module imports no torch: ``mmrep collect``, ``--cfg job`` and the config tests stay light.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from sim.config import EnvConfig
from sim.modalities import MODALITIES, MODALITY_REGISTRY, import_plugins
from sim.perturb import LEVELS
from sim.wrappers import FINE_SCALE

HEADS = ("flow", "contact", "alignment", "ee")
APPS = ("collect", "train", "evaluate", "policy", "policy_eval")
ABSENT = "absent"  # "<modality>/absent" in mmrep evaluate: the modality left out of the fusion


@dataclass
class ModelConfig:
    """Architecture, switches and loss weights (reference values from the paper's code)."""

    z_dim: int = 128
    image_size: int | None = None  # px; None: the training data's (a set value must match the data)
    action_dim: int = 4
    rgb: bool = True
    depth: bool = True
    force: bool = True
    proprio: bool = True
    # modalities registered by a plug-in (``sim.modalities.register_modality``), after the four above
    extra_modalities: list[str] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)  # modules imported first (they register modalities, networks)
    fusion: str = "poe"  # "poe" | "concat"
    # the encoder network (mmrep.models.network): a registered name or a dotted path to a class built
    # as cls(cfg, **encoder_kwargs); None: MultimodalEncoder (the per-modality experts and fusion above)
    encoder_target: str | None = None
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    flow: bool = True
    contact: bool = True
    alignment: bool = True
    ee: bool = True
    w_flow: float = 10.0  # endpoint error
    w_flow_mask: float = 1.0
    # not in the reference: endpoint error averaged over the moving pixels only (the ~12% of the image
    # where the arm and peg move, where the flow metric is measured); 0 leaves the reference loss
    w_flow_moving: float = 0.0
    w_contact: float = 1.0
    w_alignment: float = 0.5
    w_ee: float = 1.0
    w_kl: float = 0.05
    # what the alignment head reads: "mean" (the PoE posterior mean; z with concat), "sample" (the
    # sampled z, as the reference code), "experts" (the experts' means side by side)
    alignment_input: str = "mean"
    modality_dropout: float = 0.0  # probability that a modality is left out of a training sample
    # The flow losses count only samples whose RGB is present (the flow decoder reads the RGB encoder's
    # feature maps; without them flow is a different, much blurrier task). False: every sample counts.
    flow_needs_rgb: bool = False
    # not in the paper: a head on z predicting where the peg will go in, relative to the tip, a
    # hindsight label from the robot's own sensing (``mmrep.data.hindsight``); 0: no head
    w_insertion: float = 0.0
    # the same insertion head read from the product of the non-camera experts alone (F/T, proprio, ...):
    # makes touch carry the hole's direction, for when the camera is left out (product of experts only)
    w_insertion_touch: float = 0.0
    # not in the paper: the F/T expert also reads the step's mean and last F/T reading (over all the
    # step's readings, not only the convolution's window), standardised with the training set's
    # statistics (``ForceEncoder`` summary): without it the rim moment that points to the hole is lost
    force_summary: bool = False

    def validate(self) -> None:
        if self.fusion not in ("poe", "concat"):
            raise ValueError(f"model.fusion must be 'poe' or 'concat', got {self.fusion!r}")
        if self.alignment_input not in ("sample", "mean", "experts"):
            raise ValueError(f"model.alignment_input must be 'sample', 'mean' or 'experts', got "
                             f"{self.alignment_input!r}")
        if self.force_summary and not self.force:
            raise ValueError("model.force_summary=true needs model.force=true (it is a branch of the F/T expert)")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"model.modality_dropout must be in [0, 1), got {self.modality_dropout!r}")
        import_plugins(self.plugins)
        if not self.modalities:
            raise ValueError("model: at least one of rgb, depth, force, proprio (or an extra modality) must be on")
        unknown = [m for m in self.extra_modalities if m not in MODALITY_REGISTRY or m in MODALITIES]
        if unknown:
            raise ValueError(f"model.extra_modalities: {unknown} are not registered plug-in modalities "
                             f"(import the module that registers them first); registered: {list(MODALITY_REGISTRY)}")
        if not any(getattr(self, h) for h in HEADS):
            raise ValueError("model: at least one of the heads flow, contact, alignment, ee must be on")
        if self.flow and not self.rgb:
            raise ValueError("model.flow needs model.rgb (the flow decoder uses the RGB encoder's skips)")
        if self.alignment and not ((self.force or self.proprio) and (self.rgb or self.depth)):
            raise ValueError("model.alignment needs an image (rgb or depth) and force or proprio: it "
                             "asks whether they come from the same moment")
        if self.z_dim < 1:
            raise ValueError(f"model.z_dim must be >= 1, got {self.z_dim!r}")
        if self.image_size is not None and (self.image_size < 64 or self.image_size % 64):
            raise ValueError(f"model.image_size must be a multiple of 64 (six stride-2 convolutions), "
                             f"got {self.image_size!r}")
        if self.action_dim < 1:
            raise ValueError(f"model.action_dim must be >= 1, got {self.action_dim!r}")
        if self.w_insertion < 0:
            raise ValueError(f"model.w_insertion must be >= 0 (0: no insertion head), got {self.w_insertion!r}")
        if self.w_insertion_touch < 0:
            raise ValueError(f"model.w_insertion_touch must be >= 0, got {self.w_insertion_touch!r}")
        if self.w_insertion_touch > 0 and (self.w_insertion <= 0 or self.fusion != "poe"):
            raise ValueError("model.w_insertion_touch needs the insertion head (model.w_insertion > 0) and "
                             f"fusion=poe (its touch-only posterior), got w_insertion={self.w_insertion}, "
                             f"fusion={self.fusion!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """From a plain dict (an encoder file's JSON); unknown names raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model option(s) {unknown}; valid: {sorted(known)}")
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def modalities(self) -> list[str]:
        """The enabled modalities, in the order of the model's experts."""
        return [m for m in MODALITIES if getattr(self, m)] + list(self.extra_modalities)


@dataclass
class AugmentConfig:
    """Corruption augmentation (``mmrep.data.transforms.RandomCorruption``): with probability ``prob``
    a training sample gets one perturbation of ``sim.perturb``, drawn from ``perturbations`` (empty:
    every perturbation that keeps the scene's geometry), at a level drawn from [0, ``max_level``]."""

    prob: float = 0.0
    perturbations: list[str] = field(default_factory=list)
    max_level: float = 0.9

    def validate(self) -> None:
        from sim.perturb import PERTURBATIONS

        for name in ("prob", "max_level"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {getattr(self, name)!r}")
        unknown = [n for n in self.perturbations if n not in PERTURBATIONS]
        if unknown:
            raise ValueError(f"augment.perturbations: unknown {unknown}; valid: {sorted(PERTURBATIONS)}")


@dataclass
class LeRobotKeys:
    """``mmrep train`` on a LeRobot dataset (``mmrep.formats.lerobot_source``): which LeRobot feature is
    which mmrep input (null: the dataset has none). Defaults: the names
    ``mmrep data export format=lerobot`` writes."""

    rgb: str | None = "observation.images.rgb"
    depth: str | None = "observation.depth"
    force: str | None = "observation.force"
    proprio: str = "observation.state"
    proprio_layout: str = "proprio13"  # proprio13 (the env's PROPRIO13) | proprio8 (x y z yaw vx vy vz yaw-rate)
    action: str = "action"
    contact: str | None = "observation.contact"  # absent from the dataset: derived from the force
    flow: str | None = "next.flow"
    contact_threshold: float = 2.0  # N, force magnitude above which a reading counts as contact
    force_window: int = 8  # frames, for a (6,) wrench feature
    repo_id: str = "mmrep/sim"  # only names the dataset: nothing is fetched

    def validate(self) -> None:
        if self.proprio_layout not in ("proprio13", "proprio8"):
            raise ValueError(f"lerobot.proprio_layout must be proprio13 or proprio8, got {self.proprio_layout!r}")
        if self.force_window < 1 or not self.contact_threshold > 0:
            raise ValueError("lerobot.force_window must be >= 1 and lerobot.contact_threshold > 0")


@dataclass
class TrainConfig:
    """Everything ``mmrep train`` reads."""

    data: str = "data/sim"  # a dataset folder (manifest.json), a LeRobot dataset folder or reference-layout files
    out: str = "runs/train"  # run folder (checkpoints, metrics, encoder.pt); multirun: one subfolder per run
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-4
    num_workers: int | None = None  # None: 0 on a CPU machine with <= 2 cores, else up to 8
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast, CUDA only
    cache: bool = False  # dataset RAM cache
    max_batches_per_epoch: int | None = None
    max_val_batches: int | None = None
    ckpt_every_steps: int = 200
    lr_schedule: str = "constant"  # constant | cosine (to lr x 0.05 at the last step)
    kl_warmup_steps: int = 2000  # KL weight ramps linearly from 0 to model.w_kl (against posterior collapse)
    threads: int | None = None  # torch CPU threads (None: torch's default)
    skip_nonfinite: bool = False  # skip samples with NaN/inf inputs (counted) instead of stopping
    progress: bool = True  # progress bars
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    lerobot: LeRobotKeys = field(default_factory=LeRobotKeys)  # when ``data`` is a LeRobot dataset folder

    def validate(self) -> None:
        if isinstance(self.lerobot, dict):
            self.lerobot = LeRobotKeys(**self.lerobot)
        self.lerobot.validate()
        for name in ("epochs", "batch_size", "ckpt_every_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.kl_warmup_steps < 0:
            raise ValueError(f"kl_warmup_steps must be >= 0, got {self.kl_warmup_steps!r}")
        for name in ("num_workers", "max_batches_per_epoch", "max_val_batches", "threads"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "num_workers" else 1):
                raise ValueError(f"{name} must be {'>= 0' if name == 'num_workers' else '>= 1'} or null, "
                                 f"got {value!r}")
        if isinstance(self.model, dict):  # built by hand from plain dicts
            self.model = ModelConfig.from_dict(self.model)
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        self.model.validate()
        self.augment.validate()


@dataclass
class EvaluateConfig:
    """Everything ``mmrep evaluate`` reads."""

    runs: list[str] = field(default_factory=list)  # run folders ("label:path" names a curve)
    data: str = "data/sim"  # dataset folder
    split: str = "valid"  # the episodes evaluated: "valid" (held out from training), "train" or "all"
    out: str = "outputs/evaluate"
    perturbations: list[str] = field(default_factory=list)  # sim.perturb names or "<modality>/absent"; []: clean only
    levels: list[float] = field(default_factory=lambda: list(LEVELS))
    episodes: int = 16  # held-out episodes evaluated (evenly spread over the split)
    calibration_episodes: int = 8  # further held-out episodes that set the reliability thresholds
    batch_size: int = 64
    seed: int = 0
    checkpoint: str = "last.pt"  # which checkpoint of each run
    reject: bool = False  # also evaluate each PoE model with its flagged experts left out ("<label>+reject")
    threads: int | None = None
    progress: bool = True

    def validate(self) -> None:
        from sim.perturb import PERTURBATIONS

        if not self.runs:
            raise ValueError("runs must name at least one run folder (runs=[runs/a,runs/b] or 'label:path')")
        for name in self.perturbations:
            if name not in PERTURBATIONS and not is_absent(name):
                raise ValueError(f"perturbations: unknown {name!r}; valid: {sorted(PERTURBATIONS)} or "
                                 f"'<modality>/absent' for a modality in {list(MODALITY_REGISTRY)}")
        for p in self.levels:
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"levels must lie in [0, 1], got {p!r}")
        if self.split not in ("valid", "train", "all"):
            raise ValueError(f"split must be 'valid', 'train' or 'all', got {self.split!r}")
        for name in ("episodes", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.calibration_episodes < 0:
            raise ValueError(f"calibration_episodes must be >= 0, got {self.calibration_episodes!r}")


ALGOS = ("trpo", "ppo", "recurrent_ppo", "sac")
OBS_KINDS = ("latent", "latent_proprio", "pixels", "state")


@dataclass
class AlgoConfig:
    """The RL algorithm (``configs/algo/``): ``name`` and the keyword arguments of its SB3 (or
    sb3-contrib) constructor, e.g. ``{"n_steps": 1024, "learning_rate": 3e-4}``."""

    name: str = "trpo"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObsConfig:
    """What the policy observes (``configs/obs/``): "latent" (the frozen encoder's z), "latent_proprio"
    (z and the robot's proprioception: ``proprio`` 13, the env's PROPRIO13, or 8, PROPRIO8 without the
    peg's tilt, ``sim.wrappers.Proprio8Observation``), "pixels" (the observation dict through the
    encoder's architecture, randomly initialised and trained end to end), "state" (privileged: tip-to-hole
    vector, velocity, force, contact). ``encoder``: the ``encoder.pt`` of the latent kinds; ``random_init``: its
    architecture with fresh weights seeded by the policy's seed, frozen (the random-features baseline,
    ``mmrep.encoder.random_like``). ``fine_scale`` (m, state only): the tip-to-hole offset is also
    observed as ``tanh(offset / fine_scale)``; 0 leaves those channels out
    (``sim.wrappers.StateObservation``). ``camera_memory`` (latent kinds, product of experts): while
    the camera looks corrupted, z fuses the camera experts of the last step it looked clean
    (``mmrep.camera_memory``). ``encode_in`` (latent kinds): "main" encodes every sub-env's observation
    in one batch in the main process, on ``device`` (the choice with a GPU); "workers" gives each env
    worker its own CPU copy of the encoder (one torch thread), so images never cross the pipe and the
    encoders run in parallel (``mmrep.rl.worker``; the faster choice on a CPU whose cores all step
    envs; z then matches "main" to about 1e-6, not bit for bit). ``jit`` (latent kinds, without camera
    memory): the encoder as a frozen TorchScript trace (``mmrep.rl.latent.FrozenEncoder``), the same z
    with less Python per observation. ``onnx`` (latent kinds, CPU, without camera memory): the encoder
    under ONNX Runtime (``mmrep.formats.encoder_export.OnnxRuntimeEncoder``), z equal to torch's to
    about 1e-6 with about half the CPU per observation (``pip install 'mmrep[deploy]'``).
    ``reject_flagged`` (latent kinds, product of experts, torch's encoder): each step, the experts that
    the encoder's reliability flags flag are left out of the product (with camera memory the camera's
    are held instead, and used as they are while nothing is held yet), so a biased or dead sense stops
    moving z (``mmrep.camera_memory``). ``command`` (latent kinds): z and the extras are followed by
    the controller's desired tip position minus the measured tip (3 values, m): the command the
    policy's earlier actions built up, which it does not sense otherwise
    (``sim.wrappers.CommandObservation``). ``camera_odometry`` (with ``camera_memory``): z is followed by
    whether the camera experts are held and the tip's displacement (m) since the held view, so a policy
    can tell how far it has moved since the camera went (``mmrep.camera_memory``). ``ft_tare``: the
    wrist F/T sensor is zeroed at every reset, in free air, after the sensor's faults: the reset
    readings' mean is subtracted for the episode, so a constant offset present at the start (F/T bias)
    is gone (``sim.wrappers.TareForce``)."""

    kind: str = "latent"
    encoder: str | None = None
    random_init: bool = False
    fine_scale: float = FINE_SCALE
    camera_memory: bool = False
    encode_in: str = "main"
    jit: bool = False
    onnx: bool = False  # the frozen encoder under ONNX Runtime (CPU); not with jit or camera_memory
    proprio: int = 13  # latent_proprio: 13 (PROPRIO13, with the orientation quaternion) or 8 (PROPRIO8: no tilt)
    reject_flagged: bool = False  # leave out the experts the reliability thresholds flag; not with jit or onnx
    command: bool = False  # latent kinds: also observe the controller's command (sim.wrappers.CommandObservation)
    camera_odometry: bool = False  # with camera_memory: also observe the held flag and the move since the held view
    ft_tare: bool = False  # zero the F/T sensor at each reset (sim.wrappers.TareForce)


@dataclass
class DemoConfig:
    """Demonstrations before RL (``mmrep.rl.demos``): ``episodes`` of the task's scripted ``expert``
    acting in the training env itself (the policy's own observation beside it), then the policy's action
    distribution fitted to them by maximum likelihood (behaviour cloning) and its value to their
    discounted returns, for ``epochs`` passes of Adam (``learning_rate``, ``batch_size``), the policy's
    action std kept at least ``min_std`` (action units) so that RL still explores; then ``dagger_rounds``
    of DAgger. Their env steps count: training starts at that many of ``total_steps``, and the first
    periodic evaluation is the cloned policy's. On-policy algorithms (trpo, ppo). 0 episodes: none (the
    default; every paper row but ``fused_insertion_demos``)."""

    episodes: int = 0  # expert episodes before RL (their env steps count toward total_steps); 0: none
    expert: str = "expert"  # the task's scripted expert that acts (sim.task.task_experts)
    epochs: int = 100  # passes over the demonstrations when cloning
    batch_size: int = 256  # demonstration steps per Adam step when cloning
    learning_rate: float = 1e-3  # Adam's, when cloning
    min_std: float = 0.1  # the cloned policy's action std is kept at least this (action units), so RL explores
    dagger_rounds: int = 0  # then rounds of DAgger: the clone acts, the expert labels its states, refit on all
    dagger_episodes: int = 50  # the clone's episodes per DAgger round (their env steps count too)
    # Keep the observation normaliser's statistics as the clone was fitted with, for the rest of the run:
    # updating them from RL's rollouts moves every input under the cloned policy (measured 2026-12-07 on
    # the fused row: a clone at 0.83 read 0.27 after 9k env steps with its weights untouched)
    freeze_normalizer: bool = True
    actor_held_until: int = 0  # env steps (the demonstrations' included) before which only the critic learns
    # Gaussian noise (std, action units) added to the action the expert's episodes execute, its label
    # staying the expert's own action (DART, Laskey et al. 2017): the demonstrations then show how the
    # expert recovers from the drift a clone makes, where DAgger's labels would come from an expert
    # whose search memory is not the clone's. 0: the expert's actions as they are.
    noise: float = 0.0
    # Adam steps of behaviour cloning on the demonstrations after each RL update (the actor's
    # likelihood of the expert's actions, minibatches of batch_size, learning_rate): the clone kept as
    # an anchor while RL improves it. 0: RL alone after the clone.
    replay_steps: int = 0
    # Gaussian noise (std, in the normaliser's units) added to each cloning minibatch's observations:
    # a policy smooth around the demonstrated states, where a clone's drift takes it
    obs_noise: float = 0.0
    # Average the clone's weights over the ends of its last this many passes (stochastic weight
    # averaging, Izmailov et al. 2018), against the fit's luck; 0 or 1: the last weights
    average_last: int = 0
    # The cloned policy's action std set to this (action units) once cloned, before RL: the policy PPO
    # samples then acts near the clone's mean action, which succeeds where its sampled actions at the
    # fitted std (about 0.24 on the fused row) mostly fail. None: as fitted.
    action_std: float | None = None
    # Fit this many clones to the same demonstrations (the first as a single fit would be, each other from
    # its own initialisation and minibatch order) and keep the one whose mean action succeeds on most of
    # select_episodes episodes (ties: the earlier fit), as robomimic keeps a checkpoint by its rollouts:
    # clones of one set of demonstrations fit it equally well and succeed 0.53-0.80 (measured 2026-12-07).
    # Their episodes are on their own seeds (seed + 1000 s + SELECT_SEED_OFFSET + k) and their env steps
    # count. 1: one fit, no selection episodes.
    select_fits: int = 1
    select_episodes: int = 20
    seed: int = 900_000  # demonstration sub-env i of training seed s: its first reset seed + 1000 s + i


SELECT_SEED_OFFSET = 500
"""The clone selection's episode k of training seed s resets with ``demos.seed + 1000 s + 500 + k``:
above the demonstrations' sub-envs (``+ i``, i < n_envs), below the next training seed's."""


@dataclass
class PolicyConfig:
    """Everything ``mmrep policy train`` reads."""

    out: str = "runs/policy"
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    obs: ObsConfig = field(default_factory=ObsConfig)
    env: EnvConfig = field(default_factory=EnvConfig)  # the peg-insertion env's options
    perturbations: list[str] = field(default_factory=list)  # sim.perturb "name:p" on the training envs
    total_steps: int = 200_000  # env steps, all sub-environments together
    # A wall-clock budget (minutes of training over every resume, periodic evaluations included):
    # training stops at whichever of it and total_steps comes first. None: total_steps alone.
    max_train_minutes: float | None = None
    n_envs: int = 2  # sub-environments (one process each with vec_env=subproc, one Ray actor with ray)
    vec_env: str = "subproc"  # subproc | dummy (in the main process) | ray (Ray actors, mmrep.rl.ray_vec_env)
    ray_address: str | None = None  # vec_env=ray: None starts a local Ray instance; "auto" or "host:6379" joins one
    # Bind env worker i to CPU i (vec_env=subproc, Linux): same results, faster with the machine to oneself.
    # Off where other jobs share the CPUs: every pinned training puts its worker i on the same CPU.
    pin_workers: bool = False
    # Training sub-env i: its first reset seeded seed + i (SB3 seeds the vec env with the algorithm's seed),
    # its perturbations seed * 1000 + i; a resumed run reseeds the resets from (seed, steps done)
    # (mmrep.policy.resume_env_seed). All below eval_seed: never an evaluation seed.
    seed: int = 0
    # Where the training sub-envs' first resets are seeded from. "algorithm": seed + i, as SB3's
    # constructor leaves them (every committed run; training seeds s and s + 1 share one sub-env's
    # episode stream, sub-env 1 of s and sub-env 0 of s + 1). "run": seed * 1000 + i, as the
    # perturbations: no two training seeds share a stream. New rows should take "run".
    reset_seeds: str = "algorithm"
    normalize: bool = True  # running mean / std of the observations, clipped at +-5 (the paper's policy code)
    # scale the training rewards by a running std of the discounted return (SB3's VecNormalize, clipped
    # at +-10; the completion bonus makes returns of hundreds): what the learner sees, never what is
    # reported (periodic and held-out evaluations read the env's own rewards)
    normalize_reward: bool = False
    eval_every_steps: int = 20_000
    eval_episodes: int = 20
    eval_stochastic: bool = True  # the periodic evaluation also samples actions (both curves)
    eval_seed: int = 1_000_000  # periodic evaluation on seeds eval_seed + k (held out)
    # keep the policy of the best periodic evaluation (mean action; the later one on ties) in
    # best/policy.pt beside the final one: PPO can learn a skill and lose it again
    keep_best: bool = False
    # The periodic evaluation's settings (sim.rl_env.CLOSED_LOOP names, e.g. [clean, occluder_after_contact]),
    # eval_episodes each on the same seeds; the row's top level is the first, every one under
    # row["settings"], and keep_best selects on their mean success (row["selection"]). Empty: the
    # training env as configured, its own disturbances included (every committed run).
    eval_settings: list[str] = field(default_factory=list)
    ckpt_every_steps: int = 10_000
    # a finished run's policy.pt (or its folder) to continue from, where this run has no checkpoint yet:
    # its weights, normaliser statistics, env steps and training seconds (and its run's periodic
    # evaluations up to its steps, copied, marked brought_along), so total_steps counts from its start;
    # the optimiser starts afresh (a policy file keeps no optimiser state). Its run must match this one
    # in what defines the learning (algo, obs, env, perturbations, n_envs, normalize, normalize_reward,
    # seed, reset_seeds: checked, by name, before anything is written; obs.encode_in, jit and onnx may
    # differ). None: from scratch.
    init_policy: str | None = None
    demos: DemoConfig = field(default_factory=DemoConfig)  # demonstrations and cloning before RL (none by default)
    device: str = "auto"  # auto | cpu | cuda (where the learner and the encoder run)
    # torch CPU threads of the main process (None: torch's default, all cores). 1 is as fast as 2 with
    # env workers on 2 cores (benchmarks/results/policy_throughput.json), and 2 threads beside any other
    # busy process stalled a run to 8 steps/s (each parallel region waits for a descheduled thread).
    threads: int | None = 1
    progress: bool = True

    def _validate_demos(self) -> None:
        d = self.demos
        for name in ("episodes", "epochs", "dagger_rounds", "actor_held_until", "noise", "replay_steps",
                     "obs_noise", "average_last"):
            if getattr(d, name) < 0:
                raise ValueError(f"demos.{name} must be >= 0, got {getattr(d, name)}")
        for name in ("batch_size", "learning_rate", "min_std", "dagger_episodes", "select_fits", "select_episodes"):
            if not getattr(d, name) > 0:
                raise ValueError(f"demos.{name} must be > 0, got {getattr(d, name)}")
        if d.action_std is not None and not d.action_std > 0:
            raise ValueError(f"demos.action_std must be > 0 (or null: as fitted), got {d.action_std}")
        if not d.episodes:
            return
        from sim.task import task_experts

        if self.algo.name not in ("ppo", "trpo"):
            raise ValueError(f"demos.episodes clones into an on-policy actor-critic (algo ppo or trpo), "
                             f"got algo={self.algo.name}")
        if self.obs.kind == "pixels":
            raise ValueError("demos.episodes clones a policy on a vector observation (obs latent, latent_proprio "
                             "or state), got obs.kind=pixels")
        if self.normalize_reward:
            raise ValueError("demos.episodes fits the value to the demonstrations' own returns: not with "
                             "normalize_reward=true (the learner's value would be on another scale)")
        if self.init_policy:
            raise ValueError("demos.episodes starts a run from demonstrations; init_policy continues one: "
                             "choose one")
        if d.replay_steps and self.normalize and not d.freeze_normalizer:
            raise ValueError("demos.replay_steps replays the demonstrations normalised as the clone saw them: "
                             "it needs demos.freeze_normalizer=true")
        experts = task_experts(self.env.task)
        if d.expert not in experts:
            raise ValueError(f"demos.expert: unknown expert {d.expert!r} for task {self.env.task!r}; "
                             f"one of {sorted(experts)}")
        first = d.seed + 1000 * self.seed
        if not (0 <= first and first + self.n_envs <= self.eval_seed):
            raise ValueError(f"demos.seed: the demonstrations' resets (from {first}) must lie in [0, "
                             f"eval_seed={self.eval_seed}), below the evaluations' seeds")
        if d.select_fits > 1:
            if not (self.n_envs <= SELECT_SEED_OFFSET and d.select_episodes <= 1000 - SELECT_SEED_OFFSET):
                raise ValueError(f"demos.select_episodes={d.select_episodes} (n_envs={self.n_envs}): the clone "
                                 f"selection's seeds must fit in the {1000 - SELECT_SEED_OFFSET} after the "
                                 "demonstrations' own (at most 500 episodes, 500 sub-envs)")
            if first + SELECT_SEED_OFFSET + d.select_episodes > self.eval_seed:
                raise ValueError(f"demos.seed: the clone selection's resets (from {first + SELECT_SEED_OFFSET}) "
                                 f"reach eval_seed={self.eval_seed}, the evaluations' seeds")
            if d.dagger_rounds:
                raise ValueError("demos.select_fits keeps one of several clones; demos.dagger_rounds refits one: "
                                 "choose one")

    def validate(self) -> None:
        from sim.perturb import Setting
        from sim.rl_env import CLOSED_LOOP

        if self.algo.name not in ALGOS:
            raise ValueError(f"algo.name must be one of {ALGOS}, got {self.algo.name!r}")
        if self.obs.kind not in OBS_KINDS:
            raise ValueError(f"obs.kind must be one of {OBS_KINDS}, got {self.obs.kind!r}")
        if self.obs.kind.startswith("latent") and not self.obs.encoder:
            raise ValueError(f"obs.kind={self.obs.kind} needs obs.encoder (the encoder.pt of a training run)")
        if self.obs.encoder and self.obs.kind.startswith("latent") and not Path(self.obs.encoder).exists():
            made_by = (f"; `make {self.obs.encoder}` trains it (on the touch setting `make {self.obs.encoder} "
                       f"TOUCH_ENCODERS=committed` copies the committed one where there is one)"
                       if str(self.obs.encoder).startswith("runs/") else "")
            raise ValueError(f"obs.encoder: {self.obs.encoder} does not exist{made_by}")
        if self.obs.random_init and not self.obs.kind.startswith("latent"):
            raise ValueError(f"obs.random_init needs a latent kind (latent, latent_proprio), got "
                             f"obs.kind={self.obs.kind}")
        if self.obs.camera_odometry and not self.obs.camera_memory:
            raise ValueError("obs.camera_odometry is the camera memory's odometry: it needs obs.camera_memory=true")
        if self.obs.camera_memory and not self.obs.kind.startswith("latent"):
            raise ValueError(f"obs.camera_memory needs a latent kind (latent, latent_proprio), got "
                             f"obs.kind={self.obs.kind}")
        unknown = [name for name in self.eval_settings if name not in CLOSED_LOOP]
        if unknown:
            raise ValueError(f"eval_settings: unknown setting(s) {unknown}; one of {sorted(CLOSED_LOOP)}")
        if len(set(self.eval_settings)) != len(self.eval_settings):
            raise ValueError(f"eval_settings names a setting twice: {self.eval_settings}")
        self._validate_demos()
        if self.obs.encode_in not in ("main", "workers"):
            raise ValueError(f"obs.encode_in must be 'main' or 'workers', got {self.obs.encode_in!r}")
        if self.obs.onnx and (not self.obs.kind.startswith("latent") or self.obs.jit or self.obs.camera_memory):
            raise ValueError("obs.onnx needs a latent kind (latent, latent_proprio), without obs.jit and "
                             f"obs.camera_memory (got kind={self.obs.kind}, jit={self.obs.jit}, "
                             f"camera_memory={self.obs.camera_memory})")
        if self.obs.reject_flagged and (not self.obs.kind.startswith("latent") or self.obs.jit or self.obs.onnx):
            raise ValueError("obs.reject_flagged needs a latent kind (latent, latent_proprio) and torch's encoder, "
                             f"without obs.jit and obs.onnx (got kind={self.obs.kind}, jit={self.obs.jit}, "
                             f"onnx={self.obs.onnx})")
        if self.obs.jit and not self.obs.kind.startswith("latent"):
            raise ValueError(f"obs.jit needs a latent kind (latent, latent_proprio), got obs.kind={self.obs.kind}")
        if self.obs.encode_in == "workers" and not self.obs.kind.startswith("latent"):
            raise ValueError(f"obs.encode_in=workers needs a latent kind (latent, latent_proprio), got "
                             f"obs.kind={self.obs.kind}")
        if self.obs.proprio not in (8, 13):
            raise ValueError(f"obs.proprio must be 13 (PROPRIO13) or 8 (PROPRIO8), got {self.obs.proprio!r}")
        if self.obs.fine_scale < 0:
            raise ValueError(f"obs.fine_scale must be >= 0 (m; 0: no fine channels), got {self.obs.fine_scale!r}")
        if self.vec_env not in ("subproc", "dummy", "ray"):
            raise ValueError(f"vec_env must be 'subproc', 'dummy' or 'ray', got {self.vec_env!r}")
        if self.vec_env == "ray" and importlib.util.find_spec("ray") is None:
            raise ValueError("vec_env=ray needs Ray: pip install 'mmrep[ray]' (or pip install ray)")
        if self.pin_workers and self.vec_env != "subproc":
            raise ValueError(f"pin_workers=true binds worker processes to CPUs: it needs vec_env=subproc "
                             f"(vec_env is {self.vec_env!r})")
        if self.pin_workers and not hasattr(os, "sched_setaffinity"):
            raise ValueError("pin_workers=true needs os.sched_setaffinity (Linux); leave it false here")
        if self.ray_address is not None and self.vec_env != "ray":
            raise ValueError(f"ray_address={self.ray_address!r} needs vec_env=ray (vec_env is {self.vec_env!r})")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        for name in ("total_steps", "n_envs", "eval_every_steps", "ckpt_every_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.max_train_minutes is not None and not self.max_train_minutes > 0:
            raise ValueError(f"max_train_minutes must be > 0 or null, got {self.max_train_minutes!r}")
        if self.eval_episodes < 0:
            raise ValueError(f"eval_episodes must be >= 0, got {self.eval_episodes!r}")
        if self.keep_best and not self.eval_episodes:
            raise ValueError("keep_best=true keeps the policy of the best periodic evaluation: it needs "
                             "eval_episodes >= 1 (got 0, which turns the periodic evaluation off)")
        if self.init_policy is not None and not Path(self.init_policy).exists():
            raise ValueError(f"init_policy: {self.init_policy} does not exist (a finished run's policy.pt or folder)")
        if self.reset_seeds not in ("algorithm", "run"):
            raise ValueError(f"reset_seeds must be 'algorithm' (seed + i, as SB3 seeds) or 'run' (seed * 1000 + i), "
                             f"got {self.reset_seeds!r}")
        if self.seed * 1000 + self.n_envs > self.eval_seed:
            raise ValueError(f"training seeds (seed * 1000 + i, i < n_envs) reach eval_seed {self.eval_seed}: "
                             "lower seed")
        if isinstance(self.env, dict):  # built by hand from plain dicts (or a policy file's JSON)
            self.env = EnvConfig.from_kwargs(**self.env)
        try:
            self.env.validate()
        except ValueError as err:
            raise ValueError(f"env: {err}") from err
        for spec in self.perturbations:
            try:
                Setting.parse(spec)
            except ValueError as err:
                raise ValueError(f"perturbations: {err}") from err


@dataclass
class PolicyEvalConfig:
    """Everything ``mmrep policy eval`` reads."""

    policy: str = "runs/policy"  # a policy run folder (its policy.pt) or a policy.pt
    out: str | None = None  # default: <run folder>/eval
    episodes: int = 100  # per setting, shape and action mode
    seed: int = 2_000_000  # evaluation seeds seed + k: disjoint from training (< 1e6) and its periodic evaluation
    settings: list[str] = field(default_factory=lambda: ["clean"])  # sim.rl_env.CLOSED_LOOP names
    shapes: list[str] = field(default_factory=list)  # peg shapes; []: the one the policy was trained on
    modes: list[str] = field(default_factory=lambda: ["deterministic", "stochastic"])
    video: bool = True  # one rollout per setting (the first shape, deterministic) as a GIF
    camera_memory: bool | None = None  # hold the camera experts while it looks corrupted; None: as trained
    reject_flagged: bool | None = None  # leave out the experts the reliability flags flag; None: as trained
    # another file of the policy's frozen encoder (the same weights, checked) with other reliability
    # thresholds, e.g. set on the policy's own clean rollouts (python -m mmrep.reliability --policy RUN
    # --out FILE); None: the encoder the policy was trained with
    encoder: str | None = None
    # m below the block's top past which the vertical action is a steady press (the env's
    # controller.press_in_hole: a scripted insertion stage after the policy's search); None: as trained
    press_in_hole: float | None = None
    # m, the hole's clearance (hole width minus peg width) in the evaluation episodes: a policy trained
    # at one clearance tried at a tighter one; None: as trained
    clearance: float | None = None
    # m, a per-episode camera calibration error in the evaluation episodes (the env's
    # randomization.camera_target_error: the camera moves this far in a random horizontal direction);
    # None: as trained
    camera_target_error: float | None = None
    # a second policy run (on a frozen latent that does not read ``fallback_on``, e.g. no_haptics) that
    # takes over for the rest of an episode once the policy's ``fallback_on`` sensors have looked failed
    # for ``fallback_patience`` consecutive control steps (``mmrep.policy_handover``); None: no handover
    fallback: str | None = None
    fallback_on: list[str] = field(default_factory=lambda: ["force"])
    fallback_patience: int = 3  # control steps (50 ms each at 20 Hz)
    fallback_trigger: str = "flatline"  # flatline: readings that do not change; flags: the reliability flags
    # zero the F/T sensor at each reset, in free air, after the sensor's faults (sim.wrappers.TareForce):
    # a constant offset present at the start (F/T bias) is removed; None: as trained (obs.ft_tare)
    ft_tare: bool | None = None
    device: str = "cpu"
    threads: int | None = 1  # torch CPU threads (as PolicyConfig.threads)
    progress: bool = True

    def validate(self) -> None:
        from sim.config import PEG_SHAPES
        from sim.rl_env import CLOSED_LOOP

        unknown = [s for s in self.settings if s not in CLOSED_LOOP]
        if unknown or not self.settings:
            raise ValueError(f"settings: unknown {unknown}; valid: {sorted(CLOSED_LOOP)}")
        bad = [s for s in self.shapes if s not in PEG_SHAPES]
        if bad:
            raise ValueError(f"shapes: unknown {bad}; valid: {list(PEG_SHAPES)}")
        if not self.modes or any(m not in ("deterministic", "stochastic") for m in self.modes):
            raise ValueError(f"modes must be a non-empty list of 'deterministic' / 'stochastic', got {self.modes!r}")
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes!r}")
        if self.seed < 1_000_000:
            raise ValueError(f"seed must be >= 1000000 (training envs use seeds below), got {self.seed!r}")
        if self.fallback is not None:
            from mmrep.policy_handover import check_options

            check_options(self.fallback_trigger, self.fallback_patience)
            if not self.fallback_on:
                raise ValueError("fallback_on must name at least one sensor (e.g. [force])")
        if self.press_in_hole is not None and not self.press_in_hole > 0:
            raise ValueError(f"press_in_hole must be None or > 0 (m), got {self.press_in_hole!r}")
        if self.clearance is not None and not 0 < self.clearance <= 0.02:
            raise ValueError(f"clearance must be None or in (0, 0.02] m, got {self.clearance!r}")
        if self.camera_target_error is not None and not 0 <= self.camera_target_error <= 0.05:
            raise ValueError(f"camera_target_error must be None or in [0, 0.05] m, got {self.camera_target_error!r}")


def is_absent(name: str) -> bool:
    """Whether ``name`` is "<modality>/absent" (not a sim.perturb perturbation)."""
    mod, _, kind = name.partition("/")
    return kind == ABSENT and mod in MODALITY_REGISTRY


# ---------------------------------------------------------------------------------- Hydra plumbing
def config_dir() -> Path:
    """The Hydra config folder: ``$MMREP_CONFIG_DIR``, the copy shipped inside the installed package
    (``mmrep/configs``), or the repository's ``configs/`` (a source checkout or an editable install)."""
    env = os.environ.get("MMREP_CONFIG_DIR")
    here = Path(__file__).resolve().parent
    candidates = [Path(env)] if env else [here / "configs", here.parent / "configs"]
    for path in candidates:
        if (path / "collect.yaml").exists():
            return path
    raise FileNotFoundError(f"no Hydra configs in {', '.join(map(str, candidates))}; the package is "
                            f"installed without its configs (set MMREP_CONFIG_DIR to a copy of configs/)")


def register_configs() -> None:
    """Put the apps' dataclasses in Hydra's ConfigStore (the ``*_schema`` the YAML files extend)."""
    from hydra.core.config_store import ConfigStore

    from sim.collect import CollectConfig

    cs = ConfigStore.instance()
    from omegaconf import OmegaConf

    collect_schema = OmegaConf.structured(CollectConfig)
    # A policy mixture is a dict of any policy names: ``policies={expert:1.0}`` adds keys, which the
    # struct flag Hydra sets on every node would refuse.
    OmegaConf.set_struct(collect_schema.policies, False)
    OmegaConf.set_struct(collect_schema.policy_kwargs, False)
    cs.store(name="collect_schema", node=_open_task_options(collect_schema))
    train_schema = OmegaConf.structured(TrainConfig)
    # a network's own constructor arguments are its class's, not the schema's (docs/extending.md)
    OmegaConf.set_struct(train_schema.model.encoder_kwargs, False)
    cs.store(name="train_schema", node=train_schema)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="policy_schema", node=_open_task_options(OmegaConf.structured(PolicyConfig)))
    cs.store(name="policy_eval_schema", node=_open_task_options(OmegaConf.structured(PolicyEvalConfig)))


def _open_task_options(schema):
    """A task's own options are its dataclass's (``sim.task.task_options``), not the schema's: Hydra's
    struct flag would refuse ``"env.task_options={target_force: 8}"``."""
    from omegaconf import OmegaConf

    if "env" in schema:
        OmegaConf.set_struct(schema.env.task_options, False)
    return schema


def group_options(group: str) -> list[str]:
    """The options of a config group (``model``, ``env``, ...), from the YAML files in its folder."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def compose(app: str, overrides: list[str] | None = None):
    """The composed, typed config (an OmegaConf DictConfig) of ``app`` with ``overrides``, as the
    command line would compose it (for tests, benchmarks and notebooks)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    if app not in APPS:
        raise ValueError(f"unknown app {app!r}; one of {APPS}")
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name=app, overrides=list(overrides or []))


def app_config(cfg) -> Any:
    """The validated dataclass (``CollectConfig`` or ``TrainConfig``) of a composed config; ValueError
    naming the field's full name when a value is out of range."""
    from omegaconf import OmegaConf

    obj = OmegaConf.to_object(cfg)
    obj.validate()
    return obj


def collect_config(overrides: list[str] | None = None):
    """The validated ``CollectConfig`` that ``mmrep collect <overrides>`` would run."""
    return app_config(compose("collect", overrides))


def train_config(overrides: list[str] | None = None) -> TrainConfig:
    """The validated ``TrainConfig`` that ``mmrep train <overrides>`` would run."""
    return app_config(compose("train", overrides))


def _as_app_config(app: str, config) -> Any:
    """The validated dataclass of a config that may carry Hydra's own ``hydra`` node (callbacks)."""
    from omegaconf import OmegaConf

    from sim.collect import CollectConfig

    plain = OmegaConf.to_container(config, resolve=False)
    plain.pop("hydra", None)
    schema = {"collect": CollectConfig, "train": TrainConfig, "evaluate": EvaluateConfig, "policy": PolicyConfig,
              "policy_eval": PolicyEvalConfig}[app]
    return app_config(OmegaConf.merge(OmegaConf.structured(schema), plain))


class ValidateConfig(Callback):
    """Hydra callback: check every range before Hydra creates a folder or the app writes a file.
    A bad value ends the command with exit code 2 and ``mmrep <app>: error: <field> ...``."""

    def __init__(self, app: str) -> None:
        self.app = app

    def _check(self, config) -> None:
        import sys

        try:
            obj = _as_app_config(self.app, config)
            out = getattr(obj, "out", None)
            if out and Path(out).exists() and not Path(out).is_dir():  # before Hydra makes it its run folder
                raise ValueError(f"out={out} is an existing file, not a folder; choose another out=")
        except ValueError as err:
            print(f"mmrep {self.app}: error: {err}", file=sys.stderr)
            sys.exit(2)

    def on_run_start(self, config, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        self._check(config)


def app_error(app: str, err: BaseException) -> int:
    """Print ``mmrep <app>: error: <err>`` to stderr; the exit code of a refused run, 2."""
    import sys

    print(f"mmrep {app}: error: {err}", file=sys.stderr)
    return 2


def run_hydra_app(app: str, args: list[str], runner, command: str | None = None) -> int:
    """Run Hydra app ``app`` (``configs/<app>.yaml``) with command-line ``args`` (overrides, ``-m``,
    ``--cfg job``, ``--help``, ``--info`` ...), calling ``runner(cfg) -> exit code`` for each composed
    config, as ``mmrep <command> <args>`` (``command``: the CLI's words for it, e.g. ``policy train``;
    default ``app``), which is what the run's provenance records; return the exit code (2 for a usage
    error)."""
    import sys

    import hydra

    register_configs()
    codes: list[int] = []

    def task(cfg) -> None:
        codes.append(runner(cfg))

    main_fn = hydra.main(config_path=str(config_dir()), config_name=app, version_base="1.3")(task)
    saved = sys.argv
    sys.argv = [f"mmrep {command or app}", *args]
    try:
        main_fn()
    except SystemExit as exit_:
        if exit_.code not in (None, 0):  # Hydra exits 1 on a bad override or group option: a usage error
            return 2 if exit_.code == 1 or not isinstance(exit_.code, int) else exit_.code
    finally:
        sys.argv = saved
    return max(codes, default=0)
