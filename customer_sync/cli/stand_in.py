"""The stand-in partner's fault options, declared once for ``stub-api`` and ``demo``.

``@with_stand_in_options`` adds them to a command's signature (typer reads the signature)
and hands the command one ``StubFaults`` as ``faults=`` instead of fifteen values. The
flag-to-field mapping itself is ``devtools.stub_server.faults_from_args``, which
``python -m customer_sync.devtools.stub_server`` uses too.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer

if TYPE_CHECKING:
    from customer_sync.devtools.stub_server import StubFaults

PANEL = "Stand-in partner (faults on purpose)"
_Command = TypeVar("_Command", bound=Callable[..., Any])


def _option(name: str, annotation: Any, default: Any, **declaration: Any) -> inspect.Parameter:
    declared = Annotated[annotation, typer.Option(name, rich_help_panel=PANEL, **declaration)]
    parameter_name = name.removeprefix("--").replace("-", "_")
    return inspect.Parameter(
        parameter_name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=declared
    )


STAND_IN_OPTIONS: tuple[inspect.Parameter, ...] = (
    _option("--latency", float, 0.0, metavar="SECONDS", help="added before each data answer"),
    _option("--fail-share", float, 0.0, metavar="SHARE", help="share answered 500 or 503"),
    _option(
        "--rate-limit-share", float, 0.0, metavar="SHARE", help="share answered 429 (rate limit)"
    ),
    _option("--retry-after", float, 1.0, metavar="SECONDS", help="Retry-After of those 429s"),
    _option(
        "--drop-share", float, 0.0, metavar="SHARE", help="share whose connection is just closed"
    ),
    _option("--token-lifetime", float, 3600.0, metavar="SECONDS", help="how long a session lasts"),
    _option(
        "--reject-id",
        list[str] | None,
        None,
        metavar="ID",
        help="refuse this customer with a 400 (repeat for more)",
    ),
    _option("--anonymous-errors", bool, False, help="validationErrors that name no customer"),
    _option("--redirect-to", str | None, None, metavar="URL", help="redirect data requests there"),
    _option(
        "--redirect-status",
        Literal[301, 302, 303, 307, 308],
        307,
        help="the status of those redirects",
    ),
    _option("--redirect-session-to", str | None, None, metavar="URL", help="redirect startSession"),
    _option("--echo-errors", bool, False, help="400s that echo the request back"),
    _option(
        "--ok-with-errors-id",
        list[str] | None,
        None,
        metavar="ID",
        help="answer 200 with validationErrors naming this customer (repeat for more)",
    ),
    _option("--expiry-as-500", bool, False, help="an expired session answers HTTP 500"),
    _option("--jwt-tokens", bool, False, help="JWT-shaped session tokens"),
)
_NAMES = tuple(parameter.name for parameter in STAND_IN_OPTIONS)


def stand_in_faults(values: dict[str, Any]) -> StubFaults:
    """The ``StubFaults`` the stand-in options ask for (``values`` by parameter name)."""
    from customer_sync.devtools.stub_server import faults_from_args
    from customer_sync.schemas.errors import ConfigError

    chosen = {name: values[name] for name in _NAMES}
    chosen["reject_id"] = chosen["reject_id"] or []
    chosen["ok_with_errors_id"] = chosen["ok_with_errors_id"] or []
    try:
        return faults_from_args(SimpleNamespace(**chosen))  # type: ignore[arg-type]
    except ValueError as error:
        raise ConfigError(str(error)) from None


def with_stand_in_options(command: _Command) -> _Command:
    """``command`` with the stand-in's options added; it receives them as ``faults``."""
    signature = inspect.signature(command)
    own = [
        p.replace(annotation=eval(p.annotation, command.__globals__))  # noqa: S307
        if isinstance(p.annotation, str)
        else p
        for p in signature.parameters.values()
        if p.name != "faults"  # its type may be imported for type checkers only
    ]

    @functools.wraps(command)
    def wrapper(**values: Any) -> Any:
        faults = stand_in_faults(values)
        for name in _NAMES:
            del values[name]
        return command(**values, faults=faults)

    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*own, *STAND_IN_OPTIONS], return_annotation=int
    )
    wrapper.__annotations__ = {}  # typer takes the types from the signature above
    return wrapper  # type: ignore[return-value]
