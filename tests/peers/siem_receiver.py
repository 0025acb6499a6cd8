"""Test receiver for the SIEM sinks: Splunk HTTP Event Collector, the Elasticsearch _bulk
API and a generic HTTP endpoint, on one loopback port. Written from the published API
descriptions (neither Splunk nor Elasticsearch can be installed here) and checked against
the vendors' own clients in tests/siem_receivers.rs; stdlib only, Python 3.11.

Usage: python3 siem_receiver.py --port P --out DIR [--hec-token T] [--hec-ack]
         [--ack-delay-ms N] [--es-api-key K] [--es-basic USER:PASS] [--count-only]
         [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]

Prints `listening <port>` once it accepts connections. Accepted items are appended, one
JSON object a line and flushed after each request, to DIR/hec.ndjson ({"endpoint",
"channel", "ackId", "event"}), DIR/es.ndjson ({"index", "op", "id", "doc"}) and
DIR/http.ndjson ({"path", "headers", "doc"}); each request's method, path, headers and
status go to DIR/requests.ndjson and each ack poll to DIR/acks.ndjson. --count-only
writes none of them and only counts (for throughput runs: HEC events one a line are
counted by their lines, undecoded, so that the receiver takes little of the CPU it
shares with the sender).

Endpoints:
  POST /services/collector[/event[/1.0]]  HEC JSON events, concatenated
  POST /services/collector/raw            HEC raw: one event a line (channel required)
  POST /services/collector/ack            HEC ack poll {"acks": [ids]} (with --hec-ack)
  GET  /services/collector/health         {"text": "HEC is healthy", "code": 17}
  GET|HEAD /                              Elasticsearch 8.15.0 cluster info
  POST|PUT /_bulk, /{index}/_bulk         Elasticsearch bulk (index, create, update, delete)
  POST /http/<anything>                   generic: NDJSON or a JSON array, answered {}
  POST /_control                          fault injection, replaces the faults (see below)
  GET  /_stats                            counters

Faults (POST /_control with a JSON object; every POST replaces all faults, {} clears them).
"Data requests" are HEC event and raw posts, ES bulk requests and generic HTTP posts:
  {"status": 503, "count": 3, "retry_after": 1}  the next `count` (default 1) data requests
      are answered `status` with the API's error body (and Retry-After, if given)
  {"close": 2}               the next 2 data requests are read, then the connection closed
  {"delay_ms": 500}          every data request waits this long before it is handled
  {"reject_marker": "X"}     HEC: the first event whose JSON text holds X fails the request
      (400 code 6 with its invalid-event-number; the events before it are accepted); ES:
      an item whose source holds X fails with 400 mapper_parsing_exception; HTTP: 400
  {"item_status": 429, "item_count": 5}  ES: the next 5 items fail with that status
"""

import argparse
import base64
import fnmatch
import functools
import gzip
import json
import os
import re
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HEC_EVENT_PATHS = {"/services/collector", "/services/collector/event", "/services/collector/event/1.0"}
HEC_HEALTH_PATHS = {"/services/collector/health", "/services/collector/health/1.0"}
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
WHITESPACE = re.compile(r"\s*")
# Elasticsearch 8's built-in index templates make these names data streams.
DATA_STREAM_PATTERNS = ("logs-*-*", "metrics-*-*", "synthetics-*-*", "traces-*-*")
# Characters an Elasticsearch index name may not hold.
INDEX_FORBIDDEN = set('\\/*?"<>| ,#:')
MAX_BODY = 100 * 1024 * 1024  # Elasticsearch's default http.max_content_length
FAULT_KEYS = {"status", "count", "retry_after", "close", "delay_ms", "reject_marker", "item_status", "item_count"}
ES_INFO = {
    "name": "hubwatch-test",
    "cluster_name": "hubwatch-test",
    "cluster_uuid": "hUbWaTcHtEsTcLuStEr0001",
    "version": {
        "number": "8.15.0",
        "build_flavor": "default",
        "build_type": "docker",
        "build_hash": "0000000000000000000000000000000000000000",
        "build_date": "2024-08-05T10:05:34.233336849Z",
        "build_snapshot": False,
        "lucene_version": "9.11.1",
        "minimum_wire_compatibility_version": "7.17.0",
        "minimum_index_compatibility_version": "7.0.0",
    },
    "tagline": "You Know, for Search",
}
# Error types of injected whole-request and item failures, by status.
ES_FAULT_TYPES = {429: "es_rejected_execution_exception", 503: "unavailable_shards_exception"}


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def es_error(status, etype, reason, **extra):
    """An Elasticsearch error body: the cause, repeated as the root cause."""
    cause = {"type": etype, "reason": reason, **extra}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def hec_reply(text, code, **extra):
    return {"text": text, "code": code, **extra}


