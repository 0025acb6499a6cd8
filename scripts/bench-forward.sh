#!/usr/bin/env bash
# Forwarding benchmark: every Azure ML record (`union Aml*`) routed to sinks on loopback,
# timed until every receiver has taken every row, against replay without routes in the
# same process (`hubwatch bench --forward`, both with a checkpoint directory as deployed).
# Receivers: the HEC test receiver (tests/peers/siem_receiver.py, parsing and counting
# every event, keeping none) and rsyslog (installed by setup-test-deps.sh; receiving and
# parsing every message, writing it to /dev/null), each on a free port, stopped on exit;
# their CPU time is printed at the end, as they share the machine's cores with hubwatch,
# with the ceiling that sharing puts on the ratio.
#   [HEC_COMPRESSION=none] scripts/bench-forward.sh file|hec|syslog|hec+syslog [--repeat 100]
set -euo pipefail
cd "$(dirname "$0")/.."
sinks="${1:-hec+syslog}"
shift || true
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
receivers_cpu() {
  for p in "${pids[@]}"; do
    awk '{printf "receiver %s: CPU %.2f s\n", $2, ($14 + $15) / 100}' "/proc/$p/stat"
  done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  exit 1
}

config="$work/bench.toml"
printf 'query_files = ["%s/deploy/config/aml-queries.toml"]\n[[sources]]\ntype = "file"\nname = "bench"\npaths = ["/dev/null"]\n' "$PWD" >"$config"
names=()
case "$sinks" in *file*)
  printf '[[sinks]]\ntype = "file"\nname = "file"\npath = "%s/out.ndjson"\n' "$work" >>"$config"
  names+=('"file"') ;;
esac
case "$sinks" in *hec*)
  port="$(free_port)"
  mkdir -p "$work/rx"
  python3 tests/peers/siem_receiver.py --port "$port" --out "$work/rx" --hec-token bench --count-only >/dev/null &
  pids+=($!)
  wait_port "$port"
  printf '[[sinks]]\ntype = "splunk_hec"\nname = "hec"\nendpoint = "http://127.0.0.1:%s"\ntoken = "bench"\ncompression = "%s"\n' "$port" "${HEC_COMPRESSION:-gzip}" >>"$config"
  names+=('"hec"') ;;
esac
case "$sinks" in *syslog*)
  port="$(free_port)"
  mkdir -p "$work/rs/work"
  cat >"$work/rs/rsyslog.conf" <<EOF
global(workDirectory="$work/rs/work")
module(load="imtcp" MaxSessions="16")
input(type="imtcp" address="127.0.0.1" port="$port" ruleset="siem")
template(name="t" type="string" string="%msg%\n")
ruleset(name="siem") { action(type="omfile" file="/dev/null" template="t") }
EOF
  /usr/sbin/rsyslogd -n -f "$work/rs/rsyslog.conf" -i "$work/rs/pid" &
  pids+=($!)
  wait_port "$port"
  printf '[[sinks]]\ntype = "syslog"\nname = "syslog"\naddress = "127.0.0.1:%s"\n' "$port" >>"$config"
  names+=('"syslog"') ;;
esac
[ ${#names[@]} -gt 0 ] || { echo "usage: $0 file|hec|syslog|hec+syslog [bench args]" >&2; exit 2; }
printf '[[routes]]\nname = "aml"\nsinks = [%s]\nkql = "union Aml*"\n' "$(IFS=,; echo "${names[*]}")" >>"$config"
cargo run --release --quiet -- bench --forward --config "$config" "$@" | tee "$work/report"
receivers_cpu | tee "$work/receivers"
# The best ratio any forwarder could reach here: the receivers' CPU time and replay's own
# must fit on this machine's cores, so the forwarding run cannot take less wall time than
# (replay CPU + receivers' CPU) / cores, even if routing and sending cost nothing.
awk -v cores="$(nproc)" '
  FILENAME ~ /report$/ && /^no routes:/ { wall = $3; cpu = $(NF - 1) }
  FILENAME ~ /receivers$/ { rx += $(NF - 1) }
  END {
    floor = (cpu + rx) / cores
    if (wall > 0) printf "ceiling:      %.2fx on %d cores with these receivers beside hubwatch (replay CPU %.2f s + receivers %.2f s)\n", wall / (floor > wall ? floor : wall), cores, cpu, rx
  }' "$work/report" "$work/receivers"
