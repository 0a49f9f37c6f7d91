//! Changing a container's `--cpus` and `--memory` for sweep and search experiments, reading them
//! back, and restoring what the container had before the first change.
//!
//! Memory is set with `MemorySwap = Memory`, so the container cannot hide memory pressure in
//! swap. On cgroup v1 the kernel requires `memory.limit_in_bytes <= memory.memsw.limit_in_bytes`
//! at every moment, so lowering must write memory first and raising must write memsw first;
//! Docker checks the pair and runc orders the two writes itself when both come in one update,
//! which is why both are always sent together here.
//!
//! The engine treats 0 as "leave unchanged" and refuses to mix `NanoCpus` with
//! `CpuQuota`/`CpuPeriod` on one container, so a container created with `--cpu-quota` (or with no
//! CPU limit at all) is changed through quota/period, and restoring "no CPU limit" writes a quota
//! of -1 (unlimited). Restoring "no memory limit" is not expressible (the engine rejects
//! anything below 6 MB, including -1), so it writes the host's memory total with unlimited swap.

use std::collections::HashMap;
use std::time::Duration;

use bollard::container::{InspectContainerOptions, UpdateContainerOptions};
use bollard::models::HostConfig;
use bollard::Docker;
use tokio::sync::Mutex;

use super::docker::convert;
use super::error::{with_timeout, ContainerError};
use super::host;

/// CFS period used when we set CPUs through quota (the kernel and Docker default).
const CPU_PERIOD_US: i64 = 100_000;
/// Smallest memory limit the engine accepts.
const MIN_MEMORY_BYTES: u64 = 6 * 1024 * 1024;

/// A container's CPU and memory limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Cores (NanoCpus, else quota/period, else the online CPUs).
    pub cpus: f64,
    /// Memory limit in bytes; 0 when unlimited.
    pub memory_bytes: u64,
}

/// The resource fields as the container had them before our first change.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Original {
    nano_cpus: i64,
    cpu_quota: i64,
    cpu_period: i64,
    memory: i64,
    memory_swap: i64,
}

impl Original {
    fn of(h: &HostConfig) -> Self {
        Self {
            nano_cpus: h.nano_cpus.unwrap_or(0),
            cpu_quota: h.cpu_quota.unwrap_or(0),
            cpu_period: h.cpu_period.unwrap_or(0),
            memory: h.memory.unwrap_or(0),
            memory_swap: h.memory_swap.unwrap_or(0),
        }
    }
}

/// Limits set and not yet restored, process-wide, so an exit that cannot wait for the
/// experiment (a second SIGTERM, the drain watchdog) still puts them back:
/// [`restore_pending_blocking`].
static PENDING: std::sync::Mutex<Vec<(Docker, String, Original)>> =
    std::sync::Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<(Docker, String, Original)>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Put back every limit still changed, from a thread outside the async runtime (its own
/// small runtime), within `within`. Used on the way out when the experiment cannot finish.
pub fn restore_pending_blocking(within: Duration) {
    let todo = std::mem::take(&mut *pending());
    if todo.is_empty() {
        return;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot restore container limits: no runtime");
            return;
        }
    };
    rt.block_on(async move {
        let work = async {
            for (docker, name, orig) in todo {
                let c = LimitsControl::new(docker);
                c.originals.lock().await.insert(name.clone(), orig);
                match c.restore_one(&name).await {
                    Ok(()) => tracing::info!(container = %name, "original limits restored on exit"),
                    Err(e) => tracing::error!(container = %name, error = %e, "restoring limits on exit failed"),
                }
            }
        };
        if tokio::time::timeout(within, work).await.is_err() {
            tracing::error!("restoring container limits on exit timed out");
        }
    });
}

/// Sets and restores limits on one engine. Originals are recorded per container name the first
/// time [`LimitsControl::set`] touches it.
pub struct LimitsControl {
    docker: Docker,
    timeout: Duration,
    originals: Mutex<HashMap<String, Original>>,
}

impl LimitsControl {
    pub fn new(docker: Docker) -> Self {
        Self {
            docker,
            timeout: Duration::from_secs(10),
            originals: Mutex::new(HashMap::new()),
        }
    }

    /// Connect to `docker_host` (see [`crate::containers::ContainersConfig::effective_docker_host`]).
    pub async fn connect(docker_host: &str) -> Result<Self, ContainerError> {
        let docker = super::docker::connect::connect(docker_host, Duration::from_secs(10)).await?;
        Ok(Self::new(docker))
    }

    async fn host_config(&self, name: &str) -> Result<HostConfig, ContainerError> {
        let inspect = with_timeout(
            "inspect_container",
            self.timeout,
            self.docker
                .inspect_container(name, None::<InspectContainerOptions>),
        )
        .await?;
        inspect
            .host_config
            .ok_or_else(|| ContainerError::Container {
                name: name.to_string(),
                reason: "inspect returned no HostConfig".into(),
            })
    }

