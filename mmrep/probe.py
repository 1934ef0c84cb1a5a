"""What a representation carries for control: small MLP probes that read, from z (and optionally
proprioception), the peg tip's offset from the hole and the contact state, on held-out episodes.

A policy cannot use what z does not carry: the hole's clearance is 2 mm, so z must locate the hole to
about that near it. The labels are privileged (the hole's pose is replayed from each episode's seed
and env config: ``env.reset(seed)`` draws it first, ``HoleReplay``) and are used by the probes only, never by the
representation.

    python -m mmrep.probe data/probe plain=runs/quality_poe/encoder.pt robust=runs/robust/encoder.pt \
        random_init=random:runs/quality_poe/encoder.pt --out outputs/probe

``random:PATH`` probes PATH's architecture with fresh seeded weights (``mmrep.encoder.random_like``, seed 0),
the random-features row of the paper experiment.

For each encoder, and for proprioception alone and the raw F/T with proprioception (``ft+proprio``:
each step's mean and last F/T reading, ``ft_summary``) as baselines, features per step t of every
episode: z (posterior mean, clean inputs) with or without PROPRIO8. Probes train on the dataset's
``train`` episodes and are scored on its ``valid`` episodes:

    offset_mm_median        median horizontal error of the tip-to-hole offset (mm)
    offset_mm_median_near   the same where the tip is within 2 cm of the hole's top centre
    offset_mm_median_touch  the same where the tip is that near and the peg touches the block (what touch
                            can sense: pressing on the rim)
    contact_f1              F1 of "the peg touches the block during the step that ended at t"

The zero-offset baseline (predicting that the hole is right under the tip) is reported beside, on
the same samples (``zero_offset``). Writes ``probe.json`` (every figure and the settings) and
``probe.md`` (a table).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmrep.encoder import load_encoder, random_like
from mmrep.models.experts import step_summary
from mmrep.models.losses import f1_from_counts
from sim.dataset_format import DATA_GROUP, open_shard, read_manifest
from sim.modalities import MODALITIES
from sim.observation import ObservationShapeError, proprio8_from_proprio13

NEAR_M = 0.02  # m: "near the hole" for the near-hole figure
RANDOM_PREFIX = "random:"  # an encoder spec "random:PATH": PATH's architecture, fresh weights


@dataclass
class ProbeConfig:
    hidden: int = 256
    epochs: int = 60
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0


@dataclass
class Steps:
    """Every observation row of a split, flattened over episodes.

    obs: the env observation dict (rgb (N, S, S, 3) uint8, depth, force (N, n, 6), proprio (N, 13));
    offset: (N, 3) float32, m, tip minus the hole's top centre (world); contact: (N,) float32, 1 if
    the peg touched the block during the step that ended at the row (0 at reset); episode: (N,) int.
    """

    obs: dict[str, np.ndarray]
    offset: np.ndarray
    contact: np.ndarray
    episode: np.ndarray


class HoleReplay:
    """The task's goal point (3,) m (the hole's top centre) of a collected episode, by replaying the reset with the
    episode's seed and env config (JSON): one camera-less env per config, reused across episodes."""

    def __init__(self) -> None:
        self._envs: dict[str, Any] = {}

    def __call__(self, env_config: str, seed: int) -> np.ndarray:
        import gymnasium as gym

        import sim  # noqa: F401  (registers the env ids)
        from sim.registration import BASE_ID

        if env_config not in self._envs:
            cfg = json.loads(env_config)
            self._envs[env_config] = gym.make(BASE_ID, **{**cfg, "use_camera": False, "compute_flow": False})
        env = self._envs[env_config]
        env.reset(seed=int(seed))
        return np.asarray(env.unwrapped.task.goal_pos, dtype=np.float64)  # the task's goal: the hole's top centre

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


def load_steps(path: str | Path, split: str, keys: tuple[str, ...], max_episodes: int | None = None) -> Steps:
    """Every row of the ``split`` episodes of a native dataset folder, with its labels."""
    path = Path(path)
    manifest = read_manifest(path)
    chosen = [e for e in manifest["episodes"] if e["split"] == split][:max_episodes]
    if not chosen:
        raise ValueError(f"{path}: no episodes in split {split!r} (the probes fit on the train episodes and "
                         f"score on the valid ones: collect more episodes)")
    obs: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    offsets, contacts, episodes = [], [], []
    hole_of = HoleReplay()
    try:
        for i, e in enumerate(chosen):
            with open_shard(path / e["shard"]) as f:
                g = f[DATA_GROUP][e["name"]]
                hole = hole_of(g.attrs["env_config"], int(g.attrs["seed"]))
                for k in keys:
                    x = g[f"obs/{k}"][:]
                    obs[k].append(x.astype(np.float32) if k == "depth" else x)
                proprio = g["obs/proprio"][:]
                offsets.append((proprio[:, :3] - hole).astype(np.float32))
                contacts.append(g["obs/contact"][:].any(axis=1).astype(np.float32))
                episodes.append(np.full(len(proprio), i))
    finally:
        hole_of.close()
    return Steps({k: np.concatenate(v) for k, v in obs.items()}, np.concatenate(offsets), np.concatenate(contacts),
                 np.concatenate(episodes))


