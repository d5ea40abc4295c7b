"""The landing against a loopback fake of the Logs Ingestion API, through the real client.

azure-monitor-ingestion's async LogsIngestionClient does the HTTP (path, api-version, gzip body,
retries), DefaultAzureCredential -> ManagedIdentityCredential fetches the token from a loopback
token endpoint, and the fake checks every row against the DCR streams of infra/analytics/tables.json.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from tests.identity_double import CLIENT_ID, TokenEndpoint
from tests.ingestion_double import AUDIENCE, Fault, IngestionFake
from tests.traffic import Call, drive, gateway_event

from aoai_proxy.landing.columns import GATEWAY_COLUMNS, USAGE_COLUMNS, flatten
from aoai_proxy.landing.lander import Landing

USAGE_STREAM = "Custom-AoaiUsage"
GATEWAY_STREAM = "Custom-ApimGatewayEvents"
FAST = {"retry_backoff_factor": 0.05}  # the pipeline's backoff when there is no Retry-After


@pytest.fixture
async def landing(
    ingestion: IngestionFake, identity_endpoint: Callable[..., TokenEndpoint]
) -> AsyncIterator[Landing]:
    identity_endpoint()
    settings = ingestion.settings(managed_identity_client_id=CLIENT_ID)
    lander = Landing(lambda: settings, client_options=FAST, log_seconds=0)
    yield lander
    await lander.aclose()


@pytest.fixture
def calls(proxy: Any) -> list[Call]:
    return drive(proxy.base_url)


@pytest.fixture
def records(proxy: Any, calls: list[Call]) -> list[dict[str, Any]]:
    """Usage records of real calls through the proxy (its JSONL sink), one per call, in call order."""
    found = {r["record_id"]: r for r in proxy.records(len(calls))}
    return [found[call.record_id] for call in calls]


def counters_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The usage_landing_counters lines, parsed as the alert queries parse them."""
    prefix = "usage_landing_counters "
    return [
        json.loads(r.getMessage().removeprefix(prefix))
        for r in caplog.records
        if r.getMessage().startswith(prefix)
    ]


def bodies(events: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(event, separators=(",", ":")).encode() for event in events]


def copies(record: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """The same call recorded `count` times, each with its own record id."""
    result = []
    for _ in range(count):
        twin = copy.deepcopy(record)
        twin["record_id"] = str(uuid.uuid4())
        result.append(twin)
    return result


# -- the happy path -------------------------------------------------------------------------------


async def test_records_of_real_calls_land_with_their_columns_through_the_real_client(
    landing: Landing, ingestion: IngestionFake, records: list[dict[str, Any]], calls: list[Call]
) -> None:
    gateway = [json.loads(gateway_event(call)) for call in calls]
    result = await landing.land(bodies(records + gateway), final_attempt=False)

    assert not result.retry
    assert result.counters.usage_landed == len(records)
    assert result.counters.gateway_landed == len(gateway)
    assert result.counters.failed == result.counters.unknown == 0
    # Exactly the flattened records, once each; nothing of the record is sent that has no column.
    assert ingestion.landed(USAGE_STREAM) == [flatten(USAGE_COLUMNS, r) for r in records]
    assert ingestion.landed(GATEWAY_STREAM) == [flatten(GATEWAY_COLUMNS, g) for g in gateway]
    for request in ingestion.received:
        assert request.status == 204
        assert request.headers["content-encoding"] == "gzip"
        assert request.headers["content-type"] == "application/json"
    assert landing.totals.usage_landed == len(records)


async def test_the_token_is_the_managed_identitys_for_azure_monitor_and_cached(
    ingestion: IngestionFake,
    identity_endpoint: Callable[..., TokenEndpoint],
    records: list[dict[str, Any]],
) -> None:
    endpoint = identity_endpoint()
    lander = Landing(
        lambda: ingestion.settings(managed_identity_client_id=CLIENT_ID), client_options=FAST
    )
    try:
        for record in records[:3]:
            assert not (await lander.land(bodies([record]), final_attempt=False)).retry
    finally:
        await lander.aclose()
    assert len(ingestion.landed(USAGE_STREAM)) == 3
    assert len(endpoint.hits) == 1  # fetched once, then served from the credential's cache
    assert endpoint.hits[0]["resource"] == AUDIENCE
    assert endpoint.hits[0]["client_id"] == CLIENT_ID


# -- throttling and outages the client rides out ---------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"), [(429, "TooManyRequests"), (503, "ServiceUnavailable")]
)
async def test_a_throttled_or_unavailable_answer_is_retried_after_retry_after(
    landing: Landing,
    ingestion: IngestionFake,
    records: list[dict[str, Any]],
    status: int,
    code: str,
) -> None:
    ingestion.faults.append(Fault(status, code, headers={"Retry-After": "1"}, times=2))
    result = await landing.land(bodies(records), final_attempt=False)

    assert not result.retry
    assert result.counters.usage_landed == len(records)
    assert [r.status for r in ingestion.received] == [status, status, 204]
    waits = [b.at - a.at for a, b in zip(ingestion.received, ingestion.received[1:], strict=False)]
    assert all(wait >= 0.9 for wait in waits), waits  # Retry-After: 1 was honoured each time
    assert ingestion.landed(USAGE_STREAM) == [flatten(USAGE_COLUMNS, r) for r in records]


