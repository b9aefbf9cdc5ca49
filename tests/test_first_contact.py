"""A fresh machine works the first time: the CLI as a real process, with an empty home.

No Prefect test harness here: the command starts Prefect's temporary API server itself, on
a new, empty PREFECT_HOME (its database created and migrated on the spot), as on a user's
first run after installing the wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
# the start-up of a first run on a loaded 2-core machine (27 s seen for the migration alone)
FIRST_RUN_SECONDS = 280


def _fresh_environment(home: Path, prefect_home: Path) -> dict[str, str]:
    """The caller's environment minus every Prefect setting, with new, empty homes."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    env.update(HOME=str(home), PREFECT_HOME=str(prefect_home))
    return env


def _customer_sync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "customer_sync.cli.app", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=FIRST_RUN_SECONDS,
        check=False,
    )


def test_demo_runs_first_time_on_an_empty_prefect_home(tmp_path: Path) -> None:
    home, prefect_home = tmp_path / "home", tmp_path / "prefect-home"
    home.mkdir()
    prefect_home.mkdir()

    done = _customer_sync(_fresh_environment(home, prefect_home), "demo", "--no-progress")

    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Traceback" not in output
    assert "customers: 36 read, 36 valid, 0 held back" in done.stdout
    assert "delivered: 36 sent (36 created, 0 updated)" in done.stdout
    assert "counts reconcile" in done.stdout
    assert "the stand-in partner accepted 36 customers" in done.stdout
    assert (prefect_home / "prefect.db").is_file()  # the first migration did happen here


def test_a_server_that_cannot_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # Injected fault: PREFECT_HOME below a regular file, so the server cannot create its
    # database (deterministic, even for root) and exits before it answers.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    home = tmp_path / "home"
    home.mkdir()
    env = _fresh_environment(home, blocker / "prefect-home")

    done = _customer_sync(env, "demo", "--no-progress")

    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("customer-sync:")]
    assert len(errors) == 1, done.stderr
    assert "Prefect's temporary API server exited" in errors[0]
    assert str(blocker / "prefect-home") in errors[0]
    log = Path(errors[0].split("see its output in ")[1].split(";")[0])
    assert log.stat().st_mode & 0o777 == 0o600  # may hold the server's errors: owner only
    assert "unable to open database file" in log.read_text()
    log.unlink()
    assert "delivered:" not in done.stdout  # nothing was sent


def test_importing_the_package_changes_no_environment() -> None:
    code = (
        "import os; before = dict(os.environ); import customer_sync.cli.app, customer_sync.flows; "
        "import customer_sync.flows.prefect_setup; "
        "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())"
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("command", "must_not_import"),
    [
        (["--help"], ("pandas", "pyarrow", "prefect", "pandera")),
        (["validate", "data"], ("prefect",)),
        (["stub-api", "--help"], ("pandas", "pyarrow", "prefect", "pandera")),
    ],
)
def test_a_command_imports_only_what_it_needs(
    command: list[str], must_not_import: tuple[str, ...]
) -> None:
    code = (
        "import sys; from customer_sync.cli.app import main\n"
        "try:\n    status = main(sys.argv[1:])\nexcept SystemExit as end:\n"
        "    status = end.code\n"
        "print('IMPORTED', *sorted({m.split('.')[0] for m in sys.modules}))\n"
        "sys.exit(status)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *command], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    imported = set(done.stdout.split("IMPORTED", 1)[1].split())
    assert not imported & set(must_not_import)


def test_chunk_workers_import_no_prefect() -> None:
    code = "import sys, customer_sync.chunking.pool; sys.exit('prefect' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_an_api_url_the_user_configured_is_never_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from customer_sync.flows.prefect_setup import needs_temporary_server

    monkeypatch.chdir(tmp_path)
    for name in ("PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    assert needs_temporary_server()  # an empty home: Prefect would start its own

    (tmp_path / "prefect-home").mkdir()
    (tmp_path / "prefect-home" / "profiles.toml").write_text(
        'active = "local"\n[profiles.local]\nPREFECT_API_URL = "http://127.0.0.1:4200/api"\n'
    )
    assert not needs_temporary_server()  # the profile's server, not ours

    (tmp_path / "prefect-home" / "profiles.toml").unlink()
    (tmp_path / ".env").write_text("PREFECT_API_URL=http://127.0.0.1:4200/api\n")
    assert not needs_temporary_server()

    (tmp_path / ".env").unlink()
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert not needs_temporary_server()
