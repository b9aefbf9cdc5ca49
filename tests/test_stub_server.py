"""The stand-in partner server over real HTTP on 127.0.0.1: contract, recording, faults."""

from __future__ import annotations

import copy
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from customer_sync.devtools.stub_server import (
    StubFaults,
    StubPartner,
    run_stub_server,
    serve_stub_in_subprocess,
    serve_stub_in_thread,
)
from customer_sync.schemas import contract
from customer_sync.schemas.errors import ConfigError
from tests.document_factory import customer, request_body

JSON = {"Content-Type": "application/json"}


class Api:
    """A thin raw client for the tests: one session, the stub's URL, a session token."""

    def __init__(self, session: aiohttp.ClientSession, stub: StubPartner) -> None:
        self.session, self.stub, self.token = session, stub, ""

    async def start_session(self) -> str:
        status, body = await self.call(
            "POST", contract.START_SESSION_PATH, b'{"scopes":["api:institution"]}', auth=False
        )
        assert status == 200
        self.token = body["sessionToken"]
        return self.token

    async def call(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> tuple[int, Any]:
        sent = dict(JSON)
        if auth:
            sent[contract.SESSION_TOKEN_HEADER] = self.token
        sent.update(headers or {})
        async with self.session.request(method, self.stub.url + path, data=body, headers=sent) as r:
            payload = await r.read()
            return r.status, orjson.loads(payload) if payload else None

    async def customers(self, documents: list[dict[str, Any]], **kw: Any) -> tuple[int, Any]:
        return await self.call("POST", contract.CUSTOMERS_PATH, request_body(documents), **kw)


async def _api(faults: StubFaults | None = None, **options: Any) -> AsyncIterator[Api]:
    async with run_stub_server(faults, **options) as stub, aiohttp.ClientSession() as session:
        api = Api(session, stub)
        await api.start_session()
        yield api


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async for value in _api():
        yield value


async def test_accepts_valid_customers_and_echoes_the_request_id(api: Api) -> None:
    status, body = await api.customers(
        [customer("C1"), customer("C2")], headers={contract.REQUEST_ID_HEADER: "batch-1-1"}
    )
    assert (status, body) == (200, {"requestId": "batch-1-1"})
    assert api.stub.accepted["C1"].method == "POST"
    assert api.stub.accepted["C1"].document == customer("C1")
    assert api.stub.accepted["C2"].times == 1
    (record,) = api.stub.requests
    assert (record.method, record.request_id, record.customers, record.status) == (
        "POST",
        "batch-1-1",
        2,
        200,
    )


async def test_makes_up_a_request_id_when_none_is_given(api: Api) -> None:
    status, body = await api.customers([customer("C1")])
    assert status == 200
    assert len(body["requestId"]) == 36


async def test_put_replaces_the_recorded_document_and_counts_acceptances(api: Api) -> None:
    await api.customers([customer("C1")])
    changed = customer("C1", postalCode="99999")
    status, _ = await api.call("PUT", contract.CUSTOMERS_PATH, request_body([changed]))
    assert status == 200
    assert api.stub.accepted["C1"].method == "PUT"
    assert api.stub.accepted["C1"].document == changed
    assert api.stub.accepted["C1"].times == 2


async def test_more_than_50_customers_is_a_400(api: Api) -> None:
    status, body = await api.customers([customer(f"C{n}") for n in range(51)])
    assert status == 400
    assert body["status"] == 400
    assert set(body) == {"type", "title", "status", "validationErrors", "requestId"}
    assert "at most 50" in body["validationErrors"][0]["message"]
    assert api.stub.accepted == {}
    assert api.stub.requests[-1].customers == 51


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        (
            ("accounts", 0, "cards", 0, "networkIdentifier"),
            "4",
            "accounts[0].cards[0].networkIdentifier",
            "valid integer",
        ),
        (("accounts", 0, "status"), "SUSPENDED", "accounts[0].status", "Input should be"),
        (("country",), 840, "country", "valid string"),
    ],
)
async def test_wrong_type_or_enum_names_the_customer_and_field(
    api: Api, path: tuple[Any, ...], value: Any, field: str, message: str
) -> None:
    documents = [customer("C0"), customer("C1"), customer("C2")]
    target: Any = documents[1]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    status, body = await api.customers(documents)
    assert status == 400
    (error,) = body["validationErrors"]
    assert error["customerIndex"] == 1
    assert error["sourceCustomerId"] == "C1"
    assert error["field"] == field
    assert message in error["message"]
    assert api.stub.accepted == {}


