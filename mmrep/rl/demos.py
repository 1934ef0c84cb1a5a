"""Demonstrations before RL: a scripted expert acts in the learner's own env, the policy is cloned from
what it did, and RL goes on from there (``PolicyConfig.demos``).

Why: on the peg-insertion task a PPO policy on the frozen latent spends most of its first 90% on
finding the hole to the clearance (measured 2026-12-06: fast-starting learners end 3-5 mm off the hole's
axis), which the task's scripted expert does with its contact search from the first episode. Cloning the
expert gives RL a policy that already approaches and searches; the env steps the demonstrations took
count toward the run's budget, so "env steps to 90%" stays an honest figure.

The expert acts on the raw sensors and the privileged info (``sim.wrappers.ExpertAdvice``); the policy
is fitted on the observation it will act on (the latent, normalised by the training env's running
statistics, which the demonstrations' observations update first).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from mmrep.config import DemoConfig


@dataclass
class Demonstrations:
    """Whole expert episodes: ``obs`` (N, obs_dim) float32 as the policy's env returns them (before
    normalisation), ``actions`` (N, action_dim) float32 in [-1, 1], ``returns`` (N,) float32 (the
    discounted return from each step on, at the learner's gamma); ``env_steps``: every step stepped,
    the unfinished episodes cut at the end included; ``episodes`` and ``successes`` of the whole ones."""

    obs: np.ndarray
    actions: np.ndarray
    returns: np.ndarray
    env_steps: int
    episodes: int
    successes: int
    seconds: float


def discounted_returns(rewards: list[float], gamma: float) -> np.ndarray:
    """(T,) the return from each step of one episode on: r_t + gamma r_{t+1} + ... (0 after its end)."""
    out = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out.astype(np.float32)


def collect_demonstrations(venv: VecEnv, episodes: int, gamma: float,
                           act: Callable[[np.ndarray], np.ndarray] | None = None, noise: float = 0.0,
                           seed: int = 0) -> Demonstrations:
    """Step ``venv`` (built with an ``expert``: ``mmrep.policy.build_venv``; reset here) until each
    sub-env has ended its share of ``episodes`` (the first ones of each: keeping whichever ended first
    would favour short, successful episodes), recording at every step the expert's action there. Who
    acts: the expert (``act`` None), or ``act(obs) -> (n_envs, action_dim)``, a learner whose states the
    expert labels (DAgger); ``successes`` then counts the learner's. ``noise``: the std (action units) of
    Gaussian noise added to the action executed, clipped to [-1, 1], the recorded label staying the
    expert's (DART); drawn from ``seed``. A time-limit end counts as the end of the return."""
    t0 = time.time()
    obs = venv.reset()
    n = venv.num_envs
    quota = [episodes // n + (i < episodes % n) for i in range(n)]
    current: list[dict[str, list]] = [{"obs": [], "actions": [], "rewards": []} for _ in range(n)]
    kept: list[dict[str, list]] = []
    steps = successes = 0
    rng = np.random.default_rng(seed)
    while any(quota):
        labels = np.stack(venv.env_method("expert_action")).astype(np.float32)
        actions = labels if act is None else np.asarray(act(obs), dtype=np.float32)
        if noise:
            actions = np.clip(actions + rng.normal(0.0, noise, actions.shape), -1.0, 1.0).astype(np.float32)
        next_obs, rewards, dones, infos = venv.step(actions)
        steps += n
        for i in range(n):
            current[i]["obs"].append(obs[i].copy())
            current[i]["actions"].append(labels[i])
            current[i]["rewards"].append(float(rewards[i]))
            if dones[i]:
                if quota[i]:
                    kept.append(current[i])
                    successes += bool(infos[i].get("is_success", False))
                    quota[i] -= 1
                current[i] = {"obs": [], "actions": [], "rewards": []}
        obs = next_obs
    return Demonstrations(
        obs=np.concatenate([np.asarray(e["obs"], dtype=np.float32) for e in kept]),
        actions=np.concatenate([np.asarray(e["actions"], dtype=np.float32) for e in kept]),
        returns=np.concatenate([discounted_returns(e["rewards"], gamma) for e in kept]),
        env_steps=steps, episodes=len(kept), successes=successes, seconds=time.time() - t0)


def clone(model, obs: np.ndarray, demos: Demonstrations, cfg: DemoConfig, seed: int) -> dict[str, Any]:
    """Fit ``model.policy`` (an SB3 ``ActorCriticPolicy``) to the demonstrations: the action
    distribution's log-likelihood of the expert's actions and the value's squared error to their
    returns, ``cfg.epochs`` passes in minibatches of ``cfg.batch_size`` (shuffled by ``seed``);
    ``obs``: the demonstrations' observations as the policy sees them (normalised). The action log
    std is kept at least log ``cfg.min_std``; ``cfg.obs_noise``: Gaussian noise of that std added to each
    minibatch's observations; ``cfg.average_last`` > 1: the weights end as their mean over the ends of
    the last that many passes. Returns the losses before and after and the action std."""
    policy = model.policy
    device = policy.device
    x = torch.as_tensor(obs, device=device)
    a = torch.as_tensor(demos.actions, device=device)
    g = torch.as_tensor(demos.returns, device=device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    floor = float(np.log(cfg.min_std))

    def losses(idx: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        seen = x[idx] if noise is None else x[idx] + noise
        dist = policy.get_distribution(seen)
        nll = -dist.log_prob(a[idx]).mean()
        value = torch.nn.functional.mse_loss(policy.predict_values(seen).squeeze(-1), g[idx])
        return nll, value

    everything = torch.arange(len(x), device=device)
    with torch.no_grad():
        before = [float(v) for v in losses(everything)]
        # the returns run to hundreds (the completion bonus) while Adam moves a weight by about the
        # learning rate a step: start the value's output at their mean, so it fits their spread
        value_out = getattr(policy, "value_net", None)
        if isinstance(value_out, torch.nn.Linear) and value_out.bias is not None:
            value_out.bias += g.mean() - policy.predict_values(x).mean()
    policy.set_training_mode(True)
    averaged: dict[str, torch.Tensor] = {}
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(x), generator=generator).to(device)
        for start in range(0, len(x), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            noise = None
            if cfg.obs_noise:
                noise = cfg.obs_noise * torch.randn(len(idx), x.shape[1], generator=generator).to(device)
            nll, value = losses(idx, noise)
            optimizer.zero_grad()
            (nll + value).backward()
            optimizer.step()
            if hasattr(policy, "log_std"):
                with torch.no_grad():
                    policy.log_std.clamp_(min=floor)
        if cfg.average_last > 1 and epoch >= cfg.epochs - cfg.average_last:
            k = epoch - (cfg.epochs - cfg.average_last)  # passes averaged before this one
            with torch.no_grad():
                for name, param in policy.named_parameters():
                    mean = averaged.get(name, param.detach())
                    averaged[name] = mean + (param.detach() - mean) / (k + 1)  # k = 0: the weights
    if averaged:
        with torch.no_grad():
            for name, param in policy.named_parameters():
                param.copy_(averaged[name])
    policy.set_training_mode(False)
    with torch.no_grad():
        after = [float(v) for v in losses(everything)]
        std = policy.log_std.exp().tolist() if hasattr(policy, "log_std") else None
    return {"nll_before": before[0], "value_mse_before": before[1], "nll_after": after[0],
            "value_mse_after": after[1], "action_std": std}


def reinitialise(policy, model, seed: int) -> None:
    """``policy`` (``model.policy``) given fresh initial weights, those SB3 gives a new policy of its
    class under torch seed ``seed``; torch's global stream is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = model.policy_class(model.observation_space, model.action_space, model.lr_schedule,
                                   use_sde=model.use_sde, **model.policy_kwargs)
    policy.load_state_dict(fresh.state_dict())


def select_clone(model, obs: np.ndarray, demos: Demonstrations, cfg: DemoConfig, seed: int,
                 score: Callable[[], tuple[int, int]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``cfg.select_fits`` clones of ``model``'s policy fitted to the demonstrations (``clone``): the
    first from the policy as it is and minibatch seed ``seed``, exactly as a single fit; fit k from
    fresh weights (torch seed 1000 ``seed`` + k) and minibatch seed ``seed`` + 1000 k. After each,
    ``score()`` -> (successes, env steps) of the policy as it then is; the policy ends as the fit with
    the most successes (ties: the earlier). Returns that fit's record (``clone``'s) and the selection's:
    each fit's successes, env steps and loss, the kept fit, and the env steps of all its episodes."""
    policy = model.policy
    initial = {k: v.clone() for k, v in policy.state_dict().items()}
    fits, best, kept_weights, steps = [], None, None, 0
    for k in range(cfg.select_fits):
        if k == 0:
            policy.load_state_dict(initial)
        else:
            reinitialise(policy, model, 1000 * seed + k)
        fit = clone(model, obs, demos, cfg, seed + 1000 * k)
        successes, used = score()
        steps += used
        fits.append({"fit": k, "successes": successes, "env_steps": used, "nll_after": fit["nll_after"]})
        if best is None or successes > fits[best[0]]["successes"]:
            best = (k, fit)
            kept_weights = {name: v.clone() for name, v in policy.state_dict().items()}
    policy.load_state_dict(kept_weights)
    return best[1], {"fits": fits, "kept": best[0], "episodes": cfg.select_episodes, "env_steps": steps}


def learn_from_demonstrations(model, venv: VecEnv, demo_venv: VecEnv, cfg: DemoConfig, gamma: float,
                              seed: int, score: Callable[[], tuple[int, int]] | None = None
                              ) -> tuple[dict[str, Any], Demonstrations]:
    """Collect ``cfg.episodes`` expert episodes in ``demo_venv`` (their executed actions perturbed by
    ``cfg.noise``, DART), add their observations to the
    training ``venv``'s running statistics (a ``VecNormalize``, where it normalises), clone ``model``'s
    policy from them; then ``cfg.dagger_rounds`` rounds of DAgger (Ross et al. 2011): the cloned policy
    acts (its mean action) for ``cfg.dagger_episodes`` episodes, the expert labels every state it
    visits, and the policy is fitted again to everything labelled so far; or, with ``cfg.select_fits`` > 1,
    the best of that many clones by ``score`` (``select_clone``); its action std is then set to
    ``cfg.action_std`` where given. Sets the model's env-step
    counter to the steps all of them took. Returns what ``demos.json`` records, and every labelled
    step (what ``DemoReplay`` replays)."""
    demos = collect_demonstrations(demo_venv, cfg.episodes, gamma, noise=cfg.noise, seed=seed)
    normalises = isinstance(venv, VecNormalize) and venv.norm_obs

    def seen(raw: np.ndarray) -> np.ndarray:
        return venv.normalize_obs(raw).astype(np.float32) if normalises else raw

    if normalises:
        venv.obs_rms.update(demos.obs)
    t0 = time.time()
    env_steps, rounds, selection = demos.env_steps, [], None
    if cfg.select_fits > 1:
        if score is None:
            raise ValueError("demos.select_fits > 1 needs a score: the episodes that choose between the clones")
        fit, selection = select_clone(model, seen(demos.obs), demos, cfg, seed, score)
        env_steps += selection["env_steps"]
    else:
        fit = clone(model, seen(demos.obs), demos, cfg, seed)
    for r in range(cfg.dagger_rounds):
        learner = collect_demonstrations(
            demo_venv, cfg.dagger_episodes, gamma,
            act=lambda obs: model.policy.predict(seen(obs), deterministic=True)[0])
        if normalises:
            venv.obs_rms.update(learner.obs)
        demos = Demonstrations(
            obs=np.concatenate([demos.obs, learner.obs]),
            actions=np.concatenate([demos.actions, learner.actions]),
            returns=np.concatenate([demos.returns, learner.returns]),
            env_steps=demos.env_steps, episodes=demos.episodes, successes=demos.successes, seconds=demos.seconds)
        t1 = time.time()
        refit = clone(model, seen(demos.obs), demos, cfg, seed + 1 + r)
        env_steps += learner.env_steps
        rounds.append({"env_steps": learner.env_steps, "episodes": learner.episodes,
                       "learner_success": learner.successes / max(learner.episodes, 1),
                       "samples": len(demos.obs), "collect_seconds": learner.seconds,
                       "clone_seconds": time.time() - t1, **refit})
    if cfg.action_std is not None and hasattr(model.policy, "log_std"):
        with torch.no_grad():
            model.policy.log_std.fill_(float(np.log(cfg.action_std)))
        fit["action_std"] = model.policy.log_std.exp().tolist()
    model.num_timesteps = env_steps
    record = {"env_steps": env_steps, "episodes": cfg.episodes, "expert_success": demos.successes / demos.episodes,
              "samples": len(demos.obs), "collect_seconds": demos.seconds, "clone_seconds": time.time() - t0,
              "expert": cfg.expert, "noise": cfg.noise, **fit}
    if rounds:
        record["dagger"] = rounds
    if selection:
        record["selection"] = selection
    return record, demos


def save_demonstrations(demos: Demonstrations, path) -> None:
    """The labelled steps as arrays (``obs``, ``actions``, ``returns``; ``np.load(allow_pickle=False)``
    reads them), written atomically: what a resumed run with ``demos.replay_steps`` replays."""
    import io

    from mmrep.torch_files import write_atomic

    data = io.BytesIO()
    np.savez(data, obs=demos.obs, actions=demos.actions, returns=demos.returns)
    write_atomic(data.getbuffer(), path)


def load_demonstrations(path) -> Demonstrations:
    """What ``save_demonstrations`` wrote (the counters, which ``demos.json`` holds, read 0)."""
    try:
        arrays = np.load(path, allow_pickle=False)
        obs, actions, returns = arrays["obs"], arrays["actions"], arrays["returns"]
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise ValueError(f"demonstrations file {path} cannot be read ({err}): move the run folder away and train "
                         "again (the demonstrations are collected again from their seeds)") from None
    return Demonstrations(obs=obs, actions=actions, returns=returns, env_steps=0, episodes=0, successes=0,
                          seconds=0.0)


class DemoReplay(BaseCallback):
    """Behaviour cloning kept on during RL: after each update of the algorithm, ``steps`` Adam steps
    (learning rate ``learning_rate``, minibatches of ``batch_size``) of the actor's negative
    log-likelihood of the expert's actions on the demonstrations (``obs``: as the policy sees them,
    normalised with the statistics the clone was fitted with); the critic is left to RL
    (``DemoConfig.replay_steps``). The minibatches are drawn from ``seed`` and the update count, so a
    resumed run draws the ones an uninterrupted run would; the replay's Adam moments start afresh at
    each start or resume (they are not in the checkpoint)."""

    def __init__(self, obs: np.ndarray, actions: np.ndarray, steps: int, batch_size: int, learning_rate: float,
                 seed: int) -> None:
        super().__init__()
        self.obs, self.actions = obs, actions
        self.steps, self.batch_size, self.learning_rate, self.seed = steps, batch_size, learning_rate, seed

    def _on_training_start(self) -> None:
        policy = self.model.policy
        self._x = torch.as_tensor(self.obs, device=policy.device)
        self._a = torch.as_tensor(self.actions, device=policy.device)
        self._optimizer = torch.optim.Adam(policy.parameters(), lr=self.learning_rate)
        self._seen = int(self.model._n_updates)

    def _on_rollout_start(self) -> None:
        # called once the previous rollout's update is done (none before the first rollout)
        if int(self.model._n_updates) == self._seen:
            return
        self._seen = int(self.model._n_updates)
        policy = self.model.policy
        rng = np.random.default_rng([self.seed, self._seen])
        for _ in range(self.steps):
            idx = torch.as_tensor(rng.integers(0, len(self._x), self.batch_size), device=policy.device)
            nll = -policy.get_distribution(self._x[idx]).log_prob(self._a[idx]).mean()
            self._optimizer.zero_grad()
            nll.backward()  # the critic's weights get no gradient from it (a shared trunk would)
            self._optimizer.step()

    def _on_step(self) -> bool:
        return True


VALUE_PARTS = ("value_net.", "mlp_extractor.value_net.")
"""Parameter-name prefixes of an SB3 ``ActorCriticPolicy``'s critic; every other parameter acts."""


class ActorWarmup(BaseCallback):
    """The cloned actor held still (no gradient reaches it) until the run's env-step counter reaches
    ``until``, while PPO fits the critic to the clone's own returns (``DemoConfig.actor_held_until``).

    Why: the value fitted to the expert's returns is not the clone's, and PPO normalises each batch's
    advantages, so even noise in them moves the actor at full speed. What it bought on the fused row
    (measured 2026-12-07, seed 0): the clone kept 0.97 while held to 30k env steps, then PPO lowered
    it to 0.57 and 0.30 by 37.5k and 50k, so a critic that has learnt the clone's returns does not
    stop PPO unlearning it there. Checked before each rollout's update, so a resume past ``until``
    trains the actor from its first update."""

    def __init__(self, until: int) -> None:
        super().__init__()
        self.until = until

    def _hold(self, held: bool) -> None:
        for name, param in self.model.policy.named_parameters():
            if not name.startswith(VALUE_PARTS):
                param.requires_grad_(not held)

    def _on_training_start(self) -> None:
        self._hold(self.model.num_timesteps < self.until)

    def _on_rollout_end(self) -> None:
        self._hold(self.model.num_timesteps < self.until)

    def _on_training_end(self) -> None:
        self._hold(False)  # the saved policy is an ordinary one

    def _on_step(self) -> bool:
        return True
