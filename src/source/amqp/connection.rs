//! Event Hubs connection strings: parsing, the emulator endpoint, and redaction.
//!
//! Accepted forms (keys case-insensitive, split on the first `=` only, unknown keys ignored,
//! as the Azure SDKs do):
//!
//! ```text
//! Endpoint=sb://<ns>.servicebus.windows.net/;SharedAccessKeyName=<rule>;SharedAccessKey=<key>[;EntityPath=<hub>]
//! Endpoint=sb://<ns>.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=..&sig=..&se=..&skn=..
//! Endpoint=sb://localhost[:port];SharedAccessKeyName=..;SharedAccessKey=..;UseDevelopmentEmulator=true
//! ```
//!
//! We parse it ourselves although the SDK has a parser too: we need the emulator flag (the
//! SDK ignores it and would dial TLS on 5671), early configuration errors, the namespace and
//! hub for messages, and the secret texts so that they can be scrubbed from any error text.
//! The key and the signature live in [`Redacted`], whose `Debug` never shows them, and no
//! error of this module quotes a value that could hold one.

use std::fmt;

use azure_core::http::Url;

/// The plain-AMQP port of the Event Hubs emulator.
pub const EMULATOR_PORT: u16 = 5672;

/// A secret text: shown as `<redacted>` by `Debug`; read it only with [`Redacted::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(String);

impl Redacted {
    pub fn new(s: impl Into<String>) -> Redacted {
        Redacted(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How a connection string authenticates.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SasAuth {
    /// A rule name and its key: the SDK signs (and refreshes) tokens itself.
    Key { name: String, key: Redacted },
    /// A pre-formed `SharedAccessSignature …` token: used as is, never refreshed.
    Signature(Redacted),
}

/// A parsed connection string. `Debug` shows everything but the secrets.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConnectionString {
    /// The `Endpoint` value as given, e.g. `sb://ns.servicebus.windows.net/`.
    pub endpoint: String,
    /// The endpoint's host: the fully qualified namespace.
    pub namespace: String,
    /// The endpoint's explicit port, if any.
    pub port: Option<u16>,
    pub auth: SasAuth,
    /// `EntityPath`: the event hub the string is scoped to.
    pub entity_path: Option<String>,
    /// `UseDevelopmentEmulator=true`: plain AMQP (no TLS) to the endpoint's host.
    pub use_development_emulator: bool,
    /// The whole text, handed to the SDK as is.
    raw: Redacted,
}

/// Why a connection string was refused. Never quotes a value that may be secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    #[error("the connection string is empty")]
    Empty,
    /// The segment is not quoted: it may hold the key.
    #[error("segment {index} of the connection string is not 'Key=Value'")]
    Malformed { index: usize },
    #[error("'{key}' has an empty value")]
    EmptyValue { key: &'static str },
    #[error("'Endpoint' is missing")]
    MissingEndpoint,
    #[error("'Endpoint' {endpoint:?} is not a URL with a host")]
    InvalidEndpoint { endpoint: String },
    #[error(
        "neither 'SharedAccessKeyName' with 'SharedAccessKey' nor 'SharedAccessSignature' is given"
    )]
    MissingCredential,
    #[error("'UseDevelopmentEmulator' must be true or false, not {value:?}")]
    InvalidEmulatorFlag { value: String },
}

