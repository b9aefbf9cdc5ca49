"""Validate an extract: normalise, check every rule and link, quarantine whole customers.

``validate_extract`` is pure: it reads the raw frames of an ``Extract`` and returns a
``Validation`` holding the normalised VALID frames (what may be nested and sent), one reject
row per problem, the customers held back with their reasons, and the counts that account
for every input row: for each table, ``rows_read == rows_valid + rows_rejected +
rows_withheld`` (withheld: a clean row whose customer is held back, or an account whose
every holder in the extract is held back, and the cards of such an account).

With a ``ChunkScope`` (``customer_sync.chunking.routing``) it validates one chunk of customers of a
bigger extract, routed so that the result is exact: ``combine_validations`` of every
chunk's validation equals the validation of the whole extract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow.compute as pc

from customer_sync.chunking.routing import ChunkScope
from customer_sync.schemas import contract
from customer_sync.schemas.columns import TEXT_DTYPE, as_arrow
from customer_sync.schemas.errors import ConfigError, GuardTripped
from customer_sync.schemas.records import Extract
from customer_sync.transforms.failures import table_failures
from customer_sync.transforms.links import holdings_of, link_failures
from customer_sync.transforms.normalise import normalise_table
from customer_sync.transforms.quarantine import quarantine

REJECT_COLUMNS: Final = (
    "table",
    "file",
    "row",
    "id",
    "column",
    "rule",
    "reason",
    "held_back_customers",
)
HELD_BACK_COLUMNS: Final = ("sourceCustomerId", "row", "reasons")
DEFAULT_MAX_HELD_BACK_SHARE: Final = 0.05


@dataclass(frozen=True)
class Validation:
    """What validation found. Frames are normalised; ``customers``/``accounts``/``cards``
    hold only what may be sent (a valid joint account stays for its valid holders even when
    another holder is held back or absent)."""

    customers: pd.DataFrame
    accounts: pd.DataFrame
    cards: pd.DataFrame
    rejects: pd.DataFrame
    """One row per problem: ``REJECT_COLUMNS`` (``row`` is the file's 1-based data row)."""
    held_back: pd.DataFrame
    """One row per held-back customer row: ``HELD_BACK_COLUMNS`` (reasons ``|``-joined)."""
    rows_read: dict[str, int]
    rows_valid: dict[str, int]
    rows_rejected: dict[str, int]
    """Rows with at least one problem of their own."""
    rows_withheld: dict[str, int]
    """Clean rows not sent because every customer they belong to is held back."""
    customers_read: int
    customers_valid: int
    customers_held_back: int
    held_back_by_reason: dict[str, int]
    """``table.column:rule`` (or ``table:rule``) -> customers it holds back."""
    orphan_accounts: int
    orphan_cards: int
    files: dict[str, str] = field(default_factory=dict)
    ignored_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    portfolio_ids_over_settlement_width: int = 0
    """Account rows whose ``sourcePortfolioId`` is longer than the partner's settlement file
    shows (``contract.SETTLEMENT_PORTFOLIO_WIDTH``): sent whole, cut in that file."""
    shared_valid_rows: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)
    """Chunks only: ``_row`` of the valid rows that other chunks also hold (joint accounts
    and their cards). Their owner counts them in ``rows_read``, and when they are clean, in
    ``rows_withheld`` until ``combine_validations`` finds them valid in some chunk."""

    def __repr__(self) -> str:
        # counts only: the frames hold postal codes and card numbers
        return (
            f"Validation({self.customers_read:,} customers read: {self.customers_valid:,} "
            f"valid, {self.customers_held_back:,} held back; {len(self.rejects):,} reject "
            f"rows; orphans: {self.orphan_accounts:,} accounts, {self.orphan_cards:,} cards)"
        )

    @property
    def held_back_share(self) -> float:
        """Share of customer rows held back (0 when there are none)."""
        return self.customers_held_back / self.customers_read if self.customers_read else 0.0

    def summary(self) -> dict[str, Any]:
        """The counts as plain JSON-able values."""
        return {
            "files": dict(self.files),
            "rows_read": dict(self.rows_read),
            "rows_valid": dict(self.rows_valid),
            "rows_rejected": dict(self.rows_rejected),
            "rows_withheld": dict(self.rows_withheld),
            "customers_read": self.customers_read,
            "customers_valid": self.customers_valid,
            "customers_held_back": self.customers_held_back,
            "held_back_share": round(self.held_back_share, 6),
            "held_back_by_reason": dict(self.held_back_by_reason),
            "orphan_accounts": self.orphan_accounts,
            "orphan_cards": self.orphan_cards,
            "reject_rows": len(self.rejects),
            "ignored_columns": {k: list(v) for k, v in self.ignored_columns.items()},
            "portfolio_ids_over_settlement_width": self.portfolio_ids_over_settlement_width,
        }

    @property
    def settlement_width_warning(self) -> str | None:
        """The one warning to log about long portfolio ids (no id quoted), or None."""
        return settlement_width_warning(self.portfolio_ids_over_settlement_width)


