//! hubwatch's Azure Blob client against Azurite (a real blob service, started per test on a
//! free loopback port): Shared Key signing (a connection string) and SAS (a container URL
//! signed by the Python storage SDK), conditional writes as partition ownership uses them,
//! listings with metadata across pages, and errors that name the blob but never a secret.

mod common;

use std::process::Command;
use std::time::Duration;

use common::azurite::{Azurite, ACCOUNT, KEY};
use common::repo;
use hubwatch::blob::{BlobContainer, Condition, StorageConnectionString};

fn container(azurite: &Azurite, name: &str) -> BlobContainer {
    let cs: StorageConnectionString = azurite.connection_string().parse().unwrap();
    BlobContainer::from_connection_string(&cs, name, Duration::from_secs(10)).unwrap()
}

#[tokio::test]
async fn shared_key_requests_read_write_and_condition_blobs() {
    let azurite = Azurite::start();
    let c = container(&azurite, "checkpoints");
    c.create_if_missing().await.unwrap();
    c.create_if_missing().await.unwrap(); // already there: fine

    // Names as the Event Hubs processors write them: a `$` group, upper case kept.
    let name = "ns.servicebus.windows.net/hub/$default/ownership/0";
    assert_eq!(c.get(name).await.unwrap(), None);
    let first = c
        .put(
            name,
            Vec::new(),
            &[("ownerid", "replica-a")],
            &Condition::Absent,
        )
        .await
        .unwrap();
    let again = c
        .put(
            name,
            Vec::new(),
            &[("ownerid", "replica-b")],
            &Condition::Absent,
        )
        .await
        .unwrap_err();
    assert!(again.is_conflict(), "{again}");

    let renewed = c
        .set_metadata(
            name,
            &[("ownerid", "replica-a")],
            &Condition::Matches(first.etag.clone()),
        )
        .await
        .unwrap();
    assert_ne!(renewed.etag, first.etag);
    let stale = c
        .set_metadata(
            name,
            &[("ownerid", "replica-b")],
            &Condition::Matches(first.etag.clone()),
        )
        .await
        .unwrap_err();
    assert!(stale.is_conflict(), "a stale ETag loses: {stale}");
    assert!(stale.to_string().contains(name), "{stale}");

    // A large body (a snapshot) round-trips byte for byte.
    let body: Vec<u8> = (0..6_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    c.put("hubwatch/state/eh/0", body.clone(), &[], &Condition::None)
        .await
        .unwrap();
    let (got, props) = c.get("hubwatch/state/eh/0").await.unwrap().unwrap();
    assert!(got == body);
    assert!(!props.etag.is_empty());

    // Listing: only the prefix, with metadata, across pages.
    for p in 1..12 {
        c.put(
            &format!("ns.servicebus.windows.net/hub/$default/checkpoint/{p}"),
            Vec::new(),
            &[
                ("offset", &format!("{}", p * 100)),
                ("sequencenumber", &p.to_string()),
            ],
            &Condition::None,
        )
        .await
        .unwrap();
    }
    let owned = c
        .list("ns.servicebus.windows.net/hub/$default/ownership/")
        .await
        .unwrap();
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].meta("ownerid"), Some("replica-a"));
    assert_eq!(owned[0].props, renewed);
    let checkpoints = c
        .clone()
        .with_page_size(4)
        .list("ns.servicebus.windows.net/hub/$default/checkpoint/")
        .await
        .unwrap();
    assert_eq!(checkpoints.len(), 11);
    let seven = checkpoints.iter().find(|i| i.name.ends_with("/7")).unwrap();
    assert_eq!(seven.meta("offset"), Some("700"));
    assert_eq!(seven.meta("sequencenumber"), Some("7"));
}

#[tokio::test]
async fn a_wrong_key_is_refused_and_no_error_shows_a_secret() {
    let azurite = Azurite::start();
    container(&azurite, "keys")
        .create_if_missing()
        .await
        .unwrap();
    let wrong_key = "d3Jvbmcta2V5LXRoYXQtaXMtbG9uZy1lbm91Z2gtZm9yLWhtYWM=";
    let cs: StorageConnectionString = format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={wrong_key};BlobEndpoint={};",
        azurite.endpoint()
    )
    .parse()
    .unwrap();
    let c = BlobContainer::from_connection_string(&cs, "keys", Duration::from_secs(10)).unwrap();
    let e = c.get("x").await.unwrap_err();
    assert!(e.is_unauthorized(), "{e}");
    let text = format!("{e} {e:?} {c:?}");
    assert!(!text.contains(wrong_key) && !text.contains(KEY), "{text}");
}

