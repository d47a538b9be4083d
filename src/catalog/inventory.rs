//! Stock per variant and location. Every change is a movement in an append-only ledger, and
//! the level on hand is its sum, kept in the same transaction as each movement. Checkout
//! reserves stock, then commits (sells) or releases it; a reservation not committed in time
//! expires. A reservation is one conditional update of the level, so available stock never
//! goes below zero, whatever the concurrency, on either database.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::products::single_line;
use crate::app::AppState;
use crate::db_run;
use crate::messaging::webhooks;
use crate::platform::batch::{Batch, Ran};
use crate::platform::db::{Param, Tx};
use crate::platform::error::{AppError, AppResult, ErrorCode};
use crate::platform::ids::new_id;
use crate::platform::time::Timestamp;

/// The location every shop starts with.
pub const DEFAULT_LOCATION: &str = "loc_default";

/// Who made a movement.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub kind: &'a str,
    pub id: &'a str,
}

/// Stock at one location.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Level {
    pub location_id: String,
    pub on_hand: i64,
    pub reserved: i64,
    /// On hand less reserved; below zero when backorders were taken.
    pub available: i64,
}

/// How a variant's stock is shown to shoppers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    InStock,
    LowStock,
    OutOfStock,
    /// None on hand, but the variant takes orders.
    Backorder,
}

impl Availability {
    pub fn of(available: i64, threshold: i64, policy: &str) -> Self {
        match available {
            a if a > threshold => Self::InStock,
            a if a > 0 => Self::LowStock,
            _ if policy == "continue" => Self::Backorder,
            _ => Self::OutOfStock,
        }
    }
}

#[derive(sqlx::FromRow)]
struct VariantStock {
    inventory_policy: String,
    low_stock_threshold: i64,
    product_id: String,
    sku: Option<String>,
}

async fn variant_stock(tx: &mut Tx, variant_id: &str) -> AppResult<VariantStock> {
    db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, VariantStock>(
            "SELECT inventory_policy, low_stock_threshold, product_id, sku FROM product_variants WHERE id = $1",
        )
        .bind(variant_id)
        .fetch_optional(conn)
        .await
    })?
    .ok_or_else(|| AppError::not_found("No variant has this id."))
}

/// The variant's stock, all locations together: on hand, and on hand less reserved.
pub async fn totals_in(tx: &mut Tx, variant_id: &str) -> AppResult<(i64, i64)> {
    Ok(db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT CAST(COALESCE(SUM(on_hand), 0) AS BIGINT), CAST(COALESCE(SUM(on_hand - reserved), 0) AS BIGINT) \
             FROM inventory_levels WHERE variant_id = $1",
        )
        .bind(variant_id)
        .fetch_one(conn)
        .await
    })?)
}

/// Announces `inventory.low` when a change took the variant's stock on hand from above its
/// threshold to at or below it (what was sold or counted, not what carts hold for a while).
async fn announce_low(
    state: &AppState,
    tx: &mut Tx,
    variant_id: &str,
    stock: &VariantStock,
    on_hand_before: i64,
) -> AppResult<()> {
    let (on_hand, available) = totals_in(tx, variant_id).await?;
    if on_hand_before > stock.low_stock_threshold && on_hand <= stock.low_stock_threshold {
        let event = serde_json::json!({
            "variant_id": variant_id,
            "product_id": stock.product_id,
            "sku": stock.sku,
            "on_hand": on_hand,
            "available": available,
            "low_stock_threshold": stock.low_stock_threshold,
        });
        webhooks::emit(state, tx, "inventory.low", &event).await?;
    }
    Ok(())
}

/// The kinds of movement staff record by hand; `sold` comes from committed reservations.
pub const MANUAL_KINDS: [&str; 3] = ["received", "returned", "adjusted"];

