//! A client for one Azure Blob storage container: the handful of operations that
//! checkpoints, partition ownership and window-state snapshots need (get, conditional put,
//! conditional metadata update, list with metadata), over the Blob service's REST API.
//!
//! Why not the Azure SDK's blob crate: it authorizes only with SAS or Entra ID (no Shared
//! Key, so no connection strings, which most users of the Event Hubs processors hold), and
//! its versions follow the Event Hubs crate's. These few calls, signed here, keep every
//! kind of credential and add no dependency (the HTTP client is the one `azure_core`
//! already brings).
//!
//! - `auth.rs`: Shared Key signing, SAS, Entra ID tokens; storage connection strings.
//! - `list.rs`: reading `List Blobs` responses.
//!
//! Every error names the operation and the blob, and the HTTP status and the service's
//! error code where there is one; none contains a key, a signature or a token.

pub mod auth;
mod list;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

pub use auth::{ContainerUrlError, Credential, StorageConnectionString};

/// The Blob service version the requests ask for.
const API_VERSION: &str = "2021-08-06";

/// A blob name's characters kept as they are in the URL (the rest percent-encoded, as the
/// Azure SDKs do).
const NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// The version of a blob the service reports: its ETag and when it last changed (the
/// server's clock, which ownership expiry is measured against).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobProps {
    pub etag: String,
    pub last_modified: SystemTime,
}

/// A blob found by a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobItem {
    pub name: String,
    pub props: BlobProps,
    /// Metadata, keys lowercase.
    pub metadata: Vec<(String, String)>,
}

impl BlobItem {
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The precondition of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Last writer wins.
    None,
    /// Only if the blob is still at this version (`If-Match`).
    Matches(String),
    /// Only if no blob of this name exists (`If-None-Match: *`).
    Absent,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The service answered with an error status.
    #[error("{op} {blob}: HTTP {status}{}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Status {
        op: &'static str,
        blob: String,
        status: u16,
        /// `x-ms-error-code`, e.g. `ConditionNotMet`, `AuthenticationFailed`.
        code: Option<String>,
    },
    /// No answer: connection, TLS, timeout, or a token that could not be had.
    #[error("{op} {blob}: {detail}")]
    Transport {
        op: &'static str,
        blob: String,
        detail: String,
    },
    /// An answer that could not be read.
    #[error("{op} {blob}: unexpected response: {detail}")]
    Protocol {
        op: &'static str,
        blob: String,
        detail: String,
    },
}

impl BlobError {
    pub fn status(&self) -> Option<u16> {
        match self {
            BlobError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Another writer got there first: the blob changed (`412`) or already exists (`409`).
    pub fn is_conflict(&self) -> bool {
        matches!(self.status(), Some(409 | 412))
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// The credentials were refused or lack access: retrying will not help.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }
}

/// One container, shared by every store that keeps blobs in it (cheap to clone).
#[derive(Clone)]
pub struct BlobContainer {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `https://<account>.blob.core.windows.net/<container>` (path-style for Azurite), no
    /// query.
    url: Url,
    credential: Credential,
    /// Blobs per listing page (`None`: the service's default, 5000).
    page_size: Option<u32>,
}

impl std::fmt::Debug for BlobContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobContainer({})", self.inner.url)
    }
}

impl BlobContainer {
    /// The container at `url` (`https://acct.blob.core.windows.net/container`, a SAS query
    /// allowed, taken as the credential if `credential` is `None`).
    pub fn new(
        url: &str,
        credential: Option<Credential>,
        timeout: Duration,
    ) -> Result<BlobContainer, ContainerUrlError> {
        let (parsed, sas) = parse_url(url)?;
        let credential = match (credential, sas) {
            (Some(c), _) => c,
            (None, Some(q)) => Credential::Sas(Arc::from(q)),
            (None, _) => {
                return Err(ContainerUrlError::Missing(
                    "credential (a SAS query, a key or Entra ID)",
                ))
            }
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|_| ContainerUrlError::NotAContainerUrl(strip_query(url).to_string()))?;
        Ok(BlobContainer {
            inner: Arc::new(Inner {
                http,
                url: parsed,
                credential,
                page_size: None,
            }),
        })
    }

    /// The container of a storage connection string.
    pub fn from_connection_string(
        cs: &StorageConnectionString,
        container: &str,
        timeout: Duration,
    ) -> Result<BlobContainer, ContainerUrlError> {
        let url = format!("{}/{container}", cs.blob_endpoint);
        let credential = Credential::SharedKey {
            account: cs.account.clone(),
            key: cs.key.clone(),
        };
        BlobContainer::new(&url, Some(credential), timeout)
    }

    /// The same container, listed `n` blobs per page.
    pub fn with_page_size(self, n: u32) -> BlobContainer {
        let inner = &*self.inner;
        BlobContainer {
            inner: Arc::new(Inner {
                http: inner.http.clone(),
                url: inner.url.clone(),
                credential: inner.credential.clone(),
                page_size: Some(n.max(1)),
            }),
        }
    }

