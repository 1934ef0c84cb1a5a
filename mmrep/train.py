"""Training the multimodal representation: ``mmrep train`` (Hydra config ``configs/train.yaml``).

CUDA when present (bf16 autocast, pinned memory), CPU otherwise (deterministic under a seed);
channels-last images; a progress bar; TensorBoard scalars and flow pictures; validation every
epoch; checkpoints written atomically (``last.pt`` every ``ckpt_every_steps`` and at each epoch's
end, ``best.pt`` on the best validation loss). Killed, the same command resumes from ``last.pt``
(mid-epoch included) and, on the CPU, ends with the same final metrics as an uninterrupted run:
the batch order is a function of (seed, epoch), the negatives of (seed, epoch, index), and the
checkpoint carries the model, the optimiser and the torch RNG state (every rank's).

Data-parallel on several processes or GPUs: ``torchrun --nproc_per_node N -m mmrep.train <overrides>``
(``mmrep.distributed``): ``batch_size`` stays the global batch, each rank computes its share, DDP
averages the gradients, and rank 0 alone logs, validates and writes checkpoints and the encoder.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from mmrep.config import TrainConfig, app_config, app_error, run_hydra_app
from mmrep.data.dataset import MultimodalDataset
from mmrep.data.transforms import ROBUST_PERTURBATIONS, RandomCorruption
from mmrep.distributed import DistContext, rank_batches
from mmrep.encoder import assert_finite_weights, export_encoder
from mmrep.models import MetricAccumulator, MultimodalModel, compute_losses
from mmrep.models.experts import step_summary
from mmrep.pictures import flow_to_rgb
from mmrep.reliability import FLAG_QUANTILE, LOW_QUANTILE, Reliability, calibrate, collect_logvars
from mmrep.torch_files import load_torch_file, save_atomic
from sim.provenance import append_provenance
from sim.run_lock import run_lock

IMAGE_KEYS = ("rgb", "depth", "flow", "flow_mask")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf; the message names the step and the checkpoint kept."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in batch.items():
        value = value.to(device, non_blocking=True)
        if key in IMAGE_KEYS and value.dim() == 4:
            value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


def valid_rows(batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """The batch without the samples marked invalid (NaN/inf inputs, ``skip_nonfinite``), and how
    many were dropped."""
    valid = batch["valid"] > 0
    dropped = int((~valid).sum())
    if dropped == 0:
        return batch, 0
    return {k: v[valid] for k, v in batch.items()}, dropped


def load_checkpoint(path: Path) -> dict:
    """A training checkpoint (``last.pt``, ``best.pt``); ``FileLoadError`` naming it when unreadable."""
    path = Path(path)
    other = "best.pt" if path.name != "best.pt" else "last.pt"
    return load_torch_file(path, "training checkpoint", f"it is truncated or damaged: copy {other} of the same "
                           f"folder over it to resume from there, or move it away to start again")


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled sample order of an epoch: a function of (seed, epoch) only."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def loader_workers(cfg: TrainConfig, device: torch.device) -> int:
    """DataLoader workers: as configured, or 0 on a small CPU-only machine, where a worker process
    competes with the training threads (measured: 0 workers 333 samples/s, 1 worker 237, 2 cores)."""
    if cfg.num_workers is not None:
        return cfg.num_workers
    cores = os.cpu_count() or 1
    return 0 if device.type == "cpu" and cores <= 2 else min(8, max(1, cores // 2))


def make_loader(ds, batches: list[list[int]], cfg: TrainConfig, device: torch.device, seed: int) -> DataLoader:
    """A loader of the given batches of sample indices, in order (``rank_batches``)."""
    return DataLoader(ds, batch_sampler=batches, num_workers=loader_workers(cfg, device),
                      pin_memory=device.type == "cuda",
                      generator=torch.Generator().manual_seed(seed),  # keeps the global RNG untouched
                      persistent_workers=False)


def flow_picture(flow: torch.Tensor, max_px: float) -> np.ndarray:
    """(3, H, W) uint8 colour coding of one flow (2, H, W): hue direction, value magnitude
    (``mmrep.pictures.flow_to_rgb``)."""
    return flow_to_rgb(flow.float().cpu().numpy().transpose(1, 2, 0), max(max_px, 1e-6)).transpose(2, 0, 1)


@torch.no_grad()
def evaluate(model: MultimodalModel, loader, device, amp: bool, max_batches: int | None = None,
             keep_example: bool = False) -> tuple[dict[str, float], dict | None]:
    """Validation metrics (``MetricAccumulator``) and, optionally, one example for pictures."""
    model.eval()
    acc = MetricAccumulator()
    example = None
    skipped = 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        batch, dropped = valid_rows(batch)
        skipped += dropped
        if not len(batch["valid"]):
            continue
        batch = to_device(batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(batch)
            terms = compute_losses(model.cfg, out, batch)
        acc.update(out, batch, terms)
        if keep_example and example is None and "flow" in out:
            example = {"true": batch["flow"][0], "pred": out["flow"][0], "rgb": batch["rgb"][0]}
    model.train()
    metrics = acc.compute()
    if skipped:
        metrics["skipped_samples_valid"] = skipped
    return metrics, example


def train(cfg: TrainConfig, progress: bool | None = None) -> dict[str, Any]:
    """Train (or resume training) and return the final validation metrics. ``progress`` (default
    ``cfg.progress``) shows progress bars. The run folder is locked for the run (``sim.run_lock``; under
    torchrun, by rank 0): a second run into it is refused."""
    cfg.validate()
    main = int(os.environ.get("RANK", "0")) == 0
    with run_lock(cfg.out, "train") if main else contextlib.nullcontext():
        return _train(cfg, progress)


def _train(cfg: TrainConfig, progress: bool | None = None) -> dict[str, Any]:
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    cfg = copy.deepcopy(cfg)
    cfg.validate()
    progress = cfg.progress if progress is None else progress
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but no CUDA device is available")
    out = Path(cfg.out)
    device = pick_device(cfg.device)
    ctx = DistContext.from_env(device.type)
    device = ctx.device(device)
    progress = progress and ctx.is_main
    amp = cfg.amp and device.type == "cuda"
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + ctx.rank)  # rank 0 draws what one process would
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    extra = tuple(cfg.model.extra_modalities)  # plug-in modalities the model reads
    train_ds = MultimodalDataset(cfg.data, "train", seed=cfg.seed, cache=cfg.cache,
                                 skip_nonfinite=cfg.skip_nonfinite, lerobot=cfg.lerobot, extra_modalities=extra)
    valid_ds = MultimodalDataset(cfg.data, "valid", seed=cfg.seed + 1, cache=cfg.cache,
                                 skip_nonfinite=cfg.skip_nonfinite, lerobot=cfg.lerobot, extra_modalities=extra)
    if train_ds.source.kind == "lerobot":  # the heads and inputs this dataset can feed
        from mmrep.formats.lerobot_source import check_heads

        check_heads(cfg.model, train_ds.source, cfg.data)
    if cfg.augment.prob > 0:
        train_ds.transform = RandomCorruption(cfg.augment.perturbations or ROBUST_PERTURBATIONS, cfg.augment.prob,
                                              cfg.augment.max_level, stats=train_ds.sensor_stats())
    model_cfg = cfg.model
    image_size = int(train_ds[0]["rgb"].shape[-1])
    if model_cfg.image_size is None:
        model_cfg.image_size = image_size  # follow the data
    elif model_cfg.image_size != image_size:
        raise ValueError(f"model.image_size={model_cfg.image_size} but the images of {cfg.data} are "
                         f"{image_size}x{image_size}; leave model.image_size unset (null) to follow the data")
    model_cfg.validate()
    model = MultimodalModel(model_cfg)
    if "proprio" in getattr(model.encoder, "encoders", {}):  # a resume overwrites these with the checkpoint values
        model.encoder.encoders["proprio"].set_stats(*proprio_stats(train_ds))
    if model_cfg.force_summary and "force" in getattr(model.encoder, "encoders", {}):
        model.encoder.encoders["force"].set_stats(*force_summary_stats(train_ds))
    model = model.to(device).to(memory_format=torch.channels_last)
    net = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None) if ctx.enabled else model
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    state = {"epoch": 0, "batch": 0, "step": 0, "best": math.inf, "history": [], "skipped_samples": 0}
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = data_fingerprint(cfg.data)
    last = out / "last.pt"
    if last.exists():
        ckpt = load_checkpoint(last)
        written = _with_new_defaults(json.loads(ckpt["config"]))
        saved, now = _compared(written), _compared(_comparable(cfg))
        if saved != now:
            differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            raise ValueError(f"{last} was written with another configuration ({', '.join(differ)} differ); "
                             "resume with the same settings or use another out= folder")
        was = ckpt.get("data_fingerprint")
        if was is not None and fingerprint is not None:  # the same episodes, wherever the folder is now
            if was != fingerprint:
                raise ValueError(f"{last} was trained on other episodes than {cfg.data} holds (episodes were "
                                 "added, removed or collected again since); resume on the same data or use "
                                 "another out= folder")
        elif Path(written["data"]).resolve() != Path(cfg.data).resolve():  # no manifest: the path tells
            raise ValueError(f"{last} was trained on {written['data']}, not {cfg.data}; resume on the same data "
                             "or use another out= folder")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        rngs = ckpt.get("rng_ranks")
        if rngs is not None and len(rngs) == ctx.world:
            torch.set_rng_state(rngs[ctx.rank])
        elif ctx.is_main:  # written by another number of processes: rank 0 continues its stream
            torch.set_rng_state(ckpt["rng"])
        state = {"skipped_samples": 0, **json.loads(ckpt["state"])}
    writer = None
    if ctx.is_main:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        append_provenance(out, app="train", epoch=state["epoch"])  # each start and resume: where it ran
        writer = SummaryWriter(str(out / "tb"))
    n_valid = len(valid_ds)
    valid_loader = make_loader(valid_ds, rank_batches(list(range(n_valid)), cfg.batch_size, 0,
                                                      math.ceil(n_valid / cfg.batch_size)), cfg, device, cfg.seed)

    skipped_here = 0  # this rank's skipped samples since the last sync_skipped()

    def sync_skipped() -> None:
        """Add every rank's skipped samples to the state's total (each rank skips in its own share)."""
        nonlocal skipped_here
        state["skipped_samples"] += sum(ctx.gather(skipped_here))
        skipped_here = 0

    def checkpoint(path: Path) -> None:
        """Every rank calls it (their RNG states are gathered); rank 0 writes."""
        sync_skipped()
        rngs = ctx.gather(torch.get_rng_state())
        if not ctx.is_main:
            return
        assert_finite_weights(model, f"checkpoint {path}")  # never replace a good checkpoint with NaN
        save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "rng": rngs[0], "rng_ranks": rngs, "state": json.dumps(state),
                     "config": json.dumps(_comparable(cfg)),
                     "data_fingerprint": fingerprint,
                     "model_config": json.dumps(model_cfg.to_dict())}, path)

    model.train()
    while state["epoch"] < cfg.epochs:
        epoch = state["epoch"]
        train_ds.set_epoch(epoch)
        order = epoch_order(len(train_ds), cfg.seed, epoch)
        n_batches = math.ceil(len(order) / cfg.batch_size)
        if cfg.max_batches_per_epoch is not None:
            n_batches = min(n_batches, cfg.max_batches_per_epoch)
        start = state["batch"]
        batches = rank_batches(order, cfg.batch_size, start, n_batches, ctx.rank, ctx.world)
        loader = make_loader(train_ds, batches, cfg, device, cfg.seed + epoch)
        bar = tqdm(total=n_batches, initial=start, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress or None, dynamic_ncols=True)
        t0 = time.time()
        for batch in loader:
            for group in optimizer.param_groups:  # a function of the step: a resume needs no scheduler state
                group["lr"] = learning_rate(cfg, state["step"], n_batches)
            batch, dropped = valid_rows(batch)
            skipped_here += dropped
            state["batch"] += 1
            if ctx.all_true(len(batch["valid"]) > 0):  # under DDP every rank steps, or none
                batch = to_device(batch, device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    outputs = net(batch)
                    terms = compute_losses(model_cfg, outputs, batch, kl_scale=kl_scale(cfg, state["step"]))
                logged = {key: float(value.detach()) for key, value in terms.items()}
                if not ctx.all_true(math.isfinite(logged["total"])):
                    bad = sorted(k for k, v in logged.items() if not math.isfinite(v) and k != "total")
                    kept = f"{last} (step {json.loads(load_checkpoint(last)['state'])['step']})" \
                        if last.exists() else "no checkpoint yet"
                    raise NonFiniteLossError(
                        f"loss is {logged['total']} at step {state['step'] + 1} (epoch {epoch + 1}, batch "
                        f"{state['batch']}; terms {bad}); stopped without writing; last finite checkpoint: {kept}")
                optimizer.zero_grad(set_to_none=True)
                terms["total"].backward()
                optimizer.step()
                state["step"] += 1
                bar.set_postfix(loss=f"{logged['total']:.3f}")
                for key, value in logged.items() if writer else ():  # rank 0's share of the batch
                    writer.add_scalar(f"train/{key}", value, state["step"])
                if state["step"] % cfg.ckpt_every_steps == 0:
                    checkpoint(last)
            bar.update()
        bar.close()
        train_seconds = time.time() - t0  # the epoch's batches, validation excluded
        metrics, example = evaluate(model, valid_loader, device, amp, cfg.max_val_batches,
                                    keep_example=True) if ctx.is_main else ({}, None)
        metrics = ctx.broadcast(metrics)  # every rank keeps the same history and best
        metrics["epoch"] = epoch + 1
        metrics["train_seconds"] = train_seconds
        sync_skipped()
        metrics["skipped_samples"] = state["skipped_samples"]
        for key, value in metrics.items() if writer else ():
            writer.add_scalar(f"valid/{key}", value, epoch + 1)
        if example is not None:
            scale = float(example["true"].abs().max()) or 1.0
            writer.add_image("valid/flow_true", flow_picture(example["true"], scale), epoch + 1)
            writer.add_image("valid/flow_pred", flow_picture(example["pred"], scale), epoch + 1)
            writer.add_image("valid/rgb", example["rgb"].cpu(), epoch + 1)
        state["history"].append(metrics)
        state["epoch"] += 1
        state["batch"] = 0
        if metrics.get("loss/total", math.inf) < state["best"]:
            state["best"] = metrics["loss/total"]
            checkpoint(out / "best.pt")
        checkpoint(last)
        if ctx.is_main:
            (out / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in state["history"]))
    final = {"final": state["history"][-1], "best_valid_loss": state["best"], "epochs": cfg.epochs,
             "device": device.type, "skipped_samples": state["skipped_samples"], "processes": ctx.world,
             "config": asdict(cfg)}
    if ctx.is_main:
        writer.close()
        (out / "metrics.json").write_text(json.dumps(final, indent=2))
        export_encoder(model.encoder, out / "encoder.pt",
                       reliability=calibrate_reliability(model, valid_loader, device, cfg.max_val_batches))
    ctx.barrier()  # the other ranks return once the encoder is written
    ctx.close()
    return final


def calibrate_reliability(model: MultimodalModel, loader, device: torch.device,
                          max_batches: int | None = None) -> Reliability | None:
    """The encoder's two-sided flag thresholds (``mmrep.reliability``) on clean validation batches; None
    for the concatenation, whose expert variances are not trained."""
    if model.cfg.fusion != "poe" or not hasattr(model.encoder, "expert_logvars"):
        return None  # (a network of one's own without experts has no variances to calibrate either)

    def batches():
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                return
            batch, _ = valid_rows(batch)
            if len(batch["valid"]):
                yield to_device(batch, device)

    return calibrate(collect_logvars(model.encoder, batches()), FLAG_QUANTILE, LOW_QUANTILE)


def proprio_stats(ds: MultimodalDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std (8,) of the proprioception over every step of a dataset."""
    p = np.concatenate(ds.proprio).astype(np.float64)
    p = torch.from_numpy(p[np.isfinite(p).all(axis=1)])  # rows a skip_nonfinite run leaves out
    return p.mean(0).float(), p.std(0).float()