/// A line of the ledger.
pub struct Line<'a> {
    pub variant_id: &'a str,
    pub location_id: &'a str,
    /// Units in (positive) or out (negative).
    pub quantity: i64,
    /// `received`, `sold`, `returned` or `adjusted`.
    pub kind: &'a str,
    pub reason: &'a str,
    pub reference: Option<&'a str>,
    pub actor: Actor<'a>,
}

/// Appends `line` to the ledger; the caller moves the level with it.
async fn write_line(tx: &mut Tx, line: &Line<'_>, now: Timestamp) -> AppResult<()> {
    db_run!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO inventory_movements (id, variant_id, location_id, quantity, kind, reason, reference, \
             actor_kind, actor_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(new_id("mov"))
        .bind(line.variant_id)
        .bind(line.location_id)
        .bind(line.quantity)
        .bind(line.kind)
        .bind(line.reason)
        .bind(line.reference)
        .bind(line.actor.kind)
        .bind(line.actor.id)
        .bind(now)
        .execute(conn)
        .await
        .map(drop)
    })?;
    Ok(())
}

/// Records a movement and moves the level with it. A movement that would leave less than
/// nothing on hand is refused.
pub async fn record_movement(state: &AppState, tx: &mut Tx, line: Line<'_>) -> AppResult<Level> {
    let (variant_id, location_id, quantity) = (line.variant_id, line.location_id, line.quantity);
    let stock = variant_stock(tx, variant_id).await?;
    let (before, _) = totals_in(tx, variant_id).await?;
    let now = Timestamp::now();
    write_line(tx, &line, now).await?;
    let level = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, Level>(
            "INSERT INTO inventory_levels (variant_id, location_id, on_hand, reserved, updated_at) \
             VALUES ($1, $2, $3, 0, $4) ON CONFLICT (variant_id, location_id) DO UPDATE \
             SET on_hand = inventory_levels.on_hand + excluded.on_hand, updated_at = excluded.updated_at \
             RETURNING location_id, on_hand, reserved, on_hand - reserved AS available",
        )
        .bind(variant_id)
        .bind(location_id)
        .bind(quantity)
        .bind(now)
        .fetch_one(conn)
        .await
    })?;
    tx.invalidate(super::changed(&stock.product_id));
    // Stock taken out must be there: on hand, and, for a variant that sells only what it has,
    // not promised to a reservation. (Stock coming in is always welcome, backorders or not.)
    if quantity < 0 && level.on_hand < 0 {
        return Err(AppError::invalid_field(
            "quantity",
            "out_of_range",
            format!("would leave {} on hand at this location", level.on_hand),
        ));
    }
    if quantity < 0 && stock.inventory_policy == "deny" && level.available < 0 {
        return Err(AppError::invalid_field(
            "quantity",
            "out_of_range",
            format!("would leave {} reserved units without stock at this location", -level.available),
        ));
    }
    announce_low(state, tx, variant_id, &stock, before).await?;
    Ok(level)
}

crate::direct_row! {
    /// Stock held for a checkout.
    #[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
    pub struct Reservation {
        pub id: String,
        pub variant_id: String,
        pub location_id: String,
        pub quantity: i64,
        /// `active`, `committed`, `released` or `expired`.
        pub status: String,
        pub reference: Option<String>,
        pub expires_at: Timestamp,
        pub created_at: Timestamp,
    }
}

const RESERVATION_COLUMNS: &str = "id, variant_id, location_id, quantity, status, reference, expires_at, created_at";

fn insufficient(available: i64) -> AppError {
    AppError::new(ErrorCode::Conflict, format!("Not enough stock: {} available.", available.max(0))).with_field(
        "quantity",
        "insufficient_stock",
        "is more than is available",
    )
}