def settlement_width_warning(count: int) -> str | None:
    """One sentence for ``count`` portfolio ids longer than the settlement width, or None."""
    if not count:
        return None
    width = contract.SETTLEMENT_PORTFOLIO_WIDTH
    return (
        f"{count:,} account(s) have a sourcePortfolioId longer than {width} characters: they "
        f"are sent whole, but the partner's settlement file shows only the first {width}"
    )


def validate_extract(extract: Extract, scope: ChunkScope | None = None) -> Validation:
    """Check every rule and link of an extract and quarantine whole customers.

    With ``scope``, ``extract`` is one chunk of a bigger extract (``chunking.routing``):
    holders in other chunks count as present, and only the rows this chunk owns are
    reported and counted.
    """
    normalised = {t: normalise_table(extract.table(t), t) for t in contract.TABLES}
    frames = {t: normalised[t].frame for t in contract.TABLES}
    customers, accounts, cards = frames["customers"], frames["accounts"], frames["cards"]
    elsewhere = scope.present_elsewhere if scope is not None else None
    holdings = holdings_of(accounts)
    links = link_failures(customers, accounts, cards, holdings, elsewhere)
    failures = pd.concat(
        [*(table_failures(t, normalised[t]) for t in contract.TABLES), links.failures],
        ignore_index=True,
    )
    held = quarantine(customers, accounts, cards, failures, holdings, elsewhere)

    failing = {t: _positions(failures, t, len(frames[t])) for t in contract.TABLES}
    valid_customer = ~held.held
    # a duplicated customer id holds back every copy, so its first row speaks for all
    known = links.holder_customer >= 0
    holder_ok = np.zeros(len(holdings.account), dtype=bool)
    holder_ok[known] = valid_customer[links.holder_customer[known]]
    has_valid_holder = np.zeros(len(accounts), dtype=bool)
    has_valid_holder[holdings.account[holder_ok]] = True
    valid_account = ~failing["accounts"] & has_valid_holder
    # a card whose account id is duplicated fails itself (its holders are held back)
    in_valid_account = np.zeros(len(cards), dtype=bool)
    linked = links.card_account >= 0
    in_valid_account[linked] = valid_account[links.card_account[linked]]
    valid_card = ~failing["cards"] & in_valid_account
    valid = {"customers": valid_customer, "accounts": valid_account, "cards": valid_card}

    # a chunk reports and counts only the rows it owns; shared valid rows are counted once
    # they are combined, by their row numbers
    sizes = {t: len(frames[t]) for t in contract.TABLES}
    owned = {t: _all_or(scope, "owned_rows", t, sizes[t]) for t in contract.TABLES}
    shared = {t: _all_or(scope, "shared_rows", t, sizes[t]) for t in contract.TABLES}
    reported = np.zeros(len(failures), dtype=bool)
    for table in contract.TABLES:
        mine = (failures["table"] == table).to_numpy()
        reported[mine] = owned[table][failures.loc[mine, "index"].to_numpy(dtype=np.int64)]
    rows_read = {t: int(owned[t].sum()) for t in contract.TABLES}
    portfolio_lengths = pc.utf8_length(as_arrow(accounts["sourcePortfolioId"])).fill_null(0)
    long_portfolio = np.asarray(portfolio_lengths, dtype=np.int64) > (
        contract.SETTLEMENT_PORTFOLIO_WIDTH
    )
    rows_valid = {t: int((valid[t] & owned[t] & ~shared[t]).sum()) for t in contract.TABLES}
    rows_rejected = {t: int((failing[t] & owned[t]).sum()) for t in contract.TABLES}
    shared_valid_rows = {
        t: frames[t][contract.ROW_COLUMN].to_numpy(dtype=np.int64)[valid[t] & shared[t]]
        for t in contract.TABLES
        if shared[t].any()
    }
    return Validation(
        customers=_kept(customers, valid_customer),
        accounts=_kept(accounts, valid_account),
        cards=_kept(cards, valid_card),
        rejects=_rejects(
            failures[reported],
            frames,
            extract.files,
            held.held_back_customers[reported],
        ),
        held_back=_held_back(customers, held.held, held.reasons),
        rows_read=rows_read,
        rows_valid=rows_valid,
        rows_rejected=rows_rejected,
        rows_withheld={t: rows_read[t] - rows_valid[t] - rows_rejected[t] for t in contract.TABLES},
        customers_read=rows_read["customers"],
        customers_valid=rows_valid["customers"],
        customers_held_back=int(held.held.sum()),
        held_back_by_reason=held.held_back_by_reason,
        orphan_accounts=int((links.orphan_accounts & owned["accounts"]).sum()),
        orphan_cards=int((links.orphan_cards & owned["cards"]).sum()),
        files=dict(extract.files),
        ignored_columns=dict(extract.ignored_columns),
        portfolio_ids_over_settlement_width=int((long_portfolio & owned["accounts"]).sum()),
        shared_valid_rows=shared_valid_rows,
    )


