#!/bin/sh
# System packages the tests need from Debian: Chromium for the browser tests (never a browser
# downloaded by Playwright) and the Cairo library that cairosvg renders the QR code with.
set -eu
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
ldconfig -p 2>/dev/null | grep -q "libcairo.so.2" || missing="$missing libcairo2"
[ -n "$missing" ] || exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing system packages:$missing — run 'sudo apt-get install -y$missing'." >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
