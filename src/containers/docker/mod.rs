//! The Docker source: discovers the selected containers on every round (so new ones appear and
//! removed ones leave), then reads each one's inspect and one-shot stats concurrently, each under
//! its own timeout, so one slow container never holds back the others.
//!
//! Restarts are counted from `State.StartedAt` changing (a manual `docker restart` does not move
//! the engine's `RestartCount`, which only counts restart-policy restarts) plus any growth of
//! `RestartCount` in between. OOM kills come from [`events`] and from exits with
//! `State.OOMKilled`.

pub mod connect;
pub mod convert;
pub mod events;

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use bollard::container::{InspectContainerOptions, ListContainersOptions, Stats, StatsOptions};
use bollard::models::{ContainerInspectResponse, ContainerSummary};
use bollard::Docker;
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::ContainersConfig;
use super::error::{with_timeout, ContainerError};
use super::rate::CpuRates;
use super::{host, ContainerSample};
use events::OomCounts;

/// What we remember about a container between rounds.
#[derive(Debug)]
struct Tracked {
    started_at: String,
    restart_count: i64,
    restarts: u64,
    oom_exits: u64,
    last_oom_finished_at: String,
    last: ContainerSample,
}

/// One container picked by discovery.
#[derive(Debug, Clone)]
struct Target {
    id: String,
    name: String,
    group: String,
}

/// Samples the selected containers of one Docker engine.
pub struct DockerSource {
    cfg: ContainersConfig,
    host: String,
    docker: Option<Docker>,
    events: Option<JoinHandle<()>>,
    ooms: OomCounts,
    tracked: HashMap<String, Tracked>,
    rates: CpuRates,
    shutdown: CancellationToken,
    host_mem: u64,
    online_cpus: u64,
}

impl DockerSource {
    pub fn new(cfg: &ContainersConfig, shutdown: CancellationToken) -> Self {
        Self {
            host: cfg.effective_docker_host(),
            cfg: cfg.clone(),
            docker: None,
            events: None,
            ooms: OomCounts::default(),
            tracked: HashMap::new(),
            rates: CpuRates::default(),
            shutdown,
            host_mem: host::mem_total_bytes(),
            online_cpus: host::online_cpus(),
        }
    }

    /// One sampling round. An error means the engine did not answer (the caller backs off);
    /// per-container failures are reported as `up = false` instead.
    pub async fn round(&mut self) -> Result<Vec<ContainerSample>, ContainerError> {
        let docker = self.ensure_connected().await?;
        let listed = match with_timeout(
            "list_containers",
            self.cfg.timeout,
            docker.list_containers(Some(ListContainersOptions::<String> {
                all: true,
                ..Default::default()
            })),
        )
        .await
        {
            Ok(l) => l,
            Err(e) => {
                // Reconnect (and renegotiate) next time: the engine may have been replaced.
                self.disconnect();
                return Err(e);
            }
        };
        let all_ids: HashSet<String> = listed.iter().filter_map(|c| c.id.clone()).collect();
        let targets: Vec<Target> = listed.iter().filter_map(|c| select(&self.cfg, c)).collect();

        let timeout = self.cfg.timeout;
        let reads = targets.iter().map(|t| {
            let docker = docker.clone();
            let id = t.id.clone();
            async move {
                match tokio::time::timeout(timeout, read_one(&docker, &id)).await {
                    Ok(r) => r,
                    Err(_) => Err(ContainerError::Timeout {
                        call: "inspect_container/stats",
                        after: timeout,
                    }),
                }
            }
        });
        let results = futures::future::join_all(reads).await;

        let samples = targets
            .iter()
            .zip(results)
            .map(|(t, r)| self.observe(t, r))
            .collect();

        let live: HashSet<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        self.tracked.retain(|id, _| live.contains(id.as_str()));
        self.rates.retain(|id| live.contains(id));
        if let Ok(mut c) = self.ooms.lock() {
            c.retain(|id, _| all_ids.contains(id));
        }
        Ok(samples)
    }

    async fn ensure_connected(&mut self) -> Result<Docker, ContainerError> {
        if self.docker.is_none() {
            let d = connect::connect(&self.host, self.cfg.timeout).await?;
            tracing::info!(host = %self.host, version = ?d.client_version(), "connected to Docker");
            self.docker = Some(d);
        }
        let docker = self.docker.clone().expect("set above");
        if self.events.as_ref().is_none_or(|h| h.is_finished()) {
            self.events = Some(events::spawn_oom_watch(
                docker.clone(),
                self.ooms.clone(),
                self.shutdown.child_token(),
            ));
        }
        Ok(docker)
    }

