#!/usr/bin/env bash
# Installs the Debian 12 packages needed to build, run and test the system.
# chromium, python3-websocket, python3-nacl and the fonts: the dashboard's browser test
# (tests/browser/, headless Chromium driven over its DevTools protocol; Arabic and Latin fonts).
# libicu-dev: intake's name normalisation (Unicode normal forms, transliteration).
# clang and libclang-rt-14-dev: the libFuzzer targets (tests/fuzz, tools/fuzz/run.sh).
# clang-format and shellcheck: the style check (tests/unit/test_style.sh).
# Idempotent: does nothing when every package is already present. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git ca-certificates
  libzmq3-dev libczmq-dev
  libpq-dev postgresql-15 postgresql-client-15 postgresql-contrib
  libjansson-dev
  libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  libsodium-dev
  libcurl4-openssl-dev
  libcmocka-dev
  libicu-dev
  clang libclang-rt-14-dev clang-format shellcheck
  libmicrohttpd-dev
  uuid-runtime procps iproute2 bc jq curl python3 python3-protobuf python3-yaml python3-zmq python3-prometheus-client
  docker-compose
  chromium python3-websocket python3-nacl fonts-dejavu-core fonts-noto-core
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing: ${missing[*]}" >&2
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
