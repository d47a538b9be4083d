//! Products in and out as CSV through the admin API, on both databases: a good file
//! creates what it says, the same file again changes nothing, a bad file is refused row by
//! row and writes nothing, and a partial file changes only its columns.

mod common;

use std::time::Duration;

use backroom::accounts::roles::Role;
use common::{TestApp, WebhookReceiver};
use serde_json::{Value, json};

const GOOD: &str = "\
handle,title,description,status,vendor,tags,categories,option1_name,option1_value,sku,weight_grams,inventory,price_EUR,compare_at_price_EUR,price_USD
field-jacket,Field Jacket,\"Waxed **cotton**, lined.\",published,North & Co,\"outerwear, waxed\",coats,Size,M,FJ-M,1200,4,18900,21900,20900
field-jacket,,,,,,,,L,FJ-L,1300,0,18900,,20900
wool-beanie,Wool Beanie,Warm.,draft,,,,,,WB-1,,10,2500,,
";

async fn import(app: &TestApp, auth: &str, csv: &str, query: &str) -> Value {
    let started = app
        .post_raw(&format!("/api/v1/admin/imports/products{query}"), "text/csv", csv, &[("authorization", auth)])
        .await;
    assert_eq!(started.status, 202, "{}", started.text);
    let location = started.header("location").unwrap().to_owned();
    for _ in 0..200 {
        let read = app.get(&location, &[("authorization", auth)]).await;
        if read.body["status"] == "succeeded" || read.body["status"] == "failed" {
            return read.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the import did not finish");
}

conformance! {
    async fn product_files_import_once_refuse_bad_rows_and_change_only_their_columns(backend) {
        let receiver = WebhookReceiver::start().await;
        let app = TestApp::spawn_with(backend, |config| config.webhooks.allow_loopback = true).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        app.post("/api/v1/admin/categories", json!({"name": "Coats"}), &[("authorization", &auth)]).await;
        let hook = app
            .post("/api/v1/admin/webhooks", json!({"url": receiver.url("erp", 204), "event_types": ["product.*"]}), &[("authorization", &auth)])
            .await;
        receiver.set_secrets("erp", &[hook.body["secret"].as_str().unwrap()]);

        let done = import(&app, &auth, GOOD, "").await;
        let report = &done["report"];
        assert_eq!(report["errors"], json!([]), "{done}");
        assert_eq!((report["created"].as_u64(), report["rows"].as_u64(), report["written"].as_bool()), (Some(2), Some(3), Some(true)));
        let jacket = app.get("/api/v1/store/products/field-jacket", &[]).await;
        assert_eq!(jacket.status, 200, "{}", jacket.text);
        assert_eq!(jacket.body["categories"], json!(["coats"]));
        assert_eq!(jacket.body["tags"], json!(["outerwear", "waxed"]));
        assert!(jacket.body["description_html"].as_str().unwrap().contains("<strong>cotton</strong>"));
        assert_eq!(jacket.body["variants"][0]["prices"], json!([
            {"currency": "EUR", "amount": 18900, "compare_at_amount": 21900},
            {"currency": "USD", "amount": 20900, "compare_at_amount": null}
        ]));
        assert_eq!(jacket.body["variants"][0]["availability"], "low_stock");
        assert_eq!(jacket.body["variants"][1]["availability"], "out_of_stock");
        assert_eq!(app.get("/api/v1/store/products/wool-beanie", &[]).await.status, 404, "drafts stay hidden");
        let received = receiver.wait_for("erp", 2, Duration::from_secs(10)).await;
        assert!(received.iter().all(|r| r.body["type"] == "product.created" && r.verified == vec![true]));
        let jacket_event = received.iter().find(|r| r.body["data"]["handle"] == "field-jacket").expect("the jacket's event");
        assert_eq!(jacket_event.body["data"]["variants"][0]["sku"], "FJ-M");
        let versions = app.count("SELECT CAST(SUM(version) AS BIGINT) FROM products").await;
        let movements = app.count("SELECT COUNT(*) FROM inventory_movements").await;

        // The same file again changes nothing.
        let again = import(&app, &auth, GOOD, "").await;
        assert_eq!(again["report"]["unchanged"], 2, "{again}");
        assert_eq!(app.count("SELECT CAST(SUM(version) AS BIGINT) FROM products").await, versions);
        assert_eq!(app.count("SELECT COUNT(*) FROM inventory_movements").await, movements);

        // A bad file: every bad cell named by row and column, and nothing written.
        let bad = "\
handle,title,option1_name,option1_value,sku,price_EUR,categories,colour
shirt,Shirt,Size,M,SH-M,abc,nowhere,red
shirt,,,,FJ-M,100,,
,No Handle,,,,,,
";
        // A header that is not the layout is refused at once.
        let refused = app.post_raw("/api/v1/admin/imports/products", "text/csv", bad, &[("authorization", &auth)]).await;
        let error = &refused.problem(422, "validation_failed")["errors"][0];
        assert_eq!((error["field"].as_str(), error["message"].as_str()), (Some("body.colour"), Some("row 1: is not a column of the product layout")));
        let bad = bad.replace(",colour", "").replace(",red", "").replace(",,\n,No", ",\n,No").replace(",,\n", "\n");
        let refused = import(&app, &auth, &bad, "").await;
        let errors: Vec<(u64, String)> = refused["report"]["errors"].as_array().unwrap().iter()
            .map(|e| (e["row"].as_u64().unwrap(), e["column"].as_str().unwrap().to_owned())).collect();
        assert!(errors.contains(&(2, "price_EUR".into())), "{errors:?}");
        assert!(errors.contains(&(2, "categories".into())), "{errors:?}");
        assert!(errors.contains(&(3, "sku".into())), "the SKU is the jacket's: {errors:?}");
        assert!(errors.contains(&(3, "option1_value".into())), "{errors:?}");
        assert!(errors.contains(&(4, "handle".into())), "{errors:?}");
        assert_eq!(refused["report"]["written"], false);
        assert_eq!(app.count("SELECT COUNT(*) FROM products").await, 2);

        // With skip_invalid, good products go in and bad ones are reported.
        let mixed = format!("{GOOD}hat,Hat,,published,,,,,,HAT-1,,,900,,\nbroken,,,,,,,,,BR-1,,,-5,,\n");
        let partly = import(&app, &auth, &mixed, "?skip_invalid=true").await;
        assert_eq!((partly["report"]["created"].as_u64(), partly["report"]["skipped"].as_u64()), (Some(1), Some(1)), "{partly}");
        assert_eq!(app.get("/api/v1/store/products/hat", &[]).await.status, 200);

        // A dry run counts and writes nothing.
        let dry = import(&app, &auth, "handle,title,sku,price_EUR\nscarf,Scarf,SC-1,1500\n", "?dry_run=true").await;
        assert_eq!((dry["report"]["created"].as_u64(), dry["report"]["written"].as_bool()), (Some(1), Some(false)), "{dry}");
        assert_eq!(app.count("SELECT COUNT(*) FROM products WHERE handle = 'scarf'").await, 0);

        // A file of prices alone changes prices alone.
        let prices = import(&app, &auth, "handle,sku,price_EUR\nfield-jacket,FJ-L,17900\n", "").await;
        assert_eq!(prices["report"]["updated"], 1, "{prices}");
        let jacket = app.get("/api/v1/store/products/field-jacket", &[]).await.body;
        assert_eq!(jacket["variants"][1]["prices"], json!([
            {"currency": "EUR", "amount": 17900, "compare_at_amount": null},
            {"currency": "USD", "amount": 20900, "compare_at_amount": null}
        ]));
        assert_eq!(jacket["title"], "Field Jacket");
        assert_eq!(jacket["variants"][1]["weight_grams"], 1300);
        assert_eq!(jacket["categories"], json!(["coats"]));
        let received = receiver.wait_for("erp", 4, Duration::from_secs(10)).await;
        assert_eq!(received.iter().filter(|r| r.body["type"] == "product.updated").count(), 1, "only the price file changed a product");

        // A variant without a SKU, changed by a file without option columns, keeps what the
        // file does not speak of.
        let tote = json!({"title": "Tote", "handle": "tote", "status": "published", "variants": [{"weight_grams": 300, "barcode": "4006381333931",
            "prices": [{"currency": "EUR", "amount": 900}, {"currency": "USD", "amount": 1000}]}]});
        assert_eq!(app.post("/api/v1/admin/products", tote, &[("authorization", &auth)]).await.status, 201);
        let renamed = import(&app, &auth, "handle,title,price_EUR\ntote,Tote Bag,950\n", "").await;
        assert_eq!(renamed["report"]["updated"], 1, "{renamed}");
        let tote = app.get("/api/v1/store/products/tote", &[]).await.body;
        assert_eq!((tote["title"].as_str(), tote["variants"].as_array().unwrap().len()), (Some("Tote Bag"), 1));
        assert_eq!(tote["variants"][0]["weight_grams"], 300);
        assert_eq!(tote["variants"][0]["prices"], json!([
            {"currency": "EUR", "amount": 950, "compare_at_amount": null},
            {"currency": "USD", "amount": 1000, "compare_at_amount": null}
        ]));

        app.post_raw("/api/v1/admin/imports/products", "application/json", "{}", &[("authorization", &auth)]).await.problem(415, "unsupported_media_type");
    }
}
