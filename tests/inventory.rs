//! Stock through the admin and store APIs, on both databases: the ledger and the level it
//! sums to, what shoppers see, reservations that never oversell however many race, commits,
//! releases and expiry, and the `inventory.low` event.

mod common;

use std::time::Duration;

use backroom::accounts::roles::Role;
use common::{TestApp, WebhookReceiver};
use serde_json::{Value, json};

/// A published product with a tracked variant (`MUG`, low at 2) and a backorder one (`MUG-PRE`).
async fn mug(app: &TestApp, auth: &str) -> (String, String) {
    let product = json!({
        "title": "Mug", "status": "published",
        "options": [{"name": "Edition", "values": ["Now", "Later"]}],
        "variants": [
            {"sku": "MUG", "options": {"Edition": "Now"}, "low_stock_threshold": 2, "prices": [{"currency": "EUR", "amount": 1200}]},
            {"sku": "MUG-PRE", "options": {"Edition": "Later"}, "inventory_policy": "continue", "prices": [{"currency": "EUR", "amount": 1200}]}
        ]
    });
    let created = app.post("/api/v1/admin/products", product, &[("authorization", auth)]).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let variants = &created.body["variants"];
    (variants[0]["id"].as_str().unwrap().to_owned(), variants[1]["id"].as_str().unwrap().to_owned())
}

async fn move_stock(app: &TestApp, auth: &str, variant: &str, body: Value) -> common::Resp {
    app.post(&format!("/api/v1/admin/variants/{variant}/inventory/movements"), body, &[("authorization", auth)]).await
}

async fn availability(app: &TestApp) -> Vec<Value> {
    let shown = app.get("/api/v1/store/products/mug", &[]).await;
    shown.body["variants"].as_array().unwrap().iter().map(|v| v["availability"].clone()).collect()
}

