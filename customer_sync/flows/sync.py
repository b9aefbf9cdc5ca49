"""The ``sync-customers`` flow: read, validate, nest, plan, deliver, report.

One run, in order (docs/ARCHITECTURE.md tells the same story with its hops):

1. ``sync_customers`` (the Prefect flow) builds one ``SyncOptions`` from its parameters;
2. ``sync_with_options`` checks the configuration before the extract is looked at;
3. ``_sync`` opens a ``RunSession`` (ledger, delivery lock, run row; report on the way
   out), and runs ``prepare_and_deliver``: the one loop over prepared chunks, whose
   policy says when the guards gate delivery (``run/chunk_loop.py``);
4. the session closes the run: dead letters, report, ledger row, summary.

Call it from a notebook as ``await run_sync(SyncOptions(source=...))``; it returns a
:class:`~customer_sync.run.report.SyncResult`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State

from customer_sync.adapters.delivery import RetryPolicy
from customer_sync.adapters.partner_client import PartnerSettings
from customer_sync.adapters.urls import without_user_info
from customer_sync.chunking.partitioner import DEFAULT_CHUNK_CUSTOMERS
from customer_sync.chunking.pool import WHOLE_CUSTOMERS
from customer_sync.chunking.shards import Shard
from customer_sync.flows import quiet_errors
from customer_sync.flows.deliver import ChunkDelivery, check_dry_run_folder, write_dry_run
from customer_sync.flows.landing import (
    dated_source,
    has_date_template,
    landing_day,
    source_label,
    wait_for_landing,
)
from customer_sync.flows.prepare import ChunkLayout, Preparation, SourceSpec, chunk_layout
from customer_sync.flows.run_retries import (
    RUN_RETRIES,
    RUN_RETRY_DELAY_SECONDS,
    PartnerUnavailable,
    stop_run_retries,
    worth_a_run_retry,
)
from customer_sync.flows.secrets import apartner_token_from_block
from customer_sync.flows.states import aresult_of, final_state
from customer_sync.run.absent import judge_absent
from customer_sync.run.chunk_loop import (
    ChunkReady,
    GatePolicy,
    GuardsFirst,
    Streaming,
    prepare_and_deliver,
)
from customer_sync.run.config_check import check_configuration, state_folder
from customer_sync.run.enrollment import end_enrollment_of_absent
from customer_sync.run.guards import run_guards, warn_absent_after_stream
from customer_sync.run.options import (
    ChunkOptions,
    ExtractOptions,
    GuardOptions,
    PartnerOptions,
    RunHooks,
    RunOptions,
    StateOptions,
    SyncOptions,
    current_hooks,
    run_hooks,
)
from customer_sync.run.outcome import apply_outcomes, apply_preparation
from customer_sync.run.planning import absent_plan_rows, customer_plan, write_plan
from customer_sync.run.report import SyncResult, write_stopped_report
from customer_sync.run.session import DeliveryClaim, RunSession
from customer_sync.schemas.errors import ConfigError, CustomerSyncError
from customer_sync.schemas.records import BatchOutcome
from customer_sync.transforms.plan import absent_guard

log = logging.getLogger(__name__)


def sync_run_name() -> str:
    """The flow run's name, for what it delivers: ``sync-<landing date>-<source>``
    (``sync-2026-11-25-landing``), ``-dry-run`` and ``-shard-N-of-M`` when so."""
    from prefect.runtime import flow_run

    def option(group: str, name: str) -> Any:
        given = flow_run.parameters.get(group)
        if isinstance(given, Mapping):
            return given.get(name)
        return getattr(given, name, None)

    source = option("extract", "source")
    try:
        day = landing_day(option("extract", "landing_date"))
    except CustomerSyncError:  # the run itself says what is wrong with it
        day = landing_day(None)
    name = f"sync-{day.isoformat()}-{source_label(source if isinstance(source, str) else None)}"
    if option("run", "dry_run"):
        name += "-dry-run"
    shard = option("chunks", "shard")
    if isinstance(shard, str) and "/" in shard:
        number, _, total = shard.partition("/")
        name += f"-shard-{number.strip()}-of-{total.strip()}"
    return name


@flow(
    name="sync-customers",
    flow_run_name=sync_run_name,
    log_prints=False,
    validate_parameters=True,
    retries=RUN_RETRIES,
    retry_delay_seconds=RUN_RETRY_DELAY_SECONDS,
)
async def sync_customers(
    extract: ExtractOptions = ExtractOptions(),  # noqa: B008  # frozen: shared safely
    partner: PartnerOptions = PartnerOptions(),  # noqa: B008
    state: StateOptions = StateOptions(),  # noqa: B008
    run: RunOptions = RunOptions(),  # noqa: B008
    guards: GuardOptions = GuardOptions(),  # noqa: B008
    chunks: ChunkOptions = ChunkOptions(),  # noqa: B008
) -> State[Any]:
    """Deliver every valid customer of an extract to the partner, exactly once per change.

    The run ends Completed only when every valid customer was delivered; otherwise its
    state is non-green with the counts in its message (``customer_sync/flows/states.py``).
    A plain call returns the ``SyncResult`` of a completed run and raises
    ``RunNotCompleted`` (``.result``) for an incomplete one; ``run_sync`` returns it
    either way.

    The parameters are the groups of ``SyncOptions`` (``customer_sync/run/options.py``,
    where every option is described); call it as
    ``sync_customers(**SyncOptions(source=...).groups())`` or through ``run_sync``.

    Args:
        extract: Where the extract is: a folder or URL, or three files, and column renames.
        partner: The partner's URL, customers per request (1-50), requests in flight.
        state: The ledger's folder or URL, the report's path, the wait for another run's
            delivery lock, and how long acknowledgement history is kept.
        run: sync or create-only, full refresh, dry run, and whether a partner outage
            fails the run so that Prefect retries it.
        guards: The held-back, mass-update and absent guards' limits.
        chunks: Chunk size, streaming, and this run's shard ("N/M").
    """
    quiet_errors.install()
    try:
        options = SyncOptions.from_groups(
            extract=extract, partner=partner, state=state, run=run, guards=guards, chunks=chunks
        )
    except CustomerSyncError as error:
        write_stopped_report(state.report, error)
        await stop_run_retries()
        raise
    result = await sync_with_options(options, current_hooks())
    return final_state(result)  # the one return: Completed only when all was delivered


async def run_sync(
    options: SyncOptions,
    *,
    retry_policy: RetryPolicy | None = None,
    progress: bool | None = None,
) -> SyncResult:
    """The flow, from one ``SyncOptions``: the notebook's and the CLI's call.

    ``retry_policy`` and ``progress`` are hooks, not parameters (``run_hooks``). The
    result of any run, green or not, read from its final state (``states.aresult_of``);
    a run stopped by an error raises it."""
    with run_hooks(retry_policy=retry_policy, progress=progress):
        state = await sync_customers(**options.groups(), return_state=True)  # type: ignore[call-overload]
    return await aresult_of(state)


async def sync_with_options(options: SyncOptions, hooks: RunHooks) -> SyncResult:
    """The body of the flow: configuration checked first, then one attempt of the run.

    ``retry_outage``: when customers still fail after their batch retries, fail the run so
    Prefect retries it later (see flows/run_retries). Otherwise the run never retries as a
    whole and returns its result."""
    try:
        source = options.source
        if has_date_template(source):  # the night's own folder: /landing/{date}
            source = dated_source(source, landing_day(options.landing_date))
        spec = SourceSpec(
            source, options.customers, options.accounts, options.cards, options.rename
        )
        # first: a wrong option is found in a second, not after the extract is prepared
        check_configuration(
            api_url=options.api_url,
            dry_run=options.dry_run,
            batch_size=options.batch_size,
            concurrency=options.concurrency,
            state_dir=state_folder(options.state_dir),
            report=options.report,
        )
        if options.dry_run is not None:  # configuration: before the extract is looked at
            check_dry_run_folder(Path(options.dry_run))
        if options.end_enrollment_of_absent and options.stream:
            raise ConfigError(
                "--end-enrollment-of-absent cannot be used with --stream (who is absent is "
                "known only after everything was sent)"
            )
        if options.wait_for_files_seconds > 0 and source is not None:  # else: read as it is
            await wait_for_landing(source, wait_seconds=options.wait_for_files_seconds)
        layout = _layout(spec, options.chunk_customers, options.shard)
    except CustomerSyncError as error:
        write_stopped_report(options.report, error)  # an older report must not still say "0"
        await stop_run_retries()
        raise
    session: RunSession | None = None
    try:
        settings = await partner_settings(options.api_url, look_up_block=not options.dry_run)
        session = _session(spec, options, settings, layout)
        result = await _sync(session, spec, options, hooks, settings, layout)
        transient = result.customers_failed - result.customers_rejected
        if options.retry_outage and transient > 0:
            raise PartnerUnavailable(
                f"{transient:,} customers still failed after their batch retries; the run "
                "is retried later and sends only what was not acknowledged"
            )
    except Exception as error:
        if session is None or not session.reporting:  # stopped before the run was recorded
            write_stopped_report(options.report, error)
        if not worth_a_run_retry(error, retry_outage=options.retry_outage):
            await stop_run_retries()
        raise
    if not result.outcome.ok:  # held back or rejected: a retry would end the same way
        await stop_run_retries()
    return result


def _session(
    spec: SourceSpec, options: SyncOptions, settings: PartnerSettings, layout: ChunkLayout
) -> RunSession:
    """The run's session; its parameters are what the ledger records of the run."""
    return RunSession(
        state_dir=options.state_dir,
        parameters={
            "source": spec.describe(),
            "api_url": without_user_info(settings.api_url) if settings.api_url else None,
            "batch_size": options.batch_size,
            "concurrency": options.concurrency,
            "dry_run": options.dry_run,
            "full_refresh": options.full_refresh,
            "mode": options.mode,
            "stream": options.stream,
            "shard_chunks": layout.owned,
            "end_enrollment_of_absent": options.end_enrollment_of_absent,
            "prefect_flow_run_id": _flow_run_id(),
        },
        dry_run=options.dry_run is not None,
        report=options.report,
        claim=DeliveryClaim(layout.owned, layout.partitions, options.wait),
        retention_days=options.acknowledgement_retention_days,
    )


