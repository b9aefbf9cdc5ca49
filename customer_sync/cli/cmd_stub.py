"""``customer-sync stub-api``: serve the stand-in partner API until Ctrl-C.

It listens on loopback only. ``CUSTOMER_SYNC_API_TOKEN``, when set, is accepted as a static
bearer token besides the session tokens of ``startSession``.
"""

from __future__ import annotations

import argparse
import asyncio

from customer_sync.adapters.partner_client import is_loopback
from customer_sync.devtools.stub_server import StubPartner, faults_from_args, serve_until_stopped
from customer_sync.schemas.errors import ConfigError
from customer_sync.settings import Settings


def main(args: argparse.Namespace) -> int:
    if not is_loopback(args.host):
        raise ConfigError(f"the stand-in server only listens on loopback, not {args.host!r}")
    try:
        faults = faults_from_args(args)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    stub = StubPartner(
        faults,
        keep_documents=False,  # a long-lived server must not grow with every customer
        bearer_token=Settings.from_environment().api_token,
        max_recorded_requests=100_000,
    )

    def announce(url: str) -> None:
        print(f"stand-in partner API on {url} (Ctrl-C to stop)", flush=True)

    asyncio.run(serve_until_stopped(stub, args.host, args.port, announce))
    print(f"stopped; {stub.stats()}", flush=True)
    return 0
