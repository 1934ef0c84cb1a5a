"""``mmrep evaluate``: trained representations under perturbation, on held-out episodes.

For each model (a run folder of ``mmrep train``: its heads are needed), each perturbation of
``sim.perturb`` (plus ``<modality>/absent``: the modality left out of the fusion in a fraction p of
the samples) and each level p: next-step contact F1 beside the label-only "contact stays" baseline,
alignment accuracy, flow error on moving pixels, EE MSE, and how often each modality's reliability
signal flags the sample. The reliability signal is the expert's mean log-variance (the product of
experts weighs an expert by its precision, so a high log-variance is a down-weighted expert); a
modality is flagged above the 99th percentile of its clean values on calibration episodes disjoint
from the evaluated ones (so about 1% of clean samples are flagged by construction).

Writes ``results.json`` (every number), ``report.md`` and one PNG per metric (metric against p, one
line per model, a panel per perturbation) to ``out``. Deterministic under ``seed``.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmrep.config import EvaluateConfig, ModelConfig, is_absent
from mmrep.data.dataset import MultimodalDataset
from mmrep.data.transforms import Corrupt
from mmrep.models import MetricAccumulator, MultimodalModel, compute_losses
from mmrep.models.reliability import FLAG_QUANTILE, Reliability, calibrate
from mmrep.torch_files import load_torch_file
from sim.modalities import MODALITY_REGISTRY
from sim.provenance import provenance
from sim.run_lock import run_lock

METRICS = ("contact_f1", "alignment_accuracy", "flow_epe_moving_px", "ee_mse")
METRIC_LABELS = {"contact_f1": "next-step contact F1", "alignment_accuracy": "alignment accuracy",
                 "flow_epe_moving_px": "flow error, moving pixels (px)", "ee_mse": "next EE pose MSE"}


def parse_run(spec: str) -> tuple[str, Path]:
    """("label", path) of ``"label:path"`` or ``"path"`` (label: the folder's name)."""
    label, sep, path = spec.partition(":")
    if not sep:
        path, label = label, Path(label).name
    return label, Path(path)


def load_model(run: Path, checkpoint: str = "last.pt") -> MultimodalModel:
    """The trained model, heads included, of a run folder (loaded with ``weights_only=True``)."""
    path = run / checkpoint
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (is {run} a finished `mmrep train` run folder?)")
    ckpt = load_torch_file(path, "training checkpoint", "it is truncated or damaged: evaluate the run's other "
                           "checkpoint (best.pt / last.pt) or train the run again")
    if not isinstance(ckpt, dict) or "model_config" not in ckpt:
        raise ValueError(f"{path} is not an mmrep training checkpoint (no model_config)")
    model = MultimodalModel(ModelConfig.from_dict(json.loads(ckpt["model_config"])))
    model.load_state_dict(ckpt["model"])
    return model.eval()


def setting_seed(seed: int, name: str, p: float) -> int:
    """The seed of one setting's random draws (which samples lose a modality): a function of the
    setting itself, not of its place in the grid, so that models evaluated in separate runs with
    different grids see the same draws."""
    return (seed * 1_000_003 + zlib.crc32(f"{name}:{p:.6f}".encode())) % 2**31


def _spread(n_total: int, n: int, offset: float = 0.0) -> list[int]:
    """``n`` indices spread evenly over ``range(n_total)`` (shifted by ``offset`` of a gap)."""
    n = min(n, n_total)
    if n <= 0:
        return []
    step = n_total / n
    return sorted({int(step * (i + offset)) % n_total for i in range(n)})


class HeldOut:
    """The evaluated and the calibration samples of a dataset's split (RAM-cached); both are spread
    evenly over the split's episodes and never share an episode."""

    def __init__(self, data: str, episodes: int, calibration: int, seed: int, split: str = "valid") -> None:
        self.ds = MultimodalDataset(data, None if split == "all" else split, seed=seed, cache=True)
        n = len(self.ds.episodes)
        eval_eps = _spread(n, episodes)
        rest = [e for e in range(n) if e not in set(eval_eps)]
        calib_eps = [rest[i] for i in _spread(len(rest), calibration, 0.5)] if rest else []
        self.eval_index = [self.ds.index_of(e, t) for e in eval_eps for t in range(self.ds.episodes[e].num_obs - 1)]
        self.calib_index = [self.ds.index_of(e, t) for e in calib_eps for t in range(self.ds.episodes[e].num_obs - 1)]
        self.eval_episodes, self.calib_episodes = eval_eps, calib_eps
        self.stats = self.ds.sensor_stats()

    def batches(self, index: list[int], batch_size: int, transform=None):
        self.ds.transform = transform
        try:
            for i in range(0, len(index), batch_size):
                items = [self.ds[j] for j in index[i:i + batch_size]]
                yield {k: torch.stack([it[k] for it in items]) for k in items[0]}
        finally:
            self.ds.transform = None


def keeps_images(name: str) -> bool:
    """Whether a setting leaves the camera inputs (RGB, depth) as they are (clean, a perturbation of a
    modality that is not a camera, a modality left out): then the image experts of the clean pass are reused."""
    key = name.split("/")[0]
    return name == "clean" or is_absent(name) or (key in MODALITY_REGISTRY and not MODALITY_REGISTRY[key].camera)


@torch.no_grad()
def run_setting(model: MultimodalModel, batches, absent: tuple[str, float] | None, seed: int,
                thresholds: dict[str, float] | None,
                image_cache: list | None = None,
                reject: dict[str, float] | None = None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics of ``model`` over ``batches`` and each modality's expert log-variances (per sample).
    ``absent`` = (modality, p): that modality is left out of a fraction p of the samples.
    ``image_cache``: a list, empty to record each batch's image experts into, or filled by an earlier
    call over the same samples (in the same batches) to reuse them. ``reject`` (thresholds): each
    sample's flagged modalities are left out of its product of experts, as ``Encoder.encode(reject=True)``."""
    acc = MetricAccumulator()
    logvars: dict[str, list[np.ndarray]] = {}
    g = torch.Generator().manual_seed(seed)
    record = image_cache is not None and not image_cache
    for i, batch in enumerate(batches):
        b = batch["action"].shape[0]
        if absent is not None:
            batch[f"present_{absent[0]}"] = (torch.rand(b, generator=g) >= absent[1]).float()
        experts = None
        if image_cache is not None and model.experts:  # a network without experts runs whole each time
            if record:
                image_cache.append(model.encoder.image_experts(batch))
            experts = image_cache[i]
        if reject is not None:
            experts = experts or model.encoder.image_experts(batch)
            _, state_logvars, state_names = model.encoder.state_experts(batch)
            lvs = {m: lv.float().mean(1) for m, lv in zip(experts[3] + state_names, experts[1] + state_logvars)}
            present = {m: batch[f"present_{m}"] for m in lvs if f"present_{m}" in batch}
            inputs = {m: batch[m] for m in lvs if m in batch}  # a flatlined sensor is flagged too
            batch.update({f"present_{m}": v for m, v in Reliability(reject).keep(lvs, present, inputs).items()})
        out = model(batch, image_experts=experts)
        acc.update(out, batch, compute_losses(model.cfg, out, batch))
        for m, lv in ((k.split("/")[1], v) for k, v in out.items() if k.startswith("expert_logvar/")):
            if absent is not None and absent[0] == m:
                lv = torch.where(batch[f"present_{m}"] > 0, lv, torch.full_like(lv, float("nan")))
            logvars.setdefault(m, []).append(lv.float().numpy())
    metrics = acc.compute()
    lvs = {m: np.concatenate(v) for m, v in logvars.items()}
    if thresholds:
        for m, lv in lvs.items():
            seen = lv[np.isfinite(lv)]
            metrics[f"flagged/{m}"] = float((seen > thresholds[m]).mean()) if len(seen) else float("nan")
    return metrics, lvs


def evaluate(cfg: EvaluateConfig, progress: bool | None = None) -> dict[str, Any]:
    """Run the grid; write ``results.json``, ``report.md`` and the plots to ``cfg.out`` (locked for the
    run, ``sim.run_lock``: a second evaluation into it is refused)."""
    cfg.validate()
    with run_lock(cfg.out, "evaluate"):
        return _evaluate(cfg, progress)


def _evaluate(cfg: EvaluateConfig, progress: bool | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    cfg.validate()
    progress = cfg.progress if progress is None else progress
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    runs = [parse_run(r) for r in cfg.runs]
    labels = [label for label, _ in runs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"two runs share a label {labels}; name them with 'label:path'")
    models = {label: load_model(path, cfg.checkpoint) for label, path in runs}
    paths = dict(runs)
    held = HeldOut(cfg.data, cfg.episodes, cfg.calibration_episodes, cfg.seed, cfg.split)
    first = held.ds[held.eval_index[0]] if held.eval_index else {}
    if "rgb" in first:  # a run trained at another image size would fail deep in its first layer
        data_size = int(first["rgb"].shape[-1])
        for label, model in models.items():
            reads_images = model.cfg.rgb or model.cfg.depth or model.cfg.flow
            if reads_images and model.cfg.image_size not in (None, data_size):
                raise ValueError(f"run {label} ({paths[label]}) was trained on {model.cfg.image_size} px "
                                 f"images but the images of {cfg.data} are {data_size} px; evaluate it on data "
                                 f"collected at its size (env.image_size={model.cfg.image_size})")
    if cfg.reject and not held.calib_index and any(m.cfg.fusion == "poe" for m in models.values()):
        raise ValueError(f"reject=true needs calibration episodes for the reliability thresholds, but the "
                         f"{cfg.split} split of {cfg.data} has no episode left after the {cfg.episodes} evaluated; "
                         f"lower episodes= or collect more")
    levels = sorted({float(p) for p in cfg.levels})
    settings = [("clean", 0.0)] + [(n, p) for n in cfg.perturbations for p in levels if p > 0]
    t0 = time.time()
    results: list[dict[str, Any]] = []
    thresholds: dict[str, dict[str, float]] = {}
    entries: dict[str, dict[str, Any]] = {}  # every evaluated model (and "<label>+reject" variant)
    bar = tqdm(total=len(models) * (len(settings) + 1), desc="evaluate", unit="setting",
               disable=not progress or None, dynamic_ncols=True)
    for label, model in models.items():
        if held.calib_index and model.cfg.fusion == "poe":  # only the PoE's experts have a variance that is used
            _, lvs = run_setting(model, held.batches(held.calib_index, cfg.batch_size), None, cfg.seed, None)
            thresholds[label] = calibrate(lvs, FLAG_QUANTILE).thresholds
        bar.update()
        image_cache: list = []  # the clean pass's image experts, per batch (settings[0] is clean)
        variants = [(label, None)]
        entries[label] = {"path": str(paths[label]), "config": model.cfg.to_dict()}
        if cfg.reject and label in thresholds:
            variants.append((f"{label}+reject", thresholds[label]))
            entries[f"{label}+reject"] = {**entries[label], "reject": True}
            bar.total += len(settings)
        for variant, reject in variants:
            for name, p in settings:
                absent = (name.split("/")[0], p) if is_absent(name) else None
                transform = None if name == "clean" or absent else Corrupt([f"{name}:{p}"], held.stats)
                batches = held.batches(held.eval_index, cfg.batch_size, transform)
                metrics, _ = run_setting(model, batches, absent, setting_seed(cfg.seed, name, p),
                                         thresholds.get(label), image_cache if keeps_images(name) else None, reject)
                results.append({"model": variant, "perturbation": name, "p": p, **metrics})
                bar.update()
    bar.close()
    # level 0 of every perturbation is the clean evaluation
    for row in [r for r in results if r["perturbation"] == "clean"]:
        for name in cfg.perturbations:
            if 0.0 in levels:
                results.append({**row, "perturbation": name, "p": 0.0})
    summary = {
        "config": asdict(cfg), "seconds": time.time() - t0,
        "models": entries,
        "eval_episodes": held.eval_episodes, "calibration_episodes": held.calib_episodes,
        "samples": len(held.eval_index), "thresholds": thresholds,
        "sensor_stats": asdict(held.stats), "results": results,
        "provenance": provenance(),  # the commit, package versions and CPU: a result is traced to them
    }
    write_outputs(summary, Path(cfg.out))
    return summary


def write_outputs(summary: dict, out: Path) -> None:
    """``results.json``, the PNG plots and ``report.md`` of a summary, in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    plots = plot_results(summary, out)
    (out / "report.md").write_text(report_markdown(summary, plots))


def merge_summaries(summaries: list[dict]) -> dict:
    """One summary of models evaluated in separate ``mmrep evaluate`` runs (for example two at a time
    on two cores, or with different grids), as if evaluated together: the runs must share the data,
    split, seed and evaluated episodes (then every model saw the same samples and the same
    perturbations); a perturbation evaluated for only some of the models is plotted for those."""
    if not summaries:
        raise ValueError("merge_summaries needs at least one summary")
    first = summaries[0]
    for s in summaries[1:]:
        for key in ("data", "split", "seed"):
            if s["config"][key] != first["config"][key]:
                raise ValueError(f"cannot merge evaluations with different {key}: "
                                 f"{first['config'][key]!r} vs {s['config'][key]!r}")
        if s["eval_episodes"] != first["eval_episodes"]:
            raise ValueError("cannot merge evaluations of different episodes "
                             f"({first['eval_episodes']} vs {s['eval_episodes']}): set the same episodes")
    models: dict = {}
    for s in summaries:
        clash = sorted(set(models) & set(s["models"]))
        if clash:
            raise ValueError(f"model label(s) {clash} appear in two evaluations; name them apart ('label:path')")
        models.update(s["models"])
    perturbations = list(dict.fromkeys(n for s in summaries for n in s["config"]["perturbations"]))
    levels = sorted({float(p) for s in summaries for p in s["config"]["levels"]})
    return {**first, "config": {**first["config"], "perturbations": perturbations, "levels": levels,
                                "runs": [r for s in summaries for r in s["config"]["runs"]]},
            "seconds": sum(s["seconds"] for s in summaries), "models": models,
            "thresholds": {k: v for s in summaries for k, v in s["thresholds"].items()},
            "results": [r for s in summaries for r in s["results"]]}


def _rows(summary: dict, model: str, name: str) -> list[dict]:
    return sorted((r for r in summary["results"] if r["model"] == model and r["perturbation"] == name),
                  key=lambda r: r["p"])


def plot_results(summary: dict, out: Path) -> list[str]:
    """One PNG per metric: a panel per perturbation, metric against p, a line per model (contact F1
    with the "stays" baseline dashed). Returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = summary["config"]["perturbations"]
    models = list(summary["models"])
    files: list[str] = []
    if not names:  # clean only: the report's table says it all
        return files
    for metric in METRICS:
        if not any(metric in r for r in summary["results"]):
            continue
        cols = min(4, len(names))
        rows = math.ceil(len(names) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharey=True)
        for ax, name in zip(axes.flat, names):
            for k, model in enumerate(models):  # one colour per model in every panel
                pts = [(r["p"], r[metric]) for r in _rows(summary, model, name) if metric in r]
                if pts:
                    ax.plot(*zip(*pts), marker="o", ms=3, color=f"C{k % 10}", label=model)
            if metric == "contact_f1":
                evaluated = [m for m in models if _rows(summary, m, name)]
                base = [(r["p"], r["contact_f1_baseline_stays"]) for r in _rows(summary, evaluated[0], name)
                        if "contact_f1_baseline_stays" in r] if evaluated else []
                if base:
                    ax.plot(*zip(*base), "k--", lw=1, label="'stays' baseline")
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("level p", fontsize=8)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(names):]:
            ax.axis("off")
        axes[0, 0].set_ylabel(METRIC_LABELS[metric], fontsize=8)
        seen = {}  # the legend of every panel together (a merged summary's first panel may lack a model)
        for ax in axes.flat:
            for h, lbl in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(lbl, h)
        handles, lbls = list(seen.values()), list(seen)
        fig.legend(handles, lbls, loc="lower center", ncol=len(lbls), fontsize=8)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        name = f"{metric}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        files.append(name)
    return files


def report_markdown(summary: dict, plots: list[str]) -> str:
    """The Markdown report: setup, then per metric a table (rows: perturbation x model, columns: p)."""
    cfg = summary["config"]
    levels = sorted({r["p"] for r in summary["results"]})
    lines = [f"# mmrep evaluate: {', '.join(summary['models'])}", "",
             f"Data `{cfg['data']}`, split {cfg['split']}, episodes {summary['eval_episodes']} "
             f"({summary['samples']} samples), "
             f"seed {cfg['seed']}, {summary['seconds'] / 60:.1f} min.", ""]
    clean = [r for r in summary["results"] if r["perturbation"] == "clean"]
    lines += ["## Clean", "", "| model | contact F1 | F1 'stays' | alignment | flow EPE moving (px) | EE MSE |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in clean:
        lines.append(f"| {r['model']} | {_fmt(r.get('contact_f1'))} | {_fmt(r.get('contact_f1_baseline_stays'))} | "
                     f"{_fmt(r.get('alignment_accuracy'))} | {_fmt(r.get('flow_epe_moving_px'), 2)} | "
                     f"{_fmt(r.get('ee_mse'), 5)} |")
    for metric in METRICS:
        if not any(metric in r for r in summary["results"]):
            continue
        lines += ["", f"## {METRIC_LABELS[metric]}", "", f"![{metric}]({metric}.png)" if f"{metric}.png" in plots
                  else "", "", "| perturbation | model | " + " | ".join(f"{p:.1f}" for p in levels) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in levels) + " |"]
        for name in cfg["perturbations"]:
            for model in summary["models"]:
                by_p = {r["p"]: r.get(metric) for r in _rows(summary, model, name)}
                if not by_p:  # a model of a merged summary not evaluated under this perturbation
                    continue
                digits = 2 if metric == "flow_epe_moving_px" else 5 if metric == "ee_mse" else 3
                lines.append(f"| {name} | {model} | " + " | ".join(_fmt(by_p.get(p), digits) for p in levels) + " |")
    flags = sorted({k for r in summary["results"] for k in r if k.startswith("flagged/")})
    if flags:
        lines += ["", "## Reliability flags", "",
                  "Fraction of samples whose expert log-variance exceeds the 99th percentile of its clean values "
                  "(calibration episodes); at the highest level evaluated, and clean.", "",
                  "| perturbation | model | p | " + " | ".join(f.split("/")[1] for f in flags) + " |",
                  "| --- | --- | --- | " + " | ".join("---" for _ in flags) + " |"]
        top = max(levels)
        for name in ["clean"] + list(cfg["perturbations"]):
            for model in summary["models"]:
                rows = _rows(summary, model, name)
                row = (rows[-1] if name != "clean" else rows[0]) if rows else None
                if row is None or (name != "clean" and row["p"] != top):
                    continue
                cells = " | ".join(_fmt(row.get(f)) for f in flags)
                lines.append(f"| {name} | {model} | {row['p']:.1f} | {cells} |")
    return "\n".join(lines) + "\n"


def _fmt(v, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"
