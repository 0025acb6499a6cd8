#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain, idempotently:
#   - Prometheus and promtool (Debian package `prometheus`): /metrics is checked with
#     `promtool check metrics` and scraped by a real Prometheus server in tests/prometheus.rs.
set -euo pipefail

need_apt=()
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  need_apt+=(prometheus)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (Debian packages)"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The Debian package may start nothing here (no init system), but make sure no stray
# Prometheus from the package holds the default ports during tests.
echo "setup: promtool $(promtool --version 2>&1 | head -n1 | awk '{print $3}'), prometheus ready"
