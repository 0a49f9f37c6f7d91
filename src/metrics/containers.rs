//! The container exporter: writes every container series afresh from the sampler's latest
//! [`Snapshot`] at each scrape, so a container that went away simply stops being exported and
//! a scrape never triggers a Docker call of its own. It writes the text format directly
//! ([`super::text`]): label sets are rendered once per container and shared by its families.

use super::text::{self, Expose, Value};
use crate::containers::{ContainerSample, Snapshot, SnapshotRx};

const LABELS: [&str; 2] = ["container", "group"];

/// Where a family's value comes from.
#[derive(Clone, Copy)]
enum Source {
    /// One series per container.
    Container(fn(&ContainerSample) -> f64),
    /// One series for the whole source.
    Snapshot(fn(&Snapshot) -> f64),
}

/// One exported family: name, help, `# TYPE`, and how to read its value.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    value: Source,
}

/// Every family, in name order (the order the exposition is written in).
const FAMILIES: [Family; 12] = [
    Family {
        name: "loadspec_container_cpu_limit_cores",
        help: "CPU cores the container may use (NanoCpus, else quota/period, else online CPUs).",
        kind: "gauge",
        value: Source::Container(|s| s.cpu_limit_cores),
    },
    Family {
        name: "loadspec_container_cpu_throttled_seconds_total",
        help: "Cumulative time the container was throttled by its CPU quota.",
        kind: "counter",
        value: Source::Container(|s| s.cpu_throttled_seconds_total),
    },
    Family {
        name: "loadspec_container_cpu_usage_seconds_total",
        help: "Cumulative CPU time consumed by the container.",
        kind: "counter",
        value: Source::Container(|s| s.cpu_usage_seconds_total),
    },
    Family {
        name: "loadspec_container_memory_limit_bytes",
        help: "Memory limit of the container (the host's memory when unlimited).",
        kind: "gauge",
        value: Source::Container(|s| s.memory_limit_bytes as f64),
    },
    Family {
        name: "loadspec_container_memory_usage_bytes",
        help: "Memory in use as docker stats shows it: usage minus inactive file cache.",
        kind: "gauge",
        value: Source::Container(|s| s.memory_usage_bytes as f64),
    },
    Family {
        name: "loadspec_container_network_receive_bytes_total",
        help: "Bytes received, summed over the container's interfaces.",
        kind: "counter",
        value: Source::Container(|s| s.network_receive_bytes_total as f64),
    },
    Family {
        name: "loadspec_container_network_transmit_bytes_total",
        help: "Bytes transmitted, summed over the container's interfaces.",
        kind: "counter",
        value: Source::Container(|s| s.network_transmit_bytes_total as f64),
    },
    Family {
        name: "loadspec_container_oom_kills_total",
        help: "OOM kills in the container (Docker oom events, or OOM-killed exits).",
        kind: "counter",
        value: Source::Container(|s| s.oom_kills_total as f64),
    },
    Family {
        name: "loadspec_container_restarts_total",
        help: "Restarts of the container (restart policy and manual restarts seen by loadspec).",
        kind: "counter",
        value: Source::Container(|s| s.restarts_total as f64),
    },
    Family {
        name: "loadspec_container_scrape_duration_seconds",
        help: "Wall time of the last container sampling round.",
        kind: "gauge",
        value: Source::Snapshot(|s| s.scrape_duration_seconds),
    },
    Family {
        name: "loadspec_container_up",
        help: "1 if the container is running and its last stats read succeeded.",
        kind: "gauge",
        value: Source::Container(|s| if s.up { 1.0 } else { 0.0 }),
    },
    Family {
        name: "loadspec_docker_up",
        help: "1 if the container source (the Docker engine, or /proc) answered the last sampling round.",
        kind: "gauge",
        value: Source::Snapshot(|s| if s.source_up { 1.0 } else { 0.0 }),
    },
];

/// Exports the latest container snapshot; the server appends it to every `/metrics` body.
pub struct ContainerExporter {
    rx: SnapshotRx,
}

impl ContainerExporter {
    pub fn new(rx: SnapshotRx) -> Self {
        Self { rx }
    }
}

