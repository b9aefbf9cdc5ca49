"""The Python entry points a notebook or a script uses: ``validate``, ``plan``, ``sync``, and
the morning-after questions ``runs`` and ``history``.

``from customer_sync import validate, plan, sync`` imports this module only when one of
them is first used, so ``import customer_sync`` stays cheap (no pandas, no Prefect).
``sync`` puts Prefect's settings in place (``configure_prefect``) before Prefect is imported.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from customer_sync.ledger.queries import RunRow, SendRow
    from customer_sync.run.planning import CustomerPlan
    from customer_sync.run.report import SyncResult
    from customer_sync.transforms.validate import Validation

_T = TypeVar("_T")
PathText = str | os.PathLike[str]


def validate(
    source: PathText | None = None,
    *,
    customers: PathText | None = None,
    accounts: PathText | None = None,
    cards: PathText | None = None,
    rename: Mapping[str, Any] | None = None,
) -> Validation:
    """Read and check an extract (a folder, or three explicit files); nothing is sent.

    The result's ``rejects`` and ``held_back`` frames say what failed and which customers
    are held back; ``summary()`` gives the counts.
    """
    from customer_sync.adapters.readers import read_extract
    from customer_sync.transforms.validate import validate_extract

    extract = read_extract(
        source,
        customers=customers,
        accounts=accounts,
        cards=cards,
        rename=dict(rename) if rename else None,
    )
    return validate_extract(extract)


def plan(
    source: PathText | None = None,
    *,
    state: PathText | None = None,
    customers: PathText | None = None,
    accounts: PathText | None = None,
    cards: PathText | None = None,
    rename: Mapping[str, Any] | None = None,
    full_refresh: bool = False,
    mode: str = "sync",
) -> CustomerPlan:
    """What a run would do with each customer, and what changed (read-only; sends nothing).

    ``state``: the ledger, a folder or a ``postgresql://`` URL (default as the CLI's
    ``--state``). ``.to_pandas()`` gives one row per customer.
    """
    from customer_sync.run.planning import plan_extract, planning_ledger

    with planning_ledger(state) as ledger:
        return plan_extract(
            None if source is None else os.fspath(source),
            ledger,
            customers=_text(customers),
            accounts=_text(accounts),
            cards=_text(cards),
            rename=rename,
            full_refresh=full_refresh,
            mode=mode,
        )


def sync(
    source: PathText | None = None, *, state: PathText | None = None, **options: Any
) -> SyncResult:
    """Run the ``sync-customers`` flow and return its result (``.to_pandas()``,
    ``.batches_frame()``). ``options`` are ``SyncOptions``' fields (``api_url``,
    ``dry_run``, ``batch_size``, ...; ``customer_sync/run/options.py``) and the hooks
    ``progress`` and ``retry_policy``. Works inside a notebook's running event loop too
    (the flow then runs on a thread of its own)."""
    from customer_sync.flows.prefect_setup import configure_prefect

    configure_prefect()
    from customer_sync.flows.sync import run_sync
    from customer_sync.run.options import SyncOptions

    hooks = {name: options.pop(name) for name in ("progress", "retry_policy") if name in options}
    if state is not None:
        options["state_dir"] = os.fspath(state)
    built = SyncOptions.build(source=_text(source), **options)
    return _run_to_end(run_sync(built, **hooks))


def runs(*, state: PathText | None = None, limit: int | None = 20) -> list[RunRow]:
    """The most recent runs in the ledger, newest first."""
    from customer_sync.ledger.queries import runs as ledger_runs
    from customer_sync.ledger.queries import state_ledger

    with state_ledger(state) as ledger:
        return ledger_runs(ledger, limit)


def history(customer_id: str, *, state: PathText | None = None) -> list[SendRow]:
    """Every send of one customer, oldest first (no document content)."""
    from customer_sync.ledger.queries import history as ledger_history
    from customer_sync.ledger.queries import state_ledger

    with state_ledger(state) as ledger:
        return ledger_history(ledger, customer_id)


def _text(path: PathText | None) -> str | None:
    return None if path is None else os.fspath(path)


def _run_to_end(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` to its end: here, or on a thread when a loop is running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
