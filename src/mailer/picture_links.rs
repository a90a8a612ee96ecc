//! Picture links in mails when pictures are private (`[server] public_pictures = false`):
//! each link to this server's pictures is signed to open without a key for `[server]
//! link_days`, so its reader can see the picture and nobody else can guess one.

use serde_json::Value;
use time::OffsetDateTime;

use crate::links::LinkKeys;

#[derive(Clone)]
pub struct PictureLinks {
    /// `[server] public_url`: only links to this server are signed.
    pub base_url: String,
    pub keys: LinkKeys,
    pub days: u32,
}

impl PictureLinks {
    /// `url`, signed when it points at this server.
    pub fn sign(&self, url: &str, now: OffsetDateTime) -> String {
        let Some(path) = url.strip_prefix(&self.base_url).filter(|path| path.starts_with('/') && !path.contains('?'))
        else {
            return url.to_string();
        };
        let expires = (now + time::Duration::days(i64::from(self.days))).unix_timestamp();
        format!("{url}?{}", self.keys.picture_query(path, expires))
    }

    /// The template context with every picture link in it signed.
    pub(super) fn sign_context(&self, context: &mut Value) {
        let now = OffsetDateTime::now_utc();
        for field in ["url", "image_src"] {
            if let Some(Value::String(url)) = context.get_mut(field) {
                *url = self.sign(url, now);
            }
        }
        if let Some(Value::Array(inputs)) = context.get_mut("inputs") {
            for input in inputs {
                if let Some(Value::String(url)) = input.get_mut("url") {
                    *url = self.sign(url, now);
                }
            }
        }
    }
}
