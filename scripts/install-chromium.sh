#!/bin/sh
# install-chromium.sh - install Debian's chromium, which tests/test_render_html.py uses to open
# the HTML report headless (screenshot, console, network checks). Run as root. Idempotent.
#
# Only Debian's own package from the image's configured sources is used; nothing is downloaded
# from Google (kaleido's/plotly's get_chrome helpers are not used).
set -eu

if command -v chromium >/dev/null 2>&1; then
  chromium --version 2>/dev/null | head -n 1
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "install-chromium.sh: must run as root (apt-get install chromium)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
chromium --version 2>/dev/null | head -n 1
