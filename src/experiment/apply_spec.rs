//! Applying a spec to every container of a group for sweep and search, and putting the
//! original limits back afterwards (also after a drain), recorded for the report.

use std::time::Duration;

use super::plan::Runtime;
use crate::config::Settings;
use crate::containers::{ContainerError, LimitsControl};
use crate::report::RestoredLimits;

/// The containers a spec was applied to, and their limits before.
pub struct Applied {
    pub control: LimitsControl,
    pub containers: Vec<String>,
    pub originals: Vec<RestoredLimits>,
}

/// Names of the group's containers, waiting up to 15 s for the sampler to see them.
pub async fn group_containers(rt: &Runtime, group: &str) -> Vec<String> {
    let mut rx = rt.containers.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let names: Vec<String> = rx
            .borrow_and_update()
            .containers
            .iter()
            .filter(|c| c.group == group)
            .map(|c| c.name.clone())
            .collect();
        if !names.is_empty() {
            return names;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return Vec::new();
        }
    }
}

/// Why a spec could not be applied to a group.
#[derive(Debug, thiserror::Error)]
pub enum ApplySpecError {
    #[error("no running container in group {0:?}")]
    NoContainers(String),
    /// Connecting to the engine or reading a container's current limits.
    #[error("{0}")]
    Docker(#[from] ContainerError),
    #[error("setting limits on {name}: {source}")]
    Set {
        name: String,
        source: ContainerError,
    },
}

/// Set `cpus`/`memory` on every container of `group`. `Ok(None)` when nothing was asked.
pub async fn apply_spec(
    settings: &Settings,
    rt: &Runtime,
    group: Option<&str>,
    cpus: Option<f64>,
    memory: Option<u64>,
) -> Result<Option<Applied>, ApplySpecError> {
    let Some(group) = group else {
        return Ok(None);
    };
    if cpus.is_none() && memory.is_none() {
        return Ok(None);
    }
    let containers = group_containers(rt, group).await;
    if containers.is_empty() {
        return Err(ApplySpecError::NoContainers(group.to_string()));
    }
    let control = LimitsControl::connect(&settings.raw.containers.effective_docker_host()).await?;
    let mut applied = Applied {
        control,
        containers,
        originals: Vec::new(),
    };
    for name in &applied.containers {
        let cur = applied.control.get(name).await?;
        applied.originals.push(RestoredLimits {
            container: name.clone(),
            cpus: Some(cur.cpus),
            memory_bytes: (cur.memory_bytes > 0).then_some(cur.memory_bytes),
        });
    }
    set_all(&applied, cpus, memory).await?;
    Ok(Some(applied))
}

/// Set the same spec on every container already in `applied`.
pub async fn set_all(
    applied: &Applied,
    cpus: Option<f64>,
    memory: Option<u64>,
) -> Result<(), ApplySpecError> {
    for (name, orig) in applied.containers.iter().zip(&applied.originals) {
        let c = cpus.or(orig.cpus).unwrap_or(1.0);
        let m = memory.or(orig.memory_bytes).unwrap_or(0);
        applied
            .control
            .set(name, c, m)
            .await
            .map_err(|source| ApplySpecError::Set {
                name: name.clone(),
                source,
            })?;
        tracing::info!(container = %name, cpus = c, memory_bytes = m, "limits set");
    }
    Ok(())
}

/// Put every original back; the restored limits go into the report.
pub async fn restore(applied: &Applied) -> Vec<RestoredLimits> {
    match applied.control.restore().await {
        Ok(()) => tracing::info!(containers = ?applied.containers, "original limits restored"),
        Err(e) => tracing::error!(error = %e, "restoring original limits failed"),
    }
    applied.originals.clone()
}
