//! The contract: everything that crosses a process boundary, in one place.
//!
//! Services never import each other; they share only what is here: the events and
//! their subjects, the names of the stream, buckets and consumers, the job states in
//! the `huiying_jobs` bucket, and the records request/reply types. `docs/events.md`
//! says the same for people and other languages; a change here is a change there.

mod base64_bytes;
pub mod budget;
pub mod cost;
pub mod edits;
pub mod events;
pub mod groups;
pub mod jobs;
pub mod mail;
pub mod options;
pub mod records;
mod requested;
pub mod schemas;
pub mod services;
pub mod spend;
pub mod values;
pub mod webhooks;

/// The one stream that holds every pipeline event.
pub const STREAM: &str = "HUIYING";
/// Stream of rejected (poison) messages, each with its reason, under `huiying.dead.>`.
pub const DEAD_LETTER_STREAM: &str = "HUIYING_DEAD";
/// Subject prefix of dead letters: `huiying.dead.<original subject>`.
pub const DEAD_LETTER_PREFIX: &str = "huiying.dead";

/// Key-value bucket of job states (`queued` ... `completed`), keyed by job id.
pub const JOBS_BUCKET: &str = "huiying_jobs";
/// Key-value bucket of notification outcomes, keyed by `<job id>.<kind>`.
pub const MAIL_BUCKET: &str = "huiying_mail";
/// Key-value bucket of `Idempotency-Key`s (24 hours).
pub const IDEMPOTENCY_BUCKET: &str = "huiying_idempotency";
/// Key-value bucket of quota slots (`<key name>.<day>.<n>`), ingest's own (two days).
pub const QUOTA_BUCKET: &str = "huiying_quotas";
/// Object store bucket that carries generated pictures from generator to store.
pub const IMAGES_BUCKET: &str = "huiying_images";

/// Durable consumer names: one per service that reads the stream.
pub mod consumers {
    /// Reads `image.requested`; ingest reads its backlog to bound the queue.
    pub const GENERATOR: &str = "generator";
    /// Reads `image.generated`.
    pub const STORE: &str = "store";
    /// Reads `image.completed` and `image.failed`.
    pub const MAILER: &str = "mailer";
    /// Reads `budget.alert` on `HUIYING_ALERTS`.
    pub const MAILER_ALERTS: &str = "mailer-alerts";
    /// Reads `image.completed` and `image.failed`, and makes a delivery task per endpoint.
    pub const WEBHOOK: &str = "webhook";
    /// Reads `budget.alert` on `HUIYING_ALERTS`, for the endpoints that take it.
    pub const WEBHOOK_ALERTS: &str = "webhook-alerts";
    /// Reads the delivery tasks of `HUIYING_WEBHOOKS`.
    pub const WEBHOOK_DELIVERY: &str = "webhook-delivery";
}

/// Path under ingest's address where stored pictures are served; the store builds links
/// with it.
pub const STATIC_IMAGES_PATH: &str = "/static/images";

/// The absolute link through ingest to a stored file.
pub fn local_url(public_base_url: &str, filename: &str) -> String {
    format!("{public_base_url}{STATIC_IMAGES_PATH}/{filename}")
}
