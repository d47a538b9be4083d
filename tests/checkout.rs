//! Checkout on both databases: regions, tax and shipping priced against hand-computed totals,
//! carts that say what changed, and placing orders: idempotent, never overselling, never
//! placing two orders from one cart, releasing stock when a payment fails.

mod common;

use std::sync::Arc;
use std::time::Duration;

use backroom::accounts::roles::Role;
use common::{TestApp, WebhookReceiver};
use serde_json::{Value, json};

const CARD: &str = "4242424242424242";
const DECLINED: &str = "4000000000000002";
const TIMES_OUT: &str = "4000000000000119";

/// Two regions (EU with VAT included, US with sales tax added), their rates and shipping.
async fn shop(app: &TestApp, auth: &str) {
    let headers = [("authorization", auth)];
    let eu = app
        .post(
            "/api/v1/admin/regions",
            json!({"name": "Europe", "currency": "EUR", "countries": ["DE", "FR", "NL"], "tax_inclusive": true}),
            &headers,
        )
        .await;
    assert_eq!(eu.status, 201, "{}", eu.text);
    assert_eq!(eu.body["is_default"], true, "the first region is the default");
    let us = app
        .post(
            "/api/v1/admin/regions",
            json!({"name": "United States", "currency": "USD", "countries": ["US"], "tax_inclusive": false}),
            &headers,
        )
        .await;
    assert_eq!(us.status, 201, "{}", us.text);
    let rates = json!([
        {"country": "DE", "tax_class": "standard", "rate_bps": 1900, "name": "MwSt."},
        {"country": "DE", "tax_class": "reduced", "rate_bps": 700, "name": "MwSt. ermäßigt"},
        {"country": "FR", "tax_class": "standard", "rate_bps": 2000, "name": "TVA"},
        {"country": "US", "subdivision": "CA", "tax_class": "standard", "rate_bps": 725, "name": "CA sales tax"},
        {"country": "US", "subdivision": "NY", "tax_class": "standard", "rate_bps": 400, "name": "NY sales tax"}
    ]);
    let put = app.put("/api/v1/admin/tax-rates", rates, &headers).await;
    assert_eq!(put.status, 200, "{}", put.text);
    let eu_zone = json!({"name": "EU", "areas": ["DE", "FR", "NL"], "methods": [
        {"name": "Standard", "kind": "flat", "currency": "EUR", "amount": 490, "free_above": 5000, "estimate": "2 to 4 working days"},
        {"name": "Heavy goods", "kind": "weight", "currency": "EUR", "tiers": [{"up_to": 2000, "amount": 900}, {"up_to": 20000, "amount": 1900}]}
    ]});
    assert_eq!(app.post("/api/v1/admin/shipping-zones", eu_zone, &headers).await.status, 201);
    let us_zone = json!({"name": "US", "areas": ["US"], "methods": [
        {"name": "Ground", "kind": "flat", "currency": "USD", "amount": 800}
    ]});
    assert_eq!(app.post("/api/v1/admin/shipping-zones", us_zone, &headers).await.status, 201);
    let pickup = json!({"name": "Berlin", "areas": ["DE"], "postcodes": ["10*"], "methods": [
        {"name": "Pick up in the shop", "kind": "pickup", "currency": "EUR", "amount": 0}
    ]});
    assert_eq!(app.post("/api/v1/admin/shipping-zones", pickup, &headers).await.status, 201);
}

/// A published product with one variant in stock; returns the variant's id.
async fn product(app: &TestApp, auth: &str, title: &str, prices: Value, tax_class: &str, stock: i64) -> String {
    let body = json!({
        "title": title, "status": "published",
        "variants": [{"sku": title.to_uppercase().replace(' ', "-"), "prices": prices, "tax_class": tax_class, "weight_grams": 500}]
    });
    let created = app.post("/api/v1/admin/products", body, &[("authorization", auth)]).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let variant = created.body["variants"][0]["id"].as_str().unwrap().to_owned();
    if stock > 0 {
        let moved = app
            .post(
                &format!("/api/v1/admin/variants/{variant}/inventory/movements"),
                json!({"quantity": stock, "kind": "received"}),
                &[("authorization", auth)],
            )
            .await;
        assert_eq!(moved.status, 201, "{}", moved.text);
    }
    variant
}

fn address(country: &str, subdivision: &str, postcode: &str) -> Value {
    json!({"first_name": "Ana", "last_name": "Silva", "line1": "1 Main Street", "city": "Town",
           "subdivision": subdivision, "postcode": postcode, "country": country})
}

async fn new_cart(app: &TestApp) -> String {
    let cart = app.post("/api/v1/store/carts", json!({}), &[]).await;
    assert_eq!(cart.status, 201, "{}", cart.text);
    cart.body["id"].as_str().unwrap().to_owned()
}

async fn add(app: &TestApp, cart: &str, variant: &str, quantity: i64) -> common::Resp {
    app.post(&format!("/api/v1/store/carts/{cart}/lines"), json!({"variant_id": variant, "quantity": quantity}), &[])
        .await
}

