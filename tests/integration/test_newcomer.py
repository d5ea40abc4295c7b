"""What a newcomer meets: commands that work as pasted, one log line per 502 with its cause, a token
failure that says what to do here, quiet library loggers, plain skip reasons."""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import RECORDED_DIR, recordings_skip_reason
from tests.identity_double import clear_other_credentials

from aoai_proxy.config import ConfigError, Settings
from aoai_proxy.logs import LIBRARY_LOGGERS, quiet_libraries_from_env

ROOT = Path(__file__).resolve().parents[2]
CHAT = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
BODY = {"messages": [{"role": "user", "content": "hi"}]}


def test_the_readme_simulator_command_runs_as_pasted() -> None:
    readme = (ROOT / "README.md").read_text()
    (command,) = re.findall(r"`(\.venv/bin/python tools/aoai_simulator[^`]*)`", readme)
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip(".venv is not there: bash scripts/check creates it")
    result = subprocess.run(
        [*shlex.split(command), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout


def test_a_python_without_the_packages_is_told_to_use_the_venv() -> None:
    # -S: no site-packages, as with a system Python that has none of the project's packages.
    result = subprocess.run(
        [sys.executable, "-S", "tools/aoai_simulator", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert ".venv/bin/python tools/aoai_simulator" in result.stderr


def proxy_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("aoai_proxy") and r.levelno >= level]


def test_a_502_is_one_warning_line_with_its_cause_and_the_traceback_at_debug(
    proxy_factory: Callable[..., Any], free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = proxy_factory(openai_endpoint=f"http://127.0.0.1:{free_port}")  # nothing listens
    caplog.set_level(logging.DEBUG, logger="aoai_proxy")
    with httpx.Client(base_url=proxy.base_url, timeout=15) as client:
        response = client.post(CHAT, json=BODY)
    assert response.status_code == 502
    proxy.records(1)
    [warning] = proxy_records(caplog, logging.WARNING)
    assert warning.exc_info is None
    assert "\n" not in warning.getMessage()
    assert "answering 502 upstream_unreachable" in warning.getMessage()
    assert "Connect" in warning.getMessage()  # the cause (connection refused), in the same line
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert len(debug) == 1


@pytest.fixture
def no_developer_login(
    serve_asgi: Callable[..., str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """DefaultAzureCredential with nothing to log in with: no environment credentials, a managed
    identity endpoint that refuses (no IMDS probe to the network), no az/azd on the PATH."""
    clear_other_credentials(monkeypatch)
    monkeypatch.delenv("AZURE_CLIENT_ID", raising=False)
    refusing = serve_asgi(_refuse)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{refusing}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "header")
    monkeypatch.setenv("PATH", str(tmp_path))  # no az, azd or pwsh to fall back on


async def _refuse(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 500, "headers": []})
    await send({"type": "http.response.body", "body": b'{"error":"unavailable"}'})


@pytest.mark.usefixtures("no_developer_login")
@pytest.mark.parametrize(
    ("client_id", "hint"),
    [(None, "az login"), ("00000000-0000-0000-0000-00000000abcd", "managed identity")],
)
def test_a_token_failure_says_what_to_check_where_the_proxy_runs(
    proxy_factory: Callable[..., Any],
    upstream: Any,
    caplog: pytest.LogCaptureFixture,
    client_id: str | None,
    hint: str,
) -> None:
    proxy = proxy_factory(upstream_auth="entra", managed_identity_client_id=client_id)
    with httpx.Client(base_url=proxy.base_url, timeout=30) as client:
        response = client.post(CHAT, json=BODY)
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert hint in message
    if client_id is None:
        assert "azd auth login" in message
        assert "managed identity is configured" in message
    assert len(upstream.recorder) == 0
    [warning] = proxy_records(caplog, logging.WARNING)
    assert "CredentialUnavailableError" in warning.getMessage() or "Authentication" in (
        warning.getMessage()
    )  # the credential chain's own words, in the log only


def test_library_loggers_stay_at_warning_unless_raised() -> None:
    quiet_libraries_from_env({})
    for name in (*LIBRARY_LOGGERS, "azure.core.pipeline.policies.http_logging_policy"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name
    quiet_libraries_from_env({"LIBRARY_LOG_LEVEL": "info"})
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.INFO
    quiet_libraries_from_env({"LIBRARY_LOG_LEVEL": "loud"})  # invalid: Settings will say so
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    with pytest.raises(ConfigError, match="LIBRARY_LOG_LEVEL"):
        Settings.from_env(
            {"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com", "LIBRARY_LOG_LEVEL": "loud"}
        )


def test_a_call_through_the_proxy_logs_no_library_info_line(
    proxy_factory: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)  # as a fresh process has them
    caplog.set_level(logging.INFO)
    proxy = proxy_factory()  # its start-up reads the settings and quiets the libraries
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        assert client.post(CHAT, json=BODY).status_code == 200
    proxy.records(1)
    chatty = [r for r in caplog.records if r.name.split(".")[0] in LIBRARY_LOGGERS]
    assert chatty == []


def test_the_skip_reason_of_recording_tests_is_plain_and_counts_them() -> None:
    reason = recordings_skip_reason(33)
    assert reason.startswith(
        "recorded Azure OpenAI responses are not included in this repository "
        "(they are kept outside it); 33 tests skipped"
    )
    assert str(RECORDED_DIR) not in reason  # no path jargon
