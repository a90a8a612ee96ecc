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

/// Links to this server's pictures, signed to open without a key for `days` (`[server]
/// link_days`) when pictures are private (`public_pictures = false`): in mails, webhooks
/// and API answers.
#[derive(Clone)]
pub struct PictureLinks {
    /// `[server] public_url`: only links to this server are signed.
    pub base_url: String,
    pub keys: LinkKeys,
    pub days: u32,
}

/// The paths of pictures: stored ones, edits' inputs, a private bucket's.
const PICTURE_PATHS: &[&str] = &[crate::contract::STATIC_IMAGES_PATH, "/inputs/", "/r2/images/"];

impl PictureLinks {
    /// `url`, signed to open until `days` after `from`, when it is a picture of this server.
    pub fn sign(&self, url: &str, from: time::OffsetDateTime) -> String {
        let Some(path) = url.strip_prefix(&self.base_url) else { return url.to_string() };
        if path.contains('?') || !PICTURE_PATHS.iter().any(|prefix| path.starts_with(prefix)) {
            return url.to_string();
        }
        let expires = (from + time::Duration::days(i64::from(self.days))).unix_timestamp();
        format!("{url}?{}", self.keys.picture_query(path, expires))
    }

    /// Every picture link anywhere in `value`, signed.
    pub fn sign_json(&self, value: &mut serde_json::Value, from: time::OffsetDateTime) {
        match value {
            serde_json::Value::String(text) => *text = self.sign(text, from),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|item| self.sign_json(item, from)),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(|field| self.sign_json(field, from)),
            _ => {}
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

    #[test]
    fn only_this_servers_pictures_are_signed_wherever_they_are_in_an_answer() {
        let links = PictureLinks { base_url: "http://h:8000".into(), keys: LinkKeys::new(&[b"k"]), days: 30 };
        let from = time::macros::datetime!(2026-12-07 00:00 UTC);
        let mut answer = serde_json::json!({
            "url": "http://h:8000/static/images/a.jpg",
            "inputs": [{"url": "http://h:8000/inputs/j/0"}],
            "r2_url": "https://pics.example.com/images/a.jpg",
            "status_url": "http://h:8000/jobs/j",
            "image_src": "cid:image@huiying",
        });
        links.sign_json(&mut answer, from);
        let expires = (from + time::Duration::days(30)).unix_timestamp();
        let signed = answer["url"].as_str().unwrap();
        assert!(signed.starts_with(&format!("http://h:8000/static/images/a.jpg?exp={expires}&sig=")), "{signed}");
        assert!(answer["inputs"][0]["url"].as_str().unwrap().contains("?exp="));
        for unchanged in ["r2_url", "status_url", "image_src"] {
            assert!(!answer[unchanged].as_str().unwrap().contains("sig="), "{unchanged}");
        }
        let path = "/static/images/a.jpg";
        let query = signed.split_once('?').unwrap().1;
        assert_eq!(links.keys.check_picture(path, query, expires - 1), LinkCheck::Open);
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