conformance! {
    async fn the_ledger_sums_to_the_level_and_shoppers_see_availability(backend) {
        let receiver = WebhookReceiver::start().await;
        let app = TestApp::spawn_with(backend, |config| config.webhooks.allow_loopback = true).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        let hook = app
            .post("/api/v1/admin/webhooks", json!({"url": receiver.url("erp", 204), "event_types": ["inventory.low"]}), &[("authorization", &auth)])
            .await;
        receiver.set_secrets("erp", &[hook.body["secret"].as_str().unwrap()]);
        let (tracked, _) = mug(&app, &auth).await;
        assert_eq!(availability(&app).await, [json!("out_of_stock"), json!("backorder")]);

        let received = move_stock(&app, &auth, &tracked, json!({"quantity": 10, "kind": "received", "reason": "PO 17"})).await;
        assert_eq!(received.status, 201, "{}", received.text);
        assert_eq!(received.body["available"], 10);
        assert_eq!(availability(&app).await[0], "in_stock");
        let shown = app.get("/api/v1/store/products/mug", &[]).await;
        assert!(shown.body["variants"][0].get("available").is_none(), "exact counts stay private");

        let counted = move_stock(&app, &auth, &tracked, json!({"quantity": -8, "kind": "adjusted", "reason": "stock count"})).await;
        assert_eq!(counted.body["levels"][0]["on_hand"], 2);
        assert_eq!(availability(&app).await[0], "low_stock");
        let low = receiver.wait_for("erp", 1, Duration::from_secs(10)).await;
        assert_eq!(low[0].body["type"], "inventory.low");
        assert_eq!(low[0].body["data"]["sku"], "MUG");
        assert_eq!(low[0].body["data"]["available"], 2);
        assert_eq!(low[0].verified, vec![true]);

        // Below zero on hand is refused, and nothing is written.
        let refused = move_stock(&app, &auth, &tracked, json!({"quantity": -5, "kind": "adjusted"})).await;
        assert_eq!(refused.problem(422, "validation_failed")["errors"][0]["field"], "quantity");
        let bad = move_stock(&app, &auth, &tracked, json!({"quantity": -1, "kind": "received", "location_id": "loc_nowhere"})).await;
        assert_eq!(bad.error_fields(), ["quantity"]);
        let huge = move_stock(&app, &auth, &tracked, json!({"quantity": i64::MIN, "kind": "adjusted"})).await;
        assert_eq!(huge.error_fields(), ["quantity"]);
        let nowhere = move_stock(&app, &auth, &tracked, json!({"quantity": 1, "kind": "received", "location_id": "loc_nowhere"})).await;
        assert_eq!(nowhere.error_fields(), ["location_id"]);
        let ledger = app.count(&format!("SELECT CAST(SUM(quantity) AS BIGINT) FROM inventory_movements WHERE variant_id = '{tracked}'")).await;
        let level = app.count(&format!("SELECT on_hand FROM inventory_levels WHERE variant_id = '{tracked}'")).await;
        assert_eq!((ledger, level), (2, 2), "the level is the sum of the ledger");

        let movements = app.get(&format!("/api/v1/admin/variants/{tracked}/inventory/movements"), &[("authorization", &auth)]).await;
        let kinds: Vec<&str> = movements.body["data"].as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["adjusted", "received"]);
        assert_eq!(movements.body["data"][1]["reason"], "PO 17");

        // A second location holds stock of its own.
        let warehouse = app.post("/api/v1/admin/locations", json!({"code": "north", "name": "North warehouse"}), &[("authorization", &auth)]).await;
        assert_eq!(warehouse.status, 201, "{}", warehouse.text);
        let north = warehouse.body["id"].as_str().unwrap();
        let moved = move_stock(&app, &auth, &tracked, json!({"quantity": 4, "kind": "received", "location_id": north})).await;
        assert_eq!(moved.body["available"], 6);
        assert_eq!(moved.body["levels"].as_array().unwrap().len(), 2);
        app.post("/api/v1/admin/locations", json!({"code": "north", "name": "Again"}), &[("authorization", &auth)]).await.problem(409, "conflict");
    }

    async fn reservations_never_oversell_however_many_race(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        let (tracked, backorder) = mug(&app, &auth).await;
        move_stock(&app, &auth, &tracked, json!({"quantity": 10, "kind": "received"})).await;

        let attempts = (0..50).map(|n| {
            let (app, auth, tracked) = (&app, &auth, &tracked);
            async move {
                let body = json!({"variant_id": tracked, "quantity": 1, "reference": format!("cart-{n}")});
                app.post("/api/v1/admin/inventory/reservations", body, &[("authorization", auth)]).await
            }
        });
        let answers = futures_util::future::join_all(attempts).await;
        let won: Vec<&common::Resp> = answers.iter().filter(|r| r.status == 201).collect();
        let lost = answers.iter().filter(|r| r.status == 409).count();
        assert_eq!((won.len(), lost), (10, 40), "{:?}", answers.iter().map(|r| r.status).collect::<Vec<_>>());
        assert_eq!(answers.iter().find(|r| r.status == 409).unwrap().body["errors"][0]["code"], "insufficient_stock");
        let stock = app.get(&format!("/api/v1/admin/variants/{tracked}/inventory"), &[("authorization", &auth)]).await;
        assert_eq!(stock.body["available"], 0);
        assert_eq!(stock.body["levels"][0]["reserved"], 10);
        assert_eq!(availability(&app).await[0], "out_of_stock");

        // Three sell, two come back; a reservation ends once.
        for resp in &won[..3] {
            let id = resp.body["id"].as_str().unwrap();
            let sold = app.post(&format!("/api/v1/admin/inventory/reservations/{id}/commit"), json!({}), &[("authorization", &auth)]).await;
            assert_eq!(sold.body["status"], "committed", "{}", sold.text);
        }
        for resp in &won[3..5] {
            let id = resp.body["id"].as_str().unwrap();
            let back = app.post(&format!("/api/v1/admin/inventory/reservations/{id}/release"), json!({}), &[("authorization", &auth)]).await;
            assert_eq!(back.body["status"], "released", "{}", back.text);
        }
        let again = won[0].body["id"].as_str().unwrap();
        app.post(&format!("/api/v1/admin/inventory/reservations/{again}/release"), json!({}), &[("authorization", &auth)]).await.problem(409, "conflict");
        app.post("/api/v1/admin/inventory/reservations/rsv_01jd8x0000000000000000000/commit", json!({}), &[("authorization", &auth)]).await.problem(404, "not_found");
        let stock = app.get(&format!("/api/v1/admin/variants/{tracked}/inventory"), &[("authorization", &auth)]).await;
        assert_eq!((stock.body["levels"][0]["on_hand"].clone(), stock.body["levels"][0]["reserved"].clone()), (json!(7), json!(5)));
        assert_eq!(stock.body["available"], 2);
        let sold = app.count(&format!("SELECT COUNT(*) FROM inventory_movements WHERE variant_id = '{tracked}' AND kind = 'sold'")).await;
        assert_eq!(sold, 3);

        // Units promised to checkouts cannot be counted away, and the product stays while held.
        let promised = move_stock(&app, &auth, &tracked, json!({"quantity": -3, "kind": "adjusted"})).await;
        assert_eq!(promised.error_fields(), ["quantity"], "{}", promised.text);
        let product = app.get("/api/v1/store/products/mug", &[]).await.body["id"].as_str().unwrap().to_owned();
        let refused = app.delete(&format!("/api/v1/admin/products/{product}"), &[("authorization", &auth)]).await;
        assert!(refused.problem(409, "conflict")["detail"].as_str().unwrap().contains("archive"), "{}", refused.text);

        // A backorder variant takes reservations with nothing on hand.
        let pre = app
            .post("/api/v1/admin/inventory/reservations", json!({"variant_id": backorder, "quantity": 3}), &[("authorization", &auth)])
            .await;
        assert_eq!(pre.status, 201, "{}", pre.text);
        assert_eq!(availability(&app).await[1], "backorder");
        // Sold without stock, then partly restocked.
        let pre_id = pre.body["id"].as_str().unwrap();
        assert_eq!(app.post(&format!("/api/v1/admin/inventory/reservations/{pre_id}/commit"), json!({}), &[("authorization", &auth)]).await.status, 200);
        let restocked = move_stock(&app, &auth, &backorder, json!({"quantity": 2, "kind": "received"})).await;
        assert_eq!(restocked.status, 201, "{}", restocked.text);
        assert_eq!(restocked.body["levels"][0]["on_hand"], -1);
        let zero = app.post("/api/v1/admin/inventory/reservations", json!({"variant_id": tracked, "quantity": 0}), &[("authorization", &auth)]).await;
        assert_eq!(zero.error_fields(), ["quantity"]);
    }

    async fn reservations_not_committed_in_time_expire(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        let (tracked, _) = mug(&app, &auth).await;
        move_stock(&app, &auth, &tracked, json!({"quantity": 1, "kind": "received"})).await;
        let held = app
            .post("/api/v1/admin/inventory/reservations", json!({"variant_id": tracked, "quantity": 1, "ttl_secs": 1}), &[("authorization", &auth)])
            .await;
        assert_eq!(held.status, 201, "{}", held.text);
        let id = held.body["id"].as_str().unwrap();
        assert_eq!(backroom::catalog::inventory::expire_due(&app.state).await.unwrap(), 0, "not yet");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // Past its time it cannot be sold, even before the expiry job has run.
        app.post(&format!("/api/v1/admin/inventory/reservations/{id}/commit"), json!({}), &[("authorization", &auth)]).await.problem(409, "conflict");
        assert_eq!(backroom::catalog::inventory::expire_due(&app.state).await.unwrap(), 1);
        let stock = app.get(&format!("/api/v1/admin/variants/{tracked}/inventory"), &[("authorization", &auth)]).await;
        assert_eq!(stock.body["available"], 1);
    }
}

