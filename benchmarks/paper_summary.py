"""The paper's policy experiment in one table: every row of ``configs/paper/`` that ``make
paper`` has trained and evaluated, per closed-loop setting and action mode.

    python benchmarks/paper_summary.py runs/paper --out benchmarks/results/paper
    python benchmarks/paper_summary.py runs/paper --status     # where each run stands, nothing written

Reads every ``<row>_s<seed>/`` run folder holding ``eval/results.json`` (``mmrep policy eval``), or,
while that evaluation is still running or was killed, the rows it has finished so far
(``eval/rows.partial.jsonl``; such runs are listed under ``partial`` and marked in the table), and
reports the experiment's targets (met, not met, or not measured yet) and per row: the budget in env steps,
the training wall time per seed (TensorBoard event times, killed time not counted) and, for runs that
recorded it, the CPU hours (this process and its env workers, from ``eval.jsonl``), and per setting
and mode each seed's success on the held-out seeds, their mean, and the pooled rate over all seeds'
episodes with its 95% Wilson interval. A run's other evaluation folders (``eval_<name>/results.json``,
e.g. ``eval_transfer`` on the other peg shapes) add their settings and shapes as further cells (a run
trained with ``keep_best`` whose kept policy is an earlier one than its final, clearly better on the
periodic evaluation (``kept_best_step``), and has been evaluated under ``best/``, counts with the kept
policy's cells, and the table names the step it was kept at); rows
evaluated with camera memory (``mmrep policy eval camera_memory=true``) of a policy trained without it
are the setting's name with ``+memory``, apart from the plain ones (``+reject`` for those evaluated
with ``reject_flagged=true``: the flagged experts left out; ``+rollout_flags`` for those whose flags
were set on the policy's own clean rollouts, ``mmrep policy eval encoder=...``; ``+handover`` for those
where a fallback policy took over once a sense failed, ``mmrep policy eval fallback=...``, with the
pooled share of episodes handed over; ``+tare`` for those evaluated with the F/T sensor zeroed at each
reset, ``mmrep policy eval ft_tare=true``). Where such
evaluations exist, ``table.md`` also gets the remedies side by side: per action mode, one line per row
and evaluation, one column per setting. The touch rows also get the share of episodes that ended in
the hole, inserted or not (finding the hole is what touch is for there; finishing in the time limit is
the policy's speed).
With the optional ``rliable`` package (``pip install 'mmrep[stats]'``), each cell also gets the
interquartile mean of its seeds' success rates with a 95% stratified-bootstrap interval (rliable's
``get_interval_estimates``, seeded): ``summary.json``'s ``iqm`` and a table per mode in ``table.md``.
The touch setting's rows (``*_touch``) get their own targets (``touch_targets``); ``--rows`` keeps
only the named rows (``make paper-touch`` summarises its rows apart, into benchmarks/results/paper_touch).
Writes ``summary.json``, ``table.md`` (docs/results/policies.md includes it), ``curves.png`` (one panel per
row, its seeds' held-out curves) and ``robustness.png`` (success against perturbation for fused,
no_haptics and no_vision on each setting present; ``--figure-with`` adds another summary's rows),
and copies each run's ``config.json``, ``eval.jsonl`` and evaluations beside them (with the rollout
GIFs of each row's first seed) and its training wall time (``train_wall.json``, since the TensorBoard
files stay behind). Those copies are run folders this script reads again: restore them
under a fresh ``runs/paper`` (``cp -r benchmarks/results/paper/runs/* runs/paper/``) and the table
is rebuilt with the new runs beside the committed ones.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import textwrap
import zlib
from pathlib import Path

import numpy as np

from mmrep.policy import ended_in_hole, wilson_interval
from mmrep.policy_curves import plot_curve_panels, read_evaluations, wall_seconds
from mmrep.policy_eval import PARTIAL, kept_entries  # mmrep policy eval's finished rows, kept while it runs

RUN_NAME = re.compile(r"(?P<row>.+)_s(?P<seed>\d+)$")




def evaluated(run: Path) -> bool:
    return (run / "eval" / "results.json").exists() or (run / "eval" / PARTIAL).exists()


def chosen_on_settings(config: dict) -> bool:
    """Whether a run (its ``config.json``) kept the policy best on named periodic settings (``keep_best``
    with ``eval_settings``): such a run stands for its kept policy, and is evaluated in ``best/`` alone."""
    return bool(config.get("keep_best") and config.get("eval_settings"))


def find_runs(root: Path) -> dict[str, list[Path]]:
    """{row: run folders, by seed} of the evaluated (or partly evaluated) runs under ``root``."""
    rows: dict[str, list[Path]] = {}
    for run in sorted(root.iterdir()):
        m = RUN_NAME.match(run.name)
        if m and (evaluated(run) or evaluated(run / "best") and (run / "config.json").exists()
                  and chosen_on_settings(json.loads((run / "config.json").read_text()))):
            rows.setdefault(m["row"], []).append(run)
    if not rows:
        raise SystemExit(f"{root}: no <row>_s<seed>/eval/results.json (run `make paper` first)")
    return rows


def read_eval(folder: Path) -> dict:
    """An evaluation folder's ``results.json``, or what its kept rows give of it so far (``partial``)."""
    if (folder / "results.json").exists():
        return {**json.loads((folder / "results.json").read_text()), "partial": False}
    kept = kept_entries(folder / PARTIAL)
    kept = [k for k in kept if k["run"] == kept[-1]["run"]]  # the evaluation that wrote last
    first = kept[0]["run"] if kept else {"seed": 0, "episodes": 0}
    return {"seeds": [first["seed"], first["seed"] + first["episodes"] - 1], "results": [k["row"] for k in kept],
            "partial": True}


WALL = "train_wall.json"  # a copied run's training wall time, where its TensorBoard files did not travel


