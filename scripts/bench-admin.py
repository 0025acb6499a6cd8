#!/usr/bin/env python3
"""What /metrics scrapes cost hubwatch, before and after the admin hardening, in one run.

For each binary given (e.g. the base build and the new one):
  ingest: replays the golden fixture repeated R times with the default Azure ML pack, with
          0 scrapers and with K concurrent scrapers (closed loop: each one GETs /metrics again
          as soon as it has read the answer, keep-alive; or paced, one scrape per second each),
          and prints bodies/s (from "admin server listening" to "all sources finished").
  big:    1M series (`summarize n = count() by ClusterName, JobName`): ingests, then times
          renders of /metrics (plain and gzip), their size, and RSS after N scrapes (one at a
          time, each a new render; then N concurrent).

usage: scripts/bench-admin.py ingest BIN... [--repeat R] [--scrapers K] [--paced]
       scripts/bench-admin.py big BIN... [--scrapes N]
       scripts/bench-admin.py bigingest BIN...

BIN is a hubwatch binary (e.g. target/release/hubwatch, and a build of another commit).
The 1 M-series input is generated on first use (HW_BENCH_DIR, default a temporary folder).
"""

import argparse
import asyncio
import gzip
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = f"{REPO}/tests/fixtures/aml/bodies.ndjson"
PACK = f"{REPO}/deploy/config/aml-queries.toml"
DATA = os.environ.get("HW_BENCH_DIR") or tempfile.gettempdir()
BIG = os.path.join(DATA, "hubwatch-series-1m.ndjson")


def ensure_big(n=1_000_000, per=20):
    """Bodies of AmlComputeJobEvent records, one distinct JobName per record: n series for
    a `summarize ... by ClusterName, JobName` query (one second of event time per 1000)."""
    if os.path.exists(BIG):
        return
    base = 1_700_000_000
    tmp = BIG + ".part"
    with open(tmp, "w") as f:
        for i in range(0, n, per):
            recs = []
            for j in range(i, min(n, i + per)):
                ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + j // 1000))
                recs.append(
                    '{"time":"%s.0000000Z","category":"AmlComputeJobEvent",'
                    '"resourceId":"/subscriptions/s/resourceGroups/g/providers/'
                    'Microsoft.MachineLearningServices/workspaces/w%d",'
                    '"properties":{"JobName":"job-%07d","ClusterName":"c%d",'
                    '"EventType":"JobSucceeded"}}' % (ts, j % 7, j, j % 13)
                )
            f.write('{"records":[' + ",".join(recs) + "]}\n")
    os.rename(tmp, BIG)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Hubwatch:
    def __init__(self, binary, config_text, workdir):
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        cfg = os.path.join(workdir, "hubwatch.toml")
        with open(cfg, "w") as f:
            f.write(config_text.replace("PORT", str(self.port)))
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [binary, "run", "--config", cfg],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "info"},
            text=True,
        )
        self.events = {}
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            now = time.monotonic()
            with self.cond:
                self.lines.append(line)
                for key in ("admin server listening", "all sources finished"):
                    if key in line and key not in self.events:
                        self.events[key] = now
                self.cond.notify_all()

    def wait(self, key, timeout=600):
        with self.cond:
            ok = self.cond.wait_for(lambda: key in self.events, timeout)
        if not ok:
            raise RuntimeError(f"no '{key}' within {timeout}s:\n" + "".join(self.lines[-20:]))
        return self.events[key]

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0

    def cpu_secs(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    def thread_cpu(self):
        """CPU seconds of the engine thread and of all the others."""
        engine = other = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
            try:
                with open(f"/proc/{self.proc.pid}/task/{tid}/stat") as f:
                    raw = f.read()
            except OSError:
                continue
            comm = raw[raw.index("(") + 1 : raw.rindex(")")]
            parts = raw.rsplit(")", 1)[1].split()
            cpu = (int(parts[11]) + int(parts[12])) / tick
            if comm.startswith("hubwatch-engine"):
                engine += cpu
            else:
                other += cpu
        return engine, other

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def get(addr, path, gzip_ok=False, timeout=120):
    """One GET on a fresh connection: (status, headers, body bytes, seconds)."""
    host, port = addr.split(":")
    t0 = time.monotonic()
    s = socket.create_connection((host, int(port)), timeout=timeout)
    extra = "Accept-Encoding: gzip\r\n" if gzip_ok else ""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode())
    chunks = []
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        chunks.append(b)
    s.close()
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    if "chunked" in headers.get("transfer-encoding", ""):
        out, rest = [], body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out.append(rest[:n])
            rest = rest[n + 2 :]
        body = b"".join(out)
    return status, headers, body, time.monotonic() - t0


