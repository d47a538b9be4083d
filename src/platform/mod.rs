//! Cross-cutting plumbing: configuration, database, errors, HTTP, telemetry, mail.

pub mod batch;
pub mod breaker;
pub mod cache;
pub mod config;
pub mod db;
pub mod encoded;
pub mod error;
pub mod health;
pub mod http;
pub mod ids;
pub mod mail;
pub mod openapi;
pub mod pagination;
pub mod pg;
pub mod telemetry;
pub mod throttle;
pub mod time;
