"""Usage delivery test doubles: the Event Hub double, dead-letter stores, Azurite, a fake Entra credential.

The fixtures are re-exported by tests/conftest.py; tests import the helpers from here.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import gc
import ipaddress
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ResourceNotFoundError
from azure.eventhub import EventData, EventDataBatch
from azure.eventhub.exceptions import EventHubError

from aoai_proxy.config import Settings
from aoai_proxy.sinks.eventhub import EventHubSink

_REPO = Path(__file__).resolve().parents[1]


def usage_record(
    subscription_id: str | None = "sub-a", *, prompt: str | None = None, n: int = 0
) -> dict[str, Any]:
    """A usage record as the record builder emits it (opaque to delivery but for these fields)."""
    record: dict[str, Any] = {
        "type": "usage",
        "schema_version": "1.2",
        "record_id": str(uuid.uuid4()),
        "timestamp": "2026-11-26T08:00:00.000Z",
        "caller": {"request_id": f"req-{n}", "subscription_id": subscription_id},
        "request": {"operation": "chat", "deployment": "gpt-4o-mini", "stream": True},
        "response": {"status": 200},
        "usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46},
        "timings": {"total_ms": 120.5},
    }
    if prompt is not None:
        record["capture"] = {"prompt": {"text": prompt}, "completion": {"text": "short answer"}}
    return record


@dataclass
class SentBatch:
    partition_key: str | None
    records: list[dict[str, Any]]
    size_in_bytes: int
    max_size_in_bytes: int
    content_types: list[str | None]
    bodies: list[bytes] = field(default_factory=list)  # the events' bodies as sent


@dataclass
class HubDouble:
    """Event Hubs behind `autospec=True` doubles of EventHubProducerClient and EventDataBatch.

    The producer class is patched where our code looks it up (aoai_proxy.sinks.events), specced from
    the SDK class, so a call our code makes with a wrong signature fails. Each batch is an autospec
    of EventDataBatch whose `add` runs a real EventDataBatch, so sizes and the ValueError on a full
    batch are the SDK's own.
    """

    client_class: Any
    max_size_in_bytes: int = 1_048_576
    send_delay: float = 0.0
    fail_until: float = 0.0  # time.monotonic() before which every send and create_batch raises
    fail_sends: int = 0  # or: this many next sends raise
    fail_send_numbers: set[int] = field(default_factory=set)  # or: these sends (1-based) raise
    send_calls: int = 0
    sent: list[SentBatch] = field(default_factory=list)
    failed_sends: int = 0
    failed_creates: int = 0  # create_batch calls refused (the sink's probe makes them too)
    max_in_flight: int = 0  # most sends in progress at once
    key_overlaps: int = 0  # sends started while another batch of the same key was in flight
    overlapped_sends: int = 0  # sends started while any other send was in flight
    send_started_at: list[float] = field(default_factory=list)  # time.monotonic() of each send
    _in_flight: list[str | None] = field(default_factory=list)
    # Mocks remember every call; thousands of retained batch mocks make GC pauses that a latency
    # test would blame on the code under test. Set to forget them after each send.
    forget_calls: bool = False
    _open: dict[int, tuple[EventDataBatch, list[EventData], str | None]] = field(
        default_factory=dict
    )

    @property
    def producer(self) -> Any:
        return self.client_class.return_value

    @property
    def records(self) -> list[dict[str, Any]]:
        return [record for batch in self.sent for record in batch.records]

    def fail_for(self, seconds: float) -> None:
        self.fail_until = time.monotonic() + seconds

    def install(self) -> None:
        self.producer.create_batch.side_effect = self._create_batch
        self.producer.send_batch.side_effect = self._send_batch

    def _create_batch(
        self,
        *,
        partition_id: str | None = None,
        partition_key: str | None = None,
        max_size_in_bytes: int | None = None,
    ) -> Any:
        if time.monotonic() < self.fail_until:  # a hub that is down refuses the connection too
            self.failed_creates += 1
            raise EventHubError("the hub is unavailable (test double)")
        real = EventDataBatch(
            max_size_in_bytes=max_size_in_bytes or self.max_size_in_bytes,
            partition_key=partition_key,
        )
        batch = create_autospec(EventDataBatch, instance=True)
        batch.max_size_in_bytes = real.max_size_in_bytes
        added: list[EventData] = []

        def add(event_data: EventData) -> None:
            real.add(event_data)
            added.append(event_data)

        batch.add.side_effect = add
        self._open[id(batch)] = (real, added, partition_key)
        return batch

    async def _send_batch(self, event_data_batch: Any, **kwargs: Any) -> None:
        key = self._open[id(event_data_batch)][2]
        self.key_overlaps += key in self._in_flight
        self.overlapped_sends += bool(self._in_flight)
        self.send_started_at.append(time.monotonic())
        self._in_flight.append(key)
        self.max_in_flight = max(self.max_in_flight, len(self._in_flight))
        try:
            await asyncio.sleep(self.send_delay)  # a real send is network I/O: it always yields
        finally:
            self._in_flight.remove(key)
        self.send_calls += 1
        if (
            self.fail_sends > 0
            or time.monotonic() < self.fail_until
            or self.send_calls in self.fail_send_numbers
        ):
            self.fail_sends = max(self.fail_sends - 1, 0)
            self.failed_sends += 1
            raise EventHubError("the hub is unavailable (test double)")
        real, added, partition_key = self._open.pop(id(event_data_batch))
        if self.forget_calls:
            self.producer.reset_mock()
        self.sent.append(
            SentBatch(
                partition_key=partition_key,
                records=[json.loads(event.body_as_str()) for event in added],
                size_in_bytes=real.size_in_bytes,
                max_size_in_bytes=real.max_size_in_bytes,
                content_types=[event.content_type for event in added],
                bodies=[event.body_as_str().encode() for event in added],
            )
        )


@pytest.fixture
def hub(mocker: Any) -> HubDouble:
    double = HubDouble(
        client_class=mocker.patch("aoai_proxy.sinks.events.EventHubProducerClient", autospec=True)
    )
    double.install()
    return double


class MemoryDeadLetterStore:
    """The DeadLetterStore protocol in memory (the Blob one is tested against Azurite)."""

    def __init__(self) -> None:
        self.blobs: dict[str, list[bytes]] = {}
        self.fail = False
        self.closed = False
        self._n = 0

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(body) for bodies in self.blobs.values() for body in bodies]

    async def put(self, bodies: Any) -> str:
        if self.fail:
            raise OSError("the dead-letter store is unavailable (test double)")
        self._n += 1
        name = f"v1/{self._n:08d}.jsonl"
        self.blobs[name] = list(bodies)
        return name

    async def names(self) -> AsyncIterator[str]:
        for name in sorted(self.blobs):
            yield name

    async def get(self, name: str) -> list[bytes]:
        if name not in self.blobs:
            raise ResourceNotFoundError("no such blob")
        return list(self.blobs[name])

    async def delete(self, name: str) -> None:
        if (
            name not in self.blobs
        ):  # as Azure answers for a blob deleted meanwhile (404 BlobNotFound)
            raise ResourceNotFoundError("no such blob")
        del self.blobs[name]

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def memory_deadletter() -> MemoryDeadLetterStore:
    return MemoryDeadLetterStore()


class FakeEntraCredential:
    """An AsyncTokenCredential minting unsigned Entra-shaped tokens: what Azurite's `--oauth basic`
    checks (issuer, audience, nbf/exp/iat; never the signature). Lets the dead-letter store run its
    production path, bearer tokens over HTTPS, against the emulator, with no key anywhere."""

    def __init__(self, audience: str = "https://storage.azure.com") -> None:
        self.audience = audience
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        now = int(time.time())
        claims = {
            "aud": self.audience,
            "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/",
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 3600,
            "oid": "11111111-1111-1111-1111-111111111111",
            "tid": "00000000-0000-0000-0000-000000000000",
        }

        def part(obj: dict[str, Any]) -> str:
            raw = json.dumps(obj).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        token = f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.sig"
        return AccessToken(token, now + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> FakeEntraCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None


@dataclass(frozen=True)
class Azurite:
    account_url: str  # https://127.0.0.1:<port>/devstoreaccount1
    ca_file: str  # the emulator's self-signed certificate, for connection_verify


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _self_signed_cert(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: Any) -> Iterator[Azurite]:
    """Azurite's blob service from node_modules on a free 127.0.0.1 port, HTTPS with `--oauth basic`
    (bearer tokens are refused over plain HTTP), in memory; stopped after the session."""
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed: the Azurite storage emulator cannot run")
    binary = _REPO / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed: cannot install the Azurite storage emulator")
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent"],
            cwd=_REPO,
            check=True,
            timeout=300,
        )
    workdir = tmp_path_factory.mktemp("azurite")
    cert, key = _self_signed_cert(workdir)
    port = _free_port()
    log_file = (workdir / "azurite.log").open("wb")
    process = subprocess.Popen(
        [
            str(binary),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--oauth",
            "basic",
            "--cert",
            str(cert),
            "--key",
            str(key),
        ],
        cwd=workdir,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Azurite exited: {(workdir / 'azurite.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("Azurite did not listen within 30 s") from None
                time.sleep(0.1)
        yield Azurite(f"https://127.0.0.1:{port}/devstoreaccount1", str(cert))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log_file.close()


def make_sink(deadletter: Any, *, credential: Any = None, **options: Any) -> EventHubSink:
    """An EventHubSink on the patched producer, with test-friendly timings unless overridden."""
    settings: dict[str, Any] = {
        "max_in_memory_seconds": 10.0,
        "retry_initial_seconds": 0.02,
        "retry_max_seconds": 0.1,
        "shutdown_seconds": 2.0,
        **options,
    }
    return EventHubSink(
        namespace="my-usage-ns.servicebus.windows.net",
        eventhub_name="usage",
        credential=credential or FakeEntraCredential(),
        deadletter=deadletter,
        instance_id="instance-1",
        **settings,
    )


async def eventually(predicate: Any, within: float = 10.0, what: str = "condition") -> None:
    """Waits, bounded, for predicate() to hold."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.005)


def record_ids(records: list[dict[str, Any]]) -> list[str]:
    return [record["record_id"] for record in records]


@pytest.fixture
def no_gc_pauses() -> Iterator[None]:
    """The hub double makes an autospec mock per batch: thousands of reference cycles whose
    collection pauses the loop for 100+ ms, which a stall measurement would blame on the sink."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def eventhub_settings(**overrides: Any) -> Settings:
    """Settings selecting the Event Hub sink, as Settings.from_env builds them in Azure."""
    values: dict[str, Any] = {
        "openai_endpoint": "https://my-aoai.openai.azure.com",
        "sink": "eventhub",
        "eventhub_namespace": "my-usage-ns.servicebus.windows.net",
        "eventhub_name": "usage",
        "deadletter_blob_service_uri": "https://st.blob.core.windows.net",
        **overrides,
    }
    return Settings(**values)
