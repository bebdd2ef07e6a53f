//! Logs (one JSON object a line) and the proxy's Prometheus metrics.

pub mod metrics;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber. `RUST_LOG` overrides `default_level`.
/// JSON unless `VSIP_LOG_FORMAT=text` (handy at a terminal).
pub fn init_logging(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let text = std::env::var("VSIP_LOG_FORMAT").is_ok_and(|v| v == "text");
    let registry = tracing_subscriber::registry().with(filter);
    let result = if text {
        registry.with(fmt::layer().with_target(false)).try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_target(false),
            )
            .try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
