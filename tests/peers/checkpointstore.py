"""Python SDK peer for tests/blob_interop.rs: the official event processor's blob
checkpoint store (`azure-eventhub-checkpointstoreblob`) reading and writing the same
container as hubwatch, and printing what it sees as one JSON document.

Usage: python checkpointstore.py CONNECTION_STRING CONTAINER COMMAND_JSON

COMMAND_JSON is {"op": ..., "namespace": ..., "hub": ..., "group": ..., ...}:
- "write_checkpoint" with "partition", "offset", "sequence_number";
- "list_checkpoints";
- "claim" with "partition", "owner" and optionally "etag" (the version listed);
- "list_ownership".
"""

import json
import sys

from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore


def main():
    conn_str, container, command = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    store = BlobCheckpointStore.from_connection_string(conn_str, container)
    where = (command["namespace"], command["hub"], command["group"])
    op = command["op"]
    if op == "write_checkpoint":
        store.update_checkpoint(
            {
                "fully_qualified_namespace": where[0],
                "eventhub_name": where[1],
                "consumer_group": where[2],
                "partition_id": command["partition"],
                "offset": str(command["offset"]),
                "sequence_number": command["sequence_number"],
            }
        )
        out = {"ok": True}
    elif op == "list_checkpoints":
        out = sorted(
            (
                {
                    "partition": c["partition_id"],
                    "offset": c.get("offset"),
                    "sequence_number": c.get("sequence_number"),
                }
                for c in store.list_checkpoints(*where)
            ),
            key=lambda c: c["partition"],
        )
    elif op == "claim":
        ownership = {
            "fully_qualified_namespace": where[0],
            "eventhub_name": where[1],
            "consumer_group": where[2],
            "partition_id": command["partition"],
            "owner_id": command["owner"],
        }
        if command.get("etag"):
            ownership["etag"] = command["etag"]
        claimed = store.claim_ownership([ownership])
        out = [{"partition": o["partition_id"], "owner": o["owner_id"], "etag": o.get("etag")} for o in claimed]
    elif op == "list_ownership":
        out = sorted(
            (
                {"partition": o["partition_id"], "owner": o["owner_id"], "etag": o.get("etag")}
                for o in store.list_ownership(*where)
            ),
            key=lambda o: o["partition"],
        )
    else:
        raise SystemExit(f"unknown op {op!r}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
