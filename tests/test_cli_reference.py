"""The README's command reference and ``--help`` name the same options, command by command.

Both sides are read for real: the README's ``### Commands`` section, and the options of
the typer app that ``customer-sync`` runs (what ``--help`` prints). Also: ``--help`` and
``--version`` answer without importing pandas or Prefect, and bad usage is one line.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from customer_sync.cli.app import COMMANDS, PROG, app, main
from customer_sync.cli.stand_in import PANEL as STAND_IN_PANEL

REPO = Path(__file__).resolve().parent.parent
OPTION = re.compile(r"`(--?[a-z][a-z0-9-]*)`")


def _readme_blocks() -> dict[str, set[str]]:
    """Options named in each ``#### `customer-sync NAME ...``` block of the reference (the
    common options under ``""``, the stand-in's fault options under ``"stand-in"``)."""
    text = (REPO / "README.md").read_text()
    reference = text.split("## Command reference", 1)[1].split("\n## ", 1)[0]
    commands = reference.split("### Commands", 1)[1]
    blocks: dict[str, set[str]] = {}
    head, *rest = re.split(r"\n#### ", commands)
    blocks[""] = {
        o for line in head.splitlines() if line.startswith("|") for o in OPTION.findall(line)
    }
    for block in rest:
        title, _, body = block.partition("\n")
        match = re.match(rf"`{PROG} ([a-z-]+)", title)
        name = match.group(1) if match else "stand-in"
        table = [line for line in body.splitlines() if line.startswith("| `")]
        blocks[name] = {option for line in table for option in OPTION.findall(line.split("|")[1])}
    return blocks


def _declared() -> dict[str, set[str]]:
    group = typer.main.get_command(app)
    context = group.make_context(PROG, ["validate"])
    declared: dict[str, set[str]] = {"": set(), "stand-in": set()}
    for parameter in group.params:
        if parameter.name != "help":
            declared[""].update(parameter.opts + parameter.secondary_opts)
    for name, _ in COMMANDS:
        command = group.get_command(context, name)  # type: ignore[attr-defined]
        declared[name] = set()
        for parameter in command.params:
            if parameter.param_type_name == "argument" or parameter.name == "help":
                continue
            panel = getattr(parameter, "rich_help_panel", None)
            target = "stand-in" if panel == STAND_IN_PANEL else name
            declared[target].update(parameter.opts + parameter.secondary_opts)
    return declared


def test_the_readme_reference_names_every_option_of_every_command() -> None:
    readme, declared = _readme_blocks(), _declared()
    assert set(readme) == set(declared)
    for name, options in declared.items():
        assert readme[name] == options, (name, readme[name] ^ options)


def test_the_check_can_fail() -> None:
    declared = _declared()
    assert "--max-absent-share" in declared["run"]
    assert "--fail-share" in declared["stand-in"] and "--fail-share" not in declared["demo"]
    assert "--latency" not in _readme_blocks()["run"]


@pytest.mark.parametrize("arguments", [["--help"], ["--version"], ["run", "--help"]])
def test_help_and_version_import_neither_pandas_nor_prefect(arguments: list[str]) -> None:
    code = (
        "import sys; from customer_sync.cli.app import main\n"
        "status = main(sys.argv[1:])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'prefect', "
        "'pyarrow', 'pandera', 'aiohttp'})\n"
        "print('HEAVY', *heavy)\nsys.exit(status)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *arguments], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rsplit("HEAVY", 1)[1].split() == []
    if arguments == ["--version"]:
        assert done.stdout.startswith(f"{PROG} ")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["run", "--no-such-option"], "customer-sync: run: No such option: --no-such-option"),
        (["run", "--batch-size", "ten"], "customer-sync: run: Invalid value for '--batch-size'"),
        (["runs", "--format", "xml"], "customer-sync: runs: Invalid value for '--format'"),
        (["no-such-command"], "customer-sync: No such command 'no-such-command'"),
        (["history"], "customer-sync: history: Missing argument 'CUSTOMER_ID'"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    arguments: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(arguments) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(expected), lines[0]
    assert lines[0].endswith("--help)")  # where to look next
    assert "Traceback" not in captured.err + captured.out


def test_bad_usage_in_a_real_process_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "customer_sync.cli.app", "validate", "--max-held-back", "lots"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("customer-sync: validate: ")
    assert done.stdout == ""


def test_the_version_printed_is_the_distributions() -> None:
    import tomllib
    from importlib.metadata import version

    import customer_sync

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert customer_sync.__version__ == declared == version("customer-sync")
