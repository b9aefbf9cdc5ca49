"""The outgoing Customer -> Account -> Card documents, as the partner's pages describe them.

Strict pydantic v2 models: no coercion (``networkIdentifier`` must be a JSON integer, ids
must be JSON strings), unknown fields refused, enums taken from ``customer_sync.schemas.contract``.
The stand-in server validates every request body with ``CustomersRequest``; tests check
what nest produces against ``CustomerDocument``.

Every rule of the extracts' validation (``schemas.extracts``) that a document can show is
here too, with the same limits from ``schemas.contract``, so validation and the stand-in
never disagree: ids 1-120 characters without control characters, postal codes at most
``MAX_POSTAL_CODE_LENGTH``, real calendar dates (``customer_sync.schemas.datetimes.UTC_PATTERN``),
assigned ISO 3166-1 alpha-2 countries, close/end dates not before open/start dates, an
account once per customer and a card once per holder and last4. Rules about a whole
request (a customer twice, a PUT of a customer never created) are ``request_problems``.

Error messages never carry the offending value (pydantic's ``msg`` does not, and ours do
not either), so they are safe to log even for ``last4``, ``iin`` and ``postalCode``.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Annotated, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from customer_sync.schemas import contract
from customer_sync.schemas.countries import COUNTRY_CODES
from customer_sync.schemas.datetimes import UTC_PATTERN

# Literal types keep enum checks inside pydantic-core (fast); the asserts below tie them
# to the contract so they cannot drift apart.
EnrollmentOptInStatus = Literal["ACTIVE", "INACTIVE"]
AlertOptInStatus = Literal[
    "ALL",
    "NEW",
    "ACTIVATED",
    "EXPIRING",
    "REDEMPTION",
    "CLOSE_THE_LOOP",
    "MISSED_OPPORTUNITY",
]
TargetingIndicator = Literal["TARGET", "DO_NOT_TARGET"]
AccountStatus = Literal["OPEN", "CLOSED", "DISPUTE", "FRAUD"]
AccountType = Literal["PPD", "MMA", "CRD", "DDA", "SAV", "SBCRD", "SBDDA", "SBS"]
CardType = Literal["CREDIT", "DEBIT", "PREPAID"]
CardStatus = Literal["OPEN", "CLOSED"]
RedemptionEligibility = Literal["ALL", "NONE"]
# A strict int with bounds, not a Literal: pydantic's Literal[4] accepts the JSON float 4.0.
NetworkIdentifier = Annotated[
    int,
    Field(ge=min(contract.NETWORK_IDENTIFIERS), le=max(contract.NETWORK_IDENTIFIERS)),
]

_ENUMS: Final = (
    (EnrollmentOptInStatus, contract.ENROLLMENT_OPT_IN_STATUSES),
    (AlertOptInStatus, contract.ALERT_OPT_IN_STATUSES),
    (TargetingIndicator, contract.TARGETING_INDICATORS),
    (AccountStatus, contract.ACCOUNT_STATUSES),
    (AccountType, contract.ACCOUNT_TYPES),
    (CardType, contract.CARD_TYPES),
    (CardStatus, contract.CARD_STATUSES),
    (RedemptionEligibility, contract.REDEMPTION_ELIGIBILITIES),
)
if tuple(contract.NETWORK_IDENTIFIERS) != tuple(
    range(min(contract.NETWORK_IDENTIFIERS), max(contract.NETWORK_IDENTIFIERS) + 1)
):  # pragma: no cover - the bounds above assume a contiguous range
    raise RuntimeError("contract.NETWORK_IDENTIFIERS is no longer a contiguous range")
for _literal, _values in _ENUMS:
    if get_args(_literal) != tuple(_values):  # pragma: no cover - guards an edit mistake
        raise RuntimeError(
            f"customer_sync.schemas.document enum {get_args(_literal)} != contract {_values}"
        )

# UTC, second precision, literal Z (contract.DATETIME_FORMAT), and a real calendar date
# (month lengths, leap years; no second 60): the very rule validation applies to the
# normalised extracts, so a date validation passes is never refused here, nor the reverse.
# It runs inside pydantic-core (no Python call per value).
DATETIME_PATTERN: Final = UTC_PATTERN

# No C0 control character anywhere (contract.CONTROL_CHARACTER_MAX), as validation's
# control_characters rule.
_CONTROL_FREE: Final = f"^[^\\x00-\\x{contract.CONTROL_CHARACTER_MAX:02x}]*$"


def _assigned_country(code: str) -> str:
    if code not in COUNTRY_CODES:
        raise ValueError("is not an assigned ISO 3166-1 alpha-2 country code")
    return code


Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=contract.MAX_ID_LENGTH, pattern=_CONTROL_FREE),
]
# DECISION (contract.SETTLEMENT_PORTFOLIO_WIDTH): a portfolio id is an id like any other.
PortfolioId = Id
DateTime = Annotated[str, StringConstraints(pattern=DATETIME_PATTERN)]
PostalCode = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=contract.MAX_POSTAL_CODE_LENGTH, pattern=_CONTROL_FREE
    ),
]
Country = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{2}$"), AfterValidator(_assigned_country)
]
Last4 = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]
Iin = Annotated[str, StringConstraints(pattern=r"^([0-9]{6}|[0-9]{8})$")]

# hide_input_in_errors: str(ValidationError) would otherwise print last4, iin, postalCode.
_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True, hide_input_in_errors=True)


def _check_close_date(status: str, close_date: str | None, field: str) -> None:
    """DECISION (contract.CLOSED_STATUS): CLOSED carries a close date, any other status none."""
    if status == contract.CLOSED_STATUS and close_date is None:
        raise ValueError(f"{field} is required when status is {contract.CLOSED_STATUS}")
    if status != contract.CLOSED_STATUS and close_date is not None:
        raise ValueError(f"{field} must be null unless status is {contract.CLOSED_STATUS}")


def _check_not_before(later: str | None, earlier: str, field: str, other: str) -> None:
    """Validation's close_not_before_open / end_not_before_start: in the one fixed-width UTC
    form, text order is time order."""
    if later is not None and later < earlier:
        raise ValueError(f"{field} is before {other}")


class CardDocument(BaseModel):
    """One card of an account, held by one of the account's holders."""

    model_config = _STRICT

    sourceAccountId: Id
    sourceCustomerId: Id
    last4: Last4
    iin: Iin
    cardType: CardType
    status: CardStatus
    networkIdentifier: NetworkIdentifier
    openDate: DateTime
    closeDate: DateTime | None = None

    @model_validator(mode="after")
    def _close_date_iff_closed(self) -> CardDocument:
        _check_close_date(self.status, self.closeDate, "closeDate")
        _check_not_before(self.closeDate, self.openDate, "closeDate", "openDate")
        return self


