"""The usage landing function: the usage hub to Log Analytics (registered by function_app.py).

An Event Hubs trigger on a consumer group of its own (the app setting USAGE_LANDING_CONSUMER_GROUP),
so it reads every event without taking any from other readers. The connection `EventHubConnection`
is identity-based: EventHubConnection__fullyQualifiedNamespace, __credential=managedidentity and
__clientId name the user-assigned identity, which needs Azure Event Hubs Data Receiver on the hub
(learn.microsoft.com/azure/azure-functions/functions-bindings-event-hubs-trigger#identity-based-connections).
On Flex Consumption it scales on instances of its own, apart from the HTTP ones.

The retry policy is what keeps a failing batch from being skipped: without one, the checkpoint moves
past a batch whose invocation failed. It is bounded (about 36 minutes from the first failure, more
than the up to 30 minutes a new role assignment can take to apply after the first `azd up`), so a
batch that can never land does not hold its partition for ever
(learn.microsoft.com/azure/azure-functions/functions-bindings-error-pages#retry-policies).
"""

# No `from __future__ import annotations`: the worker reads the parameters' annotations as real
# types when it indexes the function.
import os
import typing

import azure.functions as func

from .lander import Landing, LandingIncompleteError, report_failed_batch

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions ships no stubs
landing = Landing()
MAX_RETRIES = 8  # 10 s, 20 s, 40 s ... then 15 min apart: about 36 minutes in all


@bp.event_hub_message_trigger(
    arg_name="events",
    connection="EventHubConnection",
    event_hub_name="%EVENTHUB_NAME%",
    consumer_group="%USAGE_LANDING_CONSUMER_GROUP%",
    cardinality="many",
    # The bodies as sent, bytes for bytes: without a dataType the host treats JSON bodies as JSON
    # and can re-shape a batch (azure-functions-python-worker#527, azure-sdk-for-net#45337).
    data_type="binary",
)
@bp.retry(
    strategy="exponential_backoff",
    max_retry_count=str(MAX_RETRIES),
    minimum_interval="00:00:10",
    maximum_interval="00:15:00",
)
async def land_usage_events(
    events: typing.List[func.EventHubEvent],  # noqa: UP006  # the worker's check rejects list[...]
    context: func.Context,
) -> None:
    retry = context.retry_context
    final = retry is None or retry.retry_count >= retry.max_retry_count
    try:
        result = await landing.land([event.get_body() for event in events], final_attempt=final)
    except Exception as exc:
        if final:  # the host gives up on the batch: say so where the landing-failed alert looks
            report_failed_batch(
                os.environ.get("WEBSITE_INSTANCE_ID", "local"),
                [event.sequence_number for event in events],
                exc,
            )
        raise
    if result.retry:
        raise LandingIncompleteError(
            f"{result.counters.retried} rows are retried with the batch (see the log lines above)"
        )
