//! Pooled SMTP sessions on sockets with `TCP_NODELAY`.
//!
//! lettre 0.11.23 never sets `TCP_NODELAY` and writes a mail's closing `.` on its own, so
//! with Nagle's algorithm every mail waits out the server's delayed ACK (40 ms on Linux):
//! one connection sent 23 mails a second. The fix is merged upstream (lettre pull request
//! 1159) but not released; until it is, huiying opens the TCP connection itself (and, for
//! implicit TLS on port 465, the TLS session) and hands it to lettre's public
//! `AsyncSmtpConnection::connect_with_transport`, which speaks SMTP from there: EHLO,
//! STARTTLS, AUTH and the mail. deadpool keeps the authenticated sessions for reuse.
//!
//! Every read and write of a session has a deadline (`[smtp] timeout`, [`Deadlined`]):
//! lettre's asynchronous client has none of its own, and a server that takes a mail and
//! never answers its closing `.` would otherwise hold the session, and the mail, forever.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_io_timeout::TimeoutStream;
use tokio_rustls::client::TlsStream;

/// How a session is encrypted.
pub(super) enum Encryption {
    None,
    /// STARTTLS, required: lettre upgrades the plain session.
    Starttls(TlsParameters),
    /// Implicit TLS (port 465): the TLS session is ours, under lettre.
    Wrapper {
        config: Arc<rustls::ClientConfig>,
        server_name: rustls_pki_types::ServerName<'static>,
    },
}

/// What making a session can fail on.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot connect: {0}")]
    Connect(#[source] io::Error),
    #[error("the TLS handshake failed: {0}")]
    Tls(#[source] io::Error),
    #[error("no answer within the timeout")]
    Timeout,
    #[error(transparent)]
    Smtp(#[from] lettre::transport::smtp::Error),
}

/// Makes and checks sessions for the pool.
pub struct Sessions {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) encryption: Encryption,
    pub(super) credentials: Option<Credentials>,
    pub(super) timeout: Duration,
}

/// A session idle longer than this is asked whether it is still there (NOOP) before reuse:
/// servers close idle sessions after a minute or so.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(20);

impl managed::Manager for Sessions {
    type Type = AsyncSmtpConnection;
    type Error = SessionError;

    async fn create(&self) -> Result<AsyncSmtpConnection, SessionError> {
        tokio::time::timeout(self.timeout, self.open()).await.map_err(|_| SessionError::Timeout)?
    }

    async fn recycle(&self, session: &mut AsyncSmtpConnection, metrics: &Metrics) -> RecycleResult<SessionError> {
        if session.has_broken() {
            return Err(RecycleError::message("the session broke"));
        }
        if metrics.last_used() > CHECK_AFTER_IDLE && !session.test_connected().await {
            return Err(RecycleError::message("the server closed the idle session"));
        }
        Ok(())
    }
}

impl Sessions {
    async fn open(&self) -> Result<AsyncSmtpConnection, SessionError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await.map_err(SessionError::Connect)?;
        // The point of this module: each SMTP command goes out at once.
        tcp.set_nodelay(true).map_err(SessionError::Connect)?;
        let hello = ClientId::default();
        let stream: Box<dyn AsyncTokioStream> = match &self.encryption {
            Encryption::Wrapper { config, server_name } => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                Box::new(Tls(connector.connect(server_name.clone(), tcp).await.map_err(SessionError::Tls)?))
            }
            _ => Box::new(tcp),
        };
        // STARTTLS, when asked, runs over this: the deadlines hold inside TLS too.
        let stream = Box::new(Deadlined::new(stream, self.timeout));
        let mut session = AsyncSmtpConnection::connect_with_transport(stream, &hello).await?;
        if let Encryption::Starttls(parameters) = &self.encryption {
            session.starttls(parameters.clone(), &hello).await?;
        }
        if let Some(credentials) = &self.credentials {
            session.auth(&[Mechanism::Plain, Mechanism::Login], credentials).await?;
        }
        Ok(session)
    }
}

/// A session's stream whose every read and write fails with `TimedOut` when it waits
/// longer than the deadline: each SMTP step (a reply awaited, the mail's bytes written)
/// then breaks the session rather than hanging it. An idle session waits on nothing, so
/// it is not timed.
#[derive(Debug)]
struct Deadlined(Pin<Box<TimeoutStream<Box<dyn AsyncTokioStream>>>>);

impl Deadlined {
    fn new(stream: Box<dyn AsyncTokioStream>, deadline: Duration) -> Self {
        let mut timed = TimeoutStream::new(stream);
        timed.set_read_timeout(Some(deadline));
        timed.set_write_timeout(Some(deadline));
        Self(Box::pin(timed))
    }
}

impl AsyncTokioStream for Deadlined {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().peer_addr()
    }
}

impl AsyncRead for Deadlined {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.0.as_mut().poll_read(cx, buf)
    }
}

impl AsyncWrite for Deadlined {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.0.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.as_mut().poll_shutdown(cx)
    }
}

/// A TLS session over TCP, as lettre takes a stream.
#[derive(Debug)]
struct Tls(TlsStream<TcpStream>);

impl AsyncTokioStream for Tls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for Tls {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The client configuration of implicit TLS: the web's roots (webpki-roots, as lettre's
/// own TLS uses) plus `[smtp] ca_file`'s certificates.
pub(super) fn tls_config(ca_pem: Option<&[u8]>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
            roots.add(certificate?)?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
