"""Training throughput: samples/s end to end (HDF5 -> DataLoader -> forward, backward, Adam) vs pure
compute on in-memory tensors of the same shapes, in the same run, full reference model (RGB, depth,
F/T, proprio; all heads), batch 64.

Anchor: the paper's reference implementation on this machine kind trains at about 51-53 samples/s in
steady state (model alone 66; it runs the whole model twice per step and opens two HDF5 files per
sample). Targets: end-to-end / compute >= 0.9; CPU end-to-end >= 105 samples/s (2x the reference).
On CUDA it also reports the bf16-autocast figure. Writes JSON.

    python benchmarks/train_throughput.py --out outputs/bench/train_throughput.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mmrep.data import MultimodalDataset
from mmrep.models import ModelConfig, MultimodalModel, compute_losses
from mmrep.train import to_device


def step_fn(model, opt, device, amp):
    def step(batch):
        batch = to_device(batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            terms = compute_losses(model.cfg, model(batch), batch)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
    return step


def timed(step, batches, warmup: int, n: int, device) -> float:
    it = iter(batches)
    for _ in range(warmup):
        step(next(it))
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    count = 0
    for _ in range(n):
        batch = next(it)
        step(batch)
        count += batch["action"].shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("outputs/bench/loader_data"))
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--workers", type=int, default=0, help="0 is fastest on a 2-core CPU machine")
    ap.add_argument("--cache", action="store_true", help="dataset RAM cache (warm after the first pass)")
    ap.add_argument("--out", type=Path, default=Path("outputs/bench/train_throughput.json"))
    args = ap.parse_args()
    if not (args.data / "manifest.json").exists():
        from sim.collect import CollectConfig, collect  # here only: a GPU node fed collected data has no PyBullet

        collect(CollectConfig(episodes=20, out=str(args.data), seed=5, env={"max_steps": 100}), progress=False)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    ds = MultimodalDataset(args.data, split=None, cache=args.cache)
    report = {"benchmark": "train_throughput", "machine": platform.platform(), "device": str(device),
              "torch_threads": torch.get_num_threads(), "batch_size": 64, "loader_workers": args.workers,
              "cache": args.cache, "reference_implementation_samples_per_s": {"steady": "51-53", "model_alone": 66}}
    modes = [("fp32", False)] + ([("bf16_autocast", True)] if device.type == "cuda" else [])
    for name, amp in modes:
        model = MultimodalModel(ModelConfig()).to(device).to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        step = step_fn(model, opt, device, amp)
        g = torch.Generator().manual_seed(0)
        loader = DataLoader(ds, batch_size=64, shuffle=True, generator=g, num_workers=args.workers,
                            pin_memory=device.type == "cuda", persistent_workers=args.workers > 0, drop_last=True)

        def loader_batches(loader=loader):
            while True:
                yield from loader

        if args.cache:  # warm the RAM cache: the steady state of epochs after the first
            for _ in DataLoader(ds, batch_size=64, num_workers=0):
                pass
        fixed = next(iter(DataLoader(ds, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(1))))

        def memory_batches(fixed=fixed):
            while True:
                yield fixed

        compute = timed(step, memory_batches(), 2, args.batches, device)
        end_to_end = timed(step, loader_batches(), 2, args.batches, device)
        report[name] = {"compute_samples_per_s": compute, "end_to_end_samples_per_s": end_to_end,
                        "ratio": end_to_end / compute}
        print(f"{name:<14} compute {compute:6.1f} samples/s | end to end {end_to_end:6.1f} samples/s | "
              f"ratio {end_to_end / compute:.2f}", flush=True)
    r = report["fp32"]
    report["targets"] = {"ratio": 0.9, "cpu_end_to_end_samples_per_s": 105}
    report["meets_targets"] = r["ratio"] >= 0.9 and (device.type != "cpu" or r["end_to_end_samples_per_s"] >= 105)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
