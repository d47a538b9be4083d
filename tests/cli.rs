//! The `backroom` binary as an operator runs it: configuration checks, migrations, serving,
//! JSON logs with request ids, and graceful shutdown.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn backroom(data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backroom"));
    command
        .env("BACKROOM_DATA_DIR", data_dir)
        .env("BACKROOM_CONFIG", data_dir.join("backroom.toml"))
        .env_remove("BACKROOM_DATABASE_URL")
        .env_remove("RUST_LOG");
    command
}

#[test]
fn config_check_names_the_bad_setting() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        backroom(dir.path()).args(["config", "check"]).env("BACKROOM_HTTP__BODY_LIMIT_BYTES", "10").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("http.body_limit_bytes"), "{stderr}");

    std::fs::write(dir.path().join("backroom.toml"), "listen = \"127.0.0.1:9000\"\n[http]\nbody_limit = 5\n").unwrap();
    let out = backroom(dir.path()).args(["config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("body_limit"), "an unknown key is named: {stderr}");

    std::fs::write(dir.path().join("backroom.toml"), "listen = \"not an address\"\n").unwrap();
    let out = backroom(dir.path()).args(["config", "check"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen"));

    std::fs::write(dir.path().join("backroom.toml"), "listen = \"127.0.0.1:9000\"\n").unwrap();
    let out = backroom(dir.path()).args(["config", "check"]).env("BACKROOM_SHOP_NAME", "Corner Shop").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("127.0.0.1:9000") && stdout.contains("Corner Shop"), "file then environment: {stdout}");
}

#[test]
fn secrets_never_appear_in_config_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = backroom(dir.path())
        .args(["config", "check"])
        .env("BACKROOM_DATABASE_URL", "postgres://shop:hunter2secret@db.example/shop")
        .output()
        .unwrap();
    assert!(out.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("hunter2secret"), "{all}");
    assert!(all.contains("REDACTED"));
}

#[test]
fn migrate_creates_the_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = backroom(dir.path()).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("backroom.db").exists());
    let again = backroom(dir.path()).arg("migrate").output().unwrap();
    assert!(again.status.success(), "migrating twice is harmless");
}

#[tokio::test]
async fn migrate_and_admin_create_work_on_postgres() {
    if !common::postgres_available().await {
        return;
    }
    let (name, url) = common::create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let out = backroom(dir.path()).arg("migrate").env("BACKROOM_DATABASE_URL", &url).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("postgres"));
    let mut child = backroom(dir.path())
        .args(["admin", "create", "--email", "pg@example.com"])
        .env("BACKROOM_DATABASE_URL", &url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "a long owner passphrase").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("backroom.db").exists(), "nothing went to SQLite");
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let owners: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM staff_users WHERE role = 'owner'").fetch_one(&mut conn).await.unwrap();
    assert_eq!(owners, 1);
    drop(conn.close().await);
    common::drop_database(&name).await;
}

#[test]
fn openapi_prints_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let out = backroom(dir.path()).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/api/v1/store/customers/me"].is_object());
}

struct Server {
    child: Child,
    address: String,
    stderr: BufReader<std::process::ChildStderr>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `backroom serve` on a free port with JSON logs and waits for its address line.
fn serve(data_dir: &std::path::Path) -> Server {
    serve_with(data_dir, &[]).0
}

/// `backroom serve` with more arguments; also returns what it printed before its address.
fn serve_with(data_dir: &std::path::Path, args: &[&str]) -> (Server, String) {
    serve_on(data_dir, args, None)
}

/// `backroom serve` on `database_url` when given (else SQLite in `data_dir`).
fn serve_on(data_dir: &std::path::Path, args: &[&str], database_url: Option<&str>) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = backroom(data_dir);
    if let Some(url) = database_url {
        command.env("BACKROOM_DATABASE_URL", url);
    }
    let mut child = command
        .arg("serve")
        .args(args)
        .env("BACKROOM_LISTEN", format!("127.0.0.1:{port}"))
        .env("BACKROOM_LOG__FORMAT", "json")
        .env("BACKROOM_LOG__LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut before = String::new();
    loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the address is printed: {before}");
        if line.contains(&format!("http://127.0.0.1:{port}")) {
            break;
        }
        before.push_str(&line);
    }
    let stderr = BufReader::new(child.stderr.take().unwrap());
    (Server { child, address: format!("127.0.0.1:{port}"), stderr }, before)
}

