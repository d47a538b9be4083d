//! The ceiling for Backroom's benchmarks: the least an axum server can do per request.
//!
//! Usage: `backroom-bench-ceiling PORT` (listens on 127.0.0.1 only).

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: backroom-bench-ceiling PORT");
        std::process::exit(2);
    });
    let app = Router::new().route("/", get(|| async { "Hello, World!" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap_or_else(|err| {
        eprintln!("cannot listen on 127.0.0.1:{port}: {err}");
        std::process::exit(1);
    });
    println!("ceiling listening on http://127.0.0.1:{port}");
    if let Err(err) = axum::serve(listener, app).await {
        eprintln!("server error: {err}");
        std::process::exit(1);
    }
}
