"""The flow run's final Prefect state, decided from the run's outcome.

Whoever watches the Prefect UI must not see green on a bad night. The rule, one line per
outcome of ``customer_sync.run.outcome``:

==============  ===========================  ============================================
outcome         Prefect state (type, name)   message
==============  ===========================  ============================================
``completed``   COMPLETED, ``Completed``     ``12,345 customers delivered ...``
``incomplete``  FAILED, ``Incomplete``       the counts: held back, rejected, still failing
``aborted``     FAILED, ``Failed``           the guard, input or configuration error
``failed``      FAILED, ``Failed``           the error that stopped the run
``interrupted`` CRASHED, ``Interrupted``     ``interrupted by the user``
==============  ===========================  ============================================

The flow returns ``final_state(result)`` at its single return point; a run stopped by an
exception (a guard, bad input, a 401) ends Failed through Prefect's own exception handling,
with the same one-line reason. ``Incomplete`` is a *named* Failed state: automations can
match every non-green end (``prefect.state-type`` FAILED or CRASHED) or this one by name
(event ``prefect.flow-run.Incomplete``).

A Completed state keeps the :class:`SyncResult` as its data (a plain call of the flow
returns it); a non-green one keeps a :class:`RunNotCompleted` carrying it, so a plain call
raises that (its message the counts, ``.result`` the numbers), and a caller that wants the
numbers of any run (the CLI) calls the flow with ``return_state=True`` and reads them with
:func:`aresult_of`.
"""

from __future__ import annotations

from typing import Any, Final

from prefect.client.schemas.objects import State, StateType

from customer_sync.run.report import SyncResult
from customer_sync.schemas.errors import CustomerSyncError

INCOMPLETE: Final = "Incomplete"
"""The name of the Failed state of a run that finished with customers not delivered."""

_STATE_OF: Final[dict[str, tuple[StateType, str]]] = {
    "completed": (StateType.COMPLETED, "Completed"),
    "incomplete": (StateType.FAILED, INCOMPLETE),
    "aborted": (StateType.FAILED, "Failed"),
    "failed": (StateType.FAILED, "Failed"),
    "interrupted": (StateType.CRASHED, "Interrupted"),
}


def state_message(result: SyncResult) -> str:
    """One line for the UI: what was delivered, and why the run is not green if it is not.

    Counts only: never an id, a value or a path that could hold card data."""
    outcome = result.outcome
    if result.dry_run:
        done = f"dry run: {result.customers_planned:,} customers planned"
    else:
        done = f"{result.customers_sent:,} customers delivered"
    counted = f"{done} of {result.customers_read:,} read"
    if outcome.ok:
        return f"{counted}; {result.customers_unchanged:,} unchanged"
    return f"{outcome.status}: {outcome.reason}; {counted}"


class RunNotCompleted(CustomerSyncError):
    """The run ended, but not green (customers held back, rejected or still failing): what a
    plain call of the flow raises. ``result`` holds the run's numbers."""

    def __init__(self, result: SyncResult) -> None:
        self.result = result
        super().__init__(state_message(result))

    @property
    def exit_status(self) -> int:  # type: ignore[override]
        return self.result.exit_status

    def __reduce__(self) -> tuple[Any, ...]:  # results may be persisted (pickled)
        return (RunNotCompleted, (self.result,))


def final_state(result: SyncResult) -> State[Any]:
    """The state a flow run ends in for ``result`` (pure: nothing is sent or written)."""
    outcome = result.outcome
    state_type, name = _STATE_OF[outcome.status]
    data: object = result if outcome.ok else RunNotCompleted(result)
    return State(type=state_type, name=name, message=state_message(result), data=data)


def is_green(state: State[Any]) -> bool:
    """Completed, and nothing else, is green."""
    return state.is_completed()


async def aresult_of(state: State[Any]) -> SyncResult:
    """The ``SyncResult`` kept on a final state; the exception that stopped the run is
    raised as itself (a guard, bad input, a 401...), as a plain flow call would."""
    data = await state.aresult(raise_on_failure=False)
    if isinstance(data, RunNotCompleted):
        return data.result
    if isinstance(data, BaseException):
        raise data
    if not isinstance(data, SyncResult):
        raise TypeError(f"the flow run's state {state.name!r} holds no SyncResult")
    return data


__all__ = [
    "INCOMPLETE",
    "RunNotCompleted",
    "aresult_of",
    "final_state",
    "is_green",
    "state_message",
]
