//! The HTTP test harness: the real application on 127.0.0.1:0, on a fresh database per test,
//! SQLite or PostgreSQL, driven over real HTTP.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use backroom::app::{self, AppState};
use backroom::platform::config::Config;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each test body once per backend: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! conformance {
    ($(async fn $name:ident($backend:ident) $body:block)*) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let $backend = $crate::common::Backend::Sqlite;
                    $body
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if !$crate::common::postgres_available().await {
                        return;
                    }
                    let $backend = $crate::common::Backend::Postgres;
                    $body
                }
            }
        )*
    };
}

/// The server tests create their databases on.
pub fn postgres_url() -> String {
    std::env::var("BACKROOM_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Whether PostgreSQL can be reached. Under `CI=true` it must be: the run fails instead of
/// skipping half the suite.
pub async fn postgres_available() -> bool {
    use sqlx::Connection;
    match sqlx::PgConnection::connect(&postgres_url()).await {
        Ok(conn) => {
            drop(conn.close().await);
            true
        }
        Err(err) => {
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!("PostgreSQL is required under CI=true but {} does not answer: {err}", postgres_url());
            }
            eprintln!(
                "\n!!! SKIPPED: PostgreSQL at {} does not answer ({err}); the PostgreSQL half did not run !!!\n",
                postgres_url()
            );
            false
        }
    }
}

/// A running application and a client for it.
pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    pub data_dir: tempfile::TempDir,
    pub backend: Backend,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    stop_workers: tokio::sync::watch::Sender<bool>,
    pg_database: Option<String>,
}

/// The configuration every test starts from; a test may change it before the app starts.
pub fn test_config(data_dir: &std::path::Path) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        data_dir: data_dir.to_path_buf(),
        shop_name: "Test Shop".into(),
        ..Config::default()
    };
    config.database.max_connections = 4;
    config.checkout.providers = vec!["manual".into(), "test".into()];
    config
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().expect("a temporary folder");
        let mut config = test_config(data_dir.path());
        let pg_database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let name = format!("br_test_{}", ulid::Ulid::new().to_string().to_lowercase());
                admin_query(&format!("CREATE DATABASE \"{name}\"")).await;
                let url = url_with_database(&postgres_url(), &name);
                config.database_url = Some(url.into());
                Some(name)
            }
        };
        configure(&mut config);
        let listener = tokio::net::TcpListener::bind(config.listen).await.expect("a free port");
        let address = listener.local_addr().expect("a bound address");
        let state = app::build_state(config).await.expect("the app starts");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app::serve(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(backroom::messaging::jobs::run_workers(state.clone(), 2, workers_stopped));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a client");
        Self {
            address,
            client,
            state,
            data_dir,
            backend,
            shutdown: Some(shutdown),
            server: Some(server),
            stop_workers,
            pg_database,
        }
    }

    /// A second node on the same PostgreSQL database, as in a deployment of several nodes.
    pub async fn spawn_peer(&self) -> TestApp {
        let name = self.pg_database.clone().expect("peers share a PostgreSQL database");
        let url = url_with_database(&postgres_url(), &name);
        let mut peer = Self::spawn_with(Backend::Sqlite, |config| config.database_url = Some(url.into())).await;
        peer.backend = Backend::Postgres;
        peer
    }

    /// The app's data folder (its SQLite file, mail and media).
    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Sends a request with an optional JSON body and extra headers.
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Resp {
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Resp::from(request.send().await.expect("the server answers")).await
    }

    /// Posts `body` as it is, with its content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
        let mut request = self.client.post(self.url(path)).header("content-type", content_type).body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Resp::from(request.send().await.expect("the server answers")).await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request(Method::GET, path, None, headers).await
    }

    pub async fn post(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Resp {
        self.request(Method::POST, path, Some(body), headers).await
    }

    /// Posts `fields` as a classic HTML form (`application/x-www-form-urlencoded`).
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body = serde_urlencoded::to_string(fields).expect("encodable");
        let request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "text/html")
            .body(body);
        Resp::from(request.send().await.expect("the server answers")).await
    }

    pub async fn patch(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Resp {
        self.request(Method::PATCH, path, Some(body), headers).await
    }

    pub async fn put(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Resp {
        self.request(Method::PUT, path, Some(body), headers).await
    }

    pub async fn delete(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request(Method::DELETE, path, None, headers).await
    }

    /// Every email written so far, decoded, oldest first.
    pub fn emails(&self) -> Vec<Mail> {
        let dir = self.data_dir.path().join("mail");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|ext| ext == "eml"));
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files.iter().map(|p| Mail::parse(&std::fs::read_to_string(p).expect("a readable email"))).collect()
    }

    /// Waits until at least `count` emails were written (mail is sent in the background).
    pub async fn wait_for_emails(&self, count: usize) -> Vec<Mail> {
        for _ in 0..100 {
            let emails = self.emails();
            if emails.len() >= count {
                return emails;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {count} emails, found {}", self.emails().len());
    }

    /// Runs a statement on the app's database, to set up what no endpoint can (time passing).
    pub async fn execute(&self, sql: &str) {
        use backroom::db_run;
        db_run!(self.state.db.write().await.expect("the writer is open"), |conn| sqlx::query(sql)
            .execute(conn)
            .await
            .map(|_| ()))
        .expect("the statement runs");
    }

    /// Creates a staff member with `role` and signs them in: the `Authorization` value.
    pub async fn staff(&self, email: &str, role: backroom::accounts::roles::Role) -> String {
        let password = "a long staff passphrase";
        let new = backroom::accounts::staff::NewStaff { email, password, name: "Sam Staff", role };
        backroom::accounts::staff::create_staff(&self.state.db, new, None).await.expect("created");
        let resp = self
            .post("/api/v1/admin/auth/sessions", serde_json::json!({"email": email, "password": password}), &[])
            .await;
        assert_eq!(resp.status, 201, "{}", resp.text);
        format!("Bearer {}", resp.body["token"].as_str().expect("a token"))
    }

    pub async fn count(&self, sql: &str) -> i64 {
        use backroom::db_run;
        db_run!(self.state.db.read().await.expect("a reader"), |conn| sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(conn)
            .await)
        .expect("the query runs")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.stop_workers.send(true);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
        if let Some(name) = self.pg_database.take() {
            // Dropping happens outside the test's runtime, which may be shutting down.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
                runtime.block_on(admin_query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")));
            })
            .join();
        }
    }
}

