#!/usr/bin/env python3
"""A SIEM outage, measured: hubwatch follows a file that grows at a steady rate (the Azure
ML sample bodies, appended every --every seconds) and forwards every AML record to a
Splunk HEC receiver (tests/peers/siem_receiver.py) that is down for --outage seconds.
Every --sample seconds it prints hubwatch's resident memory, the sink's buffer, the rows
routed and the records the queries counted, so that one can see the engine go on and the
memory stay flat while the rows wait on disk; then the receiver comes up, and it prints
how long the buffer took to drain and whether every row arrived.

    cargo build --release && scripts/bench-outage.py --outage 600

Needs only Python 3 and the release binary; binds free loopback ports.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from hwlib import REPO, free_port, metrics, rss_mib, total, write_config


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outage", type=float, default=600, help="seconds the receiver is down")
    ap.add_argument("--every", type=float, default=2.0, help="seconds between appends of the sample")
    ap.add_argument("--sample", type=float, default=30, help="seconds between samples")
    args = ap.parse_args()

    binary = os.environ.get("HUBWATCH_BIN", os.path.join(REPO, "target/release/hubwatch"))
    sample = open(os.path.join(REPO, "tests/fixtures/aml/bodies.ndjson"), "rb").read()
    work = tempfile.mkdtemp(prefix="hubwatch-outage-")
    input_path = os.path.join(work, "bodies.ndjson")
    open(input_path, "wb").close()
    hec_port, admin_port = free_port(), free_port()
    config = os.path.join(work, "hubwatch.toml")
    write_config(config, admin_port, input_path, hec=(hec_port, "outage-token", 4294967296))
    addr = f"127.0.0.1:{admin_port}"
    hub = subprocess.Popen([binary, "run", "--config", config], cwd=work,
                           stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "hubwatch.log"), "w"))
    receiver = None
    try:
        for _ in range(100):
            if hub.poll() is not None:
                print(open(os.path.join(work, "hubwatch.log")).read())
                return 1
            try:
                metrics(addr)
                break
            except OSError:
                time.sleep(0.1)
        start = time.time()
        next_append = start
        next_sample = start
        appended = 0
        print(f"outage of {args.outage:.0f} s; the sample ({len(sample) / 1e6:.1f} MB) appended every {args.every} s")
        print(f"{'t(s)':>6} {'RSS MiB':>8} {'buffer MB':>10} {'rows routed':>12} {'records':>10} {'oldest(s)':>10}")
        while time.time() - start < args.outage:
            now = time.time()
            if now >= next_append:
                with open(input_path, "ab") as f:
                    f.write(sample)
                appended += 1
                next_append += args.every
            if now >= next_sample:
                m = metrics(addr)
                print(f"{now - start:6.0f} {rss_mib(hub.pid):8.1f} "
                      f"{total(m, 'hubwatch_forward_sink_buffer_bytes') / 1e6:10.1f} "
                      f"{total(m, 'hubwatch_forward_rows_total'):12.0f} "
                      f"{total(m, 'hubwatch_parse_records_total'):10.0f} "
                      f"{total(m, 'hubwatch_forward_sink_oldest_unacked_age_seconds'):10.0f}", flush=True)
                next_sample += args.sample
            time.sleep(0.05)
        m = metrics(addr)
        rows = total(m, "hubwatch_forward_rows_total")
        print(f"outage over: {rows:.0f} rows routed, {total(m, 'hubwatch_forward_sink_buffer_bytes') / 1e6:.1f} MB buffered, RSS {rss_mib(hub.pid):.1f} MiB")
        rx_dir = os.path.join(work, "rx")
        os.makedirs(rx_dir)
        receiver = subprocess.Popen([sys.executable, os.path.join(REPO, "tests/peers/siem_receiver.py"),
                                     "--port", str(hec_port), "--out", rx_dir, "--hec-token", "outage-token",
                                     "--count-only"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        receiver.stdout.readline()
        up = time.time()
        peak = 0.0
        first = None
        while True:
            m = metrics(addr)
            peak = max(peak, rss_mib(hub.pid))
            sent = total(m, "hubwatch_forward_sink_sent_total")
            if sent > 0 and first is None:
                first = time.time()
            if sent >= rows:
                break
            if time.time() - up > 3600:
                print("the buffer did not drain within an hour")
                return 1
            time.sleep(0.5)
        drained = time.time() - up
        stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{hec_port}/_stats", timeout=10).read())
        # The first delivery waits for the sender's next retry (the backoff grew to its 30 s
        # cap during the outage); the rate is from then on.
        flowing = max(time.time() - first, 1e-3)
        print(f"drained {drained:.1f} s after the receiver came up: the first retry after "
              f"{first - up:.1f} s, then {rows / flowing:.0f} rows/s; the receiver accepted "
              f"{stats['accepted']['hec']} events for {rows:.0f} rows; peak RSS while draining {peak:.1f} MiB")
        return 0 if stats["accepted"]["hec"] >= rows else 1
    finally:
        for p in (hub, receiver):
            if p is not None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    sys.exit(main())
