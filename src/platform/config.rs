//! Configuration: safe defaults, `backroom.toml`, then `BACKROOM_*` environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Everything Backroom can be told at start. Every field has a safe default.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server binds to.
    pub listen: SocketAddr,
    /// Folder for the embedded database, outgoing mail files and media.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; defaults to a SQLite file in `data_dir`.
    #[serde(skip_serializing)]
    pub database_url: Option<SecretString>,
    /// The address shoppers reach the shop at, used in emailed links and to decide on `Secure` cookies.
    pub public_url: Option<String>,
    /// The shop's name, used in emails.
    pub shop_name: String,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub auth: AuthConfig,
    pub mail: MailConfig,
    pub database: DatabaseConfig,
    pub jobs: JobsConfig,
    pub webhooks: WebhooksConfig,
    pub forms: FormsConfig,
    pub catalog: CatalogConfig,
    pub storefront: StorefrontConfig,
    pub media: MediaConfig,
    pub checkout: CheckoutConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `backroom=debug,sqlx=warn`; `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// Time a request may take before it is answered 503.
    pub request_timeout_secs: u64,
    /// Origins allowed to call the API from a browser (CORS). Empty: none.
    pub cors_allowed_origins: Vec<String>,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Seconds in-flight requests get to finish after SIGTERM or SIGINT.
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// A customer's session ends after this many days without use.
    pub customer_session_days: u64,
    /// A staff session ends after this many hours without use.
    pub staff_session_hours: u64,
    /// Failed sign-ins for one account within the window before it answers 429.
    pub max_failures_per_account: u32,
    /// Failed sign-ins from one address within the window before it answers 429.
    pub max_failures_per_ip: u32,
    /// The window failed sign-ins are counted over, in seconds.
    pub failure_window_secs: u64,
    /// Hours a password reset link stays valid.
    pub reset_token_hours: u64,
    /// Hours an email verification link stays valid.
    pub verify_token_hours: u64,
    /// Force the `Secure` attribute on cookies; by default it follows `public_url`'s scheme.
    pub secure_cookies: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransportKind {
    /// Writes each message as an `.eml` file under `data_dir/mail`.
    File,
    /// Writes each message to the log only.
    Log,
    /// Delivers each message to the SMTP server in `mail.smtp`.
    Smtp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// TLS from the first byte (usually port 465).
    Tls,
    /// Plain connection upgraded with STARTTLS, which must succeed (usually port 587).
    Starttls,
    /// No encryption: only for a relay on the same machine or a test server.
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    /// Defaults to 465 for `tls`, 587 for `starttls`, 25 for `none`.
    pub port: Option<u16>,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    #[serde(skip_serializing)]
    pub password: Option<SecretString>,
    /// Seconds to connect and for each exchange with the server.
    pub timeout_secs: u64,
    /// Connections kept open to the server.
    pub pool_size: u32,
    /// Failed deliveries in a row after which the server is left alone for a while.
    pub circuit_failures: u32,
    /// Seconds the server is left alone after that.
    pub circuit_cooldown_secs: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: None,
            security: SmtpSecurity::Starttls,
            username: None,
            password: None,
            timeout_secs: 10,
            pool_size: 4,
            circuit_failures: 5,
            circuit_cooldown_secs: 30,
        }
    }
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            SmtpSecurity::Tls => 465,
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::None => 25,
        })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    pub transport: MailTransportKind,
    /// The sender of every email, `Name <address>` or a bare address.
    pub from: String,
    pub smtp: SmtpConfig,
    /// A folder of templates that replace the built-in ones; default `data_dir/templates/email`.
    pub templates_dir: Option<PathBuf>,
    /// The shop's logo in emails (an `https://` address); without it, the shop's name.
    pub logo_url: Option<String>,
    /// The colour of buttons and the name in emails, `#rrggbb`.
    pub brand_color: String,
    /// The locale whose templates (`name.{locale}.txt`) are preferred.
    pub locale: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Job workers in this process (in `serve` and in `worker`).
    pub workers: usize,
    /// Run workers inside `backroom serve`; turn off when `backroom worker` runs them apart.
    pub in_serve: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Waits, in seconds, before each retry of a failed delivery. The default retries for
    /// about 27 hours: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    pub retry_schedule_secs: Vec<u64>,
    /// An endpoint whose deliveries have all failed for this long is disabled and its owner told.
    pub disable_after_secs: u64,
    /// Seconds to wait for a connection to a receiver.
    pub connect_timeout_secs: u64,
    /// Seconds a receiver has to answer, connection included.
    pub timeout_secs: u64,
    /// Failures in a row after which a destination is left alone for `circuit_cooldown_secs`.
    pub circuit_failures: u32,
    pub circuit_cooldown_secs: u64,
    /// Allow endpoints on loopback addresses (127.0.0.0/8, ::1), for local development and tests.
    pub allow_loopback: bool,
    /// Allow endpoints on private, link-local and other non-public addresses.
    pub allow_private: bool,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            retry_schedule_secs: vec![5, 300, 1800, 7200, 18_000, 36_000, 36_000],
            disable_after_secs: 86_400,
            connect_timeout_secs: 5,
            timeout_secs: 15,
            circuit_failures: 5,
            circuit_cooldown_secs: 60,
            allow_loopback: false,
            allow_private: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Show shoppers how many units are available, not only whether a variant is in stock.
    pub show_stock_quantity: bool,
}

