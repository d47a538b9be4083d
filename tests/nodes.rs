//! Several nodes on one PostgreSQL database: what one node revokes or changes holds on the
//! others at once, although each caches sessions and customers in memory.

mod common;

use std::time::Duration;

use backroom::accounts::roles::Role;
use backroom::accounts::staff::{NewStaff, create_staff};
use common::{Backend, TestApp};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

/// Retries `check` for up to two seconds: a change reaches other nodes by notification.
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..40 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_out_on_one_node_ends_the_session_on_every_node() {
    if !common::postgres_available().await {
        return;
    }
    let a = TestApp::spawn(Backend::Postgres).await;
    let b = a.spawn_peer().await;
    let resp = a.post("/api/v1/store/customers", json!({"email": "ana@example.com", "password": PASSWORD}), &[]).await;
    assert_eq!(resp.status, 202);
    let signed =
        b.post("/api/v1/store/auth/sessions", json!({"email": "ana@example.com", "password": PASSWORD}), &[]).await;
    let auth = format!("Bearer {}", signed.body["token"].as_str().unwrap());
    // Both nodes now hold the session in their caches.
    assert_eq!(a.get("/api/v1/store/customers/me", &[("authorization", &auth)]).await.status, 200);
    assert_eq!(b.get("/api/v1/store/customers/me", &[("authorization", &auth)]).await.status, 200);

    let renamed =
        a.patch("/api/v1/store/customers/me", json!({"first_name": "Anna"}), &[("authorization", &auth)]).await;
    assert_eq!(renamed.status, 200);
    assert!(
        eventually(|| async {
            b.get("/api/v1/store/customers/me", &[("authorization", &auth)]).await.body["first_name"] == "Anna"
        })
        .await,
        "the other node serves the new profile"
    );

    assert_eq!(a.delete("/api/v1/store/auth/session", &[("authorization", &auth)]).await.status, 204);
    assert!(
        eventually(|| async { b.get("/api/v1/store/customers/me", &[("authorization", &auth)]).await.status == 401 })
            .await,
        "the other node refuses the ended session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_on_one_node_applies_on_every_node() {
    if !common::postgres_available().await {
        return;
    }
    let a = TestApp::spawn(Backend::Postgres).await;
    let b = a.spawn_peer().await;
    create_staff(
        &a.state.db,
        NewStaff { email: "owner@example.com", password: PASSWORD, name: "", role: Role::Owner },
        None,
    )
    .await
    .unwrap();
    let clerk = create_staff(
        &a.state.db,
        NewStaff { email: "clerk@example.com", password: PASSWORD, name: "", role: Role::Admin },
        None,
    )
    .await
    .unwrap();
    let sign_in = |email: &'static str| {
        let a = &a;
        async move {
            let resp = a.post("/api/v1/admin/auth/sessions", json!({"email": email, "password": PASSWORD}), &[]).await;
            format!("Bearer {}", resp.body["token"].as_str().unwrap())
        }
    };
    let owner = sign_in("owner@example.com").await;
    let clerk_token = sign_in("clerk@example.com").await;
    assert_eq!(b.get("/api/v1/admin/audit-log", &[("authorization", &clerk_token)]).await.status, 200);

    let demoted = a
        .patch(&format!("/api/v1/admin/staff/{}", clerk.id), json!({"role": "staff"}), &[("authorization", &owner)])
        .await;
    assert_eq!(demoted.status, 200);
    assert!(
        eventually(|| async {
            b.get("/api/v1/admin/audit-log", &[("authorization", &clerk_token)]).await.status == 403
        })
        .await,
        "the other node applies the new role"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_change_on_one_node_reaches_every_nodes_storefront() {
    if !common::postgres_available().await {
        return;
    }
    let a = TestApp::spawn(Backend::Postgres).await;
    let b = a.spawn_peer().await;
    let auth = a.staff("admin@example.com", Role::Admin).await;
    let product = json!({"title": "Lamp", "status": "published", "variants": [{"prices": [{"currency": "EUR", "amount": 4900}]}]});
    let created = a.post("/api/v1/admin/products", product, &[("authorization", &auth)]).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    // Node B caches the product's page.
    assert_eq!(b.get("/api/v1/store/products/lamp", &[]).await.body["title"], "Lamp");
    let renamed = a
        .patch(&format!("/api/v1/admin/products/{id}"), json!({"title": "Desk lamp"}), &[("authorization", &auth)])
        .await;
    assert_eq!(renamed.status, 200);
    assert!(
        eventually(|| async { b.get("/api/v1/store/products/lamp", &[]).await.body["title"] == "Desk lamp" }).await
    );
    // Stock moves reach it too: availability is part of the page.
    let variant = created.body["variants"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(b.get("/api/v1/store/products/lamp", &[]).await.body["variants"][0]["availability"], "out_of_stock");
    let moved = a
        .post(
            &format!("/api/v1/admin/variants/{variant}/inventory/movements"),
            json!({"quantity": 50, "kind": "received"}),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(moved.status, 201);
    assert!(
        eventually(|| async {
            b.get("/api/v1/store/products/lamp", &[]).await.body["variants"][0]["availability"] == "in_stock"
        })
        .await
    );
}
