//! The demo shop's checkout settings: a European region with VAT included and a US one with
//! sales tax added, their rates, and shipping to both, so that a demo cart can be checked out.

use crate::app::AppState;
use crate::platform::error::AppResult;
use crate::platform::ids::new_id;
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

/// The European countries of the demo, with their standard and reduced VAT in basis points.
const EU_VAT: [(&str, i64, i64); 10] = [
    ("AT", 2000, 1000),
    ("BE", 2100, 600),
    ("DE", 1900, 700),
    ("ES", 2100, 1000),
    ("FI", 2550, 1400),
    ("FR", 2000, 550),
    ("IE", 2300, 1350),
    ("IT", 2200, 1000),
    ("NL", 2100, 900),
    ("PT", 2300, 600),
];

/// US states with a sales tax in the demo.
const US_SALES_TAX: [(&str, i64); 4] = [("CA", 725), ("NY", 400), ("TX", 625), ("WA", 650)];

/// Seeds regions, tax rates and shipping into a shop without regions. Returns whether it did.
pub async fn seed(state: &AppState) -> AppResult<bool> {
    let regions = db_run!(state.db.read().await?, |conn| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM regions").fetch_one(conn).await
    })?;
    if regions > 0 {
        return Ok(false);
    }
    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    let europe = new_id("reg");
    let us = new_id("reg");
    for (id, name, currency, inclusive, default) in
        [(&europe, "Europe", "EUR", true, true), (&us, "United States", "USD", false, false)]
    {
        db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "INSERT INTO regions (id, name, currency, tax_inclusive, shipping_taxable, is_default, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, TRUE, $5, $6, $6)",
            )
            .bind(id)
            .bind(name)
            .bind(currency)
            .bind(inclusive)
            .bind(default)
            .bind(now)
            .execute(conn)
            .await
        })?;
    }
    let countries = EU_VAT.iter().map(|(country, _, _)| (*country, &europe)).chain([("US", &us)]);
    for (country, region) in countries {
        db_execute!(tx.conn(), |conn| {
            sqlx::query("INSERT INTO region_countries (country, region_id) VALUES ($1, $2)")
                .bind(country)
                .bind(region)
                .execute(conn)
                .await
        })?;
    }
    let mut rates: Vec<(&str, &str, &str, i64, &str)> = Vec::new();
    for (country, standard, reduced) in EU_VAT {
        rates.push((country, "", "standard", standard, "VAT"));
        rates.push((country, "", "reduced", reduced, "VAT (reduced)"));
    }
    for (state_code, rate) in US_SALES_TAX {
        rates.push(("US", state_code, "standard", rate, "Sales tax"));
    }
    for (country, subdivision, class, rate, name) in rates {
        db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "INSERT INTO tax_rates (id, country, subdivision, tax_class, rate_bps, name) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(new_id("txr"))
            .bind(country)
            .bind(subdivision)
            .bind(class)
            .bind(rate)
            .bind(name)
            .execute(conn)
            .await
        })?;
    }
    let eu_areas =
        serde_json::to_string(&EU_VAT.iter().map(|(country, _, _)| *country).collect::<Vec<_>>()).unwrap_or_default();
    let zones = [
        (
            "Europe",
            eu_areas,
            vec![
                ("Standard", "flat", "EUR", 490, "[]", Some(6000), "2 to 5 working days"),
                ("Express", "flat", "EUR", 1290, "[]", None, "1 to 2 working days"),
            ],
        ),
        (
            "United States",
            "[\"US\"]".to_owned(),
            vec![
                ("Ground", "flat", "USD", 800, "[]", Some(7500), "3 to 6 working days"),
                (
                    "Express",
                    "weight",
                    "USD",
                    0,
                    "[{\"up_to\":1000,\"amount\":1800},{\"up_to\":null,\"amount\":2900}]",
                    None,
                    "1 to 2 working days",
                ),
            ],
        ),
    ];
    for (name, areas, methods) in zones {
        let zone = new_id("shz");
        db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "INSERT INTO shipping_zones (id, name, areas, postcodes, created_at, updated_at) \
                 VALUES ($1, $2, $3, '[]', $4, $4)",
            )
            .bind(&zone)
            .bind(name)
            .bind(&areas)
            .bind(now)
            .execute(conn)
            .await
        })?;
        for (position, (method, kind, currency, amount, tiers, free_above, estimate)) in methods.into_iter().enumerate()
        {
            db_execute!(tx.conn(), |conn| {
                sqlx::query(
                    "INSERT INTO shipping_methods (id, zone_id, position, name, kind, currency, amount, tiers, \
                     free_above, estimate, active) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, TRUE)",
                )
                .bind(new_id("shm"))
                .bind(&zone)
                .bind(position as i64)
                .bind(method)
                .bind(kind)
                .bind(currency)
                .bind(amount)
                .bind(tiers)
                .bind(free_above)
                .bind(estimate)
                .execute(conn)
                .await
            })?;
        }
    }
    tx.commit().await?;
    Ok(true)
}