    /// `https://…/<container>`, for messages (never a SAS query).
    pub fn url(&self) -> &str {
        self.inner.url.as_str()
    }

    /// Where a blob is, for messages.
    pub fn location(&self, name: &str) -> String {
        format!("{}/{name}", self.inner.url)
    }

    /// The secret texts of the credential, to scrub from any error text.
    pub fn secrets(&self) -> Vec<String> {
        self.inner.credential.secrets()
    }

    /// Creates the container if it does not exist (tests and first runs; a production
    /// container is usually made by whoever grants access to it).
    pub async fn create_if_missing(&self) -> Result<(), BlobError> {
        let r = self
            .send(
                "creating the container",
                Method::PUT,
                None,
                &[("restype", "container")],
                HeaderMap::new(),
                Vec::new(),
            )
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(409) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A blob's content and version, or `None` if there is none.
    pub async fn get(&self, name: &str) -> Result<Option<(Vec<u8>, BlobProps)>, BlobError> {
        let op = "reading";
        let r = self
            .send(
                op,
                Method::GET,
                Some(name),
                &[],
                HeaderMap::new(),
                Vec::new(),
            )
            .await;
        let resp = match r {
            Ok(resp) => resp,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let props = props_of(op, name, resp.headers())?;
        let body = resp.bytes().await.map_err(|e| BlobError::Transport {
            op,
            blob: name.to_string(),
            detail: e.to_string(),
        })?;
        Ok(Some((body.to_vec(), props)))
    }

    /// Writes a whole block blob (replacing any) with these metadata, if `condition` holds.
    pub async fn put(
        &self,
        name: &str,
        body: Vec<u8>,
        metadata: &[(&str, &str)],
        condition: &Condition,
    ) -> Result<BlobProps, BlobError> {
        let op = "writing";
        let mut headers = meta_headers(metadata);
        headers.insert("x-ms-blob-type", HeaderValue::from_static("BlockBlob"));
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        condition_headers(&mut headers, condition);
        let resp = self
            .send(op, Method::PUT, Some(name), &[], headers, body)
            .await?;
        props_of(op, name, resp.headers())
    }

    /// Replaces a blob's metadata (all of it), if `condition` holds.
    pub async fn set_metadata(
        &self,
        name: &str,
        metadata: &[(&str, &str)],
        condition: &Condition,
    ) -> Result<BlobProps, BlobError> {
        let op = "setting the metadata of";
        let mut headers = meta_headers(metadata);
        condition_headers(&mut headers, condition);
        let resp = self
            .send(
                op,
                Method::PUT,
                Some(name),
                &[("comp", "metadata")],
                headers,
                Vec::new(),
            )
            .await?;
        props_of(op, name, resp.headers())
    }

    /// Every blob whose name starts with `prefix`, with its metadata (all pages).
    pub async fn list(&self, prefix: &str) -> Result<Vec<BlobItem>, BlobError> {
        let op = "listing";
        let mut items = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut query = vec![
                ("restype", "container"),
                ("comp", "list"),
                ("include", "metadata"),
                ("prefix", prefix),
            ];
            let size = self.inner.page_size.map(|n| n.to_string());
            if let Some(n) = &size {
                query.push(("maxresults", n.as_str()));
            }
            if let Some(m) = &marker {
                query.push(("marker", m.as_str()));
            }
            let resp = self
                .send(op, Method::GET, None, &query, HeaderMap::new(), Vec::new())
                .await
                .map_err(|e| relabel(e, prefix))?;
            let text = resp.text().await.map_err(|e| BlobError::Transport {
                op,
                blob: format!("{prefix}*"),
                detail: e.to_string(),
            })?;
            let page = list::parse(&text).map_err(|detail| BlobError::Protocol {
                op,
                blob: format!("{prefix}*"),
                detail,
            })?;
            items.extend(page.items);
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => return Ok(items),
            }
        }
    }

