"""docs/http-protocol.md states the limits the code applies: a changed limit without its row fails."""

from __future__ import annotations

import re
from pathlib import Path

from aoai_proxy.azure_rules import DEPLOYMENT_NAME
from aoai_proxy.errors import ProxyError
from aoai_proxy.inbound import MAX_JSON_DEPTH
from aoai_proxy.paths import API_PREFIX
from aoai_proxy.record_bounds import MAX_ITEM_CHARS, MAX_LIST_ITEMS, MAX_STRING_CHARS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "http-protocol.md").read_text()
LIMITS = DOC.split("## Limits", 1)[1]


def test_every_limit_has_its_row_with_the_value_the_code_uses() -> None:
    assert f"nested at most {MAX_JSON_DEPTH} levels" in LIMITS
    assert f"| {MAX_STRING_CHARS} characters |" in LIMITS
    assert f"{MAX_LIST_ITEMS} items of at most {MAX_ITEM_CHARS} characters" in LIMITS
    assert f"must start with `{API_PREFIX}`" in LIMITS
    assert DEPLOYMENT_NAME.pattern == r"[A-Za-z0-9_.\-]{1,64}"
    assert "1-64 letters, digits, `-`, `_`, `.`" in LIMITS


def test_every_answer_of_the_limits_is_in_the_error_table() -> None:
    errors = DOC.split("## Errors", 1)[1].split("## Limits", 1)[0]
    for status, code in (
        ("400", "invalid_request"),
        ("400", "BadRequest"),
        ("404", "DeploymentNotFound"),
        ("413", "payload_too_large"),
    ):
        assert f"| {status} | `{code}` |" in errors, code
        assert f"{status} `{code}`" in LIMITS, code


def _proxy_errors(cls: type[ProxyError] = ProxyError) -> list[type[ProxyError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_proxy_errors(sub)]
    return found


def test_the_error_table_has_one_row_per_answer_the_code_can_give() -> None:
    errors = DOC.split("## Errors", 1)[1].split("## Limits", 1)[0]
    rows = [
        tuple(cell.strip(" `") for cell in line.split("|")[1:3])
        for line in errors.splitlines()
        if re.match(r"\| \d{3} \|", line)
    ]
    answers = {(str(error.status), error.code) for error in _proxy_errors()}
    assert len(rows) == len(set(rows)), "a row is there twice"
    assert set(rows) == answers
