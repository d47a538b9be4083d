//! Checkout: regions, tax, shipping, carts, and placing the order.

pub mod address;
pub mod cart;
mod cart_api;
pub mod demo;
pub mod place;
pub mod pricing;
pub mod promotions;
pub mod regions;
pub mod shipping;
pub mod tax;

use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(regions::router())
        .merge(tax::router())
        .merge(shipping::router())
        .merge(promotions::router())
        .merge(cart_api::router())
        .merge(place::router())
}
