//! `image.requested`: the one event anyone may publish, so it is read leniently and
//! checked once, by the generator, into a [`CheckedRequest`] whose values are typed from
//! then on.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::edits::{InputPicture, JobKind};
use super::events::version_one;
use super::groups::GroupRef;
use super::options::GenerationOptions;
use super::values::{InvalidValue, JobId, ModelName, Prompt};

/// A request for a picture. Only `prompt` is required: anyone may publish
/// `{"prompt": "..."}` to `image.requested`, and the generator assigns an id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageRequested {
    #[serde(default = "version_one")]
    pub version: u32,
    /// Empty when the publisher left it out; see [`derived_job_id`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub prompt: String,
    /// Model to use; empty means the generator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Who to notify instead of `[smtp] to`; must be in `[smtp] allowed_recipients`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_email: Option<String>,
    /// From the request.
    #[serde(flatten)]
    pub callback: RequestWebhook,
    /// Optional settings for the model. One it cannot honour is left out (and named in
    /// `ignored_options` downstream), or fails the job with `[server] strict_options`.
    #[serde(flatten)]
    pub options: GenerationOptions,
    /// Who asked, as the client says (OpenAI's `user`); kept on the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The name of the API key that queued the job (`[[server.keys]]`); absent: published
    /// straight to NATS or queued without keys, and then seen by admins only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// What the job makes; absent: `generate`.
    #[serde(default, skip_serializing_if = "JobKind::is_generate")]
    pub kind: JobKind,
    /// The pictures an edit starts from (none for a generation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputPicture>,
    /// The group the job belongs to (one of `n` pictures of one request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupRef>,
    #[serde(default = "OffsetDateTime::now_utc", with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub requested_at: OffsetDateTime,
    /// A job that has not reached the model by then is cancelled, not drawn.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub deadline: Option<OffsetDateTime>,
}

/// A webhook the request named for itself (as Replicate's API takes it): signed with
/// `[webhooks] request_secret`, sent for the events in the filter (all when absent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct RequestWebhook {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// `image.completed`, `image.failed` (or `completed`, `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_events_filter: Option<Vec<String>>,
}

impl RequestWebhook {
    /// Whether `event` (a subject) goes to the request's webhook.
    pub fn wants(&self, event: &str) -> bool {
        self.webhook.is_some()
            && self.webhook_events_filter.as_ref().is_none_or(|filter| {
                filter.iter().any(|wanted| wanted == event || Some(wanted.as_str()) == event.strip_prefix("image."))
            })
    }
}

/// An `image.requested` after its one check: the id assigned, every value typed. What
/// the generator works from and copies into the events after it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedRequest {
    pub id: JobId,
    pub prompt: Prompt,
    /// The request's model, or the default when it named none.
    pub model: ModelName,
    pub notify_email: Option<String>,
    pub callback: RequestWebhook,
    pub options: GenerationOptions,
    pub user: Option<String>,
    pub owner: Option<String>,
    pub kind: JobKind,
    pub inputs: Vec<InputPicture>,
    pub group: Option<GroupRef>,
    pub requested_at: OffsetDateTime,
    pub deadline: Option<OffsetDateTime>,
}

impl ImageRequested {
    /// The request with its values checked, as job `id` (the request's own id, parsed
    /// by the caller, or one derived from where the message sits). A blank model is
    /// `default_model` for the job's kind; an edit must have as many input pictures as its
    /// kind takes.
    pub fn check(
        &self,
        id: JobId,
        default_model: impl FnOnce(JobKind) -> Result<ModelName, InvalidValue>,
    ) -> Result<CheckedRequest, InvalidValue> {
        let prompt = Prompt::parse(self.prompt.as_str())?;
        self.options.check()?;
        let model = match self.model.as_deref() {
            Some(name) if !name.trim().is_empty() => ModelName::parse(name)?,
            _ => default_model(self.kind)?,
        };
        let (least, most) = self.kind.inputs();
        let count = self.inputs.iter().filter(|input| !input.mask).count();
        if count < least || count > most {
            return Err(InvalidValue::new(
                "inputs",
                format!("a {} job takes {least} to {most} input pictures, and this one has {count}", self.kind.name()),
            ));
        }
        Ok(CheckedRequest {
            id,
            prompt,
            model,
            notify_email: self.notify_email.clone(),
            callback: self.callback.clone(),
            options: self.options.clone(),
            user: self.user.clone(),
            owner: self.owner.clone(),
            kind: self.kind,
            inputs: self.inputs.clone(),
            group: self.group.clone(),
            requested_at: self.requested_at,
            deadline: self.deadline,
        })
    }
}

/// The id of a request published without one: derived from where the message sits in
/// the stream and when it was stored, so that every redelivery of that message gets
/// the same id and a recreated stream does not reuse old ids.
pub fn derived_job_id(stream: &str, stream_sequence: u64, published: OffsetDateTime) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6875_6979_696e_6700_0000_0000_0000_0001);
    let name = format!("{stream}/{stream_sequence}/{}", published.unix_timestamp_nanos());
    uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> ImageRequested {
        serde_json::from_value(json).unwrap()
    }

    fn checked(json: serde_json::Value) -> Result<CheckedRequest, InvalidValue> {
        request(json).check(JobId::random(), |_| ModelName::parse("huiying/placeholder"))
    }

    #[test]
    fn a_checked_request_carries_typed_values_and_a_blank_model_means_the_default() {
        let blank = checked(serde_json::json!({"prompt": "一只猫", "model": " "})).unwrap();
        assert_eq!(blank.prompt, "一只猫");
        assert_eq!(blank.model, "huiying/placeholder");
        let named = checked(serde_json::json!({"prompt": "a cat", "model": "openai/gpt-5-image"})).unwrap();
        assert_eq!(named.model, "openai/gpt-5-image");
    }

    #[test]
    fn each_unusable_value_is_named() {
        let field = |json| checked(json).unwrap_err().field;
        assert_eq!(field(serde_json::json!({"prompt": " "})), "prompt");
        assert_eq!(field(serde_json::json!({"prompt": "a cat", "model": "a model"})), "model");
        assert_eq!(field(serde_json::json!({"prompt": "a cat", "n": 3})), "n");
        assert_eq!(field(serde_json::json!({"prompt": "a cat", "kind": "edit"})), "inputs");
    }
}
