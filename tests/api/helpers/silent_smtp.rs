//! An SMTP server on loopback that misbehaves on purpose: it takes the first `silent`
//! mails whole and never answers their closing `.`, then answers the rest as a server
//! should. It keeps every mail's Message-ID and whether it was answered.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One mail the server took: its Message-ID, and whether it answered 250.
#[derive(Debug, Clone, PartialEq)]
pub struct TakenMail {
    pub message_id: String,
    pub answered: bool,
}

pub struct SilentSmtp {
    pub port: u16,
    taken: Arc<Mutex<Vec<TakenMail>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl SilentSmtp {
    /// A server that goes silent after the data of the first `silent` mails.
    pub async fn start(silent: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let taken: Arc<Mutex<Vec<TakenMail>>> = Arc::default();
        let server = tokio::spawn({
            let taken = taken.clone();
            async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(session(socket, taken.clone(), silent));
                }
            }
        });
        Self { port, taken, _server: server }
    }

    pub fn taken(&self) -> Vec<TakenMail> {
        self.taken.lock().unwrap().clone()
    }
}

async fn session(socket: tokio::net::TcpStream, taken: Arc<Mutex<Vec<TakenMail>>>, silent: usize) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    let _ = write.write_all(b"220 silent.example ESMTP\r\n").await;
    while let Ok(Some(line)) = lines.next_line().await {
        let command = line.to_ascii_uppercase();
        let answer: &[u8] = if command.starts_with("EHLO") {
            b"250-silent.example\r\n250 8BITMIME\r\n"
        } else if command.starts_with("DATA") {
            let _ = write.write_all(b"354 go ahead\r\n").await;
            let mut message_id = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if line == "." {
                    break;
                }
                if let Some(id) = line.strip_prefix("Message-ID: ") {
                    message_id = id.trim().to_string();
                }
            }
            let answered = {
                let mut taken = taken.lock().unwrap();
                let answered = taken.len() >= silent;
                taken.push(TakenMail { message_id, answered });
                answered
            };
            if !answered {
                // Took the mail, says nothing, keeps the connection open.
                std::future::pending::<()>().await;
            }
            b"250 queued\r\n"
        } else if command.starts_with("QUIT") {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"250 ok\r\n"
        };
        if write.write_all(answer).await.is_err() {
            return;
        }
    }
}
