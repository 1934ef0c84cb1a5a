"""``mmrep policy eval``: a trained policy on held-out seeds, per closed-loop setting
(``sim.rl_env.CLOSED_LOOP``), peg shape and action mode (deterministic: the mean action;
stochastic: sampled, as the paper's evaluation code did).

Writes ``results.json`` (every episode and every summary), ``report.md`` (success rate with its 95%
Wilson interval, mean steps to success, peak contact forces) and one rollout GIF per setting (the
camera view, the wrist force trace, and the outcome) to ``out``. Each finished (setting, shape,
mode) is appended to ``rows.partial.jsonl`` as it ends, so a killed evaluation, run again with the
same command, keeps those and runs only the rest (every episode is seeded, sampled actions included,
so the resumed results equal an uninterrupted run's); the file goes once ``results.json`` is written.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mmrep.config import PolicyEvalConfig
from mmrep.policy import ended_in_hole, load_policy, run_episodes, summarize
from sim.provenance import provenance
from sim.rl_env import CLOSED_LOOP
from sim.run_lock import run_lock


def policy_file(path: str | Path) -> Path:
    path = Path(path)
    return path / "policy.pt" if path.is_dir() else path


Frames = list[tuple[np.ndarray, np.ndarray | None]]  # (camera (H, W, 3) uint8, F/T readings (n, 6) N) per step


def rollout_gif(frames: Frames, success: bool, path: Path, fps: int = 10) -> None:
    """One rollout as a GIF (``panels_gif`` with one unnamed panel)."""
    panels_gif([(None, frames, success)], path, fps)


def panels_gif(panels: list[tuple[str | None, Frames, bool]], path: Path, fps: int = 10) -> None:
    """One GIF of one or more rollouts: per panel (name or None, frames, success) the camera above the
    wrist force magnitude so far (N, one point per reading); the panels advance together on the same
    control step, and an ended episode holds its last frame, titled with whether the peg went in."""
    import imageio.v3 as iio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(panels)
    length = max(len(f) for _, f, _ in panels)
    traces = []
    for _, frames, _ in panels:
        per_step = [np.linalg.norm(f[:, :3], axis=1) if f is not None else np.zeros(1) for _, f in frames]
        traces.append((np.concatenate(per_step), np.cumsum([len(f) for f in per_step]), len(per_step[0])))
    top = max(max(float(t.max()) for t, _, _ in traces) * 1.1, 1.0)
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 4.6), dpi=80, gridspec_kw={"height_ratios": [3, 1.4]},
                             squeeze=False)
    images = []
    for i in range(length):
        for k, (name, frames, success) in enumerate(panels):
            ax_img, ax_f = axes[0, k], axes[1, k]
            ax_img.clear()
            ax_f.clear()
            j = min(i, len(frames) - 1)
            ax_img.imshow(frames[j][0])
            ax_img.axis("off")
            ended = j == len(frames) - 1
            status = ("INSERTED" if success else "FAILED") if ended else f"step {j + 1}"
            ax_img.set_title(status if name is None else f"{name}\n{status}", fontsize=9,
                             color=("green" if success else "red") if ended else "black")
            trace, ends, per = traces[k]
            ax_f.plot(np.arange(ends[j]) / max(per, 1), trace[:ends[j]], lw=0.8)
            ax_f.set_xlim(0, length)
            ax_f.set_ylim(0, top)
            ax_f.set_xlabel("control step", fontsize=8)
            ax_f.set_ylabel("|F| (N)", fontsize=8)
            ax_f.tick_params(labelsize=7)
        fig.tight_layout()
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    iio.imwrite(path, np.stack(images), duration=1000 / fps, loop=0)


PARTIAL = "rows.partial.jsonl"


def kept_entries(path: Path) -> list[dict[str, Any]]:
    """The entries of a ``rows.partial.jsonl`` (``{"run", "shape_asked", "trained_shape", "row"}``), in
    order; a line cut short by a kill is skipped; [] when the file does not exist."""
    entries = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by the kill
            continue
    return entries


def finished_rows(out: Path, run_key: dict[str, Any]) -> dict[tuple, tuple[dict[str, Any], str]]:
    """The rows a killed evaluation of the same policy file, seeds and episodes already wrote, with the
    policy's trained shape, by (setting, shape asked, mode); rows of any other evaluation are ignored
    (and overwritten)."""
    rows = {}
    for entry in kept_entries(out / PARTIAL):
        if entry.get("run") == run_key:
            row = entry["row"]
            rows[(row["setting"], entry["shape_asked"], row["mode"])] = (row, entry["trained_shape"])
    return rows


def evaluate_policy_run(cfg: PolicyEvalConfig) -> dict[str, Any]:
    """Run every (setting, shape, mode) and write the outputs (module doc). The output folder is locked
    for the run (``sim.run_lock``): a second evaluation into it is refused."""
    cfg.validate()
    path = policy_file(cfg.policy)
    if not path.is_file():
        raise FileNotFoundError(f"policy={cfg.policy}: no policy file {path} (a finished run's folder holds "
                                f"policy.pt; a keep_best run's best/ folder too)")
    with run_lock(Path(cfg.out) if cfg.out else path.parent / "eval", "policy eval"):
        return _evaluate_policy_run(cfg)


def _evaluate_policy_run(cfg: PolicyEvalConfig) -> dict[str, Any]:
    from tqdm import tqdm

    cfg.validate()
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    path = policy_file(cfg.policy)
    out = Path(cfg.out) if cfg.out else path.parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    seeds = [cfg.seed + k for k in range(cfg.episodes)]
    rows: list[dict[str, Any]] = []
    t0 = time.time()
    trained_shape = None
    jobs = [(s, sh) for s in cfg.settings for sh in (cfg.shapes or [None])]
    stat = path.stat()
    run_key = {"policy": str(path.resolve()), "policy_bytes": stat.st_size, "policy_mtime_ns": stat.st_mtime_ns,
               "seed": cfg.seed, "episodes": cfg.episodes}
    if cfg.camera_memory is not None:  # rows of another memory setting are not this evaluation's
        run_key["camera_memory"] = cfg.camera_memory
    if cfg.reject_flagged is not None:
        run_key["reject_flagged"] = cfg.reject_flagged
    if cfg.press_in_hole is not None:  # a scripted insertion stage: other rows
        run_key["press_in_hole"] = cfg.press_in_hole
    if cfg.ft_tare is not None:  # another F/T zeroing: other rows
        run_key["ft_tare"] = cfg.ft_tare
    for name, value in env_changes(cfg).items():  # another hole, another camera: other rows
        run_key[name] = value
    if cfg.fallback is not None:  # another policy takes over: other rows
        fb = policy_file(cfg.fallback)
        run_key["fallback"] = {"path": str(fb.resolve()), "bytes": fb.stat().st_size if fb.exists() else None,
                               # a policy trained on in place keeps its size: its rows are not this one's
                               "mtime_ns": fb.stat().st_mtime_ns if fb.exists() else None,
                               "on": list(cfg.fallback_on), "patience": cfg.fallback_patience,
                               "trigger": cfg.fallback_trigger}
    if cfg.encoder is not None:  # other thresholds: other rows
        enc = Path(cfg.encoder)
        run_key["encoder"] = {"path": str(enc.resolve()), "bytes": enc.stat().st_size if enc.exists() else None,
                              "mtime_ns": enc.stat().st_mtime_ns if enc.exists() else None}
    if cfg.camera_memory or cfg.reject_flagged:  # rows flagged by other rules are not this evaluation's
        from mmrep.models.reliability import FLAG_RULES

        run_key["flag_rules"] = FLAG_RULES
    done = finished_rows(out, run_key)
    if not done:
        (out / PARTIAL).unlink(missing_ok=True)
    bar = tqdm(total=len(jobs) * len(cfg.modes) * cfg.episodes, desc="policy eval", unit="episode",
               disable=not cfg.progress or None, dynamic_ncols=True)
    for setting, shape in jobs:
        if all((setting, shape, mode) in done for mode in cfg.modes):  # no env to build
            rows += [done[(setting, shape, mode)][0] for mode in cfg.modes]
            trained_shape = done[(setting, shape, cfg.modes[0])][1]
            bar.update(len(cfg.modes) * cfg.episodes)
            continue
        env_over, perturbations = CLOSED_LOOP[setting]
        env_over = {**env_over, **({"peg_shape": shape} if shape else {})}
        if cfg.press_in_hole is not None:
            env_over["controller"] = {**env_over.get("controller", {}), "press_in_hole": cfg.press_in_hole}
        if cfg.clearance is not None:
            env_over["clearance"] = cfg.clearance
        if cfg.camera_target_error is not None:
            env_over["randomization"] = {**env_over.get("randomization", {}),
                                         "camera_target_error": cfg.camera_target_error}
        model, venv, pcfg, rms = load_policy(path, env_over, list(perturbations), cfg.device, render=cfg.video,
                                             camera_memory=cfg.camera_memory, reject_flagged=cfg.reject_flagged,
                                             encoder=cfg.encoder, ft_tare=cfg.ft_tare)
        trained_shape = pcfg.env.peg_shape
        handover = fallback_venv = None
        try:
            if cfg.fallback is not None:
                handover, fallback_venv = build_handover(cfg, (model, venv, pcfg, rms), path, env_over,
                                                         list(perturbations))
            for mode in cfg.modes:
                if (setting, shape, mode) in done:
                    rows.append(done[(setting, shape, mode)][0])
                    bar.update(cfg.episodes)
                    continue
                record = [] if cfg.video and mode == cfg.modes[0] and shape == (cfg.shapes or [None])[0] else None
                codec = getattr(venv, "codec", None)
                memory = getattr(codec, "memory", None)
                if memory is not None:
                    memory.steps = memory.held_steps = 0
                    memory.rejected = {}
                episodes = []
                for s in seeds:  # one at a time, for the progress bar
                    if handover is None:
                        episodes += run_episodes(model, venv, [s], mode == "deterministic", rms,
                                                 record if s == seeds[0] else None)
                    else:  # the handover policy encodes the raw observations itself
                        episodes += run_episodes(handover, venv.venv, [s], mode == "deterministic", None,
                                                 record if s == seeds[0] else None)
                        episodes[-1]["handover_step"] = handover.handover_step
                    bar.update()
                row = {"setting": setting, "shape": shape or trained_shape, "mode": mode, **summarize(episodes),
                       "episode_results": episodes}
                if memory is not None:  # the share of steps whose camera experts were held ones
                    row["camera_held_fraction"] = memory.held_steps / max(memory.steps, 1)
                if codec is not None:
                    row["reject_flagged"] = bool(codec.reject)
                if cfg.encoder is not None:  # the reliability thresholds came from this file
                    row["encoder"] = str(cfg.encoder)
                if handover is not None:  # who took over, on what, and in how many episodes
                    row["fallback"] = str(cfg.fallback)
                    row["fallback_on"] = list(cfg.fallback_on)
                    row["handover_fraction"] = sum(e["handover_step"] is not None for e in episodes) / len(episodes)
                if cfg.press_in_hole is not None:  # the vertical action was scripted below this depth
                    row["press_in_hole"] = cfg.press_in_hole
                if cfg.ft_tare is not None:  # the F/T sensor was (or was not) zeroed at each reset
                    row["ft_tare"] = cfg.ft_tare
                row.update(env_changes(cfg))  # the hole's clearance or the camera's error, m, where set
                if memory is not None and memory.reject:  # the share of steps each flagged sense was left out
                    row["rejected_fraction"] = {m: k / max(memory.steps, 1) for m, k in memory.rejected.items()}
                if record:
                    name = f"rollout_{setting}.gif"
                    rollout_gif(record, episodes[0]["success"], out / name)
                    row["video"] = name
                rows.append(row)
                with open(out / PARTIAL, "a") as f:
                    f.write(json.dumps({"run": run_key, "shape_asked": shape, "trained_shape": trained_shape,
                                        "row": row}) + "\n")
        finally:
            venv.close()
            if fallback_venv is not None:
                fallback_venv.close()
    bar.close()
    summary = {"config": asdict(cfg), "policy": str(path), "trained_shape": trained_shape,
               "seeds": [seeds[0], seeds[-1]], "seconds": time.time() - t0, "results": rows,
               # the commit, package versions and CPU: another machine can round z differently
               "provenance": provenance()}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(report_markdown(summary))
    (out / PARTIAL).unlink(missing_ok=True)
    return summary


def build_handover(cfg: PolicyEvalConfig, primary: tuple, path: Path, env_over: dict[str, Any],
                   perturbations: list[str]):
    """(``HandoverPolicy``, the fallback's own venv, to close) for ``cfg.fallback``: the fallback policy
    loaded on the same env changes, checked to have learned the primary's task and to read only what
    the primary's env observes."""
    from mmrep.policy_handover import HandoverPolicy, check_fallback_inputs, check_same_task

    model, venv, pcfg, rms = primary
    if getattr(venv, "codec", None) is None:
        raise ValueError(f"fallback: {path} observes {pcfg.obs.kind!r}; a handover needs a policy on a frozen latent")
    fb_model, fb_venv, fb_cfg, fb_rms = load_policy(policy_file(cfg.fallback), env_over, perturbations, cfg.device)
    try:
        check_same_task(pcfg, fb_cfg, str(path), str(cfg.fallback))
        if getattr(fb_venv, "codec", None) is None:
            raise ValueError(f"fallback {cfg.fallback} observes {fb_cfg.obs.kind!r}; a handover needs a policy on "
                             "a frozen latent")
        check_fallback_inputs(fb_venv.codec, venv.venv.observation_space, str(cfg.fallback))
        handover = HandoverPolicy((model, venv, rms), (fb_model, fb_venv, fb_rms), cfg.fallback_on,
                                  cfg.fallback_patience, cfg.fallback_trigger)
    except Exception:
        fb_venv.close()
        raise
    return handover, fb_venv


def env_changes(cfg: PolicyEvalConfig) -> dict[str, float]:
    """The evaluation's changes to the env that key and tag its rows (m): ``clearance`` and
    ``camera_target_error``, where set."""
    return {name: getattr(cfg, name) for name in ("clearance", "camera_target_error") if getattr(cfg, name) is not None}


def evaluation_changes(cfg: dict[str, Any]) -> str:
    """The report's sentence on what the evaluation changed from training (empty where nothing)."""
    changes = []
    if cfg.get("clearance") is not None:
        changes.append(f"the hole's clearance {cfg['clearance'] * 1000:g} mm")
    if cfg.get("camera_target_error") is not None:
        changes.append(f"a camera calibration error of {cfg['camera_target_error'] * 1000:g} mm, random direction")
    if cfg.get("press_in_hole") is not None:
        changes.append(f"a scripted press below {cfg['press_in_hole'] * 1000:g} mm in the hole")
    if cfg.get("ft_tare"):
        changes.append("the F/T sensor zeroed at each reset, in free air")
    if cfg.get("fallback") is not None:
        changes.append(f"control handed to {cfg['fallback']} for the rest of an episode once "
                       f"{', '.join(cfg.get('fallback_on', []))} looked failed ({cfg.get('fallback_trigger')}) for "
                       f"{cfg.get('fallback_patience')} control steps in a row")
    return f" Changed from training: {'; '.join(changes)}." if changes else ""


def report_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# mmrep policy eval: {summary['policy']}", "",
             f"Seeds {summary['seeds'][0]}..{summary['seeds'][1]} (held out from training), trained on the "
             f"{summary['trained_shape']} peg; {summary['seconds'] / 60:.1f} min."
             + evaluation_changes(summary.get("config", {})), "",
             "| setting | shape | actions | success | 95% CI | ended in the hole | steps to success | "
             "peak step-mean force (N) | peak substep force (N) |", "|" + " --- |" * 9]
    for r in summary["results"]:
        steps = "-" if r["mean_steps_to_success"] is None else f"{r['mean_steps_to_success']:.1f}"
        in_hole = sum(map(ended_in_hole, r["episode_results"])) / max(len(r["episode_results"]), 1)
        lines.append(f"| {r['setting']} | {r['shape']} | {r['mode']} | {r['success_rate']:.2f} | "
                     f"{r['success_ci95'][0]:.2f}-{r['success_ci95'][1]:.2f} | {in_hole:.2f} | {steps} | "
                     f"{r['peak_force_step_mean_n']:.1f} | {r['peak_force_substep_n']:.1f} |")
    handed = [r for r in summary["results"] if "handover_fraction" in r]
    if handed:
        lines += ["", "Episodes handed over to the fallback: " + "; ".join(
            f"{r['setting']} {r['mode']} {r['handover_fraction']:.2f}" for r in handed) + "."]
    videos = [r for r in summary["results"] if r.get("video")]
    if videos:
        lines += [""] + [f"![{r['setting']}]({r['video']})" for r in videos]
    return "\n".join(lines) + "\n"