    fn disconnect(&mut self) {
        self.docker = None;
        if let Some(h) = self.events.take() {
            h.abort();
        }
    }

    /// Turn one container's answers into a sample, carrying counters across failed reads.
    fn observe(
        &mut self,
        t: &Target,
        read: Result<(ContainerInspectResponse, Option<Stats>), ContainerError>,
    ) -> ContainerSample {
        let events_ooms = self
            .ooms
            .lock()
            .ok()
            .and_then(|c| c.get(&t.id).copied())
            .unwrap_or(0);
        let entry = self.tracked.entry(t.id.clone()).or_insert_with(|| Tracked {
            started_at: String::new(),
            restart_count: -1,
            restarts: 0,
            oom_exits: 0,
            last_oom_finished_at: String::new(),
            last: ContainerSample {
                name: t.name.clone(),
                group: t.group.clone(),
                up: false,
                cpu_usage_seconds_total: 0.0,
                cpu_cores: 0.0,
                cpu_limit_cores: 0.0,
                memory_usage_bytes: 0,
                memory_limit_bytes: 0,
                cpu_throttled_seconds_total: 0.0,
                network_receive_bytes_total: 0,
                network_transmit_bytes_total: 0,
                restarts_total: 0,
                oom_kills_total: 0,
            },
        });
        // Name and group can change (rename, config reload); the ID is what we track.
        entry.last.name = t.name.clone();
        entry.last.group = t.group.clone();

        let (inspect, stats) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(container = %t.name, error = %e, "container read failed");
                entry.last.up = false;
                entry.last.cpu_cores = 0.0;
                entry.last.oom_kills_total = entry.oom_exits.max(events_ooms);
                return entry.last.clone();
            }
        };
        let state = inspect.state.as_ref();
        let running = state.and_then(|s| s.running).unwrap_or(false);

        // Restarts: a new StartedAt is a restart; RestartCount growth catches policy restarts
        // that happened between two rounds.
        let started_at = state
            .and_then(|s| s.started_at.clone())
            .filter(|s| !s.starts_with("0001-"))
            .unwrap_or_default();
        let restart_count = inspect.restart_count.unwrap_or(0).max(0);
        if entry.restart_count < 0 {
            entry.restarts = restart_count as u64;
        } else {
            let grown = (restart_count - entry.restart_count).max(0) as u64;
            let restarted = !entry.started_at.is_empty() && started_at != entry.started_at;
            entry.restarts += if restarted { grown.max(1) } else { grown };
        }
        entry.restart_count = restart_count;
        if !started_at.is_empty() {
            entry.started_at = started_at;
        }

        // OOM exits, counted once per distinct FinishedAt.
        if state.and_then(|s| s.oom_killed).unwrap_or(false) {
            let finished = state
                .and_then(|s| s.finished_at.clone())
                .unwrap_or_default();
            if finished != entry.last_oom_finished_at {
                entry.oom_exits += 1;
                entry.last_oom_finished_at = finished;
            }
        }

        let host_cfg = inspect.host_config.as_ref();
        let s = &mut entry.last;
        s.restarts_total = entry.restarts;
        s.oom_kills_total = entry.oom_exits.max(events_ooms);
        s.cpu_limit_cores = convert::cpu_limit_cores(host_cfg, self.online_cpus);
        match stats.filter(|_| running) {
            Some(st) => {
                s.up = true;
                s.cpu_usage_seconds_total = convert::cpu_usage_seconds(&st);
                let at = convert::read_time_seconds(&st).unwrap_or_else(now_seconds);
                s.cpu_cores = self
                    .rates
                    .update(&t.id, at, s.cpu_usage_seconds_total)
                    .max(0.0);
                s.memory_usage_bytes = convert::memory_usage_bytes(&st.memory_stats);
                s.memory_limit_bytes =
                    convert::memory_limit_bytes(&st.memory_stats, host_cfg, self.host_mem);
                s.cpu_throttled_seconds_total = convert::cpu_throttled_seconds(&st);
                let (rx, tx) = convert::network_bytes(&st);
                s.network_receive_bytes_total = rx;
                s.network_transmit_bytes_total = tx;
            }
            None => {
                // Stopped (or stats unavailable): keep the counters so the series continue,
                // but nothing is being used right now.
                s.up = false;
                s.cpu_cores = 0.0;
                s.memory_usage_bytes = 0;
                if s.memory_limit_bytes == 0 {
                    s.memory_limit_bytes = host_cfg
                        .and_then(|h| h.memory)
                        .filter(|m| *m > 0)
                        .map_or(self.host_mem, |m| m as u64);
                }
            }
        }
        s.clone()
    }
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Inspect and one-shot stats of one container, concurrently. Stats of a stopped container are
/// dropped by the caller.
async fn read_one(
    docker: &Docker,
    id: &str,
) -> Result<(ContainerInspectResponse, Option<Stats>), ContainerError> {
    let inspect = docker.inspect_container(id, None::<InspectContainerOptions>);
    let stats = async {
        docker
            .stats(
                id,
                Some(StatsOptions {
                    stream: false,
                    one_shot: true,
                }),
            )
            .next()
            .await
    };
    let (inspect, stats) = tokio::join!(inspect, stats);
    let inspect = inspect.map_err(ContainerError::api("inspect_container"))?;
    let stats = match stats {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            tracing::debug!(container_id = %id, error = %e, "stats read failed");
            None
        }
        None => None,
    };
    Ok((inspect, stats))
}