/// The server-rendered shop.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorefrontConfig {
    /// A folder whose `templates/` and `assets/` replace the built-in theme's files of the
    /// same name; default `data_dir/theme`.
    pub theme_dir: Option<PathBuf>,
}

/// When card payments are captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    /// When the order is placed.
    Immediate,
    /// Authorised when the order is placed, captured when it is fulfilled.
    Fulfilment,
}

/// Carts, stock holds and payments.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckoutConfig {
    /// How long an untouched cart lives.
    pub cart_ttl_days: u64,
    /// How long stock stays held for a payment that waits on the shopper (3-D Secure).
    pub hold_secs: u64,
    /// How long a payment provider may take to answer before the attempt is called off.
    pub payment_timeout_secs: u64,
    pub capture: CaptureMode,
    /// The payment providers shoppers may choose: `manual`, `test`, `stripe`.
    pub providers: Vec<String>,
    pub stripe: StripeConfig,
}

/// Stripe: the account's secret key and the webhook endpoint's signing secret.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripeConfig {
    #[serde(skip_serializing)]
    pub secret_key: Option<SecretString>,
    /// `whsec_...`, shown by Stripe for the endpoint `/api/v1/payments/stripe/webhook`.
    #[serde(skip_serializing)]
    pub webhook_secret: Option<SecretString>,
    /// Stripe's API; another address only for a test double.
    pub api_base: String,
    /// How old a webhook's signature may be.
    pub webhook_tolerance_secs: u64,
}

impl Default for StripeConfig {
    fn default() -> Self {
        Self {
            secret_key: None,
            webhook_secret: None,
            api_base: "https://api.stripe.com".into(),
            webhook_tolerance_secs: 300,
        }
    }
}

impl Default for CheckoutConfig {
    fn default() -> Self {
        Self {
            cart_ttl_days: 30,
            hold_secs: 900,
            payment_timeout_secs: 20,
            capture: CaptureMode::Immediate,
            providers: vec!["manual".into()],
            stripe: StripeConfig::default(),
        }
    }
}

/// Where images go and what they become.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// The largest upload taken, in bytes.
    pub max_upload_bytes: usize,
    /// The most pixels (width times height) an image may have: more is refused before
    /// decoding, against decompression bombs.
    pub max_pixels: u64,
    /// The widths each image is made in (WebP); never wider than the original.
    pub widths: Vec<u32>,
    /// `local` (under `data_dir/media`) or `s3`.
    pub store: MediaStoreKind,
    pub s3: S3Config,
    /// Where shoppers fetch images from, such as a CDN in front of the bucket; by default
    /// Backroom serves them under `/media/`.
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaStoreKind {
    Local,
    S3,
}

