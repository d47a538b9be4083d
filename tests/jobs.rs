//! The durable job queue on both databases: jobs exist only when their transaction commits,
//! run once, retry with backoff, die after the last attempt, survive a dead worker, and are
//! managed by staff.

mod common;

use std::time::Duration;

use backroom::accounts::roles::Role;
use backroom::accounts::staff::{NewStaff, create_staff};
use backroom::messaging::jobs::{NewJob, enqueue};
use backroom::messaging::{NOOP, SEND_EMAIL};
use backroom::platform::mail::Email;
use common::{Backend, TestApp};
use serde_json::json;

async fn owner(app: &TestApp) -> String {
    let new = NewStaff { email: "owner@example.com", password: "a long owner passphrase", name: "", role: Role::Owner };
    create_staff(&app.state.db, new, None).await.unwrap();
    let resp = app
        .post(
            "/api/v1/admin/auth/sessions",
            json!({"email": "owner@example.com", "password": "a long owner passphrase"}),
            &[],
        )
        .await;
    format!("Bearer {}", resp.body["token"].as_str().unwrap())
}

async fn status_of(app: &TestApp, id: &str) -> String {
    use backroom::db_run;
    db_run!(app.state.db.read().await.unwrap(), |conn| {
        sqlx::query_scalar::<_, String>("SELECT status FROM jobs WHERE id = $1").bind(id).fetch_one(conn).await
    })
    .unwrap()
}

