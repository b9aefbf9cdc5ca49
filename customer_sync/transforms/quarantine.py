"""Customer-atomic quarantine: which customers every failure holds back, and why.

A failure in a customer's own row holds that customer back, and every other row with the
same ``sourceCustomerId`` (duplicates are all held back). A failure in an account holds
back every holder of it that is in the customers table, primary included; a failure in a
card holds back every holder of its account and the card's own holder. So no partial tree
is ever sent. A failing row with no holder in the customers table (an orphan) holds back
nobody but is still reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from customer_sync.schemas.columns import TEXT_DTYPE, as_arrow, text_series
from customer_sync.transforms.links import Holdings
from customer_sync.transforms.normalise import join_groups


@dataclass(frozen=True)
class Quarantine:
    """Who is held back: per customer row, per failure, and by reason."""

    held: npt.NDArray[np.bool_]
    """Per customer row (position): held back."""
    held_back_customers: pd.Series
    """Per failure (aligned with the failures frame): ``|``-joined ids it holds back."""
    reasons: pd.Series
    """Per customer row: ``|``-joined reason keys (``""`` when not held back)."""
    held_back_by_reason: dict[str, int]
    """Reason key -> number of customer rows it holds back (a row may count under several)."""


def reason_keys(failures: pd.DataFrame) -> pd.Series:
    """``table.column:rule`` for a failure of one column, ``table:rule`` for a whole-row one."""
    column = failures["column"].fillna("").astype(str)
    whole_row = (column == "") | column.str.contains("+", regex=False)
    keyed = failures["table"].astype(str) + "." + column + ":" + failures["rule"].astype(str)
    plain = failures["table"].astype(str) + ":" + failures["rule"].astype(str)
    return pd.Series(np.where(whole_row, plain, keyed), index=failures.index, dtype=TEXT_DTYPE)


def quarantine(
    customers: pd.DataFrame,
    accounts: pd.DataFrame,
    cards: pd.DataFrame,
    failures: pd.DataFrame,
    holdings: Holdings,
    elsewhere: Callable[[pa.Array, npt.NDArray[np.bool_]], npt.NDArray[np.bool_]] | None = None,
) -> Quarantine:
    """The customers each failure holds back (failures indexed 0..n-1).

    When the frames are one chunk of a bigger extract, ``elsewhere(ids, found_here)`` says
    which ids are customers outside it: they are named in ``held_back_customers`` (their
    own chunk holds them back), not held here.
    """
    if failures.empty:  # the usual chunk: nobody is held back, nothing to look up
        return Quarantine(
            held=np.zeros(len(customers), dtype=bool),
            held_back_customers=pd.Series([], dtype=TEXT_DTYPE),
            reasons=pd.Series([""] * len(customers), dtype=TEXT_DTYPE),
            held_back_by_reason={},
        )
    failures = failures.reset_index(drop=True)
    table = failures["table"].to_numpy()
    index = failures["index"].to_numpy(dtype=np.int64)
    number = np.arange(len(failures), dtype=np.int64)
    card_rows = cards.iloc[index[table == "cards"]]
    people = _account_people(
        accounts, holdings, index[table == "accounts"], card_rows["sourceAccountId"]
    )

    named: list[pd.DataFrame] = []  # (failure, customer id)
    direct: list[pd.DataFrame] = []  # (failure, customer position) for rows without an id
    mine = table == "customers"
    ids = customers["sourceCustomerId"].iloc[index[mine]].to_numpy()
    has_id = pd.notna(ids)
    named.append(pd.DataFrame({"failure": number[mine][has_id], "id": ids[has_id]}))
    direct.append(
        pd.DataFrame({"failure": number[mine][~has_id], "position": index[mine][~has_id]})
    )

    mine = table == "accounts"
    on_account = pd.DataFrame({"failure": number[mine], "account": index[mine]})
    named.append(on_account.merge(people, on="account")[["failure", "id"]])

    mine = table == "cards"
    on_card = pd.DataFrame(
        {
            "failure": number[mine],
            "account_id": card_rows["sourceAccountId"].to_numpy(),
            "id": card_rows["sourceCustomerId"].to_numpy(),
        }
    )
    named.append(on_card.loc[on_card["id"].notna(), ["failure", "id"]])
    by_account = people.dropna(subset=["account_id"])
    named.append(on_card.drop(columns="id").merge(by_account, on="account_id")[["failure", "id"]])

    by_id = pd.concat(named, ignore_index=True).dropna(subset=["id"])
    by_id = by_id.astype({"id": TEXT_DTYPE})
    resolved = by_id.merge(_positions_of(customers, by_id["id"]), on="id")
    named_elsewhere = _named_elsewhere(by_id, resolved, elsewhere)
    resolved = resolved[["failure", "position"]]
    pairs = pd.concat([resolved, *direct], ignore_index=True).drop_duplicates()

    held = np.zeros(len(customers), dtype=bool)
    held[pairs["position"].to_numpy(dtype=np.int64)] = True

    # per failure: the ids it holds back (sorted, once each)
    held_ids = pairs.assign(
        id=customers["sourceCustomerId"].iloc[pairs["position"].to_numpy(dtype=np.int64)].to_numpy()
    ).dropna(subset=["id"])
    if len(named_elsewhere):
        held_ids = pd.concat([held_ids[["failure", "id"]], named_elsewhere], ignore_index=True)
    per_failure = _joined(held_ids["failure"], held_ids["id"], len(failures))

    # per customer row: the reasons holding it back
    keys = reason_keys(failures).to_numpy()
    reasons_of = pd.DataFrame(
        {
            "position": pairs["position"].to_numpy(dtype=np.int64),
            "key": keys[pairs["failure"].to_numpy(dtype=np.int64)],
        }
    ).drop_duplicates()
    per_customer = _joined(reasons_of["position"], reasons_of["key"], len(customers))
    counts = reasons_of["key"].value_counts()
    by_reason = {str(key): int(count) for key, count in counts.sort_index().items()}
    return Quarantine(
        held=held,
        held_back_customers=per_failure,
        reasons=per_customer,
        held_back_by_reason=by_reason,
    )


def _named_elsewhere(
    by_id: pd.DataFrame,
    resolved: pd.DataFrame,
    elsewhere: Callable[[pa.Array, npt.NDArray[np.bool_]], npt.NDArray[np.bool_]] | None,
) -> pd.DataFrame:
    """(failure, id) pairs whose id is not a customer here but is one in another chunk."""
    if elsewhere is None or by_id.empty:
        return by_id.iloc[:0][["failure", "id"]]
    unresolved = by_id[~by_id["id"].isin(resolved["id"])].drop_duplicates()
    ids = as_arrow(unresolved["id"])
    there = elsewhere(ids, np.zeros(len(ids), dtype=bool))
    return unresolved.loc[there, ["failure", "id"]]


def _positions_of(customers: pd.DataFrame, ids: pd.Series) -> pd.DataFrame:
    """(id, position) of every customer row carrying one of ``ids`` (all rows of a duplicate)."""
    all_ids = as_arrow(customers["sourceCustomerId"])
    wanted = pc.unique(as_arrow(ids).drop_null())
    hit = np.flatnonzero(np.asarray(pc.is_in(all_ids, value_set=wanted), dtype=bool))
    return pd.DataFrame(
        {"id": text_series(all_ids.take(pa.array(hit))), "position": hit.astype(np.int64)}
    )


def _account_people(
    accounts: pd.DataFrame,
    holdings: Holdings,
    failing: npt.NDArray[np.int64],
    card_accounts: pd.Series,
) -> pd.DataFrame:
    """(account position, account id, customer id) for every holder and primary of the
    accounts that matter: failing ones, and those carrying the id of a failing card's account."""
    account_ids = as_arrow(accounts["sourceAccountId"])
    of_cards = pc.is_in(account_ids, value_set=pc.unique(as_arrow(card_accounts).drop_null()))
    relevant = np.asarray(of_cards, dtype=bool)
    relevant[failing] = True
    chosen = np.flatnonzero(relevant)
    listed_mask = relevant[holdings.account]
    take = pa.array(np.flatnonzero(listed_mask))
    listed = pd.DataFrame(
        {
            "account": holdings.account[listed_mask],
            "account_id": text_series(holdings.account_id.take(take)),
            "id": text_series(holdings.holder.take(take)),
        }
    )
    primary = pd.DataFrame(
        {
            "account": chosen.astype(np.int64),
            "account_id": accounts["sourceAccountId"].iloc[chosen].to_numpy(),
            "id": accounts["primarySourceCustomerId"].iloc[chosen].to_numpy(),
        }
    ).astype({"account_id": TEXT_DTYPE, "id": TEXT_DTYPE})
    people = pd.concat([listed, primary], ignore_index=True).dropna(subset=["id"])
    return people.drop_duplicates()


def _joined(groups: pd.Series, values: pd.Series, size: int) -> pd.Series:
    """Distinct values per group position 0..size-1, sorted and ``|``-joined (``""`` if none)."""
    frame = pd.DataFrame(
        {"group": groups.to_numpy(dtype=np.int64), "value": values.astype(TEXT_DTYPE).to_numpy()}
    ).drop_duplicates()
    frame = frame.sort_values(["group", "value"], kind="stable")
    items = as_arrow(pd.Series(frame["value"].to_numpy(), dtype=TEXT_DTYPE))
    joined = join_groups(frame["group"].to_numpy(dtype=np.int64), items, size)
    return text_series(pc.fill_null(joined, pa.scalar("", joined.type)))
