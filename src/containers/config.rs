//! The `[containers]` config section: which source measures the containers (Docker, a process
//! tree from /proc, or nothing), which containers to pick and how they are grouped, and how
//! often to sample. Validation names every bad key as `containers.<key>`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config_error::Errors;

/// Where container measurements come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The Docker engine, through its API (`docker stats` figures).
    Docker,
    /// A process and its children, read from /proc (no Docker needed).
    Process,
    /// No container measurements.
    #[default]
    None,
}

/// The socket Docker listens on when neither the config nor `DOCKER_HOST` says otherwise.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// `[containers]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainersConfig {
    pub source: SourceKind,
    /// `unix:///path` or `tcp://host:port`; `None` means `DOCKER_HOST`, else the local socket.
    pub docker_host: Option<String>,
    /// Exact container names (without the leading `/`).
    pub names: Vec<String>,
    /// `key=value` (or bare `key`) label selectors; a container must match all of them.
    pub labels: Vec<String>,
    /// Label whose value names a container's group.
    pub group_label: String,
    /// Container (or process) name → group; wins over `group_label`.
    pub groups: BTreeMap<String, String>,
    /// Sampling interval.
    #[serde(with = "crate::units::duration")]
    pub interval: Duration,
    /// Longest wait for one container's stats in a round; a slower container is reported down
    /// for that round instead of holding back the others.
    #[serde(with = "crate::units::duration")]
    pub timeout: Duration,
    /// Process source: root PIDs to measure (each with its children).
    pub pids: Vec<u32>,
    /// Process source: the name the process tree is exported under (default: its `comm`).
    pub process_name: Option<String>,
    /// Process source: cores the process may use (default: the online CPUs).
    pub process_cpu_limit: Option<f64>,
}

impl Default for ContainersConfig {
    fn default() -> Self {
        Self {
            source: SourceKind::None,
            docker_host: None,
            names: Vec::new(),
            labels: Vec::new(),
            group_label: "loadspec.group".to_string(),
            groups: BTreeMap::new(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(3),
            pids: Vec::new(),
            process_name: None,
            process_cpu_limit: None,
        }
    }
}

impl ContainersConfig {
    /// The Docker endpoint actually used: the config, else `DOCKER_HOST`, else the local socket.
    pub fn effective_docker_host(&self) -> String {
        self.docker_host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string())
    }

    /// The label selectors as `(key, Some(value))` pairs; a bare `key` matches any value.
    pub fn label_selectors(&self) -> Vec<(String, Option<String>)> {
        self.labels
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
                None => (l.trim().to_string(), None),
            })
            .collect()
    }

    pub fn validate(&self, path: &str, errs: &mut Errors) {
        if self.interval < Duration::from_millis(100) {
            errs.add(
                format!("{path}.interval"),
                format!(
                    "must be at least 100ms, got {}",
                    humantime::format_duration(self.interval)
                ),
            );
        }
        if self.timeout.is_zero() {
            errs.add(format!("{path}.timeout"), "must be greater than 0s");
        }
        if let Some(host) = &self.docker_host {
            if let Err(reason) = parse_docker_host(host) {
                errs.add(format!("{path}.docker_host"), reason);
            }
        }
        for (i, name) in self.names.iter().enumerate() {
            if name.trim().is_empty() {
                errs.add(format!("{path}.names[{i}]"), "must not be empty");
            }
        }
        for (i, label) in self.labels.iter().enumerate() {
            let key = label.split_once('=').map_or(label.as_str(), |(k, _)| k);
            if key.trim().is_empty() {
                errs.add(
                    format!("{path}.labels[{i}]"),
                    format!("must be `key=value` or `key`, got {label:?}"),
                );
            }
        }
        if self.group_label.trim().is_empty() {
            errs.add(format!("{path}.group_label"), "must not be empty");
        }
        for (name, group) in &self.groups {
            if group.trim().is_empty() {
                errs.add(format!("{path}.groups.{name}"), "group must not be empty");
            }
        }
        if self.pids.contains(&0) {
            errs.add(format!("{path}.pids"), "PID 0 is not a process");
        }
        if let Some(c) = self.process_cpu_limit {
            if !(c.is_finite() && c > 0.0) {
                errs.add(
                    format!("{path}.process_cpu_limit"),
                    format!("must be above 0, got {c}"),
                );
            }
        }
        if self.source != SourceKind::Docker
            && self.source != SourceKind::None
            && (!self.names.is_empty() || !self.labels.is_empty())
        {
            errs.add(
                format!("{path}.names"),
                "names and labels select Docker containers; set source = \"docker\"",
            );
        }
    }
}

