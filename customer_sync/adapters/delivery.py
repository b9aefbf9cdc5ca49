"""Delivering batches: per-batch retries of what can heal, splitting of what the partner rejects.

One batch gives one outcome (``DeliveryOutcome``, a ``BatchOutcome``):

* ``acknowledged``: every customer of the batch was acknowledged;
* ``rejected``: the partner refused some customers as invalid (400/413/422); they are in
  ``rejected`` with the partner's validationErrors, every other customer was acknowledged;
* ``failed``: some customers were neither acknowledged nor rejected (retries exhausted, an
  answer that does not heal: 403, 404, 405, 415, 501..., or a redirect we do not follow:
  terminal, not retried, not split, its reason names the target host). ``acknowledged``
  and ``rejected`` still say what became of the others, so a partial success is never lost.

A 200 whose body carries ``validationErrors`` or an error ``type`` (DECISION, partner-api.md
"More facts"): the customers its errors name (by ``sourceCustomerId`` or ``customerIndex``,
as for a 400) are rejected with those errors, the others of that request are acknowledged.
A 200 with errors that names nobody acknowledges nobody: like a 400 without culprits, the
request is split to isolate the customer(s) concerned, so no customer is lost or taken as
delivered on the partner's word that something went wrong.

Every text made from the partner's answer (or a transport error) goes through
``customer_sync.transforms.redaction``: the partner may echo our token and card data (issue 11).

Every HTTP attempt carries its own ``X-CDLX-Request-Id``: ``{batch_id}-{n}``, n counting the
batch's attempts across retries and splits.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from customer_sync.adapters.auth import PartnerAuthError
from customer_sync.adapters.http_exchange import (
    RedirectRefused,
    retryable_status,
    transient_error,
)
from customer_sync.adapters.partner_client import PartnerClient, PartnerResponse
from customer_sync.adapters.request_gate import RequestGate
from customer_sync.schemas.records import Batch, BatchOutcome, Method, request_body
from customer_sync.transforms.redaction import problem_text, redacted, sensitive_values

logger = logging.getLogger(__name__)

SPLIT_STATUSES = frozenset({400, 413, 422})
"""The partner refuses the content: isolate the customers it refuses, send the rest."""
__all__ = ["retryable_status", "transient_error"]  # what heals: shared with startSession


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with full jitter; ``Retry-After`` honoured up to a cap."""

    max_attempts: int = 6
    """Attempts per request (the first one included), for each part of a split batch."""
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    """Longest ``Retry-After`` obeyed; a longer one is cut to this."""
    jitter: bool = True
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.base_delay, self.max_delay, self.max_retry_after) < 0:
            raise ValueError("delays must not be negative")

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 = the first retry)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(retry - 1, 62))
        return self.random() * ceiling if self.jitter else ceiling


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """One retry about to happen (given to ``on_retry``; no payloads, no secrets)."""

    batch_id: str
    request_id: str
    """The request id of the attempt that failed."""
    attempt: int
    """The batch's attempt number that failed (across retries and splits)."""
    customers: int
    reason: str
    status: int | None
    retry_after: float | None
    delay: float


@dataclass(frozen=True)
class DeliveryOutcome(BatchOutcome):
    """A ``BatchOutcome`` that also says which customers were acknowledged, and under which
    partner requestIds (a split batch is acknowledged in several requests)."""

    acknowledged: tuple[str, ...] = ()
    request_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Failure:
    reason: str
    status: int | None
    request_id: str | None


