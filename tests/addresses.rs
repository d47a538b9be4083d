//! A customer's address book through the store API, on both databases: addresses checked as
//! checkout checks them, one default, at most 20, and no one else's.

mod common;

use common::TestApp;
use serde_json::{Value, json};

/// A registered customer's bearer header.
async fn customer(app: &TestApp, email: &str) -> String {
    let registered = app
        .post(
            "/api/v1/store/customers",
            json!({"email": email, "password": "a long enough passphrase", "first_name": "Ana"}),
            &[],
        )
        .await;
    assert_eq!(registered.status, 202, "{}", registered.text);
    let session = app
        .post("/api/v1/store/auth/sessions", json!({"email": email, "password": "a long enough passphrase"}), &[])
        .await;
    assert_eq!(session.status, 201, "{}", session.text);
    format!("Bearer {}", session.body["token"].as_str().unwrap())
}

fn paris(line1: &str) -> Value {
    json!({"first_name": "Ana", "last_name": "Silva", "line1": line1, "city": "Paris", "postcode": "75001", "country": "fr"})
}

conformance! {
    async fn customers_keep_an_address_book_with_one_default(backend) {
        let app = TestApp::spawn(backend).await;
        let ana = customer(&app, "ana@example.com").await;
        let h = [("authorization", ana.as_str())];
        let list = |auth: String| {
            let app = &app;
            async move { app.get("/api/v1/store/customers/me/addresses", &[("authorization", &auth)]).await }
        };
        assert_eq!(list(ana.clone()).await.body, json!([]));
        app.get("/api/v1/store/customers/me/addresses", &[]).await.problem(401, "unauthenticated");

        let home = app.post("/api/v1/store/customers/me/addresses", json!({"address": paris("1 Rue de Rivoli")}), &h).await;
        assert_eq!(home.status, 201, "{}", home.text);
        assert!(home.body["id"].as_str().unwrap().starts_with("adr_"));
        assert_eq!(home.body["is_default"], true, "the first address is the default");
        assert_eq!(home.body["address"]["country"], "FR", "normalised as checkout does");

        let wrong = app
            .post("/api/v1/store/customers/me/addresses", json!({"address": {"last_name": "Silva", "line1": "1 Rue", "city": "Paris", "postcode": "ABC", "country": "FR"}}), &h)
            .await;
        assert_eq!(wrong.problem(422, "validation_failed")["errors"][0]["field"], "address.postcode");
        assert_eq!(list(ana.clone()).await.body.as_array().unwrap().len(), 1, "nothing saved");

        let work = app.post("/api/v1/store/customers/me/addresses", json!({"address": paris("2 Rue du Louvre"), "is_default": true}), &h).await;
        assert_eq!(work.status, 201);
        let all = list(ana.clone()).await.body;
        assert_eq!(all[0]["id"], work.body["id"], "the default first");
        assert_eq!(all[0]["is_default"], true);
        assert_eq!(all[1]["is_default"], false, "one default only");

        // Someone else's address is not there for them.
        let ben = customer(&app, "ben@example.com").await;
        let home_id = home.body["id"].as_str().unwrap().to_owned();
        app.delete(&format!("/api/v1/store/customers/me/addresses/{home_id}"), &[("authorization", &ben)]).await.problem(404, "not_found");
        let stolen = app.put(&format!("/api/v1/store/customers/me/addresses/{home_id}"), json!({"address": paris("3 Rue")}), &[("authorization", &ben)]).await;
        stolen.problem(404, "not_found");
        assert_eq!(list(ben.clone()).await.body, json!([]));

        let moved = app.put(&format!("/api/v1/store/customers/me/addresses/{home_id}"), json!({"address": paris("5 Rue de Rivoli"), "is_default": true}), &h).await;
        assert_eq!(moved.status, 200, "{}", moved.text);
        assert_eq!(moved.body["address"]["line1"], "5 Rue de Rivoli");
        let all = list(ana.clone()).await.body;
        assert_eq!((all[0]["id"].as_str(), all[1]["is_default"].as_bool()), (Some(home_id.as_str()), Some(false)));

        // Removing the default makes the oldest one left the default.
        assert_eq!(app.delete(&format!("/api/v1/store/customers/me/addresses/{home_id}"), &h).await.status, 204);
        let all = list(ana.clone()).await.body;
        assert_eq!(all.as_array().unwrap().len(), 1);
        assert_eq!(all[0]["is_default"], true);

        for n in 0..19 {
            let added = app.post("/api/v1/store/customers/me/addresses", json!({"address": paris(&format!("{n} Rue Neuve"))}), &h).await;
            assert_eq!(added.status, 201);
        }
        let full = app.post("/api/v1/store/customers/me/addresses", json!({"address": paris("21 Rue Neuve")}), &h).await;
        full.problem(409, "conflict");
        assert_eq!(list(ana).await.body.as_array().unwrap().len(), 20);
    }
}
