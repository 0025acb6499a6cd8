// Splunk's own HEC client, `splunk-logging` (tools/node_modules, installed by
// scripts/setup-test-deps.sh), against the test receiver (tests/peers/siem_receiver.py),
// for tests/siem_receivers.rs. Prints one JSON document: what was sent and what the library
// reported, per phase:
//   ok:          N events in batches of BATCH (the library's own batching), each with time,
//                host, source, sourcetype and index; every flush should succeed.
//   poison:      three events in one batch, the second holding the receiver's reject marker
//                (set here through POST /_control): the library reports code 6.
//   wrong_token: one event with a token the receiver does not know: 403, code 4.
//
// Usage: node hec_client.js '{"url": "http://127.0.0.1:PORT", "token": T, "n": N, "batch": B}'

"use strict";

const http = require("http");
const path = require("path");
const SplunkLogger = require(path.resolve(__dirname, "../../tools/node_modules/splunk-logging")).Logger;

const cfg = JSON.parse(process.argv[2]);
// Event times: milliseconds apart from a fixed instant, to see how the library writes them.
const BASE_MS = Date.UTC(2024, 4, 1, 12, 0, 0, 123);

// A POST to the receiver's control endpoint (not through the library).
function control(faults) {
    return new Promise((resolve, reject) => {
        const body = JSON.stringify(faults);
        const req = http.request(cfg.url + "/_control", {
            method: "POST",
            headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) },
        }, (res) => {
            res.resume();
            res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error("control: " + res.statusCode))));
        });
        req.on("error", reject);
        req.end(body);
    });
}

// Sends `events` ({message, metadata}) through one logger and resolves, once every batch
// has been answered, with what the library reported: its error() calls and each flush's
// callback (error, HTTP status, parsed body).
function run(token, batch, events) {
    return new Promise((resolve) => {
        const logger = new SplunkLogger({ token, url: cfg.url, maxBatchCount: batch, maxRetries: 0 });
        const report = { errors: [], responses: [] };
        logger.error = (err) => report.errors.push({ message: err.message, code: err.code === undefined ? null : err.code });
        const flushes = Math.ceil(events.length / batch);
        const answered = (err, resp, body) => {
            report.responses.push({
                error: err ? String(err) : null,
                status: resp ? resp.statusCode : null,
                body: body === undefined ? null : body,
            });
            if (report.responses.length === flushes) {
                resolve(report);
            }
        };
        for (const e of events) {
            logger.send({ message: e.message, metadata: e.metadata, severity: "info" }, answered);
        }
        if (events.length % batch !== 0) {
            logger.flush(answered); // the last, partial batch
        }
    });
}

function event(i, text) {
    return {
        message: { i, text, nested: { resource: "/subscriptions/x/rg/y", level: 4 }, unicode: "caf\u00e9 \u2713" },
        metadata: {
            time: new Date(BASE_MS + i * 1001),
            host: "host-" + (i % 3),
            source: "hubwatch-test",
            sourcetype: "azure:diagnostics",
            index: "hubwatch",
        },
    };
}

async function main() {
    const guard = setTimeout(() => {
        console.error("hec_client: no answer within 60 s");
        process.exit(2);
    }, 60000);
    const out = { base_ms: BASE_MS, n: cfg.n, batch: cfg.batch, phases: {} };

    const events = Array.from({ length: cfg.n }, (_, i) => event(i, "row " + i));
    out.phases.ok = await run(cfg.token, cfg.batch, events);

    await control({ reject_marker: "POISON" });
    const poisoned = [event(1000, "before"), event(1001, "POISON here"), event(1002, "after")];
    out.phases.poison = await run(cfg.token, 3, poisoned);
    await control({});

    out.phases.wrong_token = await run("not-" + cfg.token, 1, [event(2000, "refused")]);

    clearTimeout(guard);
    process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
