//! The job queue's benchmark: no-op jobs per second with 1 and 4 workers, emails per second to
//! an SMTP server, webhook deliveries per second to a local receiver, and what enqueueing
//! adds to the transaction that causes a job. On SQLite and on PostgreSQL.
//!
//!   cargo bench --bench queue
//!
//! Settings (environment):
//!   BENCH_JOBS          no-op jobs per run                    (default 20000)
//!   BENCH_MESSAGES      emails and webhooks per run           (default 2000)
//!   BENCH_TXS           transactions timed for the overhead   (default 2000)
//!   BENCH_BACKENDS      `sqlite,postgres`                     (default both)
//!   BENCH_PG_URL        a PostgreSQL server to make a scratch database on
//!                       (default postgres://postgres@127.0.0.1:5432/postgres)
//!   BENCH_SMTP_PORT     an SMTP server on 127.0.0.1 to send to; without it, no email run
//!
//! Prints one tab-separated line per figure: `backend  measure  value  unit`.

use std::time::{Duration, Instant};

use backroom::app::{AppState, build_state};
use backroom::messaging::jobs::{NewJob, enqueue, run_workers};
use backroom::messaging::{NOOP, send_email, webhooks};
use backroom::platform::config::{Config, MailTransportKind, SmtpSecurity};
use backroom::platform::mail::Email;
use backroom::platform::time::Timestamp;
use backroom::{db_execute, db_run};
use sqlx::Connection;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A request error as the benchmark reports it.
fn app(err: backroom::platform::error::AppError) -> anyhow::Error {
    anyhow::anyhow!("{err:?}")
}

fn report(backend: &str, measure: &str, value: f64, unit: &str) {
    println!("{backend}\t{measure}\t{value:.3}\t{unit}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    for backend in backends.split(',') {
        match backend {
            "sqlite" => run_backend("sqlite", None).await?,
            "postgres" => {
                let server = std::env::var("BENCH_PG_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
                let name = format!("br_bench_{}", ulid::Ulid::new().to_string().to_lowercase());
                let mut admin = sqlx::PgConnection::connect(&server).await?;
                sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut admin).await?;
                let url = format!("{}/{name}", server.rsplit_once('/').map_or(server.as_str(), |(base, _)| base));
                let outcome = run_backend("postgres", Some(url)).await;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut admin).await?;
                outcome?;
            }
            other => anyhow::bail!("unknown backend {other}"),
        }
    }
    Ok(())
}

async fn start(
    data_dir: &std::path::Path,
    url: Option<&str>,
    configure: impl FnOnce(&mut Config),
) -> anyhow::Result<AppState> {
    let mut config = Config { data_dir: data_dir.to_path_buf(), ..Config::default() };
    config.log.level = "error".into();
    config.database_url = url.map(|u| u.to_owned().into());
    config.mail.transport = MailTransportKind::Log;
    config.webhooks.allow_loopback = true;
    configure(&mut config);
    build_state(config).await
}

async fn run_backend(backend: &str, url: Option<String>) -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    let state = start(data_dir.path(), url.as_deref(), |_| {}).await?;
    enqueue_overhead(backend, &state).await?;
    for workers in [1, 4] {
        let jobs = setting("BENCH_JOBS", 20_000);
        enqueue_many(&state, jobs, Load::Noop).await?;
        let rate = drain(&state, workers, jobs).await?;
        report(backend, &format!("noop_jobs_per_sec_{workers}_workers"), rate, "jobs/s");
        clear(&state).await?;
    }
    drop(state);

    let messages = setting("BENCH_MESSAGES", 2000);
    if let Ok(port) = std::env::var("BENCH_SMTP_PORT") {
        let port: u16 = port.parse()?;
        let state = start(data_dir.path(), url.as_deref(), |config| {
            config.mail.transport = MailTransportKind::Smtp;
            config.mail.smtp.host = "127.0.0.1".into();
            config.mail.smtp.port = Some(port);
            config.mail.smtp.security = SmtpSecurity::None;
        })
        .await?;
        enqueue_many(&state, messages, Load::Email).await?;
        let rate = drain(&state, 4, messages).await?;
        report(backend, "emails_per_sec_4_workers", rate, "emails/s");
        clear(&state).await?;
    }

    let receiver = receiver().await?;
    let state = start(data_dir.path(), url.as_deref(), |_| {}).await?;
    db_execute!(state.db.write().await?, |conn| {
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, url, event_types, secret, status, created_by, created_at, updated_at) \
             VALUES ('whe_bench', $1, '*', $2, 'enabled', 'bench', $3, $3)",
        )
        .bind(format!("http://{receiver}/hook"))
        .bind(webhooks::new_secret())
        .bind(Timestamp::now())
        .execute(conn)
        .await
    })?;
    enqueue_many(&state, messages, Load::Webhook).await?;
    let rate = drain(&state, 4, messages).await?;
    report(backend, "webhooks_per_sec_4_workers", rate, "deliveries/s");
    Ok(())
}

