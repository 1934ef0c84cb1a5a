"""``mmrep policy train``: a policy on the representation, with SB3 / sb3-contrib.

The pipeline (``build_venv``): ``WatchedSubprocVecEnv`` (SB3's ``SubprocVecEnv``, failing when a
worker dies; or ``DummyVecEnv``) of ``sim.rl_env`` envs, then the frozen encoder in the main process
(``VecLatentObservation``, latent kinds; or inside each worker with ``obs.encode_in=workers``,
``mmrep.rl.worker``), then a running observation normaliser (``VecNormalize``, clipped at +-5, the
paper's policy code; not for pixels). The pixels kind trains ``MultimodalExtractor`` (randomly
initialised) end to end.

A run folder holds::

    config.json          the PolicyConfig
    provenance.jsonl     one line per start and resume: the code's commit, package versions, CPU, steps
                         done (``sim.provenance``)
    checkpoint.pt        policy and optimiser weights, timesteps, normaliser statistics, the training's
                         wall and CPU seconds so far (weights_only)
    replay_buffer.npz    SAC only: the replay buffer's arrays
    eval.jsonl           periodic evaluations on held-out seeds, mean and sampled actions, each with the
                         training's wall and CPU seconds up to it (``train_seconds``, ``cpu_seconds``)
    curves.png           their success rates against env steps (``mmrep.policy_curves``)
    tb/                  TensorBoard
    policy.pt            the final policy: weights, config and normaliser statistics (weights_only)
    best/policy.pt       with ``keep_best``: the policy at its best periodic evaluation (mean action,
                         the later one on ties), and best/eval.json that evaluation's row

Everything is written atomically; the same command resumes from ``checkpoint.pt`` (the sub-envs
restart their episodes, seeded from the training seed and the steps done, ``resume_env_seed``; the
counters, weights and normaliser continue). Nothing is pickled: a policy file is
loaded with ``torch.load(weights_only=True)`` and rebuilt from its JSON config.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper, VecNormalize

from mmrep.config import SELECT_SEED_OFFSET, AlgoConfig, DemoConfig, ObsConfig, PolicyConfig
from mmrep.encoder import load_encoder, random_like
from mmrep.policy_curves import plot_curves, read_evaluations
from mmrep.rl.cpu_time import CpuMeter
from mmrep.rl.sb3 import MultimodalExtractor, VecLatentObservation
from mmrep.rl.subproc import WatchedSubprocVecEnv
from mmrep.rl.worker import make_latent_policy_env
from mmrep.torch_files import FileLoadError, load_torch_file, save_atomic, write_atomic
from sim.atomic import write_text_atomic
from sim.config import IN_HOLE_DEPTH, EnvConfig, merge_nested
from sim.provenance import append_provenance
from sim.rl_env import make_rl_env
from sim.run_lock import run_lock

POLICY_FORMAT = "mmrep-policy-1"
CLIP_OBS = 5.0


def algo_class(name: str):
    """The SB3 / sb3-contrib class of ``algo.name``."""
    if name in ("trpo", "recurrent_ppo"):
        from sb3_contrib import TRPO, RecurrentPPO

        return {"trpo": TRPO, "recurrent_ppo": RecurrentPPO}[name]
    from stable_baselines3 import PPO, SAC

    return {"ppo": PPO, "sac": SAC}[name]


def resolve_device(device: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def build_venv(cfg: PolicyConfig, n_envs: int, seed: int, vec_env: str | None = None,
               env_overrides: dict[str, Any] | None = None, perturbations: list[str] | None = None,
               render: bool = False, expert: str | None = None) -> VecEnv:
    """The vectorised env of ``cfg`` (before normalisation), its sub-envs seeded ``seed + i``;
    ``env_overrides`` merge into ``cfg.env`` (nested sections too); latent kinds encode with
    ``cfg.obs.camera_memory``; ``expert``: each sub-env also says what that scripted expert would do
    (``env_method("expert_action")``, ``sim.wrappers.ExpertAdvice``)."""
    env = merge_nested(asdict(cfg.env), env_overrides or {})
    perturbations = cfg.perturbations if perturbations is None else perturbations
    kind = vec_env or cfg.vec_env
    latent = cfg.obs.kind in ("latent", "latent_proprio")
    proprio8 = cfg.obs.kind == "latent_proprio" and cfg.obs.proprio == 8
    extra = (("proprio8",) if proprio8 else ("proprio",)) if cfg.obs.kind == "latent_proprio" else ()
    command = latent and cfg.obs.command
    extra += ("command",) if command else ()
    # Encoding in the workers only where there are workers: a single (evaluation) env encodes in place.
    in_workers = latent and cfg.obs.encode_in == "workers" and kind != "dummy" and n_envs > 1
    if in_workers:
        fns = [partial(make_latent_policy_env, env, tuple(perturbations), seed + i, "rgb_array" if render else None,
                       str(cfg.obs.encoder), extra, cfg.obs.camera_memory,
                       cfg.seed if cfg.obs.random_init else None, jit=cfg.obs.jit, onnx=cfg.obs.onnx,
                       proprio8=proprio8, reject_flagged=cfg.obs.reject_flagged, command=command,
                       camera_odometry=cfg.obs.camera_odometry, ft_tare=cfg.obs.ft_tare, expert=expert)
               for i in range(n_envs)]
    else:
        fns = [partial(make_rl_env, env, tuple(perturbations), cfg.obs.kind == "state", seed + i,
                       "rgb_array" if render else None, cfg.obs.fine_scale, proprio8, command, cfg.obs.ft_tare,
                       expert)
               for i in range(n_envs)]
    venv: VecEnv
    if kind == "ray":
        from mmrep.rl.ray_vec_env import RayVecEnv

        venv = RayVecEnv(fns, address=cfg.ray_address)
    else:
        venv = (WatchedSubprocVecEnv(fns, pin_cpus=cfg.pin_workers) if kind == "subproc" and n_envs > 1
                else DummyVecEnv(fns))
    venv.seed(seed)
    if latent and not in_workers:
        encoder = load_encoder(cfg.obs.encoder)
        if cfg.obs.random_init:
            encoder = random_like(encoder, seed=cfg.seed)
        venv = VecLatentObservation(venv, encoder, extra_keys=extra, device=resolve_device(cfg.device),
                                    camera_memory=cfg.obs.camera_memory, jit=cfg.obs.jit, onnx=cfg.obs.onnx,
                                    reject_flagged=cfg.obs.reject_flagged, camera_odometry=cfg.obs.camera_odometry)
    return venv


def normalizes(cfg: PolicyConfig) -> bool:
    return cfg.normalize and cfg.obs.kind != "pixels"


def learner_gamma(cfg: PolicyConfig) -> float:
    """The learner's discount factor (``algo.params.gamma``; SB3's default 0.99)."""
    return float(cfg.algo.params.get("gamma", 0.99))


def with_normalizer(cfg: PolicyConfig, venv: VecEnv) -> VecEnv:
    """The training ``venv`` wrapped in SB3's ``VecNormalize`` where ``cfg`` normalises the observations
    (``normalize``, not for pixels) or scales the rewards (``normalize_reward``, by the running std of
    the discounted return at the learner's ``gamma``); unchanged where neither."""
    if not (normalizes(cfg) or cfg.normalize_reward):
        return venv
    gamma = learner_gamma(cfg)
    return VecNormalize(venv, norm_obs=normalizes(cfg), norm_reward=cfg.normalize_reward, clip_obs=CLIP_OBS,
                        gamma=gamma)


ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "elu": torch.nn.ELU}