/// An S3-compatible bucket.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    /// For stores other than AWS (MinIO, R2...): their address.
    pub endpoint: Option<String>,
    pub access_key_id: String,
    #[serde(skip_serializing)]
    pub secret_access_key: Option<SecretString>,
    /// Paths like `endpoint/bucket/key` instead of `bucket.endpoint/key`.
    pub path_style: bool,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 20 * 1024 * 1024,
            max_pixels: 50_000_000,
            widths: vec![320, 640, 1280],
            store: MediaStoreKind::Local,
            s3: S3Config { region: "us-east-1".into(), ..S3Config::default() },
            public_url: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FormsConfig {
    /// Form submissions and newsletter sign-ups one address may send per window.
    pub max_per_ip: u32,
    pub window_secs: u64,
    /// Where form submissions are emailed when a form names no address; defaults to `mail.from`.
    pub notify_email: Option<String>,
    /// Hours a newsletter confirmation link works.
    pub confirm_token_hours: u64,
}

impl Default for FormsConfig {
    fn default() -> Self {
        Self { max_per_ip: 5, window_secs: 600, notify_email: None, confirm_token_hours: 72 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Connections for readers (SQLite) or for everything (PostgreSQL).
    pub max_connections: u32,
    /// Milliseconds SQLite waits on a locked database before giving up.
    pub busy_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./backroom-data"),
            database_url: None,
            public_url: None,
            shop_name: "Backroom".into(),
            log: LogConfig::default(),
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            mail: MailConfig::default(),
            database: DatabaseConfig::default(),
            jobs: JobsConfig::default(),
            webhooks: WebhooksConfig::default(),
            forms: FormsConfig::default(),
            catalog: CatalogConfig::default(),
            storefront: StorefrontConfig::default(),
            media: MediaConfig::default(),
            checkout: CheckoutConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Pretty, level: "info".into() }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            cors_allowed_origins: Vec::new(),
            trust_forwarded_for: false,
            shutdown_grace_secs: 30,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            customer_session_days: 30,
            staff_session_hours: 12,
            max_failures_per_account: 5,
            max_failures_per_ip: 20,
            failure_window_secs: 15 * 60,
            reset_token_hours: 1,
            verify_token_hours: 72,
            secure_cookies: None,
        }
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            transport: MailTransportKind::File,
            from: "Backroom <shop@localhost>".into(),
            smtp: SmtpConfig::default(),
            templates_dir: None,
            logo_url: None,
            brand_color: "#1f6feb".into(),
            locale: "en".into(),
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self { workers: 2, in_serve: true }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { max_connections: 8, busy_timeout_ms: 5000 }
    }
}

/// A setting that cannot be used, named so the operator can fix it.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting `{setting}`: {reason}")]
pub struct ConfigError {
    pub setting: String,
    pub reason: String,
}

impl ConfigError {
    fn new(setting: &str, reason: impl Into<String>) -> Self {
        Self { setting: setting.into(), reason: reason.into() }
    }
}