class _BatchDelivery:
    """The state of one batch while it is retried and, on a 400, split."""

    def __init__(
        self,
        client: PartnerClient,
        batch: Batch,
        policy: RetryPolicy,
        on_retry: Callable[[RetryEvent], None] | None,
        gate: RequestGate | None = None,
    ) -> None:
        self.client, self.batch, self.policy, self.on_retry = client, batch, policy, on_retry
        self.gate = gate
        self.attempts = 0
        self.acknowledged: list[int] = []
        self.rejected: dict[int, str] = {}
        self.failure: _Failure | None = None
        self.request_ids: list[str] = []
        self.last: PartnerResponse | None = None
        self._secrets: frozenset[str] | None = None

    def secrets(self) -> frozenset[str]:
        """What must never be stored as text: the credentials sent and the batch's postal
        codes, last4 and iin (computed only when an error is described)."""
        if self._secrets is None:
            self._secrets = sensitive_values(self.batch.documents)
        return self._secrets | self.client.credentials()

    def describe(self, response: PartnerResponse, items: Sequence[Any] | None = None) -> str:
        """The partner's answer as text that is safe to store and show."""
        problem = response.problem
        if items is None:
            items = problem.validation_errors if problem is not None else ()
        title = (problem.title or problem.type) if problem is not None else None
        return problem_text(response.status, title, items, self.secrets())

    def body(self, part: Sequence[int]) -> bytes:
        if len(part) == len(self.batch.documents):
            return self.batch.body
        documents = self.batch.documents
        return request_body([documents[i] for i in part])

    async def deliver(self, part: Sequence[int]) -> None:
        answer = await self.send(part)
        if isinstance(answer, _Failure):
            self.failure = answer
            return
        self.last = answer
        if answer.ok:
            self.acknowledged.extend(part)
            if answer.request_id is not None:
                self.request_ids.append(answer.request_id)
            return
        if not answer.ok_with_errors and answer.status not in SPLIT_STATUSES:
            reason = self.describe(answer)
            self.failure = _Failure(reason, answer.status, answer.request_id)
            return
        if len(part) == 1:
            self.rejected[part[0]] = self.describe(answer)
            return
        culprits = self.culprits(answer, part)
        if culprits:
            for position, items in culprits.items():
                self.rejected[part[position]] = self.describe(answer, items)
            rest = [index for position, index in enumerate(part) if position not in culprits]
            if rest and answer.ok_with_errors:
                # the partner took the request: the customers it did not name are delivered
                self.acknowledged.extend(rest)
                if answer.request_id is not None:
                    self.request_ids.append(answer.request_id)
            elif rest:
                await self.deliver(rest)
            return
        middle = len(part) // 2
        await self.deliver(part[:middle])
        await self.deliver(part[middle:])

    def culprits(self, answer: PartnerResponse, part: Sequence[int]) -> dict[int, list[Any]]:
        """Positions in ``part`` that the partner's validationErrors name, with their errors."""
        items = answer.problem.validation_errors if answer.problem is not None else ()
        ids = self.batch.customer_ids
        position_of = {ids[index]: position for position, index in enumerate(part)}
        named: dict[int, list[Any]] = {}
        for item in items:
            if not isinstance(item, dict):
                continue
            position = position_of.get(item.get("sourceCustomerId"))  # type: ignore[arg-type]
            index = item.get("customerIndex")
            if position is None and isinstance(index, int) and 0 <= index < len(part):
                position = index
            if position is not None:
                named.setdefault(position, []).append(item)
        return named

    async def send(self, part: Sequence[int]) -> PartnerResponse | _Failure:
        """One request for ``part``, retried while the failure can heal."""
        body = self.body(part)
        batch, policy = self.batch, self.policy
        last_request_id: str | None = None
        for attempt in range(1, policy.max_attempts + 1):
            self.attempts += 1
            request_id = f"{batch.batch_id}-{self.attempts}"
            retry_after: float | None = None
            status: int | None = None
            try:
                answer = await self._attempt(batch.method, body, request_id)
            except PartnerAuthError as error:
                if not error.transient:
                    raise
                reason, status = redacted(str(error), self.secrets()), error.status
                last_request_id = request_id
            except RedirectRefused as error:
                # terminal: retrying would meet the same redirect, splitting would send the
                # same card data towards it; nothing was sent to the target
                logger.warning("batch %s: %s", batch.batch_id, error)
                return _Failure(str(error), None, request_id)
            except (aiohttp.ClientError, TimeoutError) as error:
                reason = redacted(f"{type(error).__name__}: {error}".rstrip(": "), self.secrets())
                last_request_id = request_id
                if not transient_error(error):
                    return _Failure(reason, None, request_id)
            else:
                # the partner's requestId of this attempt (ours when it gave none): what a
                # dead letter keeps once the retries give up
                last_request_id = answer.request_id or request_id
                if answer.status == 401:
                    raise PartnerAuthError(
                        "the partner refused our credentials (HTTP 401 after renewal)",
                        status=401,
                        transient=False,
                    )
                if answer.ok or not retryable_status(answer.status):
                    return answer
                reason, status, retry_after = (
                    f"HTTP {answer.status}",
                    answer.status,
                    (answer.retry_after),
                )
            if attempt == policy.max_attempts:
                break
            delay = policy.delay(attempt, retry_after)
            event = RetryEvent(
                batch.batch_id, request_id, self.attempts, len(part), reason, status,
                retry_after, delay,
            )  # fmt: skip
            logger.info(
                "batch %s attempt %d failed (%s); retrying in %.3fs",
                batch.batch_id, self.attempts, reason, delay,
            )  # fmt: skip
            if self.on_retry is not None:
                self.on_retry(event)
            await asyncio.sleep(delay)
        logger.warning(
            "batch %s: %d customers failed after %d attempts (%s)",
            batch.batch_id, len(part), policy.max_attempts, reason,
        )  # fmt: skip
        reason = f"gave up after {policy.max_attempts} attempts: {reason}"
        return _Failure(reason, status, last_request_id or request_id)

    async def _attempt(self, method: Method, body: bytes, request_id: str) -> PartnerResponse:
        """One request, through the run's gate when it has one (AIMD on 429s)."""
        if self.gate is None:
            return await self.client.send(method, body, request_id)
        async with self.gate.request() as sent:
            answer = await self.client.send(method, body, request_id)
            sent.status = answer.status
        return answer

    def outcome(self) -> DeliveryOutcome:
        ids = self.batch.customer_ids
        rejected = {ids[index]: text for index, text in sorted(self.rejected.items())}
        if len(self.acknowledged) == len(ids):
            # everyone (parts are disjoint): the batch's own tuple, which the ledger also
            # recognises by identity as "all acknowledged" (no sort, no per-customer tuple)
            acknowledged = ids
        else:
            acknowledged = tuple(ids[index] for index in sorted(self.acknowledged))
        last = self.last
        request_id = self.request_ids[-1] if self.request_ids else None
        if request_id is None and last is not None:
            request_id = last.request_id  # refused whole: the refusal's requestId
        if self.failure is not None:
            status, http_status = "failed", self.failure.status
            error: str | None = self.failure.reason
            # the failed request's id, not an earlier part's that was acknowledged
            request_id = self.failure.request_id or request_id
        elif rejected:
            status, http_status = "rejected", 400
            error = f"{len(rejected)} of {len(ids)} customers rejected by the partner"
        else:
            status, http_status = "acknowledged", last.status if last is not None else None
            error = None
        return DeliveryOutcome(
            batch_id=self.batch.batch_id,
            method=self.batch.method,
            customer_ids=ids,
            status=status,  # type: ignore[arg-type]
            attempts=self.attempts,
            http_status=http_status,
            request_id=request_id,
            error=error,
            rejected=rejected,
            acknowledged=acknowledged,
            request_ids=tuple(self.request_ids),
        )