/// A new, empty PostgreSQL database: its name and URL. The caller drops it with
/// [`drop_database`].
pub async fn create_database() -> (String, String) {
    let name = format!("br_test_{}", ulid::Ulid::new().to_string().to_lowercase());
    admin_query(&format!("CREATE DATABASE \"{name}\"")).await;
    let url = url_with_database(&postgres_url(), &name);
    (name, url)
}

pub async fn drop_database(name: &str) {
    admin_query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
}

async fn admin_query(sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&postgres_url()).await.expect("PostgreSQL answers");
    sqlx::query(sql).execute(&mut conn).await.expect("the admin statement runs");
    drop(conn.close().await);
}

fn url_with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// A response, read whole.
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Resp {
    /// Reads a response sent some other way than through [`TestApp::request`].
    pub async fn read(response: reqwest::Response) -> Self {
        Self::from(response).await
    }

    async fn from(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self { status, headers, text, body }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(HeaderName::from_bytes(name.as_bytes()).ok()?).and_then(|v: &HeaderValue| v.to_str().ok())
    }

    /// The `Set-Cookie` value of `name`, without attributes.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_owned())
    }

    /// The full `Set-Cookie` line of `name`, attributes included.
    pub fn set_cookie_line(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// Asserts this is a problem document with `status` and `code`, and returns it.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "body: {}", self.text);
        assert_eq!(self.body["code"], code, "body: {}", self.text);
        assert_eq!(self.body["status"], status, "body: {}", self.text);
        assert!(self.body["type"].as_str().is_some_and(|t| t.ends_with(code)), "body: {}", self.text);
        assert!(self.body["title"].is_string() && self.body["detail"].is_string(), "body: {}", self.text);
        &self.body
    }

    /// The fields named by a validation problem.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

/// An email as a test reads it.
#[derive(Debug)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    /// The message's headers, unfolded, in order.
    pub headers: Vec<(String, String)>,
}