class LinearSchedule:
    """A learning rate decaying linearly from ``initial`` to 0 over the run (``algo.params.
    learning_rate_schedule: linear``); SB3 calls it with the progress remaining (1 -> 0)."""

    def __init__(self, initial: float) -> None:
        self.initial = initial

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * progress_remaining


def build_model(cfg: PolicyConfig, venv: VecEnv, tensorboard_log: str | None = None):
    """The algorithm with its policy on ``venv`` (pixels: a MultiInputPolicy with the trainable
    multimodal extractor; otherwise an MlpPolicy; their LSTM versions for ``recurrent_ppo``).

    ``algo.params.policy_kwargs`` (e.g. ``{"net_arch": [256, 256], "log_std_init": -1.0,
    "activation_fn": "relu"}``) merge into the policy's own; ``activation_fn`` is a name of
    ``ACTIVATIONS`` because a config holds no classes. ``algo.params.learning_rate_schedule``: "constant"
    (the default) or "linear" (``LinearSchedule`` from ``learning_rate`` to 0)."""
    cls = algo_class(cfg.algo.name)
    params = dict(cfg.algo.params)
    schedule = params.pop("learning_rate_schedule", "constant")
    if schedule not in ("constant", "linear"):
        raise ValueError(f"algo.params.learning_rate_schedule must be 'constant' or 'linear', got {schedule!r}")
    if schedule == "linear":  # SB3 calls it with the progress remaining, 1 at the start to 0 at total_steps
        params["learning_rate"] = LinearSchedule(float(params.get("learning_rate", 3e-4)))
    policy_kwargs: dict[str, Any] = dict(params.pop("policy_kwargs", None) or {})
    if isinstance(policy_kwargs.get("activation_fn"), str):
        name = policy_kwargs["activation_fn"]
        if name not in ACTIVATIONS:
            raise ValueError(f"algo.params.policy_kwargs.activation_fn must be one of {sorted(ACTIVATIONS)}, "
                             f"got {name!r}")
        policy_kwargs["activation_fn"] = ACTIVATIONS[name]
    policy = "MlpPolicy"
    if cfg.obs.kind == "pixels":
        policy = "MultiInputPolicy"
        image_size = int(cfg.env.image_size)
        policy_kwargs.update(features_extractor_class=MultimodalExtractor,
                             features_extractor_kwargs=dict(model_config={"image_size": image_size}, freeze=False))
    if cfg.algo.name == "recurrent_ppo":
        policy = policy.replace("Policy", "LstmPolicy")
    try:
        return cls(policy, venv, seed=cfg.seed, device=resolve_device(cfg.device), verbose=0,
                   tensorboard_log=tensorboard_log, policy_kwargs=policy_kwargs or None, **params)
    except TypeError as err:  # SB3's "unexpected keyword argument": name where it came from
        if "unexpected keyword argument" not in str(err):
            raise
        raise ValueError(f"algo.params: {cls.__name__} does not take these parameters ({err}); the "
                         f"{cfg.algo.name} algorithm's own arguments are in SB3's documentation") from err


# ------------------------------------------------------------------------------ weights, no pickles
def _optimizers(model) -> dict[str, torch.optim.Optimizer]:
    opts = {}
    for name, owner in (("policy", model.policy), ("actor", getattr(model, "actor", None)),
                        ("critic", getattr(model, "critic", None))):
        opt = getattr(owner, "optimizer", None) if owner is not None else None
        if opt is not None and all(opt is not o for o in opts.values()):
            opts[name] = opt
    if getattr(model, "ent_coef_optimizer", None) is not None:
        opts["ent_coef"] = model.ent_coef_optimizer
    return opts


def obs_normalizer(venv) -> RunningMeanStd | None:
    """The running observation statistics of a ``VecNormalize`` that normalises observations, else None
    (none, or one that scales only the rewards)."""
    return venv.obs_rms if isinstance(venv, VecNormalize) and venv.norm_obs else None


def _rms_tensors(rms: RunningMeanStd) -> dict[str, Any]:
    """Running statistics as tensors and a float (weights-only loadable; ``_rms`` reads them back)."""
    return {"mean": torch.as_tensor(rms.mean), "var": torch.as_tensor(rms.var), "count": float(rms.count)}


def _rms_state(venv) -> dict[str, Any] | None:
    rms = obs_normalizer(venv)
    return None if rms is None else _rms_tensors(rms)


def _load_rms(venv, state: dict[str, Any] | None) -> None:
    if state is None or obs_normalizer(venv) is None:
        return
    venv.obs_rms = _rms(state)


def _return_state(venv) -> dict[str, Any] | None:
    """``normalize_reward``'s running statistics of the discounted return, for a resume that scales the
    rewards by what the run has seen (each sub-env's return so far restarts at 0 with its episode: a
    resume starts new episodes)."""
    if not (isinstance(venv, VecNormalize) and venv.norm_reward):
        return None
    return _rms_tensors(venv.ret_rms)


def _load_return_state(venv, state: dict[str, Any] | None) -> None:
    if state is None or not (isinstance(venv, VecNormalize) and venv.norm_reward):
        return
    venv.ret_rms = _rms(state)


def _rms(state: dict[str, Any]) -> RunningMeanStd:
    rms = RunningMeanStd(shape=tuple(state["mean"].shape))
    rms.mean = state["mean"].numpy().astype(np.float64)
    rms.var = state["var"].numpy().astype(np.float64)
    rms.count = state["count"]
    return rms


def save_checkpoint(model, venv, out: Path, train_seconds: float = 0.0, cpu_seconds: float | None = None) -> None:
    """Weights, optimiser states, counters (env steps, updates, training wall and CPU seconds over
    every resume; CPU ``None``: not known, ``mmrep.rl.cpu_time``) and normaliser statistics; SAC's
    replay buffer as arrays."""
    state = {"format": POLICY_FORMAT, "num_timesteps": int(model.num_timesteps), "train_seconds": float(train_seconds),
             "cpu_seconds": None if cpu_seconds is None else float(cpu_seconds),
             "n_updates": int(getattr(model, "_n_updates", 0)), "policy": model.policy.state_dict(),
             "optimizers": {k: o.state_dict() for k, o in _optimizers(model).items()}, "obs_rms": _rms_state(venv),
             "ret_rms": _return_state(venv)}
    if getattr(model, "log_ent_coef", None) is not None:
        state["log_ent_coef"] = model.log_ent_coef.detach().cpu()
    buf = getattr(model, "replay_buffer", None)
    if buf is not None:
        data = io.BytesIO()
        np.savez(data, observations=buf.observations, next_observations=buf.next_observations, actions=buf.actions,
                 rewards=buf.rewards, dones=buf.dones, timeouts=buf.timeouts, pos=buf.pos, full=buf.full)
        write_atomic(data.getbuffer(), out / "replay_buffer.npz")
    save_atomic(state, out / "checkpoint.pt")


