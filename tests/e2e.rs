//! A purchase in the storefront with a real browser (headless Chromium, driven by
//! playwright-core): a category, a product and a variant, the cart, checkout with the test
//! gateway, the confirmation page, and the confirmation email at a real SMTP server.
//! Screenshots of each page are kept in `target/test-artefacts/storefront/`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use backroom::platform::config::{MailTransportKind, SmtpSecurity};
use common::{SmtpServer, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_buys_in_a_browser_and_gets_the_confirmation_email() {
    let smtp = SmtpServer::start().await;
    let port = smtp.port;
    let app = TestApp::spawn_with(common::Backend::Sqlite, move |config| {
        config.mail.transport = MailTransportKind::Smtp;
        config.mail.from = "Test Shop <shop@example.com>".into();
        config.mail.smtp.host = "127.0.0.1".into();
        config.mail.smtp.port = Some(port);
        config.mail.smtp.security = SmtpSecurity::None;
    })
    .await;
    assert!(backroom::catalog::demo::seed(&app.state, 30).await.expect("the demo seeds"));

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shots = root.join("target/test-artefacts/storefront");
    std::fs::create_dir_all(&shots).unwrap();
    let tools = common::npm_tools();
    let script = root.join("tests/support/storefront_e2e.mjs");
    let base = app.url("");
    let folder = shots.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node").arg(script).arg(base).arg(folder).env("NODE_TOOLS", tools).output()
    })
    .await
    .unwrap()
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser's purchase failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bought: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the order's number");
    let number = bought["number"].as_i64().unwrap();
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM orders WHERE number = {number} AND email = 'e2e@example.com'")).await,
        1
    );

    let mails = smtp.wait_for(1).await;
    let confirmation = mails.iter().find(|mail| mail.to == "e2e@example.com").expect("the confirmation email");
    assert!(confirmation.subject.contains(&number.to_string()), "{}", confirmation.subject);
    for page in ["home", "category", "product", "cart", "checkout", "confirmation"] {
        let size = std::fs::metadata(shots.join(format!("{page}.png"))).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "no screenshot of the {page} page");
    }
}
