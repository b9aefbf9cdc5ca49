"""The configuration is checked before the extract is read, and a URL's credentials are
refused before anything could log or store them (the ledger, Prefect's database)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from customer_sync.adapters.urls import has_user_info, without_user_info
from customer_sync.cli.app import main
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.run.config_check import check_configuration
from customer_sync.schemas.errors import ConfigError
from tests.flow_support import write_synthetic
from tests.test_run_outcomes import _one_line, _subprocess

GOOD = {"api_url": "http://127.0.0.1:9", "dry_run": None, "batch_size": 50, "concurrency": 8}


def _check(tmp_path: Path, **changes: object) -> None:
    options = {**GOOD, "state_dir": tmp_path / "state", "report": None, **changes}
    check_configuration(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_size": 51}, "--batch-size must be between 1 and 50"),
        ({"batch_size": 0}, "--batch-size must be between 1 and 50"),
        ({"concurrency": 0}, "--concurrency must be at least 1"),
        ({"api_url": None}, "no partner URL"),
        ({"api_url": "http://partner.example"}, "plain http is only allowed to loopback"),
        ({"api_url": "ftp://127.0.0.1"}, "must be http(s)"),
        ({"api_url": "https://user:s3cret@partner.example"}, "must not carry credentials"),
    ],
)
def test_a_bad_option_is_one_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changes: dict[str, object], message: str
) -> None:
    monkeypatch.delenv("CUSTOMER_SYNC_API_URL", raising=False)
    with pytest.raises(ConfigError, match="^.*" + message.replace("(", r"\(").replace(")", r"\)")):
        _check(tmp_path, **changes)


def test_a_good_configuration_passes_and_leaves_no_probe(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    _check(tmp_path, report=tmp_path / "out" / "report.json")
    _check(tmp_path, api_url="https://partner.example", dry_run=str(tmp_path / "dry"))
    assert [p.name for p in tmp_path.rglob("*")] == ["state"]


def test_a_dry_run_needs_no_url_but_still_refuses_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUSTOMER_SYNC_API_URL", raising=False)
    _check(tmp_path, api_url=None, dry_run=str(tmp_path / "dry"))
    monkeypatch.setenv("CUSTOMER_SYNC_API_URL", "https://u:pw@partner.example")
    with pytest.raises(ConfigError, match="credentials") as refused:
        _check(tmp_path, api_url=None, dry_run=str(tmp_path / "dry"))
    assert "pw" not in str(refused.value)


def test_unwritable_state_and_report_folders_are_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="state folder cannot be created"):
        _check(tmp_path, state_dir=a_file / "state")
    with pytest.raises(ConfigError, match="report"):
        _check(tmp_path, report=a_file / "sub" / "report.json")
    with pytest.raises(ConfigError, match="report path is a folder"):
        _check(tmp_path, report=tmp_path)


def test_user_info_is_stripped_for_display_and_from_the_ledger(tmp_path: Path) -> None:
    url = "http://someone:hunter2@127.0.0.1:8080/base"
    assert has_user_info(url) and not has_user_info("http://127.0.0.1:8080")
    assert without_user_info(url) == "http://127.0.0.1:8080/base"
    with SqliteLedger.open(tmp_path / "state") as ledger:
        ledger.start_run({"api_url": url, "nested": [url]})
        stored = ledger.last_run()
    assert stored is not None and stored.parameters["api_url"] == "http://127.0.0.1:8080/base"
    assert b"hunter2" not in (tmp_path / "state" / "ledger.sqlite3").read_bytes()


@pytest.mark.parametrize(
    "option", [["--batch-size", "51"], ["--batch-size", "0"], ["--concurrency", "0"]]
)
def test_bad_bounds_exit_2_before_reading_and_mark_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str]
) -> None:
    report = tmp_path / "report.json"
    report.write_text('{"exit_status": 0}')  # last night's
    status = main(
        ["run", str(tmp_path / "missing-folder"), "--api-url", "http://127.0.0.1:9",
         "--state", str(tmp_path / "state"), "--report", str(report), *option]
    )  # fmt: skip
    assert status == 2
    line = _one_line(capsys.readouterr().err, subprocess=False)
    assert option[0] in line  # the option, not the missing folder: checked before reading
    data = json.loads(report.read_text())
    assert (data["exit_status"], data["status"]) == (2, "aborted")
    assert not (tmp_path / "state").exists()


@pytest.mark.usefixtures("prefect_harness")
def test_batch_size_51_in_a_subprocess_is_one_line(tmp_path: Path) -> None:
    done = _subprocess(["run", str(tmp_path), "--batch-size", "51", "--dry-run", str(tmp_path)])
    assert done.returncode == 2
    assert "--batch-size must be between 1 and 50" in _one_line(done.stderr)


@pytest.mark.usefixtures("prefect_harness")
def test_replay_without_a_url_is_one_line(tmp_path: Path) -> None:
    done = _subprocess(
        ["replay", "--state", str(tmp_path / "state")], env={"CUSTOMER_SYNC_API_URL": ""}
    )
    assert done.returncode == 2
    assert "no partner URL" in _one_line(done.stderr)


@pytest.mark.usefixtures("prefect_harness")
def test_credentials_in_the_url_are_refused_before_anything_stores_them(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 3)
    state = tmp_path / "state"
    done = _subprocess(
        ["run", str(source), "--api-url", "http://someuser:pa55word@127.0.0.1:9",
         "--state", str(state), "--no-progress"]
    )  # fmt: skip
    assert done.returncode == 2
    assert "must not carry credentials" in _one_line(done.stderr)
    for secret in ("someuser", "pa55word"):
        assert secret not in done.stdout + done.stderr
    assert not state.exists()  # no ledger: refused before the run started
    # nor in Prefect's database (the harness's, in its own temporary folder): the flow was
    # never called with that parameter
    import prefect.settings

    url = str(prefect.settings.PREFECT_SERVER_DATABASE_CONNECTION_URL.value())
    database = Path(url.split(":///", 1)[1])
    files = [p for p in database.parent.glob(database.name + "*") if p.is_file()]
    assert database in files
    for stored in files:
        data = stored.read_bytes()
        assert b"pa55word" not in data and b"someuser" not in data