impl std::str::FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<ConnectionString, ConnectionStringError> {
        if s.trim().is_empty() {
            return Err(ConnectionStringError::Empty);
        }
        let mut endpoint = None;
        let mut key_name = None;
        let mut key = None;
        let mut signature = None;
        let mut entity_path = None;
        let mut emulator = false;
        for (index, part) in s.split(';').enumerate() {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            // The first '=' only: keys end in '=' padding and signatures hold several.
            let (k, v) = part
                .split_once('=')
                .ok_or(ConnectionStringError::Malformed { index })?;
            let k = k.trim();
            let v = v.trim();
            let known: Option<&'static str> = [
                "Endpoint",
                "SharedAccessKeyName",
                "SharedAccessKey",
                "SharedAccessSignature",
                "EntityPath",
                "UseDevelopmentEmulator",
            ]
            .into_iter()
            .find(|name| name.eq_ignore_ascii_case(k));
            let Some(name) = known else {
                continue; // Unknown keys are ignored, for forward compatibility.
            };
            if v.is_empty() {
                // An empty key would even sign (a zero-length HMAC) and fail only as a 401.
                return Err(ConnectionStringError::EmptyValue { key: name });
            }
            match name {
                "Endpoint" => endpoint = Some(v.to_string()),
                "SharedAccessKeyName" => key_name = Some(v.to_string()),
                "SharedAccessKey" => key = Some(Redacted::new(v)),
                "SharedAccessSignature" => signature = Some(Redacted::new(v)),
                "EntityPath" => entity_path = Some(v.to_string()),
                _ => {
                    emulator = match v.to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(ConnectionStringError::InvalidEmulatorFlag {
                                value: v.to_string(),
                            })
                        }
                    }
                }
            }
        }
        let endpoint = endpoint.ok_or(ConnectionStringError::MissingEndpoint)?;
        let invalid = || ConnectionStringError::InvalidEndpoint {
            endpoint: endpoint.clone(),
        };
        let url = Url::parse(&endpoint).map_err(|_| invalid())?;
        let namespace = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(invalid)?
            .to_string();
        let auth = match (key_name, key, signature) {
            (Some(name), Some(key), _) => SasAuth::Key { name, key },
            (_, _, Some(sig)) => SasAuth::Signature(sig),
            _ => return Err(ConnectionStringError::MissingCredential),
        };
        Ok(ConnectionString {
            port: url.port(),
            endpoint,
            namespace,
            auth,
            entity_path,
            use_development_emulator: emulator,
            raw: Redacted::new(s),
        })
    }
}

impl ConnectionString {
    /// The whole connection string, for the SDK.
    pub fn expose(&self) -> &str {
        self.raw.expose()
    }

    /// Where to dial instead of `amqps://<namespace>:5671`: with the emulator flag, plain AMQP
    /// to the endpoint's host and port (default 5672). The SDK decides TLS by this scheme.
    pub fn custom_endpoint(&self) -> Option<String> {
        self.use_development_emulator.then(|| {
            format!(
                "amqp://{}:{}/",
                self.namespace,
                self.port.unwrap_or(EMULATOR_PORT)
            )
        })
    }

    /// The secret texts this string holds (the key, or the signature and its `sig` part), so
    /// that error messages can be scrubbed of them.
    pub fn secrets(&self) -> Vec<String> {
        match &self.auth {
            SasAuth::Key { key, .. } => vec![key.expose().to_string()],
            SasAuth::Signature(token) => {
                let mut v = vec![token.expose().to_string()];
                let body = token
                    .expose()
                    .trim_start_matches("SharedAccessSignature")
                    .trim();
                v.extend(
                    body.split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .filter(|(k, _)| k.eq_ignore_ascii_case("sig"))
                        .map(|(_, sig)| sig.to_string()),
                );
                v
            }
        }
    }
}

