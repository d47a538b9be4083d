//! Outgoing email. Messages are built with lettre; a transport delivers them.
//! SMTP joins as one more transport without changing any sender.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::breaker::CircuitBreaker;
use super::config::{Config, MailTransportKind, SmtpConfig, SmtpSecurity};

/// An email to one recipient, in plain text and HTML.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Email {
    /// The recipient, `Name <address>` or a bare address.
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Where replies go, when not to the shop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// A one-click unsubscribe address (RFC 8058), for mail to a list's subscribers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsubscribe_url: Option<String>,
}

// `List-Unsubscribe` and `List-Unsubscribe-Post`, which lettre has no types for.
macro_rules! list_header {
    ($type:ident, $name:literal) => {
        #[derive(Clone)]
        struct $type(String);

        impl lettre::message::header::Header for $type {
            fn name() -> lettre::message::header::HeaderName {
                lettre::message::header::HeaderName::new_from_ascii_str($name)
            }

            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok(Self(s.to_owned()))
            }

            fn display(&self) -> lettre::message::header::HeaderValue {
                lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
            }
        }
    };
}

list_header!(ListUnsubscribe, "List-Unsubscribe");
list_header!(ListUnsubscribePost, "List-Unsubscribe-Post");

/// Where mail goes.
#[derive(Clone)]
pub enum MailTransport {
    /// Each message as an `.eml` file in a folder, for development and tests. Files appear
    /// whole: each is written under a temporary name, then renamed.
    File { dir: PathBuf },
    /// Each message only as a log line.
    Log,
    /// An SMTP server, over a pool of connections, behind a circuit breaker.
    Smtp { host: String, transport: AsyncSmtpTransport<Tokio1Executor>, breaker: Arc<CircuitBreaker> },
}

fn smtp_transport(smtp: &SmtpConfig) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let builder = match smtp.security {
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)?,
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)?,
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
    };
    let mut builder = builder
        .port(smtp.port())
        .timeout(Some(Duration::from_secs(smtp.timeout_secs)))
        .pool_config(PoolConfig::new().max_size(smtp.pool_size));
    if let (Some(username), Some(password)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(Credentials::new(username.clone(), password.expose_secret().to_owned()));
    }
    Ok(builder.build())
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
                MailTransport::File { dir }
            }
            MailTransportKind::Log => MailTransport::Log,
            MailTransportKind::Smtp => MailTransport::Smtp {
                host: format!("{}:{}", config.mail.smtp.host, config.mail.smtp.port()),
                transport: smtp_transport(&config.mail.smtp)?,
                breaker: Arc::new(CircuitBreaker::new(
                    config.mail.smtp.circuit_failures,
                    Duration::from_secs(config.mail.smtp.circuit_cooldown_secs),
                )),
            },
        };
        Ok(Self { from, transport })
    }

    /// Builds and delivers `email` under the unique `key` (a job's id), returning its
    /// `Message-ID`. The same key always gives the same `Message-ID` and, with the file
    /// transport, the same file, so a delivery retried after a crash is recognisable as one
    /// message (and is one file).
    pub async fn send(&self, email: Email, key: &str) -> anyhow::Result<String> {
        anyhow::ensure!(
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "a message key is letters, digits, `_` and `-`"
        );
        let message_id = format!("<{key}@{}>", self.from.email.domain());
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(email.to.parse::<Mailbox>()?)
            .subject(&email.subject)
            .message_id(Some(message_id.clone()));
        if let Some(reply_to) = &email.reply_to {
            builder = builder.reply_to(reply_to.parse::<Mailbox>()?);
        }
        if let Some(url) = &email.unsubscribe_url {
            builder = builder
                .header(ListUnsubscribe(format!("<{url}>")))
                .header(ListUnsubscribePost("List-Unsubscribe=One-Click".into()));
        }
        let message = builder.multipart(MultiPart::alternative_plain_html(email.text, email.html))?;
        match &self.transport {
            MailTransport::File { dir } => {
                let partial = dir.join(format!(".{key}.eml.partial"));
                let path = dir.join(format!("{key}.eml"));
                tokio::fs::write(&partial, message.formatted()).await?;
                tokio::fs::rename(&partial, &path).await?;
                tracing::info!(mail.path = %path.display(), mail.subject = %email.subject, "email written");
            }
            MailTransport::Log => {
                tracing::info!(mail.subject = %email.subject, "email not sent: the log transport is configured");
            }
            MailTransport::Smtp { host, transport, breaker } => {
                if let Err(wait) = breaker.check() {
                    anyhow::bail!("{host} failed repeatedly; not trying again for {} s", wait.as_secs() + 1);
                }
                let response = match transport.send(message).await {
                    Ok(response) => {
                        breaker.record_success();
                        response
                    }
                    Err(err) => {
                        breaker.record_failure();
                        return Err(err.into());
                    }
                };
                tracing::info!(mail.server = %host, mail.message_id = %message_id, smtp.code = %response.code(), "email accepted");
            }
        }
        Ok(message_id)
    }
}
