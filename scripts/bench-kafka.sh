#!/usr/bin/env bash
# Kafka benchmark against a real broker process: tansu (in memory, loopback, a free port),
# installed by setup-test-deps.sh. Broker -> Kafka source -> pipeline, against file replay
# of the same bodies in the same run. Extra arguments go to `hubwatch bench`
# (e.g. --repeat 100).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-test-deps.sh >/dev/null
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
.venv/bin/tansu broker --listener-url "tcp://127.0.0.1:$port" \
  --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/ \
  >/dev/null 2>&1 &
tansu=$!
trap 'kill "$tansu" 2>/dev/null || true; wait "$tansu" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
cargo run --release --quiet -- bench --via kafka --brokers "127.0.0.1:$port" "$@"