def _all_or(scope: ChunkScope | None, mask: str, table: str, size: int) -> npt.NDArray[np.bool_]:
    """The scope's row mask for a table; without a scope, owned = all and shared = none."""
    if scope is None:
        return np.full(size, mask == "owned_rows", dtype=bool)
    rows: npt.NDArray[np.bool_] = getattr(scope, mask)(table, size)
    return rows


def combine_validations(parts: list[Validation]) -> Validation:
    """The validation of a whole extract from the validations of all its chunks.

    Frames are concatenated (a shared valid account or card once), counts summed, and the
    shared valid rows counted once each. For checks and notebooks: it holds every chunk's
    valid frames at once.
    """
    if not parts:
        raise ValueError("no validations to combine")
    shared = {
        t: np.unique(np.concatenate([p.shared_valid_rows.get(t, _NO_ROWS) for p in parts]))
        for t in contract.TABLES
    }

    def frames(name: str) -> pd.DataFrame:
        frame = pd.concat([getattr(p, name) for p in parts], ignore_index=True)
        if name in ("accounts", "cards"):
            frame = frame.drop_duplicates(contract.ROW_COLUMN, ignore_index=True)
        ordered: pd.DataFrame = frame.sort_values(
            contract.ROW_COLUMN, kind="stable", ignore_index=True
        )
        return ordered

    def total(name: str) -> dict[str, int]:
        return {t: sum(getattr(p, name).get(t, 0) for p in parts) for t in contract.TABLES}

    rows_read, rows_rejected = total("rows_read"), total("rows_rejected")
    rows_valid = {t: total("rows_valid")[t] + len(shared[t]) for t in contract.TABLES}
    reasons: dict[str, int] = {}
    for part in parts:
        for key, count in part.held_back_by_reason.items():
            reasons[key] = reasons.get(key, 0) + count
    rejects = pd.concat([p.rejects for p in parts], ignore_index=True)
    order = rejects["table"].map({t: n for n, t in enumerate(contract.TABLES)})
    rejects = (
        rejects.assign(_order=order.to_numpy())
        .sort_values(["_order", "row", "column", "rule"], kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
    )
    held_back = pd.concat([p.held_back for p in parts], ignore_index=True)
    return Validation(
        customers=frames("customers"),
        accounts=frames("accounts"),
        cards=frames("cards"),
        rejects=rejects,
        held_back=held_back.sort_values("row", kind="stable", ignore_index=True),
        rows_read=rows_read,
        rows_valid=rows_valid,
        rows_rejected=rows_rejected,
        rows_withheld={t: rows_read[t] - rows_valid[t] - rows_rejected[t] for t in contract.TABLES},
        customers_read=sum(p.customers_read for p in parts),
        customers_valid=sum(p.customers_valid for p in parts),
        customers_held_back=sum(p.customers_held_back for p in parts),
        held_back_by_reason=dict(sorted(reasons.items())),
        orphan_accounts=sum(p.orphan_accounts for p in parts),
        orphan_cards=sum(p.orphan_cards for p in parts),
        files=dict(parts[0].files),
        ignored_columns=dict(parts[0].ignored_columns),
        portfolio_ids_over_settlement_width=sum(
            p.portfolio_ids_over_settlement_width for p in parts
        ),
    )


_NO_ROWS: Final = np.zeros(0, dtype=np.int64)


def held_back_guard(validation: Validation, max_share: float = DEFAULT_MAX_HELD_BACK_SHARE) -> None:
    """Stop (``GuardTripped``) when more than ``max_share`` of the customers are held back:
    a broken export must not turn into a mass update."""
    if not 0.0 <= max_share <= 1.0:
        raise ConfigError(f"the held-back share limit must be between 0 and 1, not {max_share}")
    share = validation.held_back_share
    if share > max_share:
        top = sorted(validation.held_back_by_reason.items(), key=lambda item: -item[1])[:3]
        causes = ", ".join(f"{key} ({count})" for key, count in top)
        raise GuardTripped(
            f"{validation.customers_held_back} of {validation.customers_read} customers "
            f"({share:.1%}) would be held back, above the limit of {max_share:.1%}; nothing "
            f"was sent. Main reasons: {causes}. Fix the extract, or raise the limit "
            "(--max-held-back) if this is expected"
        )


def _positions(failures: pd.DataFrame, table: str, size: int) -> npt.NDArray[np.bool_]:
    """Per row of ``table``: has at least one failure."""
    mask = np.zeros(size, dtype=bool)
    mask[failures.loc[failures["table"] == table, "index"].to_numpy(dtype=np.int64)] = True
    return mask


def _kept(frame: pd.DataFrame, keep: npt.NDArray[np.bool_]) -> pd.DataFrame:
    if keep.all():  # the frame is normalise_table's own, not the caller's: no copy needed
        return frame
    return frame[keep].reset_index(drop=True)


def _rejects(
    failures: pd.DataFrame,
    frames: dict[str, pd.DataFrame],
    files: dict[str, str],
    held_back_customers: pd.Series,
) -> pd.DataFrame:
    failures = failures.reset_index(drop=True)
    size = len(failures)
    row = np.zeros(size, dtype=np.int64)
    ids = pd.Series([""] * size, dtype=TEXT_DTYPE)
    for table in contract.TABLES:
        mine = (failures["table"] == table).to_numpy()
        if not mine.any():
            continue
        rows = frames[table].iloc[failures.loc[mine, "index"].to_numpy(dtype=np.int64)]
        row[mine] = rows[contract.ROW_COLUMN].to_numpy()
        parts = [rows[name].fillna("") for name in contract.ID_COLUMNS[table]]
        key = parts[0]
        for part in parts[1:]:
            key = key + "/" + part
        ids[mine] = key.to_numpy()
    order = {t: n for n, t in enumerate(contract.TABLES)}
    rejects = pd.DataFrame(
        {
            "table": failures["table"].astype(TEXT_DTYPE),
            "file": failures["table"].map(files).fillna("").astype(TEXT_DTYPE),
            "row": row,
            "id": ids,
            "column": failures["column"].astype(TEXT_DTYPE),
            "rule": failures["rule"].astype(TEXT_DTYPE),
            "reason": failures["reason"].astype(TEXT_DTYPE),
            "held_back_customers": held_back_customers.to_numpy(),
        }
    ).astype({"held_back_customers": TEXT_DTYPE})
    rejects["_order"] = failures["table"].map(order).to_numpy()
    rejects = rejects.sort_values(["_order", "row", "column", "rule"], kind="stable")
    return rejects.drop(columns="_order").reset_index(drop=True)[list(REJECT_COLUMNS)]


def _held_back(
    customers: pd.DataFrame, held: npt.NDArray[np.bool_], reasons: pd.Series
) -> pd.DataFrame:
    where = np.flatnonzero(held)
    return pd.DataFrame(
        {
            "sourceCustomerId": customers["sourceCustomerId"].iloc[where].to_numpy(),
            "row": customers[contract.ROW_COLUMN].iloc[where].to_numpy(dtype=np.int64),
            "reasons": reasons.iloc[where].to_numpy(),
        }
    ).astype({"sourceCustomerId": TEXT_DTYPE, "reasons": TEXT_DTYPE})
