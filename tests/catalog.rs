//! The catalog through the admin and store APIs, on both databases: products with options,
//! variants and prices; handles; validation and conflicts that write nothing; edits under
//! `If-Match`; what shoppers see of drafts and published products; `product.*` events.

mod common;

use std::time::Duration;

use backroom::accounts::roles::Role;
use common::{TestApp, WebhookReceiver};
use serde_json::{Value, json};

fn tee(sku_prefix: &str) -> Value {
    json!({
        "title": "Cotton Tee",
        "description": "**Soft** cotton. [more](javascript:alert(1))\n\n<script>alert(1)</script>",
        "vendor": "Backroom Basics",
        "product_type": "T-shirt",
        "tags": ["Summer", "cotton", "summer"],
        "options": [{"name": "Size", "values": ["S", "M"]}, {"name": "Color", "values": ["Red"]}],
        "variants": [
            {"sku": format!("{sku_prefix}-S"), "options": {"Size": "S", "Color": "Red"}, "weight_grams": 180,
             "prices": [{"currency": "EUR", "amount": 1990, "compare_at_amount": 2490}, {"currency": "USD", "amount": 2190}]},
            {"sku": format!("{sku_prefix}-M"), "options": {"Size": "M", "Color": "Red"},
             "prices": [{"currency": "EUR", "amount": 1990}]}
        ],
        "metadata": {"erp_id": 42}
    })
}