impl Mail {
    fn parse(raw: &str) -> Self {
        let raw = raw.replace("\r\n", "\n");
        let header = |name: &str| {
            raw.lines()
                .take_while(|line| !line.is_empty())
                .find_map(|line| line.strip_prefix(&format!("{name}: ")))
                .unwrap_or("")
                .to_owned()
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in raw.lines().take_while(|line| !line.is_empty()) {
            match (line.starts_with([' ', '\t']), headers.last_mut()) {
                (true, Some((_, value))) => value.push_str(line.trim_start()),
                _ => {
                    if let Some((name, value)) = line.split_once(':') {
                        headers.push((name.to_owned(), value.trim().to_owned()));
                    }
                }
            }
        }
        Self { to: header("To"), subject: header("Subject"), text: text_part(&raw), headers }
    }

    /// The first header called `name` (any case), unfolded.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The first link in the text containing `token=`, and its token.
    pub fn token(&self) -> String {
        let start = self.text.find("token=").expect("a link with a token") + "token=".len();
        self.text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect()
    }
}

/// The decoded `text/plain` part of a MIME message.
fn text_part(raw: &str) -> String {
    let start = raw.find("Content-Type: text/plain").expect("a text part");
    let part = &raw[start..];
    let (headers, rest) = part.split_once("\n\n").expect("a part body");
    let body = rest.split("\n--").next().unwrap_or("");
    if headers.contains("Content-Transfer-Encoding: base64") {
        use base64::Engine;
        let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(compact).expect("base64")).expect("utf-8")
    } else if headers.contains("Content-Transfer-Encoding: quoted-printable") {
        decode_quoted_printable(body)
    } else {
        body.to_owned()
    }
}

fn decode_quoted_printable(body: &str) -> String {
    let joined = body.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The test virtualenv (shared with `scripts/schemathesis.sh`), with `package` installed.
/// Installs it on first use; a lock keeps concurrent tests from installing twice.
pub fn python_with(package: &str) -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv");
    let python = venv.join("bin/python");
    let module = package.split(['=', '[']).next().unwrap_or(package);
    let script = format!(
        "set -e; [ -x '{python}' ] || python3 -m venv '{venv}'; \
         '{python}' -c 'import {module}' 2>/dev/null || '{python}' -m pip install --quiet --disable-pip-version-check '{package}'",
        python = python.display(),
        venv = venv.display(),
    );
    std::fs::create_dir_all(venv.parent().expect("a parent")).expect("the target folder");
    let lock = venv.with_extension("lock");
    let status = std::process::Command::new("flock")
        .arg(&lock)
        .args(["sh", "-c", &script])
        .status()
        .expect("flock and python3 are installed");
    assert!(status.success(), "installing {package} into {} failed", venv.display());
    python
}

/// The npm tools the storefront's tests check and drive pages with, installed on first use into
/// `target/test-node` (a lock keeps concurrent tests from installing twice): the folder
/// holding their `node_modules`.
pub fn npm_tools() -> PathBuf {
    const PACKAGES: &str = "vnu-jar@26.9.27 structured-data-testing-tool@4.5.0 playwright-core@1.65.1 sitemap@9.0.1";
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-node");
    let marker = root.join(format!("installed-{}", PACKAGES.replace([' ', '@', '/'], "_")));
    let script = format!(
        "set -e; [ -f '{marker}' ] && exit 0; mkdir -p '{root}'; \
         npm install --prefix '{root}' --no-audit --no-fund --silent -E {PACKAGES}; touch '{marker}'",
        marker = marker.display(),
        root = root.display(),
    );
    std::fs::create_dir_all(root.parent().expect("a parent")).expect("the target folder");
    let status = std::process::Command::new("flock")
        .arg(root.with_extension("lock"))
        .args(["sh", "-c", &script])
        .status()
        .expect("flock and npm are installed");
    assert!(status.success(), "installing {PACKAGES} into {} failed", root.display());
    root
}

/// A real SMTP server (aiosmtpd) on loopback, storing what it receives in a maildir.
pub struct SmtpServer {
    child: std::process::Child,
    pub port: u16,
    maildir: tempfile::TempDir,
}

