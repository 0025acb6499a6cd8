//! hubwatch's blob checkpoint store and the official Python event processor's
//! (`azure-eventhub-checkpointstoreblob`) share one container on Azurite, in both
//! directions: checkpoints written by either are read by the other with the same offset and
//! sequence number, and ownership claimed by either is seen by the other and fenced by the
//! same ETag rules (a claim on a stale version loses, whoever makes it); a relinquished
//! partition is unowned for both.

mod common;

use std::process::Command;
use std::time::Duration;

use common::azurite::Azurite;
use common::repo;
use hubwatch::blob::{BlobContainer, StorageConnectionString};
use hubwatch::checkpoint::{
    BlobCheckpointStore, Checkpoint, CheckpointStore, Claim, OwnershipStore,
};
use serde_json::{json, Value};

const NAMESPACE: &str = "Interop.servicebus.windows.net";
const HUB: &str = "AmlLogs";
const GROUP: &str = "$Default";

fn python(azurite: &Azurite, container: &str, command: Value) -> Value {
    let out = Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("tests/peers/checkpointstore.py"))
        .args([
            &azurite.connection_string(),
            container,
            &command.to_string(),
        ])
        .output()
        .expect("run the Python peer (scripts/setup-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "python peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn command(op: &str, extra: Value) -> Value {
    let mut c = json!({"op": op, "namespace": NAMESPACE, "hub": HUB, "group": GROUP});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

async fn store(azurite: &Azurite, container: &str) -> (BlobContainer, BlobCheckpointStore) {
    let cs: StorageConnectionString = azurite.connection_string().parse().unwrap();
    let c = BlobContainer::from_connection_string(&cs, container, Duration::from_secs(10)).unwrap();
    c.create_if_missing().await.unwrap();
    let hubs = [(
        "eh".to_string(),
        NAMESPACE.to_string(),
        HUB.to_string(),
        GROUP.to_string(),
    )];
    (c.clone(), BlobCheckpointStore::new(c, &hubs, "hubwatch"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_cross_between_hubwatch_and_the_python_processor() {
    let azurite = Azurite::start();
    let (container, store) = store(&azurite, "interop").await;

    // Python writes, hubwatch reads.
    for (p, seq) in [("0", 41), ("1", 7)] {
        python(
            &azurite,
            "interop",
            command(
                "write_checkpoint",
                json!({"partition": p, "offset": seq * 1000, "sequence_number": seq}),
            ),
        );
    }
    let got = store.load("eh").await.unwrap();
    assert_eq!(
        got["0"],
        Checkpoint {
            offset: 41_000,
            sequence_number: 41
        }
    );
    assert_eq!(got["1"].sequence_number, 7);
    assert_eq!(got.len(), 2);

    // hubwatch writes (over one of Python's and a new one), Python reads.
    store
        .save(
            "eh",
            &[
                (
                    "1".to_string(),
                    Checkpoint {
                        offset: 9_000,
                        sequence_number: 9,
                    },
                ),
                (
                    "2".to_string(),
                    Checkpoint {
                        offset: 3_000,
                        sequence_number: 3,
                    },
                ),
            ],
        )
        .await
        .unwrap();
    let listed = python(&azurite, "interop", command("list_checkpoints", json!({})));
    assert_eq!(
        listed,
        json!([
            {"partition": "0", "offset": "41000", "sequence_number": 41},
            {"partition": "1", "offset": "9000", "sequence_number": 9},
            {"partition": "2", "offset": "3000", "sequence_number": 3},
        ])
    );
    // Both wrote the lowercased names the .NET, Python and JavaScript processors use.
    let names: Vec<String> = container
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("interop.servicebus.windows.net/amllogs/$default/checkpoint/")),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_claims_cross_and_a_stale_version_loses_on_either_side() {
    let azurite = Azurite::start();
    let (_, store) = store(&azurite, "owners").await;

    // Python claims partition 0; hubwatch sees it and, claiming with the version it listed,
    // takes it over (a steal); Python's claim with its old version then loses.
    let claimed = python(
        &azurite,
        "owners",
        command("claim", json!({"partition": "0", "owner": "python-1"})),
    );
    let python_etag = claimed[0]["etag"].as_str().unwrap().to_string();
    let listed = store.list_ownership("eh").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].owner, "python-1");
    let stolen = store
        .claim("eh", "0", "hubwatch-a", Some(&listed[0].props.etag))
        .await
        .unwrap();
    assert!(matches!(stolen, Claim::Won(_)), "{stolen:?}");
    let lost = python(
        &azurite,
        "owners",
        command(
            "claim",
            json!({"partition": "0", "owner": "python-1", "etag": python_etag}),
        ),
    );
    assert_eq!(lost, json!([]), "Python's stale claim loses");

    // hubwatch claims partition 1 afresh; Python lists both with hubwatch as owner.
    let Claim::Won(mine) = store.claim("eh", "1", "hubwatch-a", None).await.unwrap() else {
        panic!("a fresh claim wins")
    };
    let owners = python(&azurite, "owners", command("list_ownership", json!({})));
    assert_eq!(owners[0]["owner"], "hubwatch-a");
    assert_eq!(owners[1]["owner"], "hubwatch-a");
    assert_eq!(
        owners[1]["etag"].as_str().unwrap().trim_matches('"'),
        mine.etag.trim_matches('"')
    );

    // A second fresh claim of partition 1 loses (it exists); relinquishing empties the owner,
    // which Python sees.
    assert_eq!(
        store.claim("eh", "1", "hubwatch-b", None).await.unwrap(),
        Claim::Lost
    );
    assert!(matches!(
        store.claim("eh", "1", "", Some(&mine.etag)).await.unwrap(),
        Claim::Won(_)
    ));
    let owners = python(&azurite, "owners", command("list_ownership", json!({})));
    assert!(
        owners[1]["owner"].as_str().unwrap_or_default().is_empty(),
        "unowned for Python (it treats a missing and an empty owner alike): {owners}"
    );
    let ours = store.list_ownership("eh").await.unwrap();
    assert_eq!(ours[1].owner, "", "and for hubwatch");
}