# -- too large -------------------------------------------------------------------------------------


async def test_a_large_batch_goes_in_calls_under_the_services_limit(
    landing: Landing, ingestion: IngestionFake, records: list[dict[str, Any]]
) -> None:
    # The client alone would post its 1 MiB chunks a little over the limit (separators uncounted).
    many = [twin for record in records for twin in copies(record, 300)]
    result = await landing.land(bodies(many), final_attempt=False)

    assert result.counters.usage_landed == len(many)
    assert result.counters.splits == 0
    assert len(ingestion.received) >= 2
    assert {r.status for r in ingestion.received} == {204}
    assert max(r.raw_bytes for r in ingestion.received) <= 1_000_000


async def test_a_batch_refused_as_too_large_is_split_until_it_fits(
    landing: Landing, ingestion: IngestionFake, records: list[dict[str, Any]]
) -> None:
    many = [twin for record in records for twin in copies(record, 6)]
    ingestion.max_bytes = 8_000  # a handful of rows a call
    result = await landing.land(bodies(many), final_attempt=False)

    assert not result.retry
    assert result.counters.splits > 0
    assert result.counters.usage_landed == len(many)
    assert 413 in {r.status for r in ingestion.received}
    assert all(r.raw_bytes <= 8_000 for r in ingestion.received if r.status == 204)
    landed = Counter(row["RecordId"] for row in ingestion.landed(USAGE_STREAM))
    assert landed == Counter(r["record_id"] for r in many)  # each exactly once


