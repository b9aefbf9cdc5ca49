"""The outgoing Customer -> Account -> Card documents, as the partner's pages describe them.

Strict pydantic v2 models: no coercion (``networkIdentifier`` must be a JSON integer, ids
must be JSON strings), unknown fields refused, enums taken from ``schemas.contract``.
The stand-in server validates every request body with ``CustomersRequest``; tests check
what nest produces against ``CustomerDocument``.

Error messages never carry the offending value (pydantic's ``msg`` does not, and ours do
not either), so they are safe to log even for ``last4``, ``iin`` and ``postalCode``.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas import contract

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
)
if tuple(contract.NETWORK_IDENTIFIERS) != tuple(
    range(min(contract.NETWORK_IDENTIFIERS), max(contract.NETWORK_IDENTIFIERS) + 1)
):  # pragma: no cover - the bounds above assume a contiguous range
    raise RuntimeError("contract.NETWORK_IDENTIFIERS is no longer a contiguous range")
for _literal, _values in _ENUMS:
    if get_args(_literal) != tuple(_values):  # pragma: no cover - guards an edit mistake
        raise RuntimeError(f"schemas.document enum {get_args(_literal)} != contract {_values}")

# UTC, second precision, literal Z (contract.DATETIME_FORMAT). The ranges refuse obvious
# nonsense (month 13, hour 24) without a Python call per value. [0-9], not \d: the Rust
# regex engine's \d matches every Unicode digit.
DATETIME_PATTERN: Final = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)Z$"
)

Id = Annotated[str, StringConstraints(min_length=1, max_length=contract.MAX_ID_LENGTH)]
PortfolioId = Annotated[
    str, StringConstraints(min_length=1, max_length=contract.MAX_PORTFOLIO_ID_LENGTH)
]
DateTime = Annotated[str, StringConstraints(pattern=DATETIME_PATTERN)]
PostalCode = Annotated[str, StringConstraints(min_length=1, max_length=20)]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
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
        _check_close_date(self.status, self.accountCloseDate, "accountCloseDate")
        for index, card in enumerate(self.cards):
            if card.sourceAccountId != self.sourceAccountId:
                raise ValueError(f"cards[{index}].sourceAccountId must be the account's id")
            if card.sourceCustomerId not in self.sourceCustomerIds:
                raise ValueError(
                    f"cards[{index}].sourceCustomerId must be one of the account's holders"
                )
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
    accounts: list[AccountDocument]

    @model_validator(mode="after")
    def _consistent(self) -> CustomerDocument:
        if self.sourceParentCustomerId is None and "sourceParentCustomerId" in (
            self.model_fields_set
        ):
            raise ValueError("sourceParentCustomerId must be a string or absent, not null")
        for index, account in enumerate(self.accounts):
            if self.sourceCustomerId not in account.sourceCustomerIds:
                raise ValueError(
                    f"accounts[{index}].sourceCustomerIds must include the customer's own id"
                )
        return self


class CustomersRequest(BaseModel):
    """The body of ``POST``/``PUT /v2/data/customers``: 1 to 50 customers."""

    model_config = _STRICT

    customers: Annotated[
        list[CustomerDocument],
        Field(min_length=1, max_length=contract.MAX_CUSTOMERS_PER_REQUEST),
    ]
