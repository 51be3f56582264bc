"""What every benchmark shares: the app configuration for a generated database, the secret key
that makes feed URLs computable, machine facts, and timing summaries."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The generator derives every patient's feed secret from a salt under this key (as the app
# does), so a benchmark can rebuild each feed URL from the database alone.
BENCH_SECRET_KEY = os.environ.get("BENCH_SECRET_KEY", "bench-secret-key-not-for-production")
DEFAULT_SQLITE = "/tmp/watchful-bench.sqlite3"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/watchful_bench"


def database_url(target: str) -> str:
    """A SQLAlchemy URL from a file path or a PostgreSQL URL."""
    if target.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + target.split("://", 1)[1]
    if "://" in target:
        return target
    return f"sqlite:///{Path(target).resolve()}"


def app_config(target: str, **extra: Any) -> dict[str, Any]:
    instance = Path(tempfile.gettempdir()) / "watchful-bench-instance"
    instance.mkdir(exist_ok=True)
    return {
        "SQLALCHEMY_DATABASE_URI": database_url(target),
        "SECRET_KEY": BENCH_SECRET_KEY,
        "INSTANCE_PATH": str(instance),
        "PUBLIC_BASE_URL": "http://127.0.0.1:5000",
        **extra,
    }


def environment_for(target: str) -> dict[str, str]:
    """Environment variables that point a ``flask``/``gunicorn`` process at the database."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(target),
        SECRET_KEY=BENCH_SECRET_KEY,
        WATCHFUL_INSTANCE_PATH=str(Path(tempfile.gettempdir()) / "watchful-bench-instance"),
        FLASK_APP="surveillance",
    )
    return env


def engine_name(target: str) -> str:
    return "postgresql" if database_url(target).startswith("postgresql") else "sqlite"


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        **speed_probe(),
    }


def speed_probe() -> dict[str, float]:
    """Two quick readings that tell machines apart where the model name does not (the same
    "AMD EPYC" has run these benchmarks at very different speeds): the best of five runs of a
    fixed Python loop, and of a system call (``fstat``). A feed answer is mostly system calls,
    a job mostly Python, so figures compare only between machines that read alike here."""

    def best_of_five(work: Any, repeat: int) -> float:
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(repeat):
                work()
            runs.append((time.perf_counter() - started) / repeat)
        return min(runs)

    def python_loop() -> int:
        return sum(i * i for i in range(100_000))

    descriptor = os.open(os.devnull, os.O_RDONLY)
    try:
        syscall = best_of_five(lambda: os.fstat(descriptor), 20_000)
    finally:
        os.close(descriptor)
    return {
        "probe_python_loop_ms": round(best_of_five(python_loop, 3) * 1e3, 2),
        "probe_syscall_us": round(syscall * 1e6, 3),
    }


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages: other work on the machine skews every timing."""
    return [round(value, 2) for value in os.getloadavg()]


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "n": len(ordered),
        "p50_ms": round(pick(0.50), 2),
        "p99_ms": round(pick(0.99), 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2, default=str))