/// What a checkout or staff member does to a variant's stock.
#[derive(Debug, Clone)]
enum Op {
    Receive(i64),
    Adjust(i64),
    Reserve(i64),
    Commit(usize),
    Release(usize),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        (1i64..20).prop_map(Op::Receive),
        (-20i64..20).prop_filter("a movement moves something", |q| *q != 0).prop_map(Op::Adjust),
        (1i64..6).prop_map(Op::Reserve),
        (0usize..8).prop_map(Op::Commit),
        (0usize..8).prop_map(Op::Release),
    ]
}

/// Random sequences of receipts, counts, reservations, sales and releases: after every step
/// the level is the sum of the ledger, nothing on hand is negative, and under the deny policy
/// reservations never exceed what is on hand.
#[test]
fn the_level_is_always_the_sum_of_the_ledger_and_never_oversold() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = runtime.block_on(TestApp::spawn(common::Backend::Sqlite));
    let auth = runtime.block_on(app.staff("admin@example.com", Role::Admin));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 40, ..ProptestConfig::default() });
    let product = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&proptest::collection::vec(op(), 1..25), |ops| {
            let product = product.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            runtime.block_on(async {
                let body = json!({"title": format!("Item {product}"), "variants": [{"prices": [{"currency": "EUR", "amount": 100}]}]});
                let created = app.post("/api/v1/admin/products", body, &[("authorization", &auth)]).await;
                let variant = created.body["variants"][0]["id"].as_str().unwrap().to_owned();
                let mut reservations: Vec<String> = Vec::new();
                for op in &ops {
                    match op {
                        Op::Receive(q) => {
                            move_stock(&app, &auth, &variant, json!({"quantity": q, "kind": "received"})).await;
                        }
                        Op::Adjust(q) => {
                            move_stock(&app, &auth, &variant, json!({"quantity": q, "kind": "adjusted"})).await;
                        }
                        Op::Reserve(q) => {
                            let body = json!({"variant_id": variant, "quantity": q});
                            let held = app.post("/api/v1/admin/inventory/reservations", body, &[("authorization", &auth)]).await;
                            if held.status == 201 {
                                reservations.push(held.body["id"].as_str().unwrap().to_owned());
                            }
                        }
                        Op::Commit(n) | Op::Release(n) => {
                            if let Some(id) = reservations.get(*n) {
                                let action = if matches!(op, Op::Commit(_)) { "commit" } else { "release" };
                                app.post(&format!("/api/v1/admin/inventory/reservations/{id}/{action}"), json!({}), &[("authorization", &auth)]).await;
                            }
                        }
                    }
                    let ledger = app.count(&format!("SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM inventory_movements WHERE variant_id = '{variant}'")).await;
                    let on_hand = app.count(&format!("SELECT CAST(COALESCE(SUM(on_hand), 0) AS BIGINT) FROM inventory_levels WHERE variant_id = '{variant}'")).await;
                    let reserved = app.count(&format!("SELECT CAST(COALESCE(SUM(reserved), 0) AS BIGINT) FROM inventory_levels WHERE variant_id = '{variant}'")).await;
                    let active = app.count(&format!("SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM inventory_reservations WHERE variant_id = '{variant}' AND status = 'active'")).await;
                    prop_assert_eq!(ledger, on_hand, "after {:?}", op);
                    prop_assert_eq!(reserved, active, "after {:?}", op);
                    prop_assert!(on_hand >= 0 && on_hand - reserved >= 0, "after {:?}: {} on hand, {} reserved", op, on_hand, reserved);
                }
                Ok(())
            })
        })
        .unwrap();
}