/// Sets the email and address and picks the method named `method`; returns the cart.
async fn ready(app: &TestApp, cart: &str, to: Value, method: &str) -> Value {
    let path = format!("/api/v1/store/carts/{cart}");
    let set = app.patch(&path, json!({"email": "ana@example.com", "shipping_address": to}), &[]).await;
    assert_eq!(set.status, 200, "{}", set.text);
    let option = set.body["shipping_options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == method)
        .unwrap_or_else(|| panic!("no {method} in {}", set.body["shipping_options"]));
    let chosen = app.patch(&path, json!({"shipping_method_id": option["id"]}), &[]).await;
    assert_eq!(chosen.status, 200, "{}", chosen.text);
    chosen.body
}

async fn place(app: &TestApp, cart: &str, key: &str, card: &str) -> common::Resp {
    app.post(
        &format!("/api/v1/store/carts/{cart}/complete"),
        json!({"payment": {"provider": "test", "card_number": card}}),
        &[("idempotency-key", key)],
    )
    .await
}

async fn available(app: &TestApp, variant: &str) -> i64 {
    app.count(&format!(
        "SELECT CAST(COALESCE(SUM(on_hand - reserved), 0) AS BIGINT) FROM inventory_levels WHERE variant_id = '{variant}'"
    ))
    .await
}

conformance! {
    async fn each_line_added_answers_the_cart_as_it_then_stands(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mut variants = Vec::new();
        for n in 0..8 {
            variants.push(product(&app, &auth, &format!("Cup {n}"), json!([{"currency": "EUR", "amount": 500 + n}]), "standard", 9).await);
        }
        let cart = new_cart(&app).await;
        let empty = app.get(&format!("/api/v1/store/carts/{cart}"), &[]).await;
        assert_eq!((empty.status, &empty.body["lines"]), (200, &json!([])));
        // At once: each answer holds its own line, whichever others it saw.
        let answers = futures_util::future::join_all(variants.iter().map(|variant| add(&app, &cart, variant, 1))).await;
        for (answer, variant) in answers.iter().zip(&variants) {
            assert_eq!(answer.status, 200, "{}", answer.text);
            let lines = answer.body["lines"].as_array().unwrap();
            assert!(lines.iter().any(|line| line["variant_id"] == json!(variant) && line["quantity"] == 1), "{lines:?}");
        }
        // One after another: the answer is the cart as a read of it then answers.
        for (variant, quantity) in [(&variants[0], 2), (&variants[3], 1)] {
            let added = add(&app, &cart, variant, quantity).await;
            let read = app.get(&format!("/api/v1/store/carts/{cart}"), &[]).await;
            assert_eq!(added.body["lines"], read.body["lines"]);
            assert_eq!(added.body["totals"], read.body["totals"]);
        }
        let lines = app.get(&format!("/api/v1/store/carts/{cart}"), &[]).await.body["lines"].clone();
        assert_eq!(lines.as_array().unwrap().len(), 8);
        let quantity = |variant: &str| lines.as_array().unwrap().iter().find(|l| l["variant_id"] == json!(variant)).unwrap()["quantity"].clone();
        assert_eq!((quantity(&variants[0]), quantity(&variants[3]), quantity(&variants[5])), (json!(3), json!(2), json!(1)));
    }

    async fn sales_tax_is_added_per_line_and_on_shipping(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let shirt = product(&app, &auth, "Shirt", json!([{"currency": "USD", "amount": 1999}, {"currency": "EUR", "amount": 1900}]), "standard", 10).await;
        let pin = product(&app, &auth, "Pin", json!([{"currency": "USD", "amount": 500}, {"currency": "EUR", "amount": 450}]), "standard", 10).await;
        let cart = new_cart(&app).await;
        assert_eq!(add(&app, &cart, &shirt, 3).await.status, 200);
        let added = add(&app, &cart, &pin, 1).await;
        assert_eq!(added.body["currency"], "EUR", "a new cart is in the default region");
        assert_eq!(added.body["tax_estimated"], true);

        let cart_body = ready(&app, &cart, address("US", "CA", "94105"), "Ground").await;
        assert_eq!(cart_body["currency"], "USD", "a US address moves the cart to the US region");
        assert_eq!(cart_body["tax_inclusive"], false);
        // 3 × 19.99 = 59.97 at 7.25% = 4.3478 → 4.35; 5.00 → 0.3625 → 0.36; shipping 8.00 → 0.58.
        let lines = cart_body["lines"].as_array().unwrap();
        assert_eq!((lines[0]["subtotal"].as_i64(), lines[0]["tax"].as_i64()), (Some(5997), Some(435)));
        assert_eq!((lines[1]["subtotal"].as_i64(), lines[1]["tax"].as_i64()), (Some(500), Some(36)));
        let totals = &cart_body["totals"];
        assert_eq!(totals["shipping"], 800);
        assert_eq!(totals["shipping_tax"], 58);
        assert_eq!(totals["tax_total"], 435 + 36 + 58);
        assert_eq!(totals["total"], 5997 + 500 + 800 + 435 + 36 + 58);
        assert_eq!(cart_body["missing"], json!([]));

        // Oregon has no sales tax in this shop.
        let oregon = app.patch(&format!("/api/v1/store/carts/{cart}"), json!({"shipping_address": address("US", "OR", "97201")}), &[]).await;
        assert_eq!(oregon.body["totals"]["tax_total"], 0);
        assert_eq!(oregon.body["totals"]["total"], 5997 + 500 + 800);
    }

    async fn vat_is_included_by_class_and_shipping_tiers_apply(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1200}]), "standard", 10).await;
        let book = product(&app, &auth, "Book", json!([{"currency": "EUR", "amount": 2000}]), "reduced", 10).await;
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 1).await;
        add(&app, &cart, &book, 1).await;
        let body = ready(&app, &cart, address("DE", "", "80331"), "Standard").await;
        // 12.00 incl. 19%: 12.00 / 1.19 = 10.084 → 10.08, tax 1.92; 20.00 incl. 7%: 18.69, tax 1.31;
        // shipping 4.90 incl. 19%: 4.12, tax 0.78.
        let lines = body["lines"].as_array().unwrap();
        assert_eq!(lines[0]["tax"], 192);
        assert_eq!(lines[1]["tax"], 131);
        assert_eq!(lines[1]["tax_rate_bps"], 700);
        assert_eq!(body["totals"]["shipping_tax"], 78);
        assert_eq!(body["totals"]["tax_total"], 192 + 131 + 78);
        assert_eq!(body["totals"]["total"], 1200 + 2000 + 490, "inclusive prices are what the shopper pays");
        let names: Vec<&str> = body["shipping_options"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Standard", "Heavy goods"]);
        let heavy = &body["shipping_options"][1];
        assert_eq!(heavy["amount"], 900, "two items of 500 g are in the first weight tier");

        // Free above 50.00; a Berlin postcode is served by the more specific pickup zone only.
        let more = app.patch(&format!("/api/v1/store/carts/{cart}/lines/{}", lines[1]["id"].as_str().unwrap()), json!({"quantity": 3}), &[]).await;
        assert_eq!(more.body["shipping_method"]["amount"], 0);
        assert_eq!(more.body["totals"]["total"], 1200 + 6000);
        let berlin = app.patch(&format!("/api/v1/store/carts/{cart}"), json!({"shipping_address": address("DE", "", "10115")}), &[]).await;
        let names: Vec<&str> = berlin.body["shipping_options"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Pick up in the shop"]);
        assert_eq!(berlin.body["missing"], json!(["shipping_method", "shipping_method_unavailable"]));

        // A tax-exempt customer pays the prices without the VAT they include.
        let register = app.post("/api/v1/store/customers", json!({"email": "firm@example.com", "password": "correct horse battery"}), &[]).await;
        assert_eq!(register.status, 202);
        let customer = app.get("/api/v1/admin/customers", &[("authorization", &auth)]).await;
        let customer_id = customer.body["data"][0]["id"].as_str().unwrap();
        let exempted = app
            .patch(&format!("/api/v1/admin/customers/{customer_id}"), json!({"tax_exempt": true}), &[("authorization", &auth)])
            .await;
        assert_eq!(exempted.body["tax_exempt"], true, "{}", exempted.text);
        let session = app.post("/api/v1/store/auth/sessions", json!({"email": "firm@example.com", "password": "correct horse battery"}), &[]).await;
        let bearer = format!("Bearer {}", session.body["token"].as_str().unwrap());
        let claimed = app.post(&format!("/api/v1/store/carts/{cart}/claim"), json!({}), &[("authorization", &bearer)]).await;
        assert_eq!(claimed.status, 200, "{}", claimed.text);
        assert_eq!(claimed.body["tax_exempt"], true);
        assert_eq!(claimed.body["totals"]["tax_total"], 0);
        assert_eq!(claimed.body["totals"]["total"], 1008 + 3 * 1869, "net of the included VAT, shipping free");
        assert_eq!(app.get(&format!("/api/v1/store/carts/{cart}"), &[]).await.status, 404, "a customer's cart is theirs alone");
    }

    async fn addresses_are_checked_per_country(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let cart = new_cart(&app).await;
        let path = format!("/api/v1/store/carts/{cart}");
        let bad = app.patch(&path, json!({"shipping_address": address("NL", "", "0123 AB"), "email": "nope"}), &[]).await;
        let mut fields = bad.error_fields();
        fields.sort();
        assert_eq!(fields, ["email", "shipping_address.postcode"]);
        let us = app.patch(&path, json!({"shipping_address": address("US", "ZZ", "9410")}), &[]).await;
        let mut fields = us.error_fields();
        fields.sort();
        assert_eq!(fields, ["shipping_address.postcode", "shipping_address.subdivision"]);
        let nowhere = app.patch(&path, json!({"shipping_address": address("JP", "13", "100-0001")}), &[]).await;
        assert_eq!(nowhere.problem(422, "validation_failed")["errors"][0]["code"], "not_served");
        let good = app.patch(&path, json!({"shipping_address": address("NL", "", "1012ab")}), &[]).await;
        assert_eq!(good.body["shipping_address"]["postcode"], "1012 AB", "postcodes are normalised");
        let unchanged = app.get(&path, &[]).await;
        assert_eq!(unchanged.body["email"], Value::Null, "a refused change writes nothing");
    }

    async fn a_cart_says_what_changed_since_it_was_seen(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1200}]), "standard", 3).await;
        let cart = new_cart(&app).await;
        let too_many = add(&app, &cart, &mug, 4).await;
        assert_eq!(too_many.problem(409, "conflict")["errors"][0]["code"], "insufficient_stock");
        let added = add(&app, &cart, &mug, 2).await;
        assert_eq!(added.body["changes"], json!([]));
        app.execute(&format!("UPDATE variant_prices SET amount = 1500 WHERE variant_id = '{mug}'")).await;
        app.execute(&format!("UPDATE inventory_levels SET on_hand = 1 WHERE variant_id = '{mug}'")).await;
        let seen = app.get(&format!("/api/v1/store/carts/{cart}"), &[]).await;
        let kinds: Vec<&str> = seen.body["changes"].as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["price_changed", "insufficient_stock"]);
        assert_eq!(seen.body["lines"][0]["unit_amount"], 1500, "carts are priced as the shop is now");
        assert_eq!(seen.body["lines"][0]["available"], 1);
        let line = seen.body["lines"][0]["id"].as_str().unwrap();
        let fixed = app.patch(&format!("/api/v1/store/carts/{cart}/lines/{line}"), json!({"quantity": 1}), &[]).await;
        assert_eq!(fixed.body["changes"], json!([]), "a change acknowledges what was shown");
        app.execute("UPDATE products SET status = 'archived'").await;
        let gone = app.get(&format!("/api/v1/store/carts/{cart}"), &[]).await;
        assert_eq!(gone.body["changes"][0]["kind"], "unavailable");
        assert!(gone.body["missing"].as_array().unwrap().contains(&json!("unavailable")));
        let removed = app.delete(&format!("/api/v1/store/carts/{cart}/lines/{line}"), &[]).await;
        assert_eq!(removed.body["lines"], json!([]));
        app.execute(&format!("UPDATE carts SET expires_at = 0 WHERE id = '{cart}'")).await;
        assert_eq!(app.get(&format!("/api/v1/store/carts/{cart}"), &[]).await.status, 404, "carts expire");
        assert_eq!(backroom::checkout::cart::purge_expired(&app.state).await.unwrap(), 1);
        assert_eq!(app.count(&format!("SELECT COUNT(*) FROM carts WHERE id = '{cart}'")).await, 0, "and are deleted");
    }

    async fn placing_an_order_is_idempotent_and_sells_the_stock_once(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1200}]), "standard", 5).await;
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 2).await;
        let early = place(&app, &cart, "k1", CARD).await;
        let mut missing = early.error_fields();
        missing.sort();
        assert_eq!(missing, ["email", "shipping_address", "shipping_method"]);
        let ready_cart = ready(&app, &cart, address("FR", "", "75001"), "Standard").await;
        let no_key = app.post(&format!("/api/v1/store/carts/{cart}/complete"), json!({"payment": {"provider": "test", "card_number": CARD}}), &[]).await;
        assert_eq!(no_key.status, 400);
        let bad_card = place(&app, &cart, "k1", "4242424242424241").await;
        assert_eq!(bad_card.error_fields(), ["payment.card_number"]);

        let placed = place(&app, &cart, "k1", CARD).await;
        assert_eq!(placed.status, 201, "{}", placed.text);
        let order = &placed.body;
        assert_eq!(order["number"], 1001);
        assert_eq!(order["status"], "paid");
        assert_eq!(order["totals"], ready_cart["totals"], "the order is the cart as priced");
        assert_eq!(order["totals"]["total"], 2400 + 490);
        assert_eq!(order["lines"][0]["tax_name"], "TVA");
        assert_eq!(order["payments"][0]["status"], "captured");
        assert_eq!(order["paid_total"], 2400 + 490);
        assert_eq!(available(&app, &mug).await, 3);
        let sold = app.count(&format!("SELECT CAST(SUM(quantity) AS BIGINT) FROM inventory_movements WHERE kind = 'sold' AND variant_id = '{mug}'")).await;
        assert_eq!(sold, -2);

        let again = place(&app, &cart, "k1", CARD).await;
        assert_eq!(again.status, 201);
        assert_eq!(again.body, *order, "a retry answers the same order, as it was stored");
        let other_body = place(&app, &cart, "k1", "5555555555554444").await;
        assert_eq!(other_body.error_fields(), ["Idempotency-Key"]);
        let other_key = place(&app, &cart, "k2", CARD).await;
        assert_eq!(other_key.status, 409);
        assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 1);
        let change = add(&app, &cart, &mug, 1).await;
        assert_eq!(change.status, 409, "an order's cart no longer changes");

        let emails = app.wait_for_emails(1).await;
        assert_eq!(emails[0].header("To"), Some("ana@example.com"));
        assert!(emails[0].header("Subject").unwrap().contains("#1001"));
        assert!(emails[0].text.contains("28.90 EUR"), "{}", emails[0].text);
        let found = app.post("/api/v1/store/orders/lookup", json!({"number": 1001, "email": "ANA@example.com"}), &[]).await;
        assert_eq!(found.body["id"], order["id"]);
        let wrong = app.post("/api/v1/store/orders/lookup", json!({"number": 1001, "email": "eve@example.com"}), &[]).await;
        assert_eq!(wrong.status, 404);
        let detail = app.get(&format!("/api/v1/admin/orders/{}", order["id"].as_str().unwrap()), &[("authorization", &auth)]).await;
        assert_eq!(detail.body["timeline"][0]["kind"], "placed");
        assert_eq!(detail.body["timeline"][0]["actor_kind"], "guest");
        let listed = app.get("/api/v1/admin/orders?q=%231001", &[("authorization", &auth)]).await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
    }

    async fn a_declined_or_unanswered_payment_sells_nothing(backend) {
        let app = TestApp::spawn_with(backend, |config| config.checkout.payment_timeout_secs = 1).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1200}]), "standard", 5).await;
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 5).await;
        ready(&app, &cart, address("DE", "", "80331"), "Standard").await;
        let declined = place(&app, &cart, "k1", DECLINED).await;
        assert_eq!(declined.problem(402, "payment_declined")["errors"][0]["message"], "card_declined");
        assert_eq!(available(&app, &mug).await, 5, "the held stock is released");
        let timed_out = place(&app, &cart, "k2", TIMES_OUT).await;
        assert_eq!(timed_out.status, 503, "{}", timed_out.text);
        assert_eq!(available(&app, &mug).await, 5);
        assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM payments WHERE status = 'failed'").await, 2);
        let paid = place(&app, &cart, "k3", CARD).await;
        assert_eq!(paid.status, 201, "the cart can be paid for after a decline: {}", paid.text);
        assert_eq!(available(&app, &mug).await, 0);
    }

    async fn manual_payments_wait_for_staff(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1200}]), "standard", 5).await;
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 2).await;
        ready(&app, &cart, address("DE", "", "80331"), "Standard").await;
        let placed = app
            .post(&format!("/api/v1/store/carts/{cart}/complete"), json!({"payment": {"provider": "manual"}}), &[("idempotency-key", "m1")])
            .await;
        assert_eq!(placed.status, 201, "{}", placed.text);
        assert_eq!(placed.body["status"], "pending_payment");
        assert_eq!(placed.body["paid_total"], 0);
        let id = placed.body["id"].as_str().unwrap();
        let paid = app.post(&format!("/api/v1/admin/orders/{id}/mark-paid"), json!({}), &[("authorization", &auth)]).await;
        assert_eq!(paid.status, 200, "{}", paid.text);
        assert_eq!(paid.body["status"], "paid");
        assert_eq!(paid.body["paid_total"], 1200 * 2 + 490);
        let twice = app.post(&format!("/api/v1/admin/orders/{id}/mark-paid"), json!({}), &[("authorization", &auth)]).await;
        assert_eq!(twice.status, 409);

        // A second manual order, cancelled: its goods go back in stock.
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 3).await;
        ready(&app, &cart, address("DE", "", "80331"), "Standard").await;
        let placed = app
            .post(&format!("/api/v1/store/carts/{cart}/complete"), json!({"payment": {"provider": "manual"}}), &[("idempotency-key", "m2")])
            .await;
        assert_eq!(available(&app, &mug).await, 0);
        let id = placed.body["id"].as_str().unwrap();
        let cancelled = app
            .post(&format!("/api/v1/admin/orders/{id}/cancel"), json!({"reason": "customer asked"}), &[("authorization", &auth)])
            .await;
        assert_eq!(cancelled.status, 200, "{}", cancelled.text);
        assert_eq!(cancelled.body["payments"][0]["status"], "voided");
        assert_eq!(available(&app, &mug).await, 3);
        let detail = app.get(&format!("/api/v1/admin/orders/{id}"), &[("authorization", &auth)]).await;
        let kinds: Vec<&str> = detail.body["timeline"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["placed", "status_changed"]);
        assert_eq!(detail.body["timeline"][1]["actor_kind"], "staff");
        let staff = app.staff("clerk@example.com", Role::Staff).await;
        let pending = app.get("/api/v1/admin/orders?status=cancelled", &[("authorization", &staff)]).await;
        assert_eq!(pending.body["data"].as_array().unwrap().len(), 1);
        let refused = app.put("/api/v1/admin/tax-rates", json!([]), &[("authorization", &staff)]).await;
        assert_eq!(refused.status, 403, "only admins change checkout settings");
        let export = app.get("/api/v1/admin/orders/export", &[("authorization", &staff)]).await;
        assert_eq!(export.header("content-type"), Some("text/csv; charset=utf-8"));
        let rows: Vec<&str> = export.text.lines().collect();
        assert_eq!(rows.len(), 3, "a header and one row per line: {}", export.text);
        assert!(rows[0].starts_with("number,placed_at,status,email"));
        assert!(rows[1].starts_with("1002,") && rows[1].contains(",cancelled,ana@example.com,EUR,MUG,Mug,"), "{}", rows[1]);
        let cancelled_only = app.get("/api/v1/admin/orders/export?status=paid", &[("authorization", &staff)]).await;
        assert_eq!(cancelled_only.text.lines().count(), 2);
        // A page of orders gives each its own lines and payments, as reading it alone does.
        let all = app.get("/api/v1/admin/orders", &[("authorization", &staff)]).await;
        let listed = all.body["data"].as_array().unwrap();
        assert_eq!(listed.len(), 2);
        assert_ne!(listed[0]["lines"][0]["quantity"], listed[1]["lines"][0]["quantity"]);
        for order in listed {
            let alone = app.get(&format!("/api/v1/admin/orders/{}", order["id"].as_str().unwrap()), &[("authorization", &staff)]).await;
            let mut alone = alone.body;
            alone.as_object_mut().unwrap().remove("timeline");
            assert_eq!(*order, alone);
        }
    }

    async fn a_hundred_buyers_for_ten_units_make_ten_orders(backend) {
        let app = Arc::new(TestApp::spawn(backend).await);
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let hot = product(&app, &auth, "Hot", json!([{"currency": "EUR", "amount": 1000}]), "standard", 10).await;
        let mut carts = Vec::new();
        for _ in 0..100 {
            let cart = new_cart(&app).await;
            assert_eq!(add(&app, &cart, &hot, 1).await.status, 200);
            ready(&app, &cart, address("DE", "", "80331"), "Standard").await;
            carts.push(cart);
        }
        let mut buyers = Vec::new();
        for (n, cart) in carts.into_iter().enumerate() {
            let app = app.clone();
            buyers.push(tokio::spawn(async move { place(&app, &cart, &format!("buyer-{n}"), CARD).await.status }));
        }
        let mut statuses = Vec::new();
        for buyer in buyers {
            statuses.push(buyer.await.unwrap());
        }
        assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 10, "{statuses:?}");
        assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "{statuses:?}");
        assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 10);
        assert_eq!(available(&app, &hot).await, 0);
        let on_hand = app.count(&format!("SELECT on_hand FROM inventory_levels WHERE variant_id = '{hot}'")).await;
        assert_eq!(on_hand, 0, "never below zero");
        assert_eq!(app.count("SELECT COUNT(*) FROM inventory_reservations WHERE status = 'active'").await, 0);
    }

    async fn buyers_racing_for_stock_at_several_locations_each_find_one_that_has_it(backend) {
        let app = Arc::new(TestApp::spawn(backend).await);
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        // 2 units at each of three locations: three lines of 2 fit, one at each, whoever
        // waited for whom, so all three buyers racing for them get their orders.
        let hot = product(&app, &auth, "Hot", json!([{"currency": "EUR", "amount": 1000}]), "standard", 2).await;
        let receive = |location: String| {
            let (app, auth, hot) = (app.clone(), auth.clone(), hot.clone());
            async move {
                let path = format!("/api/v1/admin/variants/{hot}/inventory/movements");
                let body = json!({"quantity": 2, "kind": "received", "location_id": location});
                let moved = app.post(&path, body, &[("authorization", &auth)]).await;
                assert_eq!(moved.status, 201, "{}", moved.text);
            }
        };
        let mut locations = vec!["loc_default".to_owned()];
        for code in ["north", "south"] {
            let location = app.post("/api/v1/admin/locations", json!({"code": code, "name": code}), &[("authorization", &auth)]).await;
            assert_eq!(location.status, 201, "{}", location.text);
            locations.push(location.body["id"].as_str().unwrap().to_owned());
            receive(locations[locations.len() - 1].clone()).await;
        }
        for round in 0..6 {
            let mut carts = Vec::new();
            for _ in 0..3 {
                let cart = new_cart(&app).await;
                assert_eq!(add(&app, &cart, &hot, 2).await.status, 200);
                ready(&app, &cart, address("DE", "", "80331"), "Standard").await;
                carts.push(cart);
            }
            let buyers = carts.into_iter().enumerate().map(|(n, cart)| {
                let app = app.clone();
                tokio::spawn(async move { place(&app, &cart, &format!("round-{round}-buyer-{n}"), CARD).await.status })
            });
            let mut statuses = Vec::new();
            for buyer in buyers.collect::<Vec<_>>() {
                statuses.push(buyer.await.unwrap());
            }
            assert_eq!(statuses, [201, 201, 201], "round {round}");
            assert_eq!(available(&app, &hot).await, 0);
            let levels = app.count(&format!("SELECT COUNT(*) FROM inventory_levels WHERE variant_id = '{hot}' AND on_hand = 0 AND reserved = 0")).await;
            assert_eq!(levels, 3, "every location sold its 2");
            // Stock back for the next round.
            for location in &locations {
                receive(location.clone()).await;
            }
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 18);
        assert_eq!(app.count("SELECT COUNT(*) FROM inventory_reservations WHERE status = 'active'").await, 0);
    }

    async fn one_key_sent_twenty_times_at_once_makes_one_order(backend) {
        let app = Arc::new(TestApp::spawn(backend).await);
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1200}]), "standard", 50).await;
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 2).await;
        ready(&app, &cart, address("DE", "", "80331"), "Standard").await;
        let mut attempts = Vec::new();
        for _ in 0..20 {
            let (app, cart) = (app.clone(), cart.clone());
            attempts.push(tokio::spawn(async move {
                let resp = place(&app, &cart, "same-key", CARD).await;
                (resp.status, resp.body["id"].clone())
            }));
        }
        let mut ids = Vec::new();
        for attempt in attempts {
            let (status, id) = attempt.await.unwrap();
            assert!(status == 201 || status == 409, "{status}");
            if status == 201 {
                ids.push(id);
            }
        }
        assert!(!ids.is_empty());
        assert!(ids.iter().all(|id| *id == ids[0]), "every success is the same order");
        assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 1);
        assert_eq!(available(&app, &mug).await, 48);
        let after = place(&app, &cart, "same-key", CARD).await;
        assert_eq!(after.body["id"], ids[0]);
    }

    async fn a_guest_cart_joins_the_customer_s_at_sign_in(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1200}]), "standard", 10).await;
        let pin = product(&app, &auth, "Pin", json!([{"currency": "EUR", "amount": 300}]), "standard", 10).await;
        app.post("/api/v1/store/customers", json!({"email": "ana@example.com", "password": "correct horse battery"}), &[]).await;
        let session = app.post("/api/v1/store/auth/sessions", json!({"email": "ana@example.com", "password": "correct horse battery"}), &[]).await;
        let bearer = format!("Bearer {}", session.body["token"].as_str().unwrap());
        let theirs = app.post("/api/v1/store/carts", json!({}), &[("authorization", &bearer)]).await;
        assert_eq!(theirs.body["email"], "ana@example.com");
        let theirs = theirs.body["id"].as_str().unwrap().to_owned();
        app.post(&format!("/api/v1/store/carts/{theirs}/lines"), json!({"variant_id": mug, "quantity": 1}), &[("authorization", &bearer)]).await;
        let guest = new_cart(&app).await;
        add(&app, &guest, &mug, 2).await;
        add(&app, &guest, &pin, 1).await;
        let merged = app.post(&format!("/api/v1/store/carts/{guest}/claim"), json!({}), &[("authorization", &bearer)]).await;
        assert_eq!(merged.status, 200, "{}", merged.text);
        assert_eq!(merged.body["id"], theirs.as_str());
        let quantities: Vec<i64> = merged.body["lines"].as_array().unwrap().iter().map(|l| l["quantity"].as_i64().unwrap()).collect();
        assert_eq!(quantities, [3, 1]);
        assert_eq!(app.get(&format!("/api/v1/store/carts/{guest}"), &[]).await.status, 404, "the guest cart ends");
        let mine = app.get("/api/v1/store/customers/me/cart", &[("authorization", &bearer)]).await;
        assert_eq!(mine.body["id"], theirs.as_str());
        assert_eq!(app.get(&format!("/api/v1/store/carts/{theirs}"), &[]).await.status, 404, "nobody else opens it");
    }
}

