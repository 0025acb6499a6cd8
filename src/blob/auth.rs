//! How requests to a blob container are authorized, and where the container is.
//!
//! - **Shared Key** (an account key, from a storage connection string): every request is
//!   signed with HMAC-SHA256 over its canonical form (the "Authorize with Shared Key"
//!   rules of the Blob service, version 2015-02-21 and later). The key never leaves memory.
//! - **SAS**: a container URL with a shared access signature in its query, appended to every
//!   request as is.
//! - **Entra ID**: a bearer token for `https://storage.azure.com/.default` from
//!   `azure_identity` (workload identity, managed identity, client secret), refreshed by the
//!   credential before it expires.
//!
//! Nothing here formats a key, signature or token into an error or a `Debug` string.

use std::fmt;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The scope of Azure Storage's Entra ID tokens.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// The well-known development account of Azurite (public constants).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";

#[derive(Clone)]
pub enum Credential {
    SharedKey {
        account: String,
        key: Arc<[u8]>,
    },
    /// The SAS query (without `?`).
    Sas(Arc<str>),
    Entra(Arc<dyn TokenCredential>),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::SharedKey { account, .. } => write!(f, "SharedKey({account})"),
            Credential::Sas(_) => f.write_str("Sas(<redacted>)"),
            Credential::Entra(_) => f.write_str("Entra"),
        }
    }
}

impl Credential {
    /// The secret texts this credential holds, to scrub from error texts.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            Credential::SharedKey { key, .. } => {
                vec![base64::engine::general_purpose::STANDARD.encode(key)]
            }
            Credential::Sas(q) => {
                let mut v = vec![q.to_string()];
                v.extend(
                    q.split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .filter(|(k, _)| *k == "sig")
                        .map(|(_, s)| s.to_string()),
                );
                v
            }
            Credential::Entra(_) => Vec::new(),
        }
    }
}

/// Why a storage connection string or container URL was refused. Never quotes a value that
/// may be secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerUrlError {
    #[error("the storage connection string has no {0}")]
    Missing(&'static str),
    #[error("segment {0} of the storage connection string is not 'Key=Value'")]
    Malformed(usize),
    #[error("the storage connection string's AccountKey is not base64")]
    KeyNotBase64,
    #[error("'{0}' is not an http(s) URL of a blob container")]
    NotAContainerUrl(String),
}

/// A storage connection string: the blob endpoint and the account's key.
#[derive(Clone)]
pub struct StorageConnectionString {
    /// `https://<account>.blob.core.windows.net`, or the string's `BlobEndpoint`.
    pub blob_endpoint: String,
    pub account: String,
    pub key: Arc<[u8]>,
}

impl fmt::Debug for StorageConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageConnectionString")
            .field("blob_endpoint", &self.blob_endpoint)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl std::str::FromStr for StorageConnectionString {
    type Err = ContainerUrlError;

    /// `DefaultEndpointsProtocol=https;AccountName=…;AccountKey=…;EndpointSuffix=core.windows.net`,
    /// or with `BlobEndpoint=…` (Azurite, sovereign clouds), or `UseDevelopmentStorage=true`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut fields = std::collections::HashMap::new();
        for (i, seg) in s.split(';').enumerate() {
            let seg = seg.trim();
            if seg.is_empty() {
                continue;
            }
            let (k, v) = seg.split_once('=').ok_or(ContainerUrlError::Malformed(i))?;
            fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        if fields
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            // Azurite's documented development account and key.
            fields.insert("accountname".into(), AZURITE_ACCOUNT.into());
            fields.insert("accountkey".into(), AZURITE_KEY.into());
            fields
                .entry("blobendpoint".into())
                .or_insert_with(|| format!("http://127.0.0.1:10000/{AZURITE_ACCOUNT}"));
        }
        let account = fields
            .get("accountname")
            .cloned()
            .ok_or(ContainerUrlError::Missing("AccountName"))?;
        let key = fields
            .get("accountkey")
            .ok_or(ContainerUrlError::Missing("AccountKey"))?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|_| ContainerUrlError::KeyNotBase64)?;
        let blob_endpoint = match fields.get("blobendpoint") {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => {
                let protocol = fields
                    .get("defaultendpointsprotocol")
                    .map_or("https", String::as_str);
                let suffix = fields
                    .get("endpointsuffix")
                    .map_or("core.windows.net", String::as_str);
                format!("{protocol}://{account}.blob.{suffix}")
            }
        };
        Ok(StorageConnectionString {
            blob_endpoint,
            account,
            key: key.into(),
        })
    }
}

