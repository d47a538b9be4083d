//! Customers, staff users and roles, sessions, API keys, email verification and password
//! reset.

pub mod addresses;
mod admin_customers;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod customers;
pub mod email_address;
mod emails;
pub mod password;
pub mod roles;
pub mod signin;
pub mod staff;
pub mod tokens;

use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(customers::router())
        .merge(addresses::router())
        .merge(staff::router())
        .merge(api_keys::router())
        .merge(admin_customers::router())
        .merge(audit::router())
}
