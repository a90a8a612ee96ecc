//! Links only huiying can make: the one-click unsubscribe link of each notification. A
//! token is an HMAC-SHA256 of what the link names, with the link keys: `[server]
//! link_keys` when set (the first signs, every one is accepted, so a key can be rotated
//! without breaking links already mailed), else a key huiying made at first start and
//! keeps in the `huiying_secrets` bucket, where every service on every host finds it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use ring::hmac;

use crate::config::Secret;
use crate::contract::mail::LINK_KEY;
use crate::parts::{KeyValue, PartError};

/// What a token is for: a token made for one purpose never opens another.
const UNSUBSCRIBE: &str = "unsubscribe";

#[derive(Clone)]
pub struct LinkKeys {
    keys: Vec<hmac::Key>,
}

impl LinkKeys {
    /// Keys from their secret bytes; the first signs.
    pub fn new(secrets: &[&[u8]]) -> Self {
        Self { keys: secrets.iter().map(|secret| hmac::Key::new(hmac::HMAC_SHA256, secret)).collect() }
    }

    /// `[server] link_keys`, else the shared key in `secrets` (made there, once, by
    /// whichever service asks first).
    pub async fn load(configured: &[Secret], secrets: &dyn KeyValue) -> Result<Self, PartError> {
        if !configured.is_empty() {
            return Ok(Self::new(&configured.iter().map(|key| key.expose().as_bytes()).collect::<Vec<_>>()));
        }
        let mut fresh = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut fresh)
            .expect("the system has random numbers");
        // A create, not a put: two services starting at once keep the same key.
        secrets.create(LINK_KEY, Bytes::from(URL_SAFE_NO_PAD.encode(fresh))).await?;
        let stored = secrets.get(LINK_KEY).await?.unwrap_or_default();
        let key = URL_SAFE_NO_PAD.decode(&stored).unwrap_or_else(|_| stored.to_vec());
        Ok(Self::new(&[&key]))
    }

    /// The token of the unsubscribe link for these addresses (a mail's recipients).
    pub fn unsubscribe_token(&self, addresses: &[String]) -> String {
        let named = addresses.join(",").to_ascii_lowercase();
        let tag = hmac::sign(&self.keys[0], format!("{UNSUBSCRIBE}\n{named}").as_bytes());
        format!("{}.{}", URL_SAFE_NO_PAD.encode(named), URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The addresses a genuine unsubscribe token names; `None` for anything else.
    pub fn unsubscribe_addresses(&self, token: &str) -> Option<Vec<String>> {
        let (named, tag) = token.split_once('.')?;
        let named = String::from_utf8(URL_SAFE_NO_PAD.decode(named).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let message = format!("{UNSUBSCRIBE}\n{named}");
        // Constant-time comparison (ring's verify), with each key in turn.
        self.keys
            .iter()
            .any(|key| hmac::verify(key, message.as_bytes(), &tag).is_ok())
            .then(|| named.split(',').map(String::from).collect())
    }
}

/// What a signed picture link is worth.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkCheck {
    /// Made by huiying and not expired: it opens without a key.
    Open,
    /// Not made with any of the link keys (changed, or made up).
    Forged,
    /// Genuine, but past its expiry.
    Expired,
}

impl LinkKeys {
    /// The query that lets `GET path` open without a key until `expires` (unix seconds):
    /// `exp=<expires>&sig=<HMAC over method, path and expiry>`.
    pub fn picture_query(&self, path: &str, expires: i64) -> String {
        let tag = hmac::sign(&self.keys[0], picture_message(path, expires).as_bytes());
        format!("exp={expires}&sig={}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// What the link `path?query` is worth at `now` (unix seconds).
    pub fn check_picture(&self, path: &str, query: &str, now: i64) -> LinkCheck {
        let value = |name: &str| query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='));
        let (Some(expires), Some(tag)) = (value("exp").and_then(|e| e.parse::<i64>().ok()), value("sig")) else {
            return LinkCheck::Forged;
        };
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else { return LinkCheck::Forged };
        let message = picture_message(path, expires);
        match self.keys.iter().any(|key| hmac::verify(key, message.as_bytes(), &tag).is_ok()) {
            false => LinkCheck::Forged,
            true if now >= expires => LinkCheck::Expired,
            true => LinkCheck::Open,
        }
    }
}

/// What a picture link's signature covers: the method, the path and the expiry.
fn picture_message(path: &str, expires: i64) -> String {
    format!("picture\nGET\n{path}\n{expires}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_with_its_key_or_after_a_rotation_and_a_forged_one_never() {
        let old = LinkKeys::new(&[b"old key"]);
        let token = old.unsubscribe_token(&["Reader@QQ.com".into()]);
        assert_eq!(old.unsubscribe_addresses(&token), Some(vec!["reader@qq.com".to_string()]));
        // Rotated: the new key signs, the old one still opens links already mailed.
        let rotated = LinkKeys::new(&[b"new key", b"old key"]);
        assert_eq!(rotated.unsubscribe_addresses(&token), Some(vec!["reader@qq.com".to_string()]));
        assert_ne!(rotated.unsubscribe_token(&["reader@qq.com".into()]), token);
        // Another address under the same tag, another key, garbage: refused.
        let (_, tag) = token.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("victim@qq.com"));
        assert_eq!(old.unsubscribe_addresses(&forged), None);
        assert_eq!(LinkKeys::new(&[b"new key"]).unsubscribe_addresses(&token), None);
        assert_eq!(old.unsubscribe_addresses("no-dot"), None);
    }

    #[test]
    fn a_picture_link_opens_until_it_expires_and_a_changed_one_never() {
        let keys = LinkKeys::new(&[b"key"]);
        let path = "/static/images/huiying_image_1.jpg";
        let query = keys.picture_query(path, 1_000);
        assert_eq!(keys.check_picture(path, &query, 999), LinkCheck::Open);
        assert_eq!(keys.check_picture(path, &query, 1_000), LinkCheck::Expired);
        assert_eq!(keys.check_picture("/static/images/huiying_image_2.jpg", &query, 999), LinkCheck::Forged);
        let later = query.replace("exp=1000", "exp=9999");
        assert_eq!(keys.check_picture(path, &later, 999), LinkCheck::Forged, "a moved expiry breaks the signature");
        assert_eq!(keys.check_picture(path, "", 999), LinkCheck::Forged);
        // After a rotation the old key still opens the links it signed.
        assert_eq!(LinkKeys::new(&[b"new", b"key"]).check_picture(path, &query, 999), LinkCheck::Open);
    }

    #[tokio::test]
    async fn without_configured_keys_every_service_gets_the_one_made_first() {
        let bucket = crate::parts::memory::MemoryKv::new(crate::contract::mail::SECRETS_BUCKET);
        let first = LinkKeys::load(&[], &bucket).await.unwrap();
        let second = LinkKeys::load(&[], &bucket).await.unwrap();
        let token = first.unsubscribe_token(&["a@example.com".into()]);
        assert!(second.unsubscribe_addresses(&token).is_some());
    }
}
