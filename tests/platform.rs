//! The API's conventions, on both databases: problems for every error, limits, headers,
//! request ids, CORS, health, metrics and the OpenAPI document.

mod common;

use common::{Backend, TestApp};
use serde_json::json;

conformance! {
    async fn transactions_stopped_at_any_point_leave_the_database_writable(backend) {
        use backroom::db_execute;
        let app = TestApp::spawn(backend).await;
        let db = app.state.db.clone();
        app.execute("CREATE TABLE stops (n BIGINT NOT NULL)").await;
        // A transaction dropped without a commit is undone.
        let mut tx = db.begin().await.unwrap();
        db_execute!(tx.conn(), |conn| sqlx::query("INSERT INTO stops (n) VALUES (1)").execute(conn).await).unwrap();
        drop(tx);
        // Tasks stopped while beginning, writing or committing, after a few µs or ms.
        for n in 0..60_u64 {
            let db = db.clone();
            let task = tokio::spawn(async move {
                let mut tx = db.begin().await.unwrap();
                db_execute!(tx.conn(), |conn| sqlx::query("INSERT INTO stops (n) VALUES (2)").execute(conn).await).unwrap();
                tx.commit().await.unwrap();
            });
            tokio::time::sleep(std::time::Duration::from_micros(n * 37 % 1_500)).await;
            task.abort();
            let _ = task.await;
        }
        if backend == Backend::Sqlite {
            // Another process holds SQLite's write lock, so `BEGIN IMMEDIATE` waits: a task
            // stopped meanwhile must not leave the writer inside the transaction it began.
            use secrecy::ExposeSecret;
            use sqlx::{ConnectOptions, Connection};
            let url = app.state.config.database_url().expose_secret().to_owned();
            let mut other = url.parse::<sqlx::sqlite::SqliteConnectOptions>().unwrap().connect().await.unwrap();
            sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
            let waiting = {
                let db = db.clone();
                tokio::spawn(async move { db.begin().await.map(drop) })
            };
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            waiting.abort();
            let _ = waiting.await;
            sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
            other.close().await.unwrap();
        }
        let mut tx = db.begin().await.expect("the writer is free and outside any transaction");
        db_execute!(tx.conn(), |conn| sqlx::query("INSERT INTO stops (n) VALUES (3)").execute(conn).await).unwrap();
        tx.commit().await.unwrap();
        assert_eq!(app.count("SELECT COUNT(*) FROM stops WHERE n = 1").await, 0, "dropped, undone");
        assert_eq!(app.count("SELECT COUNT(*) FROM stops WHERE n = 3").await, 1, "committed and seen by readers");
        let stopped = app.count("SELECT COUNT(*) FROM stops WHERE n = 2").await;
        assert!((0..=60).contains(&stopped), "each stopped transaction is either whole or absent");
    }

    async fn batches_answer_each_statement_and_fail_whole(backend) {
        use backroom::platform::batch::Batch;
        use backroom::platform::db::Param;
        let app = TestApp::spawn(backend).await;
        let db = app.state.db.clone();
        app.execute("CREATE TABLE tallies (name TEXT PRIMARY KEY, n BIGINT NOT NULL)").await;
        // Each statement numbers its binds from $1, and answers its own rows and changes;
        // a later one reads what an earlier one wrote.
        let mut batch = Batch::new();
        batch.push(
            "INSERT INTO tallies (name, n) VALUES ($1, $2), ($3, $2)",
            vec![Param::Text("a".into()), Param::Int(5), Param::Text("b".into())],
        );
        batch.push("UPDATE tallies SET n = n + $1 WHERE name = $2 RETURNING n", vec![Param::Int(2), Param::Text("a".into())]);
        batch.push("SELECT name FROM tallies WHERE n = $1 ORDER BY name", vec![Param::Int(5)]);
        let (tx, ran) = db.begin_with(&batch).await.unwrap();
        assert_eq!(ran.len(), 3);
        assert_eq!(ran[0].changed(), 2);
        assert_eq!(ran[1].changed(), 1);
        assert_eq!(ran[1].scalar::<i64>().unwrap(), Some(7));
        assert_eq!(ran[2].rows::<(String,)>().unwrap(), vec![("b".to_owned(),)]);
        // Statements run before the commit, in the same transaction.
        let mut last = Batch::new();
        last.push("UPDATE tallies SET n = n * $1 WHERE name = $2", vec![Param::Int(10), Param::Text("b".into())]);
        let ran = tx.commit_with(&last).await.unwrap();
        assert_eq!(ran[0].changed(), 1);
        assert_eq!(app.count("SELECT n FROM tallies WHERE name = 'b'").await, 50);
        // A statement that fails takes the batch's transaction with it: nothing before it stays.
        let mut failing = Batch::new();
        failing.push("UPDATE tallies SET n = 0 WHERE name = $1", vec![Param::Text("a".into())]);
        failing.push("INSERT INTO tallies (name, n) VALUES ($1, 1)", vec![Param::Text("b".into())]);
        let mut tx = db.begin().await.unwrap();
        tx.run(&failing).await.expect_err("the second statement breaks the key");
        drop(tx);
        let (tx, _) = db.begin_with(&Batch::new()).await.unwrap();
        tx.commit_with(&failing).await.expect_err("the commit's batch fails too");
        assert_eq!(app.count("SELECT n FROM tallies WHERE name = 'a'").await, 7, "rolled back");
        // The writer is free afterwards.
        let mut tx = db.begin().await.unwrap();
        tx.run(&last).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(app.count("SELECT n FROM tallies WHERE name = 'b'").await, 500);
        // Reads and writes of their own: a read sees what was committed before it.
        let mut write = Batch::new();
        write.push("UPDATE tallies SET n = $1 WHERE name = $2", vec![Param::Int(8), Param::Text("a".into())]);
        assert_eq!(db.write_batch(&write).await.unwrap()[0].changed(), 1);
        let mut read = Batch::new();
        read.push("SELECT n FROM tallies WHERE name = $1", vec![Param::Text("a".into())]);
        assert_eq!(db.read_batch(&read).await.unwrap()[0].scalar::<i64>().unwrap(), Some(8));
        // A transaction's statements through sqlx and its batches share one transaction.
        let mut tx = db.begin().await.unwrap();
        backroom::db_execute!(tx.conn(), |conn| sqlx::query("UPDATE tallies SET n = 1 WHERE name = 'a'")
            .execute(conn)
            .await)
        .unwrap();
        assert_eq!(tx.run(&read).await.unwrap()[0].scalar::<i64>().unwrap(), Some(1));
        assert_eq!(db.read_batch(&read).await.unwrap()[0].scalar::<i64>().unwrap(), Some(8), "not yet committed");
        tx.run(&write).await.unwrap();
        backroom::db_execute!(tx.conn(), |conn| sqlx::query("UPDATE tallies SET n = n + 1 WHERE name = 'a'")
            .execute(conn)
            .await)
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(db.read_batch(&read).await.unwrap()[0].scalar::<i64>().unwrap(), Some(9));
    }

    async fn batch_binds_arrive_as_given_whatever_they_hold(backend) {
        use backroom::platform::batch::Batch;
        use backroom::platform::db::Param;
        let app = TestApp::spawn(backend).await;
        let db = app.state.db.clone();
        app.execute("CREATE TABLE kept (k BIGINT PRIMARY KEY, t TEXT, n BIGINT, b BOOLEAN)").await;
        let texts = [
            "plain",
            "it's",
            "''",
            "\\",
            "\\'; DROP TABLE kept; --",
            "E'\\x41'",
            "$1 $$ $tag$ ;",
            "line\nbreak\ttab\r",
            "ünïcødé ✓ 🛒",
            "",
        ];
        // Twice the same statement in one batch, and again in later ones.
        let mut batch = Batch::new();
        for (k, text) in texts.iter().enumerate() {
            batch.push(
                "INSERT INTO kept (k, t, n, b) VALUES ($1, $2, $3, $4) RETURNING t, n",
                vec![Param::Int(k as i64), Param::Text((*text).to_owned()), Param::Int(-(k as i64)), Param::Bool(k % 2 == 0)],
            );
        }
        batch.push(
            "INSERT INTO kept (k, t, n, b) VALUES ($1, $2, $3, $4) RETURNING t, n",
            vec![Param::Int(100), Param::MaybeText(None), Param::MaybeInt(Some(i64::MIN)), Param::Bool(true)],
        );
        batch.push(
            "INSERT INTO kept (k, t, n, b) VALUES ($1, $2, $3, $4) RETURNING t, n",
            vec![Param::Int(101), Param::MaybeText(Some("x".into())), Param::MaybeInt(None), Param::Bool(false)],
        );
        let ran = db.write_batch(&batch).await.unwrap();
        for (k, text) in texts.iter().enumerate() {
            assert_eq!(ran[k].rows::<(Option<String>, Option<i64>)>().unwrap(), vec![(Some((*text).to_owned()), Some(-(k as i64)))]);
        }
        assert_eq!(ran[texts.len()].rows::<(Option<String>, Option<i64>)>().unwrap(), vec![(None, Some(i64::MIN))]);
        assert_eq!(ran[texts.len() + 1].rows::<(Option<String>, Option<i64>)>().unwrap(), vec![(Some("x".into()), None)]);
        let mut read = Batch::new();
        for text in &texts {
            read.push("SELECT k, b FROM kept WHERE t = $1", vec![Param::Text((*text).to_owned())]);
        }
        let found = db.read_batch(&read).await.unwrap();
        for (k, rows) in found.iter().enumerate() {
            assert_eq!(rows.rows::<(i64, bool)>().unwrap(), vec![(k as i64, k % 2 == 0)], "{:?}", texts[k]);
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM kept").await, texts.len() as i64 + 2);

        // Many different statements on one connection, then the first ones again; and a
        // statement that fails to prepare leaves the connection's others working.
        let mut tx = db.begin().await.unwrap();
        for round in 0..2 {
            for n in 0..300_i64 {
                let mut one = Batch::new();
                one.push(format!("SELECT n + {n} FROM kept WHERE k = $1"), vec![Param::Int(1)]);
                assert_eq!(tx.run(&one).await.unwrap()[0].scalar::<i64>().unwrap(), Some(n - 1), "round {round}");
            }
        }
        tx.commit().await.unwrap();
        // The statement after the one that failed was never prepared, nor run.
        let after = ("SELECT n FROM kept WHERE k = $1", vec![Param::Int(2)]);
        let mut broken = Batch::new();
        broken.push("SELECT nothing FROM nowhere WHERE k = $1", vec![Param::Int(2)]);
        broken.push(after.0, after.1.clone());
        for _ in 0..3 {
            db.read_batch(&broken).await.expect_err("no such table");
            let mut alone = Batch::new();
            alone.push(after.0, after.1.clone());
            alone.push("SELECT k FROM kept WHERE k = $1", vec![Param::Int(3)]);
            let ran = db.read_batch(&alone).await.unwrap();
            assert_eq!(ran[0].scalar::<i64>().unwrap(), Some(-2));
            assert_eq!(db.read_batch(&read).await.unwrap()[1].rows::<(i64, bool)>().unwrap(), vec![(1, false)]);
        }
        if backend == Backend::Postgres {
            // PostgreSQL takes no NUL in a text, whichever way it is sent; the connection
            // goes on working.
            let mut nul = Batch::new();
            nul.push("SELECT k FROM kept WHERE t = $1", vec![Param::Text("a\0b".into())]);
            db.read_batch(&nul).await.expect_err("a NUL in a text");
            assert_eq!(db.read_batch(&read).await.unwrap().len(), texts.len());
        }
    }

    async fn an_unknown_route_is_a_404_problem(backend) {
        let app = TestApp::spawn(backend).await;
        let resp = app.get("/api/v1/nothing/here", &[]).await;
        resp.problem(404, "not_found");
    }

    async fn a_wrong_method_is_a_405_problem_with_allow(backend) {
        let app = TestApp::spawn(backend).await;
        let resp = app.delete("/health/live", &[]).await;
        resp.problem(405, "method_not_allowed");
        assert!(resp.header("allow").is_some_and(|allow| allow.contains("GET")));
    }

    async fn a_body_over_the_limit_is_a_413_problem_and_creates_nothing(backend) {
        let app = TestApp::spawn_with(backend, |config| config.http.body_limit_bytes = 4096).await;
        let body = json!({"email": "big@example.com", "password": "x".repeat(5000)});
        let resp = app.post("/api/v1/store/customers", body, &[]).await;
        resp.problem(413, "payload_too_large");
        assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 0);
    }

    async fn a_non_json_body_is_a_415_problem(backend) {
        let app = TestApp::spawn(backend).await;
        let resp = app
            .client
            .post(app.url("/api/v1/store/customers"))
            .header("content-type", "text/plain")
            .body("email=a@b.c")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 415);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "unsupported_media_type");
    }

    async fn malformed_json_is_a_400_problem(backend) {
        let app = TestApp::spawn(backend).await;
        for body in ["{\"email\": ", "{\"email\": \"a@b.co\"} trailing", "\u{0}"] {
            let resp = app
                .client
                .post(app.url("/api/v1/store/customers"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 400, "for {body:?}");
            let problem: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(problem["code"], "malformed_json");
        }
    }

    async fn a_wrongly_shaped_body_names_the_field(backend) {
        let app = TestApp::spawn(backend).await;
        let resp = app.post("/api/v1/store/customers", json!({"email": 42, "password": "long enough pass"}), &[]).await;
        resp.problem(422, "validation_failed");
        assert_eq!(resp.error_fields(), ["email"]);
        let resp = app.post("/api/v1/store/customers", json!({"email": "ana@example.com"}), &[]).await;
        resp.problem(422, "validation_failed");
        assert_eq!(resp.error_fields(), ["password"]);
        assert_eq!(resp.body["errors"][0]["code"], "required");
    }

    async fn validation_names_every_failing_field(backend) {
        let app = TestApp::spawn(backend).await;
        let body = json!({"email": "not-an-email", "password": "short", "first_name": "x".repeat(101), "phone": "call me"});
        let resp = app.post("/api/v1/store/customers", body, &[]).await;
        resp.problem(422, "validation_failed");
        let mut fields = resp.error_fields();
        fields.sort();
        assert_eq!(fields, ["email", "first_name", "password", "phone"]);
        assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 0);
    }

    async fn every_response_carries_security_headers_and_a_request_id(backend) {
        let app = TestApp::spawn(backend).await;
        for resp in [app.get("/health/live", &[]).await, app.get("/missing", &[]).await] {
            assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
            assert_eq!(resp.header("x-frame-options"), Some("DENY"));
            assert_eq!(resp.header("referrer-policy"), Some("strict-origin-when-cross-origin"));
            assert!(resp.header("content-security-policy").is_some_and(|csp| csp.contains("frame-ancestors 'none'")));
            assert_eq!(resp.header("x-request-id").map(str::len), Some(26));
        }
        let resp = app.get("/health/live", &[("x-request-id", "trace-me-123")]).await;
        assert_eq!(resp.header("x-request-id"), Some("trace-me-123"));
        let resp = app.get("/health/live", &[("x-request-id", "")]).await;
        assert_eq!(resp.header("x-request-id").map(str::len), Some(26));
    }

    async fn cors_answers_only_allowed_origins(backend) {
        let app = TestApp::spawn_with(backend, |config| {
            config.http.cors_allowed_origins = vec!["https://shop.example".into()];
        })
        .await;
        let preflight = |origin: &'static str| {
            app.client
                .request(reqwest::Method::OPTIONS, app.url("/api/v1/store/customers"))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type,x-csrf-token")
                .send()
        };
        let allowed = preflight("https://shop.example").await.unwrap();
        assert_eq!(allowed.headers()["access-control-allow-origin"], "https://shop.example");
        assert_eq!(allowed.headers()["access-control-allow-credentials"], "true");
        let refused = preflight("https://evil.example").await.unwrap();
        assert!(refused.headers().get("access-control-allow-origin").is_none());
    }

    async fn a_request_past_the_timeout_is_stopped_with_a_503_problem(backend) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let app = TestApp::spawn_with(backend, |config| config.http.request_timeout_secs = 1).await;
        // A body that never finishes arriving keeps the handler waiting.
        let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
        let head = "POST /api/v1/store/customers HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                    content-length: 100\r\nconnection: close\r\n\r\n{\"email\"";
        stream.write_all(head.as_bytes()).await.unwrap();
        let started = std::time::Instant::now();
        let mut answer = String::new();
        tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_string(&mut answer)).await.unwrap().unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_millis(900));
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("application/problem+json") && answer.contains("\"code\":\"timeout\""), "{answer}");
        assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 0);
    }

    async fn health_and_readiness_answer(backend) {
        let app = TestApp::spawn(backend).await;
        let live = app.get("/health/live", &[]).await;
        assert_eq!(live.status, 200);
        assert_eq!(live.body["status"], "ok");
        let ready = app.get("/health/ready", &[]).await;
        assert_eq!(ready.status, 200);
        let expected = if backend == Backend::Sqlite { "sqlite" } else { "postgres" };
        assert_eq!(ready.body["database"], expected);
    }

    async fn readiness_fails_when_the_database_is_gone(backend) {
        let app = TestApp::spawn(backend).await;
        app.state.db.close().await;
        let resp = app.get("/health/ready", &[]).await;
        resp.problem(503, "unavailable");
        assert!(resp.header("retry-after").is_some());
        assert_eq!(app.get("/health/live", &[]).await.status, 200);
    }

    async fn metrics_count_requests_by_route_and_status(backend) {
        let app = TestApp::spawn(backend).await;
        app.get("/health/live", &[]).await;
        app.get("/no/such/route", &[]).await;
        let resp = app.get("/metrics", &[]).await;
        assert_eq!(resp.status, 200);
        assert!(resp.header("content-type").unwrap().starts_with("text/plain"));
        let text = &resp.text;
        let count = "http_request_duration_seconds_count{";
        assert!(text.lines().any(|l| l.starts_with(count) && l.contains("route=\"/health/live\"") && l.contains("status=\"200\"")), "{text}");
        assert!(text.lines().any(|l| l.starts_with(count) && l.contains("route=\"unmatched\"") && l.contains("status=\"404\"")), "{text}");
        assert!(text.contains("http_request_duration_seconds_bucket{"));
        assert!(text.contains("db_pool_connections{"));
        assert!(text.contains("process_resident_memory_bytes"));
    }

    async fn the_openapi_document_describes_every_endpoint(backend) {
        let app = TestApp::spawn(backend).await;
        let resp = app.get("/api/openapi.json", &[]).await;
        assert_eq!(resp.status, 200);
        let doc = &resp.body;
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/api/v1/store/customers",
            "/api/v1/store/auth/sessions",
            "/api/v1/store/customers/me",
            "/api/v1/store/auth/password-reset",
            "/api/v1/admin/staff/{id}",
            "/api/v1/admin/api-keys",
            "/health/ready",
            "/metrics",
        ] {
            assert!(paths.contains_key(path), "{path} is missing from the OpenAPI document");
        }
        assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
        assert!(doc["components"]["schemas"]["Problem"].is_object());
    }

    async fn the_docs_page_is_served_by_the_binary(backend) {
        let app = TestApp::spawn(backend).await;
        let page = app.get("/api/docs", &[]).await;
        assert_eq!(page.status, 200);
        assert!(page.text.contains("/api/docs/swagger-ui-bundle.js"));
        assert!(!page.text.contains("http://") && !page.text.contains("https://"), "no CDN");
        let csp = page.header("content-security-policy").unwrap();
        assert!(csp.contains("script-src 'self'"));
        for asset in ["/api/docs/swagger-ui-bundle.js", "/api/docs/swagger-ui.css", "/api/docs/init.js"] {
            let resp = app.get(asset, &[]).await;
            assert_eq!(resp.status, 200, "{asset}");
            assert!(resp.text.len() > 100, "{asset}");
        }
    }
}

