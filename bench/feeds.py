"""Patient feeds under gunicorn (2 workers), loaded by wrk, against a same-size baseline.

    python bench/feeds.py /tmp/watchful-bench.sqlite3

Starts the real app with ``gunicorn -c python:surveillance.gunicorn_conf`` on 127.0.0.1, and
then, with the same gunicorn settings, ``bench/baseline_app.py``: a bare WSGI app that answers
the same URLs with the app's own answers pre-rendered in memory: the same status lines and
headers (sampled from the app) and bodies of the same sizes. wrk (``bench/feed.lua``)
rotates over many patients' feed URLs, for full ``200`` answers and for ``304`` revalidations
(If-None-Match with each feed's ETag). Two URL sets: "hot" (fewer patients than the feed cache
holds, the steady state of polling calendars) and "cold" (more patients than the cache holds,
so a ``200`` is rendered afresh). Before measuring, the hot set is requested until every
worker's cache holds it. Also the RSS of each web worker before and after 100,000 feed
requests. The hot runs of the app and of the baseline alternate over ``--rounds`` rounds (both
servers up; the order flips each round), and each side's median run is reported, so that a
change in the machine's load falls on both. Prints JSON; every figure also as a ratio to the
baseline (the median runs'), each round's ratio, and the load average before and after.
``--no-fast-path`` serves every feed through Flask (``FEED_FAST_PATH=0``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import common
from sqlalchemy import create_engine, text

from surveillance.services.feed_tokens import PATIENT, derive_secret

BENCH = Path(__file__).resolve().parent


def feed_paths(target: str, count: int, offset: int) -> list[str]:
    """Feed paths of ``count`` patients spread over all clinics."""
    engine = create_engine(common.database_url(target))
    with engine.connect() as conn:
        total = conn.execute(text("SELECT COUNT(*) FROM patients")).scalar_one()
        step = max(1, total // count)
        rows = conn.execute(
            text(
                "SELECT feed_token_salt FROM patients WHERE (id + :offset) % :step = 0 "
                "ORDER BY id LIMIT :count"
            ),
            {"step": step, "count": count, "offset": offset},
        ).all()
    engine.dispose()
    key = common.BENCH_SECRET_KEY
    return [f"/calendar/{derive_secret(key, PATIENT, salt)}.ics" for (salt,) in rows]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """A gunicorn master with the project's config, serving ``app`` on a free local port."""

    def __init__(self, app: str, env: dict[str, str], check_path: str) -> None:
        self.port = free_port()
        env = {**env, "WATCHFUL_BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": "2"}
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "-c",
                "python:surveillance.gunicorn_conf",
                app,
            ],
            cwd=common.ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url(check_path), timeout=5).read()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        else:
            self.stop()
            raise RuntimeError(f"gunicorn did not start: {app}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return sorted(int(pid) for pid in children.read_text().split())

    def rss_kib(self) -> dict[int, int]:
        result = {}
        for pid in self.workers():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    result[pid] = int(line.split()[1])
        return result

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def fetch_all(server: Gunicorn, paths: list[str]) -> list[tuple[str, str, int]]:
    """(path, ETag, body size) of each feed, fetched once (which also fills the caches)."""

    def one(path: str) -> tuple[str, str, int]:
        with urllib.request.urlopen(server.url(path), timeout=30) as response:
            return path, response.headers["ETag"], len(response.read())

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, paths))


# Added by gunicorn to every answer, the baseline's too.
_SERVER_HEADERS = {"date", "server", "connection", "transfer-encoding"}