/// Where to reach the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerEndpoint {
    Unix(String),
    Http(String),
}

/// Why a `docker_host` value is not one loadspec can connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerHostError {
    #[error("unix socket path is empty in {0:?}")]
    EmptySocketPath(String),
    #[error("must be unix:///path, tcp://host:port or http://host:port, got {0:?}")]
    Scheme(String),
}

/// Parse `unix:///var/run/docker.sock`, `tcp://host:2375` or `http://host:2375`.
pub fn parse_docker_host(host: &str) -> Result<DockerEndpoint, DockerHostError> {
    if let Some(path) = host.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(DockerHostError::EmptySocketPath(host.to_string()));
        }
        Ok(DockerEndpoint::Unix(path.to_string()))
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Ok(DockerEndpoint::Http(host.to_string()))
    } else if host.starts_with('/') {
        Ok(DockerEndpoint::Unix(host.to_string()))
    } else {
        Err(DockerHostError::Scheme(host.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(toml_text: &str) -> Vec<String> {
        let cfg: ContainersConfig = toml::from_str(toml_text).expect("parses");
        let mut errs = Errors::new();
        cfg.validate("containers", &mut errs);
        match errs.finish(()) {
            Ok(()) => Vec::new(),
            Err(crate::config_error::ConfigError::Invalid(v)) => {
                v.into_iter().map(|e| e.to_string()).collect()
            }
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn defaults_are_valid_and_off() {
        let cfg: ContainersConfig = toml::from_str("").unwrap();
        assert_eq!(cfg.source, SourceKind::None);
        assert_eq!(cfg.interval, Duration::from_secs(1));
        assert_eq!(cfg.group_label, "loadspec.group");
        assert!(errors_of("").is_empty());
    }

    #[test]
    fn full_section_parses() {
        let cfg: ContainersConfig = toml::from_str(
            r#"
            source = "docker"
            docker_host = "unix:///run/docker.sock"
            names = ["api"]
            labels = ["loadspec.group=ai", "monitored"]
            groups = { api = "backend" }
            interval = "500ms"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.source, SourceKind::Docker);
        assert_eq!(cfg.interval, Duration::from_millis(500));
        assert_eq!(
            cfg.label_selectors(),
            vec![
                ("loadspec.group".to_string(), Some("ai".to_string())),
                ("monitored".to_string(), None)
            ]
        );
        assert_eq!(cfg.groups["api"], "backend");
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = toml::from_str::<ContainersConfig>("sourse = \"docker\"").unwrap_err();
        assert!(err.to_string().contains("sourse"), "{err}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let errs = errors_of(
            r#"
            source = "docker"
            docker_host = "ftp://x"
            labels = ["=ai"]
            interval = "10ms"
            "#,
        );
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("containers.interval: must be at least 100ms, got 10ms"));
        assert!(errs[1].starts_with("containers.docker_host: must be unix://"));
        assert!(errs[2].starts_with("containers.labels[0]: must be `key=value`"));
    }

    #[test]
    fn docker_hosts() {
        assert_eq!(
            parse_docker_host("unix:///var/run/docker.sock"),
            Ok(DockerEndpoint::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            parse_docker_host("tcp://1.2.3.4:2375"),
            Ok(DockerEndpoint::Http("tcp://1.2.3.4:2375".into()))
        );
        assert!(parse_docker_host("unix://").is_err());
    }
}
