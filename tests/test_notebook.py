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
from tests.test_morning_after import _OURS

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
    "night": {"update": night_plan.counts["update"], "absent": night_plan.counts["absent"],
              "unchanged": night_plan.counts["unchanged"], "rejected": night.customers_rejected},
    "work_left": WORK.exists(),
}))
"""


def test_the_stored_notebook_shows_its_outputs_and_no_card_data() -> None:
    """Stored with its outputs (scripts/execute_notebook.py), none of them card data."""
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count for cell in code)
    assert not [out for cell in code for out in cell.outputs if out.output_type == "error"]
    _check_what_the_reader_sees(notebook)


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

    _check_what_the_reader_sees(notebook, without_last=1)
    assert probe["night"] == {"update": 3, "absent": 1, "unchanged": 32, "rejected": 1}


def _check_what_the_reader_sees(notebook: Any, without_last: int = 0) -> None:
    """The plan, the refusals and one customer's history are shown; no postal code, last4 or
    iin of the sample (nor the card number the notebook plants) in any output."""
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    code = code[: len(code) - without_last]  # the test's probe cell is not the reader's
    plan = _text(_tagged(notebook, "plan"))
    assert "account ACC-0000000006-01: status OPEN→CLOSED" in plan
    assert "(holder C0000000004, opened 2024-08-28T13:30:53Z): closed" in plan
    assert "postal code or card number (last4/iin): changed" in plan
    assert "C0000000036" in plan and "absent" in plan
    assert "CustomerPlan(36 customers: 3 update, 32 unchanged, 1 absent)" in _text(
        _tagged(notebook, "plan-summary")
    )
    assert _text(_tagged(notebook, "refusals")).strip()
    history = _text(_tagged(notebook, "history"))
    assert "POST" in history and "PUT" in history and "rejected" in history
    assert "dead-letter retry" in _text(_tagged(notebook, "plan-after"))
    assert _text(_tagged(notebook, "api-validate")).startswith("Validation(36 customers read")

    # no card data and no postal code anywhere in the outputs, logs included
    shown = "\n".join(_text(cell) for cell in code)
    leaks = [value for value in _sensitive_values() if _occurs(value, shown)]
    assert not leaks, f"{len(leaks)} sensitive value(s) appear in the notebook's outputs"
    assert not re.search(r"""['"]?(last4|iin|postalCode)['"]?\s*[:=]\s*['"]?\d""", shown)
    # last4 values are 4 digits like years and byte counts: checked in the cells after the
    # preview (ids, statuses, dates), with dates, times and ids taken out first
    later = code[next(i for i, c in enumerate(code) if "api-validate" in _tags(c)) :]
    scrubbed = _OURS.sub(" ", "\n".join(_text(cell) for cell in later))
    last4s = [v for v in _column("cards", "last4") if _occurs(v, scrubbed)]
    planted = str(9999 - int(_column("cards", "last4")[0])).zfill(4)
    assert not last4s and not _occurs(planted, scrubbed)


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


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


def _column(table: str, name: str) -> list[str]:
    import pandas as pd

    frame = pd.read_csv(SAMPLE_DATA / f"{table}.csv", dtype=str, keep_default_na=False)
    return [value for value in frame[name] if value]


def _sensitive_values() -> set[str]:
    """Every iin and postal code of the sample, and the truncated iin the notebook plants."""
    iins = _column("cards", "iin")
    return {*iins, *(iin[:5] for iin in iins), *_column("customers", "postalCode")}


def _occurs(value: str, text: str) -> bool:
    """``value`` as a token of its own (not inside a longer number, id or hash)."""
    return re.search(rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])", text) is not None