/// The JSON body of a GET.
fn get_json(address: &str, path: &str) -> serde_json::Value {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap_or_else(|err| panic!("{err}: {body}"))
}

fn terminate(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the server did not stop within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_logs_json_with_request_ids_and_finishes_in_flight_requests_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path());

    // A request whose body is still arriving when the signal comes.
    let body = br#"{"email":"late@example.com","password":"correct horse battery"}"#;
    let mut stream = TcpStream::connect(&server.address).unwrap();
    write!(
        stream,
        "POST /api/v1/store/customers HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-request-id: graceful-1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    terminate(&server.child);
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.child.try_wait().unwrap().is_none(), "the server waits for the request in flight");
    stream.write_all(&body[10..]).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    let status = wait_exit(&mut server.child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let mut logs = String::new();
    server.stderr.read_to_string(&mut logs).unwrap();
    let request_line = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| entry["span"]["request.id"] == "graceful-1" && entry["message"] == "request")
        .unwrap_or_else(|| panic!("a JSON log line for the request: {logs}"));
    assert_eq!(request_line["span"]["http.route"], "/api/v1/store/customers");
    assert_eq!(request_line["http.status"], 202);
    assert!(request_line["latency_ms"].is_number());
    assert!(!logs.contains("correct horse battery"), "no secrets in logs");
}

/// The process killed in the middle of a burst of registrations and their email jobs: after
/// a restart every customer that exists has their email, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_cut_short_by_a_kill_complete_after_restart_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let client = reqwest::Client::new();
    let mut burst = tokio::task::JoinSet::new();
    for n in 0..18 {
        let (client, url) = (client.clone(), format!("http://{}/api/v1/store/customers", server.address));
        burst.spawn(async move {
            let body = serde_json::json!({"email": format!("c{n}@example.com"), "password": "correct horse battery"});
            client.post(url).json(&body).send().await.map(|r| r.status().as_u16()).ok()
        });
    }
    // No grace: SIGKILL while requests, transactions and email jobs are in flight, once the
    // first customer is written (however long hashing takes on a busy machine).
    let database = format!("sqlite://{}", dir.path().join("backroom.db").display());
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&database).await.unwrap();
    for _ in 0..400 {
        let written: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM customers").fetch_one(&mut db).await.unwrap();
        if written > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    drop(server);
    let answered = burst.join_all().await;
    assert!(answered.iter().any(Option::is_none) || answered.iter().all(|s| *s == Some(202)));

    let server = serve(dir.path());
    let customers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM customers").fetch_one(&mut db).await.unwrap();
    let mail_dir = dir.path().join("mail");
    let eml = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&mail_dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.extension().is_some_and(|ext| ext == "eml"))
            .collect()
    };
    for _ in 0..200 {
        if eml().len() as i64 >= customers {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut recipients: Vec<String> = eml()
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.lines().find_map(|l| l.strip_prefix("To: ")).unwrap().to_owned()
        })
        .collect();
    let files = recipients.len();
    recipients.sort();
    recipients.dedup();
    assert!(customers > 0);
    assert_eq!(recipients.len() as i64, customers, "every customer got their email");
    assert_eq!(files, recipients.len(), "no email twice");
    let unfinished: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status <> 'succeeded'").fetch_one(&mut db).await.unwrap();
    assert_eq!(unfinished, 0);
    drop(server);
}

