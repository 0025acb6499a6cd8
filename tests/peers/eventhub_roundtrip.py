"""Python SDK peer for tests/emulator.rs: drives the emulator with the official
`azure-eventhub` client (pure-Python AMQP stack) and prints one JSON document that the
Rust test compares exactly.

Usage: python eventhub_roundtrip.py CONNECTION_STRING HUB FROM_SEQUENCE_NUMBER

1. sends a batch of 4 events and one single event to partition "0", a batch of 2 to
   partition "1", and a batch of 2 with partition key "tenant-42";
2. reads the hub's and every partition's properties;
3. receives partition "0" back from FROM_SEQUENCE_NUMBER, exclusive and inclusive, and
   partition "1" from the earliest event, with EventHubConsumerClient;
4. tries the same with a wrong SharedAccessKey and reports the error it gets.
"""

import json
import sys
import threading

from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient

TIMEOUT_S = 30


def send(conn_str, hub):
    producer = EventHubProducerClient.from_connection_string(
        conn_str, eventhub_name=hub, retry_total=0
    )
    with producer:
        batch = producer.create_batch(partition_id="0")
        for i in range(4):
            batch.add(EventData(f"py-{i}"))
        producer.send_batch(batch)
        producer.send_event(EventData("py-single"), partition_id="0")
        batch = producer.create_batch(partition_id="1")
        for i in range(2):
            batch.add(EventData(f"py1-{i}"))
        producer.send_batch(batch)
        batch = producer.create_batch(partition_key="tenant-42")
        for i in range(2):
            batch.add(EventData(f"pykey-{i}"))
        producer.send_batch(batch)
        hub_props = producer.get_eventhub_properties()
        partitions = {}
        for pid in hub_props["partition_ids"]:
            p = producer.get_partition_properties(pid)
            partitions[pid] = {
                "beginning_sequence_number": p["beginning_sequence_number"],
                "last_enqueued_sequence_number": p["last_enqueued_sequence_number"],
                "last_enqueued_offset": p["last_enqueued_offset"],
                "last_enqueued_time_ms": int(p["last_enqueued_time_utc"].timestamp() * 1000),
                "is_empty": p["is_empty"],
            }
    return {
        "name": hub_props["eventhub_name"],
        "partition_ids": hub_props["partition_ids"],
        "partitions": partitions,
    }


def receive(conn_str, hub, partition, expected, **position):
    consumer = EventHubConsumerClient.from_connection_string(
        conn_str, consumer_group="$Default", eventhub_name=hub
    )
    got = []
    done = threading.Event()

    def on_event(_context, event):
        if event is None:
            return
        got.append(
            {
                "sequence_number": event.sequence_number,
                "offset": event.offset,
                "enqueued_time_ms": int(event.enqueued_time.timestamp() * 1000),
                "body": event.body_as_str(),
                "partition_key": event.partition_key.decode() if isinstance(event.partition_key, bytes) else event.partition_key,
            }
        )
        if len(got) >= expected:
            done.set()

    worker = threading.Thread(
        target=consumer.receive,
        kwargs=dict(on_event=on_event, partition_id=partition, max_wait_time=1, **position),
        daemon=True,
    )
    worker.start()
    finished = done.wait(TIMEOUT_S)
    consumer.close()
    worker.join(TIMEOUT_S)
    if not finished:
        raise SystemExit(f"timed out: {len(got)} of {expected} events from partition {partition}")
    return got[:expected]


WRONG_KEY = "bm90LXRoZS1rZXktb2YtdGhpcy1lbXVsYXRvcg=="


def wrong_key_error(conn_str, hub):
    parts = [
        f"SharedAccessKey={WRONG_KEY}" if p.startswith("SharedAccessKey=") else p
        for p in conn_str.split(";")
    ]
    producer = EventHubProducerClient.from_connection_string(
        ";".join(parts), eventhub_name=hub, retry_total=0
    )
    try:
        producer.get_eventhub_properties()
    except Exception as e:  # the point is which error the SDK raises
        return {"type": type(e).__name__, "message": str(e), "key": WRONG_KEY}
    finally:
        producer.close()
    return None


def main():
    conn_str, hub, from_seq = sys.argv[1], sys.argv[2], int(sys.argv[3])
    props = send(conn_str, hub)
    last0 = props["partitions"]["0"]["last_enqueued_sequence_number"]
    last1 = props["partitions"]["1"]["last_enqueued_sequence_number"]
    out = {
        "eventhub": props,
        "exclusive": receive(conn_str, hub, "0", last0 - from_seq,
                             starting_position=from_seq, starting_position_inclusive=False),
        "inclusive": receive(conn_str, hub, "0", last0 - from_seq + 1,
                             starting_position=from_seq, starting_position_inclusive=True),
        "earliest_1": receive(conn_str, hub, "1", last1 + 1, starting_position="-1"),
        "wrong_key": wrong_key_error(conn_str, hub),
    }
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
