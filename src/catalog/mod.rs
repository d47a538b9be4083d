//! The catalog: products with their options, variants and prices, and their stock, for staff
//! to manage and shoppers to browse.

mod admin;
pub mod inventory;
mod inventory_admin;
pub mod markdown;
pub mod money;
pub mod products;
mod store;
mod variants;

use utoipa_axum::router::OpenApiRouter;

use crate::platform::cache::Invalidation;

/// The cache of shoppers' catalog reads.
pub const STOREFRONT: &str = "storefront";

/// What every write to products or stock evicts: the storefront's rendered reads, which
/// show prices and availability.
pub fn changed() -> Invalidation {
    Invalidation::all(STOREFRONT)
}

use crate::app::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(admin::router())
        .merge(inventory_admin::router())
        .merge(variants::router())
        .merge(store::router())
}
