"""The partner contract in one place: field orders, enums, limits and our decisions.

Every value here comes from the partner's pages, written down in our own words in
docs/partner-contract.md. Where the pages are silent, the decision we took is marked
``DECISION``; change it here and nowhere else (and in that document).

Reviewed rule by rule against the partner's own create example (tests/golden/, which the
golden test sends through the whole flow): nothing below refuses it. In particular ids
are opaque (its ``sourceCustomerId`` ``afa2r21-...`` is not a UUID, so no id is checked
for a shape), ``enrollmentEndDate`` may be set while ACTIVE (no rule ties the two), a
joint account may list a holder who is not in the extract, and its 5-digit postal code,
36-character ``sourcePortfolioId`` and ``"2345"``/``"123456"`` card digits all pass.
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

# --- identifier lengths -------------------------------------------------------------------
# DECISION: every id (customer, parent, account, holder, organization, portfolio) holds
# 1 to 120 characters. 120 is the slot of the partner's reward-settlement file; the API
# itself names no limit.
MAX_ID_LENGTH: Final = 120
# DECISION (corrected): the settlement file's portfolio slot is 20 characters, but that is
# a report's width, not an API limit: the partner's own create example sends a 36-character
# sourcePortfolioId. Portfolio ids follow MAX_ID_LENGTH like every id; longer than this
# they are still sent, and the run warns once, with a count, that the settlement file
# will cut them.
SETTLEMENT_PORTFOLIO_WIDTH: Final = 20
# DECISION: the stand-in partner has always refused postal codes over 20 characters; the
# pages give no limit, and 20 holds every national format. Validation and the stand-in
# share this one rule. No shape is imposed (the example's "78753" is 5 digits; other
# countries use letters and spaces), leading zeros are kept.
MAX_POSTAL_CODE_LENGTH: Final = 20
# DECISION: ids and postal codes are opaque text, but never hold a C0 control character
# (U+0000..U+001F: NUL, TAB, CR, LF, ...). Such a value is an export fault (a NUL-padded
# field, a line break inside a quoted cell); sent, it would end up in the partner's
# fixed-width settlement file. DEL and non-ASCII text are allowed.
CONTROL_CHARACTER_MAX: Final = 0x1F

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
# DECISION: redemptionEligibility is the optional Customer field the partner announces on
# its "upcoming features" page. It is sent only for customers whose extract has a value:
# an absent column and an empty cell both leave the key out of the document (the partner
# calls it optional and gives null no meaning; leaving it out is what every run before
# this field sent, so the fingerprints of existing customers do not change).
REDEMPTION_ELIGIBILITIES: Final = ("ALL", "NONE")
# first digit of the card number: 3 Amex, 4 Visa, 5 Mastercard, 6 Discover.
# DECISION: sent as a JSON integer (the Card page, the Card table and the partner's OpenAPI
# say int32), although the create example and one update page show the string "3"; the
# golden test pins that one known difference. The switch is transforms.nest.INTEGER_FIELDS
# (and customer_sync.schemas.document's NetworkIdentifier).
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
    "redemptionEligibility",
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
# example but absent from the field table); sourceCustomerIds may be absent (primary alone);
# redemptionEligibility is optional (see REDEMPTION_ELIGIBILITIES).
OPTIONAL_COLUMNS: Final = {
    "customers": ("sourceParentCustomerId", "enrollmentEndDate", "redemptionEligibility"),
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
# Columns that must hold no control character (CONTROL_CHARACTER_MAX): every id, the
# organization and the postal code. sourceCustomerIds is checked item by item (its
# separator is not a control character, so the whole cell can be checked at once).
CONTROL_FREE_COLUMNS: Final = {
    "customers": ("sourceCustomerId", "sourceParentCustomerId", "organizationId", "postalCode"),
    "accounts": (
        "sourceAccountId",
        "sourceCustomerIds",
        "primarySourceCustomerId",
        "sourcePortfolioId",
    ),
    "cards": ("sourceAccountId", "sourceCustomerId"),
}
# Row number column added by the readers: 1-based data row (header excluded).
ROW_COLUMN: Final = "_row"
