"""The plan step: create, update or skip each customer from the ledger's fingerprints."""

from __future__ import annotations

import pandas as pd
import pytest

from customer_sync.schemas.errors import ConfigError, GuardTripped
from customer_sync.transforms.plan import Plan, mass_update_guard, plan_customers

# id -> (this run's fingerprint, acknowledged fingerprint or None, dead-lettered)
CASES = {
    "new": ("f1", None, False),
    "same": ("f2", "f2", False),
    "changed": ("f3", "old", False),
    "dead-known": ("f4", "f4", True),
    "dead-new": ("f5", None, True),
    "dead-changed": ("f6", "old", True),
}


def _plan(**options: object) -> Plan:
    return plan_customers(
        [(cid, fp) for cid, (fp, _, _) in CASES.items()],
        acknowledged={cid: ack for cid, (_, ack, _) in CASES.items() if ack is not None},
        dead_lettered={cid for cid, (_, _, dead) in CASES.items() if dead},
        **options,  # type: ignore[arg-type]
    )


def _rows(plan: Plan) -> dict[str, tuple[str, object, str]]:
    frame = plan.frame
    return {
        cid: (action, None if pd.isna(method) else method, reason)
        for cid, action, method, reason in zip(
            frame["sourceCustomerId"],
            frame["action"],
            frame["method"],
            frame["reason"],
            strict=True,
        )
    }


def test_sync_creates_new_updates_changed_and_dead_lettered_skips_the_rest() -> None:
    plan = _plan()

    assert _rows(plan) == {
        "new": ("create", "POST", "new"),
        "same": ("unchanged", None, "unchanged"),
        "changed": ("update", "PUT", "changed"),
        "dead-known": ("update", "PUT", "dead-letter"),
        # never acknowledged: the partner has no such customer, so it is still a create
        "dead-new": ("create", "POST", "dead-letter"),
        "dead-changed": ("update", "PUT", "dead-letter"),
    }
    assert (plan.creates, plan.updates, plan.unchanged) == (2, 3, 1)
    assert plan.counts == {"create": 2, "update": 3, "unchanged": 1}
    assert plan.dead_letters_retried == 3


def test_full_refresh_sends_everyone_post_for_unknown_put_for_known() -> None:
    plan = _plan(full_refresh=True)

    rows = _rows(plan)
    assert rows["same"] == ("update", "PUT", "full-refresh")
    assert rows["new"] == ("create", "POST", "new")
    assert rows["changed"] == ("update", "PUT", "changed")
    assert plan.counts == {"create": 2, "update": 4, "unchanged": 0}


def test_create_only_posts_everything_it_sends_and_still_skips_unchanged() -> None:
    plan = _plan(mode="create-only")

    rows = _rows(plan)
    assert {method for _, method, _ in rows.values() if method is not None} == {"POST"}
    # skipping the acknowledged-and-unchanged keeps a resumed first load from re-POSTing
    assert rows["same"] == ("unchanged", None, "unchanged")
    assert rows["changed"] == ("update", "POST", "changed")
    assert plan.counts == {"create": 2, "update": 3, "unchanged": 1}


def test_create_only_with_full_refresh_posts_every_customer() -> None:
    plan = _plan(mode="create-only", full_refresh=True)

    assert plan.frame["method"].tolist() == ["POST"] * len(CASES)
    assert plan.unchanged == 0


def test_acknowledged_fingerprint_is_shown_for_known_customers() -> None:
    frame = _plan().frame.set_index("sourceCustomerId")["acknowledged_fingerprint"]

    assert frame.loc["changed"] == "old"
    assert frame.isna()["new"]


