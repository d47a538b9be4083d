//! The catalog: products with their options, variants and prices, and their stock, for staff
//! to manage and shoppers to browse.

mod admin;
pub mod inventory;
mod inventory_admin;
pub mod markdown;
pub mod money;
pub mod products;
mod store;

use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(admin::router()).merge(inventory_admin::router()).merge(store::router())
}
