//! Forms and the newsletter, on both databases: submissions as JSON and as classic form
//! posts, stored, emailed to the shop and announced to webhooks; spam stopped by the honeypot
//! and the rate limit; bad submissions refused whole; double opt-in, one-click unsubscribe
//! and the CSV export.

mod common;

use std::time::Duration;

use backroom::accounts::roles::Role;
use common::{TestApp, WebhookReceiver};
use serde_json::{Value, json};

fn contact_form() -> Value {
    json!({
        "handle": "contact",
        "name": "Contact",
        "notify_email": "owner@shop.example",
        "redirect_url": "/thanks",
        "fields": [
            {"name": "name", "label": "Your name", "type": "text", "required": true, "max_length": 50},
            {"name": "email", "label": "Email", "type": "email", "required": true},
            {"name": "topic", "label": "Topic", "type": "select", "options": ["Order", "Other"]},
            {"name": "message", "label": "Message", "type": "textarea", "required": true, "max_length": 500},
            {"name": "consent", "label": "I agree", "type": "checkbox", "required": true}
        ]
    })
}

async fn with_form(app: &TestApp) -> String {
    let auth = app.staff("admin@example.com", Role::Admin).await;
    let resp = app.post("/api/v1/admin/forms", contact_form(), &[("authorization", &auth)]).await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    auth
}

const SUBMIT: &str = "/api/v1/store/forms/contact/submissions";

