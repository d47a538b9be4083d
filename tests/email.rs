//! Email through a real SMTP server (aiosmtpd on loopback): the account emails arrive with
//! the right headers and content, and mail sent while the server is down is delivered once
//! it is back, every message once.

mod common;

use backroom::platform::config::{MailTransportKind, SmtpSecurity};
use common::{SmtpServer, TestApp};
use serde_json::json;

fn smtp_to(port: u16) -> impl FnOnce(&mut backroom::platform::config::Config) {
    move |config| {
        config.mail.transport = MailTransportKind::Smtp;
        config.mail.from = "Test Shop <shop@example.com>".into();
        config.mail.smtp.host = "127.0.0.1".into();
        config.mail.smtp.port = Some(port);
        config.mail.smtp.security = SmtpSecurity::None;
        config.mail.smtp.timeout_secs = 2;
        config.mail.smtp.circuit_cooldown_secs = 1;
        config.public_url = Some("https://shop.example".into());
    }
}

conformance! {
    async fn account_emails_reach_the_smtp_server(backend) {
        let smtp = SmtpServer::start().await;
        let app = TestApp::spawn_with(backend, smtp_to(smtp.port)).await;
        let resp = app
            .post("/api/v1/store/customers", json!({"email": "ana@example.com", "password": "correct horse battery", "first_name": "Ana"}), &[])
            .await;
        assert_eq!(resp.status, 202);
        let received = smtp.wait_for(1).await;
        let raw = &smtp.raw_messages()[0];
        assert_eq!(received[0].to, "ana@example.com");
        assert!(raw.contains("From: \"Test Shop\" <shop@example.com>") || raw.contains("From: Test Shop <shop@example.com>"), "{raw}");
        assert!(raw.contains("Message-ID: <"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(received[0].subject.contains("Welcome to Test Shop"));
        assert!(received[0].text.contains("Hello Ana,"));
        assert!(received[0].text.contains("https://shop.example/account/verify-email?token=brm_"));
        let verified = app.post("/api/v1/store/auth/email-verification", json!({"token": received[0].token()}), &[]).await;
        assert_eq!(verified.status, 204);
        // The job records its success just after the server accepts the message.
        for _ in 0..200 {
            if app.count("SELECT COUNT(*) FROM jobs WHERE status = 'succeeded' AND kind = 'account.email'").await == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM jobs WHERE status = 'succeeded' AND kind = 'account.email'").await, 1);

        // Staff find it in the delivery log, under the Message-ID the server received.
        let owner = backroom::accounts::staff::NewStaff {
            email: "owner@example.com",
            password: "a long owner passphrase",
            name: "",
            role: backroom::accounts::roles::Role::Owner,
        };
        backroom::accounts::staff::create_staff(&app.state.db, owner, None).await.unwrap();
        let signed = app
            .post("/api/v1/admin/auth/sessions", json!({"email": "owner@example.com", "password": "a long owner passphrase"}), &[])
            .await;
        let auth = format!("Bearer {}", signed.body["token"].as_str().unwrap());
        let log = app.get("/api/v1/admin/emails?recipient=ana@example.com", &[("authorization", &auth)]).await;
        assert_eq!(log.status, 200, "{}", log.text);
        let message_id = raw.lines().find_map(|l| l.strip_prefix("Message-ID: ")).unwrap().trim();
        assert_eq!(log.body["data"][0]["message_id"], message_id);
        assert!(log.body["data"][0]["subject"].as_str().unwrap().contains("Welcome"));
    }

    async fn mail_sent_while_the_server_is_down_arrives_once_it_is_back(backend) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let app = TestApp::spawn_with(backend, smtp_to(port)).await;
        for n in 0..3 {
            let body = json!({"email": format!("c{n}@example.com"), "password": "correct horse battery"});
            assert_eq!(app.post("/api/v1/store/customers", body, &[]).await.status, 202);
        }
        // Every send fails while nothing listens; the jobs wait for their next attempt.
        for _ in 0..200 {
            if app.count("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND attempts >= 1").await == 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND attempts >= 1").await, 3);

        let smtp = SmtpServer::start_on(port, tempfile::tempdir().unwrap()).await;
        app.execute("UPDATE jobs SET run_at = 0").await;
        let received = smtp.wait_for(3).await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let mut recipients: Vec<String> = smtp.messages().into_iter().map(|m| m.to).collect();
        recipients.sort();
        assert_eq!(recipients, ["c0@example.com", "c1@example.com", "c2@example.com"], "each once: {received:?}");
        assert_eq!(app.count("SELECT COUNT(*) FROM jobs WHERE kind = 'account.email' AND status = 'succeeded'").await, 3);
    }

    async fn an_open_circuit_leaves_a_failing_server_alone(backend) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let app = TestApp::spawn_with(backend, |config| {
            smtp_to(port)(config);
            config.mail.smtp.circuit_failures = 1;
            config.mail.smtp.circuit_cooldown_secs = 600;
        })
        .await;
        let body = json!({"email": "ana@example.com", "password": "correct horse battery"});
        assert_eq!(app.post("/api/v1/store/customers", body, &[]).await.status, 202);
        for _ in 0..200 {
            if app.count("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND attempts = 1").await == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        // The server is back, but the circuit opened on the first failure: the next attempt
        // is refused without a connection, and the email waits in the queue.
        let smtp = SmtpServer::start_on(port, tempfile::tempdir().unwrap()).await;
        app.execute("UPDATE jobs SET run_at = 0").await;
        for _ in 0..200 {
            if app.count("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND attempts = 2").await == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM jobs WHERE last_error LIKE '%failed repeatedly%'").await, 1);
        assert!(smtp.messages().is_empty());
    }
}
