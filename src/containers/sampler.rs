//! The background task that runs a source every `interval` and publishes each round as an
//! [`Snapshot`]. A failed round publishes `source_up = false` with no containers, then retries
//! with exponential backoff (capped) until the source answers again; the load never waits on it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::{ContainersConfig, SourceKind};
use super::docker::DockerSource;
use super::error::ContainerError;
use super::process::ProcessSource;
use super::{ContainerSample, Snapshot, SnapshotRx};

/// Longest wait between retries of an unreachable source.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Something that can be sampled in rounds.
pub trait Source: Send + 'static {
    fn round(
        &mut self,
    ) -> impl Future<Output = Result<Vec<ContainerSample>, ContainerError>> + Send;
}

impl Source for DockerSource {
    fn round(
        &mut self,
    ) -> impl Future<Output = Result<Vec<ContainerSample>, ContainerError>> + Send {
        DockerSource::round(self)
    }
}

impl Source for ProcessSource {
    fn round(
        &mut self,
    ) -> impl Future<Output = Result<Vec<ContainerSample>, ContainerError>> + Send {
        ProcessSource::round(self)
    }
}

/// Start sampling as `cfg.source` says. `none` gives a receiver that holds an empty snapshot;
/// `process` measures `cfg.pids`.
pub fn spawn_sampler(cfg: &ContainersConfig, shutdown: CancellationToken) -> SnapshotRx {
    match cfg.source {
        SourceKind::None => watch::channel(Arc::new(Snapshot::default())).1,
        SourceKind::Docker => spawn_source(DockerSource::new(cfg, shutdown.clone()), cfg, shutdown),
        SourceKind::Process => spawn_process_sampler(cfg, &cfg.pids, shutdown),
    }
}

/// Sample the process trees rooted at `pids` (e.g. the child that `loadspec demo` started),
/// whatever `cfg.source` says; name, groups, CPU limit and interval come from `cfg`.
pub fn spawn_process_sampler(
    cfg: &ContainersConfig,
    pids: &[u32],
    shutdown: CancellationToken,
) -> SnapshotRx {
    let src = ProcessSource::new(
        pids.to_vec(),
        cfg.process_name.clone(),
        cfg.groups.clone(),
        cfg.process_cpu_limit,
    );
    spawn_source(src, cfg, shutdown)
}

/// Run `src` in a background task until `shutdown` (or until every receiver is gone). The
/// receiver holds an empty snapshot until the first round ends; wait with `changed()` for it.
pub fn spawn_source<S: Source>(
    mut src: S,
    cfg: &ContainersConfig,
    shutdown: CancellationToken,
) -> SnapshotRx {
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    let interval = cfg.interval;
    tokio::spawn(async move {
        let mut backoff = interval;
        loop {
            let started = Instant::now();
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = src.round() => r,
            };
            let scrape_duration_seconds = started.elapsed().as_secs_f64();
            let (source_up, containers, wait) = match result {
                Ok(c) => {
                    backoff = interval;
                    (true, c, interval)
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "container source failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF.max(interval));
                    (false, Vec::new(), wait)
                }
            };
            let snap = Snapshot {
                source_up,
                scrape_duration_seconds,
                taken_at: SystemTime::now(),
                containers,
            };
            // No receivers left is fine: keep sampling only while someone listens.
            if tx.send(Arc::new(snap)).is_err() {
                return;
            }
            let next = started + wait;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next.into()) => {}
            }
        }
    });
    rx
}
