"""Python SDK peer for tests/emulator.rs: the official `azure-eventhub` client against the
emulator over TLS (amqps), trusting only the CA file it is given, and prints one JSON
document.

Usage: python eventhub_tls.py HOST:PORT CA_FILE KEY_NAME KEY HUB

1. sends a batch of 3 events to partition "0", verifying the emulator's certificate
   (host name `localhost`) against CA_FILE;
2. receives partition "0" back from the earliest event;
3. tries again with the system's CAs only, which do not know the emulator's, and reports
   the error it gets.
"""

import json
import sys
import threading

from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient, TransportType

TIMEOUT_S = 30


def main():
    host_port, ca_file, key_name, key, hub = sys.argv[1:6]
    conn_str = (
        f"Endpoint=sb://localhost/;SharedAccessKeyName={key_name};"
        f"SharedAccessKey={key};EntityPath={hub}"
    )
    endpoint = dict(
        custom_endpoint_address=f"sb://{host_port}",
        transport_type=TransportType.Amqp,
        retry_total=0,
    )
    producer = EventHubProducerClient.from_connection_string(
        conn_str, connection_verify=ca_file, **endpoint
    )
    with producer:
        batch = producer.create_batch(partition_id="0")
        for i in range(3):
            batch.add(EventData(f"tls-{i}"))
        producer.send_batch(batch)

    received = []
    done = threading.Event()

    def on_event(_context, event):
        if event is None:
            return
        received.append([event.sequence_number, event.body_as_str()])
        if len(received) >= 3:
            done.set()

    consumer = EventHubConsumerClient.from_connection_string(
        conn_str, consumer_group="$Default", connection_verify=ca_file, **endpoint
    )
    worker = threading.Thread(
        target=consumer.receive,
        kwargs=dict(on_event=on_event, partition_id="0", starting_position="-1", max_wait_time=1),
        daemon=True,
    )
    worker.start()
    done.wait(TIMEOUT_S)
    consumer.close()
    worker.join(TIMEOUT_S)

    untrusted = None
    try:
        plain = EventHubProducerClient.from_connection_string(conn_str, **endpoint)
        with plain:
            plain.get_eventhub_properties()
    except Exception as e:  # the SDK wraps the TLS failure in its own error types
        untrusted = f"{type(e).__name__}: {e}"

    print(json.dumps({"received": received, "untrusted_error": untrusted}))


if __name__ == "__main__":
    main()
