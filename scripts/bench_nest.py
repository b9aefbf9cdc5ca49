"""Benchmark of the nest step: time and peak memory of three ways to serialise documents.

Every measurement runs in a fresh subprocess (so ``ru_maxrss`` is that variant's own peak),
the variants taking turns for ``--repeat`` rounds so that load from other processes on the
machine falls on all of them alike. Each subprocess builds the frames, then runs its
variant twice: **cold** (the first run of a fresh process, paying the first touch of every
page it allocates, as a one-shot run does) and **warm** (again in the same process, as a
streamed pipeline does for its second and later chunks). Reported: the median over the
rounds of each, and the largest peak RSS.

* ``baseline``: the straightforward dict approach (rows as dicts with ``to_pylist``, dicts
  of lists to hang accounts and cards under customers, ``orjson.dumps`` per customer), what
  one writes first (DESIGN.md measured the same approach at about 60 s and 4.4 GB);
* ``reference``: ``customer_sync.transforms.nest.customer_documents`` + ``serialise_document``;
* ``fast``: ``customer_sync.transforms.fast_nest.customer_document_bytes``;
* ``fingerprint``: ``transforms.fingerprint.customer_fingerprints`` (what the plan step
  computes every run; not a way to nest, so no ratio);
* ``both``: ``transforms.fingerprint.fingerprinted_documents``, the documents and their
  fingerprints together (what a run needs), to compare with ``fast`` + ``fingerprint``.

``frames`` only builds the input, so its peak is the floor under the others.

    uv run --locked python scripts/bench_nest.py --customers 1000000

``normalised_frames`` is importable (``from scripts.bench_nest import normalised_frames``)
for other benchmarks.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from customer_sync.schemas import contract
from customer_sync.transforms.fast_nest import customer_document_bytes
from customer_sync.transforms.fingerprint import customer_fingerprints, fingerprinted_documents
from customer_sync.transforms.nest import customer_documents, serialise_document

VARIANTS = ("frames", "baseline", "reference", "fast", "fingerprint", "both")
_EPOCH_2010 = 1_262_304_000
_YEAR = 365 * 86_400


def normalised_frames(
    n_customers: int, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Valid normalised customers, accounts and cards frames for ``n_customers`` customers.

    About 1.5 accounts and 2 cards per customer, about 10% of accounts joint (two holders),
    every customer holding at least one account; closed accounts and cards carry a close
    date; rows of each table in shuffled order, as a real export might be.
    """
    rng = np.random.default_rng(seed)
    n = n_customers
    customer_ids = _ids("CUST-", np.arange(n))
    customers = _frame(
        {
            "sourceCustomerId": customer_ids,
            "sourceParentCustomerId": _sometimes(
                rng, _ids("PARENT-", rng.integers(0, max(n // 10, 1), n)), 0.05
            ),
            "organizationId": _choice(rng, ["50004", "50005", "00012"], n),
            "postalCode": _digits(rng, 5, n),
            "country": _choice(rng, ["US", "GB"], n),
            "customerCreationDate": _datetimes(rng, n),
            "enrollmentStartDate": _datetimes(rng, n),
            "enrollmentEndDate": _sometimes(rng, _datetimes(rng, n), 0.1),
            "enrollmentOptInStatus": _choice(rng, ["ACTIVE", "INACTIVE"], n),
            "alertOptInStatus": _choice(rng, ["ALL", "NEW|ACTIVATED", "", "EXPIRING"], n),
            "targetingIndicator": _choice(rng, ["TARGET", "DO_NOT_TARGET"], n),
            "redemptionEligibility": _sometimes(
                rng, _choice(rng, list(contract.REDEMPTION_ELIGIBILITIES), n), 0.5
            ),
        },
        rng,
    )

    n_accounts = n + n // 2
    primary = np.concatenate([np.arange(n), rng.integers(0, max(n, 1), n_accounts - n)])
    joint = rng.random(n_accounts) < 0.1
    other = (primary + 1 + rng.integers(0, max(n - 1, 1), n_accounts)) % max(n, 1)
    joint &= other != primary
    primary_ids = customer_ids.take(pa.array(primary))
    holders = pc.if_else(
        pa.array(joint),
        pc.binary_join_element_wise(primary_ids, customer_ids.take(pa.array(other)), "|"),
        primary_ids,
    )
    account_closed = rng.random(n_accounts) < 0.05
    accounts = _frame(
        {
            "sourceAccountId": _ids("ACCT-", np.arange(n_accounts)),
            "sourceCustomerIds": holders,
            "primarySourceCustomerId": primary_ids,
            "status": pa.array(np.where(account_closed, "CLOSED", "OPEN")),
            "type": _choice(rng, ["CRD", "DDA", "SAV"], n_accounts),
            "sourcePortfolioId": _choice(rng, ["PF-1", "PF-2", "PF-007"], n_accounts),
            "accountOpenDate": _datetimes(rng, n_accounts),
            "accountCloseDate": _where(account_closed, _datetimes(rng, n_accounts)),
        },
        rng,
    )

    n_cards = 2 * n
    card_account = np.concatenate(
        [np.arange(n_accounts), rng.integers(0, max(n_accounts, 1), n_cards - n_accounts)]
    )[:n_cards]
    to_other = joint[card_account] & (rng.random(n_cards) < 0.5)
    card_holder = np.where(to_other, other[card_account], primary[card_account])
    card_closed = rng.random(n_cards) < 0.05
    cards = _frame(
        {
            "sourceAccountId": _ids("ACCT-", card_account),
            "sourceCustomerId": customer_ids.take(pa.array(card_holder)),
            "last4": _digits(rng, 4, n_cards),
            "iin": _choice(rng, ["411111", "55555555", "378282"], n_cards),
            "cardType": _choice(rng, ["CREDIT", "DEBIT"], n_cards),
            "status": pa.array(np.where(card_closed, "CLOSED", "OPEN")),
            "networkIdentifier": pa.array(rng.choice([3, 4, 5, 6], n_cards)),
            "openDate": _datetimes(rng, n_cards),
            "closeDate": _where(card_closed, _datetimes(rng, n_cards)),
        },
        rng,
    )
    return customers, accounts, cards


def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pa.array(numbers).cast(pa.string()), "")


def _digits(rng: np.random.Generator, width: int, n: int) -> pa.Array:
    text = pa.array(rng.integers(0, 10**width, n)).cast(pa.string())
    return pc.utf8_lpad(text, width, "0")


def _choice(rng: np.random.Generator, values: list[str], n: int) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(rng.integers(0, len(values), n)))


def _datetimes(rng: np.random.Generator, n: int) -> pa.Array:
    seconds = _EPOCH_2010 + rng.integers(0, 15 * _YEAR, n)
    return pc.strftime(pa.array(seconds.astype("datetime64[s]")), format="%Y-%m-%dT%H:%M:%SZ")


def _sometimes(rng: np.random.Generator, values: pa.Array, share: float) -> pa.Array:
    return _where(rng.random(len(values)) < share, values)


def _where(present: np.ndarray, values: pa.Array) -> pa.Array:
    return pc.if_else(pa.array(present), values, pa.scalar(None, values.type))


def _frame(columns: dict[str, pa.Array], rng: np.random.Generator) -> pd.DataFrame:
    """A normalised frame: text columns as pandas ``str``, networkIdentifier ``Int64``,
    rows shuffled, ``_row`` numbering them 1.. in the shuffled order."""
    order = pa.array(rng.permutation(len(next(iter(columns.values())))))
    frame = pd.DataFrame(
        {
            name: (
                pd.array(values.take(order).to_numpy(zero_copy_only=False), dtype="Int64")
                if pa.types.is_integer(values.type)
                else pd.Series(values.take(order).cast(pa.large_string()).to_pandas())
            )
            for name, values in columns.items()
        }
    )
    frame["_row"] = np.arange(1, len(frame) + 1, dtype=np.int64)
    return frame


# --- the baseline: the dict approach one writes first ------------------------------------


def baseline_documents(
    customers: pd.DataFrame, accounts: pd.DataFrame, cards: pd.DataFrame
) -> list[bytes]:
    """Rows as dicts (``to_pylist``, the fastest plain way: NA becomes None, Int64 int),
    accounts and cards hung under their customers in dicts of lists, orjson per customer."""

    def rows(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[dict[str, Any]]:
        table = pa.Table.from_pandas(frame[list(columns)], preserve_index=False)
        records: list[dict[str, Any]] = table.to_pylist()
        return records

    cards_by_account: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for card in rows(cards, contract.CARD_FIELDS):
        cards_by_account[card["sourceAccountId"]].append(card)

    accounts_by_holder: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for account in rows(accounts, contract.ACCOUNT_COLUMNS):
        account["sourceCustomerIds"] = (
            account["sourceCustomerIds"] or account["primarySourceCustomerId"]
        ).split("|")
        account["cards"] = cards_by_account.get(account["sourceAccountId"], [])
        for holder in dict.fromkeys(account["sourceCustomerIds"]):
            accounts_by_holder[holder].append(account)

    documents = []
    for customer in rows(customers, contract.CUSTOMER_COLUMNS):
        for optional in ("sourceParentCustomerId", "redemptionEligibility"):
            if not customer[optional]:
                del customer[optional]  # left out when missing, as the reference does
        alerts = customer["alertOptInStatus"]
        customer["alertOptInStatus"] = alerts.split("|") if alerts else []
        customer["accounts"] = accounts_by_holder.get(customer["sourceCustomerId"], [])
        documents.append(orjson.dumps(customer))
    return documents


def reference_documents(
    customers: pd.DataFrame, accounts: pd.DataFrame, cards: pd.DataFrame
) -> list[bytes]:
    return [serialise_document(d) for d in customer_documents(customers, accounts, cards)]


def fast_documents(
    customers: pd.DataFrame, accounts: pd.DataFrame, cards: pd.DataFrame
) -> list[bytes]:
    return customer_document_bytes(customers, accounts, cards).documents


def both(customers: pd.DataFrame, accounts: pd.DataFrame, cards: pd.DataFrame) -> list[bytes]:
    documents, fingerprints = fingerprinted_documents(customers, accounts, cards)
    assert len(fingerprints) == len(documents)
    return documents.documents


RUNNERS: dict[str, Callable[[pd.DataFrame, pd.DataFrame, pd.DataFrame], Sized]] = {
    "baseline": baseline_documents,
    "reference": reference_documents,
    "fast": fast_documents,
    "fingerprint": customer_fingerprints,
    "both": both,
}


def _measure(variant: str, n_customers: int) -> dict[str, Any]:
    """One variant, cold then warm, in this process; the times and this process's peak RSS."""
    frames = normalised_frames(n_customers)
    times, cpu_times = [], []
    if variant != "frames":
        for _ in range(2):
            gc.collect()
            start, cpu_start = time.perf_counter(), time.process_time()
            documents = RUNNERS[variant](*frames)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
            assert len(documents) == n_customers
            del documents
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"variant": variant, "times": times, "cpu": cpu_times, "peak_mib": peak_kib / 1024}


def _check_equal(n_customers: int) -> None:
    frames = normalised_frames(n_customers, seed=1)
    expected = reference_documents(*frames)
    for variant in ("baseline", "fast"):
        if RUNNERS[variant](*frames) != expected:
            raise SystemExit(f"{variant} does not produce the reference bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:  # a child process: measure one variant, print JSON
        print(json.dumps(_measure(args.variant, args.customers)))
        return

    _check_equal(2_000)
    n = args.customers
    print(
        f"nest + serialise, {n:,} customers (~{n * 3 // 2:,} accounts, {2 * n:,} cards); "
        f"median of {args.repeat} rounds, each run in a fresh process",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in args.variants}
    for round_ in range(args.repeat):
        for variant in args.variants:
            if variant == "frames" and round_:
                continue
            child = subprocess.run(
                [sys.executable, __file__, "--variant", variant, "--customers", str(n)],
                check=True,
                capture_output=True,
                text=True,
            )
            runs[variant].append(json.loads(child.stdout.strip().splitlines()[-1]))

    print(
        f"  {'':<12} {'cold':>9} {'warm':>9}   {'CPU cold':>9} {'warm':>7}"
        f"   {'peak RSS':>10}   vs baseline: cold, warm (CPU: cold, warm)"
    )
    for variant, results in runs.items():
        print(_row(variant, results, runs.get("baseline")))


def _medians(results: list[dict[str, Any]], key: str = "times") -> tuple[float, float] | None:
    """Median over the rounds of the cold and of the warm run."""
    if not results or not results[0][key]:
        return None
    return (
        statistics.median(r[key][0] for r in results),
        statistics.median(r[key][1] for r in results),
    )


def _row(variant: str, results: list[dict[str, Any]], baseline: list[dict[str, Any]] | None) -> str:
    peak = max(r["peak_mib"] for r in results)
    times, cpu = _medians(results), _medians(results, "cpu")
    if times is None or cpu is None:
        blank = " " * 40
        return f"  {variant:<12} {blank}{peak:7,.0f} MiB   (building the frames only)"
    ratio = ""
    base, base_cpu = _medians(baseline or []), _medians(baseline or [], "cpu")
    if base and base_cpu and variant in ("reference", "fast", "both"):
        ratio = (
            f"{base[0] / times[0]:5.1f}x {base[1] / times[1]:5.1f}x"
            f"  ({base_cpu[0] / cpu[0]:4.1f}x {base_cpu[1] / cpu[1]:4.1f}x)"
        )
    return (
        f"  {variant:<12} {times[0]:8.2f}s {times[1]:8.2f}s   {cpu[0]:8.2f}s {cpu[1]:6.2f}s"
        f"   {peak:7,.0f} MiB   {ratio}"
    )


if __name__ == "__main__":
    main()
