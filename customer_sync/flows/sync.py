"""The ``sync-customers`` flow: read, validate, nest, plan, deliver, report.

Call it from a notebook as a plain function (``asyncio.run(sync_customers(...))`` or
``await sync_customers(...)``); it returns a :class:`~customer_sync.run.report.SyncResult`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from prefect import flow
from prefect.client.schemas.objects import State

from customer_sync.adapters.delivery import DeliveryOutcome, RetryPolicy
from customer_sync.adapters.partner_client import PartnerClient, PartnerSettings
from customer_sync.adapters.urls import without_user_info
from customer_sync.chunking.partitioner import DEFAULT_CHUNK_CUSTOMERS
from customer_sync.chunking.pool import WHOLE_CUSTOMERS
from customer_sync.chunking.shards import Shard
from customer_sync.flows import quiet_errors
from customer_sync.flows.artifacts import ProgressArtifact, publish_run_artifacts
from customer_sync.flows.deliver import (
    check_dry_run_folder,
    deliver_spool,
    task_run_size,
    write_dry_run,
)
from customer_sync.flows.events import FlowKind, emit_run_events
from customer_sync.flows.landing import (
    dated_source,
    has_date_template,
    landing_day,
    source_label,
    wait_for_landing,
)
from customer_sync.flows.prepare import ChunkLayout, Preparation, SourceSpec, chunk_layout, prepare
from customer_sync.flows.run_retries import (
    RUN_RETRIES,
    RUN_RETRY_DELAY_SECONDS,
    PartnerUnavailable,
    stop_run_retries,
    worth_a_run_retry,
)
from customer_sync.flows.secrets import apartner_token_from_block
from customer_sync.flows.states import aresult_of, final_state
from customer_sync.ledger.factory import ledger_location, open_ledger
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.run.absent import judge_absent
from customer_sync.run.config_check import DEFAULT_STATE_DIR as DEFAULT_STATE_DIR
from customer_sync.run.config_check import check_configuration, state_folder
from customer_sync.run.enrollment import end_enrollment_of_absent
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
from customer_sync.run.planning import absent_plan_rows, customer_plan, write_plan
from customer_sync.run.progress import DeliveryProgress
from customer_sync.run.report import (
    BatchOutcomes,
    SyncResult,
    refusals_by_reason,
    summary_lines,
    write_report,
    write_stopped_report,
)
from customer_sync.run.stream import CheckGuards, prepare_while_delivering
from customer_sync.schemas.errors import ConfigError, CustomerSyncError, GuardTripped
from customer_sync.schemas.records import BatchOutcome
from customer_sync.transforms.plan import absent_guard, mass_update_guard
from customer_sync.transforms.validate import held_back_guard

log = logging.getLogger(__name__)


@contextmanager
def _stage(result: SyncResult, name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        result.seconds_by_stage[name] = round(result.seconds_by_stage.get(name, 0.0) + elapsed, 3)


def _apply_preparation(result: SyncResult, preparation: Preparation) -> None:
    result.rows_read = dict(preparation.rows_read)
    result.customers_read = preparation.customers_read
    result.customers_valid = preparation.customers_valid
    result.customers_held_back = preparation.customers_held_back
    result.held_back_by_reason = dict(preparation.held_back_by_reason)
    result.customers_unchanged = preparation.unchanged
    result.customers_planned = preparation.planned
    result.rejects = preparation.rejects_path
    result.orphan_accounts = preparation.orphan_accounts
    result.orphan_cards = preparation.orphan_cards
    if result.dry_run:  # nothing is sent: the planned methods are the whole story
        result.customers_created = preparation.creates
        result.customers_updated = preparation.updates


def apply_outcomes(result: SyncResult, outcomes: Sequence[BatchOutcome]) -> None:
    # kept as BatchOutcomes: Prefect walks the flow's return value, but not into that
    result.batches = outcomes if isinstance(outcomes, BatchOutcomes) else BatchOutcomes(outcomes)
    for outcome in outcomes:
        delivered = len(acknowledged_ids(outcome))
        failed = len(outcome.customer_ids) - delivered
        result.customers_sent += delivered
        result.customers_failed += failed
        result.customers_rejected += len(outcome.rejected)
        if outcome.method == "POST":
            result.customers_created += delivered
        else:
            result.customers_updated += delivered
    result.rejected_by_reason = refusals_by_reason(outcomes)


async def partner_settings(api_url: str | None, *, look_up_block: bool = True) -> PartnerSettings:
    """``CUSTOMER_SYNC_*`` settings; without a token there, the Secret block's (if any)."""
    settings = PartnerSettings.from_environment(api_url=api_url)
    if settings.api_token is None and look_up_block:
        # the environment wins; a scheduled run may keep the token in a Secret block
        token = await apartner_token_from_block()
        if token is not None:
            settings = PartnerSettings.from_environment(api_url=api_url, api_token=token)
    return settings


