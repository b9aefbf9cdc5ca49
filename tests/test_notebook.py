"""The example notebook runs top to bottom, shows what it promises, and never shows card data.

The kernel is this test's own interpreter: a kernelspec with ``sys.executable`` is installed
into a temporary prefix and found through ``JUPYTER_PATH``, so neither a global ``python3``
kernel nor its absence matters. The kernel gets its environment explicitly: conftest's private
``PREFECT_HOME`` and the session's Prefect test server as ``PREFECT_API_URL`` (so the flow
does not start a temporary server of its own inside the kernel).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, SAMPLE_DATA

NOTEBOOK = REPO / "notebooks" / "explore.ipynb"
KERNEL_NAME = "customer-sync-notebook-test"
CELL_TIMEOUT = 240

# Appended to the executed copy only: reports the notebook's own variables as JSON.
PROBE = """
import json as _json
print("PROBE" + _json.dumps({
    "planted": sorted(PLANTED),
    "held_back": sorted(broken.held_back["sourceCustomerId"]),
    "customers_held_back": broken.customers_held_back,
    "clean_held_back": validation.customers_held_back,
    "documents": len(documents),
    "batches": [len(b.customer_ids) for b in batches],
    "dry_run": {"planned": dry.customers_planned, "sent": dry.customers_sent,
                "reconciles": dry.reconciles, "files": [p.name for p in bodies]},
    "first_run": {"sent": first_run.customers_sent, "failed": first_run.customers_failed,
                  "reconciles": first_run.reconciles},
    "second_run": {"sent": second_run.customers_sent,
                   "unchanged": second_run.customers_unchanged},
    "stub_unique": stub_stats["customers_unique"],
    "work_left": WORK.exists(),
}))
"""


def test_notebook_is_committed_without_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_notebook_runs_and_shows_no_card_data(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    import prefect.settings
    from ipykernel.kernelspec import install
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    # a kernelspec for THIS interpreter, in a private prefix
    install(kernel_name=KERNEL_NAME, prefix=str(tmp_path / "jupyter-prefix"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter-prefix" / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    assert Path(spec.argv[0]) == Path(sys.executable), spec.argv

    env = dict(os.environ)
    env["PREFECT_API_URL"] = str(prefect.settings.PREFECT_API_URL.value())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("CUSTOMER_SYNC_API_URL", None)
    env.pop("CUSTOMER_SYNC_API_TOKEN", None)
    assert env["PREFECT_HOME"]  # conftest's private one

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT,
        startup_timeout=120,
        resources={"metadata": {"path": str(REPO)}},  # the kernel's cwd
    )
    client.execute(env=env)  # raises CellExecutionError on the first failing cell

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)
    assert not [out for cell in code for out in cell.outputs if out.output_type == "error"]

    probe = json.loads(_text(code[-1]).split("PROBE", 1)[1])
    assert probe["clean_held_back"] == 0
    assert probe["held_back"] == probe["planted"]
    assert probe["customers_held_back"] == 3
    assert probe["documents"] == 36
    assert probe["batches"] == [36]
    assert probe["dry_run"] == {
        "planned": 36,
        "sent": 0,
        "reconciles": True,
        "files": ["000001-POST.json"],
    }
    assert probe["first_run"] == {"sent": 36, "failed": 0, "reconciles": True}
    assert probe["second_run"] == {"sent": 0, "unchanged": 36}
    assert probe["stub_unique"] == 36
    assert probe["work_left"] is False  # the dry-run bodies (card data) were removed

    # what the reader sees
    held_back = _text(_tagged(notebook, "held-back"))
    for customer in probe["planted"]:
        assert customer in held_back
    rejects = _text(_tagged(notebook, "rejects"))
    assert "orphan_card" in rejects and "allowed_values" in rejects and "iin" in rejects
    preview = _text(_tagged(notebook, "preview"))
    assert '"sourceCustomerId": "C0000000002"' in preview
    assert '"last4": "***"' in preview and '"iin": "***"' in preview
    assert '"postalCode": "***"' in preview
    assert "C0000000001" in _text(_tagged(notebook, "first-batch"))
    assert "000001-POST.json" in _text(_tagged(notebook, "dry-run-files"))

    # no card data and no postal code anywhere in the outputs, logs included
    shown = "\n".join(_text(cell) for cell in code[:-1])
    leaks = [value for value in _sensitive_values() if _occurs(value, shown)]
    assert not leaks, f"{len(leaks)} sensitive value(s) appear in the notebook's outputs"
    assert not re.search(r"""['"]?(last4|iin|postalCode)['"]?\s*[:=]\s*['"]?\d""", shown)


def _tagged(notebook: Any, tag: str) -> Any:
    (cell,) = [c for c in notebook.cells if tag in c.get("metadata", {}).get("tags", [])]
    return cell


def _text(cell: Any) -> str:
    """Everything a cell showed: streams, results and displays (text and HTML)."""
    parts: list[str] = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.extend(str(value) for value in output.data.values())
        elif output.output_type == "error":
            parts.append("\n".join(output.traceback))
    return "\n".join(parts)


def _sensitive_values() -> set[str]:
    """Every iin and postal code of the sample, and the truncated iin the notebook plants."""
    import pandas as pd

    def column(table: str, name: str) -> list[str]:
        frame = pd.read_csv(SAMPLE_DATA / f"{table}.csv", dtype=str, keep_default_na=False)
        return [value for value in frame[name] if value]

    iins = column("cards", "iin")
    return {*iins, *(iin[:5] for iin in iins), *column("customers", "postalCode")}


def _occurs(value: str, text: str) -> bool:
    """``value`` as a token of its own (not inside a longer number, id or hash)."""
    return re.search(rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])", text) is not None
