//! The operator's error type.

/// Everything that can fail in a reconcile or in writing the fleet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("serializing: {0}")]
    Json(#[from] serde_json::Error),
    #[error("rendering YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("{0} has no namespace")]
    MissingNamespace(String),
}

impl Error {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_error",
            Error::Json(_) | Error::Yaml(_) => "serialize_error",
            Error::MissingNamespace(_) => "invalid_object",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
