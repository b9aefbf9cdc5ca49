"""The partner contract in one place: field orders, enums, limits and our decisions.

Every value here comes from ../shared/partner-api.md. Where the partner's pages are
silent, the decision we took is marked ``DECISION``; change it here and nowhere else.
"""

from __future__ import annotations

from typing import Final

# --- request limits -------------------------------------------------------------------
MAX_CUSTOMERS_PER_REQUEST: Final = 50
CUSTOMERS_PATH: Final = "/v2/data/customers"
START_SESSION_PATH: Final = "/v2/session/startSession"
SESSION_SCOPES: Final = ("api:institution",)
SESSION_TOKEN_HEADER: Final = "X-CDLX-Session-Token"  # noqa: S105 - a header name
REQUEST_ID_HEADER: Final = "X-CDLX-Request-Id"
SESSION_LIFETIME_SECONDS: Final = 3600

# --- identifier lengths (the partner's settlement file) --------------------------------
MAX_ID_LENGTH: Final = 120
MAX_PORTFOLIO_ID_LENGTH: Final = 20

# --- enums ------------------------------------------------------------------------------
ENROLLMENT_OPT_IN_STATUSES: Final = ("ACTIVE", "INACTIVE")
ALERT_OPT_IN_STATUSES: Final = (
    "ALL",
    "NEW",
    "ACTIVATED",
    "EXPIRING",
    "REDEMPTION",
    "CLOSE_THE_LOOP",
    "MISSED_OPPORTUNITY",
)
TARGETING_INDICATORS: Final = ("TARGET", "DO_NOT_TARGET")
ACCOUNT_STATUSES: Final = ("OPEN", "CLOSED", "DISPUTE", "FRAUD")
ACCOUNT_TYPES: Final = ("PPD", "MMA", "CRD", "DDA", "SAV", "SBCRD", "SBDDA", "SBS")
CARD_TYPES: Final = ("CREDIT", "DEBIT", "PREPAID")
CARD_STATUSES: Final = ("OPEN", "CLOSED")
# first digit of the card number: 3 Amex, 4 Visa, 5 Mastercard, 6 Discover
NETWORK_IDENTIFIERS: Final = (3, 4, 5, 6)
IIN_LENGTHS: Final = (6, 8)

# DECISION: an account or card whose status is CLOSED carries a close date; any other
# status must not.
CLOSED_STATUS: Final = "CLOSED"

# --- formats ------------------------------------------------------------------------------
# Date-times go out as UTC, second precision, with a literal Z.
DATETIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
# List fields travel as this separator inside one CSV cell.
LIST_SEPARATOR: Final = "|"

# --- field orders of the outgoing documents (the partner's tables, top to bottom) ----------
CUSTOMER_FIELDS: Final = (
    "sourceCustomerId",
    "sourceParentCustomerId",
    "organizationId",
    "postalCode",
    "country",
    "customerCreationDate",
    "enrollmentStartDate",
    "enrollmentEndDate",
    "enrollmentOptInStatus",
    "alertOptInStatus",
    "targetingIndicator",
    "accounts",
)
ACCOUNT_FIELDS: Final = (
    "sourceAccountId",
    "sourceCustomerIds",
    "primarySourceCustomerId",
    "status",
    "type",
    "sourcePortfolioId",
    "accountOpenDate",
    "accountCloseDate",
    "cards",
)
CARD_FIELDS: Final = (
    "sourceAccountId",
    "sourceCustomerId",
    "last4",
    "iin",
    "cardType",
    "status",
    "networkIdentifier",
    "openDate",
    "closeDate",
)

# --- the flat extracts: the columns each table carries (partner names) ---------------------
TABLES: Final = ("customers", "accounts", "cards")
CUSTOMER_COLUMNS: Final = tuple(f for f in CUSTOMER_FIELDS if f != "accounts")
ACCOUNT_COLUMNS: Final = tuple(f for f in ACCOUNT_FIELDS if f != "cards")
CARD_COLUMNS: Final = CARD_FIELDS
COLUMNS: Final = {
    "customers": CUSTOMER_COLUMNS,
    "accounts": ACCOUNT_COLUMNS,
    "cards": CARD_COLUMNS,
}
# Columns a file may leave out. DECISION: sourceParentCustomerId is optional (it is in every
# example but absent from the field table); sourceCustomerIds may be absent (primary alone).
OPTIONAL_COLUMNS: Final = {
    "customers": ("sourceParentCustomerId", "enrollmentEndDate"),
    "accounts": ("sourceCustomerIds", "accountCloseDate"),
    "cards": ("closeDate",),
}
# DECISION: an empty alertOptInStatus is allowed and goes out as [] (opted out of all).
LIST_COLUMNS: Final = {
    "customers": ("alertOptInStatus",),
    "accounts": ("sourceCustomerIds",),
    "cards": (),
}
# Columns whose values are never echoed into logs, errors, rejects or artifacts.
SENSITIVE_COLUMNS: Final = frozenset({"last4", "iin", "postalCode"})
# The key that names a row in rejects and messages.
ID_COLUMNS: Final = {
    "customers": ("sourceCustomerId",),
    "accounts": ("sourceAccountId",),
    "cards": ("sourceAccountId", "sourceCustomerId"),
}
# Row number column added by the readers: 1-based data row (header excluded).
ROW_COLUMN: Final = "_row"
