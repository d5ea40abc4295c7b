"""Benchmark the proxy against direct calls to the local Azure OpenAI simulator.

    python tools/bench.py [--quick] [--streams 100,500,1000] [--json results.json]
    python tools/bench.py usage-coverage [--calls 10] [--json coverage.json]

Starts the simulator and the proxy as uvicorn servers in their own processes on 127.0.0.1 and
drives both from this process. The code is in tools/aoai_bench/; docs/benchmarks.md has results.
`usage-coverage` measures the share of streamed calls recorded with exact usage per api-version
(aoai_bench/coverage.py; the result is in docs/usage-record.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
# Spawned server processes inherit sys.path, so both packages resolve there too.
for _path in (_ROOT / "src", _ROOT / "tools"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from aoai_bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
