//! Tax rates per country, subdivision and tax class, and the provider that answers which rate
//! applies to a line. The built-in provider reads the shop's own table; an external tax
//! service can take its place behind [`TaxProvider`], with [`WithFallback`] bounding how long
//! a checkout waits for it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::address::{check_subdivision, is_country};
use crate::accounts::audit;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::catalog::products::single_line;
use crate::platform::db::Db;
use crate::platform::error::{AppResult, Problem, Violations};
use crate::platform::http::{self, Json};
use crate::platform::ids::new_id;
use crate::{db_execute, db_run};

/// The most rates a shop keeps.
const MAX_RATES: usize = 5_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_rates, replace_rates))
}

/// One rate: at a place, for a class of goods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct TaxRate {
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// An ISO 3166-2 subdivision of the country (`CA` for California), or empty for the
    /// whole country. A subdivision's rate replaces the country's there.
    #[serde(default)]
    pub subdivision: String,
    /// `standard`, `reduced`, `zero`, or a shop's own class. `exempt` is never taxed.
    pub tax_class: String,
    /// In basis points: 2000 is 20%, 725 is 7.25%.
    pub rate_bps: i64,
    /// Shown on receipts: "VAT", "CA sales tax".
    pub name: String,
}

/// The shop's rates, and the rule that picks one.
#[derive(Debug, Clone, Default)]
pub struct TaxTable(Vec<TaxRate>);

/// The rate a line is taxed at, and its name for receipts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub rate_bps: i64,
    pub name: String,
}

impl Applied {
    fn none() -> Self {
        Self { rate_bps: 0, name: String::new() }
    }
}

impl TaxTable {
    pub fn new(rates: Vec<TaxRate>) -> Self {
        Self(rates)
    }

    pub async fn load(db: &Db) -> AppResult<Self> {
        let rates = db_run!(db.read().await?, |conn| {
            sqlx::query_as::<_, TaxRate>(
                "SELECT country, subdivision, tax_class, rate_bps, name FROM tax_rates \
                 ORDER BY country, subdivision, tax_class",
            )
            .fetch_all(conn)
            .await
        })?;
        Ok(Self(rates))
    }

    /// The rate for `class` at the address: the subdivision's own, else the country's. A
    /// class with no rate of its own there is taxed at the standard rate; `exempt` never is.
    pub fn rate(&self, country: &str, subdivision: &str, class: &str) -> Applied {
        if class == "exempt" {
            return Applied::none();
        }
        let find = |class: &str| {
            let at = |sub: &str| {
                self.0.iter().find(|rate| rate.country == country && rate.subdivision == sub && rate.tax_class == class)
            };
            (!subdivision.is_empty()).then(|| at(subdivision)).flatten().or_else(|| at(""))
        };
        let found = find(class).or_else(|| if class == "zero" { None } else { find("standard") });
        found.map_or_else(Applied::none, |rate| Applied { rate_bps: rate.rate_bps, name: rate.name.clone() })
    }
}

/// What a tax provider is asked: where the goods go, and each line's class.
#[derive(Debug, Clone)]
pub struct TaxRequest {
    pub country: String,
    pub subdivision: String,
    pub postcode: String,
    /// One class per line, then `standard` for shipping.
    pub classes: Vec<String>,
    /// The shop's own rates, for a provider to fall back on.
    pub table: std::sync::Arc<TaxTable>,
}

pub type TaxFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<Vec<Applied>>> + Send + 'a>>;

/// Answers the rate of each line of a [`TaxRequest`], in order.
pub trait TaxProvider: Send + Sync {
    fn rates<'a>(&'a self, request: &'a TaxRequest) -> TaxFuture<'a>;
}

impl TaxProvider for TaxTable {
    fn rates<'a>(&'a self, request: &'a TaxRequest) -> TaxFuture<'a> {
        let rates =
            request.classes.iter().map(|class| self.rate(&request.country, &request.subdivision, class)).collect();
        Box::pin(async move { Ok(rates) })
    }
}

