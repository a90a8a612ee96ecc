//! What is sent: the thin JSON body and the Standard Webhooks signature headers.

use base64::Engine;
use ring::hmac;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Bodies stay under this size: prompts are shortened to fit, pictures are links.
pub(crate) const MAX_BODY_BYTES: usize = 20 * 1024;

/// `{"type", "timestamp", "data"}`, where data is the event without what belongs to the
/// pipeline (its version, the mail recipient, the webhook itself).
pub(crate) fn body(event_type: &str, event: &Value, at: OffsetDateTime) -> String {
    let mut data = event.clone();
    if let Some(fields) = data.as_object_mut() {
        for private in ["version", "notify_email", "webhook", "webhook_events_filter"] {
            fields.remove(private);
        }
    }
    let timestamp = at.format(&Rfc3339).unwrap_or_default();
    let mut body = json!({"type": event_type, "timestamp": timestamp, "data": data}).to_string();
    for limit in [1000, 200] {
        if body.len() <= MAX_BODY_BYTES {
            break;
        }
        for field in ["prompt", "english_prompt", "error"] {
            if let Some(Value::String(text)) = data.get_mut(field) {
                *text = text.chars().take(limit).collect();
            }
        }
        body = json!({"type": event_type, "timestamp": timestamp, "data": data}).to_string();
    }
    body
}

/// `webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` for each key,
/// separated by spaces.
pub(crate) fn signature(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &str) -> String {
    let signed = format!("{id}.{timestamp}.{body}");
    keys.iter()
        .map(|key| {
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), signed.as_bytes());
            format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag.as_ref()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}
