//! Token requests between proxies: HTTP/1.1 + JSON on the admin listener.
//!
//! `POST /quota/v1/grant {"trunkSid":"TK…","count":5}` →
//! `{"granted":n,"retryAfterMs":m}`; `GET /quota/v1/owner?trunk=TK…` says
//! which live proxy owns a trunk's quota (for people and the fleet test).

use std::{sync::Arc, time::Duration};

use anyhow::{Context, anyhow};
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, Uri},
    response::IntoResponse,
    routing::{get, post},
};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client as HyperClient, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::{Deserialize, Serialize};

use crate::proxy::core::Core;

/// A grant request body is tiny; anything bigger is not ours.
const MAX_BODY: usize = 1024;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantRequest {
    pub trunk_sid: String,
    pub count: u32,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct GrantAnswer {
    pub granted: u32,
    #[serde(default)]
    pub retry_after_ms: u64,
}

/// Keep-alive HTTP client for token requests.
pub struct Client {
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(200)));
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self { http }
    }

    pub async fn request(
        &self,
        endpoint: &str,
        trunk_sid: &str,
        count: u32,
    ) -> anyhow::Result<GrantAnswer> {
        let body = serde_json::to_vec(&GrantRequest {
            trunk_sid: trunk_sid.to_owned(),
            count,
        })?;
        let req = hyper::Request::post(format!("{endpoint}/quota/v1/grant"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .context("building the grant request")?;
        let resp = self.http.request(req).await.context("asking the owner")?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .context("reading the grant")?
            .to_bytes();
        if !status.is_success() {
            return Err(anyhow!(
                "owner answered {status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            ));
        }
        serde_json::from_slice(&bytes).context("grant is not JSON")
    }
}

pub fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/quota/v1/grant", post(serve_grant))
        .route("/quota/v1/owner", get(owner))
        .with_state(core)
}

async fn serve_grant(State(core): State<Arc<Core>>, body: Bytes) -> impl IntoResponse {
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
    let routes = core.routes.load();
    let Some(trunk) = routes.trunk_by_sid(&req.trunk_sid) else {
        core.metrics
            .cpm_grants_served
            .with_label_values(&["unknown_trunk"])
            .inc();
        return (
            StatusCode::NOT_FOUND,
            format!("no trunk {} in this proxy's configuration\n", req.trunk_sid),
        )
            .into_response();
    };
    let answer = match core.quota.grant(trunk, req.count.max(1)) {
        Ok(n) => {
            core.metrics
                .cpm_grants_served
                .with_label_values(&["granted"])
                .inc();
            GrantAnswer {
                granted: n,
                retry_after_ms: 0,
            }
        }
        Err(wait) => {
            core.metrics
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

async fn owner(State(core): State<Arc<Core>>, uri: Uri) -> impl IntoResponse {
    let sid = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("trunk="))
        .unwrap_or_default()
        .to_owned();
    let routes = core.routes.load();
    // Accept a trunk name (namespace/name) as well as its SID.
    let sid = match routes.trunk_by_name(&sid) {
        Some(t) => t.cfg.trunk_sid.clone(),
        None => sid,
    };
    let peers = core.quota.peers.load();
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
