"""The faults the stand-in partner injects (``StubFaults``), and their command-line form.

One declaration of every fault: ``fault_arguments`` writes a ``StubFaults`` as the flags
that ``faults_from_args`` reads back (the subprocess stand-in and the CLI's ``stub-api``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from customer_sync.devtools.stub_records import Fault
from customer_sync.schemas import contract


@dataclass(frozen=True)
class StubFaults:
    """What goes wrong, on purpose. Shares are probabilities per data request (seeded RNG).

    The deterministic knobs (``fail_first_n``, ``fail_each_batch``, ``reject_ids``) make
    tests independent of timing and of the order in which concurrent requests arrive.
    """

    error_share: float = 0.0
    """Share of data requests answered 500 or 503 (half each)."""
    rate_limit_share: float = 0.0
    """Share of data requests answered 429 with ``Retry-After: retry_after``."""
    retry_after: float = 1.0
    """Seconds sent in ``Retry-After`` (fractions allowed, for fast tests)."""
    latency: float = 0.0
    """Seconds added before answering each data request."""
    drop_share: float = 0.0
    """Share of data requests whose connection is closed without an answer."""
    token_lifetime: float = float(contract.SESSION_LIFETIME_SECONDS)
    """Seconds a session token stays valid."""
    reject_ids: frozenset[str] = frozenset()
    """sourceCustomerIds answered with 400 (the whole request, naming these customers)."""
    fail_first_n: int = 0
    """The first n data requests (arrival order) are answered with ``fail_with``."""
    fail_each_batch: int = 0
    """Every distinct request body is answered with ``fail_with`` this many times first."""
    fail_with: Fault = 503
    drop_after_accept: bool = False
    """Dropped connections happen after the customers were recorded (an ambiguous outcome)."""
    anonymous_errors: bool = False
    """validationErrors name no customer (neither index nor id), like a terse partner."""
    redirect_to: str | None = None
    """Data requests to ``CUSTOMERS_PATH`` are answered ``redirect_status`` to this URL
    (after the token check; ``MOVED_PREFIX`` paths are never redirected)."""
    redirect_status: int = 307
    redirect_session_to: str | None = None
    """``startSession`` is answered ``redirect_status`` to this URL."""
    echo_errors: bool = False
    """Every authorised data request is answered 400 with a ``title`` and
    ``validationErrors`` that echo the request's headers (the token included) and values
    (postal codes, last4, iin, whole documents), naming each customer."""
    ok_with_errors_ids: frozenset[str] = frozenset()
    """Customers named in the ``validationErrors`` of a 200 and NOT accepted; the others of
    the request are accepted. With ``anonymous_errors`` the errors name nobody and nothing
    of that request is accepted."""
    expiry_as_500: bool = False
    """An unknown or expired session token is answered 500 ``SessionValidationException``."""
    jwt_tokens: bool = False
    """Session tokens are JWT-shaped, carrying ``sessionExpirationTimestamp`` (epoch s)."""
    seed: int | None = 0

    def __post_init__(self) -> None:
        shares = (self.error_share, self.rate_limit_share, self.drop_share)
        if any(not 0.0 <= share <= 1.0 for share in shares) or sum(shares) > 1.0:
            raise ValueError("fault shares must each be within 0..1 and sum to at most 1")
        if self.latency < 0 or self.retry_after < 0 or self.token_lifetime <= 0:
            raise ValueError("latency and retry_after must be >= 0, token_lifetime > 0")


def fault_arguments(faults: StubFaults) -> list[str]:
    """The stand-in's command-line flags (``customer-sync stub-api``) that reproduce ``faults``."""
    arguments = [
        f"--latency={faults.latency}",
        f"--fail-share={faults.error_share}",
        f"--rate-limit-share={faults.rate_limit_share}",
        f"--retry-after={faults.retry_after}",
        f"--drop-share={faults.drop_share}",
        f"--token-lifetime={faults.token_lifetime}",
    ]
    arguments += [f"--reject-id={customer_id}" for customer_id in sorted(faults.reject_ids)]
    arguments += [f"--ok-with-errors-id={cid}" for cid in sorted(faults.ok_with_errors_ids)]
    arguments += [f"--redirect-to={faults.redirect_to}"] if faults.redirect_to else []
    arguments += (
        [f"--redirect-session-to={faults.redirect_session_to}"]
        if faults.redirect_session_to
        else []
    )
    arguments += [f"--redirect-status={faults.redirect_status}"]
    arguments += ["--anonymous-errors"] if faults.anonymous_errors else []
    arguments += ["--echo-errors"] if faults.echo_errors else []
    arguments += ["--expiry-as-500"] if faults.expiry_as_500 else []
    arguments += ["--jwt-tokens"] if faults.jwt_tokens else []
    return arguments


def faults_from_args(args: argparse.Namespace) -> StubFaults:
    """``StubFaults`` from the stand-in's options (declared once, in
    ``customer_sync/cli/stand_in.py``, for ``stub-api`` and ``demo``)."""
    return StubFaults(
        error_share=args.fail_share,
        rate_limit_share=args.rate_limit_share,
        retry_after=args.retry_after,
        latency=args.latency,
        drop_share=args.drop_share,
        token_lifetime=args.token_lifetime,
        reject_ids=frozenset(args.reject_id),
        anonymous_errors=args.anonymous_errors,
        redirect_to=args.redirect_to,
        redirect_status=args.redirect_status,
        redirect_session_to=args.redirect_session_to,
        echo_errors=args.echo_errors,
        ok_with_errors_ids=frozenset(args.ok_with_errors_id),
        expiry_as_500=args.expiry_as_500,
        jwt_tokens=args.jwt_tokens,
        seed=None,
    )
