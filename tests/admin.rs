//! Staff and integrations through the admin API, on both databases: roles and permissions,
//! staff management by owners, API keys and their scopes, the audit log, and the
//! `backroom admin create` command.

mod common;

use backroom::accounts::roles::Role;
use backroom::accounts::staff::{NewStaff, create_staff};
use common::TestApp;
use serde_json::json;

const PASSWORD: &str = "a long staff passphrase";

/// Creates a staff member the way `backroom admin create` does, and signs them in.
async fn staff_member(app: &TestApp, email: &str, role: Role) -> String {
    create_staff(&app.state.db, NewStaff { email, password: PASSWORD, name: "Sam", role }, None)
        .await
        .expect("created");
    staff_sign_in(app, email).await
}

async fn staff_sign_in(app: &TestApp, email: &str) -> String {
    let resp = app.post("/api/v1/admin/auth/sessions", json!({"email": email, "password": PASSWORD}), &[]).await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    format!("Bearer {}", resp.body["token"].as_str().unwrap())
}

conformance! {
    async fn staff_sign_in_and_see_their_permissions(backend) {
        let app = TestApp::spawn(backend).await;
        let owner = staff_member(&app, "owner@example.com", Role::Owner).await;
        let me = app.get("/api/v1/admin/me", &[("authorization", &owner)]).await;
        assert_eq!(me.status, 200, "{}", me.text);
        assert_eq!(me.body["staff"]["role"], "owner");
        let permissions = me.body["permissions"].as_array().unwrap();
        assert!(permissions.contains(&json!("staff:manage")));
        let clerk = staff_member(&app, "clerk@example.com", Role::Staff).await;
        let me = app.get("/api/v1/admin/me", &[("authorization", &clerk)]).await;
        assert!(!me.body["permissions"].as_array().unwrap().contains(&json!("staff:manage")));
        let out = app.delete("/api/v1/admin/auth/session", &[("authorization", &clerk)]).await;
        assert_eq!(out.status, 204);
        app.get("/api/v1/admin/me", &[("authorization", &clerk)]).await.problem(401, "unauthenticated");
    }

    async fn a_staff_token_does_not_open_the_store_account_api(backend) {
        let app = TestApp::spawn(backend).await;
        let owner = staff_member(&app, "owner@example.com", Role::Owner).await;
        app.get("/api/v1/store/customers/me", &[("authorization", &owner)]).await.problem(401, "unauthenticated");
    }

    async fn staff_without_a_permission_get_403_and_nothing_changes(backend) {
        let app = TestApp::spawn(backend).await;
        staff_member(&app, "owner@example.com", Role::Owner).await;
        let clerk = staff_member(&app, "clerk@example.com", Role::Staff).await;
        let admin = staff_member(&app, "admin@example.com", Role::Admin).await;
        let new = json!({"email": "new@example.com", "password": PASSWORD, "role": "owner"});
        app.post("/api/v1/admin/staff", new.clone(), &[("authorization", &clerk)]).await.problem(403, "forbidden");
        app.post("/api/v1/admin/staff", new, &[("authorization", &admin)]).await.problem(403, "forbidden");
        app.post("/api/v1/admin/api-keys", json!({"name": "x", "scopes": ["customers:read"]}), &[("authorization", &clerk)])
            .await
            .problem(403, "forbidden");
        app.get("/api/v1/admin/audit-log", &[("authorization", &clerk)]).await.problem(403, "forbidden");
        assert_eq!(app.count("SELECT COUNT(*) FROM staff_users").await, 3);
        assert_eq!(app.count("SELECT COUNT(*) FROM api_keys").await, 0);
        // What the role does grant works.
        assert_eq!(app.get("/api/v1/admin/customers", &[("authorization", &clerk)]).await.status, 200);
        assert_eq!(app.get("/api/v1/admin/staff", &[("authorization", &clerk)]).await.status, 200);
    }

    async fn an_owner_manages_staff_and_their_roles(backend) {
        let app = TestApp::spawn(backend).await;
        let owner = staff_member(&app, "owner@example.com", Role::Owner).await;
        let created = app
            .post("/api/v1/admin/staff", json!({"email": "Kim@Example.com", "password": PASSWORD, "name": "Kim", "role": "staff"}), &[("authorization", &owner)])
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(created.body["email"], "kim@example.com");
        let id = created.body["id"].as_str().unwrap().to_owned();
        assert_eq!(created.header("location"), Some(format!("/api/v1/admin/staff/{id}").as_str()));

        let duplicate = app
            .post("/api/v1/admin/staff", json!({"email": "kim@example.com", "password": PASSWORD, "role": "staff"}), &[("authorization", &owner)])
            .await;
        duplicate.problem(409, "conflict");
        assert_eq!(duplicate.error_fields(), ["email"]);

        let kim = staff_sign_in(&app, "kim@example.com").await;
        app.get("/api/v1/admin/audit-log", &[("authorization", &kim)]).await.problem(403, "forbidden");
        let read = app.get(&format!("/api/v1/admin/staff/{id}"), &[("authorization", &owner)]).await;
        let etag = read.header("etag").unwrap().to_owned();
        let promoted = app
            .patch(&format!("/api/v1/admin/staff/{id}"), json!({"role": "admin"}), &[("authorization", &owner), ("if-match", &etag)])
            .await;
        assert_eq!(promoted.status, 200, "{}", promoted.text);
        assert_eq!(promoted.body["role"], "admin");
        // The new role applies to Kim's existing session at once.
        assert_eq!(app.get("/api/v1/admin/audit-log", &[("authorization", &kim)]).await.status, 200);
        app.patch(&format!("/api/v1/admin/staff/{id}"), json!({"role": "staff"}), &[("authorization", &owner), ("if-match", &etag)])
            .await
            .problem(412, "precondition_failed");

        let disabled = app.patch(&format!("/api/v1/admin/staff/{id}"), json!({"disabled": true}), &[("authorization", &owner)]).await;
        assert!(disabled.body["disabled_at"].is_string());
        app.get("/api/v1/admin/me", &[("authorization", &kim)]).await.problem(401, "unauthenticated");
        app.post("/api/v1/admin/auth/sessions", json!({"email": "kim@example.com", "password": PASSWORD}), &[])
            .await
            .problem(401, "invalid_credentials");

        let log = app.get("/api/v1/admin/audit-log", &[("authorization", &owner)]).await;
        let actions: Vec<&str> = log.body["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions.first(), Some(&"staff.updated"), "newest first");
        assert!(actions.contains(&"staff.created"));
    }

    async fn the_last_owner_can_be_neither_demoted_nor_disabled(backend) {
        let app = TestApp::spawn(backend).await;
        let owner = staff_member(&app, "owner@example.com", Role::Owner).await;
        let me = app.get("/api/v1/admin/me", &[("authorization", &owner)]).await;
        let id = me.body["staff"]["id"].as_str().unwrap().to_owned();
        for change in [json!({"role": "admin"}), json!({"disabled": true})] {
            app.patch(&format!("/api/v1/admin/staff/{id}"), change, &[("authorization", &owner)]).await.problem(409, "conflict");
        }
        staff_member(&app, "second@example.com", Role::Owner).await;
        let demoted = app.patch(&format!("/api/v1/admin/staff/{id}"), json!({"role": "admin"}), &[("authorization", &owner)]).await;
        assert_eq!(demoted.status, 200);
    }

    async fn api_keys_are_shown_once_scoped_and_revocable(backend) {
        let app = TestApp::spawn(backend).await;
        let owner = staff_member(&app, "owner@example.com", Role::Owner).await;
        let created = app
            .post("/api/v1/admin/api-keys", json!({"name": "CRM sync", "scopes": ["customers:read"]}), &[("authorization", &owner)])
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let secret = created.body["secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("brk_"));
        let id = created.body["id"].as_str().unwrap().to_owned();
        assert_eq!(app.count(&format!("SELECT COUNT(*) FROM api_keys WHERE token_hash = '{secret}'")).await, 0, "stored hashed");

        let listed = app.get("/api/v1/admin/api-keys", &[("authorization", &owner)]).await;
        assert!(!listed.text.contains(&secret), "the secret is never shown again");
        assert!(listed.body["data"][0]["last_used_at"].is_null());

        let key = format!("Bearer {secret}");
        assert_eq!(app.get("/api/v1/admin/customers", &[("authorization", &key)]).await.status, 200);
        app.get("/api/v1/admin/staff", &[("authorization", &key)]).await.problem(403, "forbidden");
        app.post("/api/v1/admin/api-keys", json!({"name": "escalate", "scopes": ["customers:read"]}), &[("authorization", &key)])
            .await
            .problem(403, "forbidden");
        let me = app.get("/api/v1/admin/me", &[("authorization", &key)]).await;
        assert_eq!(me.body["permissions"], json!(["customers:read"]));
        assert_eq!(me.body["api_key_id"], id.as_str());

        let listed = app.get("/api/v1/admin/api-keys", &[("authorization", &owner)]).await;
        assert!(listed.body["data"][0]["last_used_at"].is_string());

        let revoked = app.delete(&format!("/api/v1/admin/api-keys/{id}"), &[("authorization", &owner)]).await;
        assert_eq!(revoked.status, 204);
        app.get("/api/v1/admin/customers", &[("authorization", &key)]).await.problem(401, "unauthenticated");
        app.delete(&format!("/api/v1/admin/api-keys/{id}"), &[("authorization", &owner)]).await.problem(404, "not_found");
    }

    async fn an_api_key_cannot_create_api_keys(backend) {
        let app = TestApp::spawn(backend).await;
        let owner = staff_member(&app, "owner@example.com", Role::Owner).await;
        let created = app
            .post("/api/v1/admin/api-keys", json!({"name": "ops", "scopes": ["api_keys:manage", "customers:read"]}), &[("authorization", &owner)])
            .await;
        let key = format!("Bearer {}", created.body["secret"].as_str().unwrap());
        assert_eq!(app.get("/api/v1/admin/api-keys", &[("authorization", &key)]).await.status, 200);
        app.post("/api/v1/admin/api-keys", json!({"name": "child", "scopes": ["customers:read"]}), &[("authorization", &key)])
            .await
            .problem(403, "forbidden");
        assert_eq!(app.count("SELECT COUNT(*) FROM api_keys").await, 1);
    }

    async fn an_api_key_gets_no_scope_its_creator_lacks(backend) {
        let app = TestApp::spawn(backend).await;
        staff_member(&app, "owner@example.com", Role::Owner).await;
        let admin = staff_member(&app, "admin@example.com", Role::Admin).await;
        let resp = app
            .post("/api/v1/admin/api-keys", json!({"name": "too much", "scopes": ["customers:read", "staff:manage"]}), &[("authorization", &admin)])
            .await;
        resp.problem(422, "validation_failed");
        assert_eq!(resp.error_fields(), ["scopes[1]"]);
        let unknown = app
            .post("/api/v1/admin/api-keys", json!({"name": "typo", "scopes": ["customers:reed"]}), &[("authorization", &admin)])
            .await;
        unknown.problem(422, "validation_failed");
        assert_eq!(app.count("SELECT COUNT(*) FROM api_keys").await, 0);
    }

    async fn a_disabled_creator_s_keys_stop_working(backend) {
        let app = TestApp::spawn(backend).await;
        let owner = staff_member(&app, "owner@example.com", Role::Owner).await;
        let admin = staff_member(&app, "admin@example.com", Role::Admin).await;
        let created = app
            .post("/api/v1/admin/api-keys", json!({"name": "ops", "scopes": ["customers:read"]}), &[("authorization", &admin)])
            .await;
        let key = format!("Bearer {}", created.body["secret"].as_str().unwrap());
        assert_eq!(app.get("/api/v1/admin/customers", &[("authorization", &key)]).await.status, 200);
        let admin_id = app.get("/api/v1/admin/me", &[("authorization", &admin)]).await.body["staff"]["id"].as_str().unwrap().to_owned();
        app.patch(&format!("/api/v1/admin/staff/{admin_id}"), json!({"disabled": true}), &[("authorization", &owner)]).await;
        app.get("/api/v1/admin/customers", &[("authorization", &key)]).await.problem(401, "unauthenticated");
    }

    async fn staff_list_customers_with_cursor_pagination(backend) {
        let app = TestApp::spawn(backend).await;
        let clerk = staff_member(&app, "clerk@example.com", Role::Staff).await;
        for n in 0..5 {
            let resp = app.post("/api/v1/store/customers", json!({"email": format!("c{n}@example.com"), "password": "correct horse battery"}), &[]).await;
            assert_eq!(resp.status, 202);
        }
        let mut seen = Vec::new();
        let mut path = "/api/v1/admin/customers?limit=2".to_owned();
        loop {
            let page = app.get(&path, &[("authorization", &clerk)]).await;
            assert_eq!(page.status, 200, "{}", page.text);
            for customer in page.body["data"].as_array().unwrap() {
                seen.push(customer["email"].as_str().unwrap().to_owned());
            }
            match page.body["next_cursor"].as_str() {
                Some(cursor) => path = format!("/api/v1/admin/customers?limit=2&after={cursor}"),
                None => break,
            }
        }
        assert_eq!(seen, ["c0@example.com", "c1@example.com", "c2@example.com", "c3@example.com", "c4@example.com"]);
        app.get("/api/v1/admin/customers?limit=0", &[("authorization", &clerk)]).await.problem(422, "validation_failed");
        app.get("/api/v1/admin/customers?limit=101", &[("authorization", &clerk)]).await.problem(422, "validation_failed");
        let bad = app.get("/api/v1/admin/customers?limit=lots", &[("authorization", &clerk)]).await;
        bad.problem(422, "validation_failed");
        assert_eq!(bad.error_fields(), ["limit"]);
        app.get("/api/v1/admin/customers/cus_nope", &[("authorization", &clerk)]).await.problem(404, "not_found");
    }

    async fn a_staff_cookie_session_needs_the_csrf_token(backend) {
        let app = TestApp::spawn(backend).await;
        create_staff(&app.state.db, NewStaff { email: "owner@example.com", password: PASSWORD, name: "", role: Role::Owner }, None)
            .await
            .unwrap();
        let resp = app
            .post("/api/v1/admin/auth/sessions", json!({"email": "owner@example.com", "password": PASSWORD, "mode": "cookie"}), &[])
            .await;
        let cookie = format!("backroom_admin_session={}", resp.cookie("backroom_admin_session").unwrap());
        let csrf = resp.body["csrf_token"].as_str().unwrap();
        let body = json!({"name": "k", "scopes": ["customers:read"]});
        app.post("/api/v1/admin/api-keys", body.clone(), &[("cookie", &cookie)]).await.problem(403, "csrf_failed");
        let ok = app.post("/api/v1/admin/api-keys", body, &[("cookie", &cookie), ("x-csrf-token", csrf)]).await;
        assert_eq!(ok.status, 201);
        // The customer cookie name does not open the admin API.
        let wrong = format!("backroom_session={}", resp.cookie("backroom_admin_session").unwrap());
        app.get("/api/v1/admin/me", &[("cookie", &wrong)]).await.problem(401, "unauthenticated");
    }
}

/// `backroom admin create` reads the password from standard input and creates an owner who
/// can then sign in; bad input is refused with the field named and nothing created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_create_command_makes_an_owner_who_can_sign_in() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let data_dir = tempfile::tempdir().unwrap();
    let run = |email: &str, password: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_backroom"))
            .args(["admin", "create", "--email", email, "--name", "Olga"])
            .env("BACKROOM_DATA_DIR", data_dir.path())
            .env("BACKROOM_CONFIG", data_dir.path().join("none.toml"))
            .env("BACKROOM_LOG__LEVEL", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let weak = run("olga@example.com", "password");
    assert!(!weak.status.success());
    let stderr = String::from_utf8_lossy(&weak.stderr);
    assert!(stderr.contains("password"), "{stderr}");

    let made = run("olga@example.com", PASSWORD);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert!(String::from_utf8_lossy(&made.stdout).contains("as owner"));
    let again = run("olga@example.com", PASSWORD);
    assert!(!again.status.success());

    let app =
        TestApp::spawn_with(common::Backend::Sqlite, |config| config.data_dir = data_dir.path().to_path_buf()).await;
    let token = staff_sign_in(&app, "olga@example.com").await;
    let me = app.get("/api/v1/admin/me", &[("authorization", &token)]).await;
    assert_eq!(me.body["staff"]["name"], "Olga");
    assert_eq!(me.body["staff"]["role"], "owner");
}
