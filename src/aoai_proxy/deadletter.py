"""Dead-letter store: usage records that could not reach Event Hubs in time, parked in Blob storage.

The container lives in the Function's own storage account and is reached with the managed identity
(Storage Blob Data Owner; the account has shared-key access off, so there is no key to use). Layout:
one blob per small batch, `v1/<UTC yyyymmddThhmmss.ffffffZ>-<instance>-<uuid>.jsonl`, so a listing
returns the oldest first and two instances never write the same name. Each line is one record,
byte for byte as it would have gone to the hub (compact JSON has no raw newline). The replay timer
(replay.py) re-sends a blob and deletes it only after the hub accepted every record in it.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

PREFIX = "v1/"


class DeadLetterStore(Protocol):
    async def put(self, bodies: Sequence[bytes]) -> str: ...

    def names(self) -> AsyncIterator[str]: ...

    async def get(self, name: str) -> list[bytes]: ...

    async def delete(self, name: str) -> None: ...

    async def aclose(self) -> None: ...


class BlobDeadLetterStore:
    """`client_options` go to BlobServiceClient (tests pass `connection_verify` for Azurite's cert)."""

    def __init__(
        self,
        account_url: str,
        container: str,
        credential: AsyncTokenCredential,
        *,
        instance_id: str = "local",
        **client_options: Any,
    ) -> None:
        self._account_url = account_url
        self._container_name = container
        self._credential = credential
        self._instance = re.sub(r"[^A-Za-z0-9_.]", "_", instance_id)[:64] or "local"
        self._client_options = client_options
        self._client: BlobServiceClient | None = None

    def _container(self) -> ContainerClient:
        # Created on first use, on the running loop (the Functions worker has no start-up hook).
        if self._client is None:
            self._client = BlobServiceClient(
                self._account_url, credential=self._credential, **self._client_options
            )
        return self._client.get_container_client(self._container_name)

    async def put(self, bodies: Sequence[bytes]) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{PREFIX}{stamp}-{self._instance}-{uuid.uuid4().hex}.jsonl"
        data = b"".join(body + b"\n" for body in bodies)
        blob = self._container().get_blob_client(name)
        options: dict[str, Any] = {
            "overwrite": False,
            "content_settings": ContentSettings(content_type="application/x-ndjson"),
            "metadata": {"records": str(len(bodies)), "instance": self._instance},
        }
        try:
            await blob.upload_blob(data, **options)
        except ResourceNotFoundError:  # the container does not exist yet: first dead letter ever
            with contextlib.suppress(ResourceExistsError):  # created meanwhile by another instance
                await self._container().create_container()
            await blob.upload_blob(data, **options)
        return name

    async def names(self) -> AsyncIterator[str]:
        try:
            async for blob in self._container().list_blobs(name_starts_with=PREFIX):
                yield blob.name
        except ResourceNotFoundError:  # no container: nothing was ever dead-lettered
            return

    async def get(self, name: str) -> list[bytes]:
        downloader = await self._container().download_blob(name)
        data = await downloader.readall()
        return [line for line in data.split(b"\n") if line.strip()]

    async def delete(self, name: str) -> None:
        await self._container().delete_blob(name)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
