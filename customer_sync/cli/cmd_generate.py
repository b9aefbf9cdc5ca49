"""``customer-sync generate OUT``: write a synthetic extract of any size (CSV or Parquet).

Generated chunk by chunk, so memory stays flat however many customers are asked for.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

import typer


def generate(
    out: Annotated[str, typer.Argument(help="folder to write customers, accounts and cards into")],
    customers: Annotated[
        int, typer.Option("--customers", metavar="N", help="how many customers")
    ] = 1000,
    file_format: Annotated[
        Literal["csv", "parquet"], typer.Option("--format", help="the files' format")
    ] = "csv",
    seed: Annotated[int, typer.Option("--seed", help="the same seed, the same extract")] = 0,
) -> int:
    """Write a synthetic extract of any size.

    Its card data is made up; the same seed gives the same extract.
    """
    from customer_sync.devtools.synthetic import write_synthetic_extract
    from customer_sync.schemas.errors import ConfigError

    if customers < 0:
        raise ConfigError(f"--customers must not be negative, not {customers}")
    start = time.perf_counter()
    written = write_synthetic_extract(out, customers, file_format, seed=seed)
    seconds = time.perf_counter() - start
    for table, file in written.items():
        print(f"{table:<10} {file.rows:>12,} rows  {file.path}")
    print(f"generated {customers:,} customers (seed {seed}) in {seconds:.1f} s")
    return 0
