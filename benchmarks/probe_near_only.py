"""Probes fitted on the near-hole samples only: what "near the hole" alone is worth.

The probe table's near-hole column comes from probes fitted on every sample. This refits the offset
probe on the samples within ``NEAR_M`` of the hole only, for an encoder's z, z + proprioception and
proprioception alone, and scores each on the held-out near-hole samples. Proprioception alone fitted
this way is the baseline a representation must beat to show it locates the hole. Writes JSON.

    python benchmarks/probe_near_only.py data/probe300 benchmarks/results/insertion/encoders/insertion_force.pt \\
        --out benchmarks/results/paper/probe/near_only_no_vision.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from mmrep.probe import NEAR_M, ProbeConfig, encode_steps, fit_probe, load_probed_encoder, load_steps, predict
from sim.observation import proprio8_from_proprio13


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("encoder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keys = ("rgb", "depth", "force", "proprio")
    train, valid = load_steps(args.data, "train", keys), load_steps(args.data, "valid", keys)
    enc = load_probed_encoder(args.encoder)
    z_t, z_v = encode_steps(enc, train.obs), encode_steps(enc, valid.obs)
    p_t, p_v = proprio8_from_proprio13(train.obs["proprio"]), proprio8_from_proprio13(valid.obs["proprio"])
    near_t = np.linalg.norm(train.offset, axis=1) < NEAR_M
    near_v = np.linalg.norm(valid.offset, axis=1) < NEAR_M
    rows = []
    for name, x_t, x_v in (("z", z_t, z_v), ("z+proprio", np.hstack([z_t, p_t]), np.hstack([z_v, p_v])),
                           ("proprio", p_t, p_v)):
        for subset, mask in (("all", np.ones(len(x_t), bool)), ("near only", near_t)):
            net = fit_probe(x_t[mask], train.offset[mask] * 1000, "regression", ProbeConfig())
            err = np.linalg.norm(predict(net, x_v[near_v])[:, :2] - valid.offset[near_v, :2] * 1000, axis=1)
            rows.append({"features": name, "fitted_on": subset, "train_samples": int(mask.sum()),
                         "near_median_mm": float(np.median(err))})
            print(f"{name:10s} fitted on {subset:9s} ({mask.sum():5d}): near-hole median {np.median(err):.1f} mm",
                  flush=True)
    zero = np.median(np.linalg.norm(valid.offset[near_v, :2] * 1000, axis=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": args.data, "encoder": args.encoder, "near_m": NEAR_M,
                                    "valid_near_samples": int(near_v.sum()), "predict_zero_near_median_mm": float(zero),
                                    "rows": rows}, indent=2) + "\n")
    print(f"predicting zero offset: {zero:.1f} mm  -> {args.out}")


if __name__ == "__main__":
    main()
