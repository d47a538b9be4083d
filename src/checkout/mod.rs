//! Checkout: regions, tax, shipping, carts, and placing the order.

pub mod address;
pub mod cart;
pub(crate) mod cart_api;
pub mod demo;
pub mod place;
pub mod pricing;
pub mod promotions;
pub mod regions;
pub mod shipping;
pub mod tax;

use std::sync::Arc;

use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::platform::cache::Invalidation;
use crate::platform::error::AppResult;

/// The name checkout settings are cached and invalidated under.
pub const SETTINGS: &str = "checkout_settings";

/// What every cart's pricing reads: regions, shipping zones, tax rates and the automatic
/// promotions, cached in memory and evicted (on every node) whenever staff change one of them,
/// or a promotion is used up or becomes usable again.
pub struct Settings {
    pub regions: Vec<regions::Region>,
    pub zones: Vec<shipping::Zone>,
    pub taxes: Arc<tax::TaxTable>,
    pub automatic: Vec<promotions::Promotion>,
}

impl Settings {
    /// The region `id`.
    pub fn region(&self, id: &str) -> Option<&regions::Region> {
        self.regions.iter().find(|region| region.id == id)
    }
}

/// The currency of region `id`.
pub async fn currency_of(state: &AppState, region_id: &str) -> AppResult<String> {
    let settings = settings(state).await?;
    let region = settings
        .region(region_id)
        .ok_or_else(|| crate::platform::error::AppError::internal(anyhow::anyhow!("no region {region_id}")))?;
    Ok(region.currency.clone())
}

/// What a write to regions, tax rates, shipping or promotions announces.
pub fn settings_changed() -> Invalidation {
    Invalidation::all(SETTINGS)
}

/// The checkout settings, from the cache or read afresh.
pub async fn settings(state: &AppState) -> AppResult<Arc<Settings>> {
    if let Some(settings) = state.checkout_settings.get(SETTINGS) {
        return Ok(settings);
    }
    let generation = state.checkout_settings.generation();
    let settings = Arc::new(Settings {
        regions: regions::all(&state.db).await?,
        zones: shipping::all(&state.db).await?,
        taxes: Arc::new(tax::TaxTable::load(&state.db).await?),
        automatic: promotions::automatic(&state.db).await?,
    });
    state.checkout_settings.insert(SETTINGS.to_owned(), settings.clone(), generation);
    Ok(settings)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(regions::router())
        .merge(tax::router())
        .merge(shipping::router())
        .merge(promotions::router())
        .merge(cart_api::router())
        .merge(place::router())
}
