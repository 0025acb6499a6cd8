//! `[checkpoint]`: where positions and window state live, checked into
//! [`CheckpointSettings`], and the stores they open.
//!
//! - `dir`: a local directory (`checkpoints.json` and `state/`).
//! - `[checkpoint.blob]`: a blob container replicas share. Event-hub sources keep their
//!   checkpoints and ownership in the Azure SDKs' layout; window state (and the checkpoints
//!   of other sources) go under hubwatch's own prefix.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::env::{Env, Scope};
use super::validate::{entra_kind, set_span};
use super::{BlobConfig, CheckpointConfig, SourceSettings};
use crate::blob::{BlobContainer, StorageConnectionString};
use crate::checkpoint::{
    BlobCheckpointStore, CheckpointStore, FileCheckpointStore, OwnershipStore,
};
use crate::source::amqp::{EntraKind, Redacted};
use crate::state::{BlobStateStore, LocalStateStore, StateStore};

/// Where checkpoints (positions and window state) live, and how often they are taken.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    pub store: StoreSettings,
    pub interval: Duration,
    /// Every replica answers for every partition, from the others' snapshots.
    pub global_results: bool,
}

#[derive(Debug, Clone)]
pub enum StoreSettings {
    Dir(PathBuf),
    Blob(BlobSettings),
}

#[derive(Debug, Clone)]
pub struct BlobSettings {
    pub access: BlobAccess,
    pub prefix: String,
    pub timeout: Duration,
}

/// How the container is reached. `Debug` shows no secret.
#[derive(Debug, Clone)]
pub enum BlobAccess {
    ConnectionString {
        connection_string: Redacted,
        container: String,
    },
    /// A URL with a SAS query (kept redacted), or with an Entra ID credential.
    Url {
        url: Redacted,
        entra: Option<(EntraKind, Option<String>)>,
    },
}

impl CheckpointSettings {
    /// A local directory.
    /// How often window state is stored and positions committed, unless configured.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

    pub fn dir(dir: impl Into<PathBuf>, interval: Duration) -> CheckpointSettings {
        CheckpointSettings {
            store: StoreSettings::Dir(dir.into()),
            interval,
            global_results: false,
        }
    }

    /// The stores this configures: positions and window state, side by side (and, in a
    /// blob container, partition ownership). A local directory is created if missing, and
    /// a positions file that is not valid is an error here, before anything reads. A blob
    /// container is not created: it must exist.
    pub fn open(&self, sources: &[SourceSettings]) -> anyhow::Result<Stores> {
        use anyhow::Context as _;
        match &self.store {
            StoreSettings::Dir(dir) => {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("creating the checkpoint directory {}", dir.display())
                })?;
                let path = dir.join("checkpoints.json");
                let positions = FileCheckpointStore::open(&path)
                    .with_context(|| format!("opening the checkpoint store {}", path.display()))?;
                Ok(Stores {
                    positions: Arc::new(positions),
                    state: Arc::new(LocalStateStore::new(dir)),
                    ownership: None,
                })
            }
            StoreSettings::Blob(b) => {
                let container = b.container()?;
                let hubs: Vec<(String, String, String, String)> = sources
                    .iter()
                    .filter_map(|s| match s {
                        SourceSettings::Amqp(cfg) => Some((
                            cfg.name.clone(),
                            cfg.checkpoint_namespace()?,
                            cfg.event_hub.clone(),
                            cfg.consumer_group.clone(),
                        )),
                        _ => None,
                    })
                    .collect();
                let positions = Arc::new(BlobCheckpointStore::new(
                    container.clone(),
                    &hubs,
                    &b.prefix,
                ));
                Ok(Stores {
                    positions: positions.clone(),
                    state: Arc::new(BlobStateStore::new(container, &b.prefix)),
                    ownership: Some(positions),
                })
            }
        }
    }
}

/// The stores a `[checkpoint]` opens.
pub struct Stores {
    pub positions: Arc<dyn CheckpointStore>,
    pub state: Arc<dyn StateStore>,
    /// Where replicas claim partitions (a blob container); `None` for a local directory,
    /// where one process reads every partition.
    pub ownership: Option<Arc<dyn OwnershipStore>>,
}

impl BlobSettings {
    /// The container client.
    pub fn container(&self) -> anyhow::Result<BlobContainer> {
        let container = match &self.access {
            BlobAccess::ConnectionString {
                connection_string,
                container,
            } => {
                let cs: StorageConnectionString = connection_string.expose().parse()?;
                BlobContainer::from_connection_string(&cs, container, self.timeout)?
            }
            BlobAccess::Url { url, entra } => {
                let credential = match entra {
                    Some((kind, client_id)) => Some(crate::blob::Credential::Entra(
                        crate::source::amqp::entra_credential(*kind, client_id.clone()).map_err(
                            |e| anyhow::anyhow!("Entra ID credential for the blob container: {e}"),
                        )?,
                    )),
                    None => None,
                };
                BlobContainer::new(url.expose(), credential, self.timeout)?
            }
        };
        Ok(container)
    }
}