conformance! {
    async fn a_checkout_that_stopped_half_way_frees_its_cart_and_stock(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1200}]), "standard", 2).await;
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 2).await;
        ready(&app, &cart, address("DE", "", "80331"), "Standard").await;
        // What a process killed between holding and placing leaves: the cart taken by an
        // attempt whose time is up, its stock reserved, its payment pending.
        let held = app
            .post(
                "/api/v1/admin/inventory/reservations",
                json!({"variant_id": mug, "quantity": 2, "ttl_secs": 900, "reference": cart}),
                &[("authorization", &auth)],
            )
            .await;
        assert_eq!(held.status, 201, "{}", held.text);
        let reservation = held.body["id"].as_str().unwrap();
        app.execute(&format!("UPDATE carts SET checkout_key = 'lost', checkout_until = 1 WHERE id = '{cart}'")).await;
        app.execute(&format!(
            "INSERT INTO payments (id, cart_id, provider, status, currency, amount, reservations, created_at, updated_at) \
             VALUES ('pay_lost', '{cart}', 'test', 'pending', 'EUR', 2890, '[\"{reservation}\"]', 1, 1)"
        ))
        .await;
        assert_eq!(available(&app, &mug).await, 0);
        let placed = place(&app, &cart, "after-restart", CARD).await;
        assert_eq!(placed.status, 201, "{}", placed.text);
        assert_eq!(available(&app, &mug).await, 0, "sold once, not held twice");
        let on_hand = app.count(&format!("SELECT on_hand FROM inventory_levels WHERE variant_id = '{mug}'")).await;
        assert_eq!(on_hand, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM payments WHERE id = 'pay_lost' AND status = 'voided'").await, 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM inventory_reservations WHERE status = 'active'").await, 0);
    }

    async fn a_signed_in_customer_s_order_is_theirs(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1200}]), "standard", 5).await;
        app.post("/api/v1/store/customers", json!({"email": "ana@example.com", "password": "correct horse battery"}), &[]).await;
        let session = app.post("/api/v1/store/auth/sessions", json!({"email": "ana@example.com", "password": "correct horse battery"}), &[]).await;
        let bearer = format!("Bearer {}", session.body["token"].as_str().unwrap());
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 1).await;
        ready(&app, &cart, address("DE", "", "80331"), "Standard").await;
        let placed = app
            .post(
                &format!("/api/v1/store/carts/{cart}/complete"),
                json!({"payment": {"provider": "test", "card_number": CARD}}),
                &[("idempotency-key", "k"), ("authorization", &bearer)],
            )
            .await;
        assert_eq!(placed.status, 201, "{}", placed.text);
        let mine = app.get("/api/v1/store/customers/me/orders", &[("authorization", &bearer)]).await;
        assert_eq!(mine.body["data"][0]["id"], placed.body["id"]);
        assert_eq!(mine.body["data"][0]["number"], 1001);
    }
}

