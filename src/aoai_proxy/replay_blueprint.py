"""Timer that empties the usage dead-letter store (registered by function_app.py).

On Flex Consumption a timer function runs on instances of its own: it shares nothing with the HTTP
instances but the Blob store, which is all the replay reads, and it reads only the delivery settings
(replay.ReplaySettings). A timer trigger runs as a singleton across instances (a lease in the host's
storage), so runs normally do not overlap; when they do (a lapsed lease, a deployment), a record is
at worst sent twice and a blob deleted by the other run is skipped.
"""

# No `from __future__ import annotations`: the Functions worker reads the trigger parameter's
# annotation (func.TimerRequest) as a real type when it indexes the function.
import azure.functions as func

from .replay import replay_from_env

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions ships no stubs


# NCRONTAB with seconds: every 5 minutes. Not on start-up: a fresh instance has nothing new to add.
@bp.timer_trigger(
    arg_name="timer", schedule="0 */5 * * * *", run_on_startup=False, use_monitor=True
)
async def replay_usage_deadletters(timer: func.TimerRequest) -> None:
    await replay_from_env()
