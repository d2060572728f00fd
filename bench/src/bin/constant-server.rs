//! The throughput ceiling for `bench/api-load.sh`: a bare axum server whose only route
//! answers a constant JSON body, with no auth, middleware or store behind it.
//!
//! Usage: `constant-server [ADDR]` (default `127.0.0.1:0`, a free port). Prints
//! `constant-server listening on http://ADDR` once bound.

use std::net::SocketAddr;

use anyhow::Context;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

/// The same kind of work as envplane's `/health`: serialize a tiny JSON object.
async fn constant() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:0")
        .parse()
        .context("the argument must be a socket address such as 127.0.0.1:0")?;
    // Any path answers, so the load tool can reuse the envplane URL shapes if it likes.
    let app = Router::new().route("/", get(constant)).fallback(constant);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    println!(
        "constant-server listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the server stopped with an error")
}