/// A container SAS made by the Python storage SDK (an independent signer).
fn python_container_sas(azurite: &Azurite, container: &str) -> String {
    let py = repo().join(".venv/bin/python");
    let script = format!(
        "from azure.storage.blob import generate_container_sas, ContainerSasPermissions\n\
         from datetime import datetime, timedelta, timezone\n\
         print(generate_container_sas('{ACCOUNT}', '{container}', account_key='{KEY}',\n\
             permission=ContainerSasPermissions(read=True, write=True, list=True, create=True),\n\
             expiry=datetime.now(timezone.utc) + timedelta(hours=1)))\n"
    );
    let out = Command::new(py).args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = azurite;
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn a_container_url_with_a_sas_works_and_its_signature_never_shows() {
    let azurite = Azurite::start();
    container(&azurite, "sas")
        .create_if_missing()
        .await
        .unwrap();
    let sas = python_container_sas(&azurite, "sas");
    let url = format!("{}/sas?{sas}", azurite.endpoint());
    let c = BlobContainer::new(&url, None, Duration::from_secs(10)).unwrap();
    c.put("a/b", b"hello".to_vec(), &[("k", "v")], &Condition::Absent)
        .await
        .unwrap();
    assert_eq!(c.get("a/b").await.unwrap().unwrap().0, b"hello");
    assert_eq!(c.list("a/").await.unwrap()[0].meta("k"), Some("v"));
    let e = c
        .put("a/b", Vec::new(), &[], &Condition::Absent)
        .await
        .unwrap_err();
    let sig = sas
        .split('&')
        .find_map(|kv| kv.strip_prefix("sig="))
        .unwrap();
    let text = format!("{e} {e:?} {c:?} {}", c.url());
    assert!(e.is_conflict() && !text.contains(sig), "{text}");
}

#[tokio::test]
async fn a_stale_replica_cannot_overwrite_newer_window_state() {
    use hubwatch::state::{BlobStateStore, Snapshot, StateError, StateStore};
    use std::sync::Arc;
    let azurite = Azurite::start();
    let c = container(&azurite, "state");
    c.create_if_missing().await.unwrap();
    let snap = |bytes: &[u8]| -> Arc<[Snapshot]> {
        Arc::from([Snapshot {
            source: Arc::from("eh"),
            partition: Arc::from("3"),
            bytes: bytes.to_vec(),
        }])
    };
    let a = BlobStateStore::new(c.clone(), "hubwatch");
    let b = BlobStateStore::new(c.clone(), "hubwatch");

    // A owns partition 3 and writes; B takes it over: restores A's snapshot, then writes.
    a.save(snap(b"a1")).await.unwrap();
    a.save(snap(b"a2")).await.unwrap();
    assert_eq!(b.load("eh", "3").await.unwrap().unwrap(), b"a2");
    b.save(snap(b"b1")).await.unwrap();

    // A, stalled through the move, tries to store its older state: refused, nothing lost.
    let e = a.save(snap(b"a3")).await.unwrap_err();
    assert!(matches!(e, StateError::Fenced { .. }), "{e}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("hubwatch/state/eh/3"), "{e}");
    assert_eq!(b.load("eh", "3").await.unwrap().unwrap(), b"b1");
    b.save(snap(b"b2")).await.unwrap();

    // A replica that never read the partition cannot create over an existing snapshot.
    let fresh = BlobStateStore::new(c.clone(), "hubwatch");
    assert!(matches!(
        fresh.save(snap(b"x")).await.unwrap_err(),
        StateError::Fenced { .. }
    ));
    assert_eq!(fresh.partitions("eh").await.unwrap(), vec!["3".to_string()]);
    assert_eq!(fresh.load("eh", "3").await.unwrap().unwrap(), b"b2");
}