@torch.no_grad()
def encode_steps(encoder, obs: dict[str, np.ndarray], batch: int = 64) -> np.ndarray:
    """(N, z_dim) float32 posterior means of clean observations, in batches."""
    n = len(next(iter(obs.values())))
    out = [encoder.encode({k: v[i:i + batch] for k, v in obs.items()}).float().cpu().numpy()
           for i in range(0, n, batch)]
    return np.concatenate(out)


class Probe(torch.nn.Module):
    """An MLP (two hidden layers, ReLU) on features standardised with its training statistics."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, out_dim: int, hidden: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(mean).float())
        self.register_buffer("std", torch.from_numpy(std).float())
        self.net = torch.nn.Sequential(torch.nn.Linear(len(mean), hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, kind: str, cfg: ProbeConfig) -> Probe:
    """A ``Probe`` fitted with Adam (cosine schedule); ``kind`` "regression" (Huber, targets in mm)
    or "binary" (logits, BCE)."""
    torch.manual_seed(cfg.seed)
    net = Probe(x_train.mean(0), x_train.std(0) + 1e-6, y_train.shape[1], cfg.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    x, y = torch.from_numpy(x_train).float(), torch.from_numpy(y_train).float()
    loss_fn = torch.nn.HuberLoss(delta=1.0) if kind == "regression" else torch.nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(x), generator=gen).split(cfg.batch_size):
            opt.zero_grad()
            loss_fn(net(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def predict(net: Probe, x: np.ndarray) -> np.ndarray:
    return net(torch.from_numpy(x).float()).numpy()


def probe_features(name: str, train_x: np.ndarray, valid_x: np.ndarray, train: Steps, valid: Steps,
                   cfg: ProbeConfig) -> dict[str, Any]:
    """Fit the offset and contact probes on ``train_x`` and score them on ``valid_x``."""
    mm = 1000.0
    reg = fit_probe(train_x, train.offset * mm, "regression", cfg)
    err = np.linalg.norm(predict(reg, valid_x)[:, :2] - valid.offset[:, :2] * mm, axis=1)
    near = np.linalg.norm(valid.offset, axis=1) < NEAR_M
    touching = near & (valid.contact > 0.5)
    clf = fit_probe(train_x, train.contact[:, None], "binary", cfg)
    contact = predict(clf, valid_x)[:, 0] > 0
    truth = valid.contact > 0.5
    f1 = f1_from_counts(float(np.sum(contact & truth)), float(np.sum(contact & ~truth)),
                        float(np.sum(~contact & truth)))
    return {"features": name, "dim": int(train_x.shape[1]), "offset_mm_median": float(np.median(err)),
            "offset_mm_median_near": float(np.median(err[near])) if near.any() else None,
            "offset_mm_p90_near": float(np.percentile(err[near], 90)) if near.any() else None,
            "offset_mm_median_touch": float(np.median(err[touching])) if touching.any() else None,
            "near_samples": int(near.sum()), "touch_samples": int(touching.sum()), "contact_f1": f1,
            "contact_rate": float(valid.contact.mean())}


def ft_summary(force: np.ndarray) -> np.ndarray:
    """(N, 12) float32: the mean and the last of each step's F/T readings (``force``: (N, n, 6), N and
    N m, sensor frame): the raw features the ``ft+proprio`` row probes (with PROPRIO8)."""
    return step_summary(torch.from_numpy(np.asarray(force, dtype=np.float32))).numpy()


def zero_offset(valid: Steps) -> dict[str, float | None]:
    """The baseline that predicts a zero offset (the hole right under the tip): its median horizontal
    error (mm) over every held-out sample, near the hole, and near it in contact."""
    err = np.linalg.norm(valid.offset[:, :2], axis=1) * 1000.0
    near = np.linalg.norm(valid.offset, axis=1) < NEAR_M
    touching = near & (valid.contact > 0.5)
    return {"offset_mm_median": float(np.median(err)),
            "offset_mm_median_near": float(np.median(err[near])) if near.any() else None,
            "offset_mm_median_touch": float(np.median(err[touching])) if touching.any() else None}


def load_probed_encoder(spec: str):
    """The encoder of a spec: a path, or ``random:PATH`` for PATH's architecture with fresh weights (seed 0)."""
    if spec.startswith(RANDOM_PREFIX):
        return random_like(load_encoder(spec[len(RANDOM_PREFIX):]), seed=0)
    return load_encoder(spec)