async fn promotion(app: &TestApp, auth: &str, body: Value) -> Value {
    let created = app.post("/api/v1/admin/promotions", body, &[("authorization", auth)]).await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body
}

async fn enter(app: &TestApp, cart: &str, code: &str) -> common::Resp {
    app.post(&format!("/api/v1/store/carts/{cart}/codes"), json!({"code": code}), &[]).await
}

conformance! {
    async fn codes_take_off_what_they_promise_and_say_why_not(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1200}]), "standard", 50).await;
        let book = product(&app, &auth, "Book", json!([{"currency": "EUR", "amount": 2000}]), "reduced", 50).await;
        promotion(&app, &auth, json!({"code": "take10", "name": "10% off", "kind": "percentage", "value": 1000, "combinable": true})).await;
        promotion(&app, &auth, json!({"code": "SHIPFREE", "name": "Free shipping", "kind": "free_shipping", "combinable": true,
            "conditions": {"min_subtotal": {"EUR": 3000}}})).await;
        promotion(&app, &auth, json!({"code": "OLD", "name": "Last year", "kind": "percentage", "value": 5000,
            "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2021-01-01T00:00:00Z"})).await;
        let bad = app.post("/api/v1/admin/promotions", json!({"name": "x", "kind": "fixed", "value": 500}), &[("authorization", &auth)]).await;
        assert_eq!(bad.error_fields(), ["currency"]);
        let taken = app.post("/api/v1/admin/promotions", json!({"code": "TAKE10", "name": "again", "kind": "percentage", "value": 5}), &[("authorization", &auth)]).await;
        assert_eq!(taken.status, 409);

        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 1).await;
        add(&app, &cart, &book, 1).await;
        ready(&app, &cart, address("DE", "", "80331"), "Standard").await;
        let unknown = enter(&app, &cart, "NOPE").await;
        assert_eq!(unknown.problem(422, "validation_failed")["errors"][0]["code"], "unknown");
        let old = enter(&app, &cart, "old").await;
        assert_eq!(old.problem(422, "validation_failed")["errors"][0]["code"], "not_applicable");
        assert!(old.text.contains("expired"), "{}", old.text);

        let ten = enter(&app, &cart, " take10 ").await;
        assert_eq!(ten.status, 200, "{}", ten.text);
        assert_eq!(ten.body["codes"], json!(["TAKE10"]));
        // 10% of 12.00 and 20.00, each line taxed after its discount: 10.80 at 19%, 18.00 at 7%.
        assert_eq!(ten.body["lines"][0]["discount"], 120);
        assert_eq!(ten.body["lines"][1]["discount"], 200);
        assert_eq!(ten.body["lines"][0]["tax"], 1080 - 908);
        assert_eq!(ten.body["lines"][1]["tax"], 1800 - 1682);
        assert_eq!(ten.body["totals"]["discount_total"], 320);
        assert_eq!(ten.body["totals"]["total"], 2880 + 490);
        let both = enter(&app, &cart, "SHIPFREE").await;
        assert_eq!(both.body["totals"]["shipping_discount"], 490, "the goods' 32.00 reach the minimum");
        assert_eq!(both.body["totals"]["total"], 2880);
        let names: Vec<&str> = both.body["discounts"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["10% off", "Free shipping"]);

        let placed = place(&app, &cart, "promo", CARD).await;
        assert_eq!(placed.status, 201, "{}", placed.text);
        assert_eq!(placed.body["totals"]["total"], 2880);
        assert_eq!(placed.body["lines"][0]["discount"], 120);
        assert_eq!(placed.body["discounts"].as_array().unwrap().len(), 2);
        assert_eq!(app.count("SELECT CAST(SUM(times_used) AS BIGINT) FROM promotions").await, 2);

        // Below the minimum, the free shipping code says so and gives nothing.
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 1).await;
        let short = enter(&app, &cart, "shipfree").await;
        assert!(short.text.contains("min subtotal"), "{}", short.text);
    }

    async fn automatic_promotions_stack_or_stand_alone(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1000}]), "standard", 50).await;
        promotion(&app, &auth, json!({"name": "Buy 2 get 1", "kind": "buy_x_get_y", "value": 10000, "buy_quantity": 2, "get_quantity": 1})).await;
        promotion(&app, &auth, json!({"code": "FIVE", "name": "5 euros", "kind": "fixed", "value": 500, "currency": "EUR"})).await;
        let cart = new_cart(&app).await;
        let three = add(&app, &cart, &mug, 3).await;
        assert_eq!(three.body["totals"]["discount_total"], 1000, "the third mug is free without a code");
        let code = enter(&app, &cart, "FIVE").await;
        assert_eq!(code.problem(422, "validation_failed")["errors"][0]["code"], "not_applicable", "10.00 off beats 5.00 off");
        let line = three.body["lines"][0]["id"].as_str().unwrap();
        let two = app.patch(&format!("/api/v1/store/carts/{cart}/lines/{line}"), json!({"quantity": 2}), &[]).await;
        assert_eq!(two.body["totals"]["discount_total"], 0);
        let five = enter(&app, &cart, "FIVE").await;
        assert_eq!(five.body["totals"]["discount_total"], 500);
    }

    async fn automatic_promotions_end_when_used_up_or_stopped(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1000}]), "standard", 10).await;
        promotion(&app, &auth, json!({"name": "First buyer", "kind": "percentage", "value": 1000, "usage_limit": 1})).await;
        let first = new_cart(&app).await;
        assert_eq!(add(&app, &first, &mug, 1).await.body["totals"]["discount_total"], 100);
        let waiting = new_cart(&app).await;
        assert_eq!(add(&app, &waiting, &mug, 1).await.body["totals"]["discount_total"], 100);
        ready(&app, &first, address("FR", "", "75001"), "Standard").await;
        let placed = place(&app, &first, "k1", CARD).await;
        assert_eq!(placed.status, 201, "{}", placed.text);
        assert_eq!(placed.body["totals"]["discount_total"], 100);
        let after = app.get(&format!("/api/v1/store/carts/{waiting}"), &[]).await;
        assert_eq!(after.body["totals"]["discount_total"], 0, "a promotion used up leaves every cart at once");
        assert_eq!(after.body["discounts"], json!([]));

        let summer = promotion(&app, &auth, json!({"name": "Summer", "kind": "percentage", "value": 2000})).await;
        let seen = app.get(&format!("/api/v1/store/carts/{waiting}"), &[]).await;
        assert_eq!(seen.body["totals"]["discount_total"], 200, "a new promotion reaches carts at once");
        let path = format!("/api/v1/admin/promotions/{}", summer["id"].as_str().unwrap());
        let stopped = app.patch(&path, json!({"active": false}), &[("authorization", &auth)]).await;
        assert_eq!(stopped.status, 200, "{}", stopped.text);
        let seen = app.get(&format!("/api/v1/store/carts/{waiting}"), &[]).await;
        assert_eq!(seen.body["totals"]["discount_total"], 0, "and leaves them when staff stop it");
    }

    async fn a_sale_that_takes_stock_below_its_threshold_says_so(backend) {
        let receiver = WebhookReceiver::start().await;
        let app = TestApp::spawn_with(backend, |config| config.webhooks.allow_loopback = true).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        let hook = app
            .post("/api/v1/admin/webhooks", json!({"url": receiver.url("erp", 204), "event_types": ["inventory.low"]}), &[("authorization", &auth)])
            .await;
        receiver.set_secrets("erp", &[hook.body["secret"].as_str().unwrap()]);
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1000}]), "standard", 8).await;
        let plate = product(&app, &auth, "Plate", json!([{"currency": "EUR", "amount": 1500}]), "standard", 50).await;
        app.execute("UPDATE product_variants SET low_stock_threshold = 5").await;
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 3).await;
        add(&app, &cart, &plate, 2).await;
        ready(&app, &cart, address("FR", "", "75001"), "Standard").await;
        assert_eq!(place(&app, &cart, "k1", CARD).await.status, 201);
        let low = receiver.wait_for("erp", 1, Duration::from_secs(10)).await;
        assert_eq!(low.len(), 1, "only the mug went from above 5 to 5 or fewer");
        assert_eq!(low[0].body["data"]["variant_id"], mug.as_str());
        assert_eq!(low[0].body["data"]["on_hand"], 5);
        assert_eq!(low[0].body["data"]["available"], 5);
        let movements = app.count("SELECT COUNT(*) FROM inventory_movements WHERE kind = 'sold'").await;
        assert_eq!(movements, 2, "one sold movement a line");
        assert_eq!(available(&app, &mug).await, 5);
        assert_eq!(available(&app, &plate).await, 48);
    }

    async fn a_code_limited_to_five_uses_is_used_five_times_under_fifty_buyers(backend) {
        let app = Arc::new(TestApp::spawn(backend).await);
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1000}]), "standard", 100).await;
        promotion(&app, &auth, json!({"code": "FIRST5", "name": "First five", "kind": "percentage", "value": 5000, "usage_limit": 5})).await;
        let mut carts = Vec::new();
        for _ in 0..50 {
            let cart = new_cart(&app).await;
            add(&app, &cart, &mug, 1).await;
            ready(&app, &cart, address("DE", "", "80331"), "Standard").await;
            assert_eq!(enter(&app, &cart, "FIRST5").await.status, 200);
            carts.push(cart);
        }
        let mut buyers = Vec::new();
        for (n, cart) in carts.into_iter().enumerate() {
            let app = app.clone();
            buyers.push(tokio::spawn(async move { place(&app, &cart, &format!("b{n}"), CARD).await }));
        }
        let mut placed = 0;
        for buyer in buyers {
            let resp = buyer.await.unwrap();
            match resp.status {
                201 => {
                    assert_eq!(resp.body["totals"]["discount_total"], 500);
                    placed += 1;
                }
                409 => {}
                other => panic!("{other}: {}", resp.text),
            }
        }
        assert_eq!(placed, 5);
        assert_eq!(app.count("SELECT times_used FROM promotions").await, 5);
        assert_eq!(app.count("SELECT COUNT(*) FROM promotion_usages").await, 5);
        assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 5);
        assert_eq!(available(&app, &mug).await, 95, "refused checkouts sold nothing");
    }

    async fn a_code_once_per_customer(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1000}]), "standard", 100).await;
        promotion(&app, &auth, json!({"code": "WELCOME", "name": "Welcome", "kind": "percentage", "value": 1500, "per_customer_limit": 1})).await;
        let first = new_cart(&app).await;
        add(&app, &first, &mug, 1).await;
        ready(&app, &first, address("DE", "", "80331"), "Standard").await;
        enter(&app, &first, "WELCOME").await;
        assert_eq!(place(&app, &first, "w1", CARD).await.status, 201);
        let second = new_cart(&app).await;
        add(&app, &second, &mug, 1).await;
        ready(&app, &second, address("DE", "", "80331"), "Standard").await;
        let again = enter(&app, &second, "WELCOME").await;
        assert!(again.text.contains("limit reached"), "{}", again.text);
    }
}