conformance! {
    async fn staff_create_products_and_shoppers_see_them_once_published(backend) {
        let receiver = WebhookReceiver::start().await;
        let app = TestApp::spawn_with(backend, |config| config.webhooks.allow_loopback = true).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        let hook = app
            .post("/api/v1/admin/webhooks", json!({"url": receiver.url("erp", 204), "event_types": ["product.*"]}), &[("authorization", &auth)])
            .await;
        receiver.set_secrets("erp", &[hook.body["secret"].as_str().unwrap()]);

        let created = app.post("/api/v1/admin/products", tee("TEE"), &[("authorization", &auth)]).await;
        assert_eq!(created.status, 201, "{}", created.text);
        let product = &created.body;
        let id = product["id"].as_str().unwrap().to_owned();
        assert_eq!(product["handle"], "cotton-tee");
        assert_eq!(product["status"], "draft");
        assert_eq!(product["tags"], json!(["Summer", "cotton"]));
        let html = product["description_html"].as_str().unwrap();
        assert!(html.contains("<strong>Soft</strong>") && !html.contains("<script") && html.contains("href=\"#\""), "{html}");
        assert_eq!(product["variants"].as_array().unwrap().len(), 2);
        assert_eq!(product["variants"][0]["prices"][0], json!({"currency": "EUR", "amount": 1990, "compare_at_amount": 2490}));
        assert_eq!(product["variants"][0]["options"], json!({"Color": "Red", "Size": "S"}));
        assert_eq!(created.header("etag"), Some("\"v1\""));

        // The same title again gets a handle of its own.
        let again = app.post("/api/v1/admin/products", tee("TEE2"), &[("authorization", &auth)]).await;
        assert_eq!(again.body["handle"], "cotton-tee-2");

        // Drafts are invisible to shoppers.
        app.get("/api/v1/store/products/cotton-tee", &[]).await.problem(404, "not_found");
        assert_eq!(app.get("/api/v1/store/products", &[]).await.body["data"], json!([]));

        // Publishing under If-Match; a stale version is refused.
        let read = app.get(&format!("/api/v1/admin/products/{id}"), &[("authorization", &auth)]).await;
        assert_eq!(read.body, created.body);
        let etag = read.header("etag").unwrap().to_owned();
        let published = app
            .patch(&format!("/api/v1/admin/products/{id}"), json!({"status": "published", "seo_title": "Cotton tee"}), &[("authorization", &auth), ("if-match", &etag)])
            .await;
        assert_eq!(published.status, 200, "{}", published.text);
        assert!(published.body["published_at"].is_string());
        assert_eq!(published.body["variants"], created.body["variants"]);
        let stale = app.patch(&format!("/api/v1/admin/products/{id}"), json!({"title": "Lost"}), &[("authorization", &auth), ("if-match", &etag)]).await;
        stale.problem(412, "precondition_failed");

        let shown = app.get("/api/v1/store/products/cotton-tee", &[]).await;
        assert_eq!(shown.status, 200, "{}", shown.text);
        assert_eq!(shown.body["variants"][1]["sku"], "TEE-M");
        assert_eq!(shown.body["seo_title"], "Cotton tee");
        assert!(shown.body.get("metadata").is_none() && shown.body.get("description").is_none());
        let list = app.get("/api/v1/store/products", &[]).await;
        assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
        app.get("/api/v1/store/products?after=anything", &[]).await.problem(422, "validation_failed");
        assert_eq!(list.body["data"][0]["handle"], "cotton-tee");

        // Each change reached the subscribed endpoint, signed.
        let received = receiver.wait_for("erp", 3, Duration::from_secs(10)).await;
        let types: Vec<&str> = received.iter().map(|r| r.body["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["product.created", "product.created", "product.updated"]);
        assert!(received.iter().all(|r| r.verified == vec![true]));
        assert_eq!(received[2].body["data"]["status"], "published");

        let deleted = app.delete(&format!("/api/v1/admin/products/{id}"), &[("authorization", &auth)]).await;
        assert_eq!(deleted.status, 204);
        app.get("/api/v1/store/products/cotton-tee", &[]).await.problem(404, "not_found");
        assert_eq!(app.count(&format!("SELECT COUNT(*) FROM product_variants WHERE product_id = '{id}'")).await, 0);
        let received = receiver.wait_for("erp", 4, Duration::from_secs(10)).await;
        assert_eq!(received[3].body["type"], "product.deleted");
    }

    async fn bad_products_and_conflicts_write_nothing(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        assert_eq!(app.post("/api/v1/admin/products", tee("TEE"), &[("authorization", &auth)]).await.status, 201);

        let mut bad = tee("NEW");
        bad["title"] = json!("");
        bad["handle"] = json!("Bad Handle");
        bad["variants"][0]["prices"][0]["currency"] = json!("EURO");
        bad["variants"][0]["prices"][1]["amount"] = json!(-1);
        bad["variants"][1]["options"] = json!({"Size": "XL", "Color": "Red"});
        bad["metadata"] = json!([1]);
        let resp = app.post("/api/v1/admin/products", bad, &[("authorization", &auth)]).await;
        let mut fields = resp.error_fields();
        fields.sort();
        assert_eq!(
            fields,
            ["handle", "metadata", "title", "variants[0].prices[0].currency", "variants[0].prices[1].amount", "variants[1].options"],
            "{}", resp.text
        );
        let mut twins = tee("NEW");
        twins["variants"][1]["options"] = json!({"Size": "S", "Color": "Red"});
        twins["variants"][1]["sku"] = json!("NEW-S");
        let resp = app.post("/api/v1/admin/products", twins, &[("authorization", &auth)]).await;
        assert_eq!(resp.error_fields(), ["variants[1].options", "variants[1].sku"], "{}", resp.text);

        // A SKU another product has: 409 naming the variant, and no half-made product.
        let mut taken = tee("NEW");
        taken["variants"][1]["sku"] = json!("TEE-M");
        let resp = app.post("/api/v1/admin/products", taken, &[("authorization", &auth)]).await;
        assert_eq!(resp.problem(409, "conflict")["errors"][0]["field"], "variants[1].sku");
        let mut handle = tee("OTHER");
        handle["handle"] = json!("cotton-tee");
        let resp = app.post("/api/v1/admin/products", handle, &[("authorization", &auth)]).await;
        assert_eq!(resp.problem(409, "conflict")["errors"][0]["field"], "handle");
        assert_eq!(app.count("SELECT COUNT(*) FROM products").await, 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM product_variants").await, 2);

        // Staff read the catalog but do not change it.
        let staff = app.staff("staff@example.com", Role::Staff).await;
        assert_eq!(app.get("/api/v1/admin/products", &[("authorization", &staff)]).await.status, 200);
        app.post("/api/v1/admin/products", tee("X"), &[("authorization", &staff)]).await.problem(403, "forbidden");
        app.get("/api/v1/admin/products?status=gone", &[("authorization", &auth)]).await.problem(422, "validation_failed");
    }

    async fn shoppers_revalidate_with_etags(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        let mut product = tee("TEE");
        product["status"] = json!("published");
        let created = app.post("/api/v1/admin/products", product, &[("authorization", &auth)]).await;
        let id = created.body["id"].as_str().unwrap().to_owned();

        for path in ["/api/v1/store/products/cotton-tee", "/api/v1/store/products?limit=5"] {
            let first = app.get(path, &[]).await;
            assert_eq!(first.status, 200);
            let etag = first.header("etag").expect("an ETag").to_owned();
            assert_eq!(first.header("cache-control"), Some("no-cache"));
            let again = app.get(path, &[("if-none-match", &etag)]).await;
            assert_eq!((again.status, again.text.as_str()), (304, ""));
            assert_eq!(again.header("etag"), Some(etag.as_str()));
            let weak = format!("\"other\", W/{etag}");
            assert_eq!(app.get(path, &[("if-none-match", &weak)]).await.status, 304);
            assert_eq!(app.get(path, &[("if-none-match", "\"other\"")]).await.status, 200);
        }
        let before = app.get("/api/v1/store/products/cotton-tee", &[]).await;
        let etag = before.header("etag").unwrap().to_owned();
        let renamed = app.patch(&format!("/api/v1/admin/products/{id}"), json!({"title": "Linen Tee"}), &[("authorization", &auth)]).await;
        assert_eq!(renamed.status, 200);
        let after = app.get("/api/v1/store/products/cotton-tee", &[("if-none-match", &etag)]).await;
        assert_eq!(after.status, 200, "a change makes a new version");
        assert_eq!(after.body["title"], "Linen Tee");
        assert_ne!(after.header("etag"), Some(etag.as_str()));

        // A new handle: the old address answers 301 to the new one.
        let moved = app.patch(&format!("/api/v1/admin/products/{id}"), json!({"handle": "linen-tee"}), &[("authorization", &auth)]).await;
        assert_eq!(moved.status, 200, "{}", moved.text);
        let old = app.get("/api/v1/store/products/cotton-tee", &[]).await;
        assert_eq!(old.status, 301);
        assert_eq!(old.header("location"), Some("/api/v1/store/products/linen-tee"));
        assert_eq!(app.get("/api/v1/store/products/linen-tee", &[]).await.body["title"], "Linen Tee");
        // Taking the old handle back ends the redirect.
        assert_eq!(app.patch(&format!("/api/v1/admin/products/{id}"), json!({"handle": "cotton-tee"}), &[("authorization", &auth)]).await.status, 200);
        assert_eq!(app.get("/api/v1/store/products/cotton-tee", &[]).await.status, 200);
        assert_eq!(app.get("/api/v1/store/products/linen-tee", &[]).await.status, 301);
    }

    async fn staff_add_change_and_remove_variants(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        let product = json!({
            "title": "Sock", "status": "published",
            "options": [{"name": "Size", "values": ["S", "M", "L"]}],
            "variants": [
                {"sku": "SOCK-S", "options": {"Size": "S"}, "prices": [{"currency": "EUR", "amount": 500}]},
                {"sku": "SOCK-M", "options": {"Size": "M"}, "prices": [{"currency": "EUR", "amount": 500}]}
            ]
        });
        let created = app.post("/api/v1/admin/products", product, &[("authorization", &auth)]).await;
        let id = created.body["id"].as_str().unwrap().to_owned();
        let etag = created.header("etag").unwrap().to_owned();

        let large = json!({"sku": "SOCK-L", "options": {"Size": "L"}, "prices": [{"currency": "EUR", "amount": 600}]});
        let added = app.post(&format!("/api/v1/admin/products/{id}/variants"), large.clone(), &[("authorization", &auth), ("if-match", &etag)]).await;
        assert_eq!(added.status, 201, "{}", added.text);
        assert_eq!(added.body["variants"].as_array().unwrap().len(), 3);
        assert_eq!(added.body["version"], 2);
        let again = app.post(&format!("/api/v1/admin/products/{id}/variants"), large, &[("authorization", &auth)]).await;
        assert_eq!(again.error_fields(), ["options"]);
        let stale = json!({"sku": "X", "options": {"Size": "XL"}});
        let resp = app.post(&format!("/api/v1/admin/products/{id}/variants"), stale, &[("authorization", &auth), ("if-match", &etag)]).await;
        resp.problem(412, "precondition_failed");

        // Prices are replaced whole; a SKU another variant has is a 409 naming it.
        let small = created.body["variants"][0]["id"].as_str().unwrap().to_owned();
        let prices = json!({"prices": [{"currency": "USD", "amount": 650}, {"currency": "EUR", "amount": 450, "compare_at_amount": 500}], "barcode": "4006381333931"});
        let changed = app.patch(&format!("/api/v1/admin/variants/{small}"), prices, &[("authorization", &auth)]).await;
        assert_eq!(changed.status, 200, "{}", changed.text);
        assert_eq!(changed.body["variants"][0]["prices"], json!([
            {"currency": "EUR", "amount": 450, "compare_at_amount": 500},
            {"currency": "USD", "amount": 650, "compare_at_amount": null}
        ]));
        let shown = app.get("/api/v1/store/products/sock", &[]).await;
        assert_eq!(shown.body["variants"][0]["prices"][1]["amount"], 650);
        let taken = app.patch(&format!("/api/v1/admin/variants/{small}"), json!({"sku": "SOCK-M"}), &[("authorization", &auth)]).await;
        assert_eq!(taken.problem(409, "conflict")["errors"][0]["field"], "sku");
        let bad = app.patch(&format!("/api/v1/admin/variants/{small}"), json!({"prices": [{"currency": "EUR", "amount": -1}], "tax_class": "Bad Class"}), &[("authorization", &auth)]).await;
        assert_eq!(bad.error_fields(), ["tax_class", "prices[0].amount"]);

        // A variant goes unless it was sold; the last one stays.
        let medium = created.body["variants"][1]["id"].as_str().unwrap().to_owned();
        app.post(&format!("/api/v1/admin/variants/{medium}/inventory/movements"), json!({"quantity": 1, "kind": "received"}), &[("authorization", &auth)]).await;
        let held = app.post("/api/v1/admin/inventory/reservations", json!({"variant_id": medium, "quantity": 1}), &[("authorization", &auth)]).await;
        let held = held.body["id"].as_str().unwrap().to_owned();
        app.post(&format!("/api/v1/admin/inventory/reservations/{held}/commit"), json!({}), &[("authorization", &auth)]).await;
        app.delete(&format!("/api/v1/admin/variants/{medium}"), &[("authorization", &auth)]).await.problem(409, "conflict");
        let removed = app.delete(&format!("/api/v1/admin/variants/{small}"), &[("authorization", &auth)]).await;
        assert_eq!(removed.status, 200, "{}", removed.text);
        assert_eq!(removed.body["variants"].as_array().unwrap().len(), 2);
        assert_eq!(app.count(&format!("SELECT COUNT(*) FROM variant_prices WHERE variant_id = '{small}'")).await, 0);
        let last = app.get(&format!("/api/v1/admin/products/{id}"), &[("authorization", &auth)]).await;
        assert_eq!(last.body, removed.body);
    }

    async fn staff_change_many_products_at_once_or_none(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        let a = app.post("/api/v1/admin/products", tee("A"), &[("authorization", &auth)]).await.body;
        let b = app.post("/api/v1/admin/products", tee("B"), &[("authorization", &auth)]).await.body;
        let ids = [&a, &b].map(|p| p["id"].as_str().unwrap().to_owned());

        let published = app.post("/api/v1/admin/products/bulk", json!({"action": "publish", "product_ids": ids}), &[("authorization", &auth)]).await;
        assert_eq!(published.status, 200, "{}", published.text);
        assert_eq!(published.body["updated"], json!(ids));
        assert_eq!(app.get("/api/v1/store/products", &[]).await.body["total"], 2);
        // Already published: nothing to change.
        let again = app.post("/api/v1/admin/products/bulk", json!({"action": "publish", "product_ids": ids}), &[("authorization", &auth)]).await;
        assert_eq!(again.body["updated"], json!([]));

        // One unknown id and nothing is archived.
        let unknown = json!({"action": "archive", "product_ids": [ids[0], "prd_01JZZZZZZZZZZZZZZZZZZZZZZZ"]});
        let refused = app.post("/api/v1/admin/products/bulk", unknown, &[("authorization", &auth)]).await;
        assert_eq!(refused.problem(422, "validation_failed")["errors"][0]["field"], "product_ids[1]");
        assert_eq!(app.count("SELECT COUNT(*) FROM products WHERE status = 'published'").await, 2);

        // Prices from a list of SKUs: the listed currency changes, the others stay.
        let prices = json!({"action": "set_prices", "prices": [
            {"sku": "A-S", "currency": "EUR", "amount": 1500, "compare_at_amount": 1990},
            {"sku": "B-M", "currency": "GBP", "amount": 1700}
        ]});
        let priced = app.post("/api/v1/admin/products/bulk", prices, &[("authorization", &auth)]).await;
        assert_eq!(priced.status, 200, "{}", priced.text);
        let shown = app.get("/api/v1/store/products/cotton-tee", &[]).await.body;
        assert_eq!(shown["variants"][0]["prices"], json!([
            {"currency": "EUR", "amount": 1500, "compare_at_amount": 1990},
            {"currency": "USD", "amount": 2190, "compare_at_amount": null}
        ]));
        let b_m = app.get("/api/v1/store/products/cotton-tee-2", &[]).await.body;
        assert_eq!(b_m["variants"][1]["prices"][1], json!({"currency": "GBP", "amount": 1700, "compare_at_amount": null}));
        let bad = json!({"action": "set_prices", "prices": [
            {"sku": "A-M", "currency": "EUR", "amount": 100}, {"sku": "NOPE", "currency": "EUR", "amount": 100}
        ]});
        let refused = app.post("/api/v1/admin/products/bulk", bad, &[("authorization", &auth)]).await;
        assert_eq!(refused.problem(422, "validation_failed")["errors"][0]["field"], "prices[1].sku");
        assert_eq!(app.count("SELECT COUNT(*) FROM variant_prices WHERE amount = 100").await, 0);

        // Options change: a new option gives every variant its first value; a used value stays.
        let path = format!("/api/v1/admin/products/{}", ids[0]);
        let options = json!({"options": [
            {"name": "Size", "values": ["S", "M", "L"]}, {"name": "Color", "values": ["Red"]}, {"name": "Fit", "values": ["Regular", "Slim"]}
        ]});
        let refit = app.patch(&path, options, &[("authorization", &auth)]).await;
        assert_eq!(refit.status, 200, "{}", refit.text);
        assert_eq!(refit.body["variants"][0]["options"], json!({"Color": "Red", "Fit": "Regular", "Size": "S"}));
        let shown = app.get("/api/v1/store/products/cotton-tee", &[]).await.body;
        assert_eq!(shown["options"][2]["name"], "Fit");
        assert_eq!(shown["variants"][1]["options"]["Fit"], "Regular");
        let dropping = json!({"options": [{"name": "Size", "values": ["S"]}, {"name": "Color", "values": ["Red"]}]});
        let refused = app.patch(&path, dropping, &[("authorization", &auth)]).await;
        assert_eq!(refused.problem(422, "validation_failed")["errors"][0]["code"], "in_use");
        let merging = json!({"options": [{"name": "Color", "values": ["Red"]}]});
        let refused = app.patch(&path, merging, &[("authorization", &auth)]).await;
        assert_eq!(refused.problem(422, "validation_failed")["errors"][0]["code"], "ambiguous");
        assert_eq!(app.get(&path, &[("authorization", &auth)]).await.body["options"].as_array().unwrap().len(), 3);
    }
}