    /// CPUs of the engine's host (`docker info` NCPU): the most `--cpus` it accepts. Falls back
    /// to this host's online CPUs when the engine does not say.
    pub async fn engine_cpus(&self) -> Result<u64, ContainerError> {
        let info = with_timeout("info", self.timeout, self.docker.info()).await?;
        Ok(info
            .ncpu
            .filter(|n| *n > 0)
            .map_or_else(host::online_cpus, |n| n as u64))
    }

    /// The container's current limits as the engine reports them.
    pub async fn get(&self, name: &str) -> Result<Limits, ContainerError> {
        let h = self.host_config(name).await?;
        Ok(Limits {
            cpus: convert::cpu_limit_cores(Some(&h), host::online_cpus()),
            memory_bytes: h.memory.filter(|m| *m > 0).map_or(0, |m| m as u64),
        })
    }

    /// Set `cpus` cores and `memory_bytes` (swap included, so no swap) on `name`, recording its
    /// original limits first. A 0 leaves that resource as it is, so a sweep can change only
    /// the CPUs of a container without a memory limit.
    pub async fn set(
        &self,
        name: &str,
        cpus: f64,
        memory_bytes: u64,
    ) -> Result<(), ContainerError> {
        let bad = |reason: String| ContainerError::Container {
            name: name.to_string(),
            reason,
        };
        if !(cpus == 0.0 || (cpus.is_finite() && cpus >= 0.01)) {
            return Err(bad(format!(
                "cpus must be at least 0.01 (or 0 to keep), got {cpus}"
            )));
        }
        if memory_bytes != 0 && memory_bytes < MIN_MEMORY_BYTES {
            return Err(bad(format!(
                "memory must be at least {MIN_MEMORY_BYTES} bytes (or 0 to keep), got {memory_bytes}"
            )));
        }
        let memory = i64::try_from(memory_bytes)
            .map_err(|_| bad(format!("memory {memory_bytes} is too large")))?;
        let current = Original::of(&self.host_config(name).await?);
        let mut originals = self.originals.lock().await;
        if !originals.contains_key(name) {
            originals.insert(name.to_string(), current);
            pending().push((self.docker.clone(), name.to_string(), current));
        }
        drop(originals);
        let mut update = UpdateContainerOptions::<String>::default();
        if memory > 0 {
            update.memory = Some(memory);
            update.memory_swap = Some(memory);
        }
        if cpus > 0.0 {
            if current.nano_cpus > 0 {
                update.nano_cpus = Some((cpus * 1e9).round() as i64);
            } else {
                update.cpu_period = Some(CPU_PERIOD_US);
                update.cpu_quota = Some((cpus * CPU_PERIOD_US as f64).round() as i64);
            }
        }
        self.update(name, update).await
    }

    /// Put back what `name` had before the first [`set`](Self::set); nothing when never set.
    pub async fn restore_one(&self, name: &str) -> Result<(), ContainerError> {
        let Some(orig) = self.originals.lock().await.get(name).copied() else {
            return Ok(());
        };
        let mut update = UpdateContainerOptions::<String>::default();
        if orig.nano_cpus > 0 {
            update.nano_cpus = Some(orig.nano_cpus);
        } else if orig.cpu_quota > 0 {
            update.cpu_quota = Some(orig.cpu_quota);
            update.cpu_period = Some(orig.cpu_period.max(1000));
        } else {
            update.cpu_quota = Some(-1);
        }
        if orig.memory > 0 {
            update.memory = Some(orig.memory);
            // 0 means "swap as the engine defaulted it" but would be ignored; -1 is unlimited.
            update.memory_swap = Some(if orig.memory_swap == 0 {
                -1
            } else {
                orig.memory_swap
            });
        } else {
            let total = host::mem_total_bytes();
            update.memory = Some(i64::try_from(total).unwrap_or(i64::MAX));
            update.memory_swap = Some(-1);
        }
        self.update(name, update).await?;
        self.originals.lock().await.remove(name);
        pending().retain(|(_, n, _)| n != name);
        Ok(())
    }

    /// Restore every container changed so far. Tries them all; returns the first failure.
    pub async fn restore(&self) -> Result<(), ContainerError> {
        let names: Vec<String> = self.originals.lock().await.keys().cloned().collect();
        let mut first = None;
        for n in names {
            if let Err(e) = self.restore_one(&n).await {
                tracing::warn!(container = %n, error = %e, "restoring limits failed");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Names whose originals are recorded (changed and not yet restored).
    pub async fn changed(&self) -> Vec<String> {
        let mut v: Vec<String> = self.originals.lock().await.keys().cloned().collect();
        v.sort();
        v
    }

    async fn update(
        &self,
        name: &str,
        update: UpdateContainerOptions<String>,
    ) -> Result<(), ContainerError> {
        with_timeout(
            "update_container",
            self.timeout,
            self.docker.update_container(name, update),
        )
        .await
    }
}