conformance! {
    async fn orders_are_fulfilled_shipped_delivered_refunded_and_returned(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        let headers = [("authorization", auth.as_str())];
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1000}]), "standard", 10).await;
        let pin = product(&app, &auth, "Pin", json!([{"currency": "EUR", "amount": 300}]), "standard", 10).await;
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 3).await;
        add(&app, &cart, &pin, 1).await;
        ready(&app, &cart, address("FR", "", "75001"), "Standard").await;
        let order = place(&app, &cart, "k", CARD).await.body;
        let id = order["id"].as_str().unwrap().to_owned();
        let mug_line = order["lines"][0]["id"].as_str().unwrap().to_owned();
        let pin_line = order["lines"][1]["id"].as_str().unwrap().to_owned();
        let path = |tail: &str| format!("/api/v1/admin/orders/{id}{tail}");

        let too_many = app.post(&path("/fulfillments"), json!({"lines": [{"line_id": mug_line, "quantity": 4}]}), &headers).await;
        assert_eq!(too_many.error_fields(), ["lines[0].quantity"]);
        let first = app.post(&path("/fulfillments"), json!({"lines": [{"line_id": mug_line, "quantity": 2}]}), &headers).await;
        assert_eq!(first.status, 200, "{}", first.text);
        assert_eq!(first.body["status"], "partially_fulfilled");
        assert_eq!(first.body["fulfillments"][0]["location_id"], "loc_default");
        let rest = app.post(&path("/fulfillments"), json!({}), &headers).await;
        assert_eq!(rest.body["status"], "fulfilled");
        assert_eq!(rest.body["fulfillments"][1]["lines"], json!([{"line_id": mug_line, "quantity": 1}, {"line_id": pin_line, "quantity": 1}]));
        let nothing = app.post(&path("/fulfillments"), json!({}), &headers).await;
        assert_eq!(nothing.status, 409);

        let parcels: Vec<String> = rest.body["fulfillments"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_owned()).collect();
        let ship = |parcel: &str| path(&format!("/fulfillments/{parcel}/ship"));
        let bad = app.post(&ship(&parcels[0]), json!({"carrier": "", "tracking_number": "1", "tracking_url": "javascript:alert(1)"}), &headers).await;
        let mut fields = bad.error_fields();
        fields.sort();
        assert_eq!(fields, ["carrier", "tracking_url"]);
        let one = app.post(&ship(&parcels[0]), json!({"carrier": "La Poste", "tracking_number": "LP123", "tracking_url": "https://track.example/LP123"}), &headers).await;
        assert_eq!(one.body["status"], "fulfilled", "one parcel of two has left");
        let two = app.post(&ship(&parcels[1]), json!({"carrier": "La Poste", "tracking_number": "LP124"}), &headers).await;
        assert_eq!(two.body["status"], "shipped");
        let emails = app.wait_for_emails(3).await;
        let shipped = emails.iter().find(|e| e.header("Subject").unwrap().contains("on its way")).expect("a shipping email");
        assert!(shipped.text.contains("https://track.example/LP123"), "{}", shipped.text);
        for parcel in &parcels {
            app.post(&path(&format!("/fulfillments/{parcel}/deliver")), json!({}), &headers).await;
        }
        assert_eq!(app.get(&path(""), &headers).await.body["status"], "delivered");

        // Paid: 3 × 10.00 + 3.00 + 4.90 shipping = 37.90.
        let over = app.post(&path("/refunds"), json!({"amount": 3791}), &headers).await;
        assert_eq!(over.problem(422, "validation_failed")["errors"][0]["code"], "too_much");
        let one_mug = app.post(&path("/refunds"), json!({"lines": [{"line_id": mug_line, "quantity": 1}], "reason": "chipped"}), &headers).await;
        assert_eq!(one_mug.status, 200, "{}", one_mug.text);
        assert_eq!(one_mug.body["status"], "partially_refunded");
        assert_eq!(one_mug.body["refunded_total"], 1000);
        assert_eq!(one_mug.body["payments"][0]["status"], "partially_refunded");
        let returned = app.post(&path("/returns"), json!({"lines": [{"line_id": mug_line, "quantity": 2}], "restock": true}), &headers).await;
        assert_eq!(returned.body["status"], "returned", "{}", returned.text);
        assert_eq!(available(&app, &mug).await, 7 + 2);
        // The two mugs went back to stock with the return: refunding them cannot put them back
        // again, and changes nothing.
        let twice = app.post(&path("/refunds"), json!({"lines": [{"line_id": mug_line, "quantity": 2}], "restock": true}), &headers).await;
        let refused = twice.problem(422, "validation_failed");
        assert_eq!((refused["errors"][0]["field"].as_str(), refused["errors"][0]["code"].as_str()), (Some("restock"), Some("already_restocked")));
        assert_eq!(available(&app, &mug).await, 7 + 2);
        let unchanged = app.get(&path(""), &headers).await.body;
        assert_eq!((unchanged["refunded_total"].as_i64(), unchanged["refunds"].as_array().map(Vec::len)), (Some(1000), Some(1)));
        let rest = app
            .post(&path("/refunds"), json!({"lines": [{"line_id": mug_line, "quantity": 2}, {"line_id": pin_line, "quantity": 1}], "shipping": true}), &headers)
            .await;
        assert_eq!(rest.body["status"], "refunded", "{}", rest.text);
        assert_eq!(rest.body["refunded_total"], 3790);
        assert_eq!(rest.body["paid_total"], 3790);
        let again = app.post(&path("/refunds"), json!({"amount": 1}), &headers).await;
        assert_eq!(again.status, 409, "nothing is left to refund");
        let refund_emails = app.wait_for_emails(5).await.into_iter().filter(|e| e.header("Subject").unwrap().contains("refund")).count();
        assert_eq!(refund_emails, 2);
        let timeline = app.get(&path(""), &headers).await.body["timeline"].clone();
        let statuses: Vec<&str> = timeline.as_array().unwrap().iter().filter_map(|e| e["to_status"].as_str()).collect();
        assert_eq!(statuses, ["paid", "partially_fulfilled", "fulfilled", "shipped", "delivered", "partially_refunded", "returned", "refunded"]);
    }

    async fn authorised_payments_are_captured_at_fulfilment(backend) {
        let app = TestApp::spawn_with(backend, |config| config.checkout.capture = backroom::platform::config::CaptureMode::Fulfilment).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1000}]), "standard", 10).await;
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 1).await;
        ready(&app, &cart, address("FR", "", "75001"), "Standard").await;
        let order = place(&app, &cart, "k", CARD).await.body;
        assert_eq!(order["status"], "authorized");
        assert_eq!(order["paid_total"], 0);
        let id = order["id"].as_str().unwrap();
        let refund = app.post(&format!("/api/v1/admin/orders/{id}/refunds"), json!({"amount": 100}), &[("authorization", &auth)]).await;
        assert_eq!(refund.status, 409, "an authorisation is cancelled, not refunded");
        let fulfilled = app.post(&format!("/api/v1/admin/orders/{id}/fulfillments"), json!({}), &[("authorization", &auth)]).await;
        assert_eq!(fulfilled.body["status"], "fulfilled", "{}", fulfilled.text);
        assert_eq!(fulfilled.body["paid_total"], 1490);
        assert_eq!(fulfilled.body["payments"][0]["status"], "captured");
    }
}

