#!/usr/bin/env bash
# What can be checked of the container image without a container engine (none runs on the
# build machines): the Dockerfile's build steps, repeated here, and their result run the
# way the image and the Helm chart run it —
#   - the release binary, built with the Dockerfile's command (`cargo build --release
#     --locked`, zlib static through .cargo/config.toml), needs no shared library outside
#     distroless cc-debian12's (glibc, libgcc, libssl3);
#   - laid out as the image lays it out (/usr/local/bin/hubwatch, /etc/hubwatch/*.toml,
#     /var/lib/hubwatch), in a root with no shell and no other program;
#   - run as the numeric user 65532 with that root mounted read-only and only
#     /var/lib/hubwatch and /tmp writable (the chart's readOnlyRootFilesystem plus its
#     volumes), with the image's default command: `check` passes, `run` reads the AML
#     sample dropped into /var/lib/hubwatch/input, serves /metrics, stores its checkpoint
#     and stops cleanly on SIGTERM.
# What it cannot check: the base image's own contents and the image build itself.
# Needs root (a mount namespace and chroot); fails loudly otherwise.
#   scripts/check-image.sh [--binary PATH]   (default: build as the Dockerfile does)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

fail() { echo "check-image: $*" >&2; exit 1; }

if [ "${1:-}" = "--inside" ]; then
  # Runs in the private mount namespace: the root goes read-only, the state and /tmp are
  # fresh tmpfs owned by the image's user, and hubwatch runs chrooted as that user.
  root="$2"; port="$3"
  mount --bind "$root" "$root"
  mount -o remount,bind,ro "$root"
  mount -t tmpfs -o size=64m,mode=0750,uid=65532,gid=65532 tmpfs "$root/var/lib/hubwatch"
  mount -t tmpfs -o size=16m,mode=1777 tmpfs "$root/tmp"
  mount --rbind /proc "$root/proc"
  mount --rbind /dev "$root/dev"
  # exec: so that a background call's pid is hubwatch's own (signals reach it).
  as_user() {
    exec env -i HOME=/home/nonroot PATH=/usr/local/bin HUBWATCH_STATE_DIR=/var/lib/hubwatch \
      HUBWATCH_LISTEN="127.0.0.1:$port" RUST_LOG=info \
      /usr/sbin/chroot --userspec=65532:65532 "$root" "$@"
  }
  if touch "$root/usr/local/bin/probe" 2>/dev/null; then fail "the root is writable"; fi
  install -d -o 65532 -g 65532 "$root/var/lib/hubwatch/input"
  install -o 65532 -g 65532 -m 0644 tests/fixtures/aml/bodies.ndjson "$root/var/lib/hubwatch/input/aml.ndjson"

  (as_user /usr/local/bin/hubwatch check --config /etc/hubwatch/hubwatch.toml) \
    || fail "hubwatch check refused the image's default configuration"

  log="$(mktemp)"
  pid=""
  # Whatever fails below, hubwatch does not outlive the check, nor its log the run.
  trap '[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -f "$log"' EXIT
  (as_user /usr/local/bin/hubwatch run --config /etc/hubwatch/hubwatch.toml) >"$log" 2>&1 &
  pid=$!
  records=""
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "hubwatch exited early"; }
    records="$(curl -sf "http://127.0.0.1:$port/metrics" 2>/dev/null \
      | awk '/^hubwatch_parse_records_total/ { n += $2 } END { print n + 0 }')" || true
    [ "${records:-0}" -gt 0 ] && [ -s "$root/var/lib/hubwatch/checkpoints.json" ] && break
    sleep 0.1
  done
  [ "${records:-0}" -gt 0 ] || { cat "$log" >&2; fail "no records counted within 30 s"; }
  [ -s "$root/var/lib/hubwatch/checkpoints.json" ] || { cat "$log" >&2; fail "no checkpoint stored within 30 s"; }
  kill -TERM "$pid"
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fail "hubwatch did not stop within 30 s of SIGTERM"; fi
  status=0; wait "$pid" || status=$?
  pid=""
  [ "$status" = 0 ] || { cat "$log" >&2; fail "hubwatch exited with status $status after SIGTERM"; }
  if grep -E ' (ERROR|WARN) ' "$log" | grep -v 'rejected' >&2; then fail "hubwatch logged errors"; fi
  echo "check-image: ran as 65532 in a read-only root: $records records, checkpoint $(stat -c %s "$root/var/lib/hubwatch/checkpoints.json") bytes, state files: $(find "$root/var/lib/hubwatch/state" -type f | wc -l)"
  exit 0
fi

[ "$(id -u)" = 0 ] || fail "needs root for a mount namespace and chroot (run it as root, or in CI)"
binary=""
if [ "${1:-}" = "--binary" ]; then
  [ -n "${2:-}" ] || fail "--binary needs the binary's path"
  binary="$2"
fi
if [ -z "$binary" ]; then
  # The Dockerfile's build command.
  cargo build --release --locked --bin hubwatch
  binary=target/release/hubwatch
fi

# Only these libraries are in gcr.io/distroless/cc-debian12 (besides the loader).
allowed='^(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|libssl|libcrypto)\.so'
libs="$(ldd "$binary" | awk '/=>/ { print $3 }')"
for lib in $libs; do
  basename "$lib" | grep -Eq "$allowed" || fail "$binary needs $lib, which distroless cc-debian12 does not have"
done
echo "$libs" | grep -q 'libssl\.so\.3' || fail "$binary does not link OpenSSL 3 (libssl.so.3), which the image provides"
# ...and no glibc symbol newer than Debian 12's (2.36): a binary built on a newer system
# would not start there.
newest="$(objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)"
[ "$(printf '%s\n2.36\n' "$newest" | sort -V | tail -1)" = 2.36 ] \
  || fail "$binary needs glibc $newest; distroless cc-debian12 has 2.36"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/root"
# The image's layout (the Dockerfile's install steps)...
install -D -s -m 0755 "$binary" "$root/usr/local/bin/hubwatch"
install -d -m 0755 "$root/etc/hubwatch"
install -m 0644 deploy/config/*.toml "$root/etc/hubwatch/"
install -d -m 0750 -o 65532 -g 65532 "$root/var/lib/hubwatch"
# ...on what distroless gives: the libraries, the loader, CA certificates, a passwd entry
# for nonroot, and nothing else (no shell).
for lib in $libs $(ldd "$binary" | awk '/ld-linux/ { print $1 }'); do
  install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
install -d "$root/tmp" "$root/proc" "$root/dev"
[ ! -e "$root/bin/sh" ] || fail "the root has a shell"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
unshare --mount --propagation private "$repo/scripts/check-image.sh" --inside "$root" "$port"