def export_dead_letters_of(result: SyncResult, ledger: SqliteLedger, run_dir: Path) -> None:
    """When customers failed, export the dead letters beside the run's report (owner-only)."""
    if result.customers_failed:
        exported = run_dir / "dead-letters.jsonl"
        ledger.export_dead_letters(exported)
        result.dead_letters = str(exported)


def acknowledged_ids(outcome: BatchOutcome) -> tuple[str, ...]:
    """The customers of a batch the partner acknowledged (a failed batch may be partial)."""
    if isinstance(outcome, DeliveryOutcome):
        return outcome.acknowledged
    if outcome.status == "acknowledged":
        return outcome.customer_ids
    if outcome.status == "rejected":
        return tuple(c for c in outcome.customer_ids if c not in outcome.rejected)
    return ()


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
        if options.wait_for_files_seconds > 0 and source is not None:  # else: read as it is
            await wait_for_landing(source, wait_seconds=options.wait_for_files_seconds)
        layout = _layout(spec, options.chunk_customers, options.shard)
    except CustomerSyncError as error:
        write_stopped_report(options.report, error)  # an older report must not still say "0"
        await stop_run_retries()
        raise
    reported: list[Path] = []
    try:
        result = await _sync(spec, options, hooks, layout=layout, reported=reported)
        transient = result.customers_failed - result.customers_rejected
        if options.retry_outage and transient > 0:
            raise PartnerUnavailable(
                f"{transient:,} customers still failed after their batch retries; the run "
                "is retried later and sends only what was not acknowledged"
            )
    except Exception as error:
        if not reported:  # stopped before the run was recorded (e.g. the ledger unusable)
            write_stopped_report(options.report, error)
        if not worth_a_run_retry(error, retry_outage=options.retry_outage):
            await stop_run_retries()
        raise
    if not result.outcome.ok:  # held back or rejected: a retry would end the same way
        await stop_run_retries()
    return result


