"""``customer-sync generate OUT``: write a synthetic extract of any size (CSV or Parquet).

Generated chunk by chunk, so memory stays flat however many customers are asked for.
"""

from __future__ import annotations

import argparse
import time

from customer_sync.devtools.synthetic import write_synthetic_extract
from customer_sync.schemas.errors import ConfigError


def main(args: argparse.Namespace) -> int:
    if args.customers < 0:
        raise ConfigError(f"--customers must not be negative, not {args.customers}")
    start = time.perf_counter()
    written = write_synthetic_extract(args.out, args.customers, args.format, seed=args.seed)
    seconds = time.perf_counter() - start
    for table, file in written.items():
        print(f"{table:<10} {file.rows:>12,} rows  {file.path}")
    print(f"generated {args.customers:,} customers (seed {args.seed}) in {seconds:.1f} s")
    return 0