def run_probes(data: str | Path, encoders: dict[str, str], out: str | Path, cfg: ProbeConfig,
               with_proprio: bool = True, max_episodes: int | None = None) -> dict[str, Any]:
    """Probe each encoder (z, and z with PROPRIO8) and proprioception alone; write the outputs."""
    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys = MODALITIES
    train = load_steps(data, "train", keys, max_episodes)
    valid = load_steps(data, "valid", keys, max_episodes)
    p8_train, p8_valid = (proprio8_from_proprio13(s.obs["proprio"]) for s in (train, valid))
    rows = [probe_features("proprio", p8_train, p8_valid, train, valid, cfg)]
    # the raw F/T beside: whether the sensor's own readings carry the hole's direction, learned or not
    ft_train, ft_valid = (np.concatenate([ft_summary(s.obs["force"]), p8], 1)
                          for s, p8 in ((train, p8_train), (valid, p8_valid)))
    rows.append(probe_features("ft+proprio", ft_train, ft_valid, train, valid, cfg))
    for label, spec in encoders.items():
        path, _, only = spec.partition("@")
        enc = load_probed_encoder(path)
        keep = only.split(",") if only else list(train.obs)  # "@force,proprio": the product of those experts
        try:
            z_train, z_valid = (encode_steps(enc, {k: s.obs[k] for k in keep}) for s in (train, valid))
        except ObservationShapeError as e:  # e.g. the dataset's image size is not the encoder's
            raise ValueError(f"encoder {path} on {data}: {e}") from e
        row = probe_features("z", z_train, z_valid, train, valid, cfg)
        rows.append({"encoder": label, **row})
        if with_proprio:
            row = probe_features("z+proprio", np.concatenate([z_train, p8_train], 1),
                                 np.concatenate([z_valid, p8_valid], 1), train, valid, cfg)
            rows.append({"encoder": label, **row})
        print(f"probed {label}", flush=True)
    result = {"data": str(data), "encoders": encoders, "config": asdict(cfg), "zero_offset": zero_offset(valid),
              "train_samples": len(train.offset), "valid_samples": len(valid.offset),
              "train_episodes": int(train.episode.max() + 1), "valid_episodes": int(valid.episode.max() + 1),
              "seconds": time.time() - t0, "results": rows}
    (out / "probe.json").write_text(json.dumps(result, indent=2))
    (out / "probe.md").write_text(probe_table(result))
    probe_figure(result, out / "probe.png")
    return result


