"""What the benchmark records about the machine and the processes: versions, CPU time, peak RSS."""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from .servers import ServerProcess, cpu_seconds


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    names = ("uvicorn", "aiohttp", "httpx", "starlette", "fastapi", "h11")
    versions = {name: metadata.version(name) for name in names}
    # uvicorn's http="auto" picks httptools when it is installed, else the pure-Python h11.
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return {
        "commit": _commit(),
        "cpu": model,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "kernel": platform.release(),
        # Other work on the machine skews every figure: recorded so a reader can tell.
        "loadavg_1m_at_start": f"{os.getloadavg()[0]:.2f}",
        "uvicorn_http": parser,
        **versions,
    }


def _commit() -> str:
    """The checked-out commit (with "+changes" when the tree differs from it), or "unknown"."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=10
    )
    return done.stdout.strip()


def cpu_snapshot(servers: dict[str, ServerProcess]) -> dict[str, float]:
    usage = {name: server.cpu_s() for name, server in servers.items()}
    usage["client"] = cpu_seconds(os.getpid())
    return usage


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before[name], 3) for name in before}


@contextmanager
def peak_rss(server: ServerProcess, interval_s: float) -> Iterator[list[int]]:
    """Samples VmRSS from a thread (so a busy client loop cannot skip samples); yields [peak]."""
    peak = [server.rss_kib()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval_s):
            try:
                peak[0] = max(peak[0], server.rss_kib())
            except (OSError, LookupError):
                return

    thread = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