/// What each enqueued job is.
#[derive(Clone, Copy)]
enum Load {
    Noop,
    Email,
    Webhook,
}

/// Enqueues `count` jobs, 500 per transaction, with no worker running.
async fn enqueue_many(state: &AppState, count: usize, load: Load) -> anyhow::Result<()> {
    let email = Email {
        to: "shopper@example.com".into(),
        subject: "Your order".into(),
        text: "Thank you for your order.".into(),
        html: "<p>Thank you for your order.</p>".into(),
        reply_to: None,
        unsubscribe_url: None,
    };
    let event = serde_json::json!({"id": "cus_bench", "email": "shopper@example.com"});
    let mut left = count;
    while left > 0 {
        let mut tx = state.db.begin().await?;
        for _ in 0..left.min(500) {
            match load {
                Load::Noop => enqueue(&mut tx, NewJob::new(NOOP, &()).map_err(app)?).await.map(drop).map_err(app)?,
                Load::Email => send_email(&mut tx, &email).await.map_err(app)?,
                Load::Webhook => webhooks::emit(state, &mut tx, "customer.updated", &event).await.map_err(app)?,
            }
        }
        tx.commit().await?;
        left = left.saturating_sub(500);
    }
    Ok(())
}

/// Starts `workers` workers and times them until no job is queued or running. The check
/// stops at the first such job, so polling costs the database next to nothing.
async fn drain(state: &AppState, workers: usize, count: usize) -> anyhow::Result<f64> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let running = tokio::spawn(run_workers(state.clone(), workers, stopped));
    let pending = "SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE status IN ('queued', 'running') LIMIT 1) AS one";
    loop {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let left = db_run!(state.db.read().await?, |conn| sqlx::query_scalar::<_, i64>(pending).fetch_one(conn).await)?;
        if left == 0 {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "jobs still waiting after 10 minutes");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    running.await?;
    let failed = db_run!(state.db.read().await?, |conn| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM jobs WHERE status <> 'succeeded'").fetch_one(conn).await
    })?;
    anyhow::ensure!(failed == 0, "{failed} of {count} jobs did not succeed");
    Ok(count as f64 / elapsed)
}

async fn clear(state: &AppState) -> anyhow::Result<()> {
    for table in ["jobs", "email_deliveries"] {
        db_execute!(state.db.write().await?, |conn| sqlx::query(&format!("DELETE FROM {table}")).execute(conn).await)?;
    }
    Ok(())
}

/// What enqueueing adds to a transaction: the same small change (one audit row) committed
/// alone and with a job, alternately, with no worker running.
async fn enqueue_overhead(backend: &str, state: &AppState) -> anyhow::Result<()> {
    let rounds = setting("BENCH_TXS", 2000);
    let (mut plain, mut with_job) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for round in 0..rounds * 2 {
        let enqueues = round % 2 == 1;
        let started = Instant::now();
        let mut tx = state.db.begin().await?;
        backroom::accounts::audit::record(&mut tx, "system", "bench", "bench.change", None, "").await.map_err(app)?;
        if enqueues {
            enqueue(&mut tx, NewJob::new(NOOP, &()).map_err(app)?).await.map_err(app)?;
        }
        tx.commit().await?;
        let micros = started.elapsed().as_secs_f64() * 1e6;
        if enqueues { with_job.push(micros) } else { plain.push(micros) }
    }
    let median = |samples: &mut Vec<f64>| {
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    };
    let (plain, with_job) = (median(&mut plain), median(&mut with_job));
    report(backend, "tx_median_without_job", plain, "us");
    report(backend, "tx_median_with_job", with_job, "us");
    report(backend, "enqueue_overhead_median", with_job - plain, "us");
    clear(state).await
}

/// A receiver on loopback that answers every POST 204, as fast as it can.
async fn receiver() -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}
