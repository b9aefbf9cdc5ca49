"""``customer-sync validate``: read and check an extract, print a summary, write the rejects.

Exit status: 0 when every row is valid, 1 when some rows were rejected (customers held
back, or orphan accounts/cards that belong to nobody), 2 when the input is unusable or the
held-back guard trips (raised as ``schemas.errors`` exceptions; ``cli.app`` prints them).

The rejects file is always written (header only when there is nothing to reject), at
``--rejects``, else beside ``--report`` as ``<report name>.rejects.csv``, else
``./rejects.csv``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from customer_sync.cli.options import (
    OUTPUT_PANEL,
    AccountsFile,
    CardsFile,
    CustomersFile,
    MaxHeldBack,
    Rejects,
    Rename,
    Source,
)

if TYPE_CHECKING:
    from customer_sync.schemas.errors import GuardTripped
    from customer_sync.transforms.validate import Validation

ValidationReport = Annotated[
    str | None,
    typer.Option(
        "--report", metavar="FILE", help="write the summary as JSON", rich_help_panel=OUTPUT_PANEL
    ),
]


def validate(
    source: Source = None,
    customers: CustomersFile = None,
    accounts: AccountsFile = None,
    cards: CardsFile = None,
    rename: Rename = None,
    max_held_back: MaxHeldBack = 0.05,
    rejects: Rejects = None,
    report: ValidationReport = None,
) -> int:
    """Validate an extract and print a summary (nothing is sent).

    Exit status 0 when every row is valid, 1 when some rows were rejected, 2 when the
    input is unusable or the held-back guard trips.
    """
    from customer_sync.adapters.readers import parse_rename, read_extract
    from customer_sync.adapters.rejects import write_rejects
    from customer_sync.schemas.errors import GuardTripped
    from customer_sync.transforms.validate import held_back_guard, validate_extract

    extract = read_extract(
        source, customers=customers, accounts=accounts, cards=cards, rename=parse_rename(rename)
    )
    validation = validate_extract(extract)
    rejects_path = write_rejects(validation.rejects, rejects_location(rejects, report))
    tripped: GuardTripped | None = None
    try:
        held_back_guard(validation, max_held_back)
    except GuardTripped as error:
        tripped = error
    for line in summary_lines(validation, rejects_path):
        print(line)
    if report:
        written = validation_report(validation, rejects_path, max_held_back, tripped)
        write_json(written, Path(report))
    if tripped is not None:
        raise tripped
    return 0 if validation.rejects.empty else 1


def rejects_location(rejects: str | None, report: str | None) -> Path:
    """Where the rejects go: the option, else beside the report, else ./rejects.csv."""
    if rejects:
        return Path(rejects)
    if report:
        path = Path(report)
        return path.with_name(f"{path.stem}.rejects.csv")
    return Path("rejects.csv")


def validation_report(
    validation: Validation,
    rejects_path: Path,
    max_share: float,
    tripped: GuardTripped | None,
) -> dict[str, Any]:
    """The JSON report: the validation's counts, the rejects path and the guard's verdict."""
    return {
        **validation.summary(),
        "rejects": str(rejects_path),
        "max_held_back_share": max_share,
        "guard_tripped": tripped is not None,
        "guard_message": str(tripped) if tripped else None,
        "exit_status": 2 if tripped else (0 if validation.rejects.empty else 1),
    }


def summary_lines(validation: Validation, rejects_path: Path) -> list[str]:
    """The summary printed for people (no cell values: ids only appear in the rejects file)."""
    read = ", ".join(f"{table} {count:,}" for table, count in validation.rows_read.items())
    lines = [f"rows read:        {read}"]
    if validation.customers_read == 0:
        lines.append("customers:        none in the extract, nothing to send")
    else:
        lines.append(
            f"customers:        {validation.customers_read:,} read, "
            f"{validation.customers_valid:,} valid, "
            f"{validation.customers_held_back:,} held back ({validation.held_back_share:.1%})"
        )
    valid = ", ".join(f"{table} {count:,}" for table, count in validation.rows_valid.items())
    lines.append(f"rows to send:     {valid}")
    if validation.held_back_by_reason:
        lines.append("held back by reason (customers):")
        width = max(len(reason) for reason in validation.held_back_by_reason)
        for reason, count in sorted(
            validation.held_back_by_reason.items(), key=lambda item: (-item[1], item[0])
        ):
            lines.append(f"  {reason:<{width}}  {count:,}")
    if validation.orphan_accounts or validation.orphan_cards:
        lines.append(
            f"orphans:          accounts {validation.orphan_accounts:,}, "
            f"cards {validation.orphan_cards:,} (no holder in the customers table)"
        )
    for table, columns in validation.ignored_columns.items():
        lines.append(f"ignored columns:  {table}: {', '.join(columns)}")
    lines.append(f"rejects:          {len(validation.rejects):,} row(s) -> {rejects_path}")
    return lines


def write_json(document: dict[str, Any], path: Path) -> None:
    """Write a JSON file atomically (a scheduler reading it never sees half of it)."""
    import json
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=2, sort_keys=False)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