async def test_missing_field_is_a_400(api: Api) -> None:
    document = customer("C7")
    del document["targetingIndicator"]
    status, body = await api.customers([document])
    assert status == 400
    assert body["validationErrors"][0]["field"] == "targetingIndicator"
    assert body["validationErrors"][0]["message"] == "Field required"


async def test_errors_never_echo_card_data(api: Api) -> None:
    document = customer("C1")
    document["accounts"][0]["cards"][0]["last4"] = "98x7"
    document["postalCode"] = 12345
    status, body = await api.customers([document])
    assert status == 400
    text = orjson.dumps(body).decode()
    assert "98x7" not in text
    assert "12345" not in text


async def test_unreadable_json_is_a_400(api: Api) -> None:
    status, body = await api.call("POST", contract.CUSTOMERS_PATH, b'{"customers": [')
    assert status == 400
    assert body["validationErrors"][0]["customerIndex"] is None


async def test_non_json_content_type_is_a_415(api: Api) -> None:
    status, body = await api.call(
        "POST", contract.CUSTOMERS_PATH, b"<xml/>", headers={"Content-Type": "text/xml"}
    )
    assert (status, body["status"]) == (415, 415)


async def test_missing_or_unknown_token_is_a_401(api: Api) -> None:
    status, _ = await api.customers([customer("C1")], auth=False)
    assert status == 401
    api.token = "not-a-token"
    status, body = await api.customers([customer("C1")])
    assert (status, body["title"]) == (401, "Unauthorized")
    assert api.stub.counters.unauthorized == 2


async def test_expired_token_is_a_401_until_a_new_session() -> None:
    now = [0.0]
    async for api in _api(StubFaults(token_lifetime=100), clock=lambda: now[0]):
        assert (await api.customers([customer("C1")]))[0] == 200
        now[0] = 100.0
        assert (await api.customers([customer("C1")]))[0] == 401
        await api.start_session()
        assert (await api.customers([customer("C1")]))[0] == 200
        assert api.stub.counters.sessions_started == 2


async def test_expire_tokens_makes_every_issued_token_stale(api: Api) -> None:
    api.stub.expire_tokens()
    assert (await api.customers([customer("C1")]))[0] == 401


async def test_static_bearer_token_is_the_second_scheme() -> None:
    async with run_stub_server(bearer_token="s3cret") as stub, aiohttp.ClientSession() as session:
        api = Api(session, stub)
        body = request_body([customer("C1")])
        good = {"Authorization": "Bearer s3cret"}
        bad = {"Authorization": "Bearer wrong"}
        assert (await api.call("POST", contract.CUSTOMERS_PATH, body, headers=good, auth=False))[
            0
        ] == 200
        assert (await api.call("POST", contract.CUSTOMERS_PATH, body, headers=bad, auth=False))[
            0
        ] == 401


async def test_start_session_wants_the_institution_scope(api: Api) -> None:
    status, _ = await api.call(
        "POST", contract.START_SESSION_PATH, b'{"scopes":["other"]}', auth=False
    )
    assert status == 400
    status, _ = await api.call("POST", contract.START_SESSION_PATH, b"nope", auth=False)
    assert status == 400


async def test_unknown_path_and_method_answer_problem_json(api: Api) -> None:
    assert (await api.call("GET", contract.CUSTOMERS_PATH, b""))[1]["status"] == 405
    assert (await api.call("POST", "/v2/data/nothing", b"{}"))[1]["status"] == 404


async def test_reject_ids_refuse_the_whole_request_naming_them() -> None:
    async for api in _api(StubFaults(reject_ids=frozenset({"C2"}))):
        status, body = await api.customers([customer("C1"), customer("C2")])
        assert status == 400
        assert [(e["customerIndex"], e["sourceCustomerId"]) for e in body["validationErrors"]] == [
            (1, "C2")
        ]
        assert api.stub.accepted == {}
        assert (await api.customers([customer("C1")]))[0] == 200