async def _sync(
    spec: SourceSpec,
    options: SyncOptions,
    hooks: RunHooks,
    *,
    layout: ChunkLayout,
    reported: list[Path],
) -> SyncResult:
    """One attempt of the run: prepare, check the guards, deliver (or dry-run), report.

    The report's path is appended to ``reported`` once the run's own reporting begins."""
    dry_run, stream, report = options.dry_run, options.stream, options.report
    batch_size, concurrency = options.batch_size, options.concurrency
    full_refresh, mode, progress = options.full_refresh, options.mode, hooks.progress
    ending = options.end_enrollment_of_absent
    if ending and stream:
        raise ConfigError(
            "--end-enrollment-of-absent cannot be used with --stream (who is absent is known "
            "only after everything was sent)"
        )
    settings = await partner_settings(options.api_url, look_up_block=dry_run is None)
    state = state_folder(options.state_dir)
    result = SyncResult(dry_run=dry_run is not None)
    ledger = open_ledger(ledger_location(options.state_dir))
    if dry_run is None:  # one delivering run per ledger, before anything is read or sent
        lock_delivery(ledger, layout.owned, layout.partitions, options.wait)
    parameters: Mapping[str, object] = {
        "source": spec.describe(),
        "api_url": without_user_info(settings.api_url) if settings.api_url else None,
        "batch_size": batch_size,
        "concurrency": concurrency,
        "dry_run": dry_run,
        "full_refresh": full_refresh,
        "mode": mode,
        "stream": stream,
        "shard_chunks": layout.owned,
        "end_enrollment_of_absent": ending,
        "prefect_flow_run_id": _flow_run_id(),
    }
    run_id = ledger.start_run(parameters) if dry_run is None else f"dry-{uuid.uuid4().hex[:12]}"
    result.run_id = run_id
    if dry_run is None:
        interrupted = ledger.settle_interrupted(run_id)
        result.interrupted_batches_resumed = len(interrupted)
        if interrupted:
            log.warning(
                "%d batches of an earlier run were in flight when it stopped; their customers "
                "are planned again",
                len(interrupted),
            )
    run_dir = state / "runs" / run_id
    spool_path = run_dir / "spool.arrow"
    shown_url = without_user_info(settings.api_url) if settings.api_url else None
    log.info("Run %s: syncing %s to %s", run_id, spec.describe(), shown_url)
    preparation = Preparation()
    check_guards = run_guards(
        known_customers=ledger.known_customer_count(),  # before anything of this run is sent
        max_held_back_share=options.max_held_back_share,
        max_update_share=options.max_update_share,
        allow_mass_update=options.allow_mass_update,
    )
    policy = hooks.retry_policy or RetryPolicy()
    guard: str | None = None
    try:
        if stream and dry_run is None:
            await _stream(
                result,
                preparation,
                spec,
                ledger,
                settings,
                run_id,
                run_dir,
                layout=layout,
                check_guards=check_guards,
                full_refresh=full_refresh,
                mode=mode,
                batch_size=batch_size,
                concurrency=concurrency,
                policy=policy,
                progress=progress,
            )
            _judge_absent_after_stream(
                result, preparation, ledger, layout, run_dir, options.max_absent_share
            )
            return result
        with _stage(result, "prepare"):
            preparation = prepare(
                spec,
                ledger,
                spool_path,
                run_dir / "rejects.csv",
                full_refresh=full_refresh,
                mode=mode,
                layout=layout,
                record_parts=dry_run is None,  # a dry run writes nothing to the ledger
                keep_documents=ending and dry_run is None,
                collect_plan=dry_run is not None,
            )
        if dry_run is None and not ending:  # kept documents are card data: only while on
            ledger.forget_kept_documents()
        _apply_preparation(result, preparation)
        check_guards(preparation)
        absent_ids: list[str] = []
        absent, known = judge_absent(result, preparation, ledger, layout, run_dir, absent_ids)
        absent_guard(absent, known, options.max_absent_share, options.allow_absent)
        if dry_run is not None:
            with _stage(result, "dry-run"):
                written = write_dry_run(spool_path, Path(dry_run), batch_size, run_id)
            result.dry_run_dir = str(dry_run)
            log.info("Dry run: wrote %d request bodies to %s", len(written), dry_run)
            plan = customer_plan([*(preparation.plan_rows or ()), *absent_plan_rows(absent_ids)])
            write_plan(plan, Path(dry_run))
            log.info("Dry run plan: %s (per customer: plan.csv, plan.json)", plan.summary())
        else:
            tracker = ProgressArtifact(preparation.planned)
            await tracker.start()
            with (
                DeliveryProgress(preparation.planned, enabled=progress) as shown,
                _stage(result, "deliver"),
            ):
                async with PartnerClient(settings) as client:
                    outcomes = await deliver_spool(
                        spool_path,
                        client,
                        ledger,
                        run_id,
                        batch_size=batch_size,
                        concurrency=concurrency,
                        policy=policy,
                        on_outcome=_progress_of(shown, tracker),
                    )
                    ended: list[BatchOutcome] = []
                    if ending and absent_ids:  # customer_sync/run/enrollment.py
                        ended = await end_enrollment_of_absent(
                            result,
                            absent_ids,
                            ledger,
                            client,
                            run_id,
                            run_dir,
                            batch_size=batch_size,
                            concurrency=concurrency,
                            policy=policy,
                        )
            await tracker.finish()
            apply_outcomes(result, outcomes)
            result.batches.extend(ended)
            export_dead_letters_of(result, ledger, run_dir)
    except BaseException as error:
        result.stop(
            error
        )  # the outcome (customer_sync/run/outcome.py) says aborted, failed or interrupted
        guard = str(error) if isinstance(error, GuardTripped) else None
        raise
    finally:
        spool_path.unlink(missing_ok=True)
        if dry_run is None:
            try:
                ledger.prune_acknowledgements(_days_ago(options.acknowledgement_retention_days))
            except Exception as error:  # retention only: the run's record stands
                log.warning("Could not prune old acknowledgements: %s", type(error).__name__)
        report_path = Path(report) if report else run_dir / "report.json"
        reported.append(report_path)  # from here on the run's own report tells its end
        await close_run(
            result,
            ledger,
            run_id if dry_run is None else None,
            report_path,
            _counts(result),
            held_back=preparation.held_back,
            guard=guard,
        )
    return result