/// Reserves `quantity` of a variant at one location that has it all, for `ttl_secs`. A
/// variant that takes backorders is reserved at the default location whatever its stock.
pub async fn reserve(
    tx: &mut Tx,
    variant_id: &str,
    quantity: i64,
    ttl_secs: u64,
    reference: Option<&str>,
) -> AppResult<Reservation> {
    let policies = Policies::load(tx, &[variant_id]).await?;
    let mut writes = Batch::new();
    match reserve_all(tx, &policies, &[(variant_id, quantity)], ttl_secs, reference, &mut writes).await? {
        Ok(mut reserved) => {
            tx.run(&writes).await?;
            reserved.pop().ok_or_else(|| AppError::internal(anyhow::anyhow!("nothing reserved")))
        }
        Err(_) => Err(insufficient(totals_in(tx, variant_id).await?.1)),
    }
}

/// Reserves, for one checkout, `quantity` of each variant of `wants` (in the order given,
/// which should be one order for every checkout, so that two never wait on each other), each
/// at one location that has it all (a variant that takes backorders at the default location,
/// whatever its stock): the reservations, or the index in `wants` of the first that is short
/// of stock, and then nothing is reserved once the caller rolls back. `policies` are those
/// of the variants of `wants`. The reservations' rows are added to `writes`, for the caller
/// to run in `tx` before it commits (with the commit, say).
pub async fn reserve_all(
    tx: &mut Tx,
    policies: &Policies,
    wants: &[(&str, i64)],
    ttl_secs: u64,
    reference: Option<&str>,
    writes: &mut Batch,
) -> AppResult<Result<Vec<Reservation>, usize>> {
    let now = Timestamp::now();
    let takings = takings(policies, wants, now)?;
    if tx.is_sqlite() {
        // One writer: nothing changes between the statements, so every line's stock is taken
        // in one trip, and a line that finds too little has too little.
        let mut batch = Batch::new();
        for (sql, params) in takings {
            batch.push(sql, params);
        }
        let ran = tx.run(&batch).await?;
        let locations = ran.iter().map(Ran::scalar::<String>).collect::<Result<Vec<_>, _>>()?;
        return Ok(record(tx, policies, wants, locations, now, ttl_secs, reference, writes));
    }
    // Line by line, stopping at the first short one: a line's rows are locked only once
    // every earlier line's are, retries included, as in every other checkout.
    let mut locations: Vec<Option<String>> = Vec::with_capacity(wants.len());
    for ((variant_id, quantity), (sql, params)) in wants.iter().zip(takings) {
        let location = if sql == BACKORDER_SQL {
            tx.run(Batch::new().push(sql, params)).await?[0].scalar::<String>()?
        } else {
            reserve_at_a_location(tx, variant_id, *quantity, now).await?
        };
        let short = location.is_none();
        locations.push(location);
        if short {
            break;
        }
    }
    Ok(record(tx, policies, wants, locations, now, ttl_secs, reference, writes))
}

/// The reservations of `ids`, as they are now.
pub async fn reservations(db: &crate::platform::db::Db, ids: &[String]) -> AppResult<Vec<Reservation>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
    let mut batch = Batch::new();
    batch.push(
        format!("SELECT {RESERVATION_COLUMNS} FROM inventory_reservations WHERE id IN ({})", list.join(", ")),
        ids.iter().map(|id| Param::Text(id.clone())).collect(),
    );
    Ok(db.read_batch(&batch).await?[0].rows::<Reservation>()?)
}

/// Stock reserved for one checkout with the statements of a trip already under way (the one
/// that begins its transaction, say), every line's in that trip: [`Reserving::push`] adds
/// the statements, in the order of `wants` (one order for every checkout, as with
/// [`reserve_all`]), and [`Reserving::finish`] reads their answers.
pub struct Reserving<'a> {
    policies: &'a Policies,
    wants: &'a [(&'a str, i64)],
    /// Where the statements begin in the batch.
    at: usize,
    now: Timestamp,
}

