//! The container collector: a `prometheus::core::Collector` that builds every container series
//! afresh from the sampler's latest [`Snapshot`] at each scrape (the pattern of rust-prometheus'
//! `process_collector.rs`), so a container that went away simply stops being exported and a
//! scrape never triggers a Docker call of its own.

use prometheus::core::{Collector, Desc, Describer};
use prometheus::proto::MetricFamily;
use prometheus::{CounterVec, Gauge, GaugeVec, Opts};

use crate::containers::{ContainerSample, Snapshot, SnapshotRx};

const LABELS: [&str; 2] = ["container", "group"];

/// How a per-container family is exported.
#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

/// One per-container family: name, help, kind, and how to read its value from a sample.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    value: fn(&ContainerSample) -> f64,
}

const FAMILIES: [Family; 10] = [
    Family {
        name: "loadspec_container_up",
        help: "1 if the container is running and its last stats read succeeded.",
        kind: Kind::Gauge,
        value: |s| if s.up { 1.0 } else { 0.0 },
    },
    Family {
        name: "loadspec_container_cpu_usage_seconds_total",
        help: "Cumulative CPU time consumed by the container.",
        kind: Kind::Counter,
        value: |s| s.cpu_usage_seconds_total,
    },
    Family {
        name: "loadspec_container_cpu_limit_cores",
        help: "CPU cores the container may use (NanoCpus, else quota/period, else online CPUs).",
        kind: Kind::Gauge,
        value: |s| s.cpu_limit_cores,
    },
    Family {
        name: "loadspec_container_memory_usage_bytes",
        help: "Memory in use as docker stats shows it: usage minus inactive file cache.",
        kind: Kind::Gauge,
        value: |s| s.memory_usage_bytes as f64,
    },
    Family {
        name: "loadspec_container_memory_limit_bytes",
        help: "Memory limit of the container (the host's memory when unlimited).",
        kind: Kind::Gauge,
        value: |s| s.memory_limit_bytes as f64,
    },
    Family {
        name: "loadspec_container_cpu_throttled_seconds_total",
        help: "Cumulative time the container was throttled by its CPU quota.",
        kind: Kind::Counter,
        value: |s| s.cpu_throttled_seconds_total,
    },
    Family {
        name: "loadspec_container_network_receive_bytes_total",
        help: "Bytes received, summed over the container's interfaces.",
        kind: Kind::Counter,
        value: |s| s.network_receive_bytes_total as f64,
    },
    Family {
        name: "loadspec_container_network_transmit_bytes_total",
        help: "Bytes transmitted, summed over the container's interfaces.",
        kind: Kind::Counter,
        value: |s| s.network_transmit_bytes_total as f64,
    },
    Family {
        name: "loadspec_container_restarts_total",
        help: "Restarts of the container (restart policy and manual restarts seen by loadspec).",
        kind: Kind::Counter,
        value: |s| s.restarts_total as f64,
    },
    Family {
        name: "loadspec_container_oom_kills_total",
        help: "OOM kills in the container (Docker oom events, or OOM-killed exits).",
        kind: Kind::Counter,
        value: |s| s.oom_kills_total as f64,
    },
];

const DOCKER_UP: (&str, &str) = (
    "loadspec_docker_up",
    "1 if the container source (the Docker engine, or /proc) answered the last sampling round.",
);
const SCRAPE_DURATION: (&str, &str) = (
    "loadspec_container_scrape_duration_seconds",
    "Wall time of the last container sampling round.",
);

/// Exports the latest container snapshot. Register it on the daemon's registry.
pub struct ContainerCollector {
    rx: SnapshotRx,
    descs: Vec<Desc>,
}

impl ContainerCollector {
    pub fn new(rx: SnapshotRx) -> Self {
        let labelled = FAMILIES.iter().map(|f| {
            Opts::new(f.name, f.help)
                .variable_labels(LABELS.iter().map(|l| l.to_string()).collect())
                .describe()
        });
        let plain = [DOCKER_UP, SCRAPE_DURATION]
            .into_iter()
            .map(|(n, h)| Opts::new(n, h).describe());
        let descs = labelled
            .chain(plain)
            .collect::<Result<Vec<_>, _>>()
            .expect("container metric names and labels are valid");
        Self { rx, descs }
    }

    /// Every family for `snap`, in a fixed order.
    fn families(snap: &Snapshot) -> Vec<MetricFamily> {
        let mut out = Vec::with_capacity(FAMILIES.len() + 2);
        for f in &FAMILIES {
            let opts = Opts::new(f.name, f.help);
            let mfs = match f.kind {
                Kind::Gauge => {
                    let v = GaugeVec::new(opts, &LABELS).expect("valid gauge");
                    for s in &snap.containers {
                        v.with_label_values(&[s.name.as_str(), s.group.as_str()])
                            .set((f.value)(s));
                    }
                    v.collect()
                }
                Kind::Counter => {
                    let v = CounterVec::new(opts, &LABELS).expect("valid counter");
                    for s in &snap.containers {
                        let x = (f.value)(s);
                        // A counter only takes non-negative finite increments.
                        if x.is_finite() && x > 0.0 {
                            v.with_label_values(&[s.name.as_str(), s.group.as_str()])
                                .inc_by(x);
                        } else {
                            v.with_label_values(&[s.name.as_str(), s.group.as_str()]);
                        }
                    }
                    v.collect()
                }
            };
            out.extend(mfs.into_iter().filter(|mf| !mf.get_metric().is_empty()));
        }
        for ((name, help), value) in [DOCKER_UP, SCRAPE_DURATION].into_iter().zip([
            if snap.source_up { 1.0 } else { 0.0 },
            snap.scrape_duration_seconds,
        ]) {
            let g = Gauge::with_opts(Opts::new(name, help)).expect("valid gauge");
            g.set(value);
            out.extend(g.collect());
        }
        out
    }
}

impl Collector for ContainerCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Clone the Arc and release the watch lock before building anything.
        let snap = self.rx.borrow().clone();
        Self::families(&snap)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use prometheus::{Encoder, Registry, TextEncoder};

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
        let reg = Registry::new();
        reg.register(Box::new(ContainerCollector::new(rx))).unwrap();
        let mut buf = Vec::new();
        TextEncoder::new().encode(&reg.gather(), &mut buf).unwrap();
        (String::from_utf8(buf).unwrap(), tx)
    }

    fn gather(reg: &Registry) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&reg.gather(), &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
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
        let reg = Registry::new();
        reg.register(Box::new(ContainerCollector::new(rx))).unwrap();
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
