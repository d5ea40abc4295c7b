"""App-lifetime objects: settings, credential, upstream client, usage sink.

The Azure Functions Python worker has no start-up or shutdown hook (azure-functions-python-worker
#1521, #1904), so they are created once, lazily, on the running event loop, behind a lock. The
ASGI adapter closes them in its lifespan. Nothing per-request lives here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import Settings
from .credentials import bearer_token_provider, build_credential
from .inject import RejectedVersions
from .logs import quiet_libraries
from .sinks import UsageSink, build_sink
from .socket_reads import use_heap_sized_reads
from .upstream import Upstream

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential


@dataclass(slots=True)
class Runtime:
    settings: Settings
    credential: AsyncTokenCredential | None
    upstream: Upstream
    sink: UsageSink
    rejected_versions: RejectedVersions

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        quiet_libraries(settings.library_log_level)
        use_heap_sized_reads()
        needs_credential = settings.upstream_auth == "entra" or settings.sink == "eventhub"
        credential = (
            build_credential(settings.managed_identity_client_id) if needs_credential else None
        )
        token_provider = (
            bearer_token_provider(credential)
            if credential is not None and settings.upstream_auth == "entra"
            else None
        )
        return cls(
            settings=settings,
            credential=credential,
            upstream=Upstream(settings, token_provider),
            sink=build_sink(settings, credential),
            rejected_versions=RejectedVersions(),
        )

    async def aclose(self) -> None:
        try:
            await self.sink.aclose()
        finally:
            await self.upstream.aclose()
            if self.credential is not None:
                await self.credential.close()


class RuntimeHolder:
    def __init__(self, load_settings: Callable[[], Settings]) -> None:
        self._load_settings = load_settings
        self._runtime: Runtime | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Runtime:
        if self._runtime is None:
            async with self._lock:
                if self._runtime is None:
                    self._runtime = Runtime.create(self._load_settings())
        return self._runtime

    async def aclose(self) -> None:
        async with self._lock:
            runtime, self._runtime = self._runtime, None
        if runtime is not None:
            await runtime.aclose()
