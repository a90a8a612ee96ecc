//! huiying (绘影): a self-hosted image-generation pipeline on NATS JetStream.
//!
//! A tour, in the order a job travels:
//!
//! ```text
//! HTTP ──► ingest ──image.requested──► generator ──image.generated──► store
//!                                        (picture in the          │
//!                                         object store)           ├─image.completed─► mailer, webhooks, ...
//!                                                                 └─image.failed────►
//! ```
//!
//! - [`ingest`]: the HTTP API and web page; publishes `image.requested`, answers from job states.
//! - [`generator`]: calls the image model (or the offline placeholder), puts the picture in
//!   the object store, publishes `image.generated`, or `image.failed`.
//! - [`store`]: processes the picture, writes the file and the SQLite record, publishes
//!   `image.completed`.
//! - [`mailer`]: renders the mail templates and sends the mail (or writes it to the outbox).
//! - [`webhook`]: sends each finished job to HTTP endpoints, signed as Standard Webhooks
//!   asks, retried on a schedule, logged.
//!
//! No service imports another. What they share:
//! - [`contract`]: everything that crosses a process boundary (events and subjects,
//!   stream, bucket and consumer names, job states, the records request/reply types, the
//!   services' names); values in it are checked once where they enter ([`contract::values`]);
//! - [`worker`]: the one subscriber loop, which runs a [`worker::Stage`] and maps its
//!   answer to ack / nak / term; [`failure`]: the one failure type and retry policy;
//! - [`parts`]: the narrow parts a stage is built from (publish, key-value, objects,
//!   requests, job states), on NATS and in memory, each failing with a
//!   [`parts::PartError`]; [`bus`]: connecting to NATS, setting the parts up, handing them out;
//! - [`config`] (one loader), [`smtp`] (where mail goes), [`stored`] (reading a stored
//!   picture back), [`translate`] and [`model_api`] (calling model APIs), [`limit`]
//!   (per-minute limits), [`redact`] (notification targets as they may be shown and logged).
//!
//! Where to add things: a provider is a file in [`generator`] implementing its
//! `ImageModel` trait; a route is a file in [`ingest`] (what routes share is its
//! `AppState`); a stage part is a trait in [`parts`] with a NATS and a memory twin.
//!
//! [`service`], [`cli`], [`up`], [`submit`] and [`load`] (the load test) are what `huiying`
//! runs; `src/bin/` holds `huiying` and each service's program of its own (`huiying-store` ...).

#![deny(unreachable_pub)]

pub mod bus;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod contract;
pub mod failure;
pub(crate) mod fetch;
pub mod generator;
pub mod ingest;
pub mod labels;
pub(crate) mod limit;
pub mod links;
pub mod load;
pub mod mailer;
pub(crate) mod model_api;
pub(crate) mod outbound;
pub mod parts;
pub mod r2;
pub mod redact;
pub mod service;
pub mod smtp;
pub mod store;
pub mod stored;
pub mod submit;
pub mod suppression;
pub mod telemetry;
pub(crate) mod translate;
pub mod up;
pub mod usage;
pub mod webhook;
pub mod worker;