/// SQLite's write-ahead log is copied back into the database and started over while the shop
/// writes and reads without a pause, so that it does not grow with every write since the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_stays_bounded_under_steady_writes_and_reads() {
    use backroom::platform::batch::Batch;
    use backroom::platform::db::Param;
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.execute("CREATE TABLE filler (slot INTEGER PRIMARY KEY, body TEXT NOT NULL)").await;
    let wal = app.data_dir().join("backroom.db-wal");
    let log_size = || std::fs::metadata(&wal).map_or(0, |meta| meta.len());
    // How many times the log has started over: its header's checkpoint sequence number
    // (bytes 12 to 16, big-endian; sqlite.org/fileformat.html, "WAL File Format").
    let restarts = || {
        use std::io::Read;
        let mut header = [0u8; 16];
        let read = std::fs::File::open(&wal).and_then(|mut file| file.read_exact(&mut header));
        read.map_or(0, |()| u32::from_be_bytes([header[12], header[13], header[14], header[15]]))
    };
    let db = app.state.db.clone();
    let reading = tokio::spawn(async move {
        let mut read = Batch::new();
        read.push("SELECT COUNT(*) FROM filler WHERE body <> $1", vec![Param::Text(String::new())]);
        loop {
            db.read_batch(&read).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    // 64 KiB a write, a millisecond apart (up to 64 MB/s, about what 300 checkouts a second
    // write to the log), over 16 rows in turn (the database stays small, the log takes every
    // write), until 128 MiB went through the log and it started over twice.
    const WRITE: u64 = 64 * 1024;
    let body = "x".repeat(WRITE as usize);
    let mut written: u64 = 0;
    let mut first = None;
    let mut largest = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(60) {
        let mut batch = Batch::new();
        batch.push(
            "INSERT OR REPLACE INTO filler (slot, body) VALUES ($1, $2)",
            vec![Param::Int((written % 16) as i64), Param::Text(body.clone())],
        );
        app.state.db.write_batch(&batch).await.unwrap();
        written += 1;
        largest = largest.max(log_size());
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        let first = *first.get_or_insert_with(restarts);
        if written * WRITE >= 128 << 20 && restarts() >= first + 2 {
            break;
        }
    }
    reading.abort();
    let first = first.unwrap_or_default();
    assert!(restarts() >= first + 2, "the log started over {} times in 60 s", restarts() - first);
    // Written over from its start rather than grown with every write.
    assert!(written * WRITE >= 128 << 20, "{written} writes in 60 s");
    assert!(largest < written * WRITE / 2, "the log's file reached {largest} bytes");
    assert_eq!(app.count("SELECT COUNT(*) FROM filler").await, 16);
}

/// What a write puts in SQLite's log is copied into the database soon after it, also when
/// nothing is written after it: the log's checkpointer, idle once all of the log is copied,
/// wakes for each write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_reaches_the_database_file_soon_after_with_nothing_written_after_it() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let index = app.data_dir().join("backroom.db-shm");
    // The log's last frame and the last one copied into the database: the log index's
    // `mxFrame` (bytes 16 to 20) and `nBackfill` (bytes 96 to 100), in the machine's byte order
    // (sqlite.org/walformat.html, "The WAL-Index Header").
    let frames = || {
        let bytes = std::fs::read(&index).expect("the log's index");
        let word = |at: usize| u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        (word(16), word(96))
    };
    let copied_soon = || async {
        for _ in 0..100 {
            let (last, copied) = frames();
            if last > 0 && copied == last {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    };
    app.execute("CREATE TABLE notes (body TEXT NOT NULL)").await;
    assert!(copied_soon().await, "the log's frames and those copied: {:?}", frames());
    // Idle now, and then one write.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let before = frames();
    app.execute("INSERT INTO notes (body) VALUES ('one')").await;
    assert_ne!(frames(), before, "the write went to the log");
    assert!(copied_soon().await, "the log's frames and those copied: {:?}", frames());
    assert_eq!(app.count("SELECT COUNT(*) FROM notes").await, 1);
}

/// PostgreSQL's connections are handed back to the pool without a word to the server: one
/// the server has ended is still found out and replaced, and a transaction left open is rolled
/// back before its locks can hold anyone up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_the_server_ended_are_replaced_and_open_transactions_rolled_back() {
    use backroom::db_execute;
    if !common::postgres_available().await {
        return;
    }
    let app = TestApp::spawn(Backend::Postgres).await;
    let database = app.count("SELECT CAST(oid AS BIGINT) FROM pg_database WHERE datname = current_database()").await;
    // Ended from a connection of the test's own, so that every one of the app's goes.
    let end_sessions = || async {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&common::postgres_url()).await.unwrap();
        let ended: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datid = {database} AND application_name = 'backroom') AS ended"
        ))
        .fetch_one(&mut admin)
        .await
        .unwrap();
        admin.close().await.unwrap();
        assert!(ended >= 2, "the app had connections open, and its listener");
    };
    // Looking up a cart reads the database: 404 for one that does not exist.
    let missing_cart = format!("/api/v1/store/carts/cart_{}", ulid::Ulid::new().to_string().to_lowercase());
    let look_up_carts = |n: usize| {
        let (app, path) = (&app, &missing_cart);
        async move {
            let mut failed = 0;
            let mut statuses = Vec::new();
            for _ in 0..n {
                let status = app.get(path, &[]).await.status;
                failed += usize::from(status != 404);
                statuses.push(status);
            }
            (failed, statuses)
        }
    };
    // Lookups at once, so that the pool holds several connections.
    let busy: Vec<_> = (0..8).map(|_| app.get(&missing_cart, &[])).collect();
    for answer in futures_util::future::join_all(busy).await {
        assert_eq!(answer.status, 404);
    }
    // Once the server has ended them, each of the four connections may fail the one request
    // that finds it so, and is then replaced: a connection kept would fail every request.
    end_sessions().await;
    let (failed, statuses) = look_up_carts(40).await;
    assert!(failed <= 4, "{failed} requests failed: {statuses:?}");

    // A transaction dropped holding a row's lock: the next writer of that row is not kept
    // waiting for it.
    app.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, n BIGINT NOT NULL)").await;
    app.execute("INSERT INTO counters (name, n) VALUES ('a', 0)").await;
    let db = app.state.db.clone();
    let mut tx = db.begin().await.unwrap();
    db_execute!(tx.conn(), |conn| sqlx::query("UPDATE counters SET n = n + 1 WHERE name = 'a'").execute(conn).await)
        .unwrap();
    drop(tx);
    let mut tx = db.begin().await.unwrap();
    db_execute!(tx.conn(), |conn| sqlx::query("SET LOCAL lock_timeout = '2s'").execute(conn).await).unwrap();
    db_execute!(tx.conn(), |conn| sqlx::query("UPDATE counters SET n = n + 10 WHERE name = 'a'").execute(conn).await)
        .expect("the dropped transaction's lock is gone");
    tx.commit().await.unwrap();
    assert_eq!(app.count("SELECT n FROM counters WHERE name = 'a'").await, 10);
}
