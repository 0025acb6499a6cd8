//! Shared Access Signature tokens: signing (for tests and tools) and the broker-side check
//! the emulator runs on every CBS `put-token`.
//!
//! Token: `SharedAccessSignature sr=<enc uri>&sig=<enc base64 hmac>&se=<unix s>&skn=<rule>`,
//! field order free. The signature is HMAC-SHA256 keyed by the key *text* over
//! `sr-as-sent + "\n" + se`; the Rust SDK lower-cases its percent-encoding, so the string
//! to sign is the `sr` exactly as received, never re-encoded.
//!
//! Nothing here puts a key or a signature into an error: errors name the rule at most, so
//! they can be logged and returned to clients.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;

use super::config::SasKey;

/// What the SDKs leave unencoded (RFC 3986 unreserved).
const SAS_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Longest token accepted; real ones are ~200 bytes.
const MAX_TOKEN_LEN: usize = 4096;

/// Why a token was refused. Every variant maps to CBS status 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    #[error("the token is not a SharedAccessSignature ({0})")]
    Malformed(&'static str),
    #[error("no SAS rule named {0:?} on this namespace")]
    UnknownRule(String),
    #[error("the signature does not match rule {0:?} (wrong key?)")]
    BadSignature(String),
    #[error("the token expired")]
    Expired,
    #[error("the token's resource {resource:?} is not on this namespace")]
    WrongNamespace { resource: String },
    #[error("the token's resource {resource:?} does not cover {audience:?}")]
    AudienceMismatch { resource: String, audience: String },
}

/// An accepted token: what it grants and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The entity path the token covers, lower-cased, no host, no slashes at the ends
    /// (`""` = the whole namespace, `"hub"`, `"hub/consumergroups/$default"`, …).
    pub scope: String,
    pub expires_at: SystemTime,
}

impl Grant {
    /// Whether this grant covers `entity` (a path such as `hub/ConsumerGroups/x/Partitions/0`),
    /// comparing whole path segments case-insensitively.
    pub fn covers(&self, entity: &str, now: SystemTime) -> bool {
        now < self.expires_at && path_prefix(&self.scope, &entity.to_ascii_lowercase())
    }
}

/// Signs `resource` the way the Rust SDK does: `sr` with lower-case percent-encoding, `sig`
/// with the usual upper-case one.
pub fn sign(resource: &str, key_name: &str, key: &str, expiry_unix: u64) -> String {
    let sr = encode_lower(resource);
    let sig = signature(key, &sr, &expiry_unix.to_string());
    format!(
        "SharedAccessSignature sr={sr}&sig={}&se={expiry_unix}&skn={}",
        utf8_percent_encode(&sig, SAS_ENCODE),
        utf8_percent_encode(key_name, SAS_ENCODE)
    )
}

/// Checks `token` put for `audience` against `keys`. `hosts` are the host names (no port)
/// this namespace answers to.
pub fn validate(
    token: &str,
    audience: &str,
    keys: &[SasKey],
    hosts: &[String],
    now: SystemTime,
) -> Result<Grant, SasError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(SasError::Malformed("too long"));
    }
    let body = token
        .trim()
        .strip_prefix("SharedAccessSignature ")
        .ok_or(SasError::Malformed(
            "missing the SharedAccessSignature prefix",
        ))?;
    let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
    for field in body.split('&') {
        let (k, v) = field
            .split_once('=')
            .ok_or(SasError::Malformed("field without '='"))?;
        match k.trim() {
            "sr" => sr = Some(v),
            "sig" => sig = Some(v),
            "se" => se = Some(v),
            "skn" => skn = Some(v),
            _ => {}
        }
    }
    let sr = sr.ok_or(SasError::Malformed("no sr"))?;
    let sig = sig.ok_or(SasError::Malformed("no sig"))?;
    let se = se.ok_or(SasError::Malformed("no se"))?;
    let skn = decode(skn.ok_or(SasError::Malformed("no skn"))?)?;

    let rule = keys
        .iter()
        .find(|k| k.name == skn)
        .ok_or_else(|| SasError::UnknownRule(skn.clone()))?;
    let expected = signature(&rule.key, sr, se);
    if !constant_time_eq(expected.as_bytes(), decode(sig)?.as_bytes()) {
        return Err(SasError::BadSignature(skn));
    }
    let expiry: u64 = se
        .parse()
        .map_err(|_| SasError::Malformed("se is not a number"))?;
    let expires_at = UNIX_EPOCH + std::time::Duration::from_secs(expiry);
    if expires_at <= now {
        return Err(SasError::Expired);
    }

    let resource = decode(sr)?;
    let (host, scope) = split_uri(&resource);
    if !hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return Err(SasError::WrongNamespace { resource });
    }
    let (aud_host, aud_path) = split_uri(audience);
    if !aud_host.eq_ignore_ascii_case(host)
        && !hosts.iter().any(|h| h.eq_ignore_ascii_case(aud_host))
        || !path_prefix(&scope, &aud_path)
    {
        return Err(SasError::AudienceMismatch {
            resource,
            audience: audience.to_string(),
        });
    }
    Ok(Grant { scope, expires_at })
}

