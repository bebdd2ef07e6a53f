//! Admin HTTP: `/metrics` (Prometheus text), `/healthz` (process alive),
//! `/readyz` (serving with a good configuration). Shared by proxy and operator.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus::{Encoder, Registry, TextEncoder};

#[derive(Clone)]
pub struct AdminState {
    pub registry: Registry,
    pub ready: Arc<AtomicBool>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Binds first so a port clash is reported before the caller goes on.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("admin listener {addr}: {e}"))
}

pub async fn serve(listener: tokio::net::TcpListener, state: AdminState) -> anyhow::Result<()> {
    serve_router(listener, router(state)).await
}

/// Serves [`router`] merged with a component's own routes.
pub async fn serve_router(listener: tokio::net::TcpListener, router: Router) -> anyhow::Result<()> {
    axum::serve(listener, router).await?;
    Ok(())
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let mut buf = Vec::with_capacity(16 * 1024);
    let families = state.registry.gather();
    if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        buf,
    )
        .into_response()
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
