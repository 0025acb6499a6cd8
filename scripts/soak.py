#!/usr/bin/env python3
"""Soak: hubwatch run for a long time at a high rate, scraped hard, restarted now and then
(SIGKILL and SIGTERM in turn), with its SIEM down for a while — and then compared with one
uninterrupted run over the same input.

The input is the Azure ML sample (tests/fixtures/aml, broken bodies included), appended to
a followed file every --every seconds, each round's times moved so that its newest record
is "now" (event time keeps pace with the wall clock). hubwatch routes every AML record to
the Splunk HEC test receiver, which is down for --outage seconds from --outage-at. A
thread scrapes /metrics every --scrape-every seconds throughout. Every --sample seconds the
script prints hubwatch's resident memory, open descriptors, the sink's buffer, scrape
latency and restarts.

At the end the input stops; a second hubwatch replays the whole file once, without
restarts; the soaked one must reach the very same query results (any difference left
after it caught up is drift), and the receiver must hold every routed row at least once.

    cargo build --release && scripts/soak.py --duration 3600

Needs Python 3 and the release binary (HUBWATCH_BIN to use another); binds free loopback
ports; not part of the test suite.
"""

import argparse
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from hwlib import (REPO, free_port, hec_receiver, metrics, open_fds, queries, receiver_stats,
                   rss_mib, total, wait_for_admin, write_config)

STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
TOKEN = "soak-token"


class Rounds:
    """The sample, each round with its times moved so that its newest stamp is now."""

    def __init__(self):
        self.sample = open(os.path.join(REPO, "tests/fixtures/aml/bodies.ndjson")).read()
        self.newest = max(datetime.datetime.fromisoformat(s) for s in STAMP.findall(self.sample))

    def next(self):
        shift = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - self.newest
        move = lambda m: (datetime.datetime.fromisoformat(m.group(0)) + shift).strftime("%Y-%m-%dT%H:%M:%S")
        return STAMP.sub(move, self.sample).encode()


class Scraper(threading.Thread):
    """Scrapes /metrics as fast as asked, and keeps the latencies and failures."""

    def __init__(self, addr, every):
        super().__init__(daemon=True)
        self.addr, self.every = addr, every
        self.latencies, self.failures, self.stop = [], 0, False

    def run(self):
        while not self.stop:
            t = time.time()
            try:
                urllib.request.urlopen(f"http://{self.addr}/metrics", timeout=10).read()
                self.latencies.append(time.time() - t)
            except OSError:
                self.failures += 1  # expected while hubwatch restarts
            time.sleep(max(0.0, self.every - (time.time() - t)))

    def take(self):
        taken, self.latencies = self.latencies, []
        return taken


def start(binary, cfg, work, log):
    return subprocess.Popen([binary, "run", "--config", cfg], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=open(log, "a"))