/// `scheme://host[:port]/a/b/` → (`host`, `a/b` lower-cased). A bare path has no host.
pub fn split_uri(uri: &str) -> (&str, String) {
    let rest = match uri.split_once("://") {
        Some((_, rest)) => rest,
        None => return ("", uri.trim_matches('/').to_ascii_lowercase()),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = match authority.strip_prefix('[') {
        // IPv6 literal: keep it bracket-less.
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.split(':').next().unwrap_or(authority),
    };
    (host, path.trim_matches('/').to_ascii_lowercase())
}

fn path_prefix(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

fn signature(key: &str, sr_as_sent: &str, se: &str) -> String {
    // new_from_slice only fails for fixed-size keys; HMAC takes any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(sr_as_sent.as_bytes());
    mac.update(b"\n");
    mac.update(se.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn encode_lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for piece in utf8_percent_encode(s, SAS_ENCODE) {
        if piece.starts_with('%') {
            out.push_str(&piece.to_ascii_lowercase());
        } else {
            out.push_str(piece);
        }
    }
    out
}

fn decode(s: &str) -> Result<String, SasError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| SasError::Malformed("bad percent-encoding"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<SasKey> {
        vec![SasKey {
            name: "RootManageSharedAccessKey".into(),
            key: "mykey".into(),
        }]
    }

    fn hosts() -> Vec<String> {
        vec!["example.servicebus.windows.net".into(), "localhost".into()]
    }

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(unix)
    }

    #[test]
    fn signs_the_rust_sdk_reference_vector() {
        let token = sign(
            "amqps://example.servicebus.windows.net/myhub",
            "RootManageSharedAccessKey",
            "mykey",
            1_700_000_000,
        );
        assert_eq!(
            token,
            "SharedAccessSignature sr=amqps%3a%2f%2fexample.servicebus.windows.net%2fmyhub\
             &sig=SgJoMn7K6nWDCF6e1%2BfsxrmJLsorqPeZ3B8N1uQ31dc%3D&se=1700000000\
             &skn=RootManageSharedAccessKey"
        );
    }

    #[test]
    fn accepts_a_valid_token_and_scopes_it() {
        let t = sign(
            "amqps://example.servicebus.windows.net/myhub",
            "RootManageSharedAccessKey",
            "mykey",
            2_000_000_000,
        );
        let aud =
            "amqps://example.servicebus.windows.net/myhub/ConsumerGroups/$Default/Partitions/0";
        let g = validate(&t, aud, &keys(), &hosts(), at(1_700_000_000)).unwrap();
        assert_eq!(g.scope, "myhub");
        assert!(g.covers(
            "MyHub/ConsumerGroups/$Default/Partitions/0",
            at(1_700_000_000)
        ));
        assert!(!g.covers("myhub2/Partitions/0", at(1_700_000_000)));
        assert!(!g.covers("myhub", at(2_000_000_001)));
    }

    #[test]
    fn refuses_wrong_key_expiry_namespace_and_audience() {
        let now = at(1_700_000_000);
        let aud = "sb://localhost/myhub";
        let wrong = sign(
            "sb://localhost/myhub",
            "RootManageSharedAccessKey",
            "other",
            2_000_000_000,
        );
        let err = validate(&wrong, aud, &keys(), &hosts(), now).unwrap_err();
        assert_eq!(
            err,
            SasError::BadSignature("RootManageSharedAccessKey".into())
        );
        assert!(!err.to_string().contains("mykey") && !err.to_string().contains("other"));

        let old = sign(
            "sb://localhost/myhub",
            "RootManageSharedAccessKey",
            "mykey",
            1_600_000_000,
        );
        assert_eq!(
            validate(&old, aud, &keys(), &hosts(), now),
            Err(SasError::Expired)
        );

        let rule = sign("sb://localhost/myhub", "Listen", "mykey", 2_000_000_000);
        assert!(matches!(
            validate(&rule, aud, &keys(), &hosts(), now),
            Err(SasError::UnknownRule(_))
        ));

        let ns = sign(
            "sb://elsewhere/myhub",
            "RootManageSharedAccessKey",
            "mykey",
            2_000_000_000,
        );
        assert!(matches!(
            validate(&ns, aud, &keys(), &hosts(), now),
            Err(SasError::WrongNamespace { .. })
        ));

        let other = sign(
            "sb://localhost/otherhub",
            "RootManageSharedAccessKey",
            "mykey",
            2_000_000_000,
        );
        assert!(matches!(
            validate(&other, aud, &keys(), &hosts(), now),
            Err(SasError::AudienceMismatch { .. })
        ));

        assert!(matches!(
            validate("Bearer x", aud, &keys(), &hosts(), now),
            Err(SasError::Malformed(_))
        ));
    }

    #[test]
    fn namespace_token_covers_every_hub_and_ports_are_ignored() {
        let t = sign(
            "sb://localhost:5672/",
            "RootManageSharedAccessKey",
            "mykey",
            2_000_000_000,
        );
        let g = validate(&t, "amqp://localhost:5672/hub", &keys(), &hosts(), at(1)).unwrap();
        assert_eq!(g.scope, "");
        assert!(g.covers("anything/Partitions/1", at(1)));
        assert_eq!(
            split_uri("amqps://[::1]:5671/A/b/"),
            ("::1", "a/b".to_string())
        );
    }
}
