"""The official Elasticsearch Python client (`elasticsearch` 8.15.1 in .venv, installed by
scripts/setup-test-deps.sh) against the test receiver (tests/peers/siem_receiver.py), for
tests/siem_receivers.rs. Prints one JSON document with what was sent and what the client
and its bulk helpers reported, per phase:
  info:        es.info() (the client checks the X-Elastic-Product header on it)
  stream:      helpers.streaming_bulk of N `create`s into a data stream (logs-*-*)
  dated:       helpers.bulk of N `create`s with ids into a dated index
  poison:      with the receiver's reject marker set, one good create, one holding the
               marker and one duplicate id, raise_on_error=False: the helper's error list
  retry:       the receiver answers the next 2 requests 503; the client's transport retries
  item_retry:  the receiver fails the next item with 429; streaming_bulk retries that item
  wrong_key:   a client with another API key: AuthenticationException (401)

Usage: python es_client.py '{"url": "http://127.0.0.1:PORT", "api_key": K, "n": N, "chunk": C}'
"""

import json
import sys
import urllib.request

from elasticsearch import AuthenticationException, Elasticsearch, helpers

STREAM = "logs-azure.activity-hubwatch"
DATED = "hubwatch-2024.05.01"


def control(url, faults):
    """Sets the receiver's faults (POST /_control), not through the client."""
    request = urllib.request.Request(
        url + "/_control", data=json.dumps(faults).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def doc(i, text="row"):
    return {
        "@timestamp": f"2024-05-01T12:00:{i % 60:02d}.{i % 1000:03d}Z",
        "i": i,
        "OperationName": "MICROSOFT.RESOURCES/DEPLOYMENTS/WRITE",
        "properties": {"text": f"{text} {i}", "unicode": "caf\u00e9 \u2713", "level": 4},
    }


def main():
    cfg = json.loads(sys.argv[1])
    url, n, chunk = cfg["url"], cfg["n"], cfg["chunk"]
    es = Elasticsearch(url, api_key=cfg["api_key"], request_timeout=10)
    out = {"stream_index": STREAM, "dated_index": DATED, "n": n}

    version = es.info()["version"]
    out["info"] = {"number": version["number"], "build_flavor": version["build_flavor"]}

    stream = [{"_op_type": "create", "_index": STREAM, "_source": doc(i)} for i in range(n)]
    results = list(helpers.streaming_bulk(es, stream, chunk_size=chunk))
    out["stream"] = {
        "ok": [ok for ok, _ in results],
        "items": [item["create"] for _, item in results],
        "sent": [a["_source"] for a in stream],
    }

    dated = [{"_op_type": "create", "_index": DATED, "_id": f"doc-{i}", "_source": doc(i)} for i in range(n)]
    success, errors = helpers.bulk(es, dated, chunk_size=chunk)
    out["dated"] = {"success": success, "errors": errors, "sent": [a["_source"] for a in dated]}

    control(url, {"reject_marker": "POISON"})
    poison = [
        {"_op_type": "create", "_index": DATED, "_id": "fresh", "_source": doc(5000)},
        {"_op_type": "create", "_index": DATED, "_id": "poisoned", "_source": doc(5001, "POISON")},
        {"_op_type": "create", "_index": DATED, "_id": "doc-0", "_source": doc(0)},
    ]
    success, errors = helpers.bulk(es, poison, raise_on_error=False)
    out["poison"] = {"success": success, "errors": errors}
    control(url, {})

    control(url, {"status": 503, "count": 2})
    success, errors = helpers.bulk(es, [{"_op_type": "create", "_index": DATED, "_id": "after-503", "_source": doc(6000)}])
    out["retry"] = {"success": success, "errors": errors}

    control(url, {"item_status": 429, "item_count": 1})
    results = list(helpers.streaming_bulk(
        es, [{"_op_type": "create", "_index": DATED, "_id": "after-429", "_source": doc(7000)}],
        max_retries=2, initial_backoff=0.05, raise_on_error=False,  # the helper retries 429 items only then
    ))
    out["item_retry"] = {"ok": [ok for ok, _ in results], "items": [item["create"] for _, item in results]}
    control(url, {})

    try:
        Elasticsearch(url, api_key="not-" + cfg["api_key"], request_timeout=10).info()
        out["wrong_key"] = {"raised": None}
    except AuthenticationException as e:
        out["wrong_key"] = {"raised": type(e).__name__, "status": e.meta.status, "type": e.body["error"]["type"]}

    print(json.dumps(out))


if __name__ == "__main__":
    main()
