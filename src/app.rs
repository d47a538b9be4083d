//! The application: its shared state, the router with every module and layer, and serving
//! with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::accounts;
use crate::accounts::auth::{CREDENTIALS, Resolved};
use crate::accounts::customers::{CUSTOMERS, CustomerView};
use crate::messaging::templates::EmailTemplates;
use crate::platform::cache::TtlCache;
use crate::platform::config::Config;
use crate::platform::db::Db;
use crate::platform::health;
use crate::platform::http;
use crate::platform::mail::Mailer;
use crate::platform::openapi::{self, ApiDoc};
use crate::platform::throttle::SlidingWindow;

/// How long a cached answer may live even without an invalidation: the bound on staleness
/// should a change notification from another node be lost.
const CACHE_TTL: Duration = Duration::from_secs(60);

/// What every handler can reach: one shared [`Shared`], so that the per-request clones
/// the router and extractors make cost one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub config: Config,
    pub db: Db,
    pub mailer: Mailer,
    /// The email templates, built in or the shop's own.
    pub templates: EmailTemplates,
    /// Failed sign-ins and password checks, per account and per address.
    pub sign_in_failures: SlidingWindow,
    /// Registrations, reset requests and verification emails, per address and account, per hour.
    pub account_requests: SlidingWindow,
    /// Sessions and API keys by token hash.
    pub credentials: Arc<TtlCache<Resolved>>,
    /// Customers by id.
    pub customers: Arc<TtlCache<CustomerView>>,
    /// Form submissions and newsletter sign-ups, per address.
    pub form_submissions: SlidingWindow,
    /// Every published product in memory, for shoppers' reads and searches.
    pub shelf: Arc<crate::catalog::shelf::Shelf>,
    /// Where images are kept.
    pub media: Arc<crate::catalog::media::MediaStore>,
    /// Imports running on this node: products written, of how many.
    pub imports: std::sync::Mutex<std::collections::HashMap<String, (usize, usize)>>,
    /// The sitemaps, built.
    pub sitemaps: Arc<TtlCache<crate::content::seo::Sitemaps>>,
    /// The redirects manager's rules.
    pub redirects: Arc<TtlCache<crate::content::redirects::Rules>>,
    /// The theme and the rendered pages of the shop.
    pub storefront: crate::storefront::Storefront,
    /// Regions, shipping zones and tax rates, for pricing carts.
    pub checkout_settings: Arc<TtlCache<crate::checkout::Settings>>,
    /// Answers the tax rate of each line of a cart.
    pub tax: Arc<dyn crate::checkout::tax::TaxProvider>,
    /// The payment providers the shop has set up.
    pub payments: crate::payments::Payments,
    /// The webhook client, behind the address guard, with a circuit breaker per destination.
    pub webhooks: crate::messaging::webhooks::Sender,
    openapi_json: Arc<String>,
    /// Whether responses carry `Strict-Transport-Security` (the shop is served over HTTPS).
    pub hsts: bool,
}

/// Connects to the database, applies migrations and prepares everything the router needs.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    crate::platform::telemetry::metrics_handle();
    let db = Db::connect(&config).await?;
    db.migrate().await?;
    db.listen_for_changes().await?;
    let mailer = Mailer::from_config(&config)?;
    let templates = EmailTemplates::load(&config)?;
    let window = Duration::from_secs(config.auth.failure_window_secs);
    let media = Arc::new(crate::catalog::media::MediaStore::from_config(&config)?);
    Ok(AppState(Arc::new(Shared {
        mailer,
        templates,
        sign_in_failures: SlidingWindow::new(window),
        account_requests: SlidingWindow::new(Duration::from_secs(3600)),
        credentials: db.caches().register(CREDENTIALS, CACHE_TTL),
        customers: db.caches().register(CUSTOMERS, CACHE_TTL),
        shelf: {
            let shelf = Arc::new(crate::catalog::shelf::Shelf::new(config.catalog.show_stock_quantity, media.clone()));
            db.caches().register_evict(crate::catalog::CATALOG, shelf.clone());
            shelf
        },
        webhooks: crate::messaging::webhooks::Sender::new(&config.webhooks)?,
        payments: crate::payments::Payments::from_config(&config)?,
        tax: Arc::new(crate::checkout::tax::ShopRates),
        checkout_settings: db.caches().register(crate::checkout::SETTINGS, CACHE_TTL),
        redirects: db.caches().register(crate::content::redirects::REDIRECTS, CACHE_TTL),
        sitemaps: {
            let sitemaps = db.caches().register(crate::content::seo::SITEMAPS, CACHE_TTL);
            db.caches().clear_on(crate::catalog::CATALOG, sitemaps.clone());
            sitemaps
        },
        storefront: crate::storefront::Storefront::new(&config, db.caches())?,
        imports: Default::default(),
        media: media.clone(),
        form_submissions: SlidingWindow::new(Duration::from_secs(config.forms.window_secs)),
        openapi_json: Arc::new(openapi_json()),
        hsts: config.secure_cookies(),
        config,
        db,
    })))
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(accounts::router())
        .merge(crate::catalog::router())
        .merge(crate::checkout::router())
        .merge(crate::orders::router())
        .merge(crate::content::router())
        .merge(crate::payments::webhook::router())
        .merge(crate::messaging::admin::router())
        .merge(crate::messaging::webhooks_admin::router())
        .merge(crate::messaging::forms::router())
        .merge(crate::messaging::newsletter::router())
}

/// The OpenAPI document of every endpoint, as pretty JSON.
pub fn openapi_json() -> String {
    let (_, mut api) = api_routes().split_for_parts();
    openapi::ExtractorResponses.modify(&mut api);
    api.to_pretty_json().unwrap_or_default()
}

/// The full router: every module, the docs, and the layers every request passes through.
pub fn router(state: AppState) -> Router {
    let (api, _) = api_routes().split_for_parts();
    let body_limit = state.config.http.body_limit_bytes;
    let spec = state.openapi_json.clone();
    let origins = &state.config.http.cors_allowed_origins;
    let cors = (!origins.is_empty()).then(|| http::cors(origins));
    api.route(
        "/api/openapi.json",
        axum::routing::get(move || async move {
            ([(axum::http::header::CONTENT_TYPE, "application/json")], spec.as_str().to_owned())
        }),
    )
    .merge(openapi::docs_router())
    .merge(crate::catalog::media::files_router())
    .merge(crate::content::files_router())
    .merge(crate::storefront::router())
    .fallback(crate::storefront::fallback)
    .layer(CatchPanicLayer::custom(http::panic_response))
    // Bodies are read only by extractors, which honour this limit whether or not the
    // request declares its length.
    .layer(DefaultBodyLimit::max(body_limit))
    .layer(tower::util::option_layer(cors))
    .layer(http::ObserveLayer(state.clone()))
    .with_state(state)
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down: letting in-flight requests finish");
}