/// Replaces every occurrence of each secret in `text` with `<redacted>`. Secrets shorter
/// than 4 characters are left alone: replacing them would mangle ordinary words.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "<redacted>");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS10ZXh0PT0=";

    fn parse(s: &str) -> Result<ConnectionString, ConnectionStringError> {
        s.parse()
    }

    #[test]
    fn key_form_with_entity_path() {
        let cs = parse(&format!(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={KEY};EntityPath=hub"
        ))
        .unwrap();
        assert_eq!(cs.namespace, "ns.servicebus.windows.net");
        assert_eq!(cs.port, None);
        assert_eq!(cs.entity_path.as_deref(), Some("hub"));
        assert!(!cs.use_development_emulator);
        assert_eq!(cs.custom_endpoint(), None);
        match &cs.auth {
            SasAuth::Key { name, key } => {
                assert_eq!(name, "Root");
                assert_eq!(key.expose(), KEY, "the trailing '=' padding is kept");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(cs.secrets(), vec![KEY.to_string()]);
    }

    #[test]
    fn keys_are_case_insensitive_and_unknown_keys_ignored() {
        let cs = parse(&format!(
            " endpoint=sb://ns.servicebus.windows.net/ ; sharedaccesskeyname=r;SHAREDACCESSKEY={KEY};TransportType=Amqp;;"
        ))
        .unwrap();
        assert_eq!(cs.namespace, "ns.servicebus.windows.net");
        assert!(matches!(cs.auth, SasAuth::Key { .. }));
        assert_eq!(cs.entity_path, None);
    }

    #[test]
    fn signature_form() {
        let token = "SharedAccessSignature sr=amqps%3a%2f%2fns.servicebus.windows.net%2fhub&sig=SgJoMn7K6nWDCF6e1%2BfsxrmJLsorqPeZ3B8N1uQ31dc%3D&se=1700000000&skn=Root";
        let cs = parse(&format!(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature={token}"
        ))
        .unwrap();
        assert_eq!(cs.auth, SasAuth::Signature(Redacted::new(token)));
        let secrets = cs.secrets();
        assert!(secrets.contains(&token.to_string()));
        assert!(secrets.contains(&"SgJoMn7K6nWDCF6e1%2BfsxrmJLsorqPeZ3B8N1uQ31dc%3D".to_string()));
        let dbg = format!("{cs:?}");
        assert!(!dbg.contains("SgJoMn7K"), "{dbg}");
    }

    #[test]
    fn emulator_gets_a_plain_amqp_endpoint() {
        let cs = parse("Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;").unwrap();
        assert!(cs.use_development_emulator);
        assert_eq!(
            cs.custom_endpoint().as_deref(),
            Some("amqp://localhost:5672/")
        );

        let cs = parse("Endpoint=sb://127.0.0.1:41234/;SharedAccessKeyName=R;SharedAccessKey=k;usedevelopmentemulator=TRUE").unwrap();
        assert_eq!(
            cs.custom_endpoint().as_deref(),
            Some("amqp://127.0.0.1:41234/")
        );

        let e = parse(
            "Endpoint=sb://h;SharedAccessKeyName=R;SharedAccessKey=k;UseDevelopmentEmulator=yes",
        )
        .unwrap_err();
        assert!(e.to_string().contains("yes"));
    }

    #[test]
    fn debug_redacts_the_key_and_the_raw_text() {
        let cs = parse(&format!(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={KEY}"
        ))
        .unwrap();
        let dbg = format!("{cs:?}");
        assert!(!dbg.contains(KEY), "{dbg}");
        assert!(dbg.contains("<redacted>") && dbg.contains("Root"), "{dbg}");
    }

    #[test]
    fn errors_never_quote_secrets() {
        let cases = [
            ("", ConnectionStringError::Empty),
            (
                // A key pasted without its name (and without '=' padding).
                "Endpoint=sb://ns/;c2VjcmV0LWtleS10ZXh0PT0",
                ConnectionStringError::Malformed { index: 1 },
            ),
            (
                "Endpoint=sb://ns/;SharedAccessKeyName=R;SharedAccessKey=",
                ConnectionStringError::EmptyValue {
                    key: "SharedAccessKey",
                },
            ),
            (
                &format!("SharedAccessKeyName=R;SharedAccessKey={KEY}"),
                ConnectionStringError::MissingEndpoint,
            ),
            (
                "Endpoint=sb://ns/;SharedAccessKeyName=R",
                ConnectionStringError::MissingCredential,
            ),
            (
                &format!("Endpoint=not a url;SharedAccessKeyName=R;SharedAccessKey={KEY}"),
                ConnectionStringError::InvalidEndpoint {
                    endpoint: "not a url".to_string(),
                },
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e, want, "{text}");
            assert!(!e.to_string().contains(KEY.trim_end_matches('=')), "{e}");
        }
    }

    #[test]
    fn scrub_replaces_every_secret() {
        let secrets = vec![KEY.to_string(), "abc".to_string()];
        assert_eq!(
            scrub(&format!("x {KEY} y {KEY} abc"), &secrets),
            "x <redacted> y <redacted> abc"
        );
    }
}
