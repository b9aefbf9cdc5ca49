"""The partner's error text is never stored as it comes (issue 11).

The sanitiser is pure and tested on its own; then a partner that echoes everything (the
stand-in's ``echo_errors``) is met over real HTTP, by delivery and by a real flow run: the
token and the planted card values must be in none of report.json, the dead-letter export
without documents, the ledger's answers, or the log records.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import orjson
import pytest

from customer_sync.adapters.delivery import RetryPolicy, deliver_batch
from customer_sync.adapters.partner_client import PartnerClient, PartnerSettings
from customer_sync.devtools.stub_server import StubFaults, run_stub_server, serve_stub_in_thread
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.transforms.redaction import (
    MASK,
    MAX_TEXT,
    problem_text,
    redacted,
    sensitive_values,
)
from tests.document_factory import batches
from tests.flow_support import read_table, run_sync, write_synthetic, write_table

FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)
POSTAL, LAST4, IIN = "97531", "7391", "493817"


def test_known_fields_only_and_sensitive_fields_masked() -> None:
    items = [
        {"field": "accounts[0].cards[0].last4", "message": "bad 0042", "rejectedValue": "0042"},
        {"field": "postalCode", "message": "01234 is not a postal code"},
        {"field": "status", "message": "not OPEN", "code": "E12", "headers": {"X": "tok"}},
        "plain text",
    ]
    text = problem_text(400, "Validation failed", items)
    assert "0042" not in text and "01234" not in text and "tok" not in text
    assert "accounts[0].cards[0].last4: ***" in text
    assert "status: not OPEN [E12]" in text
    assert text.startswith("HTTP 400 Validation failed: ")


@pytest.mark.parametrize(
    "secret_text",
    ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005"],
)
def test_card_numbers_are_masked(secret_text: str) -> None:
    assert redacted(f"card {secret_text} refused") == f"card {MASK} refused"


def test_token_jwt_bearer_and_batch_values_are_masked_and_text_capped() -> None:
    token = "s3cr3t-session-token-value"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    text = redacted(
        f"headers {{'X-CDLX-Session-Token': '{token}'}} Bearer abc.def {jwt} at 97531 iin 493817",
        {token, POSTAL, IIN, "ab"},  # too short to mask: "ab" stays
    )
    for secret in (token, jwt, "abc.def", POSTAL, IIN):
        assert secret not in text
    assert "headers" in text
    assert len(redacted("x" * 10_000)) == MAX_TEXT
    echoed = "got " + json.dumps({"a": {"b": "c" * 100}, "d": 1}) + " end {short}"
    assert redacted(echoed) == "got {…} end {short}"


def test_sensitive_values_of_documents() -> None:
    (batch,) = batches(2)
    values = sensitive_values(batch.documents)
    assert {"01234", "0042", "412345"} <= values  # postalCode, last4, iin of the factory


async def test_echoed_400_over_http_stores_no_token_or_card_value() -> None:
    async with run_stub_server(StubFaults(echo_errors=True)) as stub:
        settings = PartnerSettings(api_url=stub.url, api_token=None)
        async with PartnerClient(settings) as client:
            (batch,) = batches(4)
            outcome = await deliver_batch(client, batch, FAST)
        tokens = list(stub._tokens)
    assert outcome.status == "rejected"
    assert set(outcome.rejected) == set(batch.customer_ids)
    stored = orjson.dumps([outcome.error, outcome.rejected, outcome.request_id]).decode()
    assert tokens and all(token not in stored for token in tokens)
    for value in ("01234", "0042", "412345", "PARENT-1", "rejectedValue", "Content-Type"):
        assert value not in stored
    assert "accounts[0].cards[0].last4: ***" in stored  # the error still says where


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(16) == b"SQLite format 3\x00"


def _plant_card_values(source: Path) -> None:
    customers = read_table(source, "customers")
    customers["postalCode"] = POSTAL
    write_table(source, "customers", customers)
    cards = read_table(source, "cards")
    cards.loc[0, "last4"], cards.loc[0, "iin"] = LAST4, IIN  # one card: stays unique
    write_table(source, "cards", cards)


def test_echoing_partner_leaks_nothing_through_a_real_flow(
    tmp_path: Path,
    prefect_harness: None,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    source = write_synthetic(tmp_path / "in", 12)
    _plant_card_values(source)
    state, report = tmp_path / "state", tmp_path / "report.json"
    with serve_stub_in_thread(StubFaults(echo_errors=True)) as stub:
        result = run_sync(source, stub.url, state, report=str(report))
        tokens = list(stub._tokens)
    assert tokens
    assert result.customers_rejected == 12 and result.reconciles
    export = tmp_path / "dead.jsonl"
    with SqliteLedger.open(state, read_only=True) as ledger:
        assert ledger.export_dead_letters(export) == 12
        letters = ledger.dead_letters()
    documents = [bytes(letter.document or b"") for letter in letters]
    assert any(LAST4.encode() in doc and IIN.encode() in doc for doc in documents)  # allowed
    answers = [letter.answer or "" for letter in letters]
    assert all("HTTP 400" in answer for answer in answers)
    texts = {
        "report.json": report.read_text(),
        "dead-letter export": export.read_text(),
        "ledger answers": json.dumps(answers),
        "logs": caplog.text,
        "console": "".join(capfd.readouterr()),
    }
    if result.dead_letters:
        texts["run's dead letters"] = Path(result.dead_letters).read_text()
    databases = [f for f in state.rglob("*") if f.is_file() and _is_sqlite(f)]
    assert databases
    for database in databases:
        with sqlite3.connect(database) as db:
            tables = [row[0] for row in db.execute("select name from sqlite_master")]
            if "dead_letters" in tables:
                texts[f"{database.name} answers"] = json.dumps(
                    [row[0] for row in db.execute("select answer from dead_letters")]
                )
    for where, text in texts.items():
        for secret in (*tokens, POSTAL, LAST4, IIN):
            assert secret not in text, f"{secret[:3]}... in {where}"
