"""Rule failures of one normalised table, one row per problem, built in bulk.

A *failures* frame has the columns of ``FAILURE_COLUMNS``: ``table``, ``index`` (position
in the normalised frame), ``column`` (``""`` for a rule over the whole row), ``rule`` (a key
of ``schemas.extracts.RULES`` or a parse/link rule) and ``reason`` (a sentence for people;
it quotes a cell only when its column is not sensitive).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from customer_sync.schemas import contract
from customer_sync.schemas._pandera import pandera_pandas as pa
from customer_sync.schemas.columns import TEXT_DTYPE
from customer_sync.schemas.extracts import (
    ALLOWED_VALUES,
    CARD_KEY,
    CARD_KEY_CHECK,
    MODELS,
    ROW_RULE_COLUMNS,
    RULES,
    STATUS_VALUES,
    rule_name,
)
from customer_sync.transforms.normalise import NormalisedTable, quoted

FAILURE_COLUMNS: Final = ("table", "index", "column", "rule", "reason")
_SHOWN_RULES: Final = frozenset(
    {"allowed_values", "unique", "utc_datetime", "country_code", "alert_statuses"}
)
"""Rules whose reason quotes the offending value (when its column is not sensitive)."""


def empty_failures() -> pd.DataFrame:
    """A failures frame with no rows."""
    return failures_frame("", np.array([], dtype=np.int64), "", "", "")


def failures_frame(
    table: str,
    index: np.ndarray,
    column: str | pd.Series,
    rule: str | pd.Series,
    reason: str | pd.Series,
) -> pd.DataFrame:
    """A failures frame; scalar column, rule and reason are repeated for every index."""
    size = len(index)

    def _text(value: str | pd.Series) -> pd.Series:
        if isinstance(value, pd.Series):
            return pd.Series(value.to_numpy(), dtype=TEXT_DTYPE)
        return pd.Series([value] * size, dtype=TEXT_DTYPE)

    return pd.DataFrame(
        {
            "table": _text(table),
            "index": np.asarray(index, dtype=np.int64),
            "column": _text(column),
            "rule": _text(rule),
            "reason": _text(reason),
        }
    )


def table_failures(table: str, normalised: NormalisedTable) -> pd.DataFrame:
    """Every failure of one table: its parse problems, then its schema rules (lazily)."""
    frame = normalised.frame
    parsed = normalised.problems
    found = [
        failures_frame(
            table,
            parsed["index"].to_numpy(),
            parsed["column"],
            parsed["rule"],
            parsed["reason"],
        )
    ]
    try:
        MODELS[table].validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        schema = schema_failures(table, frame, errors.failure_cases)
        # a value normalising could not parse is already reported: not also as "required"
        if len(parsed):
            seen = pd.MultiIndex.from_frame(parsed[["index", "column"]].astype({"column": object}))
            keys = pd.MultiIndex.from_frame(schema[["index", "column"]].astype({"column": object}))
            schema = schema[~keys.isin(seen)]
        found.append(schema)
    return pd.concat(found, ignore_index=True)


def schema_failures(table: str, frame: pd.DataFrame, cases: pd.DataFrame) -> pd.DataFrame:
    """Pandera's failure cases as failures: one row per (row, column, rule)."""
    schema_level = cases["index"].isna()
    if schema_level.any():
        # wrong dtypes or columns: normalise_table guarantees them, so this is a bug
        checks = ", ".join(sorted(set(cases.loc[schema_level, "check"].astype(str))))
        raise ValueError(f"{table} frame does not have the normalised shape: {checks}")
    cases = cases.assign(
        rule=cases["check"].astype(str).map(rule_name),
        index=cases["index"].astype(np.int64),
    )
    row_rules = ROW_RULE_COLUMNS[table]
    is_row_rule = cases["rule"].isin(list(row_rules)).to_numpy()
    is_card_key = (cases["check"].astype(str) == CARD_KEY_CHECK).to_numpy()
    parts = [
        _column_failures(table, cases[~is_row_rule & ~is_card_key]),
        _row_failures(table, frame, cases[is_row_rule]),
        _card_key_failures(table, frame, cases[is_card_key]),
    ]
    return pd.concat(parts, ignore_index=True)


