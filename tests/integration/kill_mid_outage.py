"""A sink in a process of its own, for test_eventhub_outage_real_sdk's kill test.

The real SDK producer points at a loopback port that refuses connections and the dead-letter store
is Azurite; records arrive at about 100 a second. Each submitted record is printed as one JSON line
(id, time.monotonic(), the sink's state) so the test, which kills this process with SIGKILL, knows
what was handed to the sink and when. Run: python -m tests.integration.kill_mid_outage <account_url>
<ca_file> <container> <port>.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from azure.eventhub import TransportType
from tests.delivery_doubles import FakeEntraCredential, usage_record

from aoai_proxy.deadletter import BlobDeadLetterStore
from aoai_proxy.sinks.eventhub import EventHubSink


async def main(account_url: str, ca_file: str, container: str, port: int) -> None:
    credential = FakeEntraCredential()
    store = BlobDeadLetterStore(account_url, container, credential, connection_verify=ca_file)
    sink = EventHubSink(
        namespace="my-usage-ns.servicebus.windows.net",
        eventhub_name="usage",
        credential=credential,
        deadletter=store,
        custom_endpoint_address=f"sb://127.0.0.1:{port}",
        transport_type=TransportType.Amqp,
    )
    n = 0
    while True:
        record = usage_record(f"sub-{n % 5}", n=n)
        sink.submit(record)
        line = {"id": record["record_id"], "at": time.monotonic(), "state": sink.health()["state"]}
        print(json.dumps(line), flush=True)
        n += 1
        await asyncio.sleep(0.01)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