impl Config {
    /// Reads `path` (when it exists), then `BACKROOM_*` variables; nested keys use `__`
    /// (`BACKROOM_HTTP__BODY_LIMIT_BYTES`). `BACKROOM_CONFIG` (the file's path) and
    /// `BACKROOM_TEST_*` (the test harness's) are not settings. The result is validated.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let figment = Figment::from(Serialized::defaults(Config::default())).merge(Toml::file(path)).merge(
            Env::prefixed("BACKROOM_")
                .filter(|key| key != "config" && !key.as_str().to_ascii_lowercase().starts_with("test_"))
                .split("__"),
        );
        let config: Config = figment.extract().map_err(|err| {
            let setting = err.path.join(".");
            ConfigError::new(if setting.is_empty() { "config" } else { &setting }, err.kind.to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: ranges, URL schemes, origins, addresses.
    /// How long a payment provider may take to answer.
    pub fn payment_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.checkout.payment_timeout_secs)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        use secrecy::ExposeSecret;
        if let Some(url) = &self.database_url {
            let url = url.expose_secret();
            if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(ConfigError::new("database_url", "must start with sqlite:, postgres:// or postgresql://"));
            }
        }
        if let Some(public) = &self.public_url
            && !(public.starts_with("http://") || public.starts_with("https://"))
        {
            return Err(ConfigError::new("public_url", "must start with http:// or https://"));
        }
        let checkout = &self.checkout;
        if !(1..=365).contains(&checkout.cart_ttl_days) {
            return Err(ConfigError::new("checkout.cart_ttl_days", "must be between 1 and 365"));
        }
        if !(60..=86_400).contains(&checkout.hold_secs) {
            return Err(ConfigError::new("checkout.hold_secs", "must be between 60 and 86400"));
        }
        if !(1..=120).contains(&checkout.payment_timeout_secs) {
            return Err(ConfigError::new("checkout.payment_timeout_secs", "must be between 1 and 120"));
        }
        if checkout.hold_secs < checkout.payment_timeout_secs + 60 {
            return Err(ConfigError::new(
                "checkout.hold_secs",
                "must be at least a minute longer than checkout.payment_timeout_secs",
            ));
        }
        if let Some(unknown) = checkout.providers.iter().find(|p| !["manual", "test", "stripe"].contains(&p.as_str())) {
            return Err(ConfigError::new("checkout.providers", format!("`{unknown}` is not manual, test or stripe")));
        }
        if checkout.providers.iter().any(|p| p == "stripe")
            && (checkout.stripe.secret_key.is_none() || checkout.stripe.webhook_secret.is_none())
        {
            return Err(ConfigError::new(
                "checkout.stripe",
                "the stripe provider needs checkout.stripe.secret_key and checkout.stripe.webhook_secret",
            ));
        }
        if !(checkout.stripe.api_base.starts_with("https://") || checkout.stripe.api_base.starts_with("http://")) {
            return Err(ConfigError::new("checkout.stripe.api_base", "must start with https://"));
        }
        if self.http.body_limit_bytes < 1024 {
            return Err(ConfigError::new("http.body_limit_bytes", "must be at least 1024"));
        }
        if self.http.request_timeout_secs == 0 {
            return Err(ConfigError::new("http.request_timeout_secs", "must be at least 1"));
        }
        for origin in &self.http.cors_allowed_origins {
            if origin.parse::<axum::http::HeaderValue>().is_err()
                || !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                return Err(ConfigError::new(
                    "http.cors_allowed_origins",
                    format!("`{origin}` is not an origin like https://shop.example"),
                ));
            }
        }
        let auth = &self.auth;
        for (setting, value) in [
            ("auth.customer_session_days", auth.customer_session_days),
            ("auth.staff_session_hours", auth.staff_session_hours),
            ("auth.failure_window_secs", auth.failure_window_secs),
            ("auth.reset_token_hours", auth.reset_token_hours),
            ("auth.verify_token_hours", auth.verify_token_hours),
            ("auth.max_failures_per_account", auth.max_failures_per_account.into()),
            ("auth.max_failures_per_ip", auth.max_failures_per_ip.into()),
        ] {
            if value == 0 {
                return Err(ConfigError::new(setting, "must be at least 1"));
            }
        }
        let media = &self.media;
        if media.widths.is_empty() || media.widths.len() > 8 || media.widths.iter().any(|w| !(16..=4096).contains(w)) {
            return Err(ConfigError::new("media.widths", "must list 1 to 8 widths between 16 and 4096"));
        }
        if media.max_upload_bytes < 1024 {
            return Err(ConfigError::new("media.max_upload_bytes", "must be at least 1024"));
        }
        if media.max_pixels < 1024 {
            return Err(ConfigError::new("media.max_pixels", "must be at least 1024"));
        }
        if media.store == MediaStoreKind::S3 && media.s3.bucket.is_empty() {
            return Err(ConfigError::new("media.s3.bucket", "is needed when media.store is `s3`"));
        }
        if self.jobs.workers == 0 || self.jobs.workers > 256 {
            return Err(ConfigError::new("jobs.workers", "must be between 1 and 256"));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::new("database.max_connections", "must be at least 1"));
        }
        if self.mail.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError::new("mail.from", "must be an address such as `Shop <shop@example.com>`"));
        }
        let color = &self.mail.brand_color;
        if !(color.len() == 7 && color.starts_with('#') && color[1..].bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(ConfigError::new("mail.brand_color", "must be a colour such as #1f6feb"));
        }
        if self.mail.logo_url.as_ref().is_some_and(|url| !url.starts_with("https://") || url.contains(['"', '<', '>']))
        {
            return Err(ConfigError::new("mail.logo_url", "must be an https:// address"));
        }
        let locale = &self.mail.locale;
        if locale.is_empty() || locale.len() > 16 || !locale.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ConfigError::new("mail.locale", "must be a locale such as en or pt-BR"));
        }
        let smtp = &self.mail.smtp;
        if self.mail.transport == MailTransportKind::Smtp {
            if smtp.host.trim().is_empty() {
                return Err(ConfigError::new("mail.smtp.host", "must name the SMTP server"));
            }
            if smtp.username.is_some() != smtp.password.is_some() {
                return Err(ConfigError::new("mail.smtp.password", "username and password go together"));
            }
        }
        if smtp.timeout_secs == 0 || smtp.pool_size == 0 || smtp.circuit_failures == 0 {
            return Err(ConfigError::new(
                "mail.smtp.timeout_secs",
                "timeout, pool size and circuit failures must be at least 1",
            ));
        }
        let hooks = &self.webhooks;
        if hooks.retry_schedule_secs.is_empty() || hooks.retry_schedule_secs.len() > 50 {
            return Err(ConfigError::new("webhooks.retry_schedule_secs", "must list between 1 and 50 waits"));
        }
        for (setting, value) in [
            ("webhooks.disable_after_secs", hooks.disable_after_secs),
            ("webhooks.connect_timeout_secs", hooks.connect_timeout_secs),
            ("webhooks.timeout_secs", hooks.timeout_secs),
            ("webhooks.circuit_failures", hooks.circuit_failures.into()),
            ("forms.max_per_ip", self.forms.max_per_ip.into()),
            ("forms.window_secs", self.forms.window_secs),
            ("forms.confirm_token_hours", self.forms.confirm_token_hours),
        ] {
            if value == 0 {
                return Err(ConfigError::new(setting, "must be at least 1"));
            }
        }
        if self.forms.notify_email.as_ref().is_some_and(|to| to.parse::<lettre::message::Mailbox>().is_err()) {
            return Err(ConfigError::new("forms.notify_email", "must be an address such as `Shop <shop@example.com>`"));
        }
        if self.shop_name.trim().is_empty() {
            return Err(ConfigError::new("shop_name", "must not be empty"));
        }
        Ok(())
    }

    /// The database to use: the configured URL, or a SQLite file in the data folder.
    pub fn database_url(&self) -> SecretString {
        use secrecy::ExposeSecret;
        match &self.database_url {
            Some(url) => url.expose_secret().into(),
            None => format!("sqlite://{}", self.data_dir.join("backroom.db").display()).into(),
        }
    }

    /// The public base URL without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }

    pub fn secure_cookies(&self) -> bool {
        self.auth.secure_cookies.unwrap_or_else(|| self.public_url().starts_with("https://"))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.http.request_timeout_secs)
    }
}
