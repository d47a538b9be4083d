//! Backroom: the backend of an online store and its content site.
//!
//! [`app::build_state`] and [`app::serve`] start the whole application on any listener, so
//! that `main` and the tests run the same thing.

pub mod accounts;
pub mod app;
pub mod catalog;
pub mod checkout;
pub mod content;
pub mod messaging;
pub mod orders;
pub mod payments;
pub mod platform;
pub mod storefront;
