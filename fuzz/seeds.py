#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/corpus/<target>/) from the repository's own
fixtures, query packs and configurations, plus hand-made inputs for the quirks and the
AMQP encodings. Run it again after those change; the files it writes are committed."""

import hashlib
import json
import pathlib
import re
import struct
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


# body: the first byte is the mode (bit 0: an enqueued time); then the body.
bodies = (ROOT / "tests/fixtures/aml/bodies.ndjson").read_bytes().splitlines()
for line in bodies[:12]:
    if len(line) < 20000:
        put("body", b"\x00" + line)
        put("body", b"\x01" + line)
QUIRKS = [
    '{"records":[{"time":"2024-05-20T10:00:00Z","category":"AmlComputeJobEvent","properties":"{\\"JobName\\":\\"j\\"}"}]}',
    '{"time":"2024-05-20T10:00:00.1234567Z","category":"AmlComputeClusterEvent","properties":{"ClusterName":"c","CurrentNodeCount":"3"}}',
    '[{"time":"5/20/2024 10:00:00 AM","category":"AmlComputeJobEvent"}]',
    '{"records":[{"time":"2024-05-20T10:00:00Z","resourceId":"/SUBSCRIPTIONS/X/RESOURCEGROUPS/G/PROVIDERS/MICROSOFT.MACHINELEARNINGSERVICES/WORKSPACES/W","metricName":"CpuUtilization","total":1.5,"count":2,"minimum":0,"maximum":1,"average":0.75,"timeGrain":"PT1M"}]}',
    '{"records":[{"time":"2024-05-20T10:00:00Z","operationName":"MICROSOFT.MACHINELEARNINGSERVICES/WORKSPACES/WRITE","category":"Administrative","resultType":"Success","level":"Information","properties":{"eventCategory":"Administrative"}}]}',
    '{"records":[1,"x",null,{"time":"2024-13-45T99:00:00Z"}],"records":[]}',
    '\ufeff{"records":[{"Time":"2024-05-20T10:00:00Z","Category":"AmlComputeJobEvent","Properties":{"JobName":"a","jobname":"b"}}]}',
    '{"records":[{"time":"2024-05-20T10:00:00Z","category":"AmlComputeJobEvent","properties":{"n":1e400,"m":-0.0,"k":18446744073709551616}}]}',
]
for q in QUIRKS:
    put("body", b"\x00" + q.encode())
    put("body", b"\x01" + q.encode())

# kql: every query of the packs, the golden and breadth sets, and the README's cheat-sheet
# lines.
for f in [ROOT / "deploy/config/aml-queries.toml", *sorted((ROOT / "deploy/config").glob("*.toml"))]:
    doc = tomllib.loads(f.read_text())
    for q in doc.get("queries", []):
        if "kql" in q:
            put("kql", q["kql"])
for name in ["queries.json", "breadth_queries.json"]:
    for q in json.loads((ROOT / "tests/expected" / name).read_text()):
        put("kql", q["kql"])
# The query gallery's, and the cases hubwatch is compared with Kusto.Language on.
for f in sorted((ROOT / "tests/fixtures/gallery").glob("*.kql")):
    put("kql", f.read_text())
KQL_SHAPES = [
    'let f = (x: long, n: timespan = 1d) { x * 2 };\nlet t = (k: string) { AmlComputeJobEvent | where EventType == k };\nt("JobFailed") | extend y = f(1)',
    'AmlComputeJobEvent | join kind=fullouter (AmlComputeJobEvent | summarize n = count() by JobId) on $left.JobId == $right.JobId | summarize count() by ClusterName',
    'AmlComputeClusterEvent | lookup (AmlComputeClusterEvent | summarize arg_max(TimeGenerated, VmSize) by ClusterName) on ClusterName',
    'union kind=inner withsource=S AmlComputeClusterEvent, (AzureMetrics | where Total > 0) | where * has "x"',
    'search in (AmlComputeClusterEvent, AzureActivity) "gpu" | summarize count() by $table',
    'AmlComputeClusterEvent | parse kind=regex flags=i _ResourceId with ".*?/WORKSPACES/" ws:string "/(.*)" rest | take 3',
    'AmlComputeClusterEvent | mv-expand with_itemindex=i p = split(VmSize, "_") to typeof(string) limit 3 | summarize percentiles(CoreCount, 5, 95), make_bag(bag_pack(p, i)) by i',
    'AmlComputeClusterEvent | take 5 | summarize count() by ClusterName | summarize sum(count_)',
]
for q in KQL_SHAPES:
    put("kql", q)
readme = (ROOT / "README.md").read_text()
for block in re.findall(r"```kusto\n(.*?)```", readme, re.S):
    for query in block.split("\n\n"):
        put("kql", query)

# config: the shipped configurations.
for f in sorted((ROOT / "deploy/config").glob("*.toml")):
    put("config", f.read_text())
put("config", '[export]\nlisten = "127.0.0.1:0"\n[export.tls]\ncert_file = "c"\nkey_file = "k"\nclient_auth_type = "VerifyClientCertIfGiven"\nclient_ca_file = "${FUZZ_SECRET}"\n[export.basic_auth_users]\nu = "${FUZZ_SECRET}"\n')


# amqp: the first byte picks the format (0: none, 1: 0, 2: batch); then an AMQP message.
def described(code, value):
    return b"\x00\x53" + bytes([code]) + value


def binary(b):
    return (b"\xa0" + bytes([len(b)]) + b) if len(b) < 256 else (b"\xb0" + struct.pack(">I", len(b)) + b)


def sym(s):
    return b"\xa3" + bytes([len(s)]) + s.encode()


def string(s):
    return b"\xa1" + bytes([len(s)]) + s.encode()


def map8(pairs):
    body = b"".join(k + v for k, v in pairs)
    return b"\xc1" + bytes([len(body) + 1, 2 * len(pairs)]) + body


def message(payload, key=None):
    out = b""
    if key is not None:
        out += described(0x72, map8([(sym("x-opt-partition-key"), string(key))]))
    out += described(0x75, binary(payload))
    return out


single = message(bodies[0][:200], key="k1")
put("amqp", b"\x00" + single)
put("amqp", b"\x01" + message(b'{"records":[]}'))
inner = [message(b'{"records":[1]}'), message(b'{"records":[2]}', key="inner")]
batch = described(0x72, map8([(sym("x-opt-partition-key"), string("outer"))])) + b"".join(
    described(0x75, binary(m)) for m in inner
)
put("amqp", b"\x02" + batch)
put("amqp", b"\x00amqp.annotation.x-opt-offset > '100'")
put("amqp", b"\x00amqp.annotation.x-opt-enqueued-time >= '1700000000000'")
put("amqp", b"\x00insights/ConsumerGroups/$Default/Partitions/0")
put("amqp", b"\x00insights/$management")

# encoders: arbitrary bytes become rows; a few to start from.
put("encoders", bytes(range(256)))
put("encoders", b"AmlComputeJobEvent\x00failed jobs\x00host\x00eh\x000\x00" * 4)