def force_summary_stats(ds: MultimodalDataset, max_episodes: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (12,) of the steps' ``step_summary`` (mean and last F/T reading; N,
    N m, sensor frame) over up to ``max_episodes`` episodes of a dataset, evenly spread."""
    pick = np.unique(np.linspace(0, len(ds.episodes) - 1, min(max_episodes, len(ds.episodes))).astype(int))
    f = torch.cat([step_summary(torch.from_numpy(ds.source.read(ds.episodes[i], "force", slice(None))).double())
                   for i in pick])
    f = f[torch.isfinite(f).all(dim=1)]
    if len(f) < 2:
        raise ValueError(f"model.force_summary: the training data has fewer than 2 steps with finite 'force' "
                         f"readings in the {len(pick)} episodes read; no statistics to standardise the F/T "
                         "summary with")
    return f.mean(0).float(), f.std(0).float()


def learning_rate(cfg: TrainConfig, step: int, batches_per_epoch: int) -> float:
    """The learning rate at optimiser step ``step``: ``cfg.lr``, or a cosine decay from it to 5% of
    it over the whole run (``epochs x batches_per_epoch`` steps)."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    total = max(1, cfg.epochs * batches_per_epoch)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)))


def kl_scale(cfg: TrainConfig, step: int) -> float:
    """Fraction of the KL weight applied at ``step``: a linear warm-up. Without it the KL term
    (x0.05, summed over 128 dims) pulls every expert to the prior before the heads learn to use z:
    a first quality run ended epoch 2 with KL 0.009, alignment accuracy 0.5 and contact F1 0.09."""
    if cfg.kl_warmup_steps <= 0:
        return 1.0
    return min(1.0, step / cfg.kl_warmup_steps)


