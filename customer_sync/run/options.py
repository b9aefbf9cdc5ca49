"""The run's options, declared once: ``SyncOptions``, typed, bounded and described.

One model for every way a run starts: the CLI builds it from its flags, a notebook writes
``SyncOptions(source="data/", dry_run="out/")``, the deployed flow builds it from its
parameters. It is validated once, when it is built (batch size 1-50, concurrency at least
1, shares in 0-1, ...), and each field's ``description`` is its help text.

The deployed flow takes the options as six groups (``ExtractOptions``, ``PartnerOptions``,
...), one parameter each, so the Prefect UI shows six short, typed forms and the server
refuses a run whose parameters break a bound (``batch_size=51``) at submission. The groups
are the source of truth: ``SyncOptions`` is all of them at once (it inherits their fields),
so no option is written twice. A run's parameters replace a deployment's default one
*group* at a time (Prefect merges the top level only): override ``extract`` to point one
run at another folder, and the ``partner`` and ``state`` defaults stay.

Hooks for tests and the terminal (a retry policy, the progress display) are not options:
they never reach Prefect's parameters (``run_hooks``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from customer_sync.adapters.delivery import RetryPolicy
from customer_sync.chunking.shards import Shard
from customer_sync.schemas.contract import MAX_CUSTOMERS_PER_REQUEST
from customer_sync.schemas.errors import ConfigError

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class ExtractOptions(BaseModel):
    """Where tonight's extract is."""

    model_config = _FROZEN

    source: str | None = Field(
        None,
        description="Folder or fsspec URL holding customers, accounts and cards "
        "(.csv or .parquet). Or give the three files below.",
    )
    customers: str | None = Field(None, description="The customers file (instead of source).")
    accounts: str | None = Field(None, description="The accounts file (instead of source).")
    cards: str | None = Field(None, description="The cards file (instead of source).")
    rename: dict[str, Any] | None = Field(
        None,
        description="Column renames: {table: {their name: our name}} or {their name: our name}.",
    )
    landing_date: dt.date | None = Field(
        None,
        description="The date a {date} (or {date:%Y%m%d}) in source stands for: "
        "/landing/{date} reads /landing/2026-11-25. Default: the day the run was "
        "scheduled for (UTC).",
    )
    wait_for_files_seconds: float = Field(
        0.0,
        ge=0.0,
        le=86_400.0,
        description="Wait at most this many seconds for the files to land in source "
        "before giving up (0: look once).",
    )


class PartnerOptions(BaseModel):
    """The partner and how hard it is pressed."""

    model_config = _FROZEN

    api_url: str | None = Field(
        None,
        description="The partner's base URL (else $CUSTOMER_SYNC_API_URL). Never with "
        "user:password@: the token comes from CUSTOMER_SYNC_API_TOKEN or a Secret block.",
    )
    batch_size: int = Field(
        MAX_CUSTOMERS_PER_REQUEST,
        ge=1,
        le=MAX_CUSTOMERS_PER_REQUEST,
        description="Customers per request (the partner takes at most 50).",
    )
    concurrency: int = Field(8, ge=1, description="Requests in flight at once.")


class StateOptions(BaseModel):
    """The ledger, the run's report, and how long history is kept."""

    model_config = _FROZEN

    state_dir: str | None = Field(
        None,
        description="The ledger's folder, or a postgresql:// URL (else "
        "$CUSTOMER_SYNC_STATE_DIR or $CUSTOMER_SYNC_LEDGER_URL, else ./.state). It must "
        "survive between runs: it is what makes a run send only what changed.",
    )
    report: str | None = Field(
        None, description="Where to write the run's JSON report (else in the run's folder)."
    )
    wait: float | None = Field(
        0.0,
        ge=0.0,
        description="While another run delivers from the same ledger: refuse at once (0), "
        "wait at most this many seconds, or (null) until it ends.",
    )
    acknowledgement_retention_days: int = Field(
        400,
        ge=1,
        description="Days of acknowledgement history kept (each customer's last one always is).",
    )


class RunOptions(BaseModel):
    """What the run does with the changes it finds."""

    model_config = _FROZEN

    mode: Literal["sync", "create-only"] = Field(
        "sync", description="sync: create and update; create-only: never update."
    )
    full_refresh: bool = Field(
        False, description="Send every valid customer, changed or not (PUT for known ones)."
    )
    dry_run: str | None = Field(
        None,
        description="Send nothing: write each planned request body to this folder instead.",
    )
    retry_outage: bool = Field(
        False,
        description="When customers still fail after their batch retries (the partner "
        "looks down), fail the run so Prefect retries it; a retry sends only what was not "
        "acknowledged.",
    )
    end_enrollment_of_absent: bool = Field(
        False,
        description="Send the customers the partner holds that the extract lacks their last "
        "acknowledged tree with enrollment ended (INACTIVE, enrollmentEndDate). Keeps the "
        "planned documents (card data) in the ledger while on; not with stream.",
    )


