//! The asking side of token requests between proxies: HTTP/1.1 + JSON to the
//! owner's admin listener (`POST /quota/v1/grant {"trunkSid":"TK…","count":5}`
//! → `{"granted":n,"retryAfterMs":m}`); the serving side is [`super::grant`].

use std::time::Duration;

use anyhow::{Context, anyhow};
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client as HyperClient, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::{Deserialize, Serialize};

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
