"""Pandera models of the three NORMALISED flat extracts: every rule the partner contract implies.

The models run over the frames ``transforms.normalise`` produces (docs/ARCHITECTURE.md,
"Normalised frames"): text columns, date-times already in UTC ``YYYY-MM-DDTHH:MM:SSZ`` where
they could be parsed (anything else is left as written, so the ``utc_datetime`` rule names
it), list cells ``|``-joined, ``networkIdentifier`` as ``Int64``. Validate with
``lazy=True`` so every failure is reported at once.

Rule names: every check is named after the rule it enforces; ``rule_name`` gives pandera's
built-ins plain names too (``not_nullable`` -> ``required``, ``isin`` -> ``allowed_values``,
``str_length`` -> ``max_length``, the uniqueness checks -> ``unique``). ``RULES`` maps each
rule to a description that holds no values.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any, Final, Optional

import numpy as np
import pandas as pd
import pyarrow as pyarrow
import pyarrow.compute as pc

from customer_sync.schemas import contract as c
from customer_sync.schemas._pandera import Series, pandas_engine
from customer_sync.schemas._pandera import pandera_pandas as pa
from customer_sync.schemas.arrow_bytes import cell_bytes
from customer_sync.schemas.columns import TEXT_DTYPE, as_arrow, duplicated, split_list_cells
from customer_sync.schemas.countries import COUNTRY_CODES
from customer_sync.schemas.datetimes import is_utc_datetime

LAST4_PATTERN: Final = r"[0-9]{4}"
IIN_PATTERN: Final = "|".join(f"[0-9]{{{n}}}" for n in c.IIN_LENGTHS)
"""The rules of ``last4`` and ``iin`` (checked as digits and lengths: ``_digits_of_length``)."""
_ALERT_ITEM: Final = "(?:" + "|".join(c.ALERT_OPT_IN_STATUSES) + ")"
ALERT_LIST_PATTERN: Final = f"(?:{_ALERT_ITEM}(?:\\|{_ALERT_ITEM})*)?"
HOLDER_LIST_PATTERN: Final = f"[^|]{{1,{c.MAX_ID_LENGTH}}}(?:\\|[^|]{{1,{c.MAX_ID_LENGTH}}})*"
_COUNTRY_SET: Final = pyarrow.array(sorted(COUNTRY_CODES), pyarrow.large_string())

CARD_KEY: Final = ("sourceAccountId", "sourceCustomerId", "last4")
"""Cards are unique on these columns together."""
CARD_KEY_CHECK: Final = "unique_card_key"
"""The name of the card-key check (its rule is ``unique``)."""

_ID_LENGTH: Final = {"max_value": c.MAX_ID_LENGTH}
_POSTAL_CODE_LENGTH: Final = {"max_value": c.MAX_POSTAL_CODE_LENGTH}
CONTROL_CHARACTERS_PATTERN: Final = f"[\\x00-\\x{c.CONTROL_CHARACTER_MAX:02x}]"
"""A regex (RE2 and Rust syntax) that finds a C0 control character anywhere in a cell."""

RULES: Final[dict[str, str]] = {
    "required": "is required",
    "allowed_values": "is not an allowed value",
    "max_length": "is too long",
    "unique": "appears on more than one row",
    "control_characters": "holds a control character (such as NUL, tab, CR or LF)",
    "utc_datetime": "is not an ISO-8601 date or date-time",
    "country_code": "is not an ISO 3166-1 alpha-2 country code",
    "last4_digits": "must be exactly 4 digits",
    "iin_digits": "must be 6 or 8 digits",
    "alert_statuses": f"may only list {', '.join(c.ALERT_OPT_IN_STATUSES)}",
    "holder_ids_length": f"lists a holder id longer than {c.MAX_ID_LENGTH} characters",
    "holders_listed_once": "lists a holder more than once",
    "primary_among_holders": "primarySourceCustomerId is not among sourceCustomerIds",
    "close_date_iff_closed": "a close date is required when status is CLOSED, and only then",
    "close_not_before_open": "the close date is before the open date",
    "end_not_before_start": "enrollmentEndDate is before enrollmentStartDate",
}
"""Every rule a model can report, by check name, with a description that holds no values."""

ROW_RULE_COLUMNS: Final[dict[str, dict[str, str]]] = {
    "customers": {"end_not_before_start": "enrollmentEndDate"},
    "accounts": {
        "primary_among_holders": "primarySourceCustomerId",
        "close_date_iff_closed": "accountCloseDate",
        "close_not_before_open": "accountCloseDate",
    },
    "cards": {
        "close_date_iff_closed": "closeDate",
        "close_not_before_open": "closeDate",
    },
}
"""The column a row-level (dataframe) rule is reported against, per table."""

ALLOWED_VALUES: Final[dict[str, tuple[object, ...]]] = {
    "enrollmentOptInStatus": c.ENROLLMENT_OPT_IN_STATUSES,
    "targetingIndicator": c.TARGETING_INDICATORS,
    "type": c.ACCOUNT_TYPES,
    "cardType": c.CARD_TYPES,
    "networkIdentifier": c.NETWORK_IDENTIFIERS,
    "redemptionEligibility": c.REDEMPTION_ELIGIBILITIES,
}
"""The enum of each column checked with ``isin`` (``status`` differs per table: see
``STATUS_VALUES``)."""
STATUS_VALUES: Final[dict[str, tuple[str, ...]]] = {
    "accounts": c.ACCOUNT_STATUSES,
    "cards": c.CARD_STATUSES,
}


@dataclasses.dataclass(frozen=True)
class Text(pandas_engine.STRING):
    """pandas' text dtype (``customer_sync.schemas.columns.TEXT_DTYPE``), checked as a whole column.

    Pandera's own ``str`` check answers with one boolean per cell even when the column's
    dtype is right, then builds failure cases and a message from them: about half a
    millisecond per 100k cells and column, on every validation. The dtype is a property of
    the column, so one comparison decides it.
    """

    def __post_init__(self) -> None:
        object.__setattr__(self, "storage", "pyarrow")
        object.__setattr__(self, "type", TEXT_DTYPE)

    def check(self, pandera_dtype: Any, data_container: Any = None) -> bool:
        try:
            resolved = pandas_engine.Engine.dtype(pandera_dtype)
        except TypeError:
            return False
        return bool(resolved.type == TEXT_DTYPE)


_CHECK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*")
_BUILT_IN_RULES: Final = {
    "not_nullable": "required",
    "isin": "allowed_values",
    "str_length": "max_length",
    "field_uniqueness": "unique",
    "multiple_fields_uniqueness": "unique",
    CARD_KEY_CHECK: "unique",
}


def rule_name(check: str) -> str:
    """The rule (a key of ``RULES``) of a pandera failure-case ``check`` string.

    Pandera's built-ins get plain names (``isin(('A', 'B'))`` -> ``allowed_values``); our
    named checks keep their names.
    """
    match = _CHECK_NAME.match(check)
    name = match.group(0) if match else check
    return _BUILT_IN_RULES.get(name, name)


# --- vectorised predicates shared by the models ---------------------------------------
# Arrow kernels straight on the column's Arrow data: pandas' ``.str`` methods run the same
# kernels but convert their answers to and from nullable pandas arrays on every call.


def _fullmatch(values: pd.Series, pattern: str) -> pd.Series:
    """Where a cell matches ``pattern`` whole (as ``Series.str.fullmatch``); missing: True
    (missing cells are the ``required`` rule's business)."""
    hits = pc.match_substring_regex(as_arrow(values), f"^(?:{pattern})$").fill_null(True)
    return pd.Series(np.asarray(hits, dtype=bool), index=values.index)


def _digits_of_length(values: pd.Series, lengths: tuple[int, ...]) -> pd.Series:
    """Where a cell is ASCII digits only, as many as one of ``lengths`` (missing: True).

    The rule of ``[0-9]{n}|...`` without a regex: an ASCII test and a length, ten times
    cheaper over a card table.
    """
    cells = as_arrow(values)
    sized = np.isin(np.asarray(pc.binary_length(cells).fill_null(0)), lengths)
    digits = np.asarray(pc.ascii_is_decimal(cells).fill_null(False), dtype=bool)
    missing = np.asarray(cells.is_null(), dtype=bool)
    return pd.Series((sized & digits) | missing, index=values.index)


def control_free(values: pd.Series) -> pd.Series:
    """Where a cell holds no C0 control character (U+0000..U+001F); missing: True.

    One scan of the column's bytes decides the usual case (no byte below 0x20 at all: every
    cell is clean); only then is the regex run over the cells. UTF-8 never uses bytes below
    0x80 inside a multi-byte character, so a control byte is a control character.
    """
    cells = as_arrow(values)
    clean = np.ones(len(cells), dtype=bool)
    data = _data_bytes(cells)
    if len(data) and data.min() <= c.CONTROL_CHARACTER_MAX:
        hits = pc.match_substring_regex(cells, CONTROL_CHARACTERS_PATTERN).fill_null(False)
        clean = ~np.asarray(hits, dtype=bool)
    return pd.Series(clean, index=values.index)


def _data_bytes(cells: pyarrow.Array) -> np.ndarray:
    """The bytes of every cell of a large-string array together (null cells' bytes too, so a
    scan of them can only err towards running the exact check)."""
    return cell_bytes(cells).values


def _utc_shaped(cells: pyarrow.Array) -> np.ndarray:
    """Cells that look like ``YYYY-MM-DDTHH:MM:SSZ`` (20 characters ending in Z); cheap."""
    shaped = pc.and_(pc.equal(pc.binary_length(cells), 20), pc.ends_with(cells, "Z"))
    return np.asarray(shaped.fill_null(False), dtype=bool)


def _not_before(later: pd.Series, earlier: pd.Series) -> pd.Series:
    """False only where both cells are UTC date-times and ``later`` < ``earlier``.

    Cells of another shape are left to ``utc_datetime``; in this one fixed-width form, text
    order is time order. The shapes are looked at only where the text order says "before".
    """
    later_cells, earlier_cells = as_arrow(later), as_arrow(earlier)
    before = np.asarray(pc.less(later_cells, earlier_cells).fill_null(False), dtype=bool)
    if before.any():
        where = np.flatnonzero(before)
        take = pyarrow.array(where)
        comparable = _utc_shaped(later_cells.take(take)) & _utc_shaped(earlier_cells.take(take))
        before[where] = comparable
    return pd.Series(~before, index=later.index)


def _close_iff_closed(status: pd.Series, close: pd.Series) -> pd.Series:
    closed = status.eq(c.CLOSED_STATUS).fillna(False).astype(bool)
    return pd.Series(closed.to_numpy() == close.notna().to_numpy(), index=status.index)


def _separated(cells: pyarrow.Array) -> np.ndarray:
    """Cells holding the list separator (several items); missing: False."""
    several = pc.match_substring(cells, c.LIST_SEPARATOR).fill_null(False)
    return np.asarray(several, dtype=bool)


_CANONICAL_ALERT_LISTS: Final = pyarrow.array(
    [
        c.LIST_SEPARATOR.join(chosen)
        for size in range(len(c.ALERT_OPT_IN_STATUSES) + 1)
        for chosen in itertools.combinations(sorted(c.ALERT_OPT_IN_STATUSES), size)
    ],
    pyarrow.large_string(),
)
"""Every set of alert statuses as normalising writes it (sorted, once each): 128 strings."""


# --- the models ----------------------------------------------------------------------------


class CustomerExtract(pa.DataFrameModel):
    """One row per customer (partner Customer, without its accounts)."""

    sourceCustomerId: Series[Text] = pa.Field(unique=True, str_length=_ID_LENGTH)
    sourceParentCustomerId: Series[Text] = pa.Field(nullable=True, str_length=_ID_LENGTH)
    organizationId: Series[Text] = pa.Field(str_length=_ID_LENGTH)
    postalCode: Series[Text] = pa.Field(str_length=_POSTAL_CODE_LENGTH)
    country: Series[Text]
    customerCreationDate: Series[Text]
    enrollmentStartDate: Series[Text]
    enrollmentEndDate: Series[Text] = pa.Field(nullable=True)
    enrollmentOptInStatus: Series[Text] = pa.Field(isin=c.ENROLLMENT_OPT_IN_STATUSES)
    alertOptInStatus: Series[Text]
    targetingIndicator: Series[Text] = pa.Field(isin=c.TARGETING_INDICATORS)
    # Optional: frames built without it (tests, notebooks) are valid; the readers add it
    # all-missing when a file leaves it out, which nest treats as absent.
    redemptionEligibility: Optional[Series[Text]] = pa.Field(  # noqa: UP045 - pandera
        nullable=True, isin=c.REDEMPTION_ELIGIBILITIES
    )
    row: Series[np.int64] = pa.Field(alias=c.ROW_COLUMN)

    class Config:
        strict = True
        coerce = False

    @pa.check(
        "customerCreationDate", "enrollmentStartDate", "enrollmentEndDate", name="utc_datetime"
    )
    def _dates(cls, values: Series[str]) -> Series[bool]:
        return is_utc_datetime(values)  # type: ignore[return-value]

    @pa.check(*c.CONTROL_FREE_COLUMNS["customers"], name="control_characters")
    def _control_free(cls, values: Series[str]) -> Series[bool]:
        return control_free(values)  # type: ignore[return-value]

    @pa.check("country", name="country_code")
    def _country(cls, values: Series[str]) -> Series[bool]:
        known = pc.is_in(as_arrow(values), value_set=_COUNTRY_SET)
        return pd.Series(np.asarray(known), index=values.index)  # type: ignore[return-value]

    @pa.check("alertOptInStatus", name="alert_statuses")
    def _alerts(cls, values: Series[str]) -> Series[bool]:
        # normalised lists are one of 128 canonical strings; only others need the regex
        cells = as_arrow(values)
        ok = np.asarray(pc.is_in(cells, value_set=_CANONICAL_ALERT_LISTS), dtype=bool)
        if not ok.all():
            rest = np.flatnonzero(~ok)
            ok[rest] = _fullmatch(values.iloc[rest], ALERT_LIST_PATTERN).to_numpy()
        return pd.Series(ok, index=values.index)  # type: ignore[return-value]

    @pa.dataframe_check(name="end_not_before_start")
    def _end_after_start(cls, frame: pd.DataFrame) -> Series[bool]:
        return _not_before(  # type: ignore[return-value]
            frame["enrollmentEndDate"], frame["enrollmentStartDate"]
        )


class AccountExtract(pa.DataFrameModel):
    """One row per account; ``sourceCustomerIds`` lists every holder, primary included."""

    sourceAccountId: Series[Text] = pa.Field(unique=True, str_length=_ID_LENGTH)
    sourceCustomerIds: Series[Text]
    primarySourceCustomerId: Series[Text] = pa.Field(str_length=_ID_LENGTH)
    status: Series[Text] = pa.Field(isin=c.ACCOUNT_STATUSES)
    type: Series[Text] = pa.Field(isin=c.ACCOUNT_TYPES)
    sourcePortfolioId: Series[Text] = pa.Field(str_length=_ID_LENGTH)
    accountOpenDate: Series[Text]
    accountCloseDate: Series[Text] = pa.Field(nullable=True)
    row: Series[np.int64] = pa.Field(alias=c.ROW_COLUMN)

    class Config:
        strict = True
        coerce = False

    @pa.check("accountOpenDate", "accountCloseDate", name="utc_datetime")
    def _dates(cls, values: Series[str]) -> Series[bool]:
        return is_utc_datetime(values)  # type: ignore[return-value]

    @pa.check(*c.CONTROL_FREE_COLUMNS["accounts"], name="control_characters")
    def _control_free(cls, values: Series[str]) -> Series[bool]:
        return control_free(values)  # type: ignore[return-value]

    @pa.check("sourceCustomerIds", name="holder_ids_length")
    def _holder_lengths(cls, values: Series[str]) -> Series[bool]:
        # a cell of one holder matches HOLDER_LIST_PATTERN iff it has 1-120 characters;
        # only lists need the regex
        cells = as_arrow(values)
        lengths = np.asarray(pc.utf8_length(cells).fill_null(1), dtype=np.int64)
        ok = (lengths >= 1) & (lengths <= c.MAX_ID_LENGTH)
        several = np.flatnonzero(_separated(cells))
        if len(several):
            ok[several] = _fullmatch(values.iloc[several], HOLDER_LIST_PATTERN).to_numpy()
        return pd.Series(ok, index=values.index)  # type: ignore[return-value]

    @pa.check("sourceCustomerIds", name="holders_listed_once")
    def _holders_once(cls, values: Series[str]) -> Series[bool]:
        ok = np.ones(len(values), dtype=bool)
        # only cells with a separator can repeat a holder
        several = np.flatnonzero(_separated(as_arrow(values)))
        if len(several):
            positions, items = split_list_cells(values.iloc[several])
            # sorted by (cell, holder), a repeated holder sits next to its copy
            pairs = pyarrow.table({"cell": pyarrow.array(positions), "holder": items})
            order = pc.sort_indices(
                pairs, sort_keys=[("cell", "ascending"), ("holder", "ascending")]
            )
            positions, items = positions[np.asarray(order)], items.take(order)
            same = np.asarray(pc.equal(items[1:], items[:-1]), dtype=bool)
            repeated = same & (positions[1:] == positions[:-1])
            ok[several[positions[1:][repeated]]] = False
        return pd.Series(ok, index=values.index)  # type: ignore[return-value]

    @pa.dataframe_check(name="primary_among_holders")
    def _primary_listed(cls, frame: pd.DataFrame) -> Series[bool]:
        primary = as_arrow(frame["primarySourceCustomerId"])
        holders = as_arrow(frame["sourceCustomerIds"])
        # a one-holder cell lists the primary iff it is the primary; lists are split
        listed = np.asarray(pc.equal(holders, primary).fill_null(False), dtype=bool)
        several = np.flatnonzero(_separated(holders))
        if len(several):
            positions, items = split_list_cells(frame["sourceCustomerIds"].iloc[several])
            primary_of_item = primary.take(pyarrow.array(several[positions]))
            hit = np.asarray(pc.equal(items, primary_of_item).fill_null(False), dtype=bool)
            listed[several] = False
            listed[several[positions[hit]]] = True
        # a missing primary is reported by its own rule, not this one
        missing = np.asarray(primary.is_null(), dtype=bool)
        return pd.Series(listed | missing, index=frame.index)  # type: ignore[return-value]

    @pa.dataframe_check(name="close_date_iff_closed")
    def _close_iff_closed(cls, frame: pd.DataFrame) -> Series[bool]:
        return _close_iff_closed(  # type: ignore[return-value]
            frame["status"], frame["accountCloseDate"]
        )

    @pa.dataframe_check(name="close_not_before_open")
    def _close_after_open(cls, frame: pd.DataFrame) -> Series[bool]:
        return _not_before(  # type: ignore[return-value]
            frame["accountCloseDate"], frame["accountOpenDate"]
        )


class CardExtract(pa.DataFrameModel):
    """One row per card of a holder on an account; unique on account + holder + last4."""

    sourceAccountId: Series[Text] = pa.Field(str_length=_ID_LENGTH)
    sourceCustomerId: Series[Text] = pa.Field(str_length=_ID_LENGTH)
    last4: Series[Text]
    iin: Series[Text]
    cardType: Series[Text] = pa.Field(isin=c.CARD_TYPES)
    status: Series[Text] = pa.Field(isin=c.CARD_STATUSES)
    networkIdentifier: Series[pd.Int64Dtype] = pa.Field(isin=c.NETWORK_IDENTIFIERS)
    openDate: Series[Text]
    closeDate: Series[Text] = pa.Field(nullable=True)
    row: Series[np.int64] = pa.Field(alias=c.ROW_COLUMN)

    class Config:
        strict = True
        coerce = False

    # our own check rather than Config.unique: pandera's runs pandas' duplicated over three
    # text columns, the most expensive check of the card table (schemas.columns.duplicated)
    @pa.dataframe_check(name=CARD_KEY_CHECK)
    def _unique_key(cls, frame: pd.DataFrame) -> Series[bool]:
        repeated = duplicated(*(frame[name] for name in CARD_KEY))
        return pd.Series(~repeated, index=frame.index)  # type: ignore[return-value]

    @pa.check("openDate", "closeDate", name="utc_datetime")
    def _dates(cls, values: Series[str]) -> Series[bool]:
        return is_utc_datetime(values)  # type: ignore[return-value]

    @pa.check(*c.CONTROL_FREE_COLUMNS["cards"], name="control_characters")
    def _control_free(cls, values: Series[str]) -> Series[bool]:
        return control_free(values)  # type: ignore[return-value]

    @pa.check("last4", name="last4_digits")
    def _last4(cls, values: Series[str]) -> Series[bool]:
        return _digits_of_length(values, (4,))  # type: ignore[return-value]

    @pa.check("iin", name="iin_digits")
    def _iin(cls, values: Series[str]) -> Series[bool]:
        return _digits_of_length(values, c.IIN_LENGTHS)  # type: ignore[return-value]

    @pa.dataframe_check(name="close_date_iff_closed")
    def _close_iff_closed(cls, frame: pd.DataFrame) -> Series[bool]:
        return _close_iff_closed(frame["status"], frame["closeDate"])  # type: ignore[return-value]

    @pa.dataframe_check(name="close_not_before_open")
    def _close_after_open(cls, frame: pd.DataFrame) -> Series[bool]:
        return _not_before(frame["closeDate"], frame["openDate"])  # type: ignore[return-value]


MODELS: Final[dict[str, type[pa.DataFrameModel]]] = {
    "customers": CustomerExtract,
    "accounts": AccountExtract,
    "cards": CardExtract,
}
"""The model of each table, by the table names of ``customer_sync.schemas.contract.TABLES``."""