class GuardOptions(BaseModel):
    """The guards that stop a broken export before it is sent."""

    model_config = _FROZEN

    max_held_back_share: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Stop when more than this share of the customers is held back (0-1).",
    )
    max_update_share: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Stop when more than this share of the known customers changed (0-1).",
    )
    allow_mass_update: bool = Field(
        False, description="Send a mass update the update guard would stop."
    )
    max_absent_share: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Stop when more than this share of the customers the partner holds is "
        "absent from the extract (0-1).",
    )
    allow_absent: bool = Field(False, description="Send although the absent guard would stop.")


class ChunkOptions(BaseModel):
    """How the extract is split: chunk size, streaming, and this run's shard."""

    model_config = _FROZEN

    chunk_customers: int | None = Field(
        None,
        ge=1,
        description="Prepare in chunks of about this many customers (default: whole up to "
        "150,000, else 50,000).",
    )
    stream: bool = Field(
        False,
        description="Deliver each chunk while the next ones are prepared; the guards are "
        "checked on the running totals (a trip stops what is not yet sent).",
    )
    shard: str | None = Field(
        None,
        description='Prepare and send only this share of the chunks: "N/M" (e.g. "2/3").',
    )

    @field_validator("shard")
    @classmethod
    def _shard_is_n_of_m(cls, shard: str | None) -> str | None:
        if shard is not None:
            try:
                Shard.parse(shard)
            except ConfigError as error:
                raise ValueError(str(error)) from None
        return shard


GROUPS: dict[str, type[BaseModel]] = {
    "extract": ExtractOptions,
    "partner": PartnerOptions,
    "state": StateOptions,
    "run": RunOptions,
    "guards": GuardOptions,
    "chunks": ChunkOptions,
}
"""The deployed flow's parameters: one per group, in this order."""


class SyncOptions(
    ExtractOptions, PartnerOptions, StateOptions, RunOptions, GuardOptions, ChunkOptions
):
    """Every option of a run, flat: ``SyncOptions(source="data/", batch_size=25)``."""

    model_config = _FROZEN

    @classmethod
    def build(cls, **values: Any) -> SyncOptions:
        """Like the constructor, but a refused value is one ``ConfigError`` line (field
        and rule; never the value, which may be a URL with credentials)."""
        try:
            return cls(**values)
        except ValidationError as error:
            raise ConfigError(describe_refusal(error)) from None

    @classmethod
    def from_groups(cls, **groups: BaseModel | dict[str, Any] | None) -> SyncOptions:
        """The options from the flow's group parameters (a group left out: its defaults)."""
        unknown = set(groups) - set(GROUPS)
        if unknown:
            raise ConfigError(f"unknown option groups: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, group in groups.items():
            if group is None:
                continue
            given = group if isinstance(group, BaseModel) else GROUPS[name].model_validate(group)
            values.update(given.model_dump())
        return cls.build(**values)

    def groups(self) -> dict[str, BaseModel]:
        """The options as the deployed flow's parameters (``sync_customers(**groups())``)."""
        return {
            name: group.model_validate(self.model_dump(include=set(group.model_fields)))
            for name, group in GROUPS.items()
        }


def describe_refusal(error: ValidationError) -> str:
    """The first refused field and its rule, on one line."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "options"
    rule = first["msg"].removeprefix("Value error, ")
    return f"option {where}: {rule}" + (
        f" ({len(error.errors()) - 1} more refused)" if len(error.errors()) > 1 else ""
    )


@dataclass(frozen=True)
class RunHooks:
    """What tests and the terminal give a run beside its options: never a parameter."""

    retry_policy: RetryPolicy | None = None
    """The per-batch retries (tests use fast ones); None: ``RetryPolicy()``."""
    progress: bool | None = None
    """The terminal progress display: on, off, or (None) when stderr is a terminal."""


_HOOKS: ContextVar[RunHooks | None] = ContextVar("customer_sync_run_hooks", default=None)


@contextlib.contextmanager
def run_hooks(
    *, retry_policy: RetryPolicy | None = None, progress: bool | None = None
) -> Iterator[RunHooks]:
    """Runs started inside this block (in this thread or task) use these hooks."""
    hooks = RunHooks(retry_policy=retry_policy, progress=progress)
    token = _HOOKS.set(hooks)
    try:
        yield hooks
    finally:
        _HOOKS.reset(token)


def current_hooks() -> RunHooks:
    """The hooks of the ``run_hooks`` block this runs in; outside one, none."""
    return _HOOKS.get() or RunHooks()


__all__ = [
    "GROUPS",
    "ChunkOptions",
    "ExtractOptions",
    "GuardOptions",
    "PartnerOptions",
    "RunHooks",
    "RunOptions",
    "StateOptions",
    "SyncOptions",
    "current_hooks",
    "describe_refusal",
    "run_hooks",
]
