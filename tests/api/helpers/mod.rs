//! Starts the real pipeline for a test: a nats-server (2.10+) on a free port with a temp
//! JetStream folder, a real SMTP server (aiosmtpd: STARTTLS, implicit TLS, AUTH) with a
//! certificate made for the test, and the four services on free ports. Everything is
//! stopped and deleted when the returned [`TestApp`] is dropped.

use std::net::TcpListener as StdListener;
use std::time::{Duration, Instant};

mod app;
mod fake_api;
mod fake_comfyui;
mod hosts;
mod nats;
mod postgres;
mod receiver;
mod s3;
mod silent_smtp;
mod smtp;

pub use app::*;
pub use fake_api::*;
pub use fake_comfyui::*;
pub use hosts::*;
pub use nats::*;
pub use postgres::*;
pub use receiver::*;
pub use s3::*;
pub use silent_smtp::*;
pub use smtp::*;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
pub const SMTP_USER: &str = "sender@example.com";
pub const SMTP_PASSWORD: &str = "test-auth-code-16";
pub const MAIL_TO: &str = "user@example.com";

/// Waits until `check` returns `Some`, polling; panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
