//! The catalog: products with their options, variants and prices, and their stock, for staff
//! to manage and shoppers to browse.

mod admin;
mod bulk;
mod categories;
mod collections;
pub mod demo;
pub mod import;
pub(crate) mod imports_admin;
pub mod inventory;
mod inventory_admin;
pub mod markdown;
pub mod media;
pub mod money;
pub mod products;
pub mod search;
pub mod shelf;
pub mod store;
pub mod text;
mod variants;

use utoipa_axum::router::OpenApiRouter;

use crate::platform::cache::Invalidation;

/// The name the shelf hears invalidations under.
pub const CATALOG: &str = "catalog";

/// What a write to a product, or to a variant's stock, announces: the shelf brings that
/// product up to date before its next read.
pub fn changed(product_or_variant_id: &str) -> Invalidation {
    Invalidation::key(CATALOG, product_or_variant_id)
}

/// What a write to categories or collections announces: the shelf is filled again.
pub fn taxonomy_changed() -> Invalidation {
    Invalidation::all(CATALOG)
}

use crate::app::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(admin::router())
        .merge(bulk::router())
        .merge(imports_admin::router())
        .merge(media::router())
        .merge(inventory_admin::router())
        .merge(variants::router())
        .merge(categories::router())
        .merge(collections::router())
        .merge(store::router())
}
