#!/bin/sh
# install-nsight.sh - install Nsight Systems (nsys) and Nsight Compute (ncu) from
# Debian's non-free component on Debian 12 (bookworm). Run as root. Idempotent.
#
# It adds no new host: the sources entry is derived from the image's own bookworm
# stanza in /etc/apt/sources.list.d/debian.sources (same URIs, same Signed-By
# keyring); only the Components line is swapped for contrib/non-free.
#
# Debian's nsys looks for QdstrmImporter under the multiarch lib dir while the
# package installs it under /usr/lib/nsight-systems; the symlink below fixes
# "The importer binary and its dependencies were not found" (nsys otherwise
# leaves only a .qdstrm).
#
# Environment: INFRAPROF_SKIP_NCU=1 skips Nsight Compute (saves ~350 MB).
set -eu

if command -v nsys >/dev/null 2>&1 \
   && test -e /usr/lib/x86_64-linux-gnu/nsight-systems/host-linux-x64/QdstrmImporter \
   && { [ "${INFRAPROF_SKIP_NCU:-0}" = 1 ] || command -v ncu >/dev/null 2>&1; }; then
  nsys --version
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "install-nsight.sh: must run as root (apt-get install)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
stanzas=/etc/apt/sources.list.d/debian.sources
extra=/etc/apt/sources.list.d/infraprof-nonfree.sources

if [ ! -s "$extra" ]; then
  if [ ! -r "$stanzas" ]; then
    echo "install-nsight.sh: $stanzas not found; this script supports Debian 12 images with deb822 sources" >&2
    exit 1
  fi
  tmp="$extra.tmp.$$"
  # Paragraph mode: keep the stanza whose Suites line is the bookworm main suite.
  awk 'BEGIN { RS = ""; ORS = "\n\n" } /Suites: bookworm bookworm-updates/' "$stanzas" \
    | sed 's/^Components: .*/Components: contrib non-free non-free-firmware/' > "$tmp"
  if ! grep -q '^Components: contrib non-free' "$tmp"; then
    rm -f "$tmp"
    echo "install-nsight.sh: no bookworm stanza found in $stanzas" >&2
    exit 1
  fi
  mv "$tmp" "$extra"
fi

apt-get update -qq
pkgs="nsight-systems-target nsight-systems"
if [ "${INFRAPROF_SKIP_NCU:-0}" != 1 ]; then
  pkgs="$pkgs nsight-compute"
fi
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null

mkdir -p /usr/lib/x86_64-linux-gnu/nsight-systems
ln -sfn /usr/lib/nsight-systems/host-linux-x64 \
        /usr/lib/x86_64-linux-gnu/nsight-systems/host-linux-x64
test -e /usr/lib/x86_64-linux-gnu/nsight-systems/host-linux-x64/QdstrmImporter

nsys --version
if [ "${INFRAPROF_SKIP_NCU:-0}" != 1 ]; then
  ncu --version | tail -n 1
fi