async def test_fail_first_n_then_answer() -> None:
    async for api in _api(StubFaults(fail_first_n=2, fail_with=500)):
        assert (await api.customers([customer("C1")]))[0] == 500
        assert (await api.customers([customer("C1")]))[0] == 500
        assert (await api.customers([customer("C1")]))[0] == 200
        assert [r.status for r in api.stub.requests] == [500, 500, 200]
        assert api.stub.counters.injected_errors == 2


async def test_fail_each_batch_counts_per_distinct_body() -> None:
    async for api in _api(StubFaults(fail_each_batch=1, fail_with=429, retry_after=0.25)):
        async with api.session.post(
            api.stub.url + contract.CUSTOMERS_PATH,
            data=request_body([customer("C1")]),
            headers={**JSON, contract.SESSION_TOKEN_HEADER: api.token},
        ) as answer:
            assert answer.status == 429
            assert answer.headers["Retry-After"] == "0.250"
        assert (await api.customers([customer("C2")]))[0] == 429
        assert (await api.customers([customer("C1")]))[0] == 200
        assert (await api.customers([customer("C2")]))[0] == 200


async def test_dropped_connection_gets_no_answer() -> None:
    async for api in _api(StubFaults(fail_first_n=1, fail_with="drop")):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.customers([customer("C1")])
        assert (await api.customers([customer("C1")]))[0] == 200
        assert api.stub.counters.dropped == 1
        assert api.stub.accepted["C1"].times == 1


async def test_drop_after_accept_records_the_customer() -> None:
    faults = StubFaults(drop_share=1.0, drop_after_accept=True)
    async for api in _api(faults):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.customers([customer("C1")])
        assert api.stub.accepted["C1"].times == 1


async def test_seeded_shares_are_reproducible() -> None:
    async def statuses() -> list[int]:
        out = []
        async for api in _api(
            StubFaults(error_share=0.3, rate_limit_share=0.3, retry_after=0, seed=7)
        ):
            for _ in range(30):
                out.append((await api.customers([customer("C1")]))[0])
        return out

    first = await statuses()
    assert first == await statuses()
    assert {200, 429} <= set(first)
    assert set(first) & {500, 503}


async def test_no_validation_mode_still_records() -> None:
    async with (
        run_stub_server(validate=False, keep_documents=False) as stub,
        aiohttp.ClientSession() as session,
    ):
        raw = Api(session, stub)
        await raw.start_session()
        broken = copy.deepcopy(customer("C1"))
        broken["country"] = 840
        assert (await raw.customers([broken]))[0] == 200
        assert stub.accepted["C1"].document is None
        assert stub.stats()["customers_unique"] == 1


async def test_refuses_a_non_loopback_host() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        async with run_stub_server(host="0.0.0.0"):
            pass


def test_faults_validate_their_shares() -> None:
    with pytest.raises(ValueError, match="shares"):
        StubFaults(error_share=0.8, drop_share=0.5)


def _post(url: str, token: str, documents: list[dict[str, Any]]) -> int:
    request = urllib.request.Request(
        url + contract.CUSTOMERS_PATH,
        data=request_body(documents),
        headers={**JSON, contract.SESSION_TOKEN_HEADER: token},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(answer.status)


def _token(url: str) -> str:
    request = urllib.request.Request(
        url + contract.START_SESSION_PATH,
        data=b'{"scopes":["api:institution"]}',
        headers=JSON,
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(orjson.loads(answer.read())["sessionToken"])


def test_thread_form_serves_synchronous_code() -> None:
    with serve_stub_in_thread() as stub:
        assert stub.url.startswith("http://127.0.0.1:")
        assert _post(stub.url, _token(stub.url), [customer("C1")]) == 200
        assert stub.accepted["C1"].times == 1


def test_thread_form_reports_a_start_failure() -> None:
    with pytest.raises(ConfigError), serve_stub_in_thread(host="10.0.0.1"):
        pass


@pytest.mark.slow
def test_subprocess_form_serves_and_reports_stats() -> None:
    with serve_stub_in_subprocess(StubFaults(reject_ids=frozenset({"X"}))) as remote:
        token = _token(remote.url)
        assert _post(remote.url, token, [customer("C1"), customer("C2")]) == 200
        stats = remote.stats()
        assert stats["customers_unique"] == 2
        assert stats["sessions_started"] == 1
        remote.expire_tokens()
        with pytest.raises(urllib.error.HTTPError) as caught:
            _post(remote.url, token, [customer("C1")])
        assert caught.value.code == 401