def probe_figure(result: dict[str, Any], path: str | Path) -> None:
    """A bar per feature set: the median horizontal error (mm) to the hole near it, and near it while
    touching (a dot), against the zero-offset baselines (near: dashed; touching: dotted). Written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["results"] if r["offset_mm_median_near"] is not None]
    labels = [f"{r['encoder']} {r['features']}" if r.get("encoder") else r["features"] for r in rows]
    near = [r["offset_mm_median_near"] for r in rows]
    touch = [r.get("offset_mm_median_touch") for r in rows]
    fig, ax = plt.subplots(figsize=(8.4, 1.2 + 0.32 * len(rows)))
    y = np.arange(len(rows))[::-1]
    ax.barh(y, near, color="C0", label="near the hole (within 2 cm)")
    ax.plot([t if t is not None else np.nan for t in touch], y, "o", color="C1", label="near and touching")
    zero = result.get("zero_offset") or {}
    if zero.get("offset_mm_median_near") is not None:
        ax.axvline(zero["offset_mm_median_near"], color="k", ls="--", lw=1, label="zero offset, near")
    if zero.get("offset_mm_median_touch") is not None:
        ax.axvline(zero["offset_mm_median_touch"], color="C1", ls=":", lw=1, label="zero offset, touching")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("median horizontal error to the hole (mm), held-out episodes")
    ax.set_title(f"Probes on {result['data']}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside, not over the bars
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def probe_table(result: dict[str, Any]) -> str:
    lines = [f"Probes on `{result['data']}`: {result['train_episodes']} train / {result['valid_episodes']} held-out "
             f"episodes ({result['valid_samples']} samples).", "",
             "| representation | features | offset error, median (mm) | near the hole (mm) | near, 90th pct (mm) | "
             "near and touching (mm) | contact F1 |", "| --- | --- | --- | --- | --- | --- | --- |"]

    def mm(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    zero = result.get("zero_offset")
    if zero:
        lines.append(f"| zero offset (baseline) | - | {mm(zero['offset_mm_median'])} | "
                     f"{mm(zero['offset_mm_median_near'])} | - | {mm(zero.get('offset_mm_median_touch'))} | - |")
    for r in result["results"]:
        lines.append(f"| {r.get('encoder', '-')} | {r['features']} | {r['offset_mm_median']:.1f} | "
                     f"{mm(r['offset_mm_median_near'])} | {mm(r['offset_mm_p90_near'])} | "
                     f"{mm(r.get('offset_mm_median_touch'))} | {r['contact_f1']:.3f} |")
    return "\n".join(lines) + "\n"


def encoder_labels(specs: list[str]) -> dict[str, str]:
    """{label: spec} of the encoder arguments ``label=spec`` or ``spec`` (``spec``: a path, ``random:PATH``,
    either with an ``@modalities`` suffix). An unlabelled spec is labelled with its file's stem, or, where
    unlabelled stems collide (``runs/a/encoder.pt runs/b/encoder.pt``), with its run folder's name (``a``,
    ``b``; ``random:`` kept in front). Raises ValueError naming the labels that are still repeated."""
    split = [spec.rpartition("=")[::2] for spec in specs]  # (label or "", path), in the order given
    stems = [Path(path.partition("@")[0].removeprefix(RANDOM_PREFIX)).stem for label, path in split if not label]
    pairs = []
    for label, path in split:
        if not label:
            file = path.partition("@")[0]
            label = Path(file.removeprefix(RANDOM_PREFIX)).stem
            if stems.count(label) > 1:  # runs/a/encoder.pt runs/b/encoder.pt: by run folder
                folder = Path(file.removeprefix(RANDOM_PREFIX)).resolve().parent.name
                label = (RANDOM_PREFIX if file.startswith(RANDOM_PREFIX) else "") + folder
            if "@" in path:  # the same file read by other experts: its own row
                label += "@" + path.partition("@")[2]
        pairs.append((label, path))
    labels = [label for label, _ in pairs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"encoder labels repeated: {repeated} (each encoder needs its own label: "
                         f"give them as label=PATH)")
    return {label: path for label, path in pairs}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mmrep.probe", description=__doc__.splitlines()[0])
    ap.add_argument("data", help="a native dataset folder (its train episodes fit, its valid episodes score)")
    ap.add_argument("encoders", nargs="*", help="label=encoder.pt, or label=random:encoder.pt (fresh weights); "
                    "a suffix @force,proprio encodes those modalities alone (the others left out of the product); "
                    "unlabelled: the file's stem, or its run folder's name where stems repeat; labels must differ")
    ap.add_argument("--out", default="outputs/probe")
    ap.add_argument("--epochs", type=int, default=ProbeConfig.epochs)
    ap.add_argument("--max-episodes", type=int, default=None, help="per split")
    ap.add_argument("--seed", type=int, default=ProbeConfig.seed,
                    help="the probes' initialisation and shuffling (repeat with others for the spread)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (1 beside another torch job: two jobs' idle threads spin on 2 cores)")
    args = ap.parse_intermixed_args(argv)  # options before or after the encoders
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        encoders = encoder_labels(args.encoders)
    except ValueError as e:
        ap.error(str(e))
    for label, path in encoders.items():
        file, _, only = path.partition("@")
        if not Path(file.removeprefix(RANDOM_PREFIX)).exists():
            raise SystemExit(f"encoder {file} does not exist")
        unknown = sorted(set(filter(None, only.split(","))) - set(MODALITIES))
        if unknown:
            raise SystemExit(f"encoder {label}={path}: unknown modalities {unknown} after '@' "
                             f"(choose from {list(MODALITIES)})")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        ap.error(f"--out {args.out} is a file, not a folder")
    try:
        result = run_probes(args.data, encoders, args.out, ProbeConfig(epochs=args.epochs, seed=args.seed),
                            max_episodes=args.max_episodes)
    except (ValueError, OSError, RuntimeError) as e:  # bad input: a message naming the file, not a traceback
        # (OSError covers FileNotFoundError and h5py's unreadable-file errors)
        ap.exit(2, f"{ap.prog}: error: {e}\n")
    print(probe_table(result))


if __name__ == "__main__":
    main()
