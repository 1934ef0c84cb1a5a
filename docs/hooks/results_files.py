"""mkdocs hook: serve the committed measurements under ``benchmarks/results/`` with the site.

The results pages show figures and link the JSON they come from; both stay where the benchmark
scripts write them (one copy, in ``benchmarks/results/``). This hook adds those files to the build
under the same path (``benchmarks/results/...`` from the site root), so a page links
``../benchmarks/results/<file>`` and ``mkdocs build --strict`` fails when a linked file is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
SERVED = {".png", ".gif", ".json", ".jsonl", ".md", ".yaml"}


def on_files(files: Files, config: Any) -> Files:
    results = ROOT / "benchmarks" / "results"
    for path in sorted(results.rglob("*")):
        if not path.is_file() or path.suffix not in SERVED or path.suffix == ".md":
            continue
        rel = path.relative_to(ROOT).as_posix()
        files.append(File.generated(config, rel, abs_src_path=str(path)))
    return files