class AccountDocument(BaseModel):
    """One account; a joint account appears, identical, under each of its holders."""

    model_config = _STRICT

    sourceAccountId: Id
    sourceCustomerIds: Annotated[list[Id], Field(min_length=1)]
    primarySourceCustomerId: Id
    status: AccountStatus
    type: AccountType
    sourcePortfolioId: PortfolioId
    accountOpenDate: DateTime
    accountCloseDate: DateTime | None = None
    cards: list[CardDocument]

    @model_validator(mode="after")
    def _consistent(self) -> AccountDocument:
        if self.primarySourceCustomerId not in self.sourceCustomerIds:
            raise ValueError("primarySourceCustomerId must be one of sourceCustomerIds")
        if len(set(self.sourceCustomerIds)) != len(self.sourceCustomerIds):
            raise ValueError("sourceCustomerIds lists a holder more than once")
        _check_close_date(self.status, self.accountCloseDate, "accountCloseDate")
        _check_not_before(
            self.accountCloseDate, self.accountOpenDate, "accountCloseDate", "accountOpenDate"
        )
        seen_cards: set[tuple[str, str]] = set()
        for index, card in enumerate(self.cards):
            if card.sourceAccountId != self.sourceAccountId:
                raise ValueError(f"cards[{index}].sourceAccountId must be the account's id")
            if card.sourceCustomerId not in self.sourceCustomerIds:
                raise ValueError(
                    f"cards[{index}].sourceCustomerId must be one of the account's holders"
                )
            key = (card.sourceCustomerId, card.last4)
            if key in seen_cards:  # validation's unique card key (account, holder, last4)
                raise ValueError(f"cards[{index}] repeats the holder and last4 of another card")
            seen_cards.add(key)
        return self