async def _sync(
    session: RunSession,
    spec: SourceSpec,
    options: SyncOptions,
    hooks: RunHooks,
    settings: PartnerSettings,
    layout: ChunkLayout,
) -> SyncResult:
    """One attempt of the run: the one loop over prepared chunks, inside its session."""
    async with session:
        result, ledger = session.result, session.ledger
        shown_url = without_user_info(settings.api_url) if settings.api_url else None
        log.info("Run %s: syncing %s to %s", session.run_id, spec.describe(), shown_url)
        preparation = Preparation()
        check_guards = run_guards(
            known_customers=ledger.known_customer_count(),  # before this run sends anything
            max_held_back_share=options.max_held_back_share,
            max_update_share=options.max_update_share,
            allow_mass_update=options.allow_mass_update,
        )
        streaming = options.stream and options.dry_run is None
        dry_run, ending = options.dry_run is not None, options.end_enrollment_of_absent
        absent_ids: list[str] = []
        policy: GatePolicy

        if streaming:
            policy = Streaming(check_guards)
        else:

            def whole_extract(totals: Preparation) -> None:
                if not dry_run and not ending:  # kept documents are card data: only while on
                    ledger.forget_kept_documents()
                check_guards(totals)
                absent, known = judge_absent(
                    result, preparation, ledger, layout, session.run_dir, absent_ids
                )
                absent_guard(absent, known, options.max_absent_share, options.allow_absent)

            policy = GuardsFirst(whole_extract)
        retries = hooks.retry_policy or RetryPolicy()
        deliver = _delivery(session, options, retries, hooks.progress, settings, layout)
        prepare_seconds: list[float] = []
        result.seconds_by_stage["prepare"] = 0.0  # first in the report; filled in below
        ended: list[BatchOutcome] = []
        try:
            await prepare_and_deliver(
                spec,
                ledger,
                session.run_dir,
                session.rejects_path,
                deliver=deliver,
                policy=policy,
                full_refresh=options.full_refresh,
                mode=options.mode,
                layout=layout,
                preparation=preparation,
                prepare_seconds=prepare_seconds,
                record_parts=not dry_run,  # a dry run writes nothing to the ledger
                keep_documents=ending and not dry_run,
                collect_plan=dry_run,
            )
            if isinstance(deliver, ChunkDelivery) and ending and absent_ids:
                # customer_sync/run/enrollment.py, on the run's partner session
                ended = await end_enrollment_of_absent(
                    result,
                    absent_ids,
                    ledger,
                    await deliver.partner_client(),
                    session.run_id,
                    session.run_dir,
                    batch_size=options.batch_size,
                    concurrency=options.concurrency,
                    policy=retries,
                )
            if options.dry_run is not None:  # the plan per customer, beside the bodies
                plan = customer_plan(
                    [*(preparation.plan_rows or ()), *absent_plan_rows(absent_ids)]
                )
                write_plan(plan, Path(options.dry_run))
                log.info("Dry run plan: %s (per customer: plan.csv, plan.json)", plan.summary())
        finally:
            _add_stage(result, "prepare", sum(prepare_seconds))
            apply_preparation(result, preparation)
            session.held_back = preparation.held_back
            if isinstance(deliver, ChunkDelivery):
                await deliver.aclose()
                if deliver.seconds:  # it was handed a spool
                    _add_stage(result, "deliver", deliver.seconds)
                apply_outcomes(result, deliver.outcomes)
                result.batches.extend(ended)
        if streaming:
            warn_absent_after_stream(
                result, preparation, ledger, layout, session.run_dir, options.max_absent_share
            )
    return result


