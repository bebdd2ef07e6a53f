//! The serving side of token requests between proxies, on the admin listener:
//! `POST /quota/v1/grant {"trunkSid":"TK…","count":5}` →
//! `{"granted":n,"retryAfterMs":m}`; `GET /quota/v1/owner?trunk=TK…` says
//! which live proxy owns a trunk's quota (for people and the fleet test).

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, Uri},
    response::IntoResponse,
    routing::{get, post},
};
use serde::Serialize;

use super::client::{GrantAnswer, GrantRequest};
use crate::proxy::server::Server;

/// A grant request body is tiny; anything bigger is not ours.
const MAX_BODY: usize = 1024;

pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/quota/v1/grant", post(serve_grant))
        .route("/quota/v1/owner", get(owner))
        .with_state(server)
}

async fn serve_grant(State(server): State<Arc<Server>>, body: Bytes) -> impl IntoResponse {
    if body.len() > MAX_BODY {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request too large\n".to_owned(),
        )
            .into_response();
    }
    let req: GrantRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let routes = server.routes().load();
    let Some(trunk) = routes.trunk_by_sid(&req.trunk_sid) else {
        server
            .metrics()
            .cpm_grants_served
            .with_label_values(&["unknown_trunk"])
            .inc();
        return (
            StatusCode::NOT_FOUND,
            format!("no trunk {} in this proxy's configuration\n", req.trunk_sid),
        )
            .into_response();
    };
    let answer = match server.quota().grant(trunk, req.count.max(1)) {
        Ok(n) => {
            server
                .metrics()
                .cpm_grants_served
                .with_label_values(&["granted"])
                .inc();
            GrantAnswer {
                granted: n,
                retry_after_ms: 0,
            }
        }
        Err(wait) => {
            server
                .metrics()
                .cpm_grants_served
                .with_label_values(&["exhausted"])
                .inc();
            GrantAnswer {
                granted: 0,
                retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            }
        }
    };
    json(&answer)
}

async fn owner(State(server): State<Arc<Server>>, uri: Uri) -> impl IntoResponse {
    let sid = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("trunk="))
        .unwrap_or_default()
        .to_owned();
    let routes = server.routes().load();
    // Accept a trunk name (namespace/name) as well as its SID.
    let sid = match routes.trunk_by_name(&sid) {
        Some(t) => t.cfg.trunk_sid.clone(),
        None => sid,
    };
    let peers = server.quota().peers.load();
    let owner = peers.owner(&sid).map(|p| p.name.clone());
    json(&serde_json::json!({
        "trunkSid": sid,
        "owner": owner,
        "me": peers.me,
        "peers": peers.peers.iter().map(|p| &p.name).collect::<Vec<_>>(),
    }))
}

fn json<T: Serialize>(value: &T) -> axum::response::Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
