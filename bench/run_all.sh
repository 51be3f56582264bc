#!/usr/bin/env bash
# Every benchmark, one after the other, as bench/README.md's summary was taken: regenerate both
# databases, then worklists, feeds, jobs, enrolment and two schedulers (those that change the
# data run on copies). JSON goes to $OUT (default /tmp/bench-results), with a log of start
# times and load averages. Usage: `make bench`, or bench/run_all.sh from the project root
# after `make install-dev` (it installs wrk from Debian when missing).
set -u
cd "$(dirname "$0")/.."
sh bench/install-tools.sh || exit 1
PY=${PY:-.venv/bin/python}
OUT=${OUT:-/tmp/bench-results}
SQLITE=${SQLITE:-/tmp/watchful-bench.sqlite3}
PG=${PG:-postgresql://postgres@127.0.0.1:5432}
mkdir -p "$OUT"
copy_pg() {
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $1" postgres
  createdb -h 127.0.0.1 -U postgres -T watchful_bench "$1"
}
step() { echo "== $1 $(date +%T) load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/log"; }
step generate-sqlite; $PY bench/generate.py "$SQLITE" > "$OUT/generate-sqlite.json"
step generate-postgresql; $PY bench/generate.py "$PG/watchful_bench" > "$OUT/generate-postgresql.json"
step worklists-sqlite; $PY bench/worklists.py "$SQLITE" > "$OUT/worklists-sqlite.json"
step worklists-postgresql; $PY bench/worklists.py "$PG/watchful_bench" > "$OUT/worklists-postgresql.json"
step feeds-sqlite; $PY bench/feeds.py "$SQLITE" > "$OUT/feeds-sqlite.json"
step feeds-postgresql; $PY bench/feeds.py "$PG/watchful_bench" > "$OUT/feeds-postgresql.json"
step feed-wsgi-sqlite; $PY bench/feed_wsgi.py "$SQLITE" > "$OUT/feed-wsgi-sqlite.json"
step feed-wsgi-postgresql; $PY bench/feed_wsgi.py "$PG/watchful_bench" > "$OUT/feed-wsgi-postgresql.json"
step jobs-sqlite; cp "$SQLITE" /tmp/watchful-bench-jobs.sqlite3
$PY bench/jobs.py /tmp/watchful-bench-jobs.sqlite3 > "$OUT/jobs-sqlite.json"
step jobs-postgresql
copy_pg watchful_bench_jobs
$PY bench/jobs.py "$PG/watchful_bench_jobs" > "$OUT/jobs-postgresql.json"
step enrolment-sqlite; cp "$SQLITE" /tmp/watchful-bench-enrol.sqlite3
$PY bench/enrolment.py /tmp/watchful-bench-enrol.sqlite3 > "$OUT/enrolment-sqlite.json"
step enrolment-postgresql; copy_pg watchful_bench_enrol
$PY bench/enrolment.py "$PG/watchful_bench_enrol" > "$OUT/enrolment-postgresql.json"
step two-schedulers; copy_pg watchful_bench_two
$PY bench/two_schedulers.py "$PG/watchful_bench_two" > "$OUT/two-schedulers.json"
rm -f /tmp/watchful-bench-jobs.sqlite3 /tmp/watchful-bench-enrol.sqlite3
for copy in watchful_bench_jobs watchful_bench_enrol watchful_bench_two; do
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $copy" postgres
done
step done
