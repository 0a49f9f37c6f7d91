//! OOM kills from the engine's event stream. Docker emits an `oom` event each time the kernel's
//! OOM killer fires in a container's cgroup, including kills of a child process that leave the
//! container running, which no exit status shows. The stream only sees kills while it is
//! connected; the sampler also counts exits with `State.OOMKilled` and reports the larger of
//! the two per container, so a kill during a stream outage that ended the container still
//! counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::system::EventsOptions;
use bollard::Docker;
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// OOM events seen per container ID since the watch started.
pub type OomCounts = Arc<Mutex<HashMap<String, u64>>>;

/// Follow `oom` events until the stream ends, fails, or `shutdown` fires. The sampler restarts
/// the watch (by calling this again) after the task finishes.
pub fn spawn_oom_watch(
    docker: Docker,
    counts: OomCounts,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["oom".to_string()]),
        ]);
        let mut stream = docker.events(Some(EventsOptions::<String> {
            filters,
            ..Default::default()
        }));
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = stream.next() => n,
            };
            match next {
                Some(Ok(ev)) if ev.action.as_deref() == Some("oom") => {
                    if let Some(id) = ev.actor.and_then(|a| a.id) {
                        tracing::info!(container_id = %id, "container OOM kill");
                        if let Ok(mut c) = counts.lock() {
                            *c.entry(id).or_insert(0) += 1;
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "docker event stream failed");
                    // Avoid a tight reconnect loop when the engine answers but errors out.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return;
                }
                None => return,
            }
        }
    })
}