async def deliver_batch(
    client: PartnerClient,
    batch: Batch,
    policy: RetryPolicy,
    *,
    on_retry: Callable[[RetryEvent], None] | None = None,
    gate: RequestGate | None = None,
) -> DeliveryOutcome:
    """Deliver one batch: retry what heals, split on 400/413/422, report every customer.

    ``gate``: the run's requests in flight, paced on the partner's 429s
    (``adapters/request_gate.py``); without one, only the caller's concurrency bounds them.

    Raises ``PartnerAuthError`` only when the credentials are refused for good (nothing else
    could be delivered either); every other failure becomes a ``failed`` outcome.
    """
    delivery = _BatchDelivery(client, batch, policy, on_retry, gate)
    if batch.customer_ids:
        await delivery.deliver(range(len(batch.customer_ids)))
    return delivery.outcome()


async def _next_from(source: AsyncIterator[Batch], lock: asyncio.Lock) -> Batch | None:
    async with lock:  # an async generator must not be advanced by two workers at once
        try:
            return await anext(source)
        except StopAsyncIteration:
            return None


async def deliver_batches(
    client: PartnerClient,
    batches: Iterable[Batch] | AsyncIterable[Batch],
    *,
    concurrency: int,
    policy: RetryPolicy,
    on_outcome: Callable[[BatchOutcome], None] | None = None,
    on_retry: Callable[[RetryEvent], None] | None = None,
    keep_outcomes: bool = True,
    gate: RequestGate | None = None,
) -> list[BatchOutcome]:
    """Deliver batches with at most ``concurrency`` in flight; outcomes in input order.

    ``concurrency`` workers pull from ``batches`` only when free, so a lazy iterator of
    millions of batches is never materialised. ``on_outcome`` sees each outcome as it
    completes (completion order); ``keep_outcomes=False`` keeps nothing and returns [].
    ``gate``: pace the requests in flight on the partner's 429s (AIMD, at most
    ``concurrency``); without one, ``concurrency`` is fixed.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    results: list[tuple[int, BatchOutcome]] = []
    counter = iter(range(1 << 62))
    sync_source: Iterator[Batch] | None = None
    async_source: AsyncIterator[Batch] | None = None
    if isinstance(batches, AsyncIterable):
        async_source = aiter(batches)
    else:
        sync_source = iter(batches)
    lock = asyncio.Lock()

    async def worker() -> None:
        while True:
            if sync_source is not None:
                batch = next(sync_source, None)
            else:
                assert async_source is not None
                batch = await _next_from(async_source, lock)
            if batch is None:
                return
            position = next(counter)
            outcome = await deliver_batch(client, batch, policy, on_retry=on_retry, gate=gate)
            if on_outcome is not None:
                on_outcome(outcome)
            if keep_outcomes:
                results.append((position, outcome))

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(worker())
    except BaseExceptionGroup as errors:
        raise errors.exceptions[0] from None
    results.sort(key=lambda pair: pair[0])
    return [outcome for _, outcome in results]