async def scraper(addr, stop, stats, paced, gzip_ok):
    host, port = addr.split(":")
    req = (
        "GET /metrics HTTP/1.1\r\nHost: x\r\n"
        + ("Accept-Encoding: gzip\r\n" if gzip_ok else "")
        + "\r\n"
    ).encode()
    reader = writer = None
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(req)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            m = re.search(rb"content-length: *(\d+)", head, re.I)
            if m:
                await reader.readexactly(int(m.group(1)))
            else:  # chunked
                while True:
                    size = int((await reader.readline()).strip(), 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            stats["ok"] += 1
            stats["latency"] += time.monotonic() - t0
        except Exception:
            stats["errors"] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.05)
        if paced:
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    if writer is not None:
        writer.close()


def run_scrapers(addr, k, paced, gzip_ok, stop, stats):
    async def main():
        ev = asyncio.Event()

        async def watch():
            while not stop.is_set():
                await asyncio.sleep(0.05)
            ev.set()

        class S:
            def is_set(self):
                return ev.is_set()

        tasks = [asyncio.create_task(scraper(addr, S(), stats, paced, gzip_ok)) for _ in range(k)]
        await watch()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def repeated_fixture(workdir, repeat):
    """The golden fixture `repeat` times in one file (made once), and its body count."""
    data = os.path.join(workdir, f"input-{repeat}.ndjson")
    if not os.path.exists(data):
        with open(FIXTURE, "rb") as f:
            one = f.read()
        with open(data, "wb") as f:
            for _ in range(repeat):
                f.write(one)
    return data, sum(1 for l in open(data, "rb") if l.strip())


def ingest(binary, repeat, scrapers, paced, workdir):
    data, bodies = repeated_fixture(workdir, repeat)
    config = (
        f'query_files = ["{PACK}"]\n[export]\nlisten = "127.0.0.1:PORT"\n'
        f'[[sources]]\ntype = "file"\nname = "replay"\npaths = ["{data}"]\n'
    )
    hw = Hubwatch(binary, config, workdir)
    stats = {"ok": 0, "errors": 0, "latency": 0.0}
    stop = threading.Event()
    t = None
    t0c = time.process_time()
    if scrapers:
        t = threading.Thread(target=run_scrapers, args=(hw.addr, scrapers, paced, True, stop, stats))
    start = hw.wait("admin server listening")
    if t:
        t.start()
    end = hw.wait("all sources finished")
    stop.set()
    if t:
        t.join()
    cpu = hw.cpu_secs()
    engine_cpu, other_cpu = hw.thread_cpu()
    client_cpu = time.process_time() - t0c
    rss = hw.rss_mib()
    hw.stop()
    secs = end - start
    return {
        "bodies/s": bodies / secs,
        "secs": secs,
        "scrapes": stats["ok"],
        "errors": stats["errors"],
        "mean_latency_ms": 1000 * stats["latency"] / max(1, stats["ok"]),
        "hubwatch_cpu_s": cpu,
        "engine_thread_cpu_s": engine_cpu,
        "other_threads_cpu_s": other_cpu,
        "client_cpu_s": client_cpu,
        "rss_mib": rss,
    }


def big(binary, scrapes, workdir):
    config = (
        '[export]\nlisten = "127.0.0.1:PORT"\n[limits]\nmax_series = 1100000\n'
        f'[[sources]]\ntype = "file"\nname = "big"\npaths = ["{BIG}"]\n'
        '[[queries]]\nname = "big"\nkql = "AmlComputeJobEvent | summarize n = count() by ClusterName, JobName"\n'
    )
    hw = Hubwatch(binary, config, workdir)
    hw.wait("all sources finished", 1200)
    out = {"rss_before_mib": hw.rss_mib()}
    # Renders one at a time (1.2 s apart: past the 1 s reuse), plain and gzip in turn.
    plain, zipped = [], []
    # 25 s apart: past any reuse (1 s, or 4x a render of about 5 s), so each is a render.
    for i in range(4):
        if i:
            time.sleep(25)
        status, headers, body, secs = get(hw.addr, "/metrics", gzip_ok=bool(i % 2))
        assert status == 200, (status, body[:200])
        enc = headers.get("content-encoding", "identity")
        if i % 2:
            zipped.append((secs, len(body), enc))
        else:
            plain.append((secs, len(body), enc))
    out["plain_s"] = [round(p[0], 3) for p in plain]
    out["plain_bytes"] = plain[-1][1]
    out["gzip_s"] = [round(z[0], 3) for z in zipped]
    out["gzip_bytes"] = zipped[-1][1]
    out["gzip_encoding"] = zipped[-1][2]
    rss = [hw.rss_mib()]
    for i in range(scrapes):
        get(hw.addr, "/metrics", gzip_ok=True)
        time.sleep(1.05)
        rss.append(hw.rss_mib())
    out["rss_after_sequential_mib"] = rss[-1]
    out["rss_max_sequential_mib"] = max(rss)
    # N at once.
    threads, lat = [], []

    def one():
        t0 = time.monotonic()
        get(hw.addr, "/metrics", gzip_ok=True, timeout=600)
        lat.append(time.monotonic() - t0)

    peak = [0.0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], hw.rss_mib())
            time.sleep(0.05)

    st = threading.Thread(target=sample)
    st.start()
    t0 = time.monotonic()
    for _ in range(scrapes):
        th = threading.Thread(target=one)
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    done.set()
    st.join()
    out["concurrent_wall_s"] = round(time.monotonic() - t0, 2)
    out["concurrent_max_latency_s"] = round(max(lat), 2)
    out["rss_peak_concurrent_mib"] = peak[0]
    time.sleep(2)
    out["rss_after_concurrent_mib"] = hw.rss_mib()
    hw.stop()
    return out


