"""The ``mmrep`` command: ``collect`` and ``train`` (Hydra configs in ``configs/``) and ``data`` tools.

    mmrep collect episodes=100 workers=2 out=data/sim env=fast
    mmrep train data=data/sim epochs=5 model=no_force out=runs/no_force
    mmrep data info data/sim
    mmrep data verify data/sim
    mmrep data export --format reference data/sim data/sim_reference
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def config_dir() -> Path:
    """The Hydra config folder: ``$MMREP_CONFIG_DIR`` or the repository's ``configs/``."""
    env = os.environ.get("MMREP_CONFIG_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "configs"
    if not (path / "collect.yaml").exists():
        raise FileNotFoundError(f"no Hydra configs in {path}; set MMREP_CONFIG_DIR")
    return path


def compose(name: str, overrides: list[str]) -> dict[str, Any]:
    """Compose config ``name`` with command-line ``overrides`` into a plain dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name=name, overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def app_config(name: str, cls, overrides: list[str]):
    """The validated ``cls`` instance that app ``name`` would run with ``overrides``, and whether to
    show progress. Unknown keys raise ValueError naming the config file."""
    d = compose(name, overrides)
    progress = bool(d.pop("progress", True))
    try:
        cfg = cls(**d)
    except TypeError as err:
        raise ValueError(f"configs/{name}.yaml: {err}") from err
    cfg.validate()
    return cfg, progress


def collect_config(overrides: list[str]):
    """The ``CollectConfig`` that ``mmrep collect`` would run, and whether to show progress."""
    from sim.collect import CollectConfig

    return app_config("collect", CollectConfig, overrides)


def train_config(overrides: list[str]):
    """The ``TrainConfig`` that ``mmrep train`` would run, and whether to show progress."""
    from mmrep.train import TrainConfig

    return app_config("train", TrainConfig, overrides)


def _train(overrides: list[str]) -> int:
    from mmrep.train import train

    cfg, progress = train_config(overrides)
    result = train(cfg, progress=progress)
    print(json.dumps(result["final"], indent=2))
    print(f"metrics: {Path(cfg.out) / 'metrics.json'}  encoder: {Path(cfg.out) / 'encoder.pt'}")
    return 0


def _app_help(name: str) -> int:
    """Usage of a Hydra app and its composed default configuration."""
    from omegaconf import OmegaConf

    print(f"usage: mmrep {name} [key=value ...] [group=option ...]\n")
    print(f"Hydra overrides of {config_dir() / (name + '.yaml')}; the defaults:\n")
    print(OmegaConf.to_yaml(OmegaConf.create(compose(name, []))))
    groups = sorted(p.name for p in config_dir().iterdir() if p.is_dir())
    for group in groups:
        options = sorted(f.stem for f in (config_dir() / group).glob("*.yaml"))
        print(f"{group}: {', '.join(options)}")
    return 0


def _collect(overrides: list[str]) -> int:
    from mmrep.data.tools import format_info, info
    from sim.collect import collect

    cfg, progress = collect_config(overrides)
    manifest = collect(cfg, progress=progress)
    print(format_info(info(cfg.out)))
    return 0 if manifest["complete"] else 1


def _data(args: argparse.Namespace) -> int:
    from mmrep.data import tools

    if args.action == "verify":
        problems = tools.verify(args.path)
        for p in problems:
            print(p)
        print(f"{args.path}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    if args.action == "info":
        d = tools.info(args.path)
        print(json.dumps(d, indent=2) if args.json else tools.format_info(d))
        return 0
    if args.action == "export":
        files = tools.export_reference(args.path, args.out)
        print(f"wrote {len(files)} reference-layout file(s) to {args.out}")
        return 0
    raise AssertionError(args.action)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="mmrep", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("collect", help="collect a simulated dataset (Hydra overrides follow)",
                   add_help=False)
    sub.add_parser("train", help="train the representation (Hydra overrides follow)", add_help=False)
    data = sub.add_parser("data", help="dataset tools")
    dsub = data.add_subparsers(dest="action", required=True)
    p = dsub.add_parser("verify", help="check schema, shapes, dtypes, NaN/inf, checksums")
    p.add_argument("path")
    p = dsub.add_parser("info", help="episodes, steps, size, per-shape counts, contact and success")
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p = dsub.add_parser("export", help="write the paper's reference layout (50-step files)")
    p.add_argument("--format", choices=["reference"], default="reference")
    p.add_argument("path")
    p.add_argument("out")
    apps = {"collect": _collect, "train": _train}
    if argv and argv[0] in apps:
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if any(a in ("-h", "--help") for a in argv[1:]):
            return _app_help(argv[0])
        try:
            return apps[argv[0]](argv[1:])
        except (ValueError, FileNotFoundError, RuntimeError, HydraException, OmegaConfBaseException) as err:
            print(f"mmrep {argv[0]}: error: {err}", file=sys.stderr)
            return 2
    args = parser.parse_args(argv)
    try:
        return _data(args)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"mmrep data {args.action}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