async fn wait_for_status(app: &TestApp, id: &str, wanted: &str) {
    for _ in 0..200 {
        if status_of(app, id).await == wanted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("job {id} is {} instead of {wanted}", status_of(app, id).await);
}

fn email(to: &str) -> Email {
    Email {
        to: to.into(),
        subject: "Hello".into(),
        text: "Plain".into(),
        html: "<p>Rich</p>".into(),
        reply_to: None,
        unsubscribe_url: None,
    }
}

conformance! {
    async fn a_job_exists_only_if_its_transaction_commits(backend) {
        let app = TestApp::spawn(backend).await;
        let mut tx = app.state.db.begin().await.unwrap();
        enqueue(&mut tx, NewJob::new(SEND_EMAIL, &email("rolled@example.com")).unwrap()).await.unwrap();
        drop(tx);
        let mut tx = app.state.db.begin().await.unwrap();
        let id = enqueue(&mut tx, NewJob::new(SEND_EMAIL, &email("kept@example.com")).unwrap()).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        wait_for_status(&app, &id, "succeeded").await;
        let mails = app.wait_for_emails(1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(app.emails().len(), 1);
        assert_eq!(mails[0].to, "kept@example.com");
        assert_eq!(app.count("SELECT COUNT(*) FROM jobs WHERE kind = 'email.send'").await, 1);
    }

    async fn a_failing_email_is_retried_and_delivered_once_the_transport_recovers(backend) {
        let app = TestApp::spawn(backend).await;
        let mail_dir = app.data_dir.path().join("mail");
        // The transport cannot write: its folder is gone and a file stands in its place.
        std::fs::remove_dir_all(&mail_dir).unwrap();
        std::fs::write(&mail_dir, b"not a folder").unwrap();
        let mut tx = app.state.db.begin().await.unwrap();
        let id = enqueue(&mut tx, NewJob::new(SEND_EMAIL, &email("ana@example.com")).unwrap()).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        for _ in 0..200 {
            if app.count(&format!("SELECT attempts FROM jobs WHERE id = '{id}'")).await >= 1 && status_of(&app, &id).await == "queued" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(status_of(&app, &id).await, "queued", "a failure queues the job again");
        assert_eq!(app.count(&format!("SELECT COUNT(*) FROM jobs WHERE id = '{id}' AND last_error IS NOT NULL")).await, 1);
        let delay = app.count(&format!("SELECT run_at - updated_at FROM jobs WHERE id = '{id}'")).await;
        assert!((1000..=2000).contains(&delay), "the first retry waits 1-2 s, not {delay} ms");

        std::fs::remove_file(&mail_dir).unwrap();
        std::fs::create_dir(&mail_dir).unwrap();
        app.execute(&format!("UPDATE jobs SET run_at = 0 WHERE id = '{id}'")).await;
        wait_for_status(&app, &id, "succeeded").await;
        assert_eq!(app.emails().len(), 1);
        assert_eq!(app.count(&format!("SELECT attempts FROM jobs WHERE id = '{id}'")).await, 2);
    }

    async fn a_job_that_cannot_succeed_is_dead_and_staff_can_retry_it(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = owner(&app).await;
        let mut tx = app.state.db.begin().await.unwrap();
        let job = NewJob::new(SEND_EMAIL, &json!({"not": "an email"})).unwrap();
        let id = enqueue(&mut tx, job).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        wait_for_status(&app, &id, "dead").await;

        let dead = app.get("/api/v1/admin/jobs?status=dead", &[("authorization", &auth)]).await;
        assert_eq!(dead.status, 200, "{}", dead.text);
        assert_eq!(dead.body["data"][0]["id"], id.as_str());
        assert!(dead.body["data"][0]["last_error"].as_str().unwrap().contains("missing field"));

        let retried = app.post(&format!("/api/v1/admin/jobs/{id}/retry"), json!({}), &[("authorization", &auth)]).await;
        assert_eq!(retried.status, 200, "{}", retried.text);
        assert_eq!(retried.body["attempts"], 0);
        wait_for_status(&app, &id, "dead").await;
        app.post(&format!("/api/v1/admin/jobs/{id}/cancel"), json!({}), &[("authorization", &auth)]).await.problem(409, "conflict");
        app.post("/api/v1/admin/jobs/job_nope/retry", json!({}), &[("authorization", &auth)]).await.problem(404, "not_found");
        app.get("/api/v1/admin/jobs?status=lost", &[("authorization", &auth)]).await.problem(422, "validation_failed");
    }

    async fn staff_cancel_a_queued_job_and_it_never_runs(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = owner(&app).await;
        let later = backroom::platform::time::Timestamp::now().plus_secs(3600);
        let mut tx = app.state.db.begin().await.unwrap();
        let id = enqueue(&mut tx, NewJob::new(SEND_EMAIL, &email("later@example.com")).unwrap().run_at(later)).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        let cancelled = app.post(&format!("/api/v1/admin/jobs/{id}/cancel"), json!({}), &[("authorization", &auth)]).await;
        assert_eq!(cancelled.status, 200, "{}", cancelled.text);
        assert_eq!(cancelled.body["status"], "cancelled");
        app.execute(&format!("UPDATE jobs SET run_at = 0 WHERE id = '{id}'")).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(status_of(&app, &id).await, "cancelled");
        assert!(app.emails().is_empty());
    }

    async fn a_de_duplication_key_keeps_one_live_job(backend) {
        let app = TestApp::spawn(backend).await;
        let later = backroom::platform::time::Timestamp::now().plus_secs(3600);
        let mut tx = app.state.db.begin().await.unwrap();
        let first = enqueue(&mut tx, NewJob::new(NOOP, &()).unwrap().dedupe_key("nightly").run_at(later)).await.unwrap();
        let second = enqueue(&mut tx, NewJob::new(NOOP, &()).unwrap().dedupe_key("nightly").run_at(later)).await.unwrap();
        tx.commit().await.unwrap();
        assert!(first.is_some());
        assert!(second.is_none());
        assert_eq!(app.count("SELECT COUNT(*) FROM jobs WHERE kind = 'noop'").await, 1);
    }

    async fn a_dead_worker_s_job_is_taken_over_when_its_lease_expires(backend) {
        let app = TestApp::spawn(backend).await;
        let mut tx = app.state.db.begin().await.unwrap();
        let id = enqueue(&mut tx, NewJob::new(SEND_EMAIL, &email("orphan@example.com")).unwrap().run_at(
            backroom::platform::time::Timestamp::now().plus_secs(3600),
        ))
        .await
        .unwrap()
        .unwrap();
        tx.commit().await.unwrap();
        // As a worker that claimed the job and died would leave it.
        app.execute(&format!(
            "UPDATE jobs SET status = 'running', attempts = 1, locked_by = 'wrk_gone', locked_until = 1, run_at = 0 WHERE id = '{id}'"
        ))
        .await;
        wait_for_status(&app, &id, "succeeded").await;
        assert_eq!(app.emails().len(), 1);
        assert_eq!(app.count(&format!("SELECT attempts FROM jobs WHERE id = '{id}'")).await, 2);
    }

    async fn staff_without_the_permission_cannot_see_jobs(backend) {
        let app = TestApp::spawn(backend).await;
        owner(&app).await;
        let new = NewStaff { email: "clerk@example.com", password: "a long clerk passphrase", name: "", role: Role::Staff };
        create_staff(&app.state.db, new, None).await.unwrap();
        let resp = app
            .post("/api/v1/admin/auth/sessions", json!({"email": "clerk@example.com", "password": "a long clerk passphrase"}), &[])
            .await;
        let clerk = format!("Bearer {}", resp.body["token"].as_str().unwrap());
        app.get("/api/v1/admin/jobs", &[("authorization", &clerk)]).await.problem(403, "forbidden");
    }

    async fn the_queue_shows_in_the_metrics(backend) {
        let app = TestApp::spawn(backend).await;
        let mut tx = app.state.db.begin().await.unwrap();
        let id = enqueue(&mut tx, NewJob::new(NOOP, &()).unwrap()).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        wait_for_status(&app, &id, "succeeded").await;
        let metrics = app.get("/metrics", &[]).await.text;
        assert!(metrics.lines().any(|l| l.starts_with("jobs{status=\"succeeded\"}") && l.ends_with(" 1")), "{metrics}");
        assert!(metrics.contains("jobs_finished_total{"));
        assert!(metrics.contains("job_wait_seconds"));
    }
}

conformance! {
    async fn a_due_schedule_enqueues_its_job_once_and_the_cleanup_deletes_what_ended(backend) {
        let app = TestApp::spawn(backend).await;
        let resp = app.post("/api/v1/store/customers", json!({"email": "ana@example.com", "password": "correct horse battery"}), &[]).await;
        assert_eq!(resp.status, 202);
        app.wait_for_emails(1).await;
        let signed = app.post("/api/v1/store/auth/sessions", json!({"email": "ana@example.com", "password": "correct horse battery"}), &[]).await;
        let auth = format!("Bearer {}", signed.body["token"].as_str().unwrap());
        app.delete("/api/v1/store/auth/session", &[("authorization", &auth)]).await;
        // A week and more passes.
        app.execute("UPDATE sessions SET revoked_at = 1").await;
        app.execute("UPDATE customer_tokens SET expires_at = 1").await;
        app.execute("UPDATE jobs SET finished_at = 1").await;

        backroom::messaging::scheduler::install_built_in(&app.state).await.unwrap();
        assert_eq!(app.count("SELECT COUNT(*) FROM schedules WHERE name = 'cleanup'").await, 1);
        app.execute("UPDATE schedules SET next_run_at = 0 WHERE name = 'cleanup'").await;
        // The other built-in schedules come due every minute; only the cleanup is raced here.
        app.execute("UPDATE schedules SET next_run_at = 9999999999999 WHERE name <> 'cleanup'").await;
        let (first, second) = tokio::join!(
            backroom::messaging::scheduler::enqueue_due(&app.state),
            backroom::messaging::scheduler::enqueue_due(&app.state),
        );
        // The app's own scheduler may get there first; either way the job is enqueued once.
        assert!(first.unwrap() + second.unwrap() <= 1, "one run per due time");
        assert_eq!(app.count("SELECT COUNT(*) FROM jobs WHERE kind = 'maintenance.cleanup'").await, 1);
        assert!(app.count("SELECT next_run_at FROM schedules WHERE name = 'cleanup'").await > backroom::platform::time::Timestamp::now().0);
        for _ in 0..200 {
            if app.count("SELECT COUNT(*) FROM jobs WHERE kind = 'maintenance.cleanup' AND status = 'succeeded'").await == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM jobs WHERE kind = 'maintenance.cleanup' AND status = 'succeeded'").await, 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM customer_tokens").await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM jobs WHERE kind = 'account.email'").await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 1);
    }
}

/// Three nodes with workers on one PostgreSQL database: every job runs exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_run_every_job_once() {
    if !common::postgres_available().await {
        return;
    }
    let a = TestApp::spawn(Backend::Postgres).await;
    let b = a.spawn_peer().await;
    let c = a.spawn_peer().await;
    let mut tx = a.state.db.begin().await.unwrap();
    for _ in 0..300 {
        enqueue(&mut tx, NewJob::new(NOOP, &()).unwrap()).await.unwrap();
    }
    tx.commit().await.unwrap();
    for _ in 0..400 {
        if a.count("SELECT COUNT(*) FROM jobs WHERE kind = 'noop' AND status = 'succeeded'").await == 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(a.count("SELECT COUNT(*) FROM jobs WHERE kind = 'noop' AND status = 'succeeded'").await, 300);
    // A job claimed twice would show two attempts.
    assert_eq!(a.count("SELECT COUNT(*) FROM jobs WHERE kind = 'noop' AND attempts <> 1").await, 0);
    drop((b, c));
}