/// The shop's own rates (the table that comes with each request): the provider carts use
/// unless an external tax service is plugged in (wrapped in [`WithFallback`]).
pub struct ShopRates;

impl TaxProvider for ShopRates {
    fn rates<'a>(&'a self, request: &'a TaxRequest) -> TaxFuture<'a> {
        Box::pin(async move { request.table.rates(request).await })
    }
}

/// An external provider, with the shop's table answering when it fails or takes longer than
/// `timeout`.
pub struct WithFallback<P> {
    pub provider: P,
    pub fallback: TaxTable,
    pub timeout: Duration,
}

impl<P: TaxProvider> TaxProvider for WithFallback<P> {
    fn rates<'a>(&'a self, request: &'a TaxRequest) -> TaxFuture<'a> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.provider.rates(request)).await {
                Ok(Ok(rates)) if rates.len() == request.classes.len() => Ok(rates),
                outcome => {
                    let reason = match outcome {
                        Ok(Ok(_)) => "wrong number of rates".to_owned(),
                        Ok(Err(err)) => err.to_string(),
                        Err(_) => "timed out".to_owned(),
                    };
                    tracing::warn!(%reason, "tax provider failed; using the shop's rates");
                    self.fallback.rates(request).await
                }
            }
        })
    }
}

/// Whether `class` names a tax class: lowercase letters, digits, `-` and `_`.
pub fn is_tax_class(class: &str) -> bool {
    (1..=40).contains(&class.len())
        && class.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The shop's tax rates, and an `ETag` to replace them with.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaxRates {
    pub data: Vec<TaxRate>,
}

fn tag_of(rates: &[TaxRate]) -> i64 {
    let json = serde_json::to_vec(rates).unwrap_or_default();
    (http::content_hash(&json) >> 1) as i64
}

/// List the tax rates.
#[utoipa::path(get, path = "/api/v1/admin/tax-rates", tag = "admin: checkout settings",
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = TaxRates, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_rates(State(state): State<AppState>, staff: CurrentStaff) -> AppResult<Response> {
    staff.require(Permission::SettingsManage)?;
    let table = TaxTable::load(&state.db).await?;
    Ok(http::tagged(StatusCode::OK, tag_of(&table.0), TaxRates { data: table.0 }))
}

