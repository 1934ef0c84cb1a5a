"""The ``mmrep`` command: the Hydra apps ``collect``, ``train`` and ``evaluate`` (configs in ``configs/``, every
default in ``mmrep.config``) and the ``data`` tools (``sim.dataset_format``; no torch).

    mmrep collect episodes=100 workers=2 out=data/sim env=fast
    mmrep train data=data/sim epochs=5 model=no_force out=runs/no_force
    mmrep train -m data=data/sim model=full,no_force out=runs/ablations    (one folder per run)
    mmrep train --cfg job model=no_force        (print the composed config)   mmrep train --help
    mmrep evaluate runs=[runs/a,robust:runs/b] data=data/sim perturb=default out=outputs/eval
    mmrep policy train obs=state total_steps=300000 out=runs/policy_state
    mmrep policy eval policy=runs/policy_state episodes=100 "settings=[clean,pushes,ft_dead]"
    mmrep data info data/sim
    mmrep data verify data/sim
    mmrep data export --format reference data/sim data/sim_reference
    mmrep data export format=lerobot data=data/sim out=data/sim_lerobot     (also: format=robomimic)
    mmrep export-encoder runs/quality/encoder.pt --format onnx|safetensors [--out PATH]
    mmrep policy export policy=runs/policy out=runs/policy/policy.onnx
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmrep.config import APPS, app_config, app_error, run_hydra_app

_fail = app_error


def _train_app(cfg) -> int:
    from mmrep.train import run_train_app

    return run_train_app(cfg)


def _collect_task(cfg) -> int:
    from sim.collect import CollectionInterrupted, collect
    from sim.dataset_format import format_info, info

    try:
        config = app_config(cfg)
        manifest = collect(config)
    except CollectionInterrupted as err:
        print(f"mmrep collect: {err}", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as err:
        return _fail("collect", err)
    print(format_info(info(config.out)))
    return 0 if manifest["complete"] else 1


def _evaluate_task(cfg) -> int:
    from mmrep.evaluate import evaluate

    try:
        config = app_config(cfg)
        summary = evaluate(config)
    except (ValueError, FileNotFoundError, RuntimeError, OSError, KeyError) as err:
        return _fail("evaluate", err)
    out = Path(config.out)
    print(f"{len(summary['results'])} results in {summary['seconds'] / 60:.1f} min: {out / 'results.json'}, "
          f"{out / 'report.md'}")
    return 0


def _policy_task(cfg) -> int:
    from mmrep.policy import train_policy

    try:
        config = app_config(cfg)
        final = train_policy(config)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as err:
        return _fail("policy train", err)
    print(json.dumps(final, indent=2))
    print(f"policy: {Path(config.out) / 'policy.pt'}  evaluations: {Path(config.out) / 'eval.jsonl'}")
    return 0


def _policy_eval_task(cfg) -> int:
    from mmrep.policy_eval import evaluate_policy_run

    try:
        config = app_config(cfg)
        summary = evaluate_policy_run(config)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as err:
        return _fail("policy eval", err)
    for r in summary["results"]:
        print(f"{r['setting']:24s} {r['shape']:10s} {r['mode']:13s} success {r['success_rate']:.2f} "
              f"(95% CI {r['success_ci95'][0]:.2f}-{r['success_ci95'][1]:.2f})")
    return 0


# What each Hydra app runs (not a ``sim.task``: those are what the robot must do).
_APP_RUNNERS = {"collect": _collect_task, "train": _train_app, "evaluate": _evaluate_task, "policy": _policy_task,
                "policy_eval": _policy_eval_task}


def run_app(app: str, args: list[str]) -> int:
    """Run Hydra app ``app`` with command-line ``args`` (overrides, ``-m``, ``--cfg job``, ``--help``,
    ``--info`` ...), as ``mmrep <app> <args>``; return the exit code."""
    return run_hydra_app(app, args, _APP_RUNNERS[app])


def _data(args: argparse.Namespace) -> int:
    from sim import dataset_format

    if args.action == "verify":
        problems = dataset_format.verify(args.path)
        for p in problems:
            print(p)
        print(f"{args.path}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    if args.action == "info":
        d = dataset_format.info(args.path)
        print(json.dumps(d, indent=2) if args.json else dataset_format.format_info(d))
        return 1 if d["warnings"] else 0  # a shard missing or damaged: not a sound dataset
    if args.action == "export":
        path, out = args.data or args.path, args.out or args.out_pos
        if not path or not out:
            raise ValueError("data export needs the dataset and the output: data=PATH out=PATH")
        if args.format == "lerobot":
            from mmrep.formats.lerobot import export_lerobot

            info = export_lerobot(path, out, flow=args.flow, episodes=args.episodes)
            print(f"wrote a LeRobot {info['codebase_version']} dataset to {out}: {info['total_episodes']} episodes, "
                  f"{info['total_frames']} frames, splits {info['splits']}")
            return 0
        if args.format == "robomimic":
            from mmrep.formats.robomimic import export_robomimic

            target = export_robomimic(path, out)
            print(f"wrote a robomimic view of {path} to {target} (links to the shards: keep them)")
            return 0
        from sim.reference_layout import export_reference

        files = export_reference(path, out)
        print(f"wrote {len(files)} reference-layout file(s) to {out}")
        return 0
    raise AssertionError(args.action)


_EXPORT_KEYS = ("format", "data", "out", "flow", "episodes")


def _key_values(argv: list[str]) -> list[str]:
    """``key=value`` words of ``mmrep data export`` as ``--key value`` (the Hydra apps' spelling)."""
    out = []
    for word in argv:
        key, sep, value = word.partition("=")
        out += [f"--{key}", value] if sep and key in _EXPORT_KEYS else [word]
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["policy", "export"]:
        from mmrep.formats.policy_onnx import main as policy_export

        return policy_export(argv[2:])
    if argv[:1] == ["export-encoder"]:
        from mmrep.formats.encoder_export import main as export_encoder_main

        return export_encoder_main(argv[1:])
    if argv[:2] == ["data", "export"]:
        argv = argv[:2] + _key_values(argv[2:])
    if argv[:2] == ["policy", "train"]:
        return run_app("policy", argv[2:])
    if argv[:2] == ["policy", "eval"]:
        return run_app("policy_eval", argv[2:])
    if argv and argv[0] in APPS and not argv[0].startswith("policy"):
        return run_app(argv[0], argv[1:])
    parser = argparse.ArgumentParser(prog="mmrep", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("collect", help="collect a simulated dataset (Hydra overrides follow; --help)")
    sub.add_parser("train", help="train the representation (Hydra overrides follow; --help)")
    sub.add_parser("evaluate", help="trained models under perturbation (Hydra overrides follow; --help)")
    pol = sub.add_parser("policy", help="policies on the representation")
    pol_sub = pol.add_subparsers(dest="action", required=True)
    pol_sub.add_parser("train", help="train a policy (Hydra overrides follow; --help)")
    pol_sub.add_parser("eval", help="a trained policy on held-out seeds (Hydra overrides follow; --help)")
    pol_sub.add_parser("export", help="a trained policy as ONNX, normaliser folded in (--help)")
    sub.add_parser("export-encoder", help="an encoder as safetensors + JSON or ONNX (--help)")
    data = sub.add_parser("data", help="dataset tools")
    dsub = data.add_subparsers(dest="action", required=True)
    p = dsub.add_parser("verify", help="check schema, shapes, dtypes, NaN/inf, checksums")
    p.add_argument("path")
    p = dsub.add_parser("info", help="episodes, steps, size, per-shape counts, contact and success")
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p = dsub.add_parser("export", help="write another layout: the paper's reference files, a LeRobot dataset, "
                                       "a robomimic view (docs/formats.md)")
    p.add_argument("--format", choices=["reference", "lerobot", "robomimic"], default="reference")
    p.add_argument("path", nargs="?")
    p.add_argument("out_pos", nargs="?", metavar="out")
    p.add_argument("--data", help="the dataset folder (or give it first)")
    p.add_argument("--out", help="where to write (or give it second)")
    p.add_argument("--flow", type=lambda v: v.lower() in ("1", "true", "yes"), default=True,
                   help="lerobot: include the exact optical flow (default true)")
    p.add_argument("--episodes", type=int, default=None, help="lerobot: only the first N (training first)")
    args = parser.parse_args(argv)
    try:
        return _data(args)
    except (ValueError, FileNotFoundError, FileExistsError, OSError, ImportError) as err:
        return _fail(f"data {args.action}", err)


if __name__ == "__main__":
    sys.exit(main())