def train_wall_minutes(run: Path) -> float:
    """Training wall minutes: from TensorBoard's event times (``wall_seconds``), or, for a run copied
    by this script without its ``tb/`` folder, from the ``train_wall.json`` written beside the copy."""
    if not (run / "tb").is_dir() and (run / WALL).exists():
        return float(json.loads((run / WALL).read_text())["minutes"])
    return wall_seconds(run) / 60


def train_cpu_hours(run: Path) -> float | None:
    """Training CPU hours (the learner's process and its env workers, every resume; ``mmrep.rl.cpu_time``)
    from the last ``eval.jsonl`` row that carries them; None for runs older than that record or without
    ``/proc``."""
    rows = read_evaluations(run, missing_ok=True)
    cpu = [r.get("cpu_seconds") for r in rows if r.get("cpu_seconds") is not None]
    return cpu[-1] / 3600 if cpu else None


def steps_done(run: Path) -> int:
    """The env steps a run trained on: its final evaluation's (fewer than total_steps where the
    wall-clock budget, max_train_minutes, stopped it first)."""
    return int(read_evaluations(run)[-1]["timesteps"]) if (run / "eval.jsonl").exists() else 0


def eval_results(run: Path) -> list[Path]:
    """A run's evaluation folders with results (finished, or partly): ``eval/`` first, then ``eval_*/``."""
    folders = [run / "eval"] + sorted(p for p in run.glob("eval_*") if p.is_dir())
    return [f for f in folders if (f / "results.json").exists() or (f / PARTIAL).exists()]


MEMORY = "+memory"  # the setting's suffix for rows evaluated with camera memory
REJECT = "+reject"  # ... and for rows evaluated leaving out the flagged experts (reject_flagged)
UNREJECT = "-reject"  # ... and for rows of a policy trained with reject_flagged, evaluated without it
ROLLOUT_FLAGS = "+rollout_flags"  # ... and for rows whose flags were set on the policy's own rollouts (`encoder`)
PRESS = "+press"  # ... and for rows evaluated with a scripted insertion stage (`press_in_hole`) not trained with
CLEARANCE = "+clearance{mm:g}mm"  # ... and for rows evaluated at another clearance than trained (`clearance`)
CAMERA_ERROR = "+camera_error{mm:g}mm"  # ... and with another camera calibration error (`camera_target_error`)
HANDOVER = "+handover"  # ... and for rows where a fallback policy took over when a sense failed (`fallback`)
TARE = "+tare"  # ... and for rows evaluated with the F/T sensor zeroed at each reset, not trained so (`ft_tare`)


def seed_label(run: str) -> str:
    """``s<seed>`` of a run folder's name (``<row>_s<seed>``), or the name where it has none."""
    m = RUN_NAME.match(run)
    return f"s{m['seed']}" if m else run


def kept_best_step(run: Path, config: dict) -> int | None:
    """The env step of the policy a ``keep_best`` run kept (``best/``), where it is an earlier one than
    the final policy, clearly better on the periodic evaluation (the final policy's periodic rate below
    the kept one's 95% Wilson interval: with 10 periodic episodes, 7 against 6 is noise, and the policy
    kept on it measured worse than the final one on every held-out setting) and has been evaluated
    (``best/eval/results.json``): its evaluations then stand for the run. The periodic evaluations ran
    on seeds disjoint from the held-out ones, so the held-out rates stay unbiased. None where the run did
    not keep one, or kept the final policy, or the two are within the noise. A run that chose on named
    periodic settings (``eval_settings``: robustness, not the clean task alone) is defined by its
    choice: its kept policy stands for it once evaluated, whichever step it is."""
    best = run / "best"
    if not config.get("keep_best") or not (best / "eval.json").exists() or not evaluated(best):
        return None
    kept = json.loads((best / "eval.json").read_text())
    if chosen_on_settings(config):
        return int(kept["timesteps"])
    final = read_evaluations(run)[-1]
    clearly_better = final["success_rate"] < kept["success_ci95"][0]
    return int(kept["timesteps"]) if kept["timesteps"] < final["timesteps"] and clearly_better else None