impl Expose for ContainerExporter {
    fn expose(&self, out: &mut Vec<u8>) {
        // Clone the Arc and release the watch lock before writing anything.
        let snap = self.rx.borrow().clone();
        let mut rows: Vec<(String, &ContainerSample)> = snap
            .containers
            .iter()
            .map(|c| (text::render_labels(&LABELS, &[&c.name, &c.group]), c))
            .collect();
        rows.sort_by(|a, b| (&a.1.name, &a.1.group).cmp(&(&b.1.name, &b.1.group)));
        for f in &FAMILIES {
            match f.value {
                Source::Snapshot(v) => {
                    text::header(out, f.name, f.help, f.kind);
                    text::sample(out, f.name, "", "", "", Value::Float(v(&snap)));
                }
                Source::Container(_) if rows.is_empty() => {}
                Source::Container(v) => {
                    text::header(out, f.name, f.help, f.kind);
                    for (labels, c) in &rows {
                        let mut x = v(c);
                        // A counter only goes up from 0; a bogus reading is exported as 0.
                        if f.kind == "counter" && !(x.is_finite() && x > 0.0) {
                            x = 0.0;
                        }
                        text::sample(out, f.name, "", labels, "", Value::Float(x));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use super::*;

    fn sample(name: &str, group: &str) -> ContainerSample {
        ContainerSample {
            name: name.into(),
            group: group.into(),
            up: true,
            cpu_usage_seconds_total: 12.5,
            cpu_cores: 0.9,
            cpu_limit_cores: 1.0,
            memory_usage_bytes: 104_857_600,
            memory_limit_bytes: 268_435_456,
            cpu_throttled_seconds_total: 0.25,
            network_receive_bytes_total: 1000,
            network_transmit_bytes_total: 2000,
            restarts_total: 1,
            oom_kills_total: 0,
        }
    }

    fn exposition(snap: Snapshot) -> (String, tokio::sync::watch::Sender<Arc<Snapshot>>) {
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(snap));
        (gather(&ContainerExporter::new(rx)), tx)
    }

    fn gather(exporter: &ContainerExporter) -> String {
        let mut buf = Vec::new();
        exporter.expose(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn families_are_in_name_order() {
        assert!(FAMILIES.windows(2).all(|w| w[0].name < w[1].name));
    }

    #[test]
    fn exposition_text_is_exact() {
        let down = ContainerSample {
            up: false,
            cpu_usage_seconds_total: 3.0,
            cpu_cores: 0.0,
            cpu_limit_cores: 2.0,
            memory_usage_bytes: 0,
            memory_limit_bytes: 1_073_741_824,
            cpu_throttled_seconds_total: 0.0,
            network_receive_bytes_total: 5,
            network_transmit_bytes_total: 6,
            restarts_total: 0,
            oom_kills_total: 2,
            ..sample("ai", "ai")
        };
        let (text, _tx) = exposition(Snapshot {
            source_up: true,
            scrape_duration_seconds: 0.125,
            taken_at: std::time::SystemTime::now(),
            containers: vec![sample("api", "backend"), down],
        });
        let want = r#"# HELP loadspec_container_cpu_limit_cores CPU cores the container may use (NanoCpus, else quota/period, else online CPUs).
# TYPE loadspec_container_cpu_limit_cores gauge
loadspec_container_cpu_limit_cores{container="ai",group="ai"} 2
loadspec_container_cpu_limit_cores{container="api",group="backend"} 1
# HELP loadspec_container_cpu_throttled_seconds_total Cumulative time the container was throttled by its CPU quota.
# TYPE loadspec_container_cpu_throttled_seconds_total counter
loadspec_container_cpu_throttled_seconds_total{container="ai",group="ai"} 0
loadspec_container_cpu_throttled_seconds_total{container="api",group="backend"} 0.25
# HELP loadspec_container_cpu_usage_seconds_total Cumulative CPU time consumed by the container.
# TYPE loadspec_container_cpu_usage_seconds_total counter
loadspec_container_cpu_usage_seconds_total{container="ai",group="ai"} 3
loadspec_container_cpu_usage_seconds_total{container="api",group="backend"} 12.5
# HELP loadspec_container_memory_limit_bytes Memory limit of the container (the host's memory when unlimited).
# TYPE loadspec_container_memory_limit_bytes gauge
loadspec_container_memory_limit_bytes{container="ai",group="ai"} 1073741824
loadspec_container_memory_limit_bytes{container="api",group="backend"} 268435456
# HELP loadspec_container_memory_usage_bytes Memory in use as docker stats shows it: usage minus inactive file cache.
# TYPE loadspec_container_memory_usage_bytes gauge
loadspec_container_memory_usage_bytes{container="ai",group="ai"} 0
loadspec_container_memory_usage_bytes{container="api",group="backend"} 104857600
# HELP loadspec_container_network_receive_bytes_total Bytes received, summed over the container's interfaces.
# TYPE loadspec_container_network_receive_bytes_total counter
loadspec_container_network_receive_bytes_total{container="ai",group="ai"} 5
loadspec_container_network_receive_bytes_total{container="api",group="backend"} 1000
# HELP loadspec_container_network_transmit_bytes_total Bytes transmitted, summed over the container's interfaces.
# TYPE loadspec_container_network_transmit_bytes_total counter
loadspec_container_network_transmit_bytes_total{container="ai",group="ai"} 6
loadspec_container_network_transmit_bytes_total{container="api",group="backend"} 2000
# HELP loadspec_container_oom_kills_total OOM kills in the container (Docker oom events, or OOM-killed exits).
# TYPE loadspec_container_oom_kills_total counter
loadspec_container_oom_kills_total{container="ai",group="ai"} 2
loadspec_container_oom_kills_total{container="api",group="backend"} 0
# HELP loadspec_container_restarts_total Restarts of the container (restart policy and manual restarts seen by loadspec).
# TYPE loadspec_container_restarts_total counter
loadspec_container_restarts_total{container="ai",group="ai"} 0
loadspec_container_restarts_total{container="api",group="backend"} 1
# HELP loadspec_container_scrape_duration_seconds Wall time of the last container sampling round.
# TYPE loadspec_container_scrape_duration_seconds gauge
loadspec_container_scrape_duration_seconds 0.125
# HELP loadspec_container_up 1 if the container is running and its last stats read succeeded.
# TYPE loadspec_container_up gauge
loadspec_container_up{container="ai",group="ai"} 0
loadspec_container_up{container="api",group="backend"} 1
# HELP loadspec_docker_up 1 if the container source (the Docker engine, or /proc) answered the last sampling round.
# TYPE loadspec_docker_up gauge
loadspec_docker_up 1
"#;
        assert_eq!(text, want);
    }

    #[test]
    fn removed_container_disappears_and_engine_down_is_zero() {
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(Snapshot {
            source_up: true,
            scrape_duration_seconds: 0.1,
            taken_at: std::time::SystemTime::now(),
            containers: vec![sample("api", "backend"), sample("gone", "backend")],
        }));
        let reg = ContainerExporter::new(rx);
        assert!(gather(&reg).contains(r#"container="gone""#));
        tx.send(Arc::new(Snapshot {
            source_up: true,
            containers: vec![sample("api", "backend")],
            ..Snapshot::default()
        }))
        .unwrap();
        let text = gather(&reg);
        assert!(!text.contains(r#"container="gone""#), "{text}");
        assert!(text.contains(r#"container="api""#));
        tx.send(Arc::new(Snapshot::default())).unwrap();
        let text = gather(&reg);
        assert!(text.lines().any(|l| l == "loadspec_docker_up 0"), "{text}");
        assert!(!text.contains("container="), "{text}");
    }

    #[test]
    fn promtool_accepts_the_exposition() {
        let (text, _tx) = exposition(Snapshot {
            source_up: true,
            scrape_duration_seconds: 0.01,
            taken_at: std::time::SystemTime::now(),
            containers: vec![sample("api", "backend"), sample("ai-1", "ai")],
        });
        let promtool = std::path::Path::new("/usr/bin/promtool");
        if !promtool.exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is required under CI=true"
            );
            eprintln!("skipping: /usr/bin/promtool not installed");
            return;
        }
        let mut child = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
