//! E-mail through lettre: multipart text and HTML, the invoice PDF attached when there is one.
//! By default a message is written to a local maildir (`tmp/` then renamed into `new/`, as the
//! format asks), so a stack runs without a mail server; with an SMTP URL it goes to that
//! server. A maildir file is named after its delivery, so a delivery sent twice (a sender that
//! died before recording) leaves one file.

use std::path::PathBuf;
use std::time::Instant;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Answer, Attempted, snippet};
use crate::settings::EmailTransport;

/// One e-mail.
#[derive(Debug, Clone)]
pub struct Mail<'a> {
    /// Unique per delivery: the file name in a maildir, and the Message-ID.
    pub id: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: &'a str,
    /// File name and bytes of a PDF to attach.
    pub attachment: Option<(String, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("EMAIL_TRANSPORT: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("EMAIL_FROM: {0}")]
    From(#[from] lettre::address::AddressError),
}

#[derive(Clone)]
enum Transport {
    Maildir(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// Sends e-mail.
#[derive(Clone)]
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.transport {
            Transport::Maildir(p) => format!("maildir {}", p.display()),
            Transport::Smtp(_) => "smtp".into(),
        };
        f.debug_struct("Mailer").field("transport", &kind).finish()
    }
}

impl Mailer {
    pub fn new(transport: &EmailTransport, from: &str) -> Result<Mailer, MailerError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let transport = match transport {
            EmailTransport::Maildir(dir) => Transport::Maildir(PathBuf::from(dir)),
            EmailTransport::Smtp(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())?.build(),
            ),
        };
        Ok(Mailer {
            transport,
            from: from.parse()?,
        })
    }

    /// One attempt.
    pub async fn send(&self, mail: Mail<'_>) -> Attempted {
        let started = Instant::now();
        let done = |answer, code, response: String| Attempted {
            answer,
            code,
            response: snippet(&response),
            latency: started.elapsed(),
        };
        let message = match self.build(&mail) {
            Ok(m) => m,
            Err(e) => {
                return done(
                    Answer::Refused,
                    None,
                    format!("cannot build the e-mail: {e}"),
                );
            }
        };
        match &self.transport {
            Transport::Maildir(dir) => {
                match write_maildir(dir, mail.id, &message.formatted()).await {
                    Ok(path) => done(
                        Answer::Delivered,
                        None,
                        format!("written to {}", path.display()),
                    ),
                    Err(e) => done(
                        Answer::Retry(None),
                        None,
                        format!("maildir {}: {e}", dir.display()),
                    ),
                }
            }
            Transport::Smtp(smtp) => match smtp.send(message).await {
                Ok(r) => done(
                    Answer::Delivered,
                    r.code().to_string().parse().ok(),
                    r.message().collect::<Vec<_>>().join(" "),
                ),
                Err(e) => {
                    let code = e.status().and_then(|c| c.to_string().parse().ok());
                    let answer = if e.is_permanent() {
                        Answer::Refused
                    } else {
                        Answer::Retry(None)
                    };
                    done(answer, code, e.to_string())
                }
            },
        }
    }

    fn build(&self, mail: &Mail<'_>) -> Result<Message, Box<dyn std::error::Error + Send + Sync>> {
        let alternative = MultiPart::alternative()
            .singlepart(SinglePart::plain(mail.text.to_string()))
            .singlepart(SinglePart::html(mail.html.to_string()));
        let body = match &mail.attachment {
            None => alternative,
            Some((name, bytes)) => MultiPart::mixed().multipart(alternative).singlepart(
                Attachment::new(name.clone())
                    .body(bytes.clone(), ContentType::parse("application/pdf")?),
            ),
        };
        Ok(Message::builder()
            .from(self.from.clone())
            .to(mail.to.parse()?)
            .subject(mail.subject)
            .message_id(Some(format!("<{}@saas-platform>", mail.id)))
            .multipart(body)?)
    }
}

/// Writes `bytes` into `dir/new/` by way of `dir/tmp/`; answers the file's path.
async fn write_maildir(dir: &std::path::Path, id: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    for sub in ["tmp", "new", "cur"] {
        tokio::fs::create_dir_all(dir.join(sub)).await?;
    }
    let name = format!("{id}.saas-platform");
    let tmp = dir.join("tmp").join(&name);
    tokio::fs::write(&tmp, bytes).await?;
    let new = dir.join("new").join(&name);
    tokio::fs::rename(&tmp, &new).await?;
    Ok(new)
}