conformance! {
    async fn a_submission_is_stored_emailed_and_announced(backend) {
        let receiver = WebhookReceiver::start().await;
        let app = TestApp::spawn_with(backend, |config| config.webhooks.allow_loopback = true).await;
        let auth = with_form(&app).await;
        let hook = app
            .post("/api/v1/admin/webhooks", json!({"url": receiver.url("crm", 204), "event_types": ["form.submitted"]}), &[("authorization", &auth)])
            .await;
        receiver.set_secrets("crm", &[hook.body["secret"].as_str().unwrap()]);

        let form = app.get("/api/v1/store/forms/contact", &[]).await;
        assert_eq!(form.status, 200);
        assert_eq!(form.body["fields"][0]["label"], "Your name");
        assert_eq!(form.body["honeypot_field"], "_gotcha");

        let sent = json!({"name": "Ana", "email": "Ana@Example.com", "topic": "Order", "message": "Where is\nmy order?", "consent": true, "_gotcha": ""});
        let resp = app.post(SUBMIT, sent, &[("user-agent", "tests")]).await;
        assert_eq!(resp.status, 201, "{}", resp.text);
        assert_eq!(resp.body["status"], "received");

        let emails = app.wait_for_emails(1).await;
        let email = emails.iter().find(|m| m.to == "owner@shop.example").expect("the shop is emailed");
        assert!(email.subject.contains("Contact from ana@example.com"), "{}", email.subject);
        assert_eq!(email.header("Reply-To"), Some("ana@example.com"));
        assert!(email.text.contains("Your name:\nAna"), "{}", email.text);
        assert!(email.text.contains("Where is\nmy order?"), "{}", email.text);
        assert!(email.text.contains("I agree:\nyes"), "{}", email.text);

        let received = receiver.wait_for("crm", 1, Duration::from_secs(10)).await;
        assert_eq!(received[0].verified, vec![true]);
        assert_eq!(received[0].body["type"], "form.submitted");
        assert_eq!(received[0].body["data"]["form"]["handle"], "contact");
        assert_eq!(received[0].body["data"]["submission"]["data"]["email"], "ana@example.com");

        let form_id = app.get("/api/v1/admin/forms", &[("authorization", &auth)]).await.body["data"][0]["id"].as_str().unwrap().to_owned();
        let stored = app.get(&format!("/api/v1/admin/forms/{form_id}/submissions"), &[("authorization", &auth)]).await;
        assert_eq!(stored.status, 200, "{}", stored.text);
        let data = &stored.body["data"][0];
        assert_eq!(data["id"], resp.body["id"]);
        assert_eq!(data["data"]["consent"], true);
        assert_eq!(data["data"]["topic"], "Order");
        assert_eq!(data["user_agent"], "tests");
        assert!(data["data"].get("_gotcha").is_none());
    }

    async fn a_browser_form_post_is_stored_and_sent_on(backend) {
        let app = TestApp::spawn(backend).await;
        with_form(&app).await;
        let resp = app
            .post_form(SUBMIT, &[("name", "Bea"), ("email", "bea@example.com"), ("message", "Hi"), ("consent", "on"), ("submit", "")])
            .await;
        // `submit` is not a field of the form.
        assert_eq!(resp.error_fields(), vec!["submit"]);
        let resp = app
            .post_form(SUBMIT, &[("name", "Bea"), ("email", "bea@example.com"), ("message", "Hi"), ("consent", "on"), ("_submit", "Send")])
            .await;
        assert_eq!(resp.status, 303, "{}", resp.text);
        assert_eq!(resp.header("location"), Some("/thanks"));
        assert_eq!(app.count("SELECT COUNT(*) FROM form_submissions").await, 1);

        // A honeypot with a plain name, posted empty as a hidden input is, is no error.
        let auth = app.staff("editor@example.com", Role::Admin).await;
        let mut quote = contact_form();
        quote["handle"] = json!("quote");
        quote["honeypot_field"] = json!("website");
        assert_eq!(app.post("/api/v1/admin/forms", quote, &[("authorization", &auth)]).await.status, 201);
        let fields = [("name", "Bea"), ("email", "bea@example.com"), ("message", "Hi"), ("consent", "on"), ("website", "")];
        let resp = app.post_form("/api/v1/store/forms/quote/submissions", &fields).await;
        assert_eq!(resp.status, 303, "{}", resp.text);
        let mut filled = fields;
        filled[4] = ("website", "https://spam.example");
        assert_eq!(app.post_form("/api/v1/store/forms/quote/submissions", &filled).await.status, 303);
        assert_eq!(app.count("SELECT COUNT(*) FROM form_submissions").await, 2);
    }

    async fn spam_and_bad_submissions_store_nothing(backend) {
        let app = TestApp::spawn_with(backend, |config| config.forms.max_per_ip = 5).await;
        let auth = with_form(&app).await;
        let good = json!({"name": "Ana", "email": "ana@example.com", "message": "Hello", "consent": true});

        // The honeypot: the answer a person gets, and nothing kept or sent.
        let mut bot = good.clone();
        bot["_gotcha"] = json!("https://spam.example");
        let resp = app.post(SUBMIT, bot, &[]).await;
        assert_eq!(resp.status, 201);

        // Oversized, malformed and incomplete submissions are refused, naming each field.
        let mut bad = good.clone();
        bad["name"] = json!("x".repeat(51));
        bad["email"] = json!("not-an-email");
        bad["consent"] = json!(false);
        bad["topic"] = json!("Refund");
        bad["extra"] = json!("?");
        let resp = app.post(SUBMIT, bad, &[]).await;
        let mut fields = resp.error_fields();
        fields.sort();
        assert_eq!(fields, vec!["consent", "email", "extra", "name", "topic"], "{}", resp.text);
        let resp = app.post(SUBMIT, json!({"name": ["Ana"], "email": "ana@example.com", "message": "x", "consent": true}), &[]).await;
        assert_eq!(resp.error_fields(), vec!["name"]);
        let resp = app.request(reqwest::Method::POST, SUBMIT, None, &[("content-type", "application/json")]).await;
        assert_eq!(resp.status, 400, "{}", resp.text);
        let resp = app.post(SUBMIT, json!({"message": "a".repeat(100_000)}), &[]).await;
        assert_eq!(resp.status, 422);
        let multipart = app.request(reqwest::Method::POST, SUBMIT, None, &[("content-type", "multipart/form-data; boundary=x")]).await;
        multipart.problem(415, "unsupported_media_type");
        app.post("/api/v1/store/forms/nothing/submissions", good.clone(), &[]).await.problem(404, "not_found");

        // Each submission that reached the form (four so far) counted against the address: the
        // fifth passes, the sixth not.
        assert_eq!(app.post(SUBMIT, good.clone(), &[]).await.status, 201);
        let limited = app.post(SUBMIT, good.clone(), &[]).await;
        limited.problem(429, "too_many_requests");
        assert!(limited.header("retry-after").is_some());

        assert_eq!(app.count("SELECT COUNT(*) FROM form_submissions").await, 1);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(app.emails().len(), 1, "only the one good submission is emailed");

        // Definitions are checked too.
        let mut definition = contact_form();
        definition["handle"] = json!("Bad Handle");
        definition["fields"][1]["name"] = json!("name");
        definition["fields"][2]["options"] = json!([]);
        definition["fields"][0]["max_length"] = json!(0);
        let resp = app.post("/api/v1/admin/forms", definition, &[("authorization", &auth)]).await;
        let mut fields = resp.error_fields();
        fields.sort();
        assert_eq!(fields, vec!["fields[0].max_length", "fields[1].name", "fields[2].options", "handle"], "{}", resp.text);
        let resp = app.post("/api/v1/admin/forms", contact_form(), &[("authorization", &auth)]).await;
        assert_eq!(resp.problem(409, "conflict")["errors"][0]["field"], "handle");

        // A closed form takes nothing.
        let form = app.get("/api/v1/admin/forms", &[("authorization", &auth)]).await.body["data"][0].clone();
        let mut closed = contact_form();
        closed["status"] = json!("closed");
        let etag = format!("\"v{}\"", form["version"]);
        let resp = app.put(&format!("/api/v1/admin/forms/{}", form["id"].as_str().unwrap()), closed, &[("authorization", &auth), ("if-match", &etag)]).await;
        assert_eq!(resp.status, 200, "{}", resp.text);
        app.get("/api/v1/store/forms/contact", &[]).await.problem(404, "not_found");
    }

    async fn the_newsletter_takes_double_opt_in_and_one_click_unsubscribe(backend) {
        let receiver = WebhookReceiver::start().await;
        let app = TestApp::spawn_with(backend, |config| {
            config.webhooks.allow_loopback = true;
            config.public_url = Some("https://shop.example".into());
        })
        .await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        let hook = app
            .post("/api/v1/admin/webhooks", json!({"url": receiver.url("crm", 204), "event_types": ["newsletter.*"]}), &[("authorization", &auth)])
            .await;
        receiver.set_secrets("crm", &[hook.body["secret"].as_str().unwrap()]);

        let resp = app.post_form("/api/v1/store/newsletter/subscriptions", &[("email", "ana@example.com"), ("source", "footer")]).await;
        assert_eq!(resp.status, 202, "{}", resp.text);
        let confirmation = app.wait_for_emails(1).await.remove(0);
        assert!(confirmation.subject.contains("confirm your subscription"));
        assert!(confirmation.text.contains("https://shop.example/newsletter/confirm?token=brm_"), "{}", confirmation.text);
        let one_click = confirmation.header("List-Unsubscribe").expect("List-Unsubscribe").trim_matches(['<', '>']).to_owned();
        assert!(one_click.starts_with("https://shop.example/api/v1/store/newsletter/unsubscribe?key="), "{one_click}");
        assert_eq!(confirmation.header("List-Unsubscribe-Post"), Some("List-Unsubscribe=One-Click"));
        assert!(confirmation.text.contains("https://shop.example/newsletter/unsubscribe?key="));
        assert_eq!(app.count("SELECT COUNT(*) FROM newsletter_subscribers WHERE status = 'pending'").await, 1);
        assert!(receiver.received("crm").is_empty(), "nothing is announced before the confirmation");

        // A bad token changes nothing; the emailed one subscribes, once.
        let bad = app.post("/api/v1/store/newsletter/confirm", json!({"token": "brm_forged"}), &[]).await;
        assert_eq!(bad.problem(422, "invalid_token")["errors"][0]["field"], "token");
        let token = confirmation.token();
        assert_eq!(app.post("/api/v1/store/newsletter/confirm", json!({"token": token}), &[]).await.status, 204);
        app.post("/api/v1/store/newsletter/confirm", json!({"token": token}), &[]).await.problem(422, "invalid_token");
        let welcome = app.wait_for_emails(2).await.remove(1);
        assert!(welcome.subject.contains("you are subscribed"));
        assert!(welcome.header("List-Unsubscribe").is_some());
        let received = receiver.wait_for("crm", 1, Duration::from_secs(10)).await;
        assert_eq!(received[0].body["type"], "newsletter.subscribed");
        assert_eq!(received[0].body["data"]["email"], "ana@example.com");

        // Signing up again changes nothing and sends nothing.
        assert_eq!(app.post("/api/v1/store/newsletter/subscriptions", json!({"email": "ana@example.com"}), &[]).await.status, 202);
        let resp = app.post("/api/v1/store/newsletter/subscriptions", json!({"email": "bea@example", "source": 5}), &[]).await;
        assert_eq!(resp.error_fields(), vec!["email", "source"]);

        // Staff export the list as CSV; formulas are defused.
        assert_eq!(app.post("/api/v1/store/newsletter/subscriptions", json!({"email": "cy@example.com", "source": "=HYPERLINK(\"x\")"}), &[]).await.status, 202);
        let csv = app.get("/api/v1/admin/newsletter/subscribers/export", &[("authorization", &auth)]).await;
        assert_eq!(csv.status, 200);
        assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
        let lines: Vec<&str> = csv.text.lines().collect();
        assert_eq!(lines[0], "email,status,source,created_at,confirmed_at,unsubscribed_at");
        assert_eq!(lines.len(), 3, "{}", csv.text);
        assert!(lines[1].starts_with("ana@example.com,subscribed,footer,"), "{}", lines[1]);
        assert!(lines[2].starts_with("cy@example.com,pending,\"'=HYPERLINK(\"\"x\"\")\","), "{}", lines[2]);
        let only = app.get("/api/v1/admin/newsletter/subscribers/export?status=subscribed", &[("authorization", &auth)]).await;
        assert_eq!(only.text.lines().count(), 2);
        let staff = app.staff("staff@example.com", Role::Staff).await;
        app.get("/api/v1/admin/newsletter/subscribers/export", &[("authorization", &staff)]).await.problem(403, "forbidden");

        // One click, as a mail client does it (multipart, as RFC 8058 prefers), unsubscribes;
        // a second, as a form, is harmless.
        let path = one_click.trim_start_matches("https://shop.example");
        let multipart = "--b\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b--\r\n";
        let resp = app
            .client
            .post(app.url(path))
            .header("content-type", "multipart/form-data; boundary=b")
            .body(multipart)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
        assert_eq!(app.post_form(path, &[("List-Unsubscribe", "One-Click")]).await.status, 204);
        app.post_form("/api/v1/store/newsletter/unsubscribe?key=not-a-real-key-at-all-000", &[]).await.problem(422, "validation_failed");
        let list = app.get("/api/v1/admin/newsletter/subscribers?status=unsubscribed", &[("authorization", &auth)]).await;
        assert_eq!(list.body["data"][0]["email"], "ana@example.com");
        let received = receiver.wait_for("crm", 2, Duration::from_secs(10)).await;
        assert_eq!(received[1].body["type"], "newsletter.unsubscribed");
        assert_eq!(received.len(), 2);

        // Coming back takes a new confirmation, and counts as a new sign-up for the clean-up,
        // which forgets sign-ups left unconfirmed for 30 days.
        app.execute("UPDATE newsletter_subscribers SET created_at = 0").await;
        assert_eq!(app.post("/api/v1/store/newsletter/subscriptions", json!({"email": "ana@example.com"}), &[]).await.status, 202);
        let emails = app.wait_for_emails(4).await;
        assert!(emails[3].subject.contains("confirm your subscription"));
        assert_eq!(app.count("SELECT COUNT(*) FROM newsletter_subscribers WHERE status = 'pending'").await, 2);
        app.execute("UPDATE newsletter_subscribers SET updated_at = 0 WHERE email = 'cy@example.com'").await;
        assert_eq!(backroom::messaging::newsletter::purge_unconfirmed(&app.state).await.unwrap(), 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM newsletter_subscribers WHERE email = 'ana@example.com'").await, 1);
    }
}
