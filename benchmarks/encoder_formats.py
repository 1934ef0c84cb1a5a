"""The frozen encoder under ONNX Runtime beside torch: milliseconds per call on env observations, one
observation and a batch of 8, one thread each, and the largest difference of z between them. Writes JSON.

    python benchmarks/encoder_formats.py --out benchmarks/results/formats/encoder_formats.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnxruntime as ort
import torch

import sim  # noqa: F401
from mmrep.encoder import load_encoder
from mmrep.formats.encoder_export import save_onnx

ROOT = Path(__file__).resolve().parents[1]
MODALITIES = ("rgb", "depth", "force", "proprio")


def observations(n: int, image_size: int) -> dict[str, np.ndarray]:
    env = gym.make("mmrep/PegInsertion-v0", image_size=image_size)
    obs, _ = env.reset(seed=0)
    rows = []
    for _ in range(n):
        rows.append(obs)
        obs, *_ = env.step(env.action_space.sample())
    env.close()
    return {k: np.stack([r[k] for r in rows]).astype(np.uint8 if k == "rgb" else np.float32) for k in MODALITIES}


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoders", nargs="+", default=["robust_flow_rgb", "concat"],
                   help="names under benchmarks/results/robustness/encoders/")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--out", default="benchmarks/results/formats/encoder_formats.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.encoders:
            enc = load_encoder(ROOT / "benchmarks/results/robustness/encoders" / f"{name}.pt")
            batch = observations(8, enc.image_size)
            path = save_onnx(enc, Path(tmp) / name, force_readings=batch["force"].shape[1])
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            for b in (1, 8):
                x = {k: v[:b] for k, v in batch.items() if k in enc.cfg.modalities}
                t_torch = median_ms(lambda x=x, enc=enc: enc.encode(x), args.repeats)
                t_ort = median_ms(lambda x=x, sess=sess: sess.run(["z_mean"], x), args.repeats)
                diff = float(np.abs(sess.run(["z_mean"], x)[0] - enc.encode(x).numpy()).max())
                rows.append({"encoder": name, "fusion": enc.cfg.fusion, "batch": b, "torch_ms": t_torch,
                             "onnxruntime_ms": t_ort, "speedup_ort_over_torch": t_torch / t_ort,
                             "max_abs_z_diff": diff})
                print(rows[-1])
    result = {"what": "median ms per encode call, 1 thread, env observations at 128x128", "rows": rows,
              "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
              "machine": {"python": platform.python_version(), "processor": platform.processor()},
              "date": time.strftime("%Y-%m-%d")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
