"""`customer-sync runs [RUN_ID]`: recent runs, or one run's report and batches by outcome."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from customer_sync.cli.options import State, TableFormat

RUN_COLUMNS = (
    "run_id",
    "started_at",
    "finished_at",
    "status",
    "exit_status",
    "flow_run_id",
    "read",
    "sent",
    "failed",
    "rejected",
    "unchanged",
    "held_back",
    "absent",
)


def _flat(row: dict[str, object]) -> dict[str, object]:
    counts = row.get("counts") or {}
    assert isinstance(counts, dict)
    return {
        **row,
        "read": counts.get("customers_read"),
        "sent": counts.get("customers_sent"),
        "failed": counts.get("customers_failed"),
        "rejected": counts.get("customers_rejected"),
        "unchanged": counts.get("customers_unchanged"),
        "held_back": counts.get("customers_held_back"),
        "absent": counts.get("customers_absent"),
    }


def runs(
    run_id: Annotated[
        str | None, typer.Argument(metavar="RUN_ID", help="show this run", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", help="how many runs")] = 20,
    state: State = None,
    output: TableFormat = "table",
) -> int:
    """List recent runs, or show one.

    One run: its report and its batches by outcome.
    """
    from customer_sync.cli.output import render
    from customer_sync.ledger.queries import ledger_name, run_detail, state_ledger
    from customer_sync.ledger.queries import runs as recent_runs
    from customer_sync.schemas.errors import ConfigError

    with state_ledger(state) as ledger:
        if run_id is None:
            rows = [dataclasses.asdict(r) for r in recent_runs(ledger, limit=limit)]
            if output == "json":
                print(render(rows, RUN_COLUMNS, "json", "runs"))
            else:
                print(render([_flat(r) for r in rows], RUN_COLUMNS, output, "runs"))
            return 0
        detail = run_detail(ledger, run_id)
        where = ledger_name(ledger)
    if detail is None:
        raise ConfigError(f"{where}: no run {run_id!r} in the ledger")
    data = dataclasses.asdict(detail)
    if output == "json":
        print(render([data], (), "json", "run"))
        return 0
    facts = [{"what": k, "value": v} for k, v in _flat(data["run"]).items() if k != "counts"]
    facts += [{"what": k, "value": v} for k, v in data["report"].items()]
    facts += [{"what": f"batches {k}", "value": v} for k, v in data["batches_by_state"].items()]
    facts += [
        {"what": f"customers in {k} batches", "value": v}
        for k, v in data["customers_by_state"].items()
    ]
    print(render(facts, ("what", "value"), output, f"run {run_id}"))
    if data["failed_batches"]:
        columns = ("batch_id", "state", "method", "http_status", "requestId", "customers", "error")
        print(render(data["failed_batches"], columns, output, "batches not acknowledged"))
    return 0