def row_summary(runs: list[Path]) -> dict:
    """Budget, wall time and per-(setting, mode) success of one row's seeds (for a ``keep_best`` run
    whose kept policy is an earlier one, that policy's: ``kept_best``)."""
    configs = [json.loads((r / "config.json").read_text()) for r in runs]
    kept = {run.name: step for run, config in zip(runs, configs)
            if (step := kept_best_step(run, config)) is not None}
    results = [read_eval((r / "best" if r.name in kept else r) / "eval") for r in runs]
    cells: dict[str, dict] = {}
    for run, config in zip(runs, configs):
        trained_with_memory = config["obs"].get("camera_memory", False)  # then memory is how it is evaluated
        trained_rejecting = config["obs"].get("reject_flagged", False)
        trained_pressing = config["env"].get("controller", {}).get("press_in_hole")
        policy_folder = run / "best" if run.name in kept else run
        evaluations = map(read_eval, eval_results(policy_folder))
        for r, unfinished in ((r, e["partial"]) for e in evaluations for r in e["results"]):
            setting = r["setting"] + (MEMORY if "camera_held_fraction" in r and not trained_with_memory else "")
            rejecting = r.get("reject_flagged", trained_rejecting)  # rows written before the option: as trained
            if rejecting != trained_rejecting:
                setting += REJECT if rejecting else UNREJECT
            if r.get("encoder"):  # the policy's encoder with other reliability thresholds
                setting += ROLLOUT_FLAGS
            if r.get("press_in_hole") and r["press_in_hole"] != trained_pressing:
                setting += PRESS
            if r.get("clearance") and r["clearance"] != config["env"]["clearance"]:
                setting += CLEARANCE.format(mm=round(r["clearance"] * 1000, 3))
            trained_error = config["env"]["randomization"].get("camera_target_error", 0.0)
            if r.get("camera_target_error") is not None and r["camera_target_error"] != trained_error:
                setting += CAMERA_ERROR.format(mm=round(r["camera_target_error"] * 1000, 3))
            if r.get("ft_tare") is not None and r["ft_tare"] != config["obs"].get("ft_tare", False):
                setting += TARE
            if r.get("fallback"):
                setting += HANDOVER
            key = f"{setting}/{r['shape']}/{r['mode']}"
            cell = cells.setdefault(key, {"setting": setting, "shape": r["shape"], "mode": r["mode"],
                                          "seeds": {}, "successes": 0, "episodes": 0, "in_hole": 0,
                                          "partial": False})
            cell["partial"] |= unfinished  # from an evaluation still running, or cut short
            wins = sum(e["success"] for e in r["episode_results"])
            cell["seeds"][run.name] = r["success_rate"]
            cell["successes"] += wins
            cell["episodes"] += len(r["episode_results"])
            cell["in_hole"] += sum(map(ended_in_hole, r["episode_results"]))
            if "handover_fraction" in r:  # episodes handed over to the fallback, pooled below
                cell["handed_over"] = cell.get("handed_over", 0) + sum(
                    e.get("handover_step") is not None for e in r["episode_results"])
    for cell in cells.values():
        cell["mean_of_seeds"] = float(np.mean(list(cell["seeds"].values())))
        cell["pooled"] = cell["successes"] / max(cell["episodes"], 1)
        cell["pooled_ci95"] = wilson_interval(cell["successes"], cell["episodes"])
        cell["in_hole_pooled"] = cell["in_hole"] / max(cell["episodes"], 1)  # found the hole, inserted or not
        cell["in_hole_ci95"] = wilson_interval(cell["in_hole"], cell["episodes"])
        if "handed_over" in cell:
            cell["handover"] = cell["handed_over"] / max(cell["episodes"], 1)
    return {"runs": [r.name for r in runs], "obs": configs[0]["obs"], "algo": configs[0]["algo"]["name"],
            "total_steps": sorted({c["total_steps"] for c in configs}),
            "max_train_minutes": sorted({c.get("max_train_minutes") or 0 for c in configs}),
            "env_steps_done": {r.name: steps_done(r) for r in runs},
            "wall_minutes": {r.name: train_wall_minutes(r) for r in runs},
            "cpu_hours": {r.name: train_cpu_hours(r) for r in runs},
            # a run continued from another's policy counts that policy's CPU hours too (its wall is its own)
            "continued": any(c.get("init_policy") for c in configs),
            "eval_seeds": results[0]["seeds"], "cells": cells, "kept_best": kept,
            "partial": [run.name for run in runs if any(read_eval(f)["partial"] for f in eval_results(run))]}


def budget(row: dict) -> str:
    """The row's budget in env steps; where a wall-clock budget stopped a run first, the steps it got."""
    text = "/".join(f"{t:,}" for t in row["total_steps"])
    done = row["env_steps_done"].values()
    if any(d < min(row["total_steps"]) for d in done):
        text += f" ({', '.join(f'{d:,}' for d in done)} in {max(row['max_train_minutes']):g} min)"
    return text


def mode_cells(cell: dict | None) -> str:
    """The pooled rate, its interval and the per-seed rates of one cell; dashes where it was not evaluated."""
    if cell is None:
        return "- | - | -"
    lo, hi = cell["pooled_ci95"]
    return f"{cell['pooled']:.2f} | {lo:.2f}-{hi:.2f} | " + ", ".join(f"{v:.2f}" for v in cell["seeds"].values())