async def close_run(
    result: SyncResult,
    ledger: SqliteLedger,
    run_id: str | None,
    report_path: Path,
    counts: Mapping[str, int],
    *,
    held_back: Sequence[Any] = (),
    kind: FlowKind = "sync",
    guard: str | None = None,
) -> None:
    """End a run on every path: the report written, then the ledger's run row closed, both
    with the same outcome (``result.outcome``), then the summary logged.

    A report that cannot be written (a full disk, a file-size limit) fails the run: the
    ledger records ``failed`` with that reason (it still knows what was sent), and a
    ``ReportNotWritten`` is raised unless an earlier error is already on its way out.
    """
    already_stopped = result.aborted is not None
    try:
        await publish_run_artifacts(result, list(held_back))
    except Exception as error:  # the Prefect UI's copy only: the report and ledger remain
        log.warning("Could not publish the run's artifacts: %s", type(error).__name__)
    not_written: ReportNotWritten | None = None
    try:
        write_report(result, report_path)
    except OSError as error:
        not_written = ReportNotWritten(
            f"{report_path}: cannot write the report ({error.strerror or error}); "
            "the ledger records what was sent"
        )
        result.stop(not_written)
    try:
        if run_id is not None:
            outcome = result.outcome
            ledger.finish_run(run_id, outcome.status, counts, reason=outcome.reason)
    except Exception as error:
        result.stop(error)
        if not_written is None:  # the report must not say more than the ledger could keep
            with contextlib.suppress(OSError):
                write_report(result, report_path)
        raise
    finally:
        ledger.close()
        for line in summary_lines(result):
            log.info(line)
        emit_run_events(result, kind=kind, guard=guard)  # after the ledger: same story
    if not_written is not None and not already_stopped:
        raise not_written


class ReportNotWritten(CustomerSyncError):
    """The run's report could not be written: the run failed (exit 2) whatever it sent."""


def lock_delivery(
    ledger: SqliteLedger, owned: Sequence[int] | None, partitions: int, wait: float | None
) -> None:
    """Take the ledger's delivery lock (held until it closes); refused: close it, raise."""
    try:
        ledger.lock_delivery(owned, partitions, wait=wait)
    except BaseException:
        ledger.close()
        raise


def _progress_of(
    shown: DeliveryProgress, tracker: ProgressArtifact
) -> Callable[[BatchOutcome], None]:
    """The callback that moves the terminal display and the progress artifact on."""

    def advance(outcome: BatchOutcome) -> None:
        shown.advance(len(outcome.customer_ids))
        tracker.advance(len(outcome.customer_ids))

    return advance


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


def run_guards(
    *,
    known_customers: int,
    max_held_back_share: float,
    max_update_share: float,
    allow_mass_update: bool,
) -> CheckGuards:
    """Both guards, on a preparation's totals (all of them, or the running ones when
    streaming). A shard compares its changes with its share of the known customers."""

    def check(preparation: Preparation) -> None:
        held_back_guard_totals(preparation, max_held_back_share)
        mass_update_guard(
            # only documents that changed count: a full refresh or dead-letter re-sends are
            # asked for, a changed document is what a broken export produces
            {"create": preparation.creates, "update": preparation.changed},
            known_customers=round(known_customers * preparation.extract_share),
            max_update_share=max_update_share,
            allow_mass_update=allow_mass_update,
        )

    return check