/// Whether discovery picks this container, and under which name and group. With no names and
/// no labels configured, every running container is picked (as `docker stats` shows them).
fn select(cfg: &ContainersConfig, c: &ContainerSummary) -> Option<Target> {
    let id = c.id.clone()?;
    let name = c
        .names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_else(|| id.chars().take(12).collect());
    let empty = HashMap::new();
    let labels = c.labels.as_ref().unwrap_or(&empty);
    let picked = if cfg.names.is_empty() && cfg.labels.is_empty() {
        c.state.as_deref() == Some("running")
    } else {
        let by_name = cfg.names.iter().any(|n| n.trim_start_matches('/') == name);
        let selectors = cfg.label_selectors();
        let by_label = !selectors.is_empty()
            && selectors.iter().all(|(k, v)| match (labels.get(k), v) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            });
        by_name || by_label
    };
    if !picked {
        return None;
    }
    let group = group_of(cfg, &name, labels.get(&cfg.group_label).map(String::as_str));
    Some(Target { id, name, group })
}

/// The configured group of `name`, else its group label, else the name itself (so ungrouped
/// containers are still measured separately).
pub fn group_of(cfg: &ContainersConfig, name: &str, label: Option<&str>) -> String {
    cfg.groups
        .get(name)
        .map(String::as_str)
        .or(label.filter(|l| !l.is_empty()))
        .unwrap_or(name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str, state: &str, labels: &[(&str, &str)]) -> ContainerSummary {
        ContainerSummary {
            id: Some(format!("id-{name}")),
            names: Some(vec![format!("/{name}")]),
            state: Some(state.to_string()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn selection_by_name_or_all_labels() {
        let cfg = ContainersConfig {
            names: vec!["api".into()],
            labels: vec!["loadspec.group=ai".into(), "tier".into()],
            groups: [("api".to_string(), "backend".to_string())].into(),
            ..Default::default()
        };
        let api = select(&cfg, &summary("api", "exited", &[])).expect("picked by name");
        assert_eq!((api.name.as_str(), api.group.as_str()), ("api", "backend"));
        let ai = select(
            &cfg,
            &summary("gen", "running", &[("loadspec.group", "ai"), ("tier", "x")]),
        )
        .expect("picked by labels");
        assert_eq!(ai.group, "ai");
        // One selector missing: not picked.
        assert!(select(
            &cfg,
            &summary("gen2", "running", &[("loadspec.group", "ai")])
        )
        .is_none());
        assert!(select(&cfg, &summary("apix", "running", &[])).is_none());
    }

    #[test]
    fn no_selectors_pick_running_containers() {
        let cfg = ContainersConfig::default();
        let t = select(&cfg, &summary("web", "running", &[])).expect("running is picked");
        assert_eq!(t.group, "web");
        assert!(select(&cfg, &summary("old", "exited", &[])).is_none());
    }
}