def table(rows: dict[str, dict], setting: str) -> list[str]:
    """Markdown rows: one line per row of the experiment and peg shape for ``setting``."""
    lines = ["| row | seeds | env steps | wall (min, per seed) | deterministic (pooled) | 95% CI | per seed | "
             "sampled (pooled) | 95% CI | per seed |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in rows.items():
        cpu = row.get("cpu_hours", {})
        unit = "CPU h incl. init_policy" if row.get("continued") else "CPU h"
        wall = ", ".join(f"{m:.0f}" + (f" ({cpu[r]:.1f} {unit})" if cpu.get(r) is not None else "")
                         for r, m in row["wall_minutes"].items())
        shapes = dict.fromkeys(c["shape"] for c in row["cells"].values() if c["setting"] == setting)
        for shape in shapes:
            modes = [row["cells"].get(f"{setting}/{shape}/{mode}") for mode in ("deterministic", "stochastic")]
            # only the settings an unfinished evaluation wrote: a run's other evaluations stand finished
            mark = " (evaluation unfinished)" if any(c.get("partial") for c in modes if c is not None) else ""
            kept = row.get("kept_best", {})
            if kept:  # by seed: a row of eight kept policies would otherwise repeat its name eight times
                mark += " (the policy kept at: " + ", ".join(
                    f"{seed_label(run)} {step:,}" for run, step in kept.items()) + " steps)"
            # the seeds evaluated in this setting, which can be fewer than the row's trained seeds
            seeds = max(len(c["seeds"]) for c in modes if c is not None)
            lines.append(f"| {name} ({shape}){mark} | {seeds} | {budget(row)} | "
                         f"{wall} | " + " | ".join(mode_cells(c) for c in modes) + " |")
    return lines


FUSED_TARGET = 0.90  # the fused representation's success on the square peg
PERTURBED_WITHIN = 0.10  # under the occluder and pushes, within 10 points of clean
TOUCH_HAPTICS_GAP = 0.20  # the touch setting: no_haptics at least 20 points below fused (disjoint intervals)
TOUCH_OCCLUDED_GAP = 0.30  # the touch setting, occluder at first contact: fused at least 30 points above no_haptics
SENSE_FAILURES = ["occluder_after_contact", "ft_bias", "ft_dead", "ft_noise", "pushes"]


def targets(rows: dict[str, dict], fused: str = "fused_insertion", shape: str = "square") -> list[dict]:
    """The experiment's targets, per action mode, from the pooled cells: the fused row at least 90%; no
    haptics and no vision clearly below it (their 95% interval entirely under the fused row's); the
    fused row under the occluder (also after first contact) and pushes within 10 points of its clean
    rate. A target whose rows or settings have not run yet is reported as not measured (met None).
    Where the fused row was also evaluated with camera memory, those settings are scored beside."""
    def cell(row: str, setting: str, mode: str) -> dict | None:
        return rows.get(row, {}).get("cells", {}).get(f"{setting}/{shape}/{mode}")

    out = []
    for mode in ("deterministic", "stochastic"):
        clean = cell(fused, "clean", mode)
        out.append({"target": f"{fused} >= {FUSED_TARGET:.0%}", "mode": mode,
                    "measured": None if clean is None else rate(clean),
                    "met": None if clean is None else clean["pooled"] >= FUSED_TARGET})
        for base in ("no_haptics", "no_vision"):
            other = cell(base, "clean", mode)
            both = clean is not None and other is not None
            out.append({"target": f"{base} clearly below {fused}", "mode": mode,
                        "measured": f"{rate(other)} against {rate(clean)}" if both else None,
                        "met": other["pooled_ci95"][1] < clean["pooled_ci95"][0] if both else None})
        perturbed = ["occluder", "occluder_after_contact", "pushes"]
        perturbed += [s + MEMORY for s in perturbed if cell(fused, s + MEMORY, mode) is not None]
        for setting in perturbed:
            pert = cell(fused, setting, mode)
            both = clean is not None and pert is not None
            out.append({"target": f"{fused} under {setting} within {PERTURBED_WITHIN * 100:.0f} points of clean",
                        "mode": mode,
                        "measured": f"{rate(pert)} against {rate(clean)}" if both else None,
                        "met": clean["pooled"] - pert["pooled"] <= PERTURBED_WITHIN + 1e-9 if both else None})
    return out


def sense_failure_targets(rows: dict[str, dict], row: str, mode: str, shape: str = "square",
                          variant: str = "") -> list[dict]:
    """``row`` at least 90% clean and within 10 points of its clean rate under each sense failure
    (``SENSE_FAILURES``), in one action mode; ``variant``: a setting suffix such as ``+press``. A
    robustness target met while clean itself is below 90% is marked ``vacuous``."""
    def cell(setting: str) -> dict | None:
        return rows.get(row, {}).get("cells", {}).get(f"{setting}/{shape}/{mode}")

    tag = f" ({variant})" if variant else ""
    clean = cell("clean" + variant)
    out = [{"target": f"{row} >= {FUSED_TARGET:.0%}{tag}", "mode": mode,
            "measured": None if clean is None else rate(clean),
            "met": None if clean is None else clean["pooled"] >= FUSED_TARGET}]
    for setting in SENSE_FAILURES:
        pert = cell(setting + variant)
        both = clean is not None and pert is not None
        met = clean["pooled"] - pert["pooled"] <= PERTURBED_WITHIN + 1e-9 if both else None
        out.append({"target": f"{row} under {setting} within {PERTURBED_WITHIN * 100:.0f} points of clean{tag}",
                    "mode": mode, "measured": f"{rate(pert)} against {rate(clean)}" if both else None, "met": met,
                    "vacuous": bool(met) and clean["pooled"] < FUSED_TARGET})
    return out


# the default setting's fault remedies, each scored on its own by sense_failure_targets
DEFAULT_REMEDY_ROWS = ["fused_memory_occluder", "fused_memory_odometry_insertion", "fused_faults_insertion",
                       "fused_drc_insertion", "fused_drc_odometry_insertion", "fused_drc_odometry_occluder_insertion",
                       "fused_faults_memory_odometry_insertion",
                       # the same configs at their full 300k budget (the rows above ran at 150k), in their own folders
                       "fused_memory_odometry_insertion_300k", "fused_faults_memory_odometry_insertion_300k"]


# evaluation-time remedies of a sensor fault, scored like the policy as trained where a row was evaluated
# with them on the clean setting too: a fallback policy that takes over, the F/T sensor zeroed at reset
FAULT_REMEDIES = (HANDOVER, TARE, TARE + HANDOVER)


def fault_remedies(rows: dict[str, dict], row: str, shape: str = "square") -> list[str]:
    """The ``FAULT_REMEDIES`` ``row`` was evaluated with, clean included (so its targets can be scored)."""
    cells = rows.get(row, {}).get("cells", {})
    return [v for v in FAULT_REMEDIES if any(f"clean{v}/{shape}/{m}" in cells for m in ("deterministic", "stochastic"))]


def remedy_targets(rows: dict[str, dict], shape: str = "square") -> list[dict]:
    """The sense-failure targets for each of ``DEFAULT_REMEDY_ROWS`` that has runs, both action modes, as
    trained and with each evaluation-time remedy it was evaluated with (``fault_remedies``)."""
    return [t for row in DEFAULT_REMEDY_ROWS if row in rows for variant in ["", *fault_remedies(rows, row, shape)]
            for mode in ("deterministic", "stochastic") for t in sense_failure_targets(rows, row, mode, shape, variant)]


def touch_targets(rows: dict[str, dict], shape: str = "square", fused_row: str = "fused_touch",
                  other_row: str = "no_haptics_touch") -> list[dict]:
    """The touch-needing setting's targets (``*_touch`` rows), per action mode: fused_touch at least
    90% clean and within 10 points of it under each sense failure (``SENSE_FAILURES``); no_haptics_touch
    at least 20 points below it with disjoint 95% intervals; under the occluder at first contact,
    fused_touch at least 30 points above no_haptics_touch. Empty where fused_touch has no run.
    Where the rows were also evaluated with the scripted insertion stage (``+press``), the same targets
    are scored again on those cells, named "... (+press)"; where fused_touch was evaluated with camera
    memory under the occluder (``+memory``), the occluder gap is scored for it too. A robustness target
    met while clean itself is below 90% is marked ``vacuous`` (a policy that fails everywhere loses
    nothing to a fault). ``fused_row`` / ``other_row``: another pair of rows that differ in the senses
    only (e.g. fused_smooth_touch / no_haptics_smooth_touch)."""
    if fused_row not in rows:
        return []

    def cell(row: str, setting: str, mode: str) -> dict | None:
        return rows.get(row, {}).get("cells", {}).get(f"{setting}/{shape}/{mode}")

    out = []
    variants = [""] + [PRESS] * any(cell(fused_row, "clean" + PRESS, m) for m in ("deterministic", "stochastic"))
    for variant in variants:
        tag = f" ({variant})" if variant else ""
        for mode in ("deterministic", "stochastic"):
            out += sense_failure_targets(rows, fused_row, mode, shape, variant)
            gaps = [("clean", "", TOUCH_HAPTICS_GAP, True), ("occluder_after_contact", "", TOUCH_OCCLUDED_GAP, False)]
            if cell(fused_row, "occluder_after_contact" + MEMORY + variant, mode):  # fused with camera memory
                gaps.append(("occluder_after_contact", MEMORY, TOUCH_OCCLUDED_GAP, False))
            for setting, memory, gap, disjoint in gaps:
                fused = cell(fused_row, setting + memory + variant, mode)
                # with memory, against the other row with the same memory where it was evaluated so
                other_memory = bool(memory) and cell(other_row, setting + memory + variant, mode) is not None
                other = cell(other_row, setting + (memory if other_memory else "") + variant, mode)
                both = fused is not None and other is not None
                met = None
                if both:
                    met = fused["pooled"] - other["pooled"] >= gap - 1e-9
                    if disjoint:
                        met = met and other["pooled_ci95"][1] < fused["pooled_ci95"][0]
                with_memory = " with camera memory" + (" (both rows)" if other_memory else "") if memory else ""
                out.append({"target": f"{other_row} at least {gap * 100:.0f} points below {fused_row}"
                                      f"{with_memory} ({setting}"
                                      + (", disjoint 95% intervals)" if disjoint else ")") + tag,
                            "mode": mode, "measured": f"{rate(other)} against {rate(fused)}" if both else None,
                            "met": met})
    for variant in fault_remedies(rows, fused_row, shape):
        out += [t for mode in ("deterministic", "stochastic")
                for t in sense_failure_targets(rows, fused_row, mode, shape, variant)]
    return out


# the pairs of rows that differ in the senses only, each scored by touch_targets
TOUCH_PAIRS = [("fused_touch", "no_haptics_touch"), ("fused_smooth_touch", "no_haptics_smooth_touch"),
               ("fused_camera_error_touch", "no_haptics_camera_error_touch"),
               ("fused_memory_odometry_camera_error_touch", "no_haptics_memory_odometry_camera_error_touch"),
               ("fused_memory_odometry_camera_error_200k_touch", "no_haptics_memory_odometry_camera_error_200k_touch"),
               # the 200k row continued to 300k; its partner stayed at 200k (the gap lines name both)
               ("fused_memory_odometry_camera_error_300k_touch", "no_haptics_memory_odometry_camera_error_200k_touch"),
               # the 200k row continued to 250k, the policy best on clean and the occluder kept: the headline row
               ("fused_memory_odometry_camera_error_250k_selected_touch",
                "no_haptics_memory_odometry_camera_error_200k_touch")]

# a panel's rows; a name may carry a setting suffix (row+tare): that row's cells evaluated so
ROBUSTNESS_ROWS = {"default setting": ("fused_insertion", "no_haptics", "no_vision"),
                   "default setting, camera memory, odometry, the F/T faults and the occluder in training": (
                       "fused_faults_memory_odometry_insertion_300k",
                       # the F/T sensor zeroed at reset and the no_haptics_150k policy taking over a dead one
                       "fused_faults_memory_odometry_insertion_300k+tare+handover"),
                   "touch setting": ("fused_touch", "no_haptics_touch", "no_vision_touch"),
                   "touch setting, action-change cost, separate lateral bound": ("fused_smooth_touch",
                                                                                  "no_haptics_smooth_touch"),
                   "the same with a 24 mm camera calibration error": ("fused_camera_error_touch",
                                                                      "no_haptics_camera_error_touch"),
                   "the same, camera memory and odometry, the occluder in training": (
                       "fused_memory_odometry_camera_error_touch", "no_haptics_memory_odometry_camera_error_touch"),
                   # the dead sensor handed to the no_haptics partner is the +tare+handover name's only cell
                   "the same at 250k, the policy best on clean and the occluder kept": (
                       "fused_memory_odometry_camera_error_250k_selected_touch+tare",
                       "no_haptics_memory_odometry_camera_error_200k_touch",
                       "fused_memory_odometry_camera_error_250k_selected_touch+tare+handover")}
ROBUSTNESS_SETTINGS = ["clean", "occluder_after_contact", "occluder", "pushes", "ft_noise", "ft_bias", "ft_dead"]


def plot_robustness(rows: dict[str, dict], path: Path, mode: str = "deterministic", shape: str = "square") -> bool:
    """Success against perturbation: one panel per setting family (``ROBUSTNESS_ROWS``) that has a row,
    fused / no_haptics / no_vision as markers per perturbation, the pooled rate with its 95% Wilson
    interval as an error bar, and the number of seeds in the legend; one more panel for the touch rows
    with the scripted insertion stage where they were evaluated with it (``+press``). A name with a
    setting suffix (``row+tare``) plots that row's cells evaluated so. At most three panels a line.
    False (nothing written) when none of those rows is in ``rows``."""
    panels = {title: ([r for r in names if r.partition("+")[0] in rows], "")
              for title, names in ROBUSTNESS_ROWS.items()}
    pressed = [r for r in ROBUSTNESS_ROWS["touch setting"]
               if any(k.split("/")[0].endswith(PRESS) for k in rows.get(r, {}).get("cells", {}))]
    if pressed:
        panels["touch setting, scripted insertion stage"] = (pressed, PRESS)
    panels = {t: v for t, v in panels.items() if v[0]}
    if not panels:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(panels))  # one long line of panels cannot be read at page width
    lines = -(-len(panels) // cols)
    fig, axes = plt.subplots(lines, cols, figsize=(6.5 * cols, 5.6 * lines), squeeze=False, sharey=True)
    x = np.arange(len(ROBUSTNESS_SETTINGS))
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (title, (names, suffix)) in zip(axes.flat, panels.items()):
        for k, name in enumerate(names):
            row, plus, own = name.partition("+")
            cells = [rows[row]["cells"].get(f"{s}{plus + own or suffix}/{shape}/{mode}") for s in ROBUSTNESS_SETTINGS]
            xs = [x[i] + (k - 1) * 0.2 for i, c in enumerate(cells) if c]
            ys = np.array([c["pooled"] for c in cells if c])
            lo = np.array([c["pooled_ci95"][0] for c in cells if c])
            hi = np.array([c["pooled_ci95"][1] for c in cells if c])
            seeds = max((len(c["seeds"]) for c in cells if c), default=0)
            # a Wilson bound can round a hair past the rate at 0 or 1: matplotlib refuses negative errors
            ax.errorbar(xs, ys, yerr=np.clip([ys - lo, hi - ys], 0, None), fmt="o", capsize=3,
                        label=f"{name} ({seeds} seed{'s' if seeds != 1 else ''})")
        ax.set_xticks(x, ROBUSTNESS_SETTINGS, rotation=30, ha="right")
        ax.set_title(textwrap.fill(f"{title}, {shape} peg, {'mean' if mode == 'deterministic' else 'sampled'} action",
                                   70), fontsize=10)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=1)  # below: never on a point
    for line in axes:
        line[0].set_ylabel("held-out success (pooled, 95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def rate(cell: dict) -> str:
    """A pooled rate with its 95% interval: "0.81 (0.72-0.87)"; with the seeds pooled where the cell
    says: "0.81 (0.72-0.87, 3 seeds)"."""
    seeds = f", {len(cell['seeds'])} seed{'s' if len(cell['seeds']) != 1 else ''}" if cell.get("seeds") else ""
    # a target compares this rate against a threshold: 0.895 printed as "0.90" beside "not met" misleads,
    # so a rate that two decimals do not hold exactly gets a third
    p = cell["pooled"]
    text = f"{p:.2f}" if abs(p - round(p, 2)) < 1e-9 else f"{p:.3f}"
    return f"{text} ({cell['pooled_ci95'][0]:.2f}-{cell['pooled_ci95'][1]:.2f}{seeds})"


def targets_table(items: list[dict]) -> list[str]:
    """One line per target: the measured rates and the verdict for the mean and the sampled action."""
    def verdict(t: dict | None) -> str:
        if t is None:  # this target's variant was evaluated in the other action mode only
            return "-: not measured yet"
        met = "not measured yet" if t["met"] is None else ("met" if t["met"] else "**not met**")
        if t.get("vacuous"):
            met = f"met, but vacuously: clean is below {FUSED_TARGET:.0%}"
        return f"{t['measured'] or '-'}: {met}"

    by_target: dict[str, dict[str, dict]] = {}
    for t in items:
        by_target.setdefault(t["target"], {})[t["mode"]] = t
    lines = ["| target (square peg, held-out seeds) | mean action | sampled |", "| --- | --- | --- |"]
    for name, modes in by_target.items():
        lines.append(f"| {name} | {verdict(modes.get('deterministic'))} | {verdict(modes.get('stochastic'))} |")
    return lines


def run_status(run: Path) -> dict:
    """Where one run folder stands: env steps trained of its budget, whether training finished
    (``policy.pt``), and per evaluation folder whether it finished or how many rows it has kept."""
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
    evals = {}
    kept = [run / "best" / "eval"] + sorted(p for p in (run / "best").glob("eval_*") if p.is_dir())
    for folder in [run / "eval"] + sorted(p for p in run.glob("eval_*") if p.is_dir()) + kept:
        name = str(folder.relative_to(run))
        if (folder / "results.json").exists():
            evals[name] = "done"
        elif (folder / PARTIAL).exists():
            evals[name] = f"{len(read_eval(folder)['results'])} rows kept"
    steps, minutes = steps_done(run), None
    if (run / "checkpoint.pt").exists():  # further than its last periodic evaluation while training
        import torch

        ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
        steps = int(ckpt["num_timesteps"])
        minutes = ckpt["train_seconds"] / 60 if "train_seconds" in ckpt else None  # older checkpoints lack it
    return {"run": run.name, "steps": steps, "total_steps": config.get("total_steps"),
            "train_minutes": minutes, "max_train_minutes": config.get("max_train_minutes"),
            "trained": (run / "policy.pt").exists(), "evaluations": evals}


def status_lines(root: Path, rows: list[str]) -> list[str]:
    """One line per run folder under ``root`` (``run_status``), and the rows with no run yet."""
    lines, seen = [], set()
    for run in sorted(p for p in root.iterdir() if RUN_NAME.match(p.name)):
        st = run_status(run)
        seen.add(RUN_NAME.match(run.name)["row"])
        train = ("trained" if st["trained"] else "training" if (run / "checkpoint.pt").exists() or not st["evaluations"]
                 else "a copy without its policy")  # restored from benchmarks/results/paper/runs
        evals = ", ".join(f"{k} {v}" for k, v in st["evaluations"].items()) or "not evaluated"
        wall = "" if st["train_minutes"] is None else f", {st['train_minutes']:.0f} min" + (
            f" of its {st['max_train_minutes']:g}" if st["max_train_minutes"] else "")
        lines.append(f"{st['run']}: {train}, {st['steps']} of {st['total_steps']} env steps{wall}; {evals}")
    missing = [r for r in rows if r not in seen]
    if missing:
        lines.append("no run yet: " + ", ".join(missing))
    return lines


def iqm_over_seeds(rows: dict[str, dict], reps: int = 2000, seed: int = 0) -> dict[str, dict[str, dict]]:
    """{row: {cell key: {"iqm", "ci95", "seeds"}}}: the interquartile mean of each cell's per-seed
    success rates (a 25% trimmed mean: with 3 seeds, the mean) and its 95% interval from rliable's
    stratified bootstrap over seeds (``reps`` replications). Empty when rliable is not installed.

    Each cell's bootstrap is seeded from ``seed`` and the cell's own row and key, so an interval is the
    same on every run and does not move when other rows or cells are added. rliable's
    ``StratifiedBootstrap.update_indices`` draws from NumPy's global generator (``np.random.choice``),
    not from the ``random_state`` it is given, so the global state is set per cell here and restored
    after."""
    try:
        from rliable import library, metrics
    except ImportError:
        print("rliable is not installed (pip install 'mmrep[stats]'): no interquartile means")
        return {}

    def iqm(scores: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(scores)])

    out: dict[str, dict[str, dict]] = {}
    outer_state = np.random.get_state()  # noqa: NPY002 (rliable's global generator)
    try:
        for name, row in rows.items():
            for key, cell in row["cells"].items():
                scores = np.asarray(list(cell["seeds"].values()), dtype=np.float64)[:, None]  # (seeds, 1 task)
                cell_seed = np.random.SeedSequence([seed, zlib.crc32(name.encode()), zlib.crc32(key.encode())])
                np.random.seed(cell_seed.generate_state(1)[0])  # noqa: NPY002 (rliable's global generator)
                point, interval = library.get_interval_estimates(
                    {name: scores}, iqm, reps=reps, random_state=np.random.RandomState(seed))
                out.setdefault(name, {})[key] = {"iqm": float(point[name][0]),
                                                 "ci95": [float(interval[name][0, 0]), float(interval[name][1, 0])],
                                                 "seeds": len(scores)}
    finally:
        np.random.set_state(outer_state)  # noqa: NPY002 (rliable's global generator)
    return out


