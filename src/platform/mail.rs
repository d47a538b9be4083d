//! Outgoing email. Messages are built with lettre; a transport delivers them.
//! SMTP joins as one more transport without changing any sender.

use std::path::PathBuf;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{Config, MailTransportKind};

/// An email to one recipient, in plain text and HTML.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Email {
    /// The recipient, `Name <address>` or a bare address.
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Where mail goes.
#[derive(Clone)]
pub enum MailTransport {
    /// Each message as an `.eml` file in a folder, for development and tests.
    File { dir: PathBuf, transport: AsyncFileTransport<Tokio1Executor> },
    /// Each message only as a log line.
    Log,
}

#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    transport: MailTransport,
}

impl Mailer {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let from: Mailbox = config.mail.from.parse()?;
        let transport = match config.mail.transport {
            MailTransportKind::File => {
                let dir = config.data_dir.join("mail");
                std::fs::create_dir_all(&dir)?;
                MailTransport::File { transport: AsyncFileTransport::new(&dir), dir }
            }
            MailTransportKind::Log => MailTransport::Log,
        };
        Ok(Self { from, transport })
    }

    /// Builds and delivers `email`, returning the id the transport gave it.
    pub async fn send(&self, email: Email) -> anyhow::Result<String> {
        let message = Message::builder()
            .from(self.from.clone())
            .to(email.to.parse::<Mailbox>()?)
            .subject(&email.subject)
            .multipart(MultiPart::alternative_plain_html(email.text, email.html))?;
        match &self.transport {
            MailTransport::File { dir, transport } => {
                let id = transport.send(message).await?;
                tracing::info!(mail.path = %dir.join(format!("{id}.eml")).display(), mail.subject = %email.subject, "email written");
                Ok(id)
            }
            MailTransport::Log => {
                tracing::info!(mail.subject = %email.subject, "email not sent: the log transport is configured");
                Ok(String::new())
            }
        }
    }
}

/// Escapes text for inclusion in HTML.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