async def test_a_single_row_over_the_limit_fails_for_good_and_the_rest_lands(
    landing: Landing,
    ingestion: IngestionFake,
    records: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    huge = copy.deepcopy(records[0])
    huge["response"]["error_message"] = "x" * 9_000
    ingestion.max_bytes = 8_000
    with caplog.at_level(logging.WARNING, logger="aoai_proxy.landing"):
        result = await landing.land(bodies([*records, huge]), final_attempt=False)

    assert not result.retry  # sending it again cannot help
    assert result.counters.failed == 1
    assert result.counters.usage_landed == len(records)
    assert huge["record_id"] in caplog.text
    assert "ContentLengthLimitExceeded" in caplog.text


# -- failures ---------------------------------------------------------------------------------------


async def test_a_refused_chunk_is_reported_with_its_ids_and_later_chunks_still_land(
    landing: Landing,
    ingestion: IngestionFake,
    records: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Enough rows for several of the client's 1 MiB chunks; the service refuses the first one.
    many = [twin for record in records for twin in copies(record, 300)]
    ingestion.faults.append(Fault(400, "InvalidPayload", times=1))
    with caplog.at_level(logging.WARNING, logger="aoai_proxy.landing"):
        result = await landing.land(bodies(many), final_attempt=False)

    chunks = ingestion.received
    assert len(chunks) >= 2
    refused = {row["RecordId"] for row in chunks[0].rows}
    assert chunks[0].status == 400
    assert not result.retry  # a 400 is permanent: retrying the batch would only duplicate the rest
    assert result.counters.failed == len(refused)
    assert result.counters.usage_landed == len(many) - len(refused)
    landed = {row["RecordId"] for row in ingestion.landed(USAGE_STREAM)}
    assert landed == {r["record_id"] for r in many} - refused
    logged = set(caplog.text.replace(",", " ").split())
    assert refused <= logged  # every refused id is in the log
    assert "InvalidPayload" in caplog.text


async def test_a_transient_failure_is_retried_by_the_host_without_sending_the_landed_rows_again(
    landing: Landing,
    ingestion: IngestionFake,
    records: list[dict[str, Any]],
) -> None:
    many = [twin for record in records for twin in copies(record, 300)]
    # The first chunk lands, the next is refused as if the role were not applied yet.
    ingestion.faults.append(Fault(403, "Forbidden", only_if=lambda _: len(ingestion.received) == 1))
    first = await landing.land(bodies(many), final_attempt=False)

    assert first.retry
    assert first.counters.retried > 0
    assert first.counters.failed == 0
    again = await landing.land(bodies(many), final_attempt=False)  # the host's retry
    assert not again.retry
    assert again.counters.already_landed == len(many) - first.counters.retried
    assert again.counters.usage_landed == first.counters.retried
    landed = Counter(row["RecordId"] for row in ingestion.landed(USAGE_STREAM))
    assert landed == Counter(r["record_id"] for r in many)  # each exactly once in all


async def test_on_the_last_attempt_a_transient_failure_is_counted_and_logged_with_ids(
    landing: Landing,
    ingestion: IngestionFake,
    records: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ingestion.faults.append(Fault(403, "Forbidden", times=99))
    with caplog.at_level(logging.WARNING, logger="aoai_proxy.landing"):
        result = await landing.land(bodies(records), final_attempt=True)

    assert not result.retry
    assert result.counters.failed == len(records)
    assert result.counters.usage_landed == 0
    assert all(r["record_id"] in caplog.text for r in records)
    assert "after the last retry" in caplog.text
    # What the landing-failed alert sums (infra/analytics/alerts/landing-failed.kql).
    (line,) = counters_lines(caplog)
    assert line["batch"]["failed"] == len(records)


async def test_no_token_fails_the_invocation_for_a_retry(
    ingestion: IngestionFake,
    identity_endpoint: Callable[..., TokenEndpoint],
    records: list[dict[str, Any]],
) -> None:
    identity_endpoint(fail=True)
    lander = Landing(lambda: ingestion.settings(), client_options=FAST)
    try:
        result = await lander.land(bodies(records), final_attempt=False)
    finally:
        await lander.aclose()
    assert result.retry
    assert result.counters.retried == len(records)
    assert ingestion.received == []


# -- what is not landed ---------------------------------------------------------------------------


async def test_unknown_and_unreadable_events_are_counted_and_logged_not_sent(
    landing: Landing,
    ingestion: IngestionFake,
    records: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    future = copy.deepcopy(records[0]) | {"schema_version": "2.0", "record_id": str(uuid.uuid4())}
    other = {"type": "audit", "record_id": "r-audit"}
    events = [*bodies([records[1], future, other]), b"not json", b"[1, 2]"]
    with caplog.at_level(logging.WARNING, logger="aoai_proxy.landing"):
        result = await landing.land(events, final_attempt=False)

    assert result.counters.events == 5
    assert result.counters.usage_landed == 1
    assert result.counters.unknown == 2
    assert result.counters.unreadable == 2
    assert [row["RecordId"] for row in ingestion.landed(USAGE_STREAM)] == [records[1]["record_id"]]
    assert future["record_id"] in caplog.text
    assert "r-audit" in caplog.text
    assert "not json" in caplog.text
    # What the landing-unknown-events alert sums (infra/analytics/alerts/landing-unknown-events.kql).
    (line,) = counters_lines(caplog)
    assert (line["batch"]["unknown"], line["batch"]["unreadable"], line["batch"]["failed"]) == (
        2,
        2,
        0,
    )