# where an evaluation variant's suffix (+memory, +reject, -reject, +rollout_flags, +press) starts
SUFFIX = re.compile(r"[+-]")


def split_setting(setting: str) -> tuple[str, str]:
    """("occluder_after_contact", "+memory+reject") of "occluder_after_contact+memory+reject"."""
    base = SUFFIX.split(setting, maxsplit=1)[0]
    return base, setting[len(base):]


def in_hole_rate(cell: dict) -> str:
    """The pooled share of episodes that ended in the hole (inserted or not) with its 95% interval."""
    return f"{cell['in_hole_pooled']:.2f} ({cell['in_hole_ci95'][0]:.2f}-{cell['in_hole_ci95'][1]:.2f})"


def remedy_tables(rows: dict[str, dict], shape: str = "square", in_hole: bool = False) -> list[str]:
    """Markdown: per action mode, one line per row and evaluation variant (the policy as trained, or
    evaluated with camera memory / the flagged experts left out) and one column per base setting, each
    cell the pooled success rate over the seeds with its 95% interval: the remedies side by side.
    ``in_hole``: the share of episodes that ended in the hole instead (``mmrep.policy.ended_in_hole``)."""
    lines: list[str] = []
    what, cell_text = ("ended in the hole", in_hole_rate) if in_hole else ("remedies x settings", rate)
    cells = [c for r in rows.values() for c in r["cells"].values() if c["shape"] == shape]
    order = ["clean", *SENSE_FAILURES]  # then the others by name
    bases = sorted({split_setting(c["setting"])[0] for c in cells},
                   key=lambda s: (order.index(s) if s in order else len(order), s))
    for mode in sorted({c["mode"] for c in cells}):
        lines += [f"### {what}, {mode} action ({shape} peg; pooled over seeds, 95% Wilson)", "",
                  "| row | evaluated | seeds | " + " | ".join(bases) + " |",
                  "| --- | --- | --- |" + " --- |" * len(bases)]
        for name, row in rows.items():
            variants = {split_setting(c["setting"])[1] for c in row["cells"].values() if c["shape"] == shape}
            for variant in sorted(variants):
                line = [row["cells"].get(f"{base}{variant}/{shape}/{mode}") for base in bases]
                if not any(line):
                    continue
                seeds = max(len(c["seeds"]) for c in line if c)
                lines.append(f"| {name} | {variant.lstrip('+') or 'as trained'} | {seeds} | "
                             + " | ".join(cell_text(c) if c else "-" for c in line) + " |")
        lines.append("")
    return lines