class HecError(Exception):
    """A refused HEC request: HTTP status and the {"text", "code"} body."""

    def __init__(self, status, text, code, **extra):
        super().__init__(text)
        self.status, self.body = status, hec_reply(text, code, **extra)


class State:
    """Everything the request threads share, behind one lock: the output files, the faults,
    the counters, the HEC ack channels and the ids each ES index holds. One lock because
    requests are few and short next to the I/O; it also keeps each request's lines
    together in the output files."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.files = {}
        if not args.count_only:
            for name in ("hec", "es", "http", "requests", "acks"):
                self.files[name] = open(os.path.join(args.out, f"{name}.ndjson"), "a", encoding="utf-8")
        self.faults = {}
        self.channels = {}  # channel -> {"next": ack id, "pending": {ack id: ready at}}
        self.indices = {}  # index -> {explicit _id: version}
        self.seq_no = {}  # index -> next _seq_no
        self.backing = {}  # data stream -> its backing index
        self.stats = {
            "connections": 0,
            "requests": {k: 0 for k in ("hec_event", "hec_raw", "hec_ack", "hec_health", "es_info", "es_bulk", "http", "control", "other")},
            "accepted": {"hec": 0, "es": 0, "http": 0},
            "rejected_requests": {"hec": 0, "es": 0, "http": 0},
            "es_item_errors": 0,
            "faults": {"status": 0, "close": 0, "delayed": 0, "items": 0},
            "auth_failures": 0,
            "gzip_requests": 0,
            "bytes": 0,
            "ack_polls": 0,
            "acks_issued": 0,
            "acks_confirmed": 0,
        }

    def bump(self, *path, by=1):
        with self.lock:
            d = self.stats
            for key in path[:-1]:
                d = d[key]
            d[path[-1]] += by

    def write(self, name, records):
        """Appends records to DIR/<name>.ndjson and flushes, so a test can read them at once."""
        if self.args.count_only or not records:
            return
        with self.lock:
            f = self.files[name]
            for r in records:
                f.write(dumps(r) + "\n")
            f.flush()

    def take_fault(self):
        """The fault a data request meets: (delay seconds, "close" | (status, retry after) | None)."""
        with self.lock:
            f = self.faults
            delay = f.get("delay_ms", 0) / 1000
            if delay:
                self.stats["faults"]["delayed"] += 1
            if f.get("close", 0) > 0:
                f["close"] -= 1
                self.stats["faults"]["close"] += 1
                return delay, "close"
            if f.get("status") and f.get("count", 1) > 0:
                f["count"] = f.get("count", 1) - 1
                self.stats["faults"]["status"] += 1
                return delay, (f["status"], f.get("retry_after"))
            return delay, None

    def take_item_fault(self):
        """The status an ES item is failed with by {"item_status"}, or None."""
        with self.lock:
            f = self.faults
            if f.get("item_status") and f.get("item_count", 1) > 0:
                f["item_count"] = f.get("item_count", 1) - 1
                self.stats["faults"]["items"] += 1
                return f["item_status"]
            return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    server_version = "siem-receiver/1"
    timeout = 120  # an idle keep-alive connection is closed after this
    # Head and body go out in two writes: without TCP_NODELAY the body would wait for the
    # client's delayed ACK of the head (~40 ms a request on keep-alive connections).
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        self.server.state.bump("connections")

    def log_message(self, format, *args):  # quiet: the tests read the files and /_stats
        pass

    def do_any(self):
        self.handle_request(self.command)

    do_GET = do_HEAD = do_POST = do_PUT = do_any

    # ---- plumbing ----------------------------------------------------------------------

    @property
    def state(self):
        return self.server.state

    def read_body(self):
        """The request body as sent (Content-Length or chunked), or None when too large."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts, size = [], 0
            while True:
                n = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                size += n
                parts.append(self.rfile.read(n))
                self.rfile.readline()
                if size > MAX_BODY:
                    self.close_connection = True
                    return None
            return b"".join(parts)
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            self.close_connection = True  # the body is left unread
            return None
        return self.rfile.read(n) if n else b""

    def reply(self, status, obj, api, headers=()):
        body = b"" if obj is None else dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        if api == "es":  # the official clients refuse a server without it
            self.send_header("X-Elastic-Product", "Elasticsearch")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.log_request_line(status)

    def log_request_line(self, status):
        """One line of DIR/requests.ndjson; status null for a request dropped by {"close"}."""
        self.state.write("requests", [{
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "status": status,
        }])

    def handle_request(self, method):
        url = urlsplit(self.path)
        path, query = url.path, {k: v[-1] for k, v in parse_qs(url.query).items()}
        api = self.api_of(path)
        raw = self.read_body()
        if raw is None:
            too_large = {
                "hec": {"text": "Request body too large"},  # no HEC code known for it
                "es": es_error(413, "content_too_long_exception", "request body is too large"),
            }
            return self.reply(413, too_large.get(api, {"error": "request body is too large"}), api)
        self.state.bump("bytes", by=len(raw))
        body = raw
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            self.state.bump("gzip_requests")
            try:
                body = gzip.decompress(raw)
            except (OSError, EOFError):
                bad = {
                    "hec": hec_reply("Invalid data format", 6, **{"invalid-event-number": 0}),
                    "es": es_error(400, "illegal_argument_exception", "the gzip request body could not be read"),
                }
                return self.reply(400, bad.get(api, {"error": "bad gzip body"}), api)
        if path == "/_control" and method == "POST":
            return self.control(body)
        if path == "/_stats" and method == "GET":
            self.state.bump("requests", "control")
            with self.state.lock:
                stats = json.loads(json.dumps(self.state.stats))
            return self.reply(200, stats, None)
        if api == "hec":
            return self.hec(method, path, query, body)
        if api == "es":
            return self.es(method, path, query, body)
        if api == "http" and method == "POST":
            return self.generic(body)
        self.state.bump("requests", "other")
        return self.reply(404, {"error": f"no handler found for uri [{self.path}] and method [{method}]"}, api)

    @staticmethod
    def api_of(path):
        if path.startswith("/services/collector"):
            return "hec"
        if path.startswith("/http/") or path == "/http":
            return "http"
        if path == "/" or path == "/_bulk" or path.endswith("/_bulk"):
            return "es"
        return None

    def data_fault(self, api):
        """Applies the faults a data request meets; True when it has been answered (or dropped)."""
        delay, fault = self.state.take_fault()
        if delay:
            time.sleep(delay)
        if fault == "close":
            self.close_connection = True  # read, never answered
            self.log_request_line(None)
            return True
        if fault:
            status, retry_after = fault
            headers = [("Retry-After", str(retry_after))] if retry_after is not None else []
            if api == "hec":
                body = hec_reply("Server is busy", 9) if status in (429, 503) else hec_reply("Internal server error", 8)
            elif api == "es":
                etype = ES_FAULT_TYPES.get(status, "status_exception")
                body = es_error(status, etype, f"injected fault: status {status}")
            else:
                body = {"error": f"injected fault: status {status}"}
            self.reply(status, body, api, headers)
            return True
        return False

    def control(self, body):
        self.state.bump("requests", "control")
        try:
            faults = json.loads(body or b"{}")
            if not isinstance(faults, dict) or set(faults) - FAULT_KEYS:
                raise ValueError(f"a JSON object with keys among {sorted(FAULT_KEYS)}")
        except ValueError as e:
            return self.reply(400, {"error": str(e)}, None)
        with self.state.lock:
            self.state.faults = dict(faults)
        return self.reply(200, {"ok": True, "faults": faults}, None)

    # ---- Splunk HTTP Event Collector ---------------------------------------------------

    def hec_authorize(self):
        """Raises the HEC refusal for a missing or wrong token (none configured: anything goes)."""
        want = self.state.args.hec_token
        if want is None:
            return
        auth = self.headers.get("Authorization")
        if not auth:
            raise HecError(401, "Token is required", 2)
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "splunk":
            token = value.strip()
        elif scheme.lower() == "basic":  # Splunk takes the token as the password, any user
            try:
                token = base64.b64decode(value).decode().partition(":")[2]
            except ValueError:
                raise HecError(401, "Invalid authorization", 3)
        else:
            raise HecError(401, "Invalid authorization", 3)
        if token != want:
            raise HecError(403, "Invalid token", 4)

    def hec_channel(self, query, required):
        channel = self.headers.get("X-Splunk-Request-Channel") or query.get("channel")
        if channel is None:
            if required:
                raise HecError(400, "Data channel is missing", 10)
            return None
        if not GUID.match(channel):
            raise HecError(400, "Invalid data channel", 11)
        return channel

    def hec(self, method, path, query, body):
        state = self.state
        if path in HEC_HEALTH_PATHS:
            state.bump("requests", "hec_health")
            return self.reply(200, hec_reply("HEC is healthy", 17), "hec")
        kind = "event" if path in HEC_EVENT_PATHS else "raw" if path == "/services/collector/raw" else "ack" if path == "/services/collector/ack" else None
        if kind is None or method != "POST":
            state.bump("requests", "other")
            return self.reply(404 if kind is None else 405, hec_reply("The requested URL was not found on this server.", 404), "hec")
        state.bump("requests", f"hec_{kind}")
        if kind != "ack" and self.data_fault("hec"):
            return
        try:
            self.hec_authorize()
            if kind == "ack":
                return self.hec_ack(query, body)
            ack = state.args.hec_ack
            channel = self.hec_channel(query, required=ack or kind == "raw")
            if kind == "event":
                events, failure = self.hec_parse_events(body)
            else:
                events, failure = self.hec_parse_raw(query, body)
        except HecError as e:
            state.bump("rejected_requests", "hec")
            if e.status in (401, 403):
                state.bump("auth_failures")
            return self.reply(e.status, e.body, "hec")
        # The events before a bad one are indexed, as Splunk does (without an ack id).
        ack_id = None
        if ack and events and not failure:
            ack_id = self.hec_issue_ack(channel)
        state.write("hec", [{"endpoint": path, "channel": channel, "ackId": ack_id, "event": e} for e in events])
        state.bump("accepted", "hec", by=len(events))
        if failure:
            state.bump("rejected_requests", "hec")
            return self.reply(failure.status, failure.body, "hec")
        if not events:
            state.bump("rejected_requests", "hec")
            return self.reply(400, hec_reply("No data", 5), "hec")
        extra = {"ackId": ack_id} if ack else {}
        return self.reply(200, hec_reply("Success", 0, **extra), "hec")

    def hec_parse_events(self, body):
        """The events of a concatenation of JSON objects, up to the first invalid one, and
        that one's refusal (or None). With --count-only the events are counted, not kept."""
        count_only, marker = self.state.args.count_only, self.state.faults.get("reject_marker")
        if count_only and not marker and b"}{" not in body and b"} {" not in body:
            # Throughput runs: one event a line (as hubwatch sends them) is counted by its
            # line, without decoding it; objects side by side on a line (or anything else)
            # are decoded below.
            lines = [l for l in body.splitlines() if l.strip()]
            if lines and all(l.lstrip()[:1] == b"{" and l.rstrip()[-1:] == b"}" for l in lines):
                return [None] * len(lines), None
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            return [], HecError(400, "Invalid data format", 6, **{"invalid-event-number": 0})
        decoder, events, i, n = json.JSONDecoder(), [], 0, len(text)
        while True:
            i = WHITESPACE.match(text, i).end()
            if i >= n:
                return events, None
            try:
                event, end = decoder.raw_decode(text, i)
                refusal = hec_event_error(event)
            except ValueError:
                refusal = (400, "Invalid data format", 6)
            if refusal is None and marker and marker in text[i:end]:
                refusal = (400, "Invalid data format", 6)
            if refusal:
                return events, HecError(*refusal, **{"invalid-event-number": len(events)})
            events.append(None if count_only else event)
            i = end

    def hec_parse_raw(self, query, body):
        """/raw: each non-blank line is an event; metadata comes from the query string."""
        marker = self.state.faults.get("reject_marker")
        meta = {k: query[k] for k in ("host", "source", "sourcetype", "index") if k in query}
        events = []
        for line in body.decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            if marker and marker in line:
                return events, HecError(400, "Invalid data format", 6, **{"invalid-event-number": len(events)})
            events.append({"event": line, **meta})
        return events, None

    def hec_issue_ack(self, channel):
        ready = time.monotonic() + self.state.args.ack_delay_ms / 1000
        with self.state.lock:
            ch = self.state.channels.setdefault(channel, {"next": 0, "pending": {}})
            ack_id = ch["next"]
            ch["next"] += 1
            ch["pending"][ack_id] = ready
            self.state.stats["acks_issued"] += 1
        return ack_id

    def hec_ack(self, query, body):
        """An ack poll: true for each id whose delay has passed; an id reported true is
        forgotten (asked again, it is false), as Splunk does."""
        state = self.state
        if not state.args.hec_ack:
            raise HecError(400, "ACK is disabled", 14)
        channel = self.hec_channel(query, required=True)
        try:
            asked = json.loads(body)["acks"]
            if not isinstance(asked, list) or not all(isinstance(a, int) for a in asked):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise HecError(400, "Invalid data format", 6)
        now, answer = time.monotonic(), {}
        with state.lock:
            state.stats["ack_polls"] += 1
            pending = state.channels.get(channel, {"pending": {}})["pending"]
            for a in asked:
                done = a in pending and pending[a] <= now
                if done:
                    del pending[a]
                    state.stats["acks_confirmed"] += 1
                answer[str(a)] = done
        state.write("acks", [{"channel": channel, "asked": asked, "acks": answer, "at": time.time()}])
        return self.reply(200, {"acks": answer}, "hec")

    # ---- Elasticsearch -----------------------------------------------------------------

    def es_authorize(self):
        """None when allowed, else the 401 to answer (no credentials configured: anything goes)."""
        args = self.state.args
        if args.es_api_key is None and args.es_basic is None:
            return None
        auth = self.headers.get("Authorization", "")
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "apikey" and args.es_api_key is not None and value.strip() == args.es_api_key:
            return None
        if scheme.lower() == "basic" and args.es_basic is not None:
            try:
                if base64.b64decode(value).decode() == args.es_basic:
                    return None
            except ValueError:
                pass
        reason = (f"missing authentication credentials for REST request [{self.path}]" if not auth
                  else "unable to authenticate with provided credentials")
        challenge = ['Basic realm="security", charset="UTF-8"', "ApiKey"]
        return es_error(401, "security_exception", reason, header={"WWW-Authenticate": challenge})

    def es(self, method, path, query, body):
        state = self.state
        is_bulk = path.endswith("_bulk")
        state.bump("requests", "es_bulk" if is_bulk else "es_info")
        if method not in (("POST", "PUT") if is_bulk else ("GET", "HEAD")):
            return self.reply(405, es_error(405, "illegal_argument_exception", f"Incorrect HTTP method for uri [{self.path}] and method [{method}]"), "es")
        if is_bulk and self.data_fault("es"):
            return
        refusal = self.es_authorize()
        if refusal:
            state.bump("auth_failures")
            state.bump("rejected_requests", "es")
            challenge = [("WWW-Authenticate", 'Basic realm="security", charset="UTF-8"'), ("WWW-Authenticate", "ApiKey")]
            return self.reply(401, refusal, "es", challenge)
        if not is_bulk:
            return self.reply(200, ES_INFO, "es")
        started = time.monotonic()
        error = self.es_media_type_error()
        if error is None:
            default_index = path[1:-len("/_bulk")] if path != "/_bulk" else None
            ops, error = self.es_parse_bulk(body, default_index)
        if error:
            state.bump("rejected_requests", "es")
            return self.reply(error["status"], error, "es")
        items, records = [], []
        for op in ops:
            item, record = self.es_execute(op)
            items.append({op["op"]: item})
            if record:
                records.append(record)
        state.write("es", records)
        failed = sum(1 for i in items if "error" in next(iter(i.values())))
        state.bump("accepted", "es", by=len(items) - failed)
        state.bump("es_item_errors", by=failed)
        took = int((time.monotonic() - started) * 1000)
        answer = {"errors": failed > 0, "took": took, "items": items}
        if "filter_path" in query:
            answer = filter_path(answer, query["filter_path"])
        return self.reply(200, answer, "es")

    def es_media_type_error(self):
        """Elasticsearch takes JSON and NDJSON, and versioned types compatible with 7 or 8."""
        ctype = self.headers.get("Content-Type", "")
        mime, _, params = ctype.partition(";")
        mime = mime.strip().lower()
        if mime in ("application/json", "application/x-ndjson"):
            return None
        if mime in ("application/vnd.elasticsearch+json", "application/vnd.elasticsearch+x-ndjson"):
            version = params.replace(" ", "").partition("compatible-with=")[2]
            if version in ("7", "8"):
                return None
            return es_error(400, "media_type_header_exception", f"Invalid media-type value on headers [Content-Type, Accept]: compatible-with=[{version}] is not supported")
        return {"error": f"Content-Type header [{ctype}] is not supported", "status": 406}

    def es_parse_bulk(self, body, default_index):
        """The operations of an NDJSON bulk body, or the whole request's error (nothing is
        executed when any line is malformed, as in Elasticsearch)."""
        if not body.strip():
            return None, es_error(400, "action_request_validation_exception", "Validation Failed: 1: no requests added;")
        if not body.endswith(b"\n"):
            return None, es_error(400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
        lines, ops, i = body.split(b"\n"), [], 0
        while i < len(lines):
            line = lines[i]
            i += 1
            if not line.strip():
                continue
            try:
                action = json.loads(line)
            except ValueError:
                action = None
            if not isinstance(action, dict) or len(action) != 1 or not isinstance(next(iter(action.values())), dict):
                return None, es_error(400, "illegal_argument_exception", f"Malformed action/metadata line [{i}], expected START_OBJECT with a single action")
            op, meta = next(iter(action.items()))
            if op not in ("index", "create", "update", "delete"):
                return None, es_error(400, "illegal_argument_exception", f"Malformed action/metadata line [{i}], expected field [create], [delete], [index] or [update] but found [{op}]")
            index = meta.get("_index", default_index)
            index = None if index is None else str(index)
            if not index:
                return None, es_error(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
            doc_id = meta.get("_id")
            if op in ("update", "delete") and doc_id is None:
                return None, es_error(400, "action_request_validation_exception", "Validation Failed: 1: id is missing;")
            source = None
            if op != "delete":
                if i >= len(lines) or not lines[i].strip():
                    return None, es_error(400, "illegal_argument_exception", f"The bulk request's action on line [{i}] has no source line")
                source = lines[i]
                i += 1
            ops.append({"op": op, "index": index, "id": None if doc_id is None else str(doc_id), "source": source})
        return ops, None

    def es_execute(self, op):
        """One bulk item: (the item's answer, the record to write or None)."""
        state, name, doc_id, source = self.state, op["index"], op["id"], op["source"]
        count_only = state.args.count_only

        def fail(status, etype, reason, answer_id=doc_id):
            err = {"type": etype, "reason": reason, "index_uuid": "_na_", "shard": "0", "index": name}
            return {"_index": name, "_id": answer_id, "status": status, "error": err}, None

        injected = state.take_item_fault()
        if injected:
            return fail(injected, ES_FAULT_TYPES.get(injected, "status_exception"), f"injected item fault: status {injected}")
        bad_name, stream = index_kind(name)
        if bad_name:
            return fail(400, "invalid_index_name_exception", f"Invalid index name [{name}], {bad_name}")
        if stream and op["op"] != "create":
            return fail(400, "illegal_argument_exception", "only write ops with an op_type of create are allowed in data streams")
        doc = None
        if source is not None:
            marker = state.faults.get("reject_marker")
            if marker and marker.encode() in source:
                return fail(400, "mapper_parsing_exception", f"failed to parse: the document holds the reject marker [{marker}]")
            if count_only:
                ok = source.lstrip().startswith(b"{")
                has_timestamp = b'"@timestamp"' in source
            else:
                try:
                    doc = json.loads(source)
                except ValueError:
                    doc = None
                ok = isinstance(doc, dict)
                has_timestamp = ok and "@timestamp" in doc
            if not ok:
                return fail(400, "mapper_parsing_exception", "failed to parse: the source is not a JSON object")
            if stream and not has_timestamp:
                return fail(400, "document_parsing_exception", "[1:1] failed to parse: data stream timestamp field [@timestamp] is missing")
        with state.lock:
            ids = state.indices.setdefault(name, {})
            shown = name
            if stream:  # the answer names the data stream's backing index, as Elasticsearch does
                if name not in state.backing:
                    state.backing[name] = time.strftime(f".ds-{name}-%Y.%m.%d-000001", time.gmtime())
                shown = state.backing[name]
            current = ids.get(doc_id) if doc_id is not None else None
            action = op["op"]
            if action == "create" and current is not None:
                return fail(409, "version_conflict_engine_exception", f"[{doc_id}]: version conflict, document already exists (current version [{current}])")
            if action == "update" and current is None and not (doc and (doc.get("doc_as_upsert") or "upsert" in doc)):
                return fail(404, "document_missing_exception", f"[{doc_id}]: document missing")
            if action == "delete":
                if current is None:
                    item = {"_index": shown, "_id": doc_id, "_version": 1, "result": "not_found", "status": 404}
                    return item, None
                del ids[doc_id]
                result, status, version = "deleted", 200, current + 1
            elif current is None:
                result, status, version = "created", 201, 1
            else:
                result, status, version = "updated", 200, current + 1
            if doc_id is None:
                doc_id = base64.urlsafe_b64encode(uuid.uuid4().bytes[:15]).decode()
            elif action != "delete":
                ids[doc_id] = version  # generated ids cannot collide, so only given ones are kept
            seq = state.seq_no.get(name, 0)
            state.seq_no[name] = seq + 1
        item = {
            "_index": shown, "_id": doc_id, "_version": version, "result": result,
            "_shards": {"total": 2, "successful": 1, "failed": 0},
            "_seq_no": seq, "_primary_term": 1, "status": status,
        }
        return item, {"index": name, "op": action, "id": doc_id, "doc": doc}

    # ---- generic HTTP ------------------------------------------------------------------

    def generic(self, body):
        """NDJSON (application/x-ndjson) or a JSON array (application/json, a lone object
        is one document); answered {}."""
        state = self.state
        state.bump("requests", "http")
        if self.data_fault("http"):
            return
        mime = self.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        marker = state.faults.get("reject_marker")
        try:
            if marker and marker.encode() in body:
                raise ValueError(f"the body holds the reject marker [{marker}]")
            if mime.endswith("ndjson"):
                lines = [l for l in body.split(b"\n") if l.strip()]
                docs = [None] * len(lines) if state.args.count_only else [json.loads(l) for l in lines]
            elif mime == "application/json":
                parsed = json.loads(body)
                docs = parsed if isinstance(parsed, list) else [parsed]
            else:
                state.bump("rejected_requests", "http")
                return self.reply(415, {"error": f"unsupported Content-Type [{mime}]"}, "http")
        except ValueError as e:
            state.bump("rejected_requests", "http")
            return self.reply(400, {"error": f"invalid body: {e}"}, "http")
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-")}
        if "Authorization" in self.headers:
            headers["authorization"] = self.headers["Authorization"]
        state.write("http", [{"path": self.path, "headers": headers, "doc": d} for d in docs])
        state.bump("accepted", "http", by=len(docs))
        return self.reply(200, {}, "http")


def hec_event_error(event):
    """Why HEC refuses one decoded event, as (status, text, code), or None."""
    if not isinstance(event, dict):
        return 400, "Invalid data format", 6
    if event.get("event") is None:
        return 400, "Event field is required", 12
    if isinstance(event["event"], str) and not event["event"].strip():
        return 400, "Event field cannot be blank", 13
    if "time" in event and not valid_epoch(event["time"]):
        return 400, "Invalid data format", 6
    if "fields" in event and not valid_fields(event["fields"]):
        return 400, "Error in handling indexed fields", 15
    return None


def valid_epoch(t):
    """HEC "time": epoch seconds as a number or a numeric string, fractions allowed."""
    if isinstance(t, bool):
        return False
    if isinstance(t, str):
        try:
            t = float(t)
        except ValueError:
            return False
    return isinstance(t, (int, float)) and t == t and abs(t) != float("inf") and t >= 0


def valid_fields(fields):
    """HEC indexed "fields": an object of strings or numbers, or flat lists of them."""
    scalar = (str, int, float)
    return isinstance(fields, dict) and all(
        isinstance(v, scalar) or isinstance(v, list) and all(isinstance(x, scalar) for x in v)
        for v in fields.values()
    )


@functools.lru_cache(maxsize=1024)
def index_kind(name):
    """(why Elasticsearch would refuse this index name or None, whether it is a data stream)."""
    return index_name_error(name), any(fnmatch.fnmatchcase(name, p) for p in DATA_STREAM_PATTERNS)


def index_name_error(name):
    """Why Elasticsearch would refuse this index name, or None."""
    if name != name.lower():
        return "must be lowercase"
    if name[0] in "_-+":
        return "must not start with '_', '-', or '+'"
    if name in (".", "..") or len(name.encode()) > 255:
        return "must not be '.', '..' or longer than 255 bytes"
    if INDEX_FORBIDDEN & set(name):
        return 'must not contain the following characters [\\, /, *, ?, ", <, >, |,  , ,, #, :]'
    return None


def filter_path(value, spec):
    """Elasticsearch's filter_path, inclusive patterns only: dotted names, `*` in a name
    matches within it, `**` any depth; arrays are looked through."""
    patterns = [p.split(".") for p in spec.split(",") if p]

    def advance(p, k):
        """What is left of pattern p to match below key k (an empty list: all of it)."""
        if p[0] == "**":  # k is one of the levels `**` spans, or none is
            return [p] + (advance(p[1:], k) if len(p) > 1 else [[]])
        return [p[1:]] if fnmatch.fnmatchcase(k, p[0]) else []

    def keep(v, pats):
        if isinstance(v, list):
            kept = [keep(x, pats) for x in v]
            return [x for x in kept if x is not None] or None
        if not isinstance(v, dict):
            return v if any(not p for p in pats) else None
        out = {}
        for k, child in v.items():
            rest = [r for p in pats if p for r in advance(p, k)]
            if not rest:
                continue
            sub = child if any(not r for r in rest) else keep(child, rest)
            if sub is not None:
                out[k] = sub
        return out or None

    return keep(value, patterns) or {}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--hec-token")
    parser.add_argument("--hec-ack", action="store_true")
    parser.add_argument("--ack-delay-ms", type=int, default=0)
    parser.add_argument("--es-api-key")
    parser.add_argument("--es-basic", metavar="USER:PASS")
    parser.add_argument("--count-only", action="store_true")
    parser.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (and --tls-key)")
    parser.add_argument("--tls-key")
    parser.add_argument("--tls-client-ca", help="require a client certificate this PEM file trusts")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    ThreadingHTTPServer.request_queue_size = 128
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_client_ca:
            tls.verify_mode = ssl.CERT_REQUIRED
            tls.load_verify_locations(args.tls_client_ca)
        # The handshake in the connection's own thread, so that a refused client blocks
        # nobody else.
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    server.state = State(args)
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