impl SmtpServer {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::start_on(port, tempfile::tempdir().unwrap()).await
    }

    /// Starts on `port`, keeping what earlier servers stored in `maildir`.
    pub async fn start_on(port: u16, maildir: tempfile::TempDir) -> Self {
        let python = python_with("aiosmtpd==1.4.6");
        let mut child = std::process::Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("box"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("aiosmtpd starts");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Self { child, port, maildir };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("aiosmtpd did not listen on {port}");
    }

    /// Stops the server, handing back its maildir for a successor.
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.maildir, dir)
    }

    /// Every message received, as raw text.
    pub fn raw_messages(&self) -> Vec<String> {
        let new = self.maildir.path().join("box/new");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&new)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files.iter().map(|p| std::fs::read_to_string(p).expect("a readable message")).collect()
    }

    pub fn messages(&self) -> Vec<Mail> {
        self.raw_messages().iter().map(|raw| Mail::parse(raw)).collect()
    }

    pub async fn wait_for(&self, count: usize) -> Vec<Mail> {
        for _ in 0..200 {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {count} messages at the SMTP server, found {}", self.messages().len());
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A webhook receiver on loopback that verifies every delivery with the official
/// `standardwebhooks` library (tests/support/webhook_receiver.py).
pub struct WebhookReceiver {
    child: std::process::Child,
    pub port: u16,
    folder: tempfile::TempDir,
}

/// One request the receiver logged.
#[derive(Debug, serde::Deserialize)]
pub struct Received {
    /// Seconds since the epoch.
    pub at: f64,
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub content_type: String,
    pub body: Value,
    /// For each secret the receiver knew, whether the signature verified with it.
    pub verified: Vec<bool>,
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        let python = python_with("standardwebhooks==1.0.1");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let folder = tempfile::tempdir().unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/webhook_receiver.py");
        let mut child = std::process::Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg(folder.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the receiver starts");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Self { child, port, folder };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the webhook receiver did not listen on {port}");
    }

    /// The address of the receiver `name`, answering `status`.
    pub fn url(&self, name: &str, status: u16) -> String {
        format!("http://127.0.0.1:{}/{name}/{status}", self.port)
    }

    /// The secrets `name` verifies with, in order.
    pub fn set_secrets(&self, name: &str, secrets: &[&str]) {
        std::fs::write(self.folder.path().join(format!("{name}.secrets")), secrets.join("\n")).unwrap();
    }

    pub fn received(&self, name: &str) -> Vec<Received> {
        std::fs::read_to_string(self.folder.path().join(format!("{name}.log")))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a logged request"))
            .collect()
    }

    /// Waits until `name` has received at least `count` requests.
    pub async fn wait_for(&self, name: &str, count: usize, within: Duration) -> Vec<Received> {
        let started = std::time::Instant::now();
        loop {
            let received = self.received(name);
            if received.len() >= count {
                return received;
            }
            assert!(started.elapsed() < within, "{name} received {} requests of {count} in {within:?}", received.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The local double of Stripe's API (tests/support/stripe_double.py), answering in the shapes
/// of Stripe's published fixtures.
pub struct StripeDouble {
    child: std::process::Child,
    pub port: u16,
    folder: tempfile::TempDir,
}

impl StripeDouble {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let folder = tempfile::tempdir().unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/stripe_double.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(folder.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs the Stripe double");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Self { child, port, folder };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the Stripe double did not listen on {port}");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A test control (`/_test/...`), with form fields; answers its JSON.
    pub async fn control(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.url()))
            .form(form)
            .send()
            .await
            .expect("the double answers");
        resp.json().await.unwrap_or(Value::Null)
    }

    /// Every payment intent, charge, refund and event the double holds.
    pub async fn state(&self) -> Value {
        let resp = reqwest::get(format!("{}/_test/state", self.url())).await.expect("the double answers");
        resp.json().await.expect("its state")
    }

    /// Every request the double received, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.folder.path().join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a logged request"))
            .collect()
    }
}

impl Drop for StripeDouble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signs `payload` as Stripe does, with Stripe's own library (PyPI `stripe`).
pub fn stripe_signature(payload: &str, secret: &str) -> String {
    use std::io::Write;
    let python = python_with("stripe==16.1.0");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/stripe_sign.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .arg(secret)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the signer runs");
    child.stdin.take().expect("stdin").write_all(payload.as_bytes()).expect("the payload is written");
    let output = child.wait_with_output().expect("the signer ends");
    assert!(output.status.success(), "the signer failed");
    String::from_utf8(output.stdout).expect("text").trim().to_owned()
}
