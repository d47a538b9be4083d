//! Outbound webhooks against a real receiver that checks every signature with the official
//! `standardwebhooks` library: delivery, retries on a growing schedule, disabling after a
//! run of failures (and the owner's email), replay, secret rotation, the circuit breaker,
//! and the address guard.

mod common;

use std::time::Duration;

use backroom::accounts::roles::Role;
use common::{TestApp, WebhookReceiver};
use serde_json::{Value, json};

fn loopback_allowed(config: &mut backroom::platform::config::Config) {
    config.webhooks.allow_loopback = true;
}

async fn subscribe(app: &TestApp, auth: &str, url: &str, types: Value) -> (String, String) {
    let resp =
        app.post("/api/v1/admin/webhooks", json!({"url": url, "event_types": types}), &[("authorization", auth)]).await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let secret = resp.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    (resp.body["id"].as_str().unwrap().to_owned(), secret)
}

async fn register(app: &TestApp, email: &str) {
    let body = json!({"email": email, "password": "correct horse battery", "first_name": "Ana"});
    assert_eq!(app.post("/api/v1/store/customers", body, &[]).await.status, 202);
}

/// Polls `check` until it holds, for up to `within`.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

conformance! {
    async fn events_reach_subscribed_endpoints_signed_and_logged(backend) {
        let receiver = WebhookReceiver::start().await;
        let app = TestApp::spawn_with(backend, loopback_allowed).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        let (crm, secret) = subscribe(&app, &auth, &receiver.url("crm", 204), json!(["customer.*"])).await;
        receiver.set_secrets("crm", &[&secret]);
        let (_, other) = subscribe(&app, &auth, &receiver.url("forms", 204), json!(["form.submitted"])).await;
        receiver.set_secrets("forms", &[&other]);

        register(&app, "ana@example.com").await;
        let received = receiver.wait_for("crm", 1, Duration::from_secs(10)).await;
        let event = &received[0];
        assert_eq!(event.verified, vec![true], "the signature verifies with the endpoint's secret");
        assert_eq!(event.content_type, "application/json");
        assert_eq!(event.body["type"], "customer.created");
        assert_eq!(event.body["data"]["email"], "ana@example.com");
        assert!(event.body["data"].get("password_hash").is_none());
        assert!(event.id.starts_with("msg_"));
        let age = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
            - event.timestamp.parse::<i64>().unwrap();
        assert!((0..30).contains(&age), "the timestamp is now: {age} s off");
        // An endpoint subscribed to other events hears nothing.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(receiver.received("forms").is_empty());

        // The log shows the delivery with its status and latency.
        let log = app.get(&format!("/api/v1/admin/webhooks/{crm}/deliveries"), &[("authorization", &auth)]).await;
        assert_eq!(log.status, 200, "{}", log.text);
        let delivery = &log.body["data"][0];
        assert_eq!(delivery["event_id"], event.id.as_str());
        assert!(eventually(Duration::from_secs(5), || async {
            let log = app.get(&format!("/api/v1/admin/webhooks/{crm}/deliveries"), &[("authorization", &auth)]).await;
            log.body["data"][0]["status"] == "succeeded"
        }).await);
        let id = delivery["id"].as_str().unwrap();
        let detail = app.get(&format!("/api/v1/admin/webhook-deliveries/{id}"), &[("authorization", &auth)]).await;
        assert_eq!(detail.body["attempts"], 1);
        assert_eq!(detail.body["last_status"], 204);
        assert_eq!(detail.body["attempt_log"][0]["status"], 204);
        assert!(detail.body["attempt_log"][0]["latency_ms"].as_i64().unwrap() >= 0);
        assert_eq!(detail.body["payload"]["type"], "customer.created");

        // A replay sends the same message again, under the same id.
        let replay = app.post(&format!("/api/v1/admin/webhook-deliveries/{id}/replay"), json!({}), &[("authorization", &auth)]).await;
        assert_eq!(replay.status, 202, "{}", replay.text);
        let received = receiver.wait_for("crm", 2, Duration::from_secs(10)).await;
        assert_eq!(received[1].id, event.id);
        assert_eq!(received[1].body, event.body);
        assert_eq!(received[1].verified, vec![true]);

        // Verifying the address is an update.
        let token = app.wait_for_emails(1).await[0].token();
        assert_eq!(app.post("/api/v1/store/auth/email-verification", json!({"token": token}), &[]).await.status, 204);
        let received = receiver.wait_for("crm", 3, Duration::from_secs(10)).await;
        assert_eq!(received[2].body["type"], "customer.updated");
        assert!(received[2].body["data"]["email_verified_at"].is_string());

        // A test event goes to the one endpoint asked for.
        let test = app.post(&format!("/api/v1/admin/webhooks/{crm}/test"), json!({}), &[("authorization", &auth)]).await;
        assert_eq!(test.status, 202, "{}", test.text);
        let received = receiver.wait_for("crm", 4, Duration::from_secs(10)).await;
        assert_eq!(received[3].body["type"], "webhook.test");
        assert!(receiver.received("forms").is_empty());
    }

    async fn a_failing_endpoint_is_retried_on_a_growing_schedule_then_disabled_and_its_owner_emailed(backend) {
        let receiver = WebhookReceiver::start().await;
        let app = TestApp::spawn_with(backend, |config| {
            loopback_allowed(config);
            config.webhooks.retry_schedule_secs = vec![1, 2, 4];
            config.webhooks.disable_after_secs = 5;
        })
        .await;
        let auth = app.staff("owner@example.com", Role::Owner).await;
        let (id, secret) = subscribe(&app, &auth, &receiver.url("down", 503), json!(["*"])).await;
        receiver.set_secrets("down", &[&secret]);

        register(&app, "ana@example.com").await;
        let received = receiver.wait_for("down", 4, Duration::from_secs(20)).await;
        assert!(received.iter().all(|r| r.id == received[0].id && r.verified == vec![true]));
        let gaps: Vec<f64> = received.windows(2).map(|pair| pair[1].at - pair[0].at).collect();
        assert!(gaps[0] >= 0.9 && gaps[1] >= 1.9 && gaps[2] >= 3.9, "waits follow the schedule: {gaps:?}");
        assert!(gaps[0] < gaps[1] && gaps[1] < gaps[2], "waits grow: {gaps:?}");

        // After failing for longer than the limit the endpoint is disabled and its owner told.
        assert!(eventually(Duration::from_secs(5), || async {
            app.get(&format!("/api/v1/admin/webhooks/{id}"), &[("authorization", &auth)]).await.body["status"] == "disabled"
        }).await);
        let endpoint = app.get(&format!("/api/v1/admin/webhooks/{id}"), &[("authorization", &auth)]).await;
        assert!(endpoint.body["disabled_reason"].as_str().unwrap().contains("answered 503"), "{}", endpoint.text);
        let emails = app.wait_for_emails(2).await;
        let notice = emails.iter().find(|m| m.to == "owner@example.com").expect("the owner is emailed");
        assert!(notice.subject.contains("a webhook endpoint was disabled"), "{}", notice.subject);
        assert!(notice.text.contains(&receiver.url("down", 503)), "{}", notice.text);
        let log = app.get(&format!("/api/v1/admin/webhooks/{id}/deliveries"), &[("authorization", &auth)]).await;
        assert_eq!(log.body["data"][0]["status"], "failed");
        assert_eq!(log.body["data"][0]["attempts"], 4);
        assert_eq!(log.body["data"][0]["last_status"], 503);

        // Nothing more goes to a disabled endpoint, and a replay is refused until it is enabled.
        register(&app, "bea@example.com").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(receiver.received("down").len(), 4);
        let delivery = log.body["data"][0]["id"].as_str().unwrap();
        let replay = app.post(&format!("/api/v1/admin/webhook-deliveries/{delivery}/replay"), json!({}), &[("authorization", &auth)]).await;
        replay.problem(409, "conflict");
        let enabled = app.patch(&format!("/api/v1/admin/webhooks/{id}"), json!({"enabled": true}), &[("authorization", &auth)]).await;
        assert_eq!(enabled.status, 200, "{}", enabled.text);
        assert!(enabled.body["failing_since"].is_null());
        let replay = app.post(&format!("/api/v1/admin/webhook-deliveries/{delivery}/replay"), json!({}), &[("authorization", &auth)]).await;
        assert_eq!(replay.status, 202, "{}", replay.text);
        receiver.wait_for("down", 5, Duration::from_secs(10)).await;
    }

    async fn a_rotated_secret_signs_beside_the_old_one_until_the_overlap_ends(backend) {
        let receiver = WebhookReceiver::start().await;
        let app = TestApp::spawn_with(backend, loopback_allowed).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        let (id, old) = subscribe(&app, &auth, &receiver.url("crm", 200), json!(["customer.created"])).await;
        let rotated = app
            .post(&format!("/api/v1/admin/webhooks/{id}/rotate-secret"), json!({"overlap_hours": 2}), &[("authorization", &auth)])
            .await;
        assert_eq!(rotated.status, 200, "{}", rotated.text);
        let new = rotated.body["secret"].as_str().unwrap().to_owned();
        assert_ne!(new, old);
        receiver.set_secrets("crm", &[&old, &new, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        register(&app, "ana@example.com").await;
        let received = receiver.wait_for("crm", 1, Duration::from_secs(10)).await;
        assert_eq!(received[0].verified, vec![true, true, false], "both secrets verify, another does not");
        assert_eq!(received[0].signature.split(' ').count(), 2);

        // Ending the overlap at once leaves only the newest secret.
        let rotated = app
            .post(&format!("/api/v1/admin/webhooks/{id}/rotate-secret"), json!({"overlap_hours": 0}), &[("authorization", &auth)])
            .await;
        let newest = rotated.body["secret"].as_str().unwrap().to_owned();
        receiver.set_secrets("crm", &[&old, &new, &newest]);
        register(&app, "bea@example.com").await;
        let received = receiver.wait_for("crm", 2, Duration::from_secs(10)).await;
        assert_eq!(received[1].verified, vec![false, false, true]);
        let bad = app
            .post(&format!("/api/v1/admin/webhooks/{id}/rotate-secret"), json!({"overlap_hours": 1000}), &[("authorization", &auth)])
            .await;
        assert_eq!(bad.problem(422, "validation_failed")["errors"][0]["field"], "overlap_hours");
    }

    async fn a_destination_failing_repeatedly_is_left_alone_while_others_are_served(backend) {
        let receiver = WebhookReceiver::start().await;
        let healthy = WebhookReceiver::start().await;
        let app = TestApp::spawn_with(backend, |config| {
            loopback_allowed(config);
            config.webhooks.circuit_failures = 2;
            config.webhooks.circuit_cooldown_secs = 60;
            config.webhooks.retry_schedule_secs = vec![1];
        })
        .await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        subscribe(&app, &auth, &receiver.url("down", 500), json!(["customer.created"])).await;
        let (_, secret) = subscribe(&app, &auth, &healthy.url("crm", 204), json!(["customer.created"])).await;
        healthy.set_secrets("crm", &[&secret]);
        for n in 0..4 {
            register(&app, &format!("c{n}@example.com")).await;
        }
        healthy.wait_for("crm", 4, Duration::from_secs(10)).await;
        // Two failures open the circuit: four events with a retry each reach the failing
        // receiver twice, and wait in the queue for the cooldown.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(receiver.received("down").len(), 2);
        let waiting = app
            .count("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'")
            .await;
        assert_eq!(waiting, 4, "every delivery to the failing destination waits");
        assert_eq!(app.count("SELECT COUNT(*) FROM jobs WHERE status = 'dead'").await, 0);
    }

    async fn endpoints_are_validated_and_guarded(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        let create = |body: Value| {
            let app = &app;
            let auth = auth.clone();
            async move { app.post("/api/v1/admin/webhooks", body, &[("authorization", &auth)]).await }
        };
        // Loopback and private addresses are refused unless configured.
        for url in ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://[::1]/", "http://10.0.0.8/", "http://169.254.169.254/latest", "http://0x7f.1/"] {
            let resp = create(json!({"url": url, "event_types": ["*"]})).await;
            assert_eq!(resp.problem(422, "validation_failed")["errors"][0]["field"], "url", "{url}: {}", resp.text);
        }
        let resp = create(json!({"url": "ftp://example.com/", "event_types": ["order.nothing", "customer.*"]})).await;
        assert_eq!(resp.error_fields(), vec!["url", "event_types[0]"]);
        let resp = create(json!({"url": "https://crm.example/hooks", "event_types": []})).await;
        assert_eq!(resp.error_fields(), vec!["event_types"]);
        assert_eq!(app.count("SELECT COUNT(*) FROM webhook_endpoints").await, 0);

        // A public address is accepted; delivery is refused if it later points inside.
        let resp = create(json!({"url": "https://crm.example/hooks", "event_types": ["customer.*"], "description": "CRM"})).await;
        assert_eq!(resp.status, 201, "{}", resp.text);
        let id = resp.body["id"].as_str().unwrap().to_owned();
        app.execute(&format!("UPDATE webhook_endpoints SET url = 'http://127.0.0.1:9/' WHERE id = '{id}'")).await;
        register(&app, "ana@example.com").await;
        assert!(eventually(Duration::from_secs(10), || async {
            app.count("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'failed'").await == 1
        }).await);
        let log = app.get(&format!("/api/v1/admin/webhooks/{id}/deliveries"), &[("authorization", &auth)]).await;
        assert!(log.body["data"][0]["last_error"].as_str().unwrap().contains("loopback"), "{}", log.text);

        // Event types are listed; staff without the permission see none of it.
        let types = app.get("/api/v1/admin/webhooks/event-types", &[("authorization", &auth)]).await;
        assert!(types.body.as_array().unwrap().iter().any(|t| t["type"] == "form.submitted"));
        let staff = app.staff("staff@example.com", Role::Staff).await;
        app.get("/api/v1/admin/webhooks", &[("authorization", &staff)]).await.problem(403, "forbidden");
        let edit = app.patch(&format!("/api/v1/admin/webhooks/{id}"), json!({"description": "x"}), &[("authorization", &auth), ("if-match", "\"v99\"")]).await;
        edit.problem(412, "precondition_failed");
        let deleted = app.delete(&format!("/api/v1/admin/webhooks/{id}"), &[("authorization", &auth)]).await;
        assert_eq!(deleted.status, 204);
        assert_eq!(app.count("SELECT COUNT(*) FROM webhook_deliveries").await, 0);
    }
}
