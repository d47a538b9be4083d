//! Customer accounts through the store API, on both databases: registration, sign-in by
//! token and by cookie, CSRF, profile, password change, verification, reset, throttling and
//! the answers that must not reveal whether an account exists.

mod common;

use common::TestApp;
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

async fn register(app: &TestApp, email: &str) {
    let resp = app
        .post("/api/v1/store/customers", json!({"email": email, "password": PASSWORD, "first_name": "Ana"}), &[])
        .await;
    assert_eq!(resp.status, 202, "{}", resp.text);
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> common::Resp {
    app.post("/api/v1/store/auth/sessions", json!({"email": email, "password": password}), &[]).await
}

async fn bearer(app: &TestApp, email: &str) -> String {
    let resp = sign_in(app, email, PASSWORD).await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    format!("Bearer {}", resp.body["token"].as_str().unwrap())
}

/// Signs in with a cookie; returns the `Cookie` header value and the CSRF token.
async fn cookie_session(app: &TestApp, email: &str) -> (String, String) {
    let resp = app
        .post("/api/v1/store/auth/sessions", json!({"email": email, "password": PASSWORD, "mode": "cookie"}), &[])
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let session = resp.cookie("backroom_session").expect("a session cookie");
    (format!("backroom_session={session}"), resp.body["csrf_token"].as_str().unwrap().to_owned())
}

conformance! {
    async fn registering_sends_a_verification_link_that_works_once(backend) {
        let app = TestApp::spawn(backend).await;
        register(&app, "Ana@Example.com").await;
        let mails = app.wait_for_emails(1).await;
        assert_eq!(mails[0].to, "ana@example.com");
        assert!(mails[0].subject.contains("Test Shop"));
        let token = mails[0].token();

        let auth = bearer(&app, "ana@example.com").await;
        let me = app.get("/api/v1/store/customers/me", &[("authorization", &auth)]).await;
        assert_eq!(me.status, 200);
        assert_eq!(me.body["email"], "ana@example.com");
        assert_eq!(me.body["first_name"], "Ana");
        assert!(me.body["email_verified_at"].is_null());
        assert!(me.body.get("password_hash").is_none());

        let verified = app.post("/api/v1/store/auth/email-verification", json!({"token": token}), &[]).await;
        assert_eq!(verified.status, 204, "{}", verified.text);
        let me = app.get("/api/v1/store/customers/me", &[("authorization", &auth)]).await;
        assert!(me.body["email_verified_at"].is_string());

        let again = app.post("/api/v1/store/auth/email-verification", json!({"token": token}), &[]).await;
        again.problem(422, "invalid_token");
        let forged = app.post("/api/v1/store/auth/email-verification", json!({"token": "brm_forged"}), &[]).await;
        forged.problem(422, "invalid_token");
    }

    async fn a_shop_s_own_templates_and_locale_replace_the_built_in_ones(backend) {
        let app = TestApp::spawn_with(backend, |config| {
            config.mail.locale = "fr".into();
            config.mail.brand_color = "#aa0000".into();
            let folder = config.data_dir.join("templates/email");
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join("welcome.fr.subject.txt"), "Bienvenue chez {{ shop.name }}").unwrap();
            std::fs::write(folder.join("welcome.fr.txt"), "Bonjour {{ first_name }} : {{ link }}").unwrap();
        })
        .await;
        let resp = app
            .post("/api/v1/store/customers", json!({"email": "ana@example.com", "password": PASSWORD, "first_name": "Ana"}), &[])
            .await;
        assert_eq!(resp.status, 202);
        let mail = &app.wait_for_emails(1).await[0];
        assert_eq!(mail.subject, "Bienvenue chez Test Shop");
        assert!(mail.text.starts_with("Bonjour Ana : http"), "{}", mail.text);
        // The HTML part falls back to the built-in template, in the shop's colour.
        let raw = std::fs::read_to_string(std::fs::read_dir(app.data_dir.path().join("mail")).unwrap().next().unwrap().unwrap().path()).unwrap();
        assert!(raw.contains("#aa0000"));
        let verified = app.post("/api/v1/store/auth/email-verification", json!({"token": mail.token()}), &[]).await;
        assert_eq!(verified.status, 204);
    }

    async fn registering_an_existing_email_answers_the_same_and_creates_nothing(backend) {
        let app = TestApp::spawn(backend).await;
        let first = app.post("/api/v1/store/customers", json!({"email": "ana@example.com", "password": PASSWORD}), &[]).await;
        let second = app.post("/api/v1/store/customers", json!({"email": "ANA@example.com", "password": "another good passphrase"}), &[]).await;
        assert_eq!(first.status, second.status);
        assert_eq!(first.text, second.text);
        assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 1);
        let mails = app.wait_for_emails(2).await;
        assert!(mails.iter().any(|m| m.subject.contains("already have an account")));
        // The first password still signs in; the second attempt changed nothing.
        assert_eq!(sign_in(&app, "ana@example.com", PASSWORD).await.status, 201);
        assert_eq!(sign_in(&app, "ana@example.com", "another good passphrase").await.status, 401);
    }

    async fn weak_passwords_are_refused(backend) {
        let app = TestApp::spawn(backend).await;
        for (password, code) in [("short", "too_short"), ("password123", "too_common"), ("Sunshine1", "too_common")] {
            let resp = app.post("/api/v1/store/customers", json!({"email": "ana@example.com", "password": password}), &[]).await;
            resp.problem(422, "validation_failed");
            assert_eq!(resp.body["errors"][0]["field"], "password");
            assert_eq!(resp.body["errors"][0]["code"], code, "{password}");
        }
        let long = "a".repeat(129);
        let resp = app.post("/api/v1/store/customers", json!({"email": "ana@example.com", "password": long}), &[]).await;
        assert_eq!(resp.body["errors"][0]["code"], "too_long");
        assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 0);
    }

    async fn wrong_password_and_unknown_email_get_the_same_answer(backend) {
        let app = TestApp::spawn(backend).await;
        register(&app, "ana@example.com").await;
        let wrong = sign_in(&app, "ana@example.com", "not the password").await;
        let unknown = sign_in(&app, "nobody@example.com", "not the password").await;
        wrong.problem(401, "invalid_credentials");
        unknown.problem(401, "invalid_credentials");
        assert_eq!(wrong.body["detail"], unknown.body["detail"]);
    }

    async fn repeated_failures_throttle_the_account(backend) {
        let app = TestApp::spawn(backend).await;
        register(&app, "ana@example.com").await;
        for _ in 0..5 {
            sign_in(&app, "ana@example.com", "not the password").await.problem(401, "invalid_credentials");
        }
        let throttled = sign_in(&app, "ana@example.com", PASSWORD).await;
        throttled.problem(429, "too_many_requests");
        let retry_after: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=900).contains(&retry_after));
        // Another account from the same address is not locked by this one.
        register(&app, "bo@example.com").await;
        assert_eq!(sign_in(&app, "bo@example.com", PASSWORD).await.status, 201);
    }

    async fn a_burst_of_concurrent_guesses_gets_no_more_tries_than_the_limit(backend) {
        let app = TestApp::spawn(backend).await;
        register(&app, "ana@example.com").await;
        let mut guesses = tokio::task::JoinSet::new();
        for n in 0..12 {
            let (client, url) = (app.client.clone(), app.url("/api/v1/store/auth/sessions"));
            guesses.spawn(async move {
                let body = json!({"email": "ana@example.com", "password": format!("guess number {n}")});
                client.post(url).json(&body).send().await.unwrap().status().as_u16()
            });
        }
        let statuses = guesses.join_all().await;
        assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 7, "{statuses:?}");
    }

    async fn repeated_failures_throttle_the_address(backend) {
        let app = TestApp::spawn_with(backend, |config| config.auth.max_failures_per_ip = 6).await;
        register(&app, "ana@example.com").await;
        for n in 0..6 {
            sign_in(&app, &format!("guess{n}@example.com"), "not the password").await.problem(401, "invalid_credentials");
        }
        sign_in(&app, "ana@example.com", PASSWORD).await.problem(429, "too_many_requests");
    }

    async fn a_bearer_token_reads_the_profile_and_sign_out_ends_it(backend) {
        let app = TestApp::spawn(backend).await;
        register(&app, "ana@example.com").await;
        let auth = bearer(&app, "ana@example.com").await;
        assert_eq!(app.get("/api/v1/store/customers/me", &[("authorization", &auth)]).await.status, 200);
        let out = app.delete("/api/v1/store/auth/session", &[("authorization", &auth)]).await;
        assert_eq!(out.status, 204);
        let after = app.get("/api/v1/store/customers/me", &[("authorization", &auth)]).await;
        after.problem(401, "unauthenticated");
        assert!(after.header("www-authenticate").is_some());
        app.get("/api/v1/store/customers/me", &[]).await.problem(401, "unauthenticated");
        app.get("/api/v1/store/customers/me", &[("authorization", "Bearer brc_made_up")]).await.problem(401, "unauthenticated");
        app.get("/api/v1/store/customers/me", &[("authorization", "Basic YTpi")]).await.problem(401, "unauthenticated");
    }

    async fn the_cookie_session_is_http_only_and_csrf_protected(backend) {
        let app = TestApp::spawn(backend).await;
        register(&app, "ana@example.com").await;
        let resp = app
            .post("/api/v1/store/auth/sessions", json!({"email": "ana@example.com", "password": PASSWORD, "mode": "cookie"}), &[])
            .await;
        assert_eq!(resp.status, 201);
        assert!(resp.body.get("token").is_none(), "cookie mode never shows the token to scripts");
        let line = resp.set_cookie_line("backroom_session").unwrap();
        assert!(line.contains("HttpOnly") && line.contains("SameSite=Lax") && line.contains("Path=/"));
        assert!(!line.contains("Secure"), "plain HTTP here");
        let csrf_line = resp.set_cookie_line("backroom_csrf").unwrap();
        assert!(!csrf_line.contains("HttpOnly"));
        let cookie = format!("backroom_session={}", resp.cookie("backroom_session").unwrap());
        let csrf = resp.body["csrf_token"].as_str().unwrap();

        assert_eq!(app.get("/api/v1/store/customers/me", &[("cookie", &cookie)]).await.status, 200);
        let change = json!({"first_name": "Anna"});
        app.patch("/api/v1/store/customers/me", change.clone(), &[("cookie", &cookie)]).await.problem(403, "csrf_failed");
        app.patch("/api/v1/store/customers/me", change.clone(), &[("cookie", &cookie), ("x-csrf-token", "wrong")]).await.problem(403, "csrf_failed");
        let me = app.get("/api/v1/store/customers/me", &[("cookie", &cookie)]).await;
        assert_eq!(me.body["first_name"], "Ana", "a refused request changed nothing");
        let ok = app.patch("/api/v1/store/customers/me", change, &[("cookie", &cookie), ("x-csrf-token", csrf)]).await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        assert_eq!(ok.body["first_name"], "Anna");
    }

    async fn cookies_are_secure_behind_https(backend) {
        let app = TestApp::spawn_with(backend, |config| config.public_url = Some("https://shop.example".into())).await;
        register(&app, "ana@example.com").await;
        let resp = app
            .post("/api/v1/store/auth/sessions", json!({"email": "ana@example.com", "password": PASSWORD, "mode": "cookie"}), &[])
            .await;
        assert!(resp.set_cookie_line("backroom_session").unwrap().contains("; Secure"));
        assert!(resp.header("strict-transport-security").is_some());
    }

    async fn signing_in_replaces_the_presented_session(backend) {
        let app = TestApp::spawn(backend).await;
        register(&app, "ana@example.com").await;
        let (old_cookie, _) = cookie_session(&app, "ana@example.com").await;
        let resp = app
            .post("/api/v1/store/auth/sessions", json!({"email": "ana@example.com", "password": PASSWORD, "mode": "cookie"}), &[("cookie", &old_cookie)])
            .await;
        let new_cookie = format!("backroom_session={}", resp.cookie("backroom_session").unwrap());
        assert_ne!(old_cookie, new_cookie);
        app.get("/api/v1/store/customers/me", &[("cookie", &old_cookie)]).await.problem(401, "unauthenticated");
        assert_eq!(app.get("/api/v1/store/customers/me", &[("cookie", &new_cookie)]).await.status, 200);
    }

    async fn a_stale_if_match_is_refused(backend) {
        let app = TestApp::spawn(backend).await;
        register(&app, "ana@example.com").await;
        let auth = bearer(&app, "ana@example.com").await;
        let me = app.get("/api/v1/store/customers/me", &[("authorization", &auth)]).await;
        let etag = me.header("etag").unwrap().to_owned();
        let first = app.patch("/api/v1/store/customers/me", json!({"last_name": "Silva"}), &[("authorization", &auth), ("if-match", &etag)]).await;
        assert_eq!(first.status, 200);
        assert_ne!(first.header("etag").unwrap(), etag);
        let stale = app.patch("/api/v1/store/customers/me", json!({"last_name": "Lost"}), &[("authorization", &auth), ("if-match", &etag)]).await;
        stale.problem(412, "precondition_failed");
        let me = app.get("/api/v1/store/customers/me", &[("authorization", &auth)]).await;
        assert_eq!(me.body["last_name"], "Silva");
        let unknown = app.patch("/api/v1/store/customers/me", json!({"bogus": 1}), &[("authorization", &auth)]).await;
        unknown.problem(422, "validation_failed");
    }

    async fn changing_the_password_ends_other_sessions(backend) {
        let app = TestApp::spawn(backend).await;
        register(&app, "ana@example.com").await;
        let phone = bearer(&app, "ana@example.com").await;
        let laptop = bearer(&app, "ana@example.com").await;
        let wrong = app
            .put("/api/v1/store/customers/me/password", json!({"current_password": "nope nope nope", "new_password": "a brand new phrase"}), &[("authorization", &laptop)])
            .await;
        wrong.problem(422, "validation_failed");
        assert_eq!(wrong.error_fields(), ["current_password"]);
        let done = app
            .put("/api/v1/store/customers/me/password", json!({"current_password": PASSWORD, "new_password": "a brand new phrase"}), &[("authorization", &laptop)])
            .await;
        assert_eq!(done.status, 204, "{}", done.text);
        assert_eq!(app.get("/api/v1/store/customers/me", &[("authorization", &laptop)]).await.status, 200);
        app.get("/api/v1/store/customers/me", &[("authorization", &phone)]).await.problem(401, "unauthenticated");
        sign_in(&app, "ana@example.com", PASSWORD).await.problem(401, "invalid_credentials");
        assert_eq!(sign_in(&app, "ana@example.com", "a brand new phrase").await.status, 201);
    }

    async fn a_password_reset_link_works_once_and_ends_every_session(backend) {
        let app = TestApp::spawn(backend).await;
        register(&app, "ana@example.com").await;
        app.wait_for_emails(1).await;
        let auth = bearer(&app, "ana@example.com").await;
        let asked = app.post("/api/v1/store/auth/password-reset", json!({"email": "ana@example.com"}), &[]).await;
        assert_eq!(asked.status, 202);
        let mails = app.wait_for_emails(2).await;
        let reset = mails.iter().find(|m| m.subject.contains("reset your password")).expect("a reset email");
        let token = reset.token();

        let weak = app.post("/api/v1/store/auth/password-reset/confirm", json!({"token": token, "new_password": "password"}), &[]).await;
        weak.problem(422, "validation_failed");
        let done = app.post("/api/v1/store/auth/password-reset/confirm", json!({"token": token, "new_password": "a brand new phrase"}), &[]).await;
        assert_eq!(done.status, 204, "{}", done.text);
        app.get("/api/v1/store/customers/me", &[("authorization", &auth)]).await.problem(401, "unauthenticated");
        let again = app.post("/api/v1/store/auth/password-reset/confirm", json!({"token": token, "new_password": "yet another phrase"}), &[]).await;
        again.problem(422, "invalid_token");
        // Links' tokens exist only as hashes: not in the jobs that mailed them either.
        assert_eq!(app.count(&format!("SELECT COUNT(*) FROM jobs WHERE payload LIKE '%{token}%'")).await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM jobs WHERE payload LIKE '%brm_%'").await, 0);
        let fresh = bearer_with(&app, "ana@example.com", "a brand new phrase").await;
        let me = app.get("/api/v1/store/customers/me", &[("authorization", &fresh)]).await;
        assert!(me.body["email_verified_at"].is_string(), "the reset proved the mailbox");
    }

    async fn a_reset_for_an_unknown_email_answers_the_same_and_sends_nothing(backend) {
        let app = TestApp::spawn(backend).await;
        register(&app, "ana@example.com").await;
        app.wait_for_emails(1).await;
        let known = app.post("/api/v1/store/auth/password-reset", json!({"email": "ana@example.com"}), &[]).await;
        let unknown = app.post("/api/v1/store/auth/password-reset", json!({"email": "nobody@example.com"}), &[]).await;
        assert_eq!((known.status, &known.text), (unknown.status, &unknown.text));
        let mails = app.wait_for_emails(2).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(app.emails().len(), 2);
        assert!(mails.iter().all(|m| m.to == "ana@example.com"));
    }

    async fn an_expired_reset_link_is_refused(backend) {
        let app = TestApp::spawn(backend).await;
        register(&app, "ana@example.com").await;
        app.wait_for_emails(1).await;
        app.post("/api/v1/store/auth/password-reset", json!({"email": "ana@example.com"}), &[]).await;
        let token = app.wait_for_emails(2).await[1].token();
        app.execute("UPDATE customer_tokens SET expires_at = 0 WHERE purpose = 'reset_password'").await;
        let late = app.post("/api/v1/store/auth/password-reset/confirm", json!({"token": token, "new_password": "a brand new phrase"}), &[]).await;
        late.problem(422, "invalid_token");
        assert_eq!(sign_in(&app, "ana@example.com", PASSWORD).await.status, 201);
    }

    async fn reset_requests_are_throttled_per_email(backend) {
        let app = TestApp::spawn(backend).await;
        for _ in 0..5 {
            assert_eq!(app.post("/api/v1/store/auth/password-reset", json!({"email": "ana@example.com"}), &[]).await.status, 202);
        }
        app.post("/api/v1/store/auth/password-reset", json!({"email": "ana@example.com"}), &[]).await.problem(429, "too_many_requests");
    }

    async fn dead_reset_tokens_are_refused_before_any_hashing_and_throttled(backend) {
        let app = TestApp::spawn_with(backend, |config| config.auth.max_failures_per_ip = 3).await;
        for n in 0..3 {
            let body = json!({"token": format!("brm_guess{n}"), "new_password": "a brand new phrase"});
            app.post("/api/v1/store/auth/password-reset/confirm", body, &[]).await.problem(422, "invalid_token");
        }
        let body = json!({"token": "brm_guess", "new_password": "a brand new phrase"});
        app.post("/api/v1/store/auth/password-reset/confirm", body, &[]).await.problem(429, "too_many_requests");
    }

    async fn a_customer_sees_and_ends_only_their_own_sessions(backend) {
        let app = TestApp::spawn(backend).await;
        register(&app, "ana@example.com").await;
        register(&app, "bo@example.com").await;
        let ana_phone = bearer(&app, "ana@example.com").await;
        let ana_laptop = bearer(&app, "ana@example.com").await;
        let bo = bearer(&app, "bo@example.com").await;
        let sessions = app.get("/api/v1/store/customers/me/sessions", &[("authorization", &ana_laptop)]).await;
        let list = sessions.body.as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
        let phone_id = list.iter().find(|s| s["current"] == false).unwrap()["id"].as_str().unwrap().to_owned();

        // Bo cannot end Ana's session, and learns nothing about it.
        app.delete(&format!("/api/v1/store/customers/me/sessions/{phone_id}"), &[("authorization", &bo)]).await.problem(404, "not_found");
        assert_eq!(app.get("/api/v1/store/customers/me", &[("authorization", &ana_phone)]).await.status, 200);

        let ended = app.delete(&format!("/api/v1/store/customers/me/sessions/{phone_id}"), &[("authorization", &ana_laptop)]).await;
        assert_eq!(ended.status, 204);
        app.get("/api/v1/store/customers/me", &[("authorization", &ana_phone)]).await.problem(401, "unauthenticated");
        let me = app.get("/api/v1/store/customers/me", &[("authorization", &bo)]).await;
        assert_eq!(me.body["email"], "bo@example.com");
    }

    async fn an_expired_session_no_longer_works(backend) {
        let app = TestApp::spawn(backend).await;
        register(&app, "ana@example.com").await;
        let auth = bearer(&app, "ana@example.com").await;
        app.execute("UPDATE sessions SET expires_at = 0").await;
        app.get("/api/v1/store/customers/me", &[("authorization", &auth)]).await.problem(401, "unauthenticated");
    }

    async fn a_customer_never_reaches_the_admin_api(backend) {
        let app = TestApp::spawn(backend).await;
        register(&app, "ana@example.com").await;
        let auth = bearer(&app, "ana@example.com").await;
        let (cookie, csrf) = cookie_session(&app, "ana@example.com").await;
        for path in ["/api/v1/admin/me", "/api/v1/admin/customers", "/api/v1/admin/staff"] {
            app.get(path, &[("authorization", &auth)]).await.problem(401, "unauthenticated");
            app.get(path, &[("cookie", &cookie), ("x-csrf-token", &csrf)]).await.problem(401, "unauthenticated");
        }
    }
}

async fn bearer_with(app: &TestApp, email: &str, password: &str) -> String {
    let resp = sign_in(app, email, password).await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    format!("Bearer {}", resp.body["token"].as_str().unwrap())
}