/// `[checkpoint]` into settings; problems go to `errors` as `file: checkpoint.<field>: …`.
/// A `${VAR}` that cannot be expanded goes to `env`, with its place.
pub(super) fn checkpoint_settings(
    c: &CheckpointConfig,
    base: &Path,
    file: &str,
    env: &Env,
    errors: &mut Vec<String>,
) -> CheckpointSettings {
    let env = env.scope(&["checkpoint"], "checkpoint.");
    let mut error = |what: &str, e: String| errors.push(format!("{file}: checkpoint.{what}: {e}"));
    let mut interval = CheckpointSettings::DEFAULT_INTERVAL;
    set_span("interval", &c.interval, &mut interval, &mut error);
    if interval.is_zero() {
        error("interval", "must be longer than 0".into());
        interval = CheckpointSettings::DEFAULT_INTERVAL;
    }
    let store = match (&c.dir, &c.blob) {
        (Some(dir), None) => match env.text(&["dir"], dir) {
            Some(d) => StoreSettings::Dir(base.join(d)),
            None => StoreSettings::Dir(base.to_path_buf()),
        },
        (None, Some(b)) => StoreSettings::Blob(blob_settings(b, &env, &mut error)),
        (Some(_), Some(b)) => {
            error("dir", "give `dir` or `[checkpoint.blob]`, not both".into());
            StoreSettings::Blob(blob_settings(b, &env, &mut error))
        }
        (None, None) => {
            error(
                "dir",
                "missing: give `dir` (a local directory) or `[checkpoint.blob]` (a blob container)"
                    .into(),
            );
            StoreSettings::Dir(base.to_path_buf())
        }
    };
    let global_results = c
        .global_results
        .unwrap_or(matches!(store, StoreSettings::Blob(_)));
    CheckpointSettings {
        store,
        interval,
        global_results,
    }
}

/// `[checkpoint.blob]`. What is given is judged by the file (`b`), so that a missing
/// variable (reported by `env`) is not reported again as a missing setting.
fn blob_settings(
    b: &BlobConfig,
    env: &Scope<'_>,
    error: &mut dyn FnMut(&str, String),
) -> BlobSettings {
    let text = |key: &str, v: &Option<String>| env.text(&["blob", key], v.as_ref()?);
    let connection_string = text("connection_string", &b.connection_string);
    let container = text("container", &b.container);
    let container_url = text("container_url", &b.container_url);
    let client_id = text("client_id", &b.client_id);
    let prefix = match &b.prefix {
        Some(p) => text("prefix", &Some(p.clone())).unwrap_or_else(|| "hubwatch".into()),
        None => "hubwatch".into(),
    };
    let mut timeout = Duration::from_secs(30);
    set_span("blob.timeout", &b.timeout, &mut timeout, error);
    let prefix = prefix.trim_matches('/').to_string();
    if prefix.is_empty() {
        error("blob.prefix", "must not be empty".into());
    }
    let access = match (&b.connection_string, &b.container_url) {
        (Some(_), None) => {
            // `None`: its variable is missing, reported.
            if let Some(Err(e)) = connection_string
                .as_ref()
                .map(|cs| cs.parse::<StorageConnectionString>())
            {
                error("blob.connection_string", e.to_string());
            }
            let cs = connection_string.unwrap_or_default();
            if b.auth.is_some() {
                error(
                    "blob.auth",
                    "goes with `container_url`; a connection string carries its key".into(),
                );
            }
            let container = match (&b.container, container) {
                (_, Some(c)) => c,
                // Its variable is missing: reported.
                (Some(_), None) => String::new(),
                (None, None) => {
                    error(
                        "blob.container",
                        "missing: the container's name, with `connection_string`".into(),
                    );
                    String::new()
                }
            };
            if !valid_container(&container) && !container.is_empty() {
                error("blob.container", format!("'{container}' is not a container name (3–63 lowercase letters, digits and single hyphens)"));
            }
            BlobAccess::ConnectionString {
                connection_string: Redacted::new(cs),
                container,
            }
        }
        (None, Some(_)) => {
            if b.container.is_some() {
                error(
                    "blob.container",
                    "goes with `connection_string`; `container_url` names the container".into(),
                );
            }
            // `None`: its variable is missing, reported.
            let has_sas = container_url.as_ref().is_some_and(|url| {
                crate::blob::check_url(url).unwrap_or_else(|e| {
                    error("blob.container_url", e.to_string());
                    false
                })
            });
            let url = container_url.unwrap_or_default();
            let entra = match (&b.auth, has_sas) {
                (Some(k), false) => match entra_kind(k) {
                    Some(kind) => Some((kind, client_id)),
                    None => {
                        error("blob.auth", format!("'{k}' is not one of workload_identity, managed_identity, client_secret, azure_cli, default"));
                        None
                    }
                },
                (None, false) => Some((EntraKind::Default, client_id)),
                (Some(_), true) => {
                    error(
                        "blob.auth",
                        "the URL carries a SAS: give one or the other".into(),
                    );
                    None
                }
                (None, true) => None,
            };
            BlobAccess::Url {
                url: Redacted::new(url),
                entra,
            }
        }
        (Some(_), Some(_)) => {
            error(
                "blob.container_url",
                "give `connection_string` or `container_url`, not both".into(),
            );
            BlobAccess::Url {
                url: Redacted::new(String::new()),
                entra: None,
            }
        }
        (None, None) => {
            error(
                "blob",
                "give `connection_string` and `container`, or `container_url`".into(),
            );
            BlobAccess::Url {
                url: Redacted::new(String::new()),
                entra: None,
            }
        }
    };
    BlobSettings {
        access,
        prefix,
        timeout,
    }
}

fn valid_container(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}
