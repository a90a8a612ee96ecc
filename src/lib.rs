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
//! - [`mailer`]: renders `templates/` and sends the mail (or writes it to the outbox).
//!
//! Shared pieces: [`config`] (one loader), [`events`] (one type per subject), [`bus`]
//! (NATS connection, topology, publishing), [`worker`] (the one subscriber loop),
//! [`jobs`] (job states), [`idempotency`] (`Idempotency-Key`), [`limit`] (per-minute limits). [`cli`], [`up`] and [`load`] (the load
//! test) are what the binaries in `src/bin` call.

pub mod bus;
pub mod cli;
pub mod config;
pub mod events;
pub mod generator;
pub mod idempotency;
pub mod ingest;
pub mod jobs;
pub mod limit;
pub mod load;
pub mod mailer;
pub mod store;
pub mod up;
pub mod worker;