impl<'a> Reserving<'a> {
    pub fn push(batch: &mut Batch, policies: &'a Policies, wants: &'a [(&'a str, i64)]) -> AppResult<Self> {
        let now = Timestamp::now();
        let at = batch.len();
        for (sql, params) in takings(policies, wants, now)? {
            batch.push(sql, params);
        }
        Ok(Self { policies, wants, at, now })
    }

    /// The reservations, as [`reserve_all`] answers them, from `ran`, the answers of the whole
    /// batch. On PostgreSQL a line that found too little at the location it chose might have
    /// found enough at another once the rows it waited for were free: the answer is then
    /// `None`, and the caller rolls back and reserves with [`reserve_all`], which looks again.
    pub fn finish(
        self,
        tx: &mut Tx,
        ran: &[Ran],
        ttl_secs: u64,
        reference: Option<&str>,
        writes: &mut Batch,
    ) -> AppResult<Option<Result<Vec<Reservation>, usize>>> {
        let answers = ran
            .get(self.at..self.at + self.wants.len())
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("a batch answered fewer statements than it held")))?;
        let locations = answers.iter().map(Ran::scalar::<String>).collect::<Result<Vec<_>, _>>()?;
        if !tx.is_sqlite() && locations.iter().any(Option::is_none) {
            return Ok(None);
        }
        Ok(Some(record(tx, self.policies, self.wants, locations, self.now, ttl_secs, reference, writes)))
    }
}

/// The statement that takes each line of `wants`: at the location with the most, or, for a
/// variant that takes backorders, at the default location whatever its stock.
fn takings(policies: &Policies, wants: &[(&str, i64)], now: Timestamp) -> AppResult<Vec<(&'static str, Vec<Param>)>> {
    let mut takings = Vec::with_capacity(wants.len());
    for (variant_id, quantity) in wants {
        if !(1..=1_000_000).contains(quantity) {
            return Err(AppError::invalid_field("quantity", "out_of_range", "must be between 1 and 1000000"));
        }
        let Some((policy, _)) = policies.0.get(*variant_id) else {
            return Err(AppError::not_found("No variant has this id."));
        };
        let mut params = vec![Param::Text((*variant_id).to_owned()), Param::Int(*quantity), Param::Int(now.0)];
        if policy == "continue" {
            params.push(Param::Text(DEFAULT_LOCATION.to_owned()));
            takings.push((BACKORDER_SQL, params));
        } else {
            takings.push((RESERVE_SQL, params));
        }
    }
    Ok(takings)
}

/// The reservations of the lines of `wants` taken at `locations` (one a line, until the
/// first short one, which is `None`), their rows added to `writes`; or the index of the first
/// line short of stock.
#[expect(clippy::too_many_arguments, reason = "what one checkout reserved, passed once")]
fn record(
    tx: &mut Tx,
    policies: &Policies,
    wants: &[(&str, i64)],
    locations: Vec<Option<String>>,
    now: Timestamp,
    ttl_secs: u64,
    reference: Option<&str>,
    writes: &mut Batch,
) -> Result<Vec<Reservation>, usize> {
    if let Some(short) = locations.iter().position(Option::is_none) {
        return Err(short);
    }
    let mut rows = Vec::with_capacity(wants.len());
    let mut reserved = Vec::with_capacity(wants.len());
    for ((variant_id, quantity), location) in wants.iter().zip(locations.into_iter().flatten()) {
        let (_, product_id) = &policies.0[*variant_id];
        tx.invalidate(super::changed(product_id));
        let reservation = Reservation {
            id: new_id("rsv"),
            variant_id: (*variant_id).to_owned(),
            location_id: location,
            quantity: *quantity,
            status: "active".into(),
            reference: reference.map(str::to_owned),
            expires_at: now.plus_secs(ttl_secs),
            created_at: now,
        };
        rows.push(vec![
            Param::Text(reservation.id.clone()),
            Param::Text(reservation.variant_id.clone()),
            Param::Text(reservation.location_id.clone()),
            Param::Int(reservation.quantity),
            Param::Text(reservation.status.clone()),
            Param::MaybeText(reservation.reference.clone()),
            Param::Int(reservation.expires_at.0),
            Param::Int(now.0),
            Param::Int(now.0),
        ]);
        reserved.push(reservation);
    }
    writes.push_rows(
        "INSERT INTO inventory_reservations (id, variant_id, location_id, quantity, status, reference, expires_at, \
         created_at, updated_at)",
        rows,
        "",
    );
    Ok(reserved)
}

