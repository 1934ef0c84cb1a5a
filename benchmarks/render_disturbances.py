"""The in-simulation disturbances, pictured for the docs: camera frames with the occluder (off,
static, appearing after first contact, moving), and the wrist F/T trace of an episode with pushes.

    python benchmarks/render_disturbances.py --out docs --json benchmarks/results/disturbances.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sim.env import PegInsertionEnv  # noqa: E402
from sim.peg_hole_experts import PushDownPolicy  # noqa: E402


def occluder_frames(seed: int) -> list[tuple[str, np.ndarray]]:
    frames = []
    for title, occ in (("no occluder", {"mode": "off"}), ("static (0.1 m at 0.25 m)", {"mode": "static"}),
                       ("after first contact", {"mode": "after_contact"}), ("moving", {"mode": "moving"})):
        env = PegInsertionEnv(occluder=occ, max_steps=80)
        obs, info = env.reset(seed=seed)
        policy = PushDownPolicy(env.cfg)
        policy.reset(info, seed=0)
        touched = None
        for t in range(80):  # until a few steps after first contact
            obs, _, term, trunc, info = env.step(policy.act(obs, info))
            if touched is None and obs["contact"].any():
                touched = t
            if (touched is not None and t >= touched + 3) or term or trunc:
                break
        frames.append((f"{title}, step {t + 1}", obs["rgb"]))
        env.close()
    return frames


def push_trace(seed: int, steps: int = 60) -> tuple[np.ndarray, list[int]]:
    env = PegInsertionEnv(use_camera=False, push={"rate_hz": 2.0, "impulse": 0.5}, max_steps=steps)
    env.reset(seed=seed)
    force, pushed = [], []
    for t in range(steps):
        obs, _, _, _, info = env.step(np.zeros(3, np.float32))
        force.append(obs["force"])
        if info["pushed"]:
            pushed.append(t)
    env.close()
    return np.concatenate(force), pushed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs", help="folder of the two PNG files")
    ap.add_argument("--json", default="benchmarks/results/disturbances.json")
    ap.add_argument("--seed", type=int, default=2)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = occluder_frames(args.seed)
    fig, axes = plt.subplots(1, len(frames), figsize=(3 * len(frames), 3.2))
    for ax, (title, rgb) in zip(axes, frames):
        ax.imshow(rgb)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "occluder.png", dpi=100)
    plt.close(fig)
    force, pushed = push_trace(args.seed)
    t = np.arange(len(force)) / 1000.0
    fig, ax = plt.subplots(figsize=(8, 2.8))
    for c, name in enumerate(("Fx", "Fy", "Fz")):
        ax.plot(t, force[:, c], lw=0.8, label=name)
    for s in pushed:
        ax.axvspan(s * 0.05, (s + 1) * 0.05, color="0.85", zorder=0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("wrist force (N)")
    ax.set_title("pushes of 0.5 N s (grey: control steps with a push), peg held in free space", fontsize=9)
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "pushes_ft.png", dpi=100)
    plt.close(fig)
    summary = {"seed": args.seed, "frames": [f for f, _ in frames], "push_steps": pushed,
               "peak_lateral_force_N": float(np.abs(force[:, :2]).max())}
    Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