/// Replace every tax rate at once. Send the `ETag` you read in `If-Match`. Carts are taxed the
/// new way at their next read; placed orders keep the rates they were placed with.
#[utoipa::path(put, path = "/api/v1/admin/tax-rates", tag = "admin: checkout settings", request_body = Vec<TaxRate>,
    params(("If-Match" = Option<String>, Header, description = "The ETag as read")),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = TaxRates, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn replace_rates(
    State(state): State<AppState>,
    staff: CurrentStaff,
    headers: HeaderMap,
    Json(rates): Json<Vec<TaxRate>>,
) -> AppResult<Response> {
    staff.require(Permission::SettingsManage)?;
    let mut violations = Violations::default();
    if rates.len() > MAX_RATES {
        violations.add("", "too_many", format!("must be at most {MAX_RATES} rates"));
    }
    for (index, rate) in rates.iter().enumerate().take(MAX_RATES) {
        let field = |name: &str| format!("[{index}].{name}");
        if !is_country(&rate.country) {
            violations.add(&field("country"), "unknown_country", "must be an ISO 3166-1 alpha-2 code");
        } else if !rate.subdivision.is_empty()
            && let Err(code) = check_subdivision(&rate.country, &rate.subdivision)
        {
            violations.add(&field("subdivision"), code, "is not a subdivision of the country");
        }
        if !is_tax_class(&rate.tax_class) || rate.tax_class == "exempt" {
            violations.add(&field("tax_class"), "invalid_format", "must be a class name other than `exempt`");
        }
        if !(0..=100_000).contains(&rate.rate_bps) {
            violations.add(&field("rate_bps"), "out_of_range", "must be between 0 and 100000 basis points");
        }
        if rate.name.trim().is_empty() || !single_line(&rate.name, 100) {
            violations.add(&field("name"), "invalid_format", "must be 1 to 100 characters on one line");
        }
        let same = |other: &TaxRate| {
            other.country == rate.country && other.subdivision == rate.subdivision && other.tax_class == rate.tax_class
        };
        if rates[..index].iter().any(same) {
            violations.add(&field("tax_class"), "duplicate", "the place already has a rate for this class");
        }
    }
    violations.finish()?;
    let mut tx = state.db.begin().await?;
    let current = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, TaxRate>(
            "SELECT country, subdivision, tax_class, rate_bps, name FROM tax_rates \
             ORDER BY country, subdivision, tax_class",
        )
        .fetch_all(conn)
        .await
    })?;
    if http::if_match_version(&headers)?.is_some_and(|tag| tag != tag_of(&current)) {
        return Err(http::stale_version());
    }
    db_execute!(tx.conn(), |conn| sqlx::query("DELETE FROM tax_rates").execute(conn).await)?;
    for rate in &rates {
        db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "INSERT INTO tax_rates (id, country, subdivision, tax_class, rate_bps, name) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(new_id("txr"))
            .bind(&rate.country)
            .bind(&rate.subdivision)
            .bind(&rate.tax_class)
            .bind(rate.rate_bps)
            .bind(rate.name.trim())
            .execute(conn)
            .await
        })?;
    }
    let (actor_kind, actor_id) = staff.actor();
    tx.invalidate(super::settings_changed());
    audit::record(&mut tx, actor_kind, actor_id, "tax_rates.replaced", None, &format!("{} rates", rates.len())).await?;
    tx.commit().await?;
    let table = TaxTable::load(&state.db).await?;
    Ok(http::tagged(StatusCode::OK, tag_of(&table.0), TaxRates { data: table.0 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(country: &str, subdivision: &str, class: &str, bps: i64) -> TaxRate {
        TaxRate {
            country: country.into(),
            subdivision: subdivision.into(),
            tax_class: class.into(),
            rate_bps: bps,
            name: format!("{country}{subdivision} {class}"),
        }
    }

    #[test]
    fn the_most_specific_rate_wins_and_classes_fall_back_to_standard() {
        let table = TaxTable(vec![
            rate("DE", "", "standard", 1900),
            rate("DE", "", "reduced", 700),
            rate("US", "CA", "standard", 725),
            rate("US", "NY", "standard", 400),
        ]);
        assert_eq!(table.rate("DE", "", "reduced").rate_bps, 700);
        assert_eq!(table.rate("DE", "BY", "standard").rate_bps, 1900);
        assert_eq!(table.rate("DE", "", "books").rate_bps, 1900);
        assert_eq!(table.rate("DE", "", "zero").rate_bps, 0);
        assert_eq!(table.rate("DE", "", "exempt").rate_bps, 0);
        assert_eq!(table.rate("US", "CA", "standard").rate_bps, 725);
        assert_eq!(table.rate("US", "OR", "standard").rate_bps, 0);
        assert_eq!(table.rate("FR", "", "standard"), Applied::none());
    }

    struct Slow;

    impl TaxProvider for Slow {
        fn rates<'a>(&'a self, _: &'a TaxRequest) -> TaxFuture<'a> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(vec![])
            })
        }
    }

    #[tokio::test]
    async fn a_slow_provider_gives_way_to_the_table() {
        let provider = WithFallback {
            provider: Slow,
            fallback: TaxTable(vec![rate("FR", "", "standard", 2000)]),
            timeout: Duration::from_millis(50),
        };
        let request = TaxRequest {
            country: "FR".into(),
            subdivision: String::new(),
            postcode: "75001".into(),
            classes: vec!["standard".into(), "exempt".into()],
            table: Default::default(),
        };
        let rates = provider.rates(&request).await.expect("the table answers");
        assert_eq!(rates.iter().map(|r| r.rate_bps).collect::<Vec<_>>(), [2000, 0]);
    }
}
