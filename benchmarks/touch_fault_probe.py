"""Does the F/T expert's summary branch make touch's reading of the hole fragile under F/T faults?
A probe fitted on clean touch-only posteriors (``@force,proprio``) of each encoder, scored near the
hole on held-out episodes, clean and with each F/T perturbation at full level applied to every step;
beside it, the share of steps whose F/T expert the encoder's reliability thresholds flag (near the
hole and overall): what a remedy that detects and leaves out a corrupted sense can start from.

    python benchmarks/touch_fault_probe.py data/touch_press1200 \
        summary=runs/touch_press_insertion/encoder.pt conv=runs/touch_press_insertion_conv/encoder.pt \
        --out benchmarks/results/touch_task/probe_press1200/faults.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mmrep.data.dataset import MultimodalDataset
from mmrep.encoder import load_encoder
from mmrep.probe import NEAR_M, ProbeConfig, encode_steps, fit_probe, load_steps, predict
from sim.perturb import perturb

FAULTS = ("force/gaussian_noise", "force/bias", "force/taps", "force/dead")


def force_flags(enc, force: np.ndarray, proprio: np.ndarray, batch: int = 256) -> np.ndarray:
    """(N,) bool: whether the encoder's reliability flags (its thresholds, and a flatlined signal) flag
    the F/T expert of each step (the detection a "detect, reject" remedy starts from); all False
    without thresholds."""
    if enc.reliability is None or "force" not in enc.reliability.thresholds:
        return np.zeros(len(force), dtype=bool)
    flags = [enc.flags({"force": force[i:i + batch], "proprio": proprio[i:i + batch]})["force"]
             for i in range(0, len(force), batch)]
    return torch.cat(flags).cpu().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("encoders", nargs="+", help="label=encoder.pt")
    ap.add_argument("--max-episodes", type=int, default=300)
    ap.add_argument("--out", default="outputs/touch_fault_probe.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    keys = ("force", "proprio")
    train = load_steps(args.data, "train", keys, args.max_episodes)
    valid = load_steps(args.data, "valid", keys, args.max_episodes)
    stats = MultimodalDataset(args.data, "train").sensor_stats()
    near = np.linalg.norm(valid.offset, axis=1) < NEAR_M
    zero = float(np.median(np.linalg.norm(valid.offset[near, :2], axis=1)) * 1000)
    result = {"data": args.data, "encoders": dict(s.split("=", 1) for s in args.encoders), "faults": FAULTS,
              "level": 1.0, "zero_offset_mm_near": zero, "rows": []}
    cfg = ProbeConfig()
    for label, path in result["encoders"].items():
        enc = load_encoder(path)
        z_train = encode_steps(enc, {k: train.obs[k] for k in keys})  # the touch-only product
        probe = fit_probe(z_train, train.offset * 1000.0, "regression", cfg)
        for fault in ("clean", *FAULTS):
            force = valid.obs["force"]
            if fault != "clean":
                rng = np.random.default_rng(0)
                force = perturb({"force": force}, fault, 1.0, rng, stats=stats,
                                episode_rng=np.random.default_rng(1), batched=True)["force"]
            z = encode_steps(enc, {"force": force, "proprio": valid.obs["proprio"]})
            err = np.linalg.norm(predict(probe, z)[:, :2] - valid.offset[:, :2] * 1000.0, axis=1)
            median = float(np.median(err[near]))
            flagged = force_flags(enc, force, valid.obs["proprio"])
            result["rows"].append({"encoder": label, "fault": fault, "offset_mm_median_near": median,
                                   "ft_flagged_near": float(flagged[near].mean()), "ft_flagged": float(flagged.mean())})
            print(label, fault, round(median, 2), "F/T flagged near", round(float(flagged[near].mean()), 3),
                  "all", round(float(flagged.mean()), 3), flush=True)
    result["seconds"] = time.time() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
