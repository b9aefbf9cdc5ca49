"""The terminal of a run, driven through the real CLI against the stand-in partner.

Log lines print above the progress bar (one console: a real pseudo-terminal here, so that
rich draws the bar), each retry is logged once, ``-q`` keeps only warnings and the
summary, ``-v`` adds debug records, ``--log-format json`` gives one JSON object per line
without card data, and every run ends by naming its report and its state folder (a failed
or aborted run too).
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from customer_sync.cli.app import main
from customer_sync.devtools.stub_server import StubFaults, serve_stub_in_thread
from tests.conftest import REPO
from tests.flow_support import read_table, write_synthetic, write_table

pytestmark = pytest.mark.usefixtures("prefect_harness")

WAIT = 240.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
LOG_LINE = re.compile(r"\d\d:\d\d:\d\d\.\d{3} \| (DEBUG|INFO|WARNING|ERROR|CRITICAL)")
RETRY = re.compile(r"batch (\S+) attempt (\d+) failed", re.IGNORECASE)


def _run(source: Path, url: str, state: Path, *options: str) -> list[str]:
    return ["run", str(source), "--api-url", url, "--state", str(state), *options]


def _environment() -> dict[str, str]:
    import prefect.settings

    env = {**os.environ, "PREFECT_API_URL": str(prefect.settings.PREFECT_API_URL.value())}
    env["PYTHONPATH"] = str(REPO)
    env.pop("CUSTOMER_SYNC_API_TOKEN", None)
    return env


def _on_a_terminal(arguments: list[str]) -> tuple[int, str, str]:
    """The real command with its standard error on a pseudo-terminal (rich draws the
    progress bar there); its exit status, stdout and what the terminal showed."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "customer_sync.cli.app", *arguments],
        cwd=REPO,
        env={**_environment(), "COLUMNS": "160", "TERM": "xterm-256color"},
        stdout=subprocess.PIPE,
        stderr=terminal,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(terminal)
    shown = bytearray()
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], WAIT)
            if not ready:
                raise TimeoutError(bytes(shown).decode(errors="replace")[-3000:])
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal's other end closed: the process is done
                break
            if not chunk:
                break
            shown += chunk
        out = process.stdout.read().decode() if process.stdout else ""
        status = process.wait(timeout=WAIT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        os.close(controller)
    return status, out, bytes(shown).decode(errors="replace")


def _segments(shown: str) -> list[str]:
    """What the terminal showed, cut where the cursor went back to a line's start."""
    return [piece for piece in re.split(r"[\r\n]", ANSI.sub("", shown)) if piece.strip()]


@pytest.mark.slow
def test_log_lines_print_above_the_bar_and_each_retry_is_logged_once(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 60)
    faults = StubFaults(fail_first_n=3, latency=0.05)
    with serve_stub_in_thread(faults) as stub:
        arguments = _run(source, stub.url, tmp_path / "state", "--batch-size", "5")
        status, out, shown = _on_a_terminal([*arguments, "--concurrency", "2"])
    assert status == 0, shown[-3000:]
    segments = _segments(shown)
    bars = [s for s in segments if "delivering" in s and "customers ·" in s]
    assert bars, shown[-3000:]  # the display was drawn (a terminal, a run of 12 batches)
    for segment in bars:  # a log line never shares a line with the bar
        assert not LOG_LINE.search(segment), segment
    logged = [s for s in segments if LOG_LINE.search(s)]
    assert all(LOG_LINE.match(s) for s in logged), [s for s in logged if not LOG_LINE.match(s)]
    retries = [RETRY.search(s) for s in logged if RETRY.search(s)]
    seen = [(m.group(1), m.group(2)) for m in retries if m]
    assert len(seen) == 3, logged  # the stand-in failed the first three requests
    assert len(set(seen)) == len(seen)  # once each, not once per logger
    assert "counts reconcile" in out


@pytest.mark.slow
def test_a_terminal_sees_progress_while_the_extract_is_prepared(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 400)
    with serve_stub_in_thread() as stub:
        arguments = _run(source, stub.url, tmp_path / "state", "--chunk-customers", "100")
        status, _, shown = _on_a_terminal(arguments)
    assert status == 0, shown[-3000:]
    preparing = [s for s in _segments(shown) if s.startswith("preparing")]
    assert preparing, shown[-3000:]
    assert any("400 customers" in s or "/400" in s for s in preparing), preparing


def _retrying_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *common: str
) -> tuple[int, str, str]:
    source = write_synthetic(tmp_path / "in", 20)
    with serve_stub_in_thread(StubFaults(fail_first_n=2)) as stub:
        arguments = _run(source, stub.url, tmp_path / "state", "--batch-size", "5")
        status = main([*common, *arguments, "--concurrency", "1"])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_quiet_keeps_warnings_and_the_summary_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = _retrying_run(tmp_path, capsys, "-q")
    assert status == 0, err
    assert not re.search(r"\| (INFO|DEBUG) ", err), err
    assert "delivered: 20 sent" in out and "counts reconcile" in out
    # the same run without -q tells its story on stderr
    status, _, err = _retrying_run(tmp_path / "again", capsys)
    assert status == 0 and re.search(r"\| INFO ", err)
    assert len(RETRY.findall(err)) == 2  # the two failed requests, once each


