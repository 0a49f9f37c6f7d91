//! Errors at the container boundary. A failed read is reported in the snapshot (`up`,
//! `source_up`) and retried; these errors only travel as far as the sampler loop, the limits
//! control's caller, or a log line.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("invalid Docker host {host:?}: {reason}")]
    Host {
        host: String,
        reason: super::config::DockerHostError,
    },
    #[error("cannot reach the Docker engine at {host}: {reason}")]
    Connect { host: String, reason: String },
    #[error("Docker API {call} failed: {source}")]
    Api {
        call: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("Docker API {call} timed out after {after:?}")]
    Timeout { call: &'static str, after: Duration },
    #[error("container {name}: {reason}")]
    Container { name: String, reason: String },
    #[error("cannot read /proc: {0}")]
    Proc(String),
}

impl ContainerError {
    pub(crate) fn api(call: &'static str) -> impl FnOnce(bollard::errors::Error) -> Self {
        move |source| ContainerError::Api { call, source }
    }
}

/// Run `fut` with a deadline, turning both a timeout and an API error into a [`ContainerError`].
pub(crate) async fn with_timeout<T>(
    call: &'static str,
    after: Duration,
    fut: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<T, ContainerError> {
    match tokio::time::timeout(after, fut).await {
        Ok(r) => r.map_err(ContainerError::api(call)),
        Err(_) => Err(ContainerError::Timeout { call, after }),
    }
}
