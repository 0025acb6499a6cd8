//! Microsoft Entra ID access tokens on `$cbs` (token type `jwt`), for testing the Entra
//! path of a client against the emulator. Entra signs with RS256 keys only it holds; the
//! emulator instead checks an HS256 signature made with a key both it and the test's token
//! issuer are configured with (`[entra] signing_key`). Everything else is checked as the
//! service would: the audience is Event Hubs (or the namespace), the token is current, and
//! the `$cbs` audience names this namespace. Role assignments are not modelled: a valid
//! token grants the whole namespace.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::sas::{split_uri, Grant};

/// The resource Event Hubs tokens are issued for (scope `https://eventhubs.azure.net/.default`).
pub const EVENT_HUBS_AUDIENCE: &str = "https://eventhubs.azure.net";
/// Clock skew tolerated on `nbf`, as identity libraries do.
const SKEW: Duration = Duration::from_secs(300);
/// Tokens longer than this are refused unread.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a token was refused. Never carries the token or the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error(
        "the token is signed with {0}; the emulator checks HS256 with its [entra] signing_key"
    )]
    Algorithm(String),
    #[error("the token's signature does not match the emulator's [entra] signing_key")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's audience {0:?} is neither {EVENT_HUBS_AUDIENCE} nor this namespace")]
    WrongAudience(Vec<String>),
    #[error("the $cbs audience {0:?} is not in this namespace")]
    WrongNamespace(String),
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    aud: Audience,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
}

/// Checks `token` put on `$cbs` for `audience` (the entity URI) and returns what it grants.
pub fn validate(
    token: &str,
    audience: &str,
    signing_key: &str,
    hosts: &[String],
    now: SystemTime,
) -> Result<Grant, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed("too long"));
    }
    let mut parts = token.trim().split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three dot-separated parts"));
    };
    let header: Header = decode_json(header)?;
    if header.alg != "HS256" {
        return Err(JwtError::Algorithm(header.alg));
    }
    let signature = base64url(signature)?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(signing_key.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(
        token
            .trim()
            .rsplit_once('.')
            .map_or("", |(signed, _)| signed)
            .as_bytes(),
    );
    mac.verify_slice(&signature)
        .map_err(|_| JwtError::BadSignature)?;

    let claims: Claims = decode_json(payload)?;
    let instant = |secs: u64| {
        UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .ok_or(JwtError::Malformed("a time claim is out of range"))
    };
    let expires_at = instant(claims.exp)?;
    if expires_at <= now {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = claims.nbf {
        if instant(nbf)? > now + SKEW {
            return Err(JwtError::NotYetValid);
        }
    }
    let audiences = match claims.aud {
        Audience::One(a) => vec![a],
        Audience::Many(a) => a,
    };
    let accepted = |aud: &str| {
        let aud = aud.trim_end_matches('/');
        aud.eq_ignore_ascii_case(EVENT_HUBS_AUDIENCE) || {
            let (host, path) = split_uri(aud);
            path.is_empty() && hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
        }
    };
    if !audiences.iter().any(|a| accepted(a)) {
        return Err(JwtError::WrongAudience(audiences));
    }
    let (host, _) = split_uri(audience);
    if !hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return Err(JwtError::WrongNamespace(audience.to_string()));
    }
    Ok(Grant {
        scope: String::new(),
        expires_at,
    })
}

fn base64url(part: &str) -> Result<Vec<u8>, JwtError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed("a part is not base64url"))
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, JwtError> {
    serde_json::from_slice(&base64url(part)?)
        .map_err(|_| JwtError::Malformed("a part is not the expected JSON"))
}

/// Makes an HS256 token with `claims` (a JSON object), as a test's token issuer does.
pub fn sign(claims: &serde_json::Value, signing_key: &str) -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signed = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(signing_key.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(signed.as_bytes());
    format!("{signed}.{}", b64(&mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "test-signing-key";
    const ENTITY: &str =
        "amqps://ns.servicebus.windows.net/hub/ConsumerGroups/$Default/Partitions/0";

    fn hosts() -> Vec<String> {
        vec!["ns.servicebus.windows.net".into(), "localhost".into()]
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_current_event_hubs_token_grants_the_namespace() {
        let token = sign(
            &json!({"aud": "https://eventhubs.azure.net", "exp": 2000, "nbf": 900}),
            KEY,
        );
        let grant = validate(&token, ENTITY, KEY, &hosts(), at(1000)).unwrap();
        assert!(grant.covers("hub/ConsumerGroups/$Default/Partitions/0", at(1999)));
        assert!(
            !grant.covers("hub", at(2000)),
            "a grant ends with the token"
        );
        // The namespace as audience, in a list, with a trailing slash.
        let token = sign(
            &json!({"aud": ["x", "https://ns.servicebus.windows.net/"], "exp": 2000}),
            KEY,
        );
        assert!(validate(&token, ENTITY, KEY, &hosts(), at(1000)).is_ok());
    }

    #[test]
    fn bad_tokens_are_refused_with_the_reason() {
        let good = json!({"aud": EVENT_HUBS_AUDIENCE, "exp": 2000});
        let refuse =
            |token: &str, now: u64| validate(token, ENTITY, KEY, &hosts(), at(now)).unwrap_err();
        assert_eq!(
            refuse(&sign(&good, "other-key"), 1000),
            JwtError::BadSignature
        );
        assert_eq!(refuse(&sign(&good, KEY), 2000), JwtError::Expired);
        assert_eq!(
            refuse(
                &sign(
                    &json!({"aud": EVENT_HUBS_AUDIENCE, "exp": 9000, "nbf": 5000}),
                    KEY
                ),
                1000
            ),
            JwtError::NotYetValid
        );
        assert!(matches!(
            refuse(
                &sign(
                    &json!({"aud": "https://storage.azure.com", "exp": 2000}),
                    KEY
                ),
                1000
            ),
            JwtError::WrongAudience(_)
        ));
        let elsewhere = validate(
            &sign(&good, KEY),
            "amqps://other.servicebus.windows.net/hub",
            KEY,
            &hosts(),
            at(1000),
        );
        assert!(matches!(elsewhere, Err(JwtError::WrongNamespace(_))));
        // A tampered payload no longer matches its signature.
        let token = sign(&good, KEY);
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"aud": EVENT_HUBS_AUDIENCE, "exp": 99_999}).to_string());
        parts[1] = &forged;
        assert_eq!(refuse(&parts.join("."), 1000), JwtError::BadSignature);
        assert!(matches!(refuse("a.b", 1000), JwtError::Malformed(_)));
        let far = sign(&json!({"aud": EVENT_HUBS_AUDIENCE, "exp": u64::MAX}), KEY);
        assert_eq!(
            refuse(&far, 1000),
            JwtError::Malformed("a time claim is out of range")
        );
        let none = format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(good.to_string())
        );
        assert_eq!(refuse(&none, 1000), JwtError::Algorithm("none".into()));
        // No error text carries the key.
        assert!(!JwtError::BadSignature.to_string().contains(KEY));
    }
}