#[test]
fn products_go_out_and_back_in_as_csv_without_change() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.csv");
    std::fs::write(
        &file,
        "handle,title,description,status,tags,option1_name,option1_value,sku,inventory,price_EUR,price_GBP\n\
         mug,Mug,\"=HYPERLINK(\"\"x\"\")\",published,\"kitchen, gifts\",Colour,Blue,MUG-B,7,1200,1000\n\
         mug,,,,,,Green,MUG-G,0,1200,\n\
         tote,Tote,,draft,,,,,,900,\n",
    )
    .unwrap();
    let out = backroom(dir.path()).args(["import", "products"]).arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("2 created"), "{stderr}");

    let exported = dir.path().join("out.csv");
    let out = backroom(dir.path()).args(["export", "products", "--output"]).arg(&exported).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&exported).unwrap();
    assert!(text.starts_with("handle,title,description,status"), "{text}");
    assert!(text.contains("'=HYPERLINK"), "formulas are defused: {text}");
    assert_eq!(text.lines().count(), 4, "a header and one row per variant: {text}");

    let out = backroom(dir.path()).args(["import", "products"]).arg(&exported).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("2 unchanged"),
        "what export writes, import leaves alone: {stderr}"
    );
    let again = backroom(dir.path()).args(["export", "products"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&again.stdout), text);

    // A bad file: the row and column of each problem, a failing exit, and nothing written.
    std::fs::write(&file, "handle,title,sku,price_EUR\nlamp,Lamp,LAMP-1,lots\n").unwrap();
    let out = backroom(dir.path()).args(["import", "products", "--dry-run"]).arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("row 2, column price_EUR"), "{stderr}");
    let after = backroom(dir.path()).args(["export", "products"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&after.stdout), text);
}

