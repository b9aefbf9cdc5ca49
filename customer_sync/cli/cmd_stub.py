"""``customer-sync stub-api``: serve the stand-in partner API until Ctrl-C.

It listens on loopback only. ``CUSTOMER_SYNC_API_TOKEN``, when set, is accepted as a static
bearer token besides the session tokens of ``startSession``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from customer_sync.cli.stand_in import with_stand_in_options

if TYPE_CHECKING:
    from customer_sync.devtools.stub_server import StubFaults


@with_stand_in_options
def stub_api(
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="a loopback address")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="0: any free port")] = 8080,
    no_validate: Annotated[
        bool,
        typer.Option("--no-validate", help="accept bodies without checking them (benchmarks)"),
    ] = False,
    keep_documents: Annotated[
        bool,
        typer.Option("--keep-documents", help="keep every accepted document in memory"),
    ] = False,
    *,
    faults: StubFaults,
) -> int:
    """Serve the stand-in partner API (loopback only) until Ctrl-C.

    $CUSTOMER_SYNC_API_TOKEN, when set, is accepted as a static bearer token besides the
    session tokens of startSession.
    """
    import asyncio

    from customer_sync.adapters.partner_client import is_loopback
    from customer_sync.devtools.stub_server import StubPartner, serve_until_stopped
    from customer_sync.schemas.errors import ConfigError
    from customer_sync.settings import Settings

    if not is_loopback(host):
        raise ConfigError(f"the stand-in server only listens on loopback, not {host!r}")
    stub = StubPartner(
        faults,
        validate=not no_validate,
        # by default a long-lived server must not grow with every customer
        keep_documents=keep_documents,
        bearer_token=Settings.from_environment().api_token,
        max_recorded_requests=100_000,
    )

    def announce(url: str) -> None:
        print(f"stand-in partner API on {url} (Ctrl-C to stop)", flush=True)

    asyncio.run(serve_until_stopped(stub, host, port, announce))
    print(f"stopped; {stub.stats()}", flush=True)
    return 0
