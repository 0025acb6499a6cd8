"""Python SDK peer for tests/amqp_blob.rs: the official event processor
(`EventHubConsumerClient` with the blob checkpoint store) on the same consumer group and
container as hubwatch. It starts every partition where the store's checkpoint says
(strictly after it; the oldest event where there is none), receives until no event has
arrived for IDLE seconds, checkpoints each event it got if asked, and prints the events as
one JSON list of {"partition", "sequence_number", "body"}.

Usage: python processor.py EVENTHUB_CONNECTION_STRING HUB STORAGE_CONNECTION_STRING CONTAINER IDLE_S CHECKPOINT(0|1)
"""

import json
import sys
import threading
import time

from azure.eventhub import EventHubConsumerClient
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore


def main():
    conn_str, hub, storage_cs, container = sys.argv[1:5]
    idle_s, checkpoint = float(sys.argv[5]), sys.argv[6] == "1"
    store = BlobCheckpointStore.from_connection_string(storage_cs, container)
    consumer = EventHubConsumerClient.from_connection_string(
        conn_str,
        consumer_group="$Default",
        eventhub_name=hub,
        checkpoint_store=store,
        load_balancing_interval=1,
    )
    got = []
    lock = threading.Lock()
    last = [time.monotonic()]

    def on_event(context, event):
        if event is None:
            return
        with lock:
            got.append(
                {
                    "partition": context.partition_id,
                    "sequence_number": event.sequence_number,
                    "body": event.body_as_str(),
                }
            )
            last[0] = time.monotonic()
        if checkpoint:
            context.update_checkpoint(event)

    worker = threading.Thread(
        target=consumer.receive,
        kwargs=dict(on_event=on_event, max_wait_time=1, starting_position="-1"),
        daemon=True,
    )
    worker.start()
    started = time.monotonic()
    while True:
        time.sleep(0.2)
        with lock:
            quiet = time.monotonic() - last[0]
        if quiet >= idle_s and time.monotonic() - started >= idle_s:
            break
        if time.monotonic() - started > 60:
            break
    consumer.close()
    worker.join(30)
    print(json.dumps(sorted(got, key=lambda e: (e["partition"], e["sequence_number"]))))


if __name__ == "__main__":
    main()