def _delivery(
    session: RunSession,
    options: SyncOptions,
    retries: RetryPolicy,
    progress: bool | None,
    settings: PartnerSettings,
    layout: ChunkLayout,
) -> ChunkDelivery | DryRunWriter:
    """What delivers a hand-over: the partner, or (a dry run) the dry-run folder."""
    if options.dry_run is not None:
        return DryRunWriter(session.result, Path(options.dry_run), options.batch_size, session)
    return ChunkDelivery(
        settings,
        session.ledger,
        session.run_id,
        batch_size=options.batch_size,
        concurrency=options.concurrency,
        policy=retries,
        expected=round(layout.customers * layout.share),  # streaming: an estimate
        progress=progress,
    )


class DryRunWriter:
    """A dry run's "delivery": each planned request body written to the dry-run folder."""

    def __init__(self, result: SyncResult, folder: Path, batch_size: int, session: RunSession):
        self._result = result
        self._folder = folder
        self._batch_size = batch_size
        self._session = session

    async def __call__(self, ready: ChunkReady) -> Sequence[BatchOutcome]:
        with _stage(self._result, "dry-run"):
            written = write_dry_run(
                ready.spool_path, self._folder, self._batch_size, self._session.run_id
            )
        self._result.dry_run_dir = str(self._folder)
        log.info("Dry run: wrote %d request bodies to %s", len(written), self._folder)
        return []


