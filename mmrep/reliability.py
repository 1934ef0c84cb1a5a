"""``python -m mmrep.reliability ENCODER DATA``: set an encoder file's reliability thresholds from a
dataset's clean validation samples; ``python -m mmrep.reliability --policy RUN --out FILE``: a copy
of a policy's encoder with thresholds from that policy's clean rollouts instead (the inputs the flags
will judge: a policy presses, slides and pushes differently from the experts that recorded the
dataset). The thresholds and their arithmetic (``Reliability``, ``calibrate``, ``collect_logvars``)
live in ``mmrep.models.reliability`` and import from here too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mmrep.data.dataset import MultimodalDataset
from mmrep.encoder import Encoder, export_encoder, load_encoder
from mmrep.models.reliability import (  # noqa: F401  (the old import path)
    FLAG_QUANTILE,
    LOW_QUANTILE,
    Reliability,
    calibrate,
    collect_logvars,
)
from mmrep.torch_files import load_torch_file


def calibrate_encoder_file(encoder_path: str, data: str, batches: int = 120, batch_size: int = 32,
                           quantile: float = FLAG_QUANTILE, seed: int = 0,
                           low_quantile: float | None = LOW_QUANTILE) -> Reliability:
    """Set the reliability thresholds of an encoder file (one exported before they existed) from the
    clean samples of a dataset's validation split (the first ``batches`` x ``batch_size``, in order),
    and write them into the file (atomically: the old file or the new one, never half of one)."""
    encoder = load_encoder(encoder_path)
    if encoder.cfg.fusion != "poe":
        raise ValueError(f"{encoder_path}: fusion {encoder.cfg.fusion!r} has no trained expert variances; "
                         "reliability thresholds are for the product of experts")
    ds = MultimodalDataset(data, "valid", seed=seed)
    n = min(len(ds), batches * batch_size)

    def model_batches():
        for i in range(0, n, batch_size):
            items = [ds[j] for j in range(i, min(n, i + batch_size))]
            yield {k: torch.stack([it[k] for it in items]) for k in encoder.cfg.modalities}

    reliability = calibrate(collect_logvars(encoder, model_batches()), quantile, low_quantile)
    export_encoder(encoder, encoder_path, reliability)
    return reliability


# First seed of the calibration rollouts: disjoint from training (< 1,000,000) and from `mmrep policy
# eval`'s held-out seeds (2,000,000 + k).
CALIBRATION_SEED = 3_000_000


@torch.no_grad()
def rollout_logvars(policy: str | Path, episodes: int = 20, first_seed: int = CALIBRATION_SEED,
                    progress: bool = False) -> tuple[Encoder, dict[str, np.ndarray]]:
    """The policy's own frozen encoder, and {modality: (N,)} its experts' mean log-variances of every
    observation of ``episodes`` clean, mean-action rollouts of a saved latent policy (a run folder or
    its policy.pt) on seeds ``first_seed + k``."""
    from tqdm import tqdm

    from mmrep.policy import load_policy, normalize_obs
    from mmrep.policy_eval import policy_file

    model, venv, cfg, rms = load_policy(policy_file(policy))
    codec = getattr(venv, "codec", None)
    if codec is None:
        venv.close()
        raise ValueError(f"{policy}: a policy on a frozen latent is needed, this one observes {cfg.obs.kind!r}")
    encoder = load_encoder(cfg.obs.encoder)
    if encoder.cfg.fusion != "poe":  # before the rollouts: only the product of experts has expert variances
        venv.close()
        raise ValueError(f"{policy}: its encoder's fusion {encoder.cfg.fusion!r} has no trained expert variances; "
                         "reliability thresholds are for the product of experts")
    raw = venv.venv  # the env under the latent observation: its observations are the encoder's inputs
    out: dict[str, list[np.ndarray]] = {}
    try:
        for k in tqdm(range(episodes), desc="calibration rollouts", unit="episode", disable=not progress or None):
            raw.seed(first_seed + k)
            obs, done = raw.reset(), False
            while not done:
                for m, lv in encoder.expert_logvars(obs).items():
                    out.setdefault(m, []).append(lv.float().reshape(-1).cpu().numpy())
                action, _ = model.predict(normalize_obs(codec.encode(obs), rms), deterministic=True)
                obs, _, dones, _ = raw.step(action)
                done = bool(dones[0])
    finally:
        venv.close()
    return encoder, {m: np.concatenate(v) for m, v in out.items()}


def calibrate_on_rollouts(policy: str | Path, out: str | Path, episodes: int = 20,
                          first_seed: int = CALIBRATION_SEED, quantile: float = FLAG_QUANTILE,
                          low_quantile: float | None = LOW_QUANTILE, progress: bool = False,
                          modalities: list[str] | None = None) -> Reliability:
    """Write to ``out`` the policy's encoder with reliability thresholds set from its clean rollouts
    (``rollout_logvars``); the policy's own encoder file is left as it is. ``modalities``: re-set only
    these experts' thresholds (e.g. ``["force"]``) and keep the encoder's own for the rest (the written
    ``samples`` and ``quantile`` are then the rollouts'); None: all.
    Why a subset: clean rollouts never show the camera occluded, and thresholds set on them alone can
    stop flagging an occluder that the dataset's thresholds catch."""
    from mmrep.policy_eval import policy_file

    blob = load_torch_file(policy_file(policy), "policy file", "it is not an mmrep policy file or it is damaged")
    trained = json.loads(blob["config"])["obs"].get("encoder")
    if trained is not None and Path(out).resolve() == Path(trained).resolve():
        raise ValueError(f"--out {out} is the encoder {policy} was trained with; write the copy elsewhere")
    if modalities is not None:  # checked before the rollouts, which take minutes
        own = load_encoder(trained).reliability if trained is not None else None
        if own is None or not own.thresholds:
            raise ValueError(f"{policy}'s encoder has no thresholds to keep for the other modalities; "
                             "calibrate all of them (no --modalities)")
        unknown = sorted(set(modalities) - set(own.thresholds))
        if unknown:
            raise ValueError(f"--modalities {unknown}: {policy}'s encoder has experts {sorted(own.thresholds)}")
    encoder, logvars = rollout_logvars(policy, episodes, first_seed, progress)
    reliability = calibrate(logvars, quantile, low_quantile)
    if modalities is not None:  # the rollouts' thresholds for these experts, the encoder's own for the rest
        thresholds, low = dict(own.thresholds), dict(own.low)
        for m in modalities:
            thresholds[m] = reliability.thresholds[m]
            if m in reliability.low:
                low[m] = reliability.low[m]
            else:
                low.pop(m, None)
        reliability = Reliability(thresholds, quantile, reliability.samples, low,
                                  low_quantile if low_quantile is not None and low else own.low_quantile)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    export_encoder(encoder, Path(out), reliability)
    return reliability


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(description="Set an encoder file's reliability thresholds from a dataset's "
                                             "clean validation samples (python -m mmrep.reliability ENCODER DATA), "
                                             "or write a copy with thresholds from a policy's clean rollouts "
                                             "(python -m mmrep.reliability --policy RUN --out FILE).")
    ap.add_argument("encoder", nargs="?", help="an encoder.pt of the product of experts (with DATA)")
    ap.add_argument("data", nargs="?", help="dataset folder (its validation split is used)")
    ap.add_argument("--policy", help="a latent policy's run folder: calibrate its encoder on its clean rollouts")
    ap.add_argument("--out", help="with --policy: the encoder file to write (the policy's own is not changed)")
    ap.add_argument("--episodes", type=int, default=20, help="with --policy: clean rollouts (60-200 steps each)")
    ap.add_argument("--first-seed", type=int, default=CALIBRATION_SEED,
                    help="with --policy: rollout seeds first-seed + k (disjoint from training and evaluation)")
    ap.add_argument("--modalities", nargs="+", default=None,
                    help="with --policy: re-set only these experts' thresholds (e.g. force), keep the encoder's "
                         "own for the rest; default: all")
    ap.add_argument("--batches", type=int, default=120)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--quantile", type=float, default=FLAG_QUANTILE)
    ap.add_argument("--low-quantile", type=float, default=LOW_QUANTILE,
                    help="lower thresholds at this quantile of the clean values (two-sided flags); 0: one-sided")
    args = ap.parse_args(argv)
    if args.policy is not None and (args.out is None or args.encoder is not None):
        ap.error("--policy takes --out FILE and no ENCODER DATA")
    if args.modalities is not None and args.policy is None:
        ap.error("--modalities goes with --policy")
    if args.policy is None and (args.encoder is None or args.data is None):
        ap.error("give ENCODER DATA, or --policy RUN --out FILE")
    try:
        if args.policy is not None:
            rel = calibrate_on_rollouts(args.policy, args.out, args.episodes, args.first_seed, args.quantile,
                                        args.low_quantile or None, progress=True, modalities=args.modalities)
        else:
            rel = calibrate_encoder_file(args.encoder, args.data, args.batches, args.batch_size, args.quantile,
                                         low_quantile=args.low_quantile or None)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"mmrep.reliability: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.out or args.encoder}: thresholds {rel.to_json()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
