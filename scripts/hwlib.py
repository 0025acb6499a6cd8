"""What the benchmark and soak scripts share: free ports, hubwatch's /metrics and query
API, a process's resident memory and open descriptors, and the SIEM test receiver."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_config(path, admin_port, input_path, hec=None, out=None, follow=True):
    """hubwatch.toml for a followed (or read-once) copy of the AML sample with the default
    pack, every AML record routed either to the HEC receiver (`hec` = (port, token,
    buffer bytes)) or to the file `out`."""
    text = f"""query_files = ["{REPO}/deploy/config/aml-queries.toml"]
[export]
listen = "127.0.0.1:{admin_port}"
[checkpoint]
dir = "checkpoint"
[[sources]]
type = "file"
name = "aml"
paths = ["{input_path}"]
follow = {"true" if follow else "false"}
"""
    if hec:
        port, token, buffer_bytes = hec
        text += f"""[[sinks]]
type = "splunk_hec"
name = "splunk"
endpoint = "http://127.0.0.1:{port}"
token = "{token}"
buffer = {{ max_bytes = {buffer_bytes} }}
"""
    else:
        text += f"""[[sinks]]
type = "file"
name = "rows"
path = "{out}"
"""
    text += f"""[[routes]]
name = "aml"
sinks = ["{'splunk' if hec else 'rows'}"]
kql = "union Aml*"
"""
    with open(path, "w") as f:
        f.write(text)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metrics(addr):
    """Every sample of /metrics, by its series (name and labels)."""
    text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def total(values, prefix):
    return sum(v for k, v in values.items() if k.startswith(prefix))


def queries(addr):
    """Every query's current rows, by query name."""
    listed = json.loads(urllib.request.urlopen(f"http://{addr}/api/v1/queries", timeout=30).read())
    return {q["name"]: q.get("rows") for q in listed}


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for_admin(proc, addr, log, limit=30):
    """Until hubwatch's admin server answers; exits with its log if it dies first."""
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"hubwatch exited with {proc.returncode}:\n{open(log).read()}")
        try:
            metrics(addr)
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"hubwatch did not serve {addr} within {limit} s")


def hec_receiver(port, out_dir, token):
    """The HEC test receiver (tests/peers/siem_receiver.py), counting events; returns once
    it listens."""
    os.makedirs(out_dir, exist_ok=True)
    rx = subprocess.Popen([sys.executable, os.path.join(REPO, "tests/peers/siem_receiver.py"),
                           "--port", str(port), "--out", out_dir, "--hec-token", token, "--count-only"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    rx.stdout.readline()
    return rx


def receiver_stats(port):
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=10).read())
