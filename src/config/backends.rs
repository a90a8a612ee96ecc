//! Where huiying keeps its messages (NATS) and its records (SQLite or PostgreSQL).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::{NatsServers, Secret, seconds};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// The NATS server, or several members of one cluster (`["nats://a:4222",
    /// "nats://b:4222"]`, or `NATS_URL=nats://a:4222,nats://b:4222`).
    pub url: NatsServers,
    /// Copies JetStream keeps of each stream, bucket and the object store when a service
    /// creates them: 1 on one server, 3 on a cluster of three (docs/cluster.md). Existing
    /// streams are never changed: a mismatch stops the service with the command to run.
    pub replicas: usize,
    /// Most bytes the picture bucket (`huiying_images`: pictures on their way from the
    /// generator to the store, uploads, edit inputs) may hold; when it is nearly full,
    /// ingest answers new jobs 503 with Retry-After rather than letting every write fail.
    /// Set when the bucket is created; an existing one keeps its own (the service logs the
    /// command that changes it). 0: no bound.
    pub bucket_max_bytes: u64,
    /// `nats-server` program that `huiying up` starts when none answers at `url`.
    /// Empty: `.huiying/bin/nats-server`, then `nats-server` on PATH.
    pub server_bin: String,
    /// Configuration file of the nats-server that `huiying up` starts.
    pub server_config: PathBuf,
    /// NATS user this service logs in as (nats.conf has one per service: `ingest`,
    /// `generator`, `store`, `mailer`, and `admin`). Empty: connect without a login.
    /// `huiying up` fills both in when it starts its own nats-server.
    pub user: String,
    pub password: Secret,
    /// Seconds a delivery may stay unacknowledged before JetStream gives it to another
    /// instance. Long model calls send progress acks, so this need not cover them.
    #[serde(with = "seconds")]
    pub ack_wait: Duration,
    /// Seconds a stopping service lets the messages in hand finish; the rest are handed
    /// back at once for another instance (keep it below your supervisor's stop timeout).
    #[serde(with = "seconds")]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// SQLite file of the store's records (when `url` is empty).
    pub path: PathBuf,
    /// A PostgreSQL database for the records instead of SQLite, shared by store
    /// instances on several hosts: `postgres://user:password@host:5432/huiying`.
    pub url: Secret,
    /// Connections each store instance keeps open to PostgreSQL.
    pub pool_size: usize,
    /// Milliseconds a records search may run before it is stopped (the client gets 503,
    /// "narrow it"). Searches never hold up storing a picture whatever this is.
    pub search_timeout_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".parse().expect("a valid address"),
            replicas: 1,
            bucket_max_bytes: 4 << 30,
            server_bin: String::new(),
            server_config: "nats.conf".into(),
            user: String::new(),
            password: Secret::default(),
            ack_wait: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { path: "huiying.db".into(), url: Secret::default(), pool_size: 8, search_timeout_ms: 5000 }
    }
}