    /// Sends one request, authorized; an error status becomes [`BlobError::Status`].
    async fn send(
        &self,
        op: &'static str,
        method: Method,
        blob: Option<&str>,
        query: &[(&str, &str)],
        mut headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, BlobError> {
        let inner = &*self.inner;
        let what = blob.map_or_else(|| inner.url.to_string(), |b| self.location(b));
        let mut url = inner.url.clone();
        if let Some(name) = blob {
            let encoded = utf8_percent_encode(name, NAME).to_string();
            url.set_path(&format!("{}/{encoded}", inner.url.path()));
        }
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        headers.insert("x-ms-version", HeaderValue::from_static(API_VERSION));
        let date = httpdate::fmt_http_date(SystemTime::now());
        headers.insert(
            "x-ms-date",
            HeaderValue::from_str(&date).expect("an HTTP date is a header value"),
        );
        headers.insert(
            reqwest::header::CONTENT_LENGTH,
            HeaderValue::from(body.len() as u64),
        );
        match &inner.credential {
            Credential::SharedKey { account, key } => {
                let listed: Vec<(String, String)> = headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_string(),
                            v.to_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                let params: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let signature = auth::shared_key_signature(
                    key,
                    account,
                    method.as_str(),
                    url.path(),
                    &params,
                    &listed,
                );
                let value = HeaderValue::from_str(&format!("SharedKey {account}:{signature}"))
                    .expect("base64 is a header value");
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
            Credential::Sas(sas) => {
                let q = match url.query() {
                    Some(q) if !q.is_empty() => format!("{q}&{sas}"),
                    _ => sas.to_string(),
                };
                url.set_query(Some(&q));
            }
            Credential::Entra(credential) => {
                let token = credential
                    .get_token(&[auth::STORAGE_SCOPE], None)
                    .await
                    .map_err(|e| BlobError::Transport {
                        op,
                        blob: what.clone(),
                        detail: format!("getting an Entra ID token for Azure Storage: {e}"),
                    })?;
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.token.secret()))
                    .map_err(|_| BlobError::Transport {
                        op,
                        blob: what.clone(),
                        detail: "the Entra ID token is not a header value".into(),
                    })?;
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
        }
        let started = std::time::Instant::now();
        tracing::debug!(op, blob = %what, "blob request");
        let resp = inner
            .http
            .request(method, url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| BlobError::Transport {
                op,
                blob: what.clone(),
                // reqwest's text names the URL, whose query may hold a SAS: drop it.
                detail: e.without_url().to_string(),
            })?;
        tracing::debug!(op, blob = %what, status = resp.status().as_u16(), elapsed = ?started.elapsed(), "blob response");
        if resp.status().is_success() {
            return Ok(resp);
        }
        let code = resp
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Err(BlobError::Status {
            op,
            blob: what,
            status: resp.status().as_u16(),
            code,
        })
    }
}

fn relabel(e: BlobError, prefix: &str) -> BlobError {
    match e {
        BlobError::Status {
            op, status, code, ..
        } => BlobError::Status {
            op,
            blob: format!("{prefix}*"),
            status,
            code,
        },
        other => other,
    }
}

fn meta_headers(metadata: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (k, v) in metadata {
        let name = HeaderName::from_bytes(format!("x-ms-meta-{k}").as_bytes())
            .expect("metadata keys are lowercase identifiers");
        // Metadata values are ASCII here (positions, owner ids); anything else is dropped
        // rather than sent mangled.
        if let Ok(value) = HeaderValue::from_str(v) {
            headers.insert(name, value);
        }
    }
    headers
}

fn condition_headers(headers: &mut HeaderMap, condition: &Condition) {
    match condition {
        Condition::None => {}
        Condition::Matches(etag) => {
            if let Ok(v) = HeaderValue::from_str(etag) {
                headers.insert(reqwest::header::IF_MATCH, v);
            }
        }
        Condition::Absent => {
            headers.insert(
                reqwest::header::IF_NONE_MATCH,
                HeaderValue::from_static("*"),
            );
        }
    }
}

fn props_of(op: &'static str, blob: &str, headers: &HeaderMap) -> Result<BlobProps, BlobError> {
    let get = |h: reqwest::header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let protocol = |detail: &str| BlobError::Protocol {
        op,
        blob: blob.to_string(),
        detail: detail.to_string(),
    };
    let etag = get(reqwest::header::ETAG).ok_or_else(|| protocol("no ETag"))?;
    let modified =
        get(reqwest::header::LAST_MODIFIED).ok_or_else(|| protocol("no Last-Modified"))?;
    let last_modified = httpdate::parse_http_date(&modified)
        .map_err(|_| protocol("Last-Modified is not an HTTP date"))?;
    Ok(BlobProps {
        etag,
        last_modified,
    })
}

/// Checks a container URL; returns whether it carries a SAS query.
pub fn check_url(url: &str) -> Result<bool, ContainerUrlError> {
    parse_url(url).map(|(_, sas)| sas.is_some())
}

/// The container URL without its query, and the query (a SAS) if it has one.
fn parse_url(url: &str) -> Result<(Url, Option<String>), ContainerUrlError> {
    let bad = || ContainerUrlError::NotAContainerUrl(strip_query(url).to_string());
    let mut parsed = Url::parse(url).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(bad());
    }
    let sas = parsed.query().filter(|q| !q.is_empty()).map(str::to_string);
    parsed.set_query(None);
    let path = parsed.path().trim_end_matches('/').to_string();
    if path.is_empty() {
        return Err(bad());
    }
    parsed.set_path(&path);
    Ok((parsed, sas))
}

fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}