const WEBHOOK_SECRET: &str = "whsec_backroom_test";

async fn stripe_shop(backend: common::Backend, stripe: &common::StripeDouble) -> TestApp {
    let base = stripe.url();
    TestApp::spawn_with(backend, |config| {
        config.checkout.providers.push("stripe".into());
        config.checkout.stripe.api_base = base;
        config.checkout.stripe.secret_key = Some("sk_test_backroom".to_owned().into());
        config.checkout.stripe.webhook_secret = Some(WEBHOOK_SECRET.to_owned().into());
    })
    .await
}

async fn pay_with_stripe(app: &TestApp, cart: &str, key: &str, method: &str) -> common::Resp {
    app.post(
        &format!("/api/v1/store/carts/{cart}/complete"),
        json!({"payment": {"provider": "stripe", "payment_method": method, "return_url": "https://shop.example/back"}}),
        &[("idempotency-key", key)],
    )
    .await
}

/// The payment intent's id, from the 3-D Secure address a 202 sends the shopper to.
fn intent_of(waiting: &Value) -> String {
    waiting["redirect_url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()
}

conformance! {
    async fn stripe_payments_succeed_decline_and_wait_for_the_shopper(backend) {
        let stripe = common::StripeDouble::start().await;
        let app = stripe_shop(backend, &stripe).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1200}]), "standard", 10).await;

        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 2).await;
        ready(&app, &cart, address("FR", "", "75001"), "Standard").await;
        let card = app
            .post(&format!("/api/v1/store/carts/{cart}/complete"), json!({"payment": {"provider": "stripe", "card_number": CARD}}), &[("idempotency-key", "c")])
            .await;
        assert_eq!(card.error_fields(), ["payment.payment_method"], "card numbers never reach the server");
        let declined = pay_with_stripe(&app, &cart, "s1", "pm_card_chargeDeclined").await;
        assert_eq!(declined.problem(402, "payment_declined")["errors"][0]["message"], "generic_decline");
        assert_eq!(available(&app, &mug).await, 10);
        let paid = pay_with_stripe(&app, &cart, "s2", "pm_card_visa").await;
        assert_eq!(paid.status, 201, "{}", paid.text);
        assert_eq!(paid.body["status"], "paid");
        assert_eq!(available(&app, &mug).await, 8);
        let payment_id = paid.body["payments"][0]["id"].as_str().unwrap();
        let sent: Vec<Value> = stripe.requests().into_iter().filter(|r| r["method"] == "POST").collect();
        let keys: Vec<&str> = sent.iter().filter_map(|r| r["headers"]["idempotency-key"].as_str()).collect();
        assert_eq!(sent.len(), keys.len(), "every request to Stripe carries an Idempotency-Key");
        assert!(keys.contains(&payment_id), "{keys:?}");
        let created = sent.iter().rev().find(|r| r["path"] == "/v1/payment_intents").unwrap();
        assert_eq!(created["params"]["amount"], "2890");
        assert_eq!(created["params"]["currency"], "eur");

        // Refunds go through Stripe.
        let order = paid.body["id"].as_str().unwrap();
        let refund = app.post(&format!("/api/v1/admin/orders/{order}/refunds"), json!({"amount": 500}), &[("authorization", &auth)]).await;
        assert_eq!(refund.status, 200, "{}", refund.text);
        let state = stripe.state().await;
        let refunds = state["refunds"].as_object().map(|r| r.len()).or_else(|| state["refunds"].as_array().map(Vec::len));
        assert_eq!(refunds, Some(1), "{state}");

        // 3-D Secure: the shopper is sent away, comes back, and the same key places the order.
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 1).await;
        ready(&app, &cart, address("FR", "", "75001"), "Standard").await;
        let waiting = pay_with_stripe(&app, &cart, "3ds", "pm_card_threeDSecure2Required").await;
        assert_eq!(waiting.status, 202, "{}", waiting.text);
        assert_eq!(waiting.body["status"], "requires_action");
        assert_eq!(available(&app, &mug).await, 7, "the stock stays held while the shopper authenticates");
        let still = pay_with_stripe(&app, &cart, "3ds", "pm_card_threeDSecure2Required").await;
        assert_eq!(still.status, 202);
        let other_key = pay_with_stripe(&app, &cart, "other", "pm_card_visa").await;
        assert_eq!(other_key.status, 409, "the cart is taken by the payment that waits");
        stripe.control(&format!("/_test/3ds/{}", intent_of(&waiting.body)), &[("outcome", "succeed")]).await;
        let back = pay_with_stripe(&app, &cart, "3ds", "pm_card_threeDSecure2Required").await;
        assert_eq!(back.status, 201, "{}", back.text);
        assert_eq!(back.body["status"], "paid");
        assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 2);
    }

    async fn a_refund_the_provider_never_answered_is_finished_later_and_once(backend) {
        let stripe = common::StripeDouble::start().await;
        let base = stripe.url();
        let app = TestApp::spawn_with(backend, |config| {
            config.checkout.providers.push("stripe".into());
            config.checkout.stripe.api_base = base;
            config.checkout.stripe.secret_key = Some("sk_test_backroom".to_owned().into());
            config.checkout.payment_timeout_secs = 1;
        })
        .await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1200}]), "standard", 10).await;
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 2).await;
        ready(&app, &cart, address("FR", "", "75001"), "Standard").await;
        let paid = pay_with_stripe(&app, &cart, "k", "pm_card_visa").await;
        assert_eq!(paid.status, 201, "{}", paid.text);
        let order = paid.body["id"].as_str().unwrap().to_owned();
        let line = paid.body["lines"][0]["id"].as_str().unwrap().to_owned();
        let path = format!("/api/v1/admin/orders/{order}");
        let headers = [("authorization", auth.as_str())];
        app.wait_for_emails(1).await;

        // Stripe takes the request and never answers: the refund may have been made, so it
        // stays pending, its money set aside, and is not asked again at once.
        stripe.control("/_test/fail", &[("mode", "hang"), ("count", "1")]).await;
        let body = json!({"lines": [{"line_id": line, "quantity": 1}], "restock": true, "reason": "chipped"});
        let unanswered = app.post(&format!("{path}/refunds"), body, &headers).await;
        assert_eq!(unanswered.status, 202, "{}", unanswered.text);
        assert_eq!(unanswered.body["refunds"][0]["status"], "pending");
        assert_eq!(unanswered.body["refunded_total"], 0);
        assert_eq!(unanswered.body["payments"][0]["refunded_amount"], 1200, "set aside");
        let refund_id = unanswered.body["refunds"][0]["id"].as_str().unwrap().to_owned();
        let more = app.post(&format!("{path}/refunds"), json!({"amount": 2890 - 1200 + 1}), &headers).await;
        assert_eq!(more.problem(422, "validation_failed")["errors"][0]["code"], "too_much", "what is set aside is not refunded twice");
        assert_eq!(backroom::orders::aftercare::finish_pending_refunds(&app.state).await.unwrap(), 0, "not before the provider's time is up");
        assert_eq!(available(&app, &mug).await, 8);

        // Later, the cleanup job asks again with the same key, and settles it as asked.
        app.execute("UPDATE order_refunds SET created_at = 0").await;
        assert_eq!(backroom::orders::aftercare::finish_pending_refunds(&app.state).await.unwrap(), 1);
        assert_eq!(backroom::orders::aftercare::finish_pending_refunds(&app.state).await.unwrap(), 0, "once");
        let settled = app.get(&path, &headers).await.body;
        assert_eq!(settled["refunds"][0]["status"], "succeeded");
        assert_eq!(settled["refunded_total"], 1200);
        assert_eq!(settled["status"], "partially_refunded");
        assert_eq!(settled["payments"][0]["refunded_amount"], 1200);
        assert_eq!(available(&app, &mug).await, 9, "restocked as asked");
        let emails = app.wait_for_emails(2).await;
        assert!(emails.iter().any(|e| e.header("Subject").unwrap().contains("refund")), "the customer is told");
        let keys: Vec<Value> = stripe
            .requests()
            .into_iter()
            .filter(|r| r["method"] == "POST" && r["path"] == "/v1/refunds")
            .map(|r| r["headers"]["idempotency-key"].clone())
            .collect();
        assert_eq!(keys, [json!(refund_id), json!(refund_id)], "asked twice, with one key");
        let state = stripe.state().await;
        let refunds = state["refunds"].as_object().map(|r| r.len()).or_else(|| state["refunds"].as_array().map(Vec::len));
        assert_eq!(refunds, Some(1), "refunded once: {state}");
    }

    async fn the_stripe_webhook_finishes_orders_once_whatever_the_order_of_events(backend) {
        let stripe = common::StripeDouble::start().await;
        let app = stripe_shop(backend, &stripe).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1200}]), "standard", 10).await;
        let hook = app.url("/api/v1/payments/stripe/webhook");
        let send = |kind: &'static str, intent: String, event: Option<&'static str>, signature: &'static str| {
            let (hook, stripe) = (hook.clone(), &stripe);
            async move {
                let mut form = vec![("url", hook.as_str()), ("secret", WEBHOOK_SECRET), ("type", kind), ("object_id", intent.as_str())];
                if let Some(event) = event {
                    form.push(("event_id", event));
                }
                if !signature.is_empty() {
                    form.push(("signature", signature));
                }
                stripe.control("/_test/webhook", &form).await
            }
        };

        // The shopper authenticates but never comes back: the webhook places the order.
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 2).await;
        ready(&app, &cart, address("FR", "", "75001"), "Standard").await;
        let waiting = pay_with_stripe(&app, &cart, "gone", "pm_card_threeDSecure2Required").await;
        let intent = intent_of(&waiting.body);
        let bad = send("payment_intent.succeeded", intent.clone(), None, "bad").await;
        assert_eq!(bad["status"], 400, "a bad signature is refused");
        let stale = send("payment_intent.payment_failed", intent.clone(), Some("evt_stale_failure"), "").await;
        assert_eq!(stale["status"], 200);
        assert_eq!(available(&app, &mug).await, 8, "an event is not trusted: the intent still waits");
        stripe.control(&format!("/_test/3ds/{intent}"), &[("outcome", "succeed")]).await;
        let first = send("payment_intent.succeeded", intent.clone(), Some("evt_success"), "").await;
        assert_eq!(first["status"], 200, "{first}");
        assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 1);
        let again = send("payment_intent.succeeded", intent.clone(), Some("evt_success"), "").await;
        assert_eq!(again["status"], 200);
        let late = send("payment_intent.payment_failed", intent.clone(), Some("evt_late_failure"), "").await;
        assert_eq!(late["status"], 200);
        assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 1, "duplicated and reordered events make one order");
        assert_eq!(app.count("SELECT COUNT(*) FROM orders WHERE status = 'paid'").await, 1);
        assert_eq!(available(&app, &mug).await, 8);
        let back = pay_with_stripe(&app, &cart, "gone", "pm_card_threeDSecure2Required").await;
        assert_eq!(back.status, 201, "the shopper's late return answers the same order: {}", back.text);

        // Authentication fails: the webhook gives the stock back and frees the cart.
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 3).await;
        ready(&app, &cart, address("FR", "", "75001"), "Standard").await;
        let waiting = pay_with_stripe(&app, &cart, "fails", "pm_card_threeDSecure2Required").await;
        let intent = intent_of(&waiting.body);
        assert_eq!(available(&app, &mug).await, 5);
        stripe.control(&format!("/_test/3ds/{intent}"), &[("outcome", "fail")]).await;
        send("payment_intent.payment_failed", intent, None, "").await;
        assert_eq!(available(&app, &mug).await, 8);
        let retry = pay_with_stripe(&app, &cart, "retry", "pm_card_visa").await;
        assert_eq!(retry.status, 201, "{}", retry.text);

        // Stripe's own library signs what the endpoint accepts, and nothing else.
        let payload = r#"{"id": "evt_lib", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}"#;
        let header = common::stripe_signature(payload, WEBHOOK_SECRET);
        let post = |body: &'static str, header: String| {
            let client = app.client.clone();
            let hook = hook.clone();
            async move {
                client.post(&hook).header("stripe-signature", header).header("content-type", "application/json").body(body).send().await.unwrap().status().as_u16()
            }
        };
        assert_eq!(post(payload, header.clone()).await, 200);
        let tampered = r#"{"id": "evt_lib", "type": "customer.created", "data": {"object": {"id": "cus_2"}}}"#;
        assert_eq!(post(tampered, header).await, 400);
        assert_eq!(post(payload, common::stripe_signature(payload, "whsec_someone_else")).await, 400);
    }
}

