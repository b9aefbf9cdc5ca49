"""Environment variables: read through ``customer_sync.settings``, never changed by an import.

Importing any module of the package (Prefect and the flows included) must leave
``os.environ`` exactly as it was: Prefect reads its settings once, and a changed variable
would silently reach every later import and every child process. Checked in a fresh
interpreter, so nothing was imported before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from customer_sync.settings import Settings

_IMPORT_EVERYTHING = """
import importlib, json, os, pkgutil, sys
import customer_sync
before = dict(os.environ)
names = sorted(
    m.name for m in pkgutil.walk_packages(customer_sync.__path__, "customer_sync.")
    if not m.name.endswith("__main__")
)
for name in names:
    importlib.import_module(name)
after = dict(os.environ)
changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
print(json.dumps({"modules": len(names), "changed": changed}))
"""


def test_importing_every_module_leaves_the_environment_unchanged(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CUSTOMER_SYNC"))}
    env["HOME"] = str(tmp_path)  # a fresh HOME: no ~/.prefect
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["modules"] > 80  # every module, not an empty walk
    assert found["changed"] == []


def test_settings_are_read_once_from_the_environment_given() -> None:
    settings = Settings.from_environment(
        {
            "CUSTOMER_SYNC_LEDGER_URL": "postgresql://sync@db/ledger",
            "CUSTOMER_SYNC_STATE_DIR": "",  # empty reads as unset
            "CUSTOMER_SYNC_API_TOKEN": "very-secret",
            "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
        }
    )
    assert settings.ledger_url == "postgresql://sync@db/ledger"
    assert settings.state_dir is None and settings.work_dir is None
    assert settings.api_token == "very-secret"
    assert "very-secret" not in repr(settings)
    assert settings.prefect_ephemeral == "false"
    assert Settings.from_environment({}).prefect_ephemeral == "true"
