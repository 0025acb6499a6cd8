#!/usr/bin/env bash
# Coverage-guided fuzzing of hubwatch's input surfaces with libFuzzer, on the stable
# toolchain: builds fuzz/ (the layout `cargo fuzz` uses) with the instrumentation cargo-fuzz
# would add (no sanitizer: -Z flags need nightly; debug assertions and overflow checks on,
# by fuzz/Cargo.toml's profile),
# then runs each target for SECONDS from its seed corpus in fuzz/corpus/<target>.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]       default: 20 s each, every target
#   scripts/fuzz.sh --runs N [TARGET...]        N inputs each, seed 1: the same run every
#                                               time (what scripts/test.sh does in CI)
#
# New inputs the fuzzer finds go to target/fuzz/corpus/<target> (not into the repository;
# copy the interesting ones to fuzz/corpus/). A crash stops the run: its input is in
# target/fuzz/artifacts/<target>/ and the script exits non-zero. Replay one with
#   target/fuzz/x86_64-unknown-linux-gnu/release/<target> <file>
set -euo pipefail
cd "$(dirname "$0")/.."

limit=(-max_total_time=20)
what="20s"
if [ "${1:-}" = "--runs" ]; then
  limit=(-runs="$2" -seed=1)
  what="$2 inputs"
  shift 2
elif [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
  limit=(-max_total_time="$1")
  what="$1s"
  shift
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(body kql config amqp encoders)
fi

host=$(rustc -vV | sed -n 's/^host: //p')
out=target/fuzz
export CARGO_TARGET_DIR=$out
# As cargo-fuzz: sancov edge counters, the PC table and comparison tracing for libFuzzer;
# `--target` keeps the flags off build scripts and proc macros.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
cargo build --release --locked --manifest-path fuzz/Cargo.toml --target "$host" "${bins[@]}"

status=0
for t in "${targets[@]}"; do
  corpus=$out/corpus/$t
  artifacts=$out/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  echo "fuzz: $t for $what (seeds: fuzz/corpus/$t)"
  # -rss_limit_mb: a run that needs more is a finding too. -timeout: one input may take 10 s.
  # amqp: serde_amqp decodes nested values by recursion without a limit, so its inputs are
  # decoded on a stack as deep as hubwatch gives its AMQP threads (src/deep_stack.rs,
  # 512 MiB; libFuzzer calls the target on the main thread, whose stack grows to the limit).
  if ! (if [ "$t" = amqp ]; then ulimit -s $((512 * 1024)); fi
      exec "$out/$host/release/$t" "$corpus" "fuzz/corpus/$t" \
      "${limit[@]}" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
      -artifact_prefix="$artifacts/" -print_final_stats=1) 2>"$out/$t.log"; then
    status=1
    echo "fuzz: $t FAILED; the input is in $artifacts/, the log in $out/$t.log" >&2
    grep -A30 -m1 -E "panicked|ERROR: libFuzzer|SUMMARY" "$out/$t.log" >&2 || tail -40 "$out/$t.log" >&2
  else
    grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb|new_units_added)" "$out/$t.log" \
      | sed "s/^/fuzz: $t /"
    grep -E "cov: [0-9]+" "$out/$t.log" | tail -1 | sed "s/^/fuzz: $t last: /"
  fi
done
exit $status
