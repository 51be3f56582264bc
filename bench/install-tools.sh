#!/bin/sh
# The one system package the benchmarks need beyond `make install-dev`: wrk, the HTTP load
# generator bench/feeds.py drives, from Debian.
set -eu
command -v wrk >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "wrk is missing — run 'sudo apt-get install -y wrk'." >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