def load_checkpoint(model, venv, out: Path) -> tuple[int, float, float | None]:
    """Restore what ``save_checkpoint`` wrote; returns the timesteps done and the training wall and CPU
    seconds spent on them ((0, 0.0, 0.0) without a checkpoint; a checkpoint older than the fields reads
    0 wall seconds and CPU ``None``: not known)."""
    path = out / "checkpoint.pt"
    if not path.exists():
        return 0, 0.0, 0.0
    state = load_torch_file(path, "policy checkpoint", "it is truncated or damaged: move it away to train "
                            "again from the start (policy.pt, when present, holds the last finished policy)",
                            map_location=model.device)
    if not isinstance(state, dict) or state.get("format") != POLICY_FORMAT:
        raise ValueError(f"{path} is not an mmrep policy checkpoint (format {state.get('format')!r})")
    model.policy.load_state_dict(state["policy"])
    for name, opt in _optimizers(model).items():
        opt.load_state_dict(state["optimizers"][name])
    if "log_ent_coef" in state:
        with torch.no_grad():
            model.log_ent_coef.copy_(state["log_ent_coef"])
    _load_rms(venv, state["obs_rms"])
    _load_return_state(venv, state.get("ret_rms"))
    buf = getattr(model, "replay_buffer", None)
    if buf is not None and (out / "replay_buffer.npz").exists():
        try:
            arrays = dict(np.load(out / "replay_buffer.npz", allow_pickle=False))
        except (OSError, ValueError, EOFError) as err:
            raise FileLoadError(f"replay buffer {out / 'replay_buffer.npz'} cannot be loaded ({err}); move it "
                                f"and checkpoint.pt away to train again from the start") from None
        for key in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
            getattr(buf, key)[...] = arrays[key]
        buf.pos, buf.full = int(arrays["pos"]), bool(arrays["full"])
    model.num_timesteps = state["num_timesteps"]
    model._n_updates = state["n_updates"]
    cpu = state.get("cpu_seconds")
    return int(state["num_timesteps"]), float(state.get("train_seconds", 0.0)), None if cpu is None else float(cpu)


def save_policy(model, venv, cfg: PolicyConfig, path: Path, train_seconds: float = 0.0,
                cpu_seconds: float | None = None) -> None:
    """The final policy: weights, its config as JSON, the normaliser statistics, the env steps it
    trained on and the training wall and CPU seconds they took (CPU ``None``: not known)."""
    save_atomic({"format": POLICY_FORMAT, "config": json.dumps(asdict(cfg)), "policy": model.policy.state_dict(),
                 "obs_rms": _rms_state(venv), "num_timesteps": int(model.num_timesteps),
                 "train_seconds": float(train_seconds),
                 "cpu_seconds": None if cpu_seconds is None else float(cpu_seconds)}, path)


def save_best(model, venv, cfg: PolicyConfig, out: Path, row: dict[str, Any], usage: dict[str, float | None]) -> None:
    """``keep_best``: the policy as it is now in ``out/best/policy.pt`` (``save_policy``'s format, so
    ``mmrep policy eval policy=<run>/best`` evaluates it) and the evaluation that chose it in
    ``out/best/eval.json``. ``usage``: ``TrainingCallback.usage``."""
    best = out / "best"
    best.mkdir(exist_ok=True)
    save_policy(model, venv, cfg, best / "policy.pt", **usage)
    write_text_atomic(best / "eval.json", json.dumps(row, indent=2))


