//! Logs through `tracing` and metrics in the Prometheus text format.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use super::config::{LogConfig, LogFormat};
use super::db::Db;

/// Sets up the global log subscriber: pretty for a terminal, JSON lines when configured.
/// `RUST_LOG` overrides the configured level.
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    // A second app in the same process (the tests) keeps the first subscriber.
    drop(result);
}

/// The process-wide metrics recorder, installed on first use.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("http_request_duration_seconds".into()),
                &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            )
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is already installed, and then its data is what we render.
        drop(metrics::set_global_recorder(recorder));
        // Histograms keep raw samples until upkeep folds them into buckets: without it, memory
        // would grow with every request between two scrapes.
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "metrics upkeep thread not started");
        }
        handle
    })
}

/// Renders every metric, refreshing the gauges that are read rather than counted.
pub fn render_metrics(db: &Db) -> String {
    let handle = metrics_handle();
    for stats in db.pool_stats() {
        metrics::gauge!("db_pool_connections", "pool" => stats.name, "state" => "open").set(f64::from(stats.size));
        metrics::gauge!("db_pool_connections", "pool" => stats.name, "state" => "idle").set(stats.idle as f64);
    }
    if let Some(rss) = resident_memory_bytes() {
        metrics::gauge!("process_resident_memory_bytes").set(rss as f64);
    }
    handle.render()
}

/// The resident set size of this process, from `/proc/self/statm` (Linux).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