def sample_answers(server: Gunicorn, path: str, etag: str) -> dict[str, Any]:
    """The app's status line and headers for a ``200`` and for a ``304`` of one feed, for the
    baseline to answer with the same (each feed's own ETag and length put in)."""

    def answer(headers: dict[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(server.url(path), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, reason, got = response.status, response.reason, response.headers
                response.read()
        except urllib.error.HTTPError as error:  # urllib's view of a 304
            status, reason, got = error.code, error.reason, error.headers
        return {
            "status": f"{status} {reason}",
            "headers": [(n, v) for n, v in got.items() if n.lower() not in _SERVER_HEADERS],
        }

    return {"200": answer({}), "304": answer({"If-None-Match": etag})}


def wrk(server: Gunicorn, urls_file: Path, mode: str, seconds: int, args: Any) -> dict[str, Any]:
    env = {**os.environ, "WATCHFUL_URLS": str(urls_file), "WATCHFUL_MODE": mode}
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "feed.lua"),
        server.url("/"),
    ]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in output.splitlines() if x.startswith("WRKJSON "))
    raw = json.loads(line.removeprefix("WRKJSON "))
    rps = raw["requests"] / (raw["duration_us"] / 1e6)
    return {
        "requests": raw["requests"],
        "rps": round(rps, 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": raw["errors"],
        "statuses": raw["statuses"],
    }


def write_urls(path: Path, feeds: list[tuple[str, str, int]]) -> None:
    path.write_text("".join(f"{p}\t{etag}\n" for p, etag, _ in feeds))


def ratios(app: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    return {
        "rps_ratio": round(app["rps"] / base["rps"], 3),
        "p50_ratio": round(app["p50_ms"] / base["p50_ms"], 2),
        "p99_ratio": round(app["p99_ms"] / base["p99_ms"], 2),
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median requests per second (the lower middle one of an even count)."""
    return sorted(runs, key=lambda run: run["rps"])[(len(runs) - 1) // 2]


def warm_up(server: Gunicorn, urls_file: Path, count: int, args: Any) -> dict[str, Any]:
    """Full requests over the hot set until each feed was asked for about eight times: each
    request goes to whichever worker accepts it, and every worker has its own cache, so one
    fetch per feed leaves the other worker to render it during the measurement."""
    started, done = time.monotonic(), 0
    while done < 8 * count and time.monotonic() - started < 180:
        done += wrk(server, urls_file, "200", 5, args)["requests"]
    return {"requests": done, "seconds": round(time.monotonic() - started, 1)}


def memory_run(server: Gunicorn, urls_file: Path, total: int, args: Any) -> dict[str, Any]:
    """RSS of each worker before and after ``total`` feed requests (after a warm-up)."""
    wrk(server, urls_file, "200", 5, args)
    before = server.rss_kib()
    done = 0
    while done < total:
        done += wrk(server, urls_file, "200", 10, args)["requests"]
    after = server.rss_kib()
    return {
        "requests": done,
        "rss_before_kib": list(before.values()),
        "rss_after_kib": list(after.values()),
        "growth_kib": [after.get(pid, 0) - kib for pid, kib in before.items()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", nargs="?", default=common.DEFAULT_SQLITE)
    parser.add_argument("--hot", type=int, default=1000, help="patients in the hot set")
    parser.add_argument("--cold", type=int, default=3000, help="patients in the cold set")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--memory-requests", type=int, default=100_000)
    # 5: on a 2-core VM one run in three or four is far off either way (the two workers and
    # wrk's threads share the cores differently from run to run), for the app and the
    # baseline alike; with 5 rounds one such run on each side leaves both medians alone.
    parser.add_argument(
        "--baseline-loads-app",
        action="store_true",
        help="each baseline worker also builds the real app (never calling it): the app's "
        "process image, so that the ratio is the work of answering alone",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating app/baseline runs of each hot mode"
    )
    parser.add_argument(
        "--no-fast-path",
        action="store_true",
        help="serve every feed request through Flask (FEED_FAST_PATH=0), for comparison",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    work = Path(tempfile.mkdtemp(prefix="watchful-feeds-"))
    env = common.environment_for(args.target)
    env["FEED_FAST_PATH"] = "0" if args.no_fast_path else "1"
    hot_paths = feed_paths(args.target, args.hot, 0)
    cold_paths = feed_paths(args.target, args.cold, 1)
    result: dict[str, Any] = {
        "benchmark": "feeds",
        "database": common.engine_name(args.target),
        "wrk": f"-t{args.threads} -c{args.connections} -d{args.seconds}s",
        "gunicorn": "-c python:surveillance.gunicorn_conf, 2 sync workers",
        "feed_fast_path": not args.no_fast_path,
        "load_average_before": os.getloadavg(),
    }
    server = Gunicorn("surveillance:create_app()", env, hot_paths[0])
    baseline: Gunicorn | None = None
    try:
        started = time.perf_counter()
        cold = fetch_all(server, cold_paths)
        hot = fetch_all(server, hot_paths)  # last, so the hot set is what the caches hold
        result["first_fetch_ms_per_feed"] = round(
            (time.perf_counter() - started) * 1000 / (len(hot) + len(cold)) * 4, 2
        )
        hot_file, cold_file = work / "hot.tsv", work / "cold.tsv"
        write_urls(hot_file, hot)
        write_urls(cold_file, cold)
        result["warm_up"] = warm_up(server, hot_file, len(hot), args)
        sizes = sorted(size for _, _, size in hot)
        result["feed_bytes"] = {"median": sizes[len(sizes) // 2], "max": sizes[-1]}
        baseline_file = work / "baseline.tsv"
        baseline_file.write_text("".join(f"{p}\t{e}\t{s}\n" for p, e, s in hot + cold))
        answers = sample_answers(server, *hot[0][:2])
        result["answers"] = {kind: len(answer["headers"]) for kind, answer in answers.items()}
        result["baseline_loads_app"] = args.baseline_loads_app
        headers_file = work / "baseline-headers.json"
        headers_file.write_text(json.dumps(answers))
        base_env = {
            **env,
            "WATCHFUL_BASELINE": str(baseline_file),
            "WATCHFUL_BASELINE_HEADERS": str(headers_file),
            **({"WATCHFUL_BASELINE_LOADS_APP": "1"} if args.baseline_loads_app else {}),
            "PYTHONPATH": str(common.ROOT),
        }
        # Both servers stay up (an idle sync worker costs nothing) and their runs alternate,
        # round after round, so that a change in the machine's load falls on both alike.
        baseline = Gunicorn("bench.baseline_app:app", base_env, hot_paths[0])
        app_rounds: dict[str, list[dict[str, Any]]] = {"200": [], "304": []}
        base_rounds: dict[str, list[dict[str, Any]]] = {"200": [], "304": []}
        for number in range(args.rounds):
            for mode in ("200", "304"):
                pair = [(app_rounds, server), (base_rounds, baseline)]
                for runs, target in pair if number % 2 == 0 else reversed(pair):
                    runs[mode].append(wrk(target, hot_file, mode, args.seconds, args))
        base_runs = {mode: median_run(runs) for mode, runs in base_rounds.items()}
        app_runs = {
            "hot_200": median_run(app_rounds["200"]),
            "hot_304": median_run(app_rounds["304"]),
            "cold_304": wrk(server, cold_file, "304", args.seconds, args),
            "cold_200": wrk(server, cold_file, "200", args.seconds, args),
        }
        result["rounds"] = {
            mode: {
                "app_rps": [run["rps"] for run in app_rounds[mode]],
                "baseline_rps": [run["rps"] for run in base_rounds[mode]],
                "rps_ratios": [
                    round(a["rps"] / b["rps"], 3)
                    for a, b in zip(app_rounds[mode], base_rounds[mode], strict=True)
                ],
            }
            for mode in ("200", "304")
        }
        result["memory"] = memory_run(server, hot_file, args.memory_requests, args)
    finally:
        server.stop()
        if baseline is not None:
            baseline.stop()
    result["baseline"] = base_runs
    result["app"] = {
        name: {**run, **ratios(run, base_runs[name[-3:]])} for name, run in app_runs.items()
    }
    result["targets"] = {
        "200_rps_ratio>=0.5": result["app"]["hot_200"]["rps_ratio"] >= 0.5,
        "304_rps_ratio>=0.8": result["app"]["hot_304"]["rps_ratio"] >= 0.8,
        "baseline_p99<10ms": max(r["p99_ms"] for r in base_runs.values()) < 10,
        "app_p99<50ms": max(r["p99_ms"] for r in app_runs.values()) < 50,
    }
    result["load_average_after"] = os.getloadavg()
    result["machine"] = common.machine()
    shutil.rmtree(work, ignore_errors=True)
    common.emit(result)


if __name__ == "__main__":
    main()
