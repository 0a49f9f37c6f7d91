//! Opening a bollard handle on the configured engine and agreeing on an API version. bollard
//! 0.18 speaks API 1.47 by default; older engines (Docker 20.10 tops out at 1.41) reject it, so
//! every connection negotiates down first.

use std::time::Duration;

use bollard::{Docker, API_DEFAULT_VERSION};

use crate::containers::config::{parse_docker_host, DockerEndpoint};
use crate::containers::error::ContainerError;

/// bollard's own per-request timeout, seconds; ours (per call, shorter) sit inside it.
const CLIENT_TIMEOUT_SECS: u64 = 60;

/// Connect to `host` (`unix:///…`, `tcp://…`) and negotiate the API version within `timeout`.
pub async fn connect(host: &str, timeout: Duration) -> Result<Docker, ContainerError> {
    let endpoint = parse_docker_host(host).map_err(|reason| ContainerError::Host {
        host: host.to_string(),
        reason,
    })?;
    let docker = match &endpoint {
        DockerEndpoint::Unix(path) => {
            Docker::connect_with_unix(path, CLIENT_TIMEOUT_SECS, API_DEFAULT_VERSION)
        }
        DockerEndpoint::Http(addr) => {
            Docker::connect_with_http(addr, CLIENT_TIMEOUT_SECS, API_DEFAULT_VERSION)
        }
    }
    .map_err(|e| ContainerError::Connect {
        host: host.to_string(),
        reason: e.to_string(),
    })?;
    match tokio::time::timeout(timeout, docker.negotiate_version()).await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(ContainerError::Connect {
            host: host.to_string(),
            reason: e.to_string(),
        }),
        Err(_) => Err(ContainerError::Connect {
            host: host.to_string(),
            reason: format!("no answer within {timeout:?}"),
        }),
    }
}