conformance! {
    async fn the_test_gateway_asks_for_3_d_secure(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1200}]), "standard", 5).await;
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 1).await;
        ready(&app, &cart, address("FR", "", "75001"), "Standard").await;
        let waiting = place(&app, &cart, "3ds", "4000002500003155").await;
        assert_eq!(waiting.status, 202, "{}", waiting.text);
        let page = waiting.body["redirect_url"].as_str().unwrap().to_owned();
        assert_eq!(place(&app, &cart, "3ds", "4000002500003155").await.status, 202);
        let failed = app.post(&page, json!({"succeed": false}), &[]).await;
        assert_eq!(failed.status, 204);
        let refused = place(&app, &cart, "3ds", "4000002500003155").await;
        assert_eq!(refused.problem(402, "payment_declined")["errors"][0]["message"], "authentication_failed");
        assert_eq!(available(&app, &mug).await, 5);
        let again = place(&app, &cart, "3ds-2", "4000002500003155").await;
        let page = again.body["redirect_url"].as_str().unwrap().to_owned();
        app.post(&page, json!({"succeed": true}), &[]).await;
        let placed = place(&app, &cart, "3ds-2", "4000002500003155").await;
        assert_eq!(placed.status, 201, "{}", placed.text);
        assert_eq!(placed.body["status"], "paid");
        assert_eq!(app.post(&page, json!({"succeed": true}), &[]).await.status, 404, "answered once");
    }
}