def big_ingest(binary, repeat, scrapers, paced, workdir):
    """Ingestion while 1M series are held: the state is restored from a snapshot, then the
    golden fixture (repeated) is replayed, with and without scrapers."""
    import shutil
    name = os.path.basename(binary)
    template = os.path.join(workdir, f"cp-template-{name}")
    big_src = f'[[sources]]\ntype = "file"\nname = "big"\npaths = ["{BIG}"]\n'
    query = '[[queries]]\nname = "big"\nkql = "AmlComputeJobEvent | summarize n = count() by ClusterName, JobName"\n'
    head = '[export]\nlisten = "127.0.0.1:PORT"\n[limits]\nmax_series = 1100000\n'
    if not os.path.exists(template):
        os.makedirs(template)
        hw = Hubwatch(binary, head + f'[checkpoint]\ndir = "{template}"\n' + big_src + query, workdir)
        hw.wait("all sources finished", 1200)
        hw.stop()
    data, bodies = repeated_fixture(workdir, repeat)
    cp = os.path.join(workdir, "cp-run")
    shutil.rmtree(cp, ignore_errors=True)
    shutil.copytree(template, cp)
    config = (head + f'[checkpoint]\ndir = "{cp}"\n' + big_src
              + f'[[sources]]\ntype = "file"\nname = "replay"\npaths = ["{data}"]\n' + query)
    hw = Hubwatch(binary, config, workdir)
    stats = {"ok": 0, "errors": 0, "latency": 0.0}
    stop = threading.Event()
    t = None
    start = hw.wait("admin server listening", 600)
    if scrapers:
        t = threading.Thread(target=run_scrapers, args=(hw.addr, scrapers, paced, True, stop, stats))
        t.start()
    unfinished = False
    try:
        end = hw.wait("all sources finished", 300)
    except RuntimeError:
        end, unfinished = time.monotonic(), True
    stop.set()
    if t:
        t.join()
    cpu = hw.cpu_secs()
    engine_cpu, other_cpu = hw.thread_cpu()
    rss = hw.rss_mib()
    renders = None
    if not unfinished:
        try:
            _, _, body, _ = get(hw.addr, "/metrics", timeout=60)
            for line in body.decode().splitlines():
                if line.startswith('hubwatch_admin_renders_total{what="metrics"}'):
                    renders = float(line.split()[-1])
        except Exception:
            pass
    hw.stop()
    secs = end - start
    return {
        "bodies/s": bodies / secs,
        "unfinished_after_300s(bodies/s is an upper bound)": unfinished,
        "engine_thread_cpu_s": engine_cpu,
        "other_threads_cpu_s": other_cpu,
        "metrics_renders": renders,
        "secs": secs,
        "scrapes": stats["ok"],
        "errors": stats["errors"],
        "mean_latency_ms": 1000 * stats["latency"] / max(1, stats["ok"]),
        "hubwatch_cpu_s": cpu,
        "rss_mib": rss,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["ingest", "big", "bigingest"])
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--scrapers", type=int, default=200)
    ap.add_argument("--paced", action="store_true")
    ap.add_argument("--scrapes", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="hw-admin-bench-")
    if args.what in ("big", "bigingest"):
        ensure_big()
    for r in range(args.rounds):
        for b in args.binaries:
            name = os.path.basename(b)
            if args.what in ("ingest", "bigingest"):
                for k in (0, args.scrapers):
                    f = ingest if args.what == "ingest" else big_ingest
                    res = f(b, args.repeat, k, args.paced, workdir)
                    print(f"round {r} {name} scrapers={k}{' paced' if args.paced else ''}: "
                          + ", ".join(f"{k2}={v:.3g}" if isinstance(v, float) else f"{k2}={v}" for k2, v in res.items()),
                          flush=True)
            else:
                res = big(b, args.scrapes, workdir)
                print(f"round {r} {name}: {res}", flush=True)


if __name__ == "__main__":
    main()