/// Each variant's inventory policy and product, by variant id, for [`reserve_all`].
pub struct Policies(HashMap<String, (String, String)>);

impl Policies {
    pub async fn load(tx: &mut Tx, ids: &[&str]) -> AppResult<Self> {
        let list: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let sql =
            format!("SELECT id, inventory_policy, product_id FROM product_variants WHERE id IN ({})", list.join(", "));
        let mut batch = Batch::new();
        batch.push(sql, ids.iter().map(|id| Param::Text((*id).to_owned())).collect());
        let rows = tx.run(&batch).await?[0].rows::<(String, String, String)>()?;
        Ok(Self::new(rows))
    }

    /// The policies of variants already read: `(variant id, policy, product id)`.
    pub fn new(variants: impl IntoIterator<Item = (String, String, String)>) -> Self {
        Self(variants.into_iter().map(|(id, policy, product)| (id, (policy, product))).collect())
    }
}

/// Reserves `$2` of the variant `$1`, which takes backorders, at the location `$4` (the
/// default one) whatever its stock; answers the location.
const BACKORDER_SQL: &str = "INSERT INTO inventory_levels (variant_id, location_id, on_hand, reserved, updated_at) \
     VALUES ($1, $4, 0, $2, $3) ON CONFLICT (variant_id, location_id) DO UPDATE \
     SET reserved = inventory_levels.reserved + excluded.reserved, updated_at = excluded.updated_at \
     RETURNING location_id";

/// Reserves `$2` of the variant `$1` at the location that has the most of it, if one has
/// enough; answers the location. The condition is checked again on the row as it is when the
/// update holds it (after any concurrent reservation commits), so two checkouts cannot both
/// take the last unit.
const RESERVE_SQL: &str = "UPDATE inventory_levels SET reserved = reserved + $2, updated_at = $3 \
     WHERE variant_id = $1 AND on_hand - reserved >= $2 AND location_id = \
       (SELECT location_id FROM inventory_levels WHERE variant_id = $1 AND on_hand - reserved >= $2 \
        ORDER BY on_hand - reserved DESC, location_id LIMIT 1) \
     RETURNING location_id";

/// Takes `quantity` at the location that has the most of it, as [`RESERVE_SQL`] does. On
/// PostgreSQL the location is chosen before waiting for that row, so when the wait leaves it
/// short and another location still has enough, the statement runs again.
async fn reserve_at_a_location(
    tx: &mut Tx,
    variant_id: &str,
    quantity: i64,
    now: Timestamp,
) -> AppResult<Option<String>> {
    for _ in 0..5 {
        let taken = db_run!(tx.conn(), |conn| {
            sqlx::query_scalar::<_, String>(RESERVE_SQL)
                .bind(variant_id)
                .bind(quantity)
                .bind(now)
                .fetch_optional(conn)
                .await
        })?;
        if taken.is_some() {
            return Ok(taken);
        }
        let somewhere = db_run!(tx.conn(), |conn| {
            sqlx::query_scalar::<_, String>(
                "SELECT location_id FROM inventory_levels WHERE variant_id = $1 AND on_hand - reserved >= $2 LIMIT 1",
            )
            .bind(variant_id)
            .bind(quantity)
            .fetch_optional(conn)
            .await
        })?;
        if somewhere.is_none() {
            return Ok(None);
        }
    }
    Ok(None)
}