def iqm_tables(rows: dict[str, dict], iqm: dict[str, dict[str, dict]], shape: str = "square") -> list[str]:
    """Markdown: per action mode, rows x settings, each cell "IQM (low-high)" over the seeds."""
    lines: list[str] = []
    modes = sorted({c["mode"] for r in rows.values() for c in r["cells"].values()})
    settings = sorted({c["setting"] for r in rows.values() for c in r["cells"].values()},
                      key=lambda s: (s != "clean", s))
    for mode in modes:
        lines += [f"### interquartile mean over seeds, {mode} action ({shape} peg; 95% stratified bootstrap, rliable)",
                  "", "| row | seeds | " + " | ".join(settings) + " |", "| --- | --- |" + " --- |" * len(settings)]
        for name in sorted(iqm):
            cells = [iqm[name].get(f"{s}/{shape}/{mode}") for s in settings]
            if not any(cells):
                continue
            seeds = max(c["seeds"] for c in cells if c)
            text = ["-" if not c else f"{c['iqm']:.2f} (one seed)" if c["seeds"] < 2
                    else f"{c['iqm']:.2f} ({c['ci95'][0]:.2f}-{c['ci95'][1]:.2f})" for c in cells]
            lines.append(f"| {name} | {seeds} | " + " | ".join(text) + " |")
        lines.append("")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="the folder of the row runs (runs/paper)")
    ap.add_argument("--out", type=Path, help="where the summary goes (required unless --status)")
    ap.add_argument("--status", action="store_true",
                    help="only print where every run stands (steps trained, evaluations done or kept)")
    ap.add_argument("--configs", type=Path, default=Path(__file__).resolve().parents[1] / "configs" / "paper",
                    help="the rows' configs (--status lists the rows with no run yet)")
    ap.add_argument("--iqm-reps", type=int, default=2000,
                    help="bootstrap replications of the interquartile-mean intervals (0: none)")
    ap.add_argument("--rows", nargs="+", metavar="ROW",
                    help="summarise only these rows (default: every evaluated row under root)")
    ap.add_argument("--figure-with", nargs="+", type=Path, default=[], metavar="SUMMARY_JSON",
                    help="rows of other summaries (their summary.json) to draw beside these in robustness.png, "
                         "e.g. the default setting's committed rows beside the touch setting's")
    args = ap.parse_args()
    if args.status:
        rows = sorted(p.stem for p in args.configs.glob("*.yaml") if p.stem != "base")
        print("\n".join(status_lines(args.root, rows)))
        return
    if args.out is None:
        ap.error("--out is required (or --status)")
    args.out.mkdir(parents=True, exist_ok=True)
    found = find_runs(args.root)
    if args.rows:
        unknown = sorted(set(args.rows) - set(found))
        if unknown:
            raise SystemExit(f"{args.root}: no evaluated run of rows {unknown} (evaluated: {sorted(found)})")
        found = {name: runs for name, runs in found.items() if name in args.rows}
    rows = {name: row_summary(runs) for name, runs in found.items()}
    settings = sorted({c["setting"] for r in rows.values() for c in r["cells"].values()},
                      key=lambda s: (s != "clean", s))
    text = []
    for setting in settings:
        text += [f"### {setting}", ""] + table({n: r for n, r in rows.items()
                                               if any(c["setting"] == setting for c in r["cells"].values())},
                                              setting) + [""]
    goals = targets(rows) if "fused_insertion" in rows or not any(n.endswith("_touch") for n in rows) else []
    touch_goals = [t for pair in TOUCH_PAIRS for t in touch_targets(rows, fused_row=pair[0], other_row=pair[1])]
    remedy_goals = remedy_targets(rows)
    text = (["### targets", ""] + targets_table(goals) + [""] if goals else []) + (
        ["### targets of the fault remedies on the default setting", ""] + targets_table(remedy_goals) + [""]
        if remedy_goals else []) + (
        ["### targets on the touch setting", ""] + targets_table(touch_goals) + [""] if touch_goals else []) + text
    goals += remedy_goals + touch_goals
    if any(SUFFIX.search(c["setting"]) for r in rows.values() for c in r["cells"].values()):
        text += remedy_tables(rows)
    touch_rows = {n: r for n, r in rows.items() if n.endswith("_touch")}
    if touch_rows:  # where touch is needed to find the hole: found it, apart from finishing in the time limit
        text += remedy_tables(touch_rows, in_hole=True)
    iqm = iqm_over_seeds(rows, reps=args.iqm_reps) if args.iqm_reps > 0 else {}
    if iqm:
        text += iqm_tables(rows, iqm)
    (args.out / "table.md").write_text("\n".join(text))
    (args.out / "summary.json").write_text(json.dumps({"benchmark": "paper", "targets": goals, "rows": rows,
                                                       "iqm": iqm}, indent=2))
    curves = {row: {f"s{RUN_NAME.match(run.name)['seed']}": run for run in runs if (run / "eval.jsonl").exists()}
              for row, runs in found.items()}
    curves = {row: runs for row, runs in curves.items() if runs}
    if curves:  # one panel per row, its seeds as curves: twenty runs on one axis cannot be read
        plot_curve_panels(curves, args.out / "curves.png")
    figure_rows = {}
    for other in args.figure_with:
        try:
            figure_rows.update(json.loads(other.read_text())["rows"])
        except (OSError, ValueError, KeyError) as err:
            raise SystemExit(f"--figure-with {other}: not a paper summary.json ({err})") from err
    robustness = plot_robustness({**figure_rows, **rows}, args.out / "robustness.png")
    for row_name, runs in found.items():
        for k, run in enumerate(runs):
            dest = args.out / "runs" / run.name
            dest.mkdir(parents=True, exist_ok=True)
            (dest / WALL).write_text(json.dumps({"minutes": rows[row_name]["wall_minutes"][run.name]}) + "\n")
            folders = [f.relative_to(run) for f in eval_results(run) + eval_results(run / "best")]
            names = ["config.json", "eval.jsonl", "best/eval.json"] + [str(f / n) for f in folders
                                                     for n in ("results.json", "report.md", PARTIAL)]
            if k == 0:  # the rollout GIFs of each row's first seed, to watch rows side by side
                names += [str(g.relative_to(run)) for f in folders for g in sorted((run / f).glob("*.gif"))]
            for name in names:
                if (run / name).exists() and (run / name).resolve() != (dest / name).resolve():
                    (dest / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(run / name, dest / name)
    print("\n".join(text))
    print(f"wrote {args.out}/summary.json, table.md" + (", curves.png" if curves else "")
          + (", robustness.png" if robustness else ""))


if __name__ == "__main__":
    main()