class CustomerDocument(BaseModel):
    """One customer with the full tree of its accounts and their cards."""

    model_config = _STRICT

    sourceCustomerId: Id
    # DECISION: optional (absent from the field table, present in every example); when
    # present it is a string, never null.
    sourceParentCustomerId: Id | None = None
    organizationId: Id
    postalCode: PostalCode
    country: Country
    customerCreationDate: DateTime
    enrollmentStartDate: DateTime
    enrollmentEndDate: DateTime | None = None
    enrollmentOptInStatus: EnrollmentOptInStatus
    alertOptInStatus: list[AlertOptInStatus]
    targetingIndicator: TargetingIndicator
    # DECISION (contract.REDEMPTION_ELIGIBILITIES): optional; when present, ALL or NONE,
    # never null (we leave the key out instead).
    redemptionEligibility: RedemptionEligibility | None = None
    accounts: list[AccountDocument]

    @model_validator(mode="after")
    def _consistent(self) -> CustomerDocument:
        if self.sourceParentCustomerId is None and "sourceParentCustomerId" in (
            self.model_fields_set
        ):
            raise ValueError("sourceParentCustomerId must be a string or absent, not null")
        if self.redemptionEligibility is None and "redemptionEligibility" in (
            self.model_fields_set
        ):
            raise ValueError("redemptionEligibility must be ALL, NONE or absent, not null")
        _check_not_before(
            self.enrollmentEndDate,
            self.enrollmentStartDate,
            "enrollmentEndDate",
            "enrollmentStartDate",
        )
        seen_accounts: set[str] = set()
        for index, account in enumerate(self.accounts):
            if self.sourceCustomerId not in account.sourceCustomerIds:
                raise ValueError(
                    f"accounts[{index}].sourceCustomerIds must include the customer's own id"
                )
            if account.sourceAccountId in seen_accounts:
                raise ValueError(f"accounts[{index}] repeats the sourceAccountId of another")
            seen_accounts.add(account.sourceAccountId)
        return self


class CustomersRequest(BaseModel):
    """The body of ``POST``/``PUT /v2/data/customers``: 1 to 50 customers."""

    model_config = _STRICT

    customers: Annotated[
        list[CustomerDocument],
        Field(min_length=1, max_length=contract.MAX_CUSTOMERS_PER_REQUEST),
    ]


@dataclass(frozen=True)
class RequestProblem:
    """A rule broken by one customer of a request, seen only in the whole request."""

    index: int
    """The customer's position in the request's ``customers``."""
    customer_id: str
    field: str
    message: str
    """Says what is wrong without quoting a value."""


def request_problems(
    request: CustomersRequest, method: str, created: Container[str]
) -> list[RequestProblem]:
    """What the partner would refuse in a request whose documents are each valid.

    * a customer twice in one request (every copy after the first is named): the partner
      identifies a customer by ``sourceCustomerId``, so two versions of one customer in one
      request leave which one wins undefined;
    * DECISION: a ``PUT`` of a customer that was never created (not in ``created``): an
      update needs something to update; our runs PUT only customers the partner has
      acknowledged.
    """
    problems: list[RequestProblem] = []
    first: dict[str, int] = {}
    for index, customer in enumerate(request.customers):
        customer_id = customer.sourceCustomerId
        if customer_id in first:
            problems.append(
                RequestProblem(
                    index,
                    customer_id,
                    "sourceCustomerId",
                    f"the same customer is already customers[{first[customer_id]}] of this request",
                )
            )
            continue
        first[customer_id] = index
        if method == "PUT" and customer_id not in created:
            problems.append(
                RequestProblem(
                    index,
                    customer_id,
                    "sourceCustomerId",
                    "customer not found: PUT updates only customers created before",
                )
            )
    return problems
