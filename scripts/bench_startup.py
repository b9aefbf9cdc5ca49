"""Start-up of the CLI, timed as whole processes: what a user waits for, imports included.

Cases: ``--help``, ``--version``, ``run --help``, ``validate data/``, ``demo`` on a warm
PREFECT_HOME (its database made by an untimed first run), ``demo`` on an empty PREFECT_HOME
(a new one each run: the temporary server creates and migrates its database). Each case
runs ``--runs`` times; medians are printed (min and max show how noisy the machine was).

Variants, run in turn (A B A B ...) so a change of load hits them alike:

* ``current``: this checkout, the environment as installed (with its .pyc files);
* ``--no-bytecode``: the same, as if installed without .pyc files (``PYTHONPYCACHEPREFIX``
  pointed at an empty folder, with PYTHONDONTWRITEBYTECODE=1: every module compiled from
  source, as before ``[tool.uv] compile-bytecode``);
* ``--before DIR``: another checkout of the code (e.g. ``git archive main | tar -x -C DIR``)
  run with this environment's interpreter.

    uv run --locked python scripts/bench_startup.py [--runs 5] [--cases help,validate]
        [--no-bytecode] [--before DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "help": ["--help"],
    "version": ["--version"],
    "run-help": ["run", "--help"],
    "validate": ["validate", "data"],
    "demo-warm": ["demo", "--no-progress"],
    "demo-empty-home": ["demo", "--no-progress"],
}
TARGETS = {"help": 0.5, "version": 0.5, "validate": 3.0, "demo-warm": 8.0}
"""Wall seconds the issue asks for (issue 10 §3); demo-warm's is for ``make demo``."""


def _run(checkout: Path, args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "customer_sync.cli.app", *args],
        cwd=checkout,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode:
        failure = f"{' '.join(args)} in {checkout} failed ({done.returncode})"
        raise SystemExit(f"{failure}:\n{done.stderr[-2000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument("--no-bytecode", action="store_true", help="also time without .pyc")
    parser.add_argument("--before", type=Path, metavar="DIR", help="also time this checkout")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as scratch_name:
        scratch = Path(scratch_name)
        base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        base["PYTHONDONTWRITEBYTECODE"] = "1"
        (scratch / "home").mkdir()
        base["HOME"] = str(scratch / "home")
        variants: dict[str, tuple[Path, dict[str, str]]] = {"current": (ROOT, base)}
        if args.no_bytecode:
            (scratch / "no-pyc").mkdir()
            variants["no-bytecode"] = (
                ROOT,
                {**base, "PYTHONPYCACHEPREFIX": str(scratch / "no-pyc")},
            )
        if args.before:
            variants["before"] = (args.before.resolve(), base)

        for case in args.cases.split(","):
            walls: dict[str, list[float]] = {name: [] for name in variants}
            homes = {name: scratch / f"warm-{name}" for name in variants}
            for name, (checkout, env) in variants.items():
                if case == "demo-warm":  # the untimed first run that makes the database
                    _run(checkout, CASES[case], {**env, "PREFECT_HOME": str(homes[name])})
            for run in range(args.runs):
                for name, (checkout, env) in variants.items():
                    home = homes[name] if case != "demo-empty-home" else scratch / f"{name}-{run}"
                    walls[name].append(
                        _run(checkout, CASES[case], {**env, "PREFECT_HOME": str(home)})
                    )
            current = statistics.median(walls["current"])
            for name, values in walls.items():
                median = statistics.median(values)
                ratio = "" if name == "current" else f"  current/{name} {current / median:.2f}"
                target = TARGETS.get(case)
                verdict = f"  target {target:g} s" if target and name == "current" else ""
                spread = f"min {min(values):.2f}, max {max(values):.2f}, n {len(values)}"
                line = f"{case:16} {name:12} median {median:6.2f} s  ({spread}){ratio}{verdict}"
                print(line, flush=True)


if __name__ == "__main__":
    main()