def _column_failures(table: str, cases: pd.DataFrame) -> pd.DataFrame:
    if cases.empty:
        return empty_failures()
    rule = cases["rule"].astype(str)
    column = cases["column"].astype(str)
    value = pd.Series(cases["failure_case"].to_numpy(), index=cases.index)
    # uniqueness of a missing id is reported by "required", not twice
    keep = ~((rule == "unique") & value.isna())
    cases, rule, column, value = cases[keep], rule[keep], column[keep], value[keep]
    sensitive = column.isin(list(contract.SENSITIVE_COLUMNS))
    shown = rule.isin(list(_SHOWN_RULES)) & ~sensitive & value.notna()
    value_part = pd.Series("", index=cases.index, dtype=TEXT_DTYPE)
    if shown.any():
        value_part[shown] = " " + quoted(value[shown])
    phrase = rule.map(RULES).fillna("failed " + rule)
    reason = column + value_part + " " + phrase + _detail(table, column, rule)
    return failures_frame(table, cases["index"].to_numpy(), column, rule, reason)


def _detail(table: str, column: pd.Series, rule: pd.Series) -> pd.Series:
    """What a rule allowed, for rules where the description alone is not enough."""
    detail = pd.Series("", index=column.index, dtype=TEXT_DTYPE)
    allowed = rule == "allowed_values"
    if allowed.any():
        choices = {**ALLOWED_VALUES, "status": STATUS_VALUES.get(table, ())}
        text = {name: " (one of " + ", ".join(map(str, v)) + ")" for name, v in choices.items()}
        detail[allowed] = column[allowed].map(text).fillna("")
    long = rule == "max_length"
    if long.any():
        limits = column[long].map({"postalCode": contract.MAX_POSTAL_CODE_LENGTH})
        detail[long] = (
            " (at most "
            + limits.fillna(contract.MAX_ID_LENGTH).astype(int).astype(str)
            + " characters)"
        )
    return detail


def _row_failures(table: str, frame: pd.DataFrame, cases: pd.DataFrame) -> pd.DataFrame:
    """Dataframe-level rules: pandera reports every column of a failing row; keep one."""
    if cases.empty:
        return empty_failures()
    rows = cases.drop_duplicates(["rule", "index"])
    rule = rows["rule"].astype(str)
    column = rule.map(ROW_RULE_COLUMNS[table])
    reason = rule.map(RULES).astype(TEXT_DTYPE)
    closing = (rule == "close_date_iff_closed").to_numpy()
    if closing.any():
        where = rows["index"].to_numpy()[closing]
        status = quoted(frame["status"].iloc[where])
        has_close = frame[ROW_RULE_COLUMNS[table]["close_date_iff_closed"]].iloc[where].notna()
        state = np.where(has_close.to_numpy(), " but has one", " and has none")
        reason[closing] = (
            pd.Series(reason[closing].to_numpy(), dtype=TEXT_DTYPE)
            + " (status is "
            + pd.Series(status.to_numpy(), dtype=TEXT_DTYPE)
            + pd.Series(state, dtype=TEXT_DTYPE)
            + ")"
        ).to_numpy()
    return failures_frame(table, rows["index"].to_numpy(), column, rule, reason)


def _card_key_failures(table: str, frame: pd.DataFrame, cases: pd.DataFrame) -> pd.DataFrame:
    """Cards sharing account + holder + last4: one failure per card (no last4 in the text)."""
    if cases.empty:
        return empty_failures()
    index = np.unique(cases["index"].to_numpy())
    complete = frame[list(CARD_KEY)].iloc[index].notna().all(axis=1).to_numpy()
    index = index[complete]
    return failures_frame(
        table,
        index,
        "+".join(CARD_KEY),
        "unique",
        "another card has the same sourceAccountId, sourceCustomerId and last4",
    )