/// Ends an active reservation as `status` (`released`, `expired` or `committed`), returning it
/// and giving its units back to the level (and, when committed, taking them off on hand).
async fn end(tx: &mut Tx, id: &str, status: &str) -> AppResult<Option<Reservation>> {
    let sql = format!(
        "UPDATE inventory_reservations SET status = $1, updated_at = $2 WHERE id = $3 AND status = 'active' \
         AND ($1 <> 'committed' OR expires_at >= $2) RETURNING {RESERVATION_COLUMNS}"
    );
    let now = Timestamp::now();
    let ended = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, Reservation>(&sql).bind(status).bind(now).bind(id).fetch_optional(conn).await
    })?;
    let Some(reservation) = ended else { return Ok(None) };
    tx.invalidate(super::changed(&reservation.variant_id));
    let sold = if status == "committed" { reservation.quantity } else { 0 };
    let (sql, params) = unreserve(&reservation, sold, now);
    tx.run(Batch::new().push(sql, params)).await?;
    Ok(Some(reservation))
}

/// The statement that takes an ended reservation's units off the level's reserved, and
/// `sold` of them off its stock on hand.
fn unreserve(reservation: &Reservation, sold: i64, now: Timestamp) -> (&'static str, Vec<Param>) {
    let sql = "UPDATE inventory_levels SET reserved = reserved - $1, on_hand = on_hand - $2, updated_at = $3 \
               WHERE variant_id = $4 AND location_id = $5";
    let params = vec![
        Param::Int(reservation.quantity),
        Param::Int(sold),
        Param::Int(now.0),
        Param::Text(reservation.variant_id.clone()),
        Param::Text(reservation.location_id.clone()),
    ];
    (sql, params)
}

/// 404 when no reservation has the id, else 409: it is no longer active.
async fn not_active_or_missing(tx: &mut Tx, id: &str) -> AppError {
    let exists = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, String>("SELECT id FROM inventory_reservations WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await
    });
    match exists {
        Ok(Some(_)) => not_active(),
        Ok(None) => AppError::not_found("No reservation has this id."),
        Err(err) => err.into(),
    }
}

fn not_active() -> AppError {
    AppError::new(
        ErrorCode::Conflict,
        "This reservation is no longer active: it was committed, released or expired, or its time is up.",
    )
}

/// Gives a reservation's units back.
pub async fn release(tx: &mut Tx, id: &str) -> AppResult<Reservation> {
    match end(tx, id, "released").await? {
        Some(reservation) => Ok(reservation),
        None => Err(not_active_or_missing(tx, id).await),
    }
}

/// Sells a reservation's units: a `sold` movement in the ledger, in the same transaction. 404
/// when no reservation has the id, 409 when it is no longer active.
pub async fn commit(state: &AppState, tx: &mut Tx, id: &str, actor: Actor<'_>) -> AppResult<Reservation> {
    let sold = match commit_all(state, tx, &[id.to_owned()], actor).await {
        Ok(mut sold) => sold.pop(),
        Err(err) if err.status() == axum::http::StatusCode::CONFLICT => None,
        Err(err) => return Err(err),
    };
    match sold {
        Some(reservation) => Ok(reservation),
        None => Err(not_active_or_missing(tx, id).await),
    }
}

/// Sells the units of every reservation of `ids`, as [`commit`] does for one, in few
/// statements: all are committed, or the transaction is refused (409) when one is no longer
/// active.
pub async fn commit_all(
    state: &AppState,
    tx: &mut Tx,
    ids: &[String],
    actor: Actor<'_>,
) -> AppResult<Vec<Reservation>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let now = Timestamp::now();
    let mut batch = Batch::new();
    commit_in(&mut batch, ids, now);
    let ran = tx.run(&batch).await?;
    committed(state, tx, &ran[0], ids, actor, now).await
}

/// Adds to `batch` the first statement of [`commit_all`], which ends the reservations `ids`
/// as committed at `now`; [`committed`] does the rest with its answer. `ids` is not empty.
fn commit_in(batch: &mut Batch, ids: &[String], now: Timestamp) {
    let list: Vec<String> = (2..ids.len() + 2).map(|n| format!("${n}")).collect();
    let sql = format!(
        "UPDATE inventory_reservations SET status = 'committed', updated_at = $1 WHERE id IN ({}) \
         AND status = 'active' AND expires_at >= $1 RETURNING {RESERVATION_COLUMNS}",
        list.join(", ")
    );
    let params = std::iter::once(Param::Int(now.0)).chain(ids.iter().map(|id| Param::Text(id.clone())));
    batch.push(sql, params.collect());
}