async def partner_settings(api_url: str | None, *, look_up_block: bool = True) -> PartnerSettings:
    """``CUSTOMER_SYNC_*`` settings; without a token there, the Secret block's (if any)."""
    settings = PartnerSettings.from_environment(api_url=api_url)
    if settings.api_token is None and look_up_block:
        # the environment wins; a scheduled run may keep the token in a Secret block
        token = await apartner_token_from_block()
        if token is not None:
            settings = PartnerSettings.from_environment(api_url=api_url, api_token=token)
    return settings


def _layout(spec: SourceSpec, chunk_customers: int | None, shard: str | None) -> ChunkLayout:
    """An explicit chunk size splits any extract bigger than one chunk; a shard always
    splits."""
    if chunk_customers is not None and chunk_customers < 1:
        raise ConfigError(f"chunk_customers must be at least 1, not {chunk_customers}")
    return chunk_layout(
        spec,
        chunk_customers=chunk_customers or DEFAULT_CHUNK_CUSTOMERS,
        whole_customers=WHOLE_CUSTOMERS if chunk_customers is None else 0,
        shard=Shard.parse(shard) if shard else None,
    )


@contextmanager
def _stage(result: SyncResult, name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        _add_stage(result, name, time.perf_counter() - started)


def _add_stage(result: SyncResult, name: str, seconds: float) -> None:
    """Add ``seconds`` to a stage of the report (streaming: prepare and deliver overlap)."""
    result.seconds_by_stage[name] = round(result.seconds_by_stage.get(name, 0.0) + seconds, 3)


def _flow_run_id() -> str | None:
    """The Prefect flow run's id, when this runs as one (None from a plain call)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    return str(run.id) if run is not None else None


__all__ = ["partner_settings", "run_sync", "sync_customers", "sync_with_options"]