#[test]
fn serve_demo_opens_a_living_shop_once() {
    let dir = tempfile::tempdir().unwrap();
    let (server, printed) = serve_with(dir.path(), &["--demo"]);
    assert!(printed.contains("Seeded a sample shop"), "{printed}");
    let list = get_json(&server.address, "/api/v1/store/products?limit=1");
    assert_eq!(list["total"], 240);
    let product = &list["data"][0];
    assert!(product["variants"].as_array().unwrap().len() >= 2 && product["categories"][0].is_string(), "{product}");
    let picture = product["images"][0]["sizes"][0]["url"].as_str().unwrap_or_else(|| panic!("a picture: {product}"));
    let mut stream = TcpStream::connect(&server.address).unwrap();
    write!(stream, "GET {picture} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let head = String::from_utf8_lossy(&answer[..200.min(answer.len())]).to_lowercase();
    assert!(head.starts_with("http/1.1 200") && head.contains("image/webp"), "{head}");
    let tree = get_json(&server.address, "/api/v1/store/categories");
    assert_eq!(tree.as_array().unwrap().len(), 4);
    assert!(tree[0]["product_count"].as_u64().unwrap() > 50, "{tree}");
    assert_eq!(get_json(&server.address, "/api/v1/store/collections").as_array().unwrap().len(), 3);
    // The site too: its name, pages, a blog, and menus that lead to them.
    assert_eq!(get_json(&server.address, "/api/v1/store/site")["name"], "Oak & Thread");
    let posts = get_json(&server.address, "/api/v1/store/posts");
    assert_eq!(posts["data"].as_array().unwrap().len(), 3);
    assert_eq!(posts["data"][0]["slug"], "the-autumn-collection-is-here");
    let about = get_json(&server.address, "/api/v1/store/pages/about");
    assert!(about["body_html"].as_str().unwrap().starts_with("<p>Oak &amp; Thread makes clothes"), "{about}");
    let main = get_json(&server.address, "/api/v1/store/menus/main");
    let urls: Vec<&str> = main["items"].as_array().unwrap().iter().map(|item| item["url"].as_str().unwrap()).collect();
    assert_eq!(urls.len(), 7, "{main}");
    assert!(urls[1].starts_with("/categories/") && urls.ends_with(&["/blog", "/pages/about"]), "{main}");
    assert_eq!(get_json(&server.address, "/api/v1/store/menus/footer")["items"].as_array().unwrap().len(), 4);
    let search = get_json(&server.address, "/api/v1/store/search?q=cotton&limit=5");
    assert!(
        search["total"].as_u64().unwrap() > 0 && search["facets"]["categories"].as_array().unwrap().len() > 1,
        "{search}"
    );
    drop(server);

    // The shop is seeded once: a second start leaves it as it is.
    let (server, printed) = serve_with(dir.path(), &["--demo"]);
    assert!(!printed.contains("Seeded"), "{printed}");
    assert_eq!(get_json(&server.address, "/api/v1/store/products?limit=1")["total"], 240);
}

/// A burst of checkouts cut short by SIGKILL: after the restart every acknowledged order is
/// there, and orders, stock movements, stock levels and payments agree.
async fn checkouts_cut_by_a_kill(database_url: Option<&str>) {
    use backroom::db_run;
    use serde_json::{Value, json};

    let dir = tempfile::tempdir().unwrap();
    let (server, _) = serve_on(dir.path(), &["--demo"], database_url);
    let base = format!("http://{}/api/v1/store", server.address);
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Value| {
        let (client, url) = (client.clone(), format!("{base}{path}"));
        async move {
            let resp = client.request(method, url).json(&body).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (_, list) = call(reqwest::Method::GET, "/products?available=true&limit=40".into(), Value::Null).await;
    let variants: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["variants"].as_array().unwrap().iter())
        .filter(|v| v["availability"] == "in_stock")
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(variants.len() >= 10, "{list}");
    let mut carts = Vec::new();
    for n in 0..40 {
        let (_, cart) = call(reqwest::Method::POST, "/carts".into(), json!({})).await;
        let id = cart["id"].as_str().unwrap().to_owned();
        for variant in [&variants[n % variants.len()], &variants[(n * 7 + 3) % variants.len()]] {
            call(reqwest::Method::POST, format!("/carts/{id}/lines"), json!({"variant_id": variant, "quantity": 1}))
                .await;
        }
        let address = json!({"first_name": "Ana", "last_name": "Silva", "line1": "5 rue Saint-Denis", "city": "Paris",
            "postcode": "75001", "country": "FR"});
        let (_, set) = call(
            reqwest::Method::PATCH,
            format!("/carts/{id}"),
            json!({"email": "ana@example.com", "shipping_address": address}),
        )
        .await;
        let method = set["shipping_options"][0]["id"].clone();
        call(reqwest::Method::PATCH, format!("/carts/{id}"), json!({"shipping_method_id": method})).await;
        carts.push(id);
    }
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut burst = tokio::task::JoinSet::new();
    for (n, cart) in carts.iter().enumerate() {
        let (client, url) = (client.clone(), format!("{base}/carts/{cart}/complete"));
        let acknowledged = acknowledged.clone();
        burst.spawn(async move {
            let body = json!({"payment": {"provider": "test", "card_number": "4242424242424242"}});
            let sent = client.post(url).header("idempotency-key", format!("burst-{n}")).json(&body).send().await;
            if let Ok(resp) = sent
                && resp.status() == 201
                && let Ok(order) = resp.json::<Value>().await
            {
                acknowledged.lock().unwrap().push(order["id"].as_str().unwrap().to_owned());
            }
        });
    }
    // No grace: SIGKILL once a few orders are acknowledged and others are in flight.
    for _ in 0..400 {
        if acknowledged.lock().unwrap().len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(server);
    burst.join_all().await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 5, "orders were placed before the kill");
    eprintln!("{} of {} checkouts were acknowledged before the kill", acknowledged.len(), carts.len());

    let (server, _) = serve_on(dir.path(), &[], database_url);
    let mut config = backroom::platform::config::Config { data_dir: dir.path().to_path_buf(), ..Default::default() };
    config.database_url = database_url.map(|url| url.to_owned().into());
    let db = backroom::platform::db::Db::connect(&config).await.unwrap();
    let orders: Vec<(String, String, i64)> = db_run!(db.read().await.unwrap(), |conn| {
        sqlx::query_as("SELECT id, cart_id, total FROM orders").fetch_all(conn).await
    })
    .unwrap();
    for id in &acknowledged {
        assert!(orders.iter().any(|(order, _, _)| order == id), "acknowledged order {id} is there");
    }
    // Each order's lines were sold, once, and nothing else was.
    let lines: Vec<(String, String, i64)> = db_run!(db.read().await.unwrap(), |conn| {
        sqlx::query_as(
            "SELECT o.cart_id, l.variant_id, l.quantity FROM order_lines l JOIN orders o ON o.id = l.order_id",
        )
        .fetch_all(conn)
        .await
    })
    .unwrap();
    let sold: Vec<(Option<String>, String, i64)> = db_run!(db.read().await.unwrap(), |conn| {
        sqlx::query_as("SELECT reference, variant_id, -quantity FROM inventory_movements WHERE kind = 'sold'")
            .fetch_all(conn)
            .await
    })
    .unwrap();
    let mut expected: Vec<(String, String, i64)> = lines;
    let mut found: Vec<(String, String, i64)> = sold
        .into_iter()
        .map(|(reference, variant, quantity)| (reference.unwrap_or_default(), variant, quantity))
        .collect();
    expected.sort();
    found.sort();
    assert_eq!(expected, found, "stock movements agree with the orders");
    // Each order has its one payment, captured for its total; no money was taken without one.
    let payments: Vec<(Option<String>, String, i64)> = db_run!(db.read().await.unwrap(), |conn| {
        sqlx::query_as("SELECT order_id, status, captured_amount FROM payments").fetch_all(conn).await
    })
    .unwrap();
    for (order, _, total) in &orders {
        let of: Vec<_> = payments.iter().filter(|(id, _, _)| id.as_deref() == Some(order.as_str())).collect();
        assert_eq!(of.len(), 1, "order {order} has one payment");
        assert_eq!((of[0].1.as_str(), of[0].2), ("captured", *total));
    }
    assert!(payments.iter().all(|(order, status, _)| order.is_some() || status != "captured"));
    // The levels are the ledger's sums, and hold exactly the active reservations.
    let levels: Vec<(String, i64, i64, i64, i64)> = db_run!(db.read().await.unwrap(), |conn| {
        sqlx::query_as(
            "SELECT l.variant_id, l.on_hand, l.reserved, \
             CAST(COALESCE((SELECT SUM(m.quantity) FROM inventory_movements m WHERE m.variant_id = l.variant_id \
               AND m.location_id = l.location_id), 0) AS BIGINT), \
             CAST(COALESCE((SELECT SUM(r.quantity) FROM inventory_reservations r WHERE r.variant_id = l.variant_id \
               AND r.location_id = l.location_id AND r.status = 'active'), 0) AS BIGINT) \
             FROM inventory_levels l",
        )
        .fetch_all(conn)
        .await
    })
    .unwrap();
    for (variant, on_hand, reserved, ledger, held) in levels {
        assert_eq!((on_hand, reserved), (ledger, held), "variant {variant}");
        assert!(on_hand >= 0);
    }
    let orphaned: i64 = db_run!(db.read().await.unwrap(), |conn| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM carts WHERE status = 'completed' AND order_id NOT IN (SELECT id FROM orders)",
        )
        .fetch_one(conn)
        .await
    })
    .unwrap();
    assert_eq!(orphaned, 0);
    db.close().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_cut_by_a_kill_lose_nothing_on_sqlite() {
    checkouts_cut_by_a_kill(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_cut_by_a_kill_lose_nothing_on_postgres() {
    if !common::postgres_available().await {
        return;
    }
    let (name, url) = common::create_database().await;
    checkouts_cut_by_a_kill(Some(&url)).await;
    common::drop_database(&name).await;
}