/// The rest of [`commit_all`], once `ran` answered [`commit_in`]'s statement.
async fn committed(
    state: &AppState,
    tx: &mut Tx,
    ran: &Ran,
    ids: &[String],
    actor: Actor<'_>,
    now: Timestamp,
) -> AppResult<Vec<Reservation>> {
    let ended = ran.rows::<Reservation>()?;
    if ended.len() != ids.len() {
        return Err(not_active());
    }
    let mut selling = Batch::new();
    let taken = take_off_in(&mut selling, &ended, actor, now);
    let ran = tx.run(&selling).await?;
    taken.announce(state, tx, &ran).await?;
    Ok(ended)
}

/// What [`sell_in`] added to a batch, for [`Sale::finish`].
pub struct Sale {
    /// Where its statements begin in the batch.
    at: usize,
    count: usize,
    taken: Taken,
}

/// Adds to `batch` the statements that sell `reservations`, as they were reserved, all in
/// the batch's trip: [`commit_in`]'s, which ends them, then the levels, the ledger and the
/// stock after, as [`commit_all`] does once it has read them back. [`Sale::finish`] checks
/// that every one was still active, before the caller commits.
pub fn sell_in(batch: &mut Batch, reservations: &[Reservation], actor: Actor<'_>, now: Timestamp) -> Sale {
    let ids: Vec<String> = reservations.iter().map(|reservation| reservation.id.clone()).collect();
    let at = batch.len();
    commit_in(batch, &ids, now);
    let taken = take_off_in(batch, reservations, actor, now);
    Sale { at, count: ids.len(), taken }
}

impl Sale {
    /// 409 when a reservation was no longer active (expired, released): the caller rolls
    /// back. `ran` answers the whole batch.
    pub async fn finish(self, state: &AppState, tx: &mut Tx, ran: &[Ran]) -> AppResult<()> {
        let ended = ran.get(self.at).map(Ran::rows::<Reservation>).transpose()?.unwrap_or_default();
        if ended.len() != self.count {
            return Err(not_active());
        }
        self.taken.announce(state, tx, ran).await
    }
}

/// What [`take_off_in`] added to a batch: the units sold of each variant, and where the
/// stock after the sale is read.
struct Taken {
    sold: Vec<(String, i64)>,
    stock_at: usize,
}

