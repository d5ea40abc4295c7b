"""Local Azure OpenAI simulator: the offline upstream for local runs, tests and the benchmark.

    from aoai_simulator import SimulatorSettings, create_app
    app = create_app(SimulatorSettings(ttft_ms=150, token_ms=15))

Run it: `python tools/aoai_simulator --port 8090`. Per-request knobs are `x-sim-*` headers (see
controls.py); `app.state.recorder` lists what it received and when each event went out.
"""

from .app import create_app
from .recorder import RecordedRequest, Recorder
from .settings import SimulatorSettings
from .streaming import StreamCut

__all__ = ["RecordedRequest", "Recorder", "SimulatorSettings", "StreamCut", "create_app"]
