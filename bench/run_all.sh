#!/usr/bin/env bash
# Every benchmark, one after the other, as bench/README.md's summary was taken: regenerate both
# databases, then worklists, feeds and jobs (jobs on copies, since they change the data).
# JSON goes to $OUT (default /tmp/bench-results), with a log of start times and load averages.
# Usage: bench/run_all.sh   (from the project root, with `make install-dev` done; wrk installed)
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-/tmp/bench-results}
SQLITE=${SQLITE:-/tmp/watchful-bench.sqlite3}
PG=${PG:-postgresql://postgres@127.0.0.1:5432}
mkdir -p "$OUT"
step() { echo "== $1 $(date +%T) load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/log"; }
step generate-sqlite; $PY bench/generate.py "$SQLITE" > "$OUT/generate-sqlite.json"
step generate-postgresql; $PY bench/generate.py "$PG/watchful_bench" > "$OUT/generate-postgresql.json"
step worklists-sqlite; $PY bench/worklists.py "$SQLITE" > "$OUT/worklists-sqlite.json"
step worklists-postgresql; $PY bench/worklists.py "$PG/watchful_bench" > "$OUT/worklists-postgresql.json"
step feeds; $PY bench/feeds.py "$SQLITE" > "$OUT/feeds.json"
step jobs-sqlite; cp "$SQLITE" /tmp/watchful-bench-jobs.sqlite3
$PY bench/jobs.py /tmp/watchful-bench-jobs.sqlite3 > "$OUT/jobs-sqlite.json"
step jobs-postgresql
psql -h 127.0.0.1 -U postgres -qc 'DROP DATABASE IF EXISTS watchful_bench_jobs' postgres
createdb -h 127.0.0.1 -U postgres -T watchful_bench watchful_bench_jobs
$PY bench/jobs.py "$PG/watchful_bench_jobs" > "$OUT/jobs-postgresql.json"
step done