def stop(proc, sig, limit=60):
    proc.send_signal(sig)
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=3600, help="seconds of input")
    ap.add_argument("--every", type=float, default=2.0, help="seconds between rounds of the sample")
    ap.add_argument("--restart-every", type=float, default=300, help="seconds between restarts")
    ap.add_argument("--outage-at", type=float, default=0.4, help="when the SIEM goes down (share of --duration)")
    ap.add_argument("--outage", type=float, default=600, help="seconds the SIEM is down")
    ap.add_argument("--scrape-every", type=float, default=0.25, help="seconds between scrapes")
    ap.add_argument("--sample", type=float, default=60, help="seconds between printed samples")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    binary = os.environ.get("HUBWATCH_BIN", os.path.join(REPO, "target/release/hubwatch"))
    work = tempfile.mkdtemp(prefix="hubwatch-soak-")
    soak, ref = os.path.join(work, "soak"), os.path.join(work, "reference")
    os.makedirs(soak)
    os.makedirs(ref)
    input_path = os.path.join(work, "bodies.ndjson")
    open(input_path, "wb").close()
    admin, hec = free_port(), free_port()
    addr = f"127.0.0.1:{admin}"
    cfg, log = os.path.join(soak, "hubwatch.toml"), os.path.join(soak, "hubwatch.log")
    write_config(cfg, admin, input_path, hec=(hec, TOKEN, 8589934592))

    rx = hec_receiver(hec, os.path.join(work, "rx"), TOKEN)
    hub = start(binary, cfg, soak, log)
    procs = [hub, rx]
    try:
        wait_for_admin(hub, addr, log)
        scraper = Scraper(addr, args.scrape_every)
        scraper.start()
        rounds = Rounds()
        t0 = time.time()
        next_round, next_sample, next_restart = t0, t0, t0 + args.restart_every
        outage_from, outage_to = t0 + args.outage_at * args.duration, t0 + args.outage_at * args.duration + args.outage
        appended = restarts = earlier = 0
        kill = True
        rss, fds = [], []
        print(f"soak of {args.duration:.0f} s: the sample every {args.every} s "
              f"({len(rounds.sample) / args.every / 1e6:.2f} MB/s), restarts every {args.restart_every:.0f} s, "
              f"the SIEM down from {outage_from - t0:.0f} s for {args.outage:.0f} s, /metrics every {args.scrape_every} s")
        print(f"{'t(s)':>6} {'RSS MiB':>8} {'fds':>5} {'buffer MB':>10} {'records':>10} {'scrape p50/max ms':>18} {'restarts':>9} {'SIEM':>5}")
        while time.time() - t0 < args.duration:
            now = time.time()
            if now >= next_round:
                with open(input_path, "ab") as f:
                    f.write(rounds.next())
                appended += 1
                next_round += args.every
            if rx is not None and outage_from <= now < outage_to:
                earlier += receiver_stats(hec)["accepted"]["hec"]  # a new receiver counts from 0
                stop(rx, signal.SIGTERM)
                rx = None
            elif rx is None and now >= outage_to:
                rx = hec_receiver(hec, os.path.join(work, "rx"), TOKEN)
                procs[1] = rx
            if now >= next_restart:
                # SIGKILL and SIGTERM in turn: a crash, then a rolling update.
                stop(hub, signal.SIGKILL if kill else signal.SIGTERM)
                kill = not kill
                hub = start(binary, cfg, soak, log)
                procs[0] = hub
                wait_for_admin(hub, addr, log)
                restarts += 1
                next_restart += args.restart_every
            if now >= next_sample:
                m = metrics(addr)
                lat = sorted(scraper.take()) or [0.0]
                rss.append(rss_mib(hub.pid))
                fds.append(open_fds(hub.pid))
                print(f"{now - t0:6.0f} {rss[-1]:8.1f} {fds[-1]:5d} "
                      f"{total(m, 'hubwatch_forward_sink_buffer_bytes') / 1e6:10.1f} "
                      f"{total(m, 'hubwatch_parse_records_total'):10.0f} "
                      f"{lat[len(lat) // 2] * 1e3:8.1f}/{lat[-1] * 1e3:<9.1f} {restarts:9d} {'down' if rx is None else 'up':>5}",
                      flush=True)
                next_sample += args.sample
            time.sleep(0.02)
        scraper.stop = True
        if rx is None:
            rx = hec_receiver(hec, os.path.join(work, "rx"), TOKEN)
            procs[1] = rx
        size = os.path.getsize(input_path)
        print(f"input over: {appended} rounds, {size / 1e9:.2f} GB; {restarts} restarts; "
              f"RSS {min(rss):.1f}-{max(rss):.1f} MiB, fds {min(fds)}-{max(fds)}; {scraper.failures} scrapes failed (restarts)")

        # One uninterrupted run over the same input: the answer.
        ref_admin = free_port()
        ref_cfg, ref_log, ref_rows = os.path.join(ref, "hubwatch.toml"), os.path.join(ref, "hubwatch.log"), os.path.join(ref, "rows.ndjson")
        write_config(ref_cfg, ref_admin, input_path, out=ref_rows, follow=False)
        reference = start(binary, ref_cfg, ref, ref_log)
        procs.append(reference)
        wait_for_admin(reference, f"127.0.0.1:{ref_admin}", ref_log)
        while "all sources finished" not in open(ref_log).read():
            if reference.poll() is not None:
                sys.exit(f"the reference run exited:\n{open(ref_log).read()}")
            time.sleep(1)
        want = queries(f"127.0.0.1:{ref_admin}")
        rows = total(metrics(f"127.0.0.1:{ref_admin}"), "hubwatch_forward_rows_total")

        # The soaked one catches up (bounded), then must give the same answer.
        deadline, got = time.time() + 1800, None
        while time.time() < deadline:
            got = queries(addr)
            if got == want and earlier + receiver_stats(hec)["accepted"]["hec"] >= rows:
                break
            time.sleep(5)
        drift = sorted(q for q in want if got.get(q) != want[q])
        accepted = earlier + receiver_stats(hec)["accepted"]["hec"]
        print(f"reference: {rows:.0f} rows routed; the SIEM accepted {accepted} "
              f"({accepted - rows:+.0f}: duplicates after SIGKILLs and retries)")
        print("drift: none, every query equals the uninterrupted run" if not drift
              else f"drift in {len(drift)} queries: {', '.join(drift)}")
        return 0 if not drift and accepted >= rows else 1
    finally:
        for p in procs:
            if p is not None and p.poll() is None:
                stop(p, signal.SIGTERM)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