conformance! {
    async fn money_goes_back_once_and_only_what_left_comes_back(backend) {
        let app = Arc::new(TestApp::spawn(backend).await);
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1000}]), "standard", 10).await;
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 2).await;
        ready(&app, &cart, address("FR", "", "75001"), "Standard").await;
        let order = place(&app, &cart, "k", CARD).await.body;
        let id = order["id"].as_str().unwrap().to_owned();
        let early = app.post(&format!("/api/v1/admin/orders/{id}/returns"), json!({}), &[("authorization", &auth)]).await;
        assert_eq!(early.status, 409, "nothing shipped, nothing comes back: {}", early.text);
        let mut refunds = Vec::new();
        for _ in 0..4 {
            let (app, auth, id) = (app.clone(), auth.clone(), id.clone());
            refunds.push(tokio::spawn(async move {
                app.post(&format!("/api/v1/admin/orders/{id}/refunds"), json!({"amount": 2490}), &[("authorization", &auth)])
                    .await
                    .status
            }));
        }
        let mut statuses = Vec::new();
        for refund in refunds {
            statuses.push(refund.await.unwrap());
        }
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
        assert!(statuses.iter().all(|s| [200, 409, 422].contains(s)), "{statuses:?}");
        let after = app.get(&format!("/api/v1/admin/orders/{id}"), &[("authorization", &auth)]).await;
        assert_eq!(after.body["refunded_total"], 2490);
        assert_eq!(after.body["payments"][0]["refunded_amount"], 2490);
    }

    async fn abandoned_checkouts_give_back_stock_and_codes(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1000}]), "standard", 3).await;
        promotion(&app, &auth, json!({"code": "ONCE", "name": "Once", "kind": "percentage", "value": 1000, "usage_limit": 1})).await;
        let cart = new_cart(&app).await;
        add(&app, &cart, &mug, 3).await;
        ready(&app, &cart, address("FR", "", "75001"), "Standard").await;
        enter(&app, &cart, "ONCE").await;
        let waiting = place(&app, &cart, "3ds", "4000002500003155").await;
        assert_eq!(waiting.status, 202);
        assert_eq!(available(&app, &mug).await, 0);
        assert_eq!(app.count("SELECT times_used FROM promotions").await, 1);
        // The shopper never comes back; the hold runs out.
        app.execute("UPDATE payments SET created_at = 0").await;
        app.execute("UPDATE carts SET checkout_until = 1").await;
        assert_eq!(backroom::checkout::place::release_stale(&app.state).await.unwrap(), 1);
        assert_eq!(available(&app, &mug).await, 3);
        assert_eq!(app.count("SELECT times_used FROM promotions").await, 0, "the code's use is given back");
        assert_eq!(app.count("SELECT COUNT(*) FROM promotion_usages").await, 0);
        let other = new_cart(&app).await;
        add(&app, &other, &mug, 1).await;
        assert_eq!(enter(&app, &other, "ONCE").await.status, 200, "and can be used by someone else");
    }
}

conformance! {
    async fn many_shoppers_at_once_never_exhaust_the_pool(backend) {
        // The harness gives the app four connections: no cart change may hold one while it
        // waits for another.
        let app = Arc::new(TestApp::spawn(backend).await);
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1000}]), "standard", 1000).await;
        let mut carts = Vec::new();
        for _ in 0..24 {
            carts.push(new_cart(&app).await);
        }
        let mut shoppers = Vec::new();
        for cart in carts {
            let (app, mug) = (app.clone(), mug.clone());
            shoppers.push(tokio::spawn(async move {
                let added = add(&app, &cart, &mug, 1).await.status;
                let line = app.get(&format!("/api/v1/store/carts/{cart}"), &[]).await.body["lines"][0]["id"].clone();
                let changed = app
                    .patch(&format!("/api/v1/store/carts/{cart}/lines/{}", line.as_str().unwrap_or_default()), json!({"quantity": 2}), &[])
                    .await
                    .status;
                let addressed = app
                    .patch(&format!("/api/v1/store/carts/{cart}"), json!({"shipping_address": address("FR", "", "75001")}), &[])
                    .await
                    .status;
                (added, changed, addressed)
            }));
        }
        for shopper in shoppers {
            assert_eq!(shopper.await.unwrap(), (200, 200, 200), "a 503 is a connection the pool could not give");
        }
    }
}

conformance! {
    async fn shoppers_who_hang_up_mid_request_leave_the_shop_writable(backend) {
        let app = Arc::new(TestApp::spawn(backend).await);
        let auth = app.staff("admin@example.com", Role::Admin).await;
        shop(&app, &auth).await;
        let mug = product(&app, &auth, "Mug", json!([{"currency": "EUR", "amount": 1000}]), "standard", 100_000).await;
        let mut carts = Vec::new();
        for _ in 0..16 {
            carts.push(new_cart(&app).await);
        }
        for burst in 0..4u64 {
            let mut hang_ups = tokio::task::JoinSet::new();
            for (n, cart) in carts.iter().cycle().take(64).enumerate() {
                let url = app.url(&format!("/api/v1/store/carts/{cart}/lines"));
                let body = json!({"variant_id": mug, "quantity": 1});
                let patience = std::time::Duration::from_millis(1 + (n as u64 + burst) % 9);
                hang_ups.spawn(async move {
                    let client = reqwest::Client::builder().timeout(patience).build().unwrap();
                    let _ = client.post(url).json(&body).send().await;
                });
            }
            hang_ups.join_all().await;
        }
        // Every write still goes through.
        let cart = new_cart(&app).await;
        let added = add(&app, &cart, &mug, 1).await;
        assert_eq!(added.status, 200, "{}", added.text);
        let lines = app.count("SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM cart_lines").await;
        assert!(lines >= 1);
    }
}
