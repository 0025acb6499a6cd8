//! Basic authentication on the admin server, as Prometheus exporters do it
//! (exporter-toolkit's `basic_auth_users`): users with bcrypt hashes (`htpasswd -nBC 10`),
//! checked on every path except the probes'.
//!
//! bcrypt is slow on purpose (tens of milliseconds of CPU at cost 10), so a pair that was
//! checked once is remembered (by a SHA-256 of user, password and hash, never the password
//! itself) and a scraper pays it once, not per scrape; checks run on a blocking thread, one
//! at a time, so a client trying passwords costs at most one core and never the engine. An
//! unknown user is checked against a hash of the same cost, so that the answer's time does
//! not tell which users exist.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::events::{AdminMetrics, Unauthorized};

/// Checked pairs remembered at most (then forgotten all at once: a client trying many
/// passwords must not grow memory).
const REMEMBERED: usize = 1024;

pub struct BasicAuth {
    /// User → bcrypt hash.
    users: HashMap<String, String>,
    /// Checked against for unknown users.
    decoy: String,
    /// SHA-256 of user, password and hash of pairs that matched.
    good: Mutex<HashSet<[u8; 32]>>,
    /// One bcrypt check at a time.
    gate: tokio::sync::Semaphore,
    metrics: Arc<AdminMetrics>,
}

impl BasicAuth {
    /// `users` are checked already (`config`: every hash parses).
    pub fn new(users: &[(String, String)], metrics: Arc<AdminMetrics>) -> BasicAuth {
        let cost = users
            .iter()
            .filter_map(|(_, h)| h.parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let decoy = bcrypt::hash("hubwatch: no such user", cost)
            .unwrap_or_else(|_| users.first().map(|u| u.1.clone()).unwrap_or_default());
        BasicAuth {
            users: users.iter().cloned().collect(),
            decoy,
            good: Mutex::default(),
            gate: tokio::sync::Semaphore::new(1),
            metrics,
        }
    }

    /// Whether the request's `Authorization` names a user with its password.
    async fn check(&self, headers: &HeaderMap) -> Result<(), Unauthorized> {
        let (user, password) = credentials(headers).ok_or(Unauthorized::Missing)?;
        let known = self.users.get(&user);
        let hash = known.unwrap_or(&self.decoy).clone();
        let key: [u8; 32] = {
            let mut h = Sha256::new();
            for part in [user.as_bytes(), password.as_bytes(), hash.as_bytes()] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part);
            }
            h.finalize().into()
        };
        if known.is_some() && self.remembered(&key) {
            return Ok(());
        }
        let matched = {
            let _one = self
                .gate
                .acquire()
                .await
                .map_err(|_| Unauthorized::Invalid)?;
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false)
        };
        if !(matched && known.is_some()) {
            return Err(Unauthorized::Invalid);
        }
        let mut good = self.good.lock().unwrap_or_else(|p| p.into_inner());
        if good.len() >= REMEMBERED {
            good.clear();
        }
        good.insert(key);
        Ok(())
    }

    fn remembered(&self, key: &[u8; 32]) -> bool {
        self.good
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }
}

/// The user and password of a `Basic` authorization header.
fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Paths served without authentication: the probes, which the kubelet calls without
/// credentials. `/readyz?verbose` names sinks and their errors, so it is not one of them.
fn open(req: &Request) -> bool {
    match req.uri().path() {
        "/healthz" => true,
        "/readyz" => req.uri().query().is_none_or(|q| !q.contains("verbose")),
        _ => false,
    }
}

/// The middleware: 401 with a `Basic` challenge unless the path is open or the user is.
pub async fn require(State(auth): State<Arc<BasicAuth>>, req: Request, next: Next) -> Response {
    if open(&req) {
        return next.run(req).await;
    }
    match auth.check(req.headers()).await {
        Ok(()) => next.run(req).await,
        Err(why) => {
            auth.metrics.unauthorized(why);
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"hubwatch\"")],
                "authentication required\n",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        headers(&format!("Basic {token}"))
    }

    #[tokio::test]
    async fn the_right_password_passes_and_is_remembered_the_rest_do_not() {
        // Cost 4, the lowest bcrypt allows: the test is about the logic, not the cost.
        let hash = bcrypt::hash("s3cret:with:colons", 4).unwrap();
        let auth = BasicAuth::new(
            &[("prometheus".into(), hash)],
            Arc::new(AdminMetrics::unregistered()),
        );
        let ok = basic("prometheus", "s3cret:with:colons");
        assert_eq!(auth.check(&ok).await, Ok(()));
        assert_eq!(auth.good.lock().unwrap().len(), 1, "remembered");
        assert_eq!(auth.check(&ok).await, Ok(()));
        assert_eq!(
            auth.check(&basic("prometheus", "s3cret")).await,
            Err(Unauthorized::Invalid)
        );
        assert_eq!(
            auth.check(&basic("grafana", "s3cret:with:colons")).await,
            Err(Unauthorized::Invalid),
            "an unknown user with a known password"
        );
        assert_eq!(
            auth.check(&HeaderMap::new()).await,
            Err(Unauthorized::Missing)
        );
        assert_eq!(
            auth.check(&headers("Bearer abc")).await,
            Err(Unauthorized::Missing)
        );
        assert_eq!(
            auth.check(&headers("Basic !!!")).await,
            Err(Unauthorized::Missing)
        );
        assert_eq!(auth.good.lock().unwrap().len(), 1, "failures are not");
    }

    #[test]
    fn only_the_plain_probes_are_open() {
        let req = |uri: &str| {
            Request::builder()
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert!(open(&req("/healthz")));
        assert!(open(&req("/readyz")));
        assert!(!open(&req("/readyz?verbose")));
        assert!(!open(&req("/metrics")));
        assert!(!open(&req("/api/v1/queries")));
    }
}