# ------------------------------------------------------------------------------ evaluation
def run_episodes(model, venv: VecEnv, seeds: list[int], deterministic: bool = True,
                 obs_rms: RunningMeanStd | None = None, recorder: list | None = None,
                 on_step: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """One episode per seed on a single-env ``venv`` (``venv.seed(s)`` then reset): success, steps,
    return, peak step-mean and peak substep contact force (N, from the wrist sensor), and the tip's
    final distance from the hole's axis and depth below its top (mm). ``recorder``
    (a list, with a ``render=True`` venv) receives (camera frame, F/T readings) per step of the first
    episode; ``on_step`` is called with each step's info, the episode's last included."""
    episodes = []
    for k, s in enumerate(seeds):
        # Sampled actions draw from torch's global stream: seeding it per episode (in a fork, so the
        # caller's stream is left as it was) makes each episode replay alone, in any order or resume.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(s))
            episodes.append(_run_episode(model, venv, int(s), deterministic, obs_rms,
                                         recorder if k == 0 else None, on_step))
    return episodes


def run_episodes_together(model, venv: VecEnv, seeds: list[int], obs_rms: RunningMeanStd | None = None
                          ) -> tuple[list[dict[str, Any]], int]:
    """One episode per seed, the mean action acting, on all of ``venv``'s sub-envs at once: each
    sub-env starts the next seed as its episode ends (``reset(seed=s)`` after the vec env's own
    reset, the sequence ``run_episodes`` makes on one env), so each episode starts as the one
    ``run_episodes`` runs on that seed, and the policy acts on one observation at a time (a batch of
    two can round differently from a batch of one). An encoder in the workers gives the main
    process's z to 1e-5, enough to end an episode near a decision otherwise (measured 2026-12-07: a
    clone's successes of 24 moved by up to 3). ``venv``: a plain ``SubprocVecEnv``/
    ``DummyVecEnv`` (no vec wrapper: its sub-envs' resets must return what the policy sees, e.g.
    encoded in the workers). Returns per seed, in ``seeds``' order, {seed, success, steps, return},
    and every step the sub-envs took, those after the last seeds' ends (sub-envs left without a seed
    step on until the last episode ends) included."""
    if isinstance(venv, VecEnvWrapper):
        raise ValueError(f"run_episodes_together needs the sub-envs' own resets, not a {type(venv).__name__}")
    n = venv.num_envs
    pending = list(seeds)
    obs = np.array(venv.reset())  # a writable copy: a sub-env's next reset replaces its row
    running: list[dict[str, Any] | None] = [None] * n

    def start(i: int) -> None:
        if not pending:
            running[i] = None
            return
        s = int(pending.pop(0))
        first, _ = venv.env_method("reset", seed=s, indices=[i])[0]
        obs[i] = first
        running[i] = {"seed": s, "success": False, "steps": 0, "return": 0.0}

    for i in range(n):
        start(i)
    done_episodes: dict[int, dict[str, Any]] = {}
    steps = 0
    while any(r is not None for r in running):
        x = normalize_obs(obs, obs_rms)
        actions = np.stack([model.predict(x[i:i + 1], deterministic=True)[0][0] for i in range(n)])
        obs, rewards, dones, infos = venv.step(actions)
        obs = np.array(obs)
        steps += n
        for i, episode in enumerate(running):
            if episode is None:
                continue
            episode["steps"] += 1
            episode["return"] += float(rewards[i])
            if dones[i]:
                episode["success"] = bool(infos[i].get("is_success", False))
                done_episodes[episode["seed"]] = episode
                start(i)
    return [done_episodes[int(s)] for s in seeds], steps


def normalize_obs(obs: np.ndarray, obs_rms: RunningMeanStd | None) -> np.ndarray:
    """``obs`` as the policy saw it in training: standardised by the saved running statistics and
    clipped to +-CLIP_OBS (VecNormalize's rule), or unchanged when the policy had none."""
    if obs_rms is None:
        return obs
    return np.clip((obs - obs_rms.mean) / np.sqrt(obs_rms.var + 1e-8), -CLIP_OBS, CLIP_OBS).astype(np.float32)


def _run_episode(model, venv: VecEnv, s: int, deterministic: bool, obs_rms: RunningMeanStd | None,
                 recorder: list | None, on_step: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """One episode of ``run_episodes`` on seed ``s``."""
    venv.seed(s)
    obs = venv.reset()
    ret, steps, peak_mean, peak_sub = 0.0, 0, 0.0, 0.0
    memory, starts = None, np.ones((1,), dtype=bool)  # a recurrent policy's state, reset at the episode's start
    while True:
        x = normalize_obs(obs, obs_rms)
        action, memory = model.predict(x, state=memory, episode_start=starts, deterministic=deterministic)
        starts = np.zeros((1,), dtype=bool)
        obs, reward, done, infos = venv.step(action)
        ret += float(reward[0])
        steps += 1
        if on_step is not None:
            on_step(infos[0])
        raw = infos[0].get("raw_force")
        if recorder is not None and not done[0]:  # after done the env has already reset
            recorder.append((venv.get_images()[0], None if raw is None else np.asarray(raw)))
        if raw is not None:
            norms = np.linalg.norm(np.asarray(raw)[:, :3], axis=1)
            peak_sub = max(peak_sub, float(norms.max()))
            peak_mean = max(peak_mean, float(norms.mean()))
        if done[0]:
            info = infos[0]
            return {"seed": s, "success": bool(info.get("is_success", False)), "steps": steps,
                    "return": ret, "peak_force_step_mean_n": peak_mean, "peak_force_substep_n": peak_sub,
                    # where the episode ended: how far off the hole's axis and how deep (mm)
                    "final_offset_mm": 1000 * float(info.get("hole_distance", float("nan"))),
                    "final_depth_mm": 1000 * float(info.get("insertion_depth", float("nan")))}


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a success rate (robust at 0 and n, unlike mean +- 2 SE)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


IN_HOLE_OFFSET_MM = 5.0  # mm from the hole's axis: a tip this close and below the block's top is in the hole


def ended_in_hole(episode: dict[str, Any]) -> bool:
    """Whether an episode ended with the tip in the hole: inserted, or more than ``sim.config.IN_HOLE_DEPTH``
    (1 mm) below the block's top within ``IN_HOLE_OFFSET_MM`` of the axis (the block is solid around the
    hole, so such a tip can only be inside it). On the touch setting this separates finding the hole
    (what touch is for) from finishing the insertion in the time limit."""
    if episode["success"]:
        return True
    depth, offset = episode.get("final_depth_mm"), episode.get("final_offset_mm")
    return (depth is not None and offset is not None and depth > IN_HOLE_DEPTH * 1000
            and offset < IN_HOLE_OFFSET_MM)


def summarize(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(episodes)
    wins = [e for e in episodes if e["success"]]
    lo, hi = wilson_interval(len(wins), n)
    return {"episodes": n, "success_rate": len(wins) / n if n else float("nan"), "success_ci95": [lo, hi],
            "in_hole_rate": sum(map(ended_in_hole, episodes)) / n if n else float("nan"),
            "mean_steps_to_success": float(np.mean([e["steps"] for e in wins])) if wins else None,
            "mean_return": float(np.mean([e["return"] for e in episodes])) if n else None,
            "peak_force_step_mean_n": max((e["peak_force_step_mean_n"] for e in episodes), default=None),
            "peak_force_substep_n": max((e["peak_force_substep_n"] for e in episodes), default=None),
            # why failures fail: a median offset above the clearance is a peg on the rim, beside the hole
            "failures_median_offset_mm": _median([e.get("final_offset_mm") for e in episodes if not e["success"]]),
            "failures_median_depth_mm": _median([e.get("final_depth_mm") for e in episodes if not e["success"]])}


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.median(vals)) if vals else None


class TrainingCallback(BaseCallback):
    """Checkpoints every ``ckpt_every_steps`` and evaluates (deterministic actions, held-out seeds)
    every ``eval_every_steps``: ``eval.jsonl`` and TensorBoard ``eval/success_rate``. With
    ``max_train_minutes`` it stops training once that much wall clock (over every resume, periodic
    evaluations included) is spent."""

    def __init__(self, cfg: PolicyConfig, out: Path, venv: VecEnv, eval_venvs: dict[str, VecEnv],
                 prior_seconds: float = 0.0, prior_cpu_seconds: float | None = 0.0) -> None:
        super().__init__()
        self.cfg, self.out, self.venv, self.eval_venvs = cfg, out, venv, eval_venvs
        self.next_ckpt = self.next_eval = 0
        self.prior_seconds, self.started = prior_seconds, time.time()
        self.cpu = CpuMeter(venv, prior_cpu_seconds)

    @property
    def train_seconds(self) -> float:
        """Training wall seconds of this run so far, earlier sessions of it included."""
        return self.prior_seconds + time.time() - self.started

    @property
    def usage(self) -> dict[str, float | None]:
        """Training wall and CPU seconds of this run so far, earlier sessions included (CPU of this
        process and its env workers, ``mmrep.rl.cpu_time``; ``None`` where not known)."""
        return {"train_seconds": self.train_seconds, "cpu_seconds": self.cpu.seconds}

    def _on_training_start(self) -> None:
        n = self.model.num_timesteps
        self.next_ckpt = (n // self.cfg.ckpt_every_steps + 1) * self.cfg.ckpt_every_steps
        self.next_eval = (n // self.cfg.eval_every_steps + 1) * self.cfg.eval_every_steps

    def _on_step(self) -> bool:
        n = self.model.num_timesteps
        if n >= self.next_ckpt:
            save_checkpoint(self.model, self.venv, self.out, **self.usage)
            self.next_ckpt += self.cfg.ckpt_every_steps
        if n >= self.next_eval and self.eval_venvs:
            self.evaluate()
            self.next_eval += self.cfg.eval_every_steps
        return not out_of_time(self.cfg, self.train_seconds) and not self._past_total(n)

    def _past_total(self, n: int) -> bool:
        """Whether an on-policy rollout has reached ``total_steps`` before its end: it stops there (its
        partial rollout is not trained on) instead of running on by up to a rollout, e.g. after a resume
        from a checkpoint taken in the middle of one. A rollout that ends exactly there is trained on."""
        rollout = self.locals.get("n_rollout_steps")
        if rollout is None or n < self.cfg.total_steps:
            return False
        return int(self.locals.get("n_steps", 0)) + 1 < int(rollout)

    def evaluate(self) -> dict[str, Any]:
        row = evaluate_keeping_best(self.model, self.cfg, self.venv, self.eval_venvs, self.out, self.usage)
        self.logger.record("eval/success_rate", row["success_rate"])
        for name, summary in row.get("settings", {}).items():
            self.logger.record(f"eval/success_rate_{name}", summary["success_rate"])
        if "selection" in row:
            self.logger.record("eval/selection", row["selection"])
        if "stochastic" in row:
            self.logger.record("eval/success_rate_stochastic", row["stochastic"]["success_rate"])
        if row["mean_steps_to_success"] is not None:
            self.logger.record("eval/steps_to_success", row["mean_steps_to_success"])
        return row


def invalid_action_distribution_message(model, err: Exception) -> str:
    """What torch's unnamed "invalid values" of the action distribution (SB3's ``Normal`` with a NaN
    or inf mean or scale) came from: the policy's weights (which parameters are not finite, or the
    largest magnitude), the last observation the policy read, and the learner's values not yet
    written (SB3 writes an update's losses only after the next rollout, so a crash loses them)."""
    weights = {name: p.detach() for name, p in model.policy.named_parameters()}
    bad = [name for name, p in weights.items() if not torch.isfinite(p).all()]
    if bad:
        where = f"non-finite weights in {len(bad)} parameters ({', '.join(bad[:4])}{', ...' if len(bad) > 4 else ''})"
    else:
        where = f"every weight finite, the largest |w| {max(float(p.abs().max()) for p in weights.values()):.3g}"
    last_obs = getattr(model, "_last_obs", None)
    if last_obs is None:
        obs = "not recorded"
    else:
        parts = last_obs.values() if isinstance(last_obs, dict) else [last_obs]
        obs = "finite" if all(np.isfinite(v).all() for v in parts) else "not finite"
    losses = ", ".join(f"{k}={v:.4g}" for k, v in sorted(model.logger.name_to_value.items())
                       if k.startswith("train/") and isinstance(v, (int, float)))
    first = str(err).splitlines()[0][:300]
    return (f"the policy's action distribution was not finite at env step {model.num_timesteps}: {where}; "
            f"the last observation read {obs}; the learner's last values: {losses or 'none recorded'} "
            f"(torch: {first}). The same command resumes from the last checkpoint (checkpoint.pt)")


def selection_score(row: dict[str, Any]) -> float:
    """What ``keep_best`` ranks a periodic evaluation by: the mean success over its ``eval_settings``
    (``row["selection"]``), or its success rate where it ran one env."""
    return float(row.get("selection", row["success_rate"]))


def selects_alike(row: dict[str, Any], cfg: PolicyConfig) -> bool:
    """Whether periodic evaluation ``row`` is one of this run's own (not ``brought_along`` from an
    ``init_policy``: that policy is not in this run's ``best/``) and ran the settings
    ``cfg.eval_settings`` names; only those compete for ``keep_best``."""
    return not row.get("brought_along") and list(row.get("settings", {})) == list(cfg.eval_settings)


def evaluate_keeping_best(model, cfg: PolicyConfig, venv: VecEnv, eval_venvs: dict[str, VecEnv], out: Path,
                          usage: dict[str, float | None]) -> dict[str, Any]:
    """``evaluate_held_out``, and with ``cfg.keep_best`` the policy saved to ``best/`` when this
    evaluation ranks (``selection_score``) at least as high as the one of the policy kept so far
    (``kept_evaluation``), then its row appended to ``eval.jsonl``.
    The periodic evaluations and the one at the end of training (also at a ``max_train_minutes`` stop)
    all go through here: an end-of-training row that is never saved would still outrank every later
    one after a resume. ``usage``: the training's wall and CPU seconds before this evaluation
    (``TrainingCallback.usage``), written into its row."""
    row = evaluate_held_out(model, cfg, venv, eval_venvs, out, usage, append=False)
    kept = kept_evaluation(out, cfg) if cfg.keep_best else None
    if cfg.keep_best and (kept is None or selection_score(row) >= selection_score(kept)):
        # saved before its row is written: a kill between the two never leaves a row that outranks
        # the policy kept without being it
        save_best(model, venv, cfg, out, row, usage)
    append_evaluation(out, row)
    return row


def kept_evaluation(out: Path, cfg: PolicyConfig) -> dict[str, Any] | None:
    """The periodic evaluation of the policy ``keep_best`` holds in ``out/best/`` (``best/eval.json``),
    or None where none is kept yet (or it ran other settings). What a new evaluation must match or beat:
    compared with the policy actually kept, not with rows of ``eval.jsonl`` (two rows at one env-step
    count, a periodic one before the last update and the final one after it, keep only the later
    there)."""
    path = out / "best" / "eval.json"
    if not (path.exists() and (out / "best" / "policy.pt").exists()):
        return None
    row = json.loads(path.read_text())
    return row if selects_alike(row, cfg) else None


def append_evaluation(out: Path, row: dict[str, Any]) -> None:
    """Append one periodic evaluation to ``out/eval.jsonl``."""
    with open(out / "eval.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def out_of_time(cfg: PolicyConfig, train_seconds: float) -> bool:
    """Whether the wall-clock budget (``max_train_minutes``; None: no budget) is spent."""
    return cfg.max_train_minutes is not None and train_seconds >= cfg.max_train_minutes * 60


def build_eval_venvs(cfg: PolicyConfig) -> dict[str, VecEnv]:
    """The periodic evaluation's single envs (in the main process), seeded ``cfg.eval_seed``: one per
    ``cfg.eval_settings`` name with that setting's env overrides and perturbations (as ``mmrep policy
    eval`` builds it), or ``{"": the training env as configured}`` where none is named; ``{}`` with
    ``eval_episodes=0``."""
    from sim.rl_env import CLOSED_LOOP

    if not cfg.eval_episodes:
        return {}
    if not cfg.eval_settings:
        return {"": build_venv(cfg, 1, cfg.eval_seed, vec_env="dummy")}
    return {name: build_venv(cfg, 1, cfg.eval_seed, vec_env="dummy", env_overrides=CLOSED_LOOP[name][0],
                             perturbations=list(CLOSED_LOOP[name][1])) for name in cfg.eval_settings}


def evaluate_held_out(model, cfg: PolicyConfig, venv: VecEnv, eval_venvs: dict[str, VecEnv], out: Path,
                      usage: dict[str, float | None] | None = None, append: bool = True) -> dict[str, Any]:
    """Episodes on the held-out seeds ``eval_seed + k`` with the mean action (the row's top level) and,
    with ``cfg.eval_stochastic``, the same seeds with sampled actions (``row["stochastic"]``: training's
    success can come from the action noise alone), in each env of ``eval_venvs``
    (``build_eval_venvs``); with ``cfg.eval_settings`` the row's top level is the first setting's, each
    setting's summary is under ``row["settings"]`` and their mean success is ``row["selection"]``.
    The row carries ``usage`` (the training's wall and CPU seconds so far, ``train_seconds`` and
    ``cpu_seconds``) and is appended to ``eval.jsonl`` (with ``append=False`` the caller appends it)."""
    seeds = [cfg.eval_seed + k for k in range(cfg.eval_episodes)]
    rms = obs_normalizer(venv)
    t0 = time.time()
    summaries = {}
    for name, eval_venv in eval_venvs.items():
        summaries[name] = summarize(run_episodes(model, eval_venv, seeds, True, rms))
        if cfg.eval_stochastic:
            summaries[name]["stochastic"] = summarize(run_episodes(model, eval_venv, seeds, False, rms))
    row = {"timesteps": int(model.num_timesteps), **next(iter(summaries.values()))}
    if cfg.eval_settings:
        row["settings"] = summaries
        row["selection"] = float(np.mean([s["success_rate"] for s in summaries.values()]))
    row["seconds"] = time.time() - t0
    row.update(usage or {})
    if append:  # else the caller appends it (evaluate_keeping_best: after saving the policy)
        append_evaluation(out, row)
    return row


def _check_same_config(out: Path, cfg: PolicyConfig, write: bool = True) -> None:
    """``ValueError`` naming the fields where ``out/config.json`` holds another run's learning settings;
    with ``write``, then (over)write it with ``cfg``."""
    path = out / "config.json"
    new = json.loads(json.dumps(asdict(cfg)))  # as the file holds it (tuples become lists)
    if path.exists():
        # A field added to the config since the run started reads as its default, so an older run resumes.
        old = merge_nested(json.loads(json.dumps(asdict(PolicyConfig()))), json.loads(path.read_text()))
        keep = ("out", "progress", "threads", "device", "eval_every_steps", "eval_episodes", "eval_stochastic",
                "ckpt_every_steps", "total_steps", "max_train_minutes", "vec_env", "ray_address",
                "pin_workers")
        # where and how the encoder runs changes z by float rounding at most: a run may resume with another choice
        speed = {k: new["obs"].get(k) for k in ("encode_in", "jit", "onnx")}
        same_obs = {**old.get("obs", {}), **speed} == new["obs"]
        diff = sorted(k for k in new if k not in keep and old.get(k) != new[k] and not (k == "obs" and same_obs))
        if diff:
            raise ValueError(f"{path} was written with other {diff}; resume with the same settings or pick "
                             f"another out")
    if write:
        write_text_atomic(path, json.dumps(new, indent=2), fsync=False)


def seed_training_resets(cfg: PolicyConfig, venv: VecEnv) -> None:
    """Seed the first resets of the training sub-envs as ``cfg.reset_seeds`` says; call it after
    ``build_model``, whose algorithm constructor seeds them ``seed + i`` ("algorithm": left so).
    "run": ``seed * 1000 + i``, so no two training seeds share a sub-env's episode stream."""
    if cfg.reset_seeds == "run":
        venv.seed(cfg.seed * 1000)


def policy_config(text: str) -> PolicyConfig:
    """The ``PolicyConfig`` of a policy file's JSON config (fields added since it was written: defaults)."""
    raw = json.loads(text)
    demos = {"demos": DemoConfig(**raw["demos"])} if "demos" in raw else {}
    return PolicyConfig(**{**raw, "algo": AlgoConfig(**raw["algo"]), "obs": ObsConfig(**raw["obs"]),
                           "env": EnvConfig.from_kwargs(**raw["env"]), **demos})


# what defines a run's learning: a policy continued from another run's must share these (where and
# how the frozen encoder runs, obs.encode_in / jit / onnx, changes z by float rounding at most: free)
LEARNING_FIELDS = ("algo", "obs", "env", "perturbations", "n_envs", "normalize", "normalize_reward", "seed",
                   "reset_seeds")
ENCODER_SPEED = ("encode_in", "jit", "onnx")


def read_init_policy(cfg: PolicyConfig) -> tuple[Path, dict[str, Any]]:
    """(policy file, its contents) of ``cfg.init_policy``, checked before the run writes anything:
    ``ValueError`` where it is no policy file, was trained with other ``LEARNING_FIELDS`` (named) or
    has already trained ``cfg.total_steps``."""
    path = Path(cfg.init_policy)
    path = path / "policy.pt" if path.is_dir() else path
    blob = load_torch_file(path, "init_policy", "it is not an mmrep policy file or it is damaged")
    if not isinstance(blob, dict) or blob.get("format") != POLICY_FORMAT:
        raise ValueError(f"init_policy: {path} is not an mmrep policy file")
    theirs, ours = (json.loads(json.dumps(asdict(c))) for c in (policy_config(blob["config"]), cfg))
    for config in (theirs, ours):
        config["obs"] = {k: v for k, v in config["obs"].items() if k not in ENCODER_SPEED}
    differ = [name for name in LEARNING_FIELDS if theirs[name] != ours[name]]
    if differ:
        raise ValueError(f"init_policy: {path} was trained with other {', '.join(differ)} than this run; a policy "
                         "continues only the same learning")
    steps = int(blob["num_timesteps"])
    if steps >= cfg.total_steps:
        raise ValueError(f"init_policy: {path} has trained {steps:,} env steps already, total_steps is "
                         f"{cfg.total_steps:,}: nothing to continue")
    return path, blob


def continue_from_policy(model, venv, path: Path, blob: dict[str, Any], out: Path) -> tuple[int, float, float | None]:
    """Load an ``init_policy`` (``read_init_policy``) into ``model`` and ``venv`` (weights and
    normaliser statistics), set the env-step counter to its, copy its periodic evaluations up to its
    env steps (``eval.jsonl`` beside it, or its run's for a kept ``best/`` policy, where none is in ``out``
    yet; each row marked ``brought_along``, so
    it draws the curve but never competes for ``keep_best``) and return (env steps, training wall
    seconds, CPU seconds) as ``load_checkpoint`` does, so the run goes on as a resume would, with a
    fresh optimiser."""
    model.policy.load_state_dict(blob["policy"])
    if blob["obs_rms"] is not None:
        _load_rms(venv, blob["obs_rms"])
    model.num_timesteps = steps = int(blob["num_timesteps"])
    history = path.parent / "eval.jsonl"
    if not history.exists() and path.parent.name == "best":  # a kept policy: its run's rows up to it
        history = path.parent.parent / "eval.jsonl"
    if history.exists() and not (out / "eval.jsonl").exists():
        rows = [r for r in map(json.loads, filter(str.strip, history.read_text().splitlines()))
                if r["timesteps"] <= steps]
        write_text_atomic(out / "eval.jsonl", "".join(json.dumps({**r, "brought_along": True}) + "\n" for r in rows))
    return steps, float(blob.get("train_seconds", 0.0)), blob.get("cpu_seconds")


def evaluation_missed(cfg: PolicyConfig, out: Path, done: int) -> bool:
    """Whether a run resumed at ``done`` env steps lacks the periodic evaluation due at or before them.
    The checkpoint of a step is saved just before that step's evaluation, so a kill during the
    evaluation leaves the checkpoint and no row: the policy it would have evaluated is the one resumed."""
    due = done // cfg.eval_every_steps * cfg.eval_every_steps
    # rows an init_policy brought along count: the evaluations due up to its steps were its run's
    return due > 0 and not any(r["timesteps"] >= due for r in read_evaluations(out, missing_ok=True))


def evaluate_at_start(model, cfg: PolicyConfig, venv: VecEnv, eval_venvs: dict[str, VecEnv], out: Path,
                      spent: float, cpu_prior: float | None) -> float:
    """A periodic evaluation before ``learn`` (of the policy continued from, the cloned one, or one a kill
    cut short: ``evaluation_missed``), kept as ``keep_best`` keeps any; returns the training's wall
    seconds with its own added (the periodic evaluations count as training's). ``cpu_prior``: CPU
    seconds not on this process's clock."""
    t0 = time.time()
    cpu = CpuMeter(venv, cpu_prior).seconds
    evaluate_keeping_best(model, cfg, venv, eval_venvs, out, {"train_seconds": spent, "cpu_seconds": cpu})
    return spent + time.time() - t0


DEMONSTRATIONS_FILE = "demonstrations.npz"
"""The labelled steps a run with ``demos.replay_steps`` replays during RL, in its folder."""


def demo_replay(cfg: PolicyConfig, venv: VecEnv, out: Path):
    """The ``DemoReplay`` callback of a run with ``demos.replay_steps``: the demonstrations it saved,
    normalised with the (frozen) statistics the clone was fitted with."""
    from mmrep.rl.demos import DemoReplay, load_demonstrations

    demos = load_demonstrations(out / DEMONSTRATIONS_FILE)
    obs = demos.obs
    if isinstance(venv, VecNormalize) and venv.norm_obs:
        obs = venv.normalize_obs(obs).astype(np.float32)
    return DemoReplay(obs, demos.actions, cfg.demos.replay_steps, cfg.demos.batch_size, cfg.demos.learning_rate,
                      cfg.seed)


def start_from_demonstrations(cfg: PolicyConfig, model, venv: VecEnv, eval_venvs: dict[str, VecEnv],
                              out: Path) -> tuple[int, float, float | None]:
    """``cfg.demos``: the expert's episodes in an env built as the training one (its sub-envs' first
    resets seeded ``demos.seed + 1000 * seed + i``), the policy cloned from them
    (``mmrep.rl.demos``), ``demos.json`` written, the cloned policy evaluated (a periodic evaluation
    at the env steps the demonstrations took), then a checkpoint saved, so a resume goes on from the
    cloned policy and a kill before it starts again from nothing. Returns (env steps, wall seconds,
    CPU seconds not on this process's clock) as ``load_checkpoint`` does: the demonstrations' steps
    and time count as training's."""
    from mmrep.rl.demos import learn_from_demonstrations, save_demonstrations

    t0 = time.time()
    demo_venv = build_venv(cfg, cfg.n_envs, cfg.demos.seed + 1000 * cfg.seed, expert=cfg.demos.expert)
    meter = CpuMeter(demo_venv, 0.0)
    select_venv, score = None, None
    if cfg.demos.select_fits > 1:
        first = cfg.demos.seed + 1000 * cfg.seed + SELECT_SEED_OFFSET
        seeds = list(range(first, first + cfg.demos.select_episodes))
        if isinstance(demo_venv, VecEnvWrapper):  # encoding in this process: one env here, episode by episode
            select_venv = build_venv(cfg, 1, first, vec_env="dummy")

            def score() -> tuple[int, int]:
                episodes = run_episodes(model, select_venv, seeds, True, obs_normalizer(venv))
                return sum(e["success"] for e in episodes), sum(e["steps"] for e in episodes)
        else:  # the demonstrations' workers run the episodes side by side: the same seeds, sooner

            def score() -> tuple[int, int]:
                episodes, steps = run_episodes_together(model, demo_venv, seeds, obs_normalizer(venv))
                return sum(e["success"] for e in episodes), steps
    try:
        record, demos = learn_from_demonstrations(model, venv, demo_venv, cfg.demos, learner_gamma(cfg), cfg.seed,
                                                  score)
        total = meter.seconds
    finally:
        demo_venv.close()
        if select_venv is not None:
            select_venv.close()
    # CPU not on this process's clock (the demo workers'): the training's meter adds this process's own
    prior = None if total is None else total - time.process_time()
    spent = time.time() - t0
    record.update(train_seconds=spent, cpu_seconds=total)
    if cfg.demos.replay_steps:
        save_demonstrations(demos, out / DEMONSTRATIONS_FILE)  # before the checkpoint a resume starts from
    write_text_atomic(out / "demos.json", json.dumps(record, indent=2))
    if eval_venvs:
        spent = evaluate_at_start(model, cfg, venv, eval_venvs, out, spent, prior)
    save_checkpoint(model, venv, out, train_seconds=spent, cpu_seconds=CpuMeter(venv, prior).seconds)
    return int(model.num_timesteps), spent, prior


def resume_env_seed(seed: int, steps_done: int, below: int) -> int:
    """The seed a run of training seed ``seed`` resumed at ``steps_done`` env steps reseeds its sub-envs'
    resets (sub-env i: the result + i) and torch's, numpy's and Python's streams with: a hash of
    (seed, steps_done) in [0, ``below``), so a resumed run does not replay the episodes its start drew
    and the same checkpoint resumes the same way. ``below``: eval_seed - n_envs, never an evaluation seed."""
    if below < 1:
        raise ValueError(f"no training seed below {below}: raise eval_seed")
    return int(np.random.SeedSequence([int(seed), int(steps_done)]).generate_state(1, np.uint64)[0] % below)


def train_policy(cfg: PolicyConfig) -> dict[str, Any]:
    """Train (or resume) a policy; write the run folder (module doc). Returns the final evaluation.
    The folder is locked for the run (``sim.run_lock``): a second run into it is refused."""
    cfg.validate()
    with run_lock(cfg.out, "policy train"):
        return _train_policy(cfg)


def _train_policy(cfg: PolicyConfig) -> dict[str, Any]:
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    # checked before anything is written, so a refused one leaves nothing that would block the fixed command
    init = read_init_policy(cfg) if cfg.init_policy and not (out / "checkpoint.pt").exists() else None
    out.mkdir(parents=True, exist_ok=True)
    # checked now, written once the envs and the model are built: a run refused there (a bad encoder,
    # an unknown algo.params key) leaves no config.json that would refuse the corrected command
    _check_same_config(out, cfg, write=False)
    venv = build_venv(cfg, cfg.n_envs, cfg.seed * 1000)
    venv = with_normalizer(cfg, venv)
    eval_venvs = build_eval_venvs(cfg)
    try:
        final = _learn(cfg, out, init, venv, eval_venvs)
    finally:
        venv.close()
        for eval_venv in eval_venvs.values():
            eval_venv.close()
    return final


def _learn(cfg: PolicyConfig, out: Path, init: tuple | None, venv: VecEnv, eval_venvs: dict[str, VecEnv]) -> dict:
    """The model built (or resumed, or continued from ``init``, or cloned from demonstrations), trained
    to ``cfg.total_steps``, evaluated and saved; ``_train_policy`` closes the envs."""
    model = build_model(cfg, venv, tensorboard_log=str(out / "tb"))
    seed_training_resets(cfg, venv)
    done, spent, cpu_spent = load_checkpoint(model, venv, out)
    resumed_at = done
    _check_same_config(out, cfg)
    if done and eval_venvs and evaluation_missed(cfg, out, done):
        # before learn() resets the envs (which moves the normaliser): the policy as it was evaluated
        spent = evaluate_at_start(model, cfg, venv, eval_venvs, out, spent, cpu_spent)
    if not done and init is not None:
        done, spent, cpu_spent = continue_from_policy(model, venv, *init, out)
        own = read_evaluations(out, missing_ok=True)
        if cfg.keep_best and eval_venvs and not any(r["timesteps"] == done and selects_alike(r, cfg) for r in own):
            # the policy continued from is a candidate too: continuing can only add better ones
            spent = evaluate_at_start(model, cfg, venv, eval_venvs, out, spent, cpu_spent)
    cloned = not done and bool(cfg.demos.episodes)
    if cloned:
        done, spent, cpu_spent = start_from_demonstrations(cfg, model, venv, eval_venvs, out)
    if cfg.demos.episodes and cfg.demos.freeze_normalizer and isinstance(venv, VecNormalize):
        venv.training = False  # the statistics the clone was fitted with (DemoConfig.freeze_normalizer)
    # each start and resume: where it ran, from how many env steps (its own checkpoint's, or the
    # policy continued from, or the demonstrations')
    append_provenance(out, app="policy train", timesteps=done, resumed=bool(resumed_at))
    callback = TrainingCallback(cfg, out, venv, eval_venvs, prior_seconds=spent, prior_cpu_seconds=cpu_spent)
    learns = done < cfg.total_steps and not out_of_time(cfg, spent)
    if learns:
        if done:  # the start seeded everything from cfg.seed (build_model): a resume draws anew
            model.set_random_seed(resume_env_seed(cfg.seed, done, cfg.eval_seed - cfg.n_envs))
        try:
            callbacks = [callback]
            if cfg.demos.episodes and cfg.demos.actor_held_until:
                from mmrep.rl.demos import ActorWarmup

                callbacks.append(ActorWarmup(cfg.demos.actor_held_until))
            if cfg.demos.episodes and cfg.demos.replay_steps:
                callbacks.append(demo_replay(cfg, venv, out))
            model.learn(cfg.total_steps - done, callback=CallbackList(callbacks), reset_num_timesteps=done == 0,
                        progress_bar=cfg.progress, tb_log_name="run")
        except ValueError as err:  # torch's distribution check, which names nothing of ours
            if "invalid values" not in str(err):
                raise
            raise RuntimeError(invalid_action_distribution_message(model, err)) from err
    # a run resumed after it finished has spent nothing more on training
    usage = callback.usage if learns else {"train_seconds": spent, "cpu_seconds": cpu_spent}
    save_checkpoint(model, venv, out, **usage)
    if cloned and not learns and eval_venvs:
        # the demonstrations took the whole budget: the clone's evaluation, just written, is the final one
        final = read_evaluations(out)[-1]
    else:
        final = (evaluate_keeping_best(model, cfg, venv, eval_venvs, out, usage) if eval_venvs
                 else {"timesteps": int(model.num_timesteps)})
    save_policy(model, venv, cfg, out / "policy.pt", **usage)
    if eval_venvs:
        plot_curves({out.name: out}, out / "curves.png")
    return final


def same_encoder_weights(trained: str | Path, other: str | Path, policy: Path) -> None:
    """``ValueError`` unless encoder file ``other`` holds the weights of ``trained`` (a policy's z means
    nothing from another encoder; thresholds may differ)."""
    if trained is None:
        raise ValueError(f"{policy} observes no frozen encoder; an encoder file cannot replace it")
    a, b = load_encoder(trained).state_dict(), load_encoder(other).state_dict()
    if a.keys() != b.keys() or any(not torch.equal(a[k], b[k]) for k in a):
        raise ValueError(f"encoder {other} does not hold the weights of {trained}, the encoder {policy} was "
                         "trained on")


def load_policy(path: str | Path, env_overrides: dict[str, Any] | None = None, perturbations: list[str] | None = None,
                device: str = "cpu", render: bool = False, camera_memory: bool | None = None,
                reject_flagged: bool | None = None, encoder: str | Path | None = None, ft_tare: bool | None = None):
    """(model, venv, cfg, obs_rms) of a saved ``policy.pt``: the algorithm rebuilt from its JSON config on
    a single-env ``venv`` (with ``env_overrides``, ``perturbations`` and, when not None,
    ``camera_memory`` and ``reject_flagged`` for evaluation: either one runs torch's encoder, so a
    policy trained with ``obs.onnx`` or ``obs.jit`` is evaluated without them, the same z to 1e-5).
    ``encoder``: another file of the policy's frozen encoder, e.g. with other reliability thresholds;
    ``ValueError`` unless its weights are the policy's encoder's. ``ft_tare``: when not None, whether the
    F/T sensor is zeroed at each reset (``ObsConfig.ft_tare``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"policy file {path} does not exist (a finished `mmrep policy train` run?)")
    blob = load_torch_file(path, "policy file", "it is not an mmrep policy file or it is damaged: run the same "
                           "`mmrep policy train` again (it rewrites policy.pt from checkpoint.pt) or download it again")
    if not isinstance(blob, dict) or blob.get("format") != POLICY_FORMAT:
        raise ValueError(f"{path} is not an mmrep policy file")
    cfg = replace(policy_config(blob["config"]), device=device)
    if camera_memory is not None:
        if camera_memory and not cfg.obs.kind.startswith("latent"):
            raise ValueError(f"camera_memory needs a policy on a frozen latent; {path} observes {cfg.obs.kind!r}")
        if not camera_memory and cfg.obs.camera_odometry:
            raise ValueError(f"{path} observes the camera memory's odometry (obs.camera_odometry): it cannot be "
                             "evaluated without camera memory")
        cfg = replace(cfg, obs=replace(cfg.obs, camera_memory=camera_memory))
    if reject_flagged is not None:
        if reject_flagged and not cfg.obs.kind.startswith("latent"):
            raise ValueError(f"reject_flagged needs a policy on a frozen latent; {path} observes {cfg.obs.kind!r}")
        cfg = replace(cfg, obs=replace(cfg.obs, reject_flagged=reject_flagged))
    if ft_tare is not None:
        cfg = replace(cfg, obs=replace(cfg.obs, ft_tare=ft_tare))
    if encoder is not None:
        same_encoder_weights(cfg.obs.encoder, encoder, path)
        cfg = replace(cfg, obs=replace(cfg.obs, encoder=str(encoder)))
    if cfg.obs.camera_memory or cfg.obs.reject_flagged:  # both read torch's expert posteriors
        cfg = replace(cfg, obs=replace(cfg.obs, onnx=False, jit=False))
    venv = build_venv(cfg, 1, 0, vec_env="dummy", env_overrides=env_overrides, perturbations=perturbations,
                      render=render)
    params = dict(cfg.algo.params)
    if cfg.algo.name == "sac":
        params["buffer_size"] = 1  # acting needs no replay buffer
    model = build_model(replace(cfg, algo=AlgoConfig(cfg.algo.name, params)), venv)
    model.policy.load_state_dict(blob["policy"])
    return model, venv, cfg, (_rms(blob["obs_rms"]) if blob["obs_rms"] is not None else None)