/// Adds to `batch` the statements that take the units of `ended`, reservations just ended as
/// committed, off their levels (reserved and on hand), write the `sold` movements, and read
/// the stock after.
fn take_off_in(batch: &mut Batch, ended: &[Reservation], actor: Actor<'_>, now: Timestamp) -> Taken {
    // Levels are locked in one order by every checkout (that of `reserve_all`), so that two
    // on PostgreSQL never wait on each other.
    let mut ended: Vec<&Reservation> = ended.iter().collect();
    ended.sort_by(|a, b| (&a.variant_id, &a.location_id).cmp(&(&b.variant_id, &b.location_id)));
    let mut sold: Vec<(String, i64)> = Vec::new();
    let mut movements = Vec::with_capacity(ended.len());
    for reservation in ended {
        let (sql, params) = unreserve(reservation, reservation.quantity, now);
        batch.push(sql, params);
        match sold.last_mut() {
            Some((variant, units)) if *variant == reservation.variant_id => *units += reservation.quantity,
            _ => sold.push((reservation.variant_id.clone(), reservation.quantity)),
        }
        movements.push(vec![
            Param::Text(new_id("mov")),
            Param::Text(reservation.variant_id.clone()),
            Param::Text(reservation.location_id.clone()),
            Param::Int(-reservation.quantity),
            Param::Text("sold".into()),
            Param::Text(String::new()),
            Param::MaybeText(Some(reservation.reference.clone().unwrap_or_else(|| reservation.id.clone()))),
            Param::Text(actor.kind.to_owned()),
            Param::Text(actor.id.to_owned()),
            Param::Int(now.0),
        ]);
    }
    batch.push_rows(
        "INSERT INTO inventory_movements (id, variant_id, location_id, quantity, kind, reason, reference, \
         actor_kind, actor_id, created_at)",
        movements,
        "",
    );
    // Whether a sale took a variant from above its threshold to at or below it.
    let list: Vec<String> = (1..=sold.len()).map(|n| format!("${n}")).collect();
    let sql = format!(
        "SELECT v.id, v.low_stock_threshold, v.product_id, v.sku, CAST(COALESCE(SUM(l.on_hand), 0) AS BIGINT), \
         CAST(COALESCE(SUM(l.on_hand - l.reserved), 0) AS BIGINT) FROM product_variants v \
         LEFT JOIN inventory_levels l ON l.variant_id = v.id WHERE v.id IN ({}) \
         GROUP BY v.id, v.low_stock_threshold, v.product_id, v.sku",
        list.join(", ")
    );
    batch.push(sql, sold.iter().map(|(id, _)| Param::Text(id.clone())).collect());
    Taken { sold, stock_at: batch.len() - 1 }
}

impl Taken {
    /// Marks the variants changed, and announces (`inventory.low`) each that the sale took
    /// from above its threshold to at or below it. `ran` answers the whole batch.
    async fn announce(self, state: &AppState, tx: &mut Tx, ran: &[Ran]) -> AppResult<()> {
        for (variant_id, _) in &self.sold {
            tx.invalidate(super::changed(variant_id));
        }
        let stocks = match ran.get(self.stock_at) {
            Some(stocks) => stocks.rows::<(String, i64, String, Option<String>, i64, i64)>()?,
            None => return Err(AppError::internal(anyhow::anyhow!("a batch answered fewer statements than it held"))),
        };
        for (variant_id, threshold, product_id, sku, on_hand, available) in stocks {
            let units = self.sold.iter().find(|(id, _)| *id == variant_id).map_or(0, |(_, units)| *units);
            let before = on_hand + units;
            if before > threshold && on_hand <= threshold {
                let event = serde_json::json!({
                    "variant_id": variant_id,
                    "product_id": product_id,
                    "sku": sku,
                    "on_hand": on_hand,
                    "available": available,
                    "low_stock_threshold": threshold,
                });
                webhooks::emit(state, tx, "inventory.low", &event).await?;
            }
        }
        Ok(())
    }
}

/// Expires the reservations whose time has passed; returns how many.
pub async fn expire_due(state: &AppState) -> AppResult<u64> {
    let mut expired = 0;
    loop {
        let due = db_run!(state.db.read().await?, |conn| {
            sqlx::query_scalar::<_, String>(
                "SELECT id FROM inventory_reservations WHERE status = 'active' AND expires_at < $1 LIMIT 100",
            )
            .bind(Timestamp::now())
            .fetch_all(conn)
            .await
        })?;
        if due.is_empty() {
            return Ok(expired);
        }
        for id in due {
            let mut tx = state.db.begin().await?;
            if end(&mut tx, &id, "expired").await?.is_some() {
                expired += 1;
            }
            tx.commit().await?;
        }
    }
}

/// Checks a location's code and name.
pub fn check_location(code: &str, name: &str) -> Result<(), (&'static str, &'static str)> {
    if !(1..=40).contains(&code.len())
        || !code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(("code", "must be 1 to 40 lowercase letters, digits, `-` and `_`"));
    }
    if name.trim().is_empty() || !single_line(name, 100) {
        return Err(("name", "must be 1 to 100 characters on one line"));
    }
    Ok(())
}
