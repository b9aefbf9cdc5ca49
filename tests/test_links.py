"""customer_sync.transforms.links: a card's holder is looked up on its own account row first, and by
(account id, holder) among every account row only when not found there; the answer is the
plain rule either way."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from customer_sync.schemas.columns import TEXT_DTYPE
from customer_sync.transforms.links import holdings_of, link_failures

_IDS = st.sampled_from(["C1", "C2", "C3"])


def _text(values: list[str | None]) -> pd.Series:
    return pd.Series(values, dtype=TEXT_DTYPE)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["A1", "A2"]), _IDS, st.lists(_IDS, max_size=3)),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.tuples(st.sampled_from(["A1", "A2", "A3"]), _IDS), max_size=8),
)
def test_a_cards_holder_is_a_holder_of_its_account(
    accounts: list[tuple[str, str, list[str]]], cards: list[tuple[str, str]]
) -> None:
    customers = pd.DataFrame({"sourceCustomerId": _text(["C1", "C2", "C3"])})
    account_frame = pd.DataFrame(
        {
            "sourceAccountId": _text([a for a, _, _ in accounts]),
            "primarySourceCustomerId": _text([p for _, p, _ in accounts]),
            "sourceCustomerIds": _text(["|".join(h) or p for _, p, h in accounts]),
        }
    )
    card_frame = pd.DataFrame(
        {
            "sourceAccountId": _text([a for a, _ in cards]),
            "sourceCustomerId": _text([h for _, h in cards]),
        }
    )
    links = link_failures(customers, account_frame, card_frame, holdings_of(account_frame))
    failing = links.failures
    strangers = set(failing.loc[failing["rule"] == "holder_of_account", "index"])
    # the rule: the holder is the primary of the (first) account row with that id, or the
    # (account id, holder) pair is listed on some row with that id (a primary missing from
    # its list fails the account itself)
    pairs = {(a, h) for a, p, hs in accounts for h in (hs or [p])}
    primary = {}
    for a, p, _ in accounts:
        primary.setdefault(a, p)
    expected = {
        n
        for n, (a, h) in enumerate(cards)
        if a in primary and h != primary[a] and (a, h) not in pairs
    }
    ids = set(primary)
    assert strangers == expected
    assert np.array_equal(links.card_account >= 0, np.array([a in ids for a, _ in cards]))