def data_fingerprint(data: str | Path) -> str | None:
    """A digest of the episodes a native dataset folder's manifest lists (names and checksums), so a
    resume on a dataset that changed since is refused; None for other layouts (reference, LeRobot)."""
    import hashlib

    from sim.dataset_format import MANIFEST, read_manifest

    if not (Path(data) / MANIFEST).exists():
        return None
    episodes = sorted((e["name"], e["checksum"]) for e in read_manifest(Path(data))["episodes"])
    return hashlib.sha256(json.dumps(episodes).encode()).hexdigest()


def _comparable(cfg: TrainConfig) -> dict:
    """The settings a checkpoint records (not the ones that only change speed), as every version of
    this code wrote them."""
    d = asdict(cfg)
    for key in ("num_workers", "device", "threads", "ckpt_every_steps", "cache"):
        d.pop(key)
    return json.loads(json.dumps(d))


# where the run folder is, whether bars show, where the data are: a run folder moved or named by
# another path resumes; the data are compared by their manifest's fingerprint (the path where none)
NOT_COMPARED = ("out", "progress", "data")


def _compared(settings: dict) -> dict:
    """The recorded settings (``_comparable``) that a resume must share."""
    return {k: v for k, v in settings.items() if k not in NOT_COMPARED}


def _with_new_defaults(old: dict) -> dict:
    """A checkpoint's settings with the options added since it was written at their defaults (every
    new option defaults to the earlier behaviour), so that older runs still resume."""
    def fill(saved: dict, default: dict) -> dict:
        out = dict(saved)
        for key, value in default.items():
            if key not in out:
                out[key] = value
            elif isinstance(value, dict) and isinstance(out[key], dict):
                out[key] = fill(out[key], value)
        return out

    return fill(old, _comparable(TrainConfig()))


def run_train_app(cfg) -> int:
    """``mmrep train`` on a composed Hydra config: train, report; the exit code (2: refused)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    config = None
    try:
        config = app_config(cfg)
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            config.out = HydraConfig.get().runtime.output_dir  # one folder per run of the sweep
        result = train(config)
    except KeyboardInterrupt:  # Ctrl-C: the checkpoints stay; say how to go on, not a traceback
        import sys

        out = Path(str(config.out if config is not None else cfg.out))
        print(f"mmrep train: interrupted; the same command resumes from {out / 'last.pt'} (the last "
              "checkpoint) where one was written", file=sys.stderr)
        raise SystemExit(130) from None  # ends a sweep too (a return would go on to its next run)
    except (ValueError, FileNotFoundError, RuntimeError, OSError, FloatingPointError) as err:
        return app_error("train", err)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 reports
        return 0
    print(json.dumps(result["final"], indent=2))
    print(f"metrics: {Path(config.out) / 'metrics.json'}  encoder: {Path(config.out) / 'encoder.pt'}")
    return 0


if __name__ == "__main__":  # torchrun --nproc_per_node N -m mmrep.train <overrides>, as ``mmrep train``
    import sys

    sys.exit(run_hydra_app("train", sys.argv[1:], run_train_app))