async def _stream(
    result: SyncResult,
    preparation: Preparation,
    spec: SourceSpec,
    ledger: SqliteLedger,
    settings: PartnerSettings,
    run_id: str,
    run_dir: Path,
    *,
    layout: ChunkLayout,
    check_guards: CheckGuards,
    full_refresh: bool,
    mode: Literal["sync", "create-only"],
    batch_size: int,
    concurrency: int,
    policy: RetryPolicy,
    progress: bool | None,
) -> None:
    """Prepare and deliver at once (``run.stream``); ``preparation`` and the result are
    filled in as they go, so a stopped stream still reports what it read and sent."""
    expected = round(layout.customers * layout.share)  # an estimate: shown, never relied on
    tracker = ProgressArtifact(expected)
    await tracker.start()
    outcomes: list[BatchOutcome] = []
    # task runs sized for the whole run, not per chunk, and numbered on across chunks
    group = task_run_size(math.ceil(expected / batch_size))
    task_runs = 0
    with (
        DeliveryProgress(expected, enabled=progress) as shown,
        _stage(result, "prepare+deliver"),
    ):
        async with PartnerClient(settings) as client:

            async def deliver(spool_path: Path, number: int) -> Sequence[BatchOutcome]:
                nonlocal task_runs
                delivered = await deliver_spool(
                    spool_path,
                    client,
                    ledger,
                    run_id,
                    batch_size=batch_size,
                    concurrency=concurrency,
                    policy=policy,
                    on_outcome=_progress_of(shown, tracker),
                    batches_per_task_run=group,
                    first_task_run=task_runs,
                )
                task_runs += math.ceil(len(delivered) / group)
                outcomes.extend(delivered)
                return delivered

            try:
                await prepare_while_delivering(
                    spec,
                    ledger,
                    run_dir,
                    run_dir / "rejects.csv",
                    deliver=deliver,
                    check_guards=check_guards,
                    full_refresh=full_refresh,
                    mode=mode,
                    layout=layout,
                    preparation=preparation,
                )
            finally:
                _apply_preparation(result, preparation)
                apply_outcomes(result, outcomes)
    await tracker.finish()
    export_dead_letters_of(result, ledger, run_dir)


def held_back_guard_totals(preparation: Preparation, max_share: float) -> None:
    """The held-back guard on the totals of every chunk."""
    if preparation.customers_read == 0:
        return
    share = preparation.customers_held_back / preparation.customers_read
    if share > max_share:
        raise GuardTripped(
            f"{preparation.customers_held_back:,} of {preparation.customers_read:,} customers "
            f"({share:.1%}) would be held back, above the limit of {max_share:.1%}; nothing was "
            f"sent. See the rejects file {preparation.rejects_path}; raise --max-held-back to "
            "send the valid customers anyway."
        )


def _counts(result: SyncResult) -> dict[str, int]:
    return {
        "customers_read": result.customers_read,
        "customers_held_back": result.customers_held_back,
        "customers_unchanged": result.customers_unchanged,
        "customers_sent": result.customers_sent,
        "customers_failed": result.customers_failed,
        "customers_rejected": result.customers_rejected,
        "orphan_accounts": result.orphan_accounts,
        "orphan_cards": result.orphan_cards,
        "customers_created": result.customers_created,
        "customers_updated": result.customers_updated,
        "customers_absent": result.customers_absent,
        "customers_enrollment_ended": result.customers_enrollment_ended,
        "customers_enrollment_end_failed": result.customers_enrollment_end_failed,
        "batches": len(result.batches),
    }


def _flow_run_id() -> str | None:
    """The Prefect flow run's id, when this runs as one (None from a plain call)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    return str(run.id) if run is not None else None


def _days_ago(days: int) -> str:
    """UTC text, as the ledger writes times, ``days`` before now."""
    when = datetime.now(UTC) - timedelta(days=max(days, 0))
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _judge_absent_after_stream(
    result: SyncResult,
    preparation: Preparation,
    ledger: SqliteLedger,
    layout: ChunkLayout,
    run_dir: Path,
    max_absent_share: float,
) -> None:
    """A stream has sent already: who is absent is reported, and a share above the guard's
    limit only warned about (the guard itself needs the guards-first default)."""
    absent, known = judge_absent(result, preparation, ledger, layout, run_dir)
    if known and absent > max_absent_share * known:
        log.warning(
            "%d of the %d customers the partner holds are absent from this extract (%.1f%%); "
            "a truncated export looks like this (streaming cannot stop before sending)",
            absent,
            known,
            100.0 * absent / known,
        )


__all__ = [
    "ReportNotWritten",
    "close_run",
    "held_back_guard",
    "run_sync",
    "state_folder",
    "sync_customers",
]