def test_verbose_adds_debug_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _retrying_run(tmp_path, capsys, "-v")
    assert status == 0, err
    assert re.search(r"\| DEBUG .*no Prefect Secret block", err), err
    status, _, err = _retrying_run(tmp_path / "normal", capsys)
    assert status == 0 and "| DEBUG " not in err


def test_quiet_and_verbose_together_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "-v", "validate", "data"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("customer-sync: "), lines


def test_json_logs_are_one_object_a_line_without_card_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_synthetic(tmp_path / "in", 30)
    cards = read_table(source, "cards")
    card_number = "4111 1111 1111 1111"  # planted where an error message will quote it
    cards.loc[0, "iin"] = card_number
    write_table(source, "cards", cards)
    refused = str(read_table(source, "customers").loc[5, "sourceCustomerId"])
    with serve_stub_in_thread(StubFaults(reject_ids=frozenset({refused}))) as stub:
        arguments = _run(source, stub.url, tmp_path / "state", "--max-held-back", "0.5")
        status = main(["--log-format", "json", *arguments])
    captured = capsys.readouterr()
    assert status == 1, captured.err  # the refused customer failed
    records = []
    for line in captured.err.splitlines():
        if line.startswith("customer-sync:"):
            continue  # the one-line error, as always
        records.append(json.loads(line))  # every other line is one JSON object
    assert records
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r.get("flow_run_id") for r in records)  # Prefect's run records say which run
    assert any("rejected" in r["message"] or "refused" in r["message"] for r in records)
    assert card_number not in captured.err and "4111" not in captured.err
    assert "\x1b[" not in captured.err  # no colours, no progress drawing


def test_the_end_names_the_report_and_state_of_a_failed_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_synthetic(tmp_path / "in", 10)
    refused = str(read_table(source, "customers").loc[0, "sourceCustomerId"])
    state = tmp_path / "state"
    with serve_stub_in_thread(StubFaults(reject_ids=frozenset({refused}))) as stub:
        status = main([*_run(source, stub.url, state), "--no-progress"])
    out = capsys.readouterr().out
    assert status == 1
    report = _named(out, "report")
    assert Path(report).is_file() and Path(report).is_relative_to(state / "runs")
    assert json.loads(Path(report).read_text())["customers_failed"] == 1
    assert _named(out, "state") == str(state)


def test_the_end_names_the_report_of_an_aborted_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_synthetic(tmp_path / "in", 10)
    customers = read_table(source, "customers")
    customers.loc[0:4, "enrollmentOptInStatus"] = "NOT-A-STATUS"  # half held back: the guard
    write_table(source, "customers", customers)
    state, report = tmp_path / "state", tmp_path / "out" / "report.json"
    with serve_stub_in_thread() as stub:
        status = main([*_run(source, stub.url, state), "--report", str(report), "--no-progress"])
        requests = stub.counters.requests
    captured = capsys.readouterr()
    assert status == 2 and requests == 0, captured.err
    assert _named(captured.out, "report") == str(report)
    assert json.loads(report.read_text())["status"] == "aborted"
    assert _named(captured.out, "state") == str(state)


def _named(out: str, what: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith(f"{what}: ")]
    assert len(lines) == 1, out
    return lines[0].removeprefix(f"{what}: ")
