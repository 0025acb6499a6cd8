//! Entra ID tokens that the SDK can actually renew.
//!
//! The SDK asks its credential for a new token 6 minutes (±5 s) before the one it holds
//! expires. `azure_identity`'s credentials cache a token until 5 minutes before expiry, so
//! that request gets back the very token the SDK holds; the SDK then takes the credential
//! for one that cannot renew (like a fixed SAS), stops renewing that path, and the service
//! ends the links when the token expires. [`RenewingCredential`] sits between them: when
//! the cached token is within [`RENEW_BELOW`] of expiry it asks a freshly built credential,
//! whose cache is empty, so the SDK's early renewal gets a new token.

use std::fmt;
use std::sync::{Arc, Mutex};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::time::{Duration, OffsetDateTime};

/// A token with less life than this left is renewed: the SDK's 6-minute lead plus its
/// jitter (5 s) and a margin.
pub const RENEW_BELOW: Duration = Duration::seconds(6 * 60 + 10);

type Factory = dyn Fn() -> azure_core::Result<Arc<dyn TokenCredential>> + Send + Sync;

/// A renewal that fails leaves the current token in use while it has this much life left.
pub const KEEP_IF_RENEWAL_FAILS: Duration = Duration::seconds(60);

/// Wraps the credential `make` builds, rebuilding it when its cached token is too old.
pub struct RenewingCredential {
    make: Box<Factory>,
    current: Mutex<Arc<dyn TokenCredential>>,
    /// One renewal at a time: the partitions' connections all ask around the same moment.
    renewing: tokio::sync::Mutex<()>,
}

impl RenewingCredential {
    pub fn new(
        make: impl Fn() -> azure_core::Result<Arc<dyn TokenCredential>> + Send + Sync + 'static,
    ) -> azure_core::Result<Arc<Self>> {
        let current = make()?;
        Ok(Arc::new(RenewingCredential {
            make: Box::new(make),
            current: Mutex::new(current),
            renewing: tokio::sync::Mutex::new(()),
        }))
    }

    fn current(&self) -> Arc<dyn TokenCredential> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl fmt::Debug for RenewingCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenewingCredential").finish_non_exhaustive()
    }
}

fn life_left(token: &AccessToken) -> Duration {
    token.expires_on - OffsetDateTime::now_utc()
}

#[async_trait::async_trait]
impl TokenCredential for RenewingCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let token = self.current().get_token(scopes, options.clone()).await?;
        if life_left(&token) >= RENEW_BELOW {
            return Ok(token);
        }
        let _one = self.renewing.lock().await;
        // Another caller may have renewed while this one waited.
        let token = self.current().get_token(scopes, options.clone()).await?;
        if life_left(&token) >= RENEW_BELOW {
            return Ok(token);
        }
        // A new credential has an empty cache: it fetches.
        let renewed = match (self.make)() {
            Ok(fresh) => fresh
                .get_token(scopes, options)
                .await
                .map(|renewed| (fresh, renewed)),
            Err(e) => Err(e),
        };
        match renewed {
            Ok((fresh, renewed)) => {
                tracing::debug!(expires_on = %renewed.expires_on, "renewed the Entra ID token ahead of the SDK's deadline");
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
                Ok(renewed)
            }
            // A passing outage of the identity endpoint: the SDK tries again later, and
            // the token it holds is still good for a while.
            Err(e) if life_left(&token) > KEEP_IF_RENEWAL_FAILS => {
                tracing::warn!(error = %e, expires_on = %token.expires_on,
                    "renewing the Entra ID token failed; the current one stays in use");
                Ok(token)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::credentials::Secret;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A credential that, like azure_identity's, caches its one token until 5 minutes
    /// before expiry; each instance fetches (counted) a token living `life`.
    #[derive(Debug)]
    struct Caching {
        life: Duration,
        fetches: Arc<AtomicU32>,
        /// Fetches after this many fail, as an identity endpoint that went away.
        fail_after: u32,
        cached: Mutex<Option<AccessToken>>,
    }

    #[async_trait::async_trait]
    impl TokenCredential for Caching {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            let mut cached = self.cached.lock().unwrap();
            let now = OffsetDateTime::now_utc();
            match &*cached {
                Some(t) if t.expires_on > now + Duration::minutes(5) => Ok(t.clone()),
                _ => {
                    let n = self.fetches.fetch_add(1, Ordering::SeqCst);
                    if n >= self.fail_after {
                        return Err(azure_core::Error::with_message(
                            azure_core::error::ErrorKind::Credential,
                            "the identity endpoint is unreachable",
                        ));
                    }
                    let t = AccessToken::new(Secret::new(format!("t{n}")), now + self.life);
                    *cached = Some(t.clone());
                    Ok(t)
                }
            }
        }
    }

    fn renewing(life: Duration, fail_after: u32) -> (Arc<RenewingCredential>, Arc<AtomicU32>) {
        let fetches = Arc::new(AtomicU32::new(0));
        let f = fetches.clone();
        let c = RenewingCredential::new(move || {
            Ok(Arc::new(Caching {
                life,
                fetches: f.clone(),
                fail_after,
                cached: Mutex::new(None),
            }) as Arc<dyn TokenCredential>)
        })
        .unwrap();
        (c, fetches)
    }

    #[tokio::test]
    async fn a_token_inside_the_sdks_renewal_window_is_renewed() {
        // Issued with 6 min left (as at the SDK's renewal): the cache would hand it back.
        let (c, fetches) = renewing(Duration::minutes(6), u32::MAX);
        let first = c.get_token(&["s"], None).await.unwrap();
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            2,
            "the stale token was fetched again"
        );
        assert!(first.expires_on > OffsetDateTime::now_utc() + Duration::minutes(5));
        assert_eq!(first.token.secret(), "t1");
    }

    #[tokio::test]
    async fn a_fresh_token_comes_from_the_cache() {
        let (c, fetches) = renewing(Duration::minutes(60), u32::MAX);
        let a = c.get_token(&["s"], None).await.unwrap();
        let b = c.get_token(&["s"], None).await.unwrap();
        assert_eq!(a.token.secret(), b.token.secret());
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_renewal_keeps_a_token_that_still_lives() {
        // The first fetch works; the renewal's fails. Six minutes left: keep it.
        let (c, fetches) = renewing(Duration::minutes(6), 1);
        let kept = c.get_token(&["s"], None).await.unwrap();
        assert_eq!(kept.token.secret(), "t0");
        assert_eq!(fetches.load(Ordering::SeqCst), 2, "the renewal was tried");
        // Under a minute left, the failure is the answer.
        let (c, _) = renewing(Duration::seconds(30), 1);
        assert!(c.get_token(&["s"], None).await.is_err());
    }
}