@pytest.mark.parametrize("size", [0, 1, 50, 51, 120])
def test_every_customer_gets_exactly_one_action_and_counts_reconcile(size: int) -> None:
    pairs = [(f"c{i:04d}", f"fp{i}") for i in range(size)]
    acknowledged = {cid: (fp if i % 3 else "stale") for i, (cid, fp) in enumerate(pairs) if i % 2}
    dead = {cid for i, (cid, _) in enumerate(pairs) if i % 5 == 0}

    plan = plan_customers(pairs, acknowledged, dead)

    assert plan.frame["sourceCustomerId"].tolist() == [cid for cid, _ in pairs]
    assert plan.creates + plan.updates + plan.unchanged == size
    assert len(plan.to_send) == plan.creates + plan.updates
    assert plan.to_send["method"].notna().all()
    unchanged = plan.frame[plan.frame["action"] == "unchanged"]
    assert unchanged["method"].isna().all()
    assert (unchanged["fingerprint"] == unchanged["acknowledged_fingerprint"]).all()


def test_frame_input_keeps_its_index_and_ignores_other_columns() -> None:
    frame = pd.DataFrame(
        {"sourceCustomerId": ["a", "b"], "fingerprint": ["1", "2"], "extra": [1, 2]},
        index=[10, 20],
    )

    plan = plan_customers(frame, {"b": "2"}, set())

    assert plan.frame.index.tolist() == [10, 20]
    assert plan.frame["action"].tolist() == ["create", "unchanged"]
    assert "extra" not in plan.frame.columns


def test_a_50k_chunk_is_planned_in_one_call() -> None:
    n = 50_000
    frame = pd.DataFrame(
        {"sourceCustomerId": [f"c{i}" for i in range(n)], "fingerprint": ["x"] * n}
    )
    acknowledged = {f"c{i}": ("x" if i % 10 else "y") for i in range(0, n, 2)}

    plan = plan_customers(frame, acknowledged, {"c1", "c2"})

    # odd ids are new (c1 too: dead-lettered but never acknowledged); every tenth is stale
    assert plan.counts == {"create": 25_000, "update": 5_001, "unchanged": 19_999}


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("a", "1"), ("a", "2")], "customer a appears more than once"),
        ([("a", None)], "missing sourceCustomerId or fingerprint"),
    ],
)
def test_bad_input_is_refused(pairs: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_customers(pairs, {}, set())


def test_frame_without_fingerprints_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        plan_customers(pd.DataFrame({"sourceCustomerId": ["a"]}), {}, set())


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        plan_customers([], {}, set(), mode="upsert")  # type: ignore[arg-type]


# --- the blast-radius guard ------------------------------------------------------------------
def test_guard_passes_at_the_limit() -> None:
    mass_update_guard({"create": 900, "update": 50, "unchanged": 50}, known_customers=100)


def test_guard_trips_above_the_limit_with_a_clear_message() -> None:
    with pytest.raises(GuardTripped, match=r"update 51 of the 100 .* \(51\.0%\).* allowed 50%"):
        mass_update_guard({"create": 0, "update": 51, "unchanged": 49}, known_customers=100)


def test_guard_uses_the_given_share() -> None:
    with pytest.raises(GuardTripped, match="allowed 10%"):
        mass_update_guard({"update": 11}, known_customers=100, max_update_share=0.1)


def test_guard_is_lifted_by_allow_mass_update() -> None:
    mass_update_guard({"update": 100}, known_customers=100, allow_mass_update=True)


def test_guard_does_not_apply_before_any_customer_is_known() -> None:
    mass_update_guard({"create": 1_000, "update": 0}, known_customers=0)


def test_guard_takes_a_plans_counts() -> None:
    plan = plan_customers([("a", "new"), ("b", "new")], {"a": "old", "b": "old"}, set())

    with pytest.raises(GuardTripped):
        mass_update_guard(plan.counts, known_customers=2)


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_guard_refuses_a_share_outside_zero_to_one(share: float) -> None:
    with pytest.raises(ConfigError, match="between 0 and 1"):
        mass_update_guard({"update": 0}, known_customers=1, max_update_share=share)
