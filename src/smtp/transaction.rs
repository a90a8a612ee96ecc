//! One SMTP transaction, a recipient at a time: MAIL FROM, RCPT TO for each recipient,
//! DATA. lettre's own `send` gives up on the whole mail at the first refused recipient;
//! here a recipient its server refuses for good (550 user unknown) is left out and named,
//! and the others still get the mail.

use lettre::address::Envelope;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};

/// A recipient the server refused for good, and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub address: String,
    pub reply: String,
}

/// What became of a mail the server answered.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Recipients refused for good; the rest got the mail.
    pub refused: Vec<Refusal>,
    /// Whether anybody got it (false: every recipient was refused).
    pub delivered: bool,
}

impl Delivery {
    /// The delivery when somebody got the mail; else a permanent failure quoting the
    /// server's refusals.
    pub fn received(self) -> Result<Delivery, crate::failure::Failure> {
        if self.delivered {
            return Ok(self);
        }
        let replies: Vec<&str> = self.refused.iter().map(|refusal| refusal.reply.as_str()).collect();
        Err(crate::failure::Failure::permanent(format!(
            "the server refused every recipient: {} — check the addresses",
            replies.join("; ")
        )))
    }
}

/// Sends `bytes` to the envelope's recipients in one transaction. A refusal that is not
/// a recipient's own (a 4xx, "too fast", the sender refused) fails the whole mail, which
/// nobody got yet, so that a retry mails each recipient once.
pub(super) async fn send(
    session: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    bytes: &[u8],
    is_recipients_own: impl Fn(&lettre::transport::smtp::Error) -> bool,
) -> Result<Delivery, lettre::transport::smtp::Error> {
    let mut options = Vec::new();
    let non_ascii = envelope.to().iter().chain(envelope.from()).any(|address| !address.to_string().is_ascii());
    if non_ascii && session.server_info().supports_feature(Extension::SmtpUtfEight) {
        options.push(MailParameter::SmtpUtfEight);
    }
    if !bytes.is_ascii() && session.server_info().supports_feature(Extension::EightBitMime) {
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let result = async {
        session.command(Mail::new(envelope.from().cloned(), options)).await?;
        let mut delivery = Delivery::default();
        for recipient in envelope.to() {
            match session.command(Rcpt::new(recipient.clone(), Vec::new())).await {
                Ok(_) => delivery.delivered = true,
                Err(error) if is_recipients_own(&error) => {
                    delivery.refused.push(Refusal { address: recipient.to_string(), reply: error.to_string() })
                }
                Err(error) => return Err(error),
            }
        }
        if !delivery.delivered {
            // Nobody to send to: end the transaction, keep the session.
            session.command(Rset).await?;
            return Ok(delivery);
        }
        session.command(Data).await?;
        match session.message(bytes).await {
            Ok(_) => Ok(delivery),
            // Refused after DATA: the recipient's own refusal only when there was one.
            Err(error) if is_recipients_own(&error) && envelope.to().len() - delivery.refused.len() == 1 => {
                let accepted =
                    envelope.to().iter().find(|r| !delivery.refused.iter().any(|x| x.address == r.to_string()));
                let address = accepted.map(ToString::to_string).unwrap_or_default();
                delivery.refused.push(Refusal { address, reply: error.to_string() });
                delivery.delivered = false;
                Ok(delivery)
            }
            Err(error) => Err(error),
        }
    }
    .await;
    if result.is_err() {
        // As lettre does: a session that failed mid-transaction is not reused.
        session.abort().await;
    }
    result
}