/// Azurite's well-known development key (public, in Microsoft's documentation).
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The Shared Key signature of a request: `Authorization: SharedKey <account>:<this>`.
///
/// `headers` are the request's headers (names lowercase); `path` is the URL's path as sent
/// (percent-encoded); `query` its decoded parameters.
pub fn shared_key_signature(
    key: &[u8],
    account: &str,
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
) -> String {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    // Version 2015-02-21 and later: a zero length is an empty field.
    let length = match get("content-length") {
        "0" => "",
        l => l,
    };
    let mut s = String::with_capacity(256);
    for field in [
        method,
        get("content-encoding"),
        get("content-language"),
        length,
        get("content-md5"),
        get("content-type"),
        get("date"),
        get("if-modified-since"),
        get("if-match"),
        get("if-none-match"),
        get("if-unmodified-since"),
        get("range"),
    ] {
        s.push_str(field);
        s.push('\n');
    }
    let mut ms: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .map(|(k, v)| (k.as_str(), v.trim()))
        .collect();
    ms.sort();
    for (k, v) in ms {
        s.push_str(k);
        s.push(':');
        s.push_str(v);
        s.push('\n');
    }
    s.push('/');
    s.push_str(account);
    s.push_str(path);
    let mut params: Vec<(String, &str)> = query
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    params.sort();
    let mut i = 0;
    while i < params.len() {
        let name = params[i].0.clone();
        let mut values = Vec::new();
        while i < params.len() && params[i].0 == name {
            values.push(params[i].1);
            i += 1;
        }
        s.push('\n');
        s.push_str(&name);
        s.push(':');
        s.push_str(&values.join(","));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(s.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_give_the_endpoint_and_key_and_hide_the_key() {
        let cs: StorageConnectionString = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net"
            .parse()
            .unwrap();
        assert_eq!(cs.blob_endpoint, "https://acct.blob.core.windows.net");
        assert_eq!(&*cs.key, b"secret");
        assert!(!format!("{cs:?}").contains("c2VjcmV0"));

        let dev: StorageConnectionString = "UseDevelopmentStorage=true".parse().unwrap();
        assert_eq!(dev.blob_endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        let custom: StorageConnectionString = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:41234/devstoreaccount1;"
        )
        .parse()
        .unwrap();
        assert_eq!(
            custom.blob_endpoint,
            "http://127.0.0.1:41234/devstoreaccount1"
        );

        let e = "AccountName=a;AccountKey=%%%"
            .parse::<StorageConnectionString>()
            .unwrap_err();
        assert_eq!(e, ContainerUrlError::KeyNotBase64);
        assert!(!e.to_string().contains("%%%"));
        assert_eq!(
            "AccountName=a"
                .parse::<StorageConnectionString>()
                .unwrap_err(),
            ContainerUrlError::Missing("AccountKey")
        );
    }

    /// The canonical string the documentation's rules give for a request with metadata, a
    /// condition and query parameters, signed independently here with the same HMAC.
    #[test]
    fn the_shared_key_string_to_sign_follows_the_documented_layout() {
        let headers: Vec<(String, String)> = [
            ("content-length", "0"),
            ("if-match", "\"0x8D\""),
            ("x-ms-version", "2021-08-06"),
            ("x-ms-date", "Mon, 07 Dec 2026 04:52:06 GMT"),
            ("x-ms-meta-ownerid", " p1 "),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let query = vec![
            ("comp".to_string(), "metadata".to_string()),
            ("Restype".to_string(), "b".to_string()),
            ("restype".to_string(), "a".to_string()),
        ];
        let got = shared_key_signature(b"k", "acct", "PUT", "/c/ns/ownership/0", &query, &headers);
        let want_text = "PUT\n\n\n\n\n\n\n\n\"0x8D\"\n\n\n\n\
            x-ms-date:Mon, 07 Dec 2026 04:52:06 GMT\nx-ms-meta-ownerid:p1\nx-ms-version:2021-08-06\n\
            /acct/c/ns/ownership/0\ncomp:metadata\nrestype:a,b";
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
        mac.update(want_text.as_bytes());
        let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(got, want);
    }
}
