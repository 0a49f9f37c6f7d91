//! What can go wrong with the target during a stage, watched beside the stage window:
//! - [`ContainerTracker`]: OOM kills, restarts and exits of the measured containers, from the
//!   counters and the `up` flag of successive sampler snapshots;
//! - [`DownWatch`]: the target refusing connections, from the request counters sampled every
//!   few hundred milliseconds (a stretch where connects fail and nothing answers).
//!
//! Both place what they saw at a time since the stage start, so the report can say "OOM kill
//! at T4 +3.2 s" and "target down from +3.4 s".

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use crate::analysis::{ContainerEvent, ContainerEventKind, TargetDown};
use crate::containers::Snapshot;

/// A stretch without responses shorter than this is a blip, not a target that is down.
const MIN_DOWN_SECONDS: f64 = 1.0;

#[derive(Debug, Clone)]
struct Last {
    group: String,
    up: bool,
    oom_kills: u64,
    restarts: u64,
    memory_limit_bytes: u64,
    cpu_limit_cores: f64,
    /// An OOM kill was reported and the container has not run again since: its exit is that
    /// kill, not a second event (the counter and the stopped state often arrive in different
    /// samples).
    killed: bool,
}

/// Lifecycle changes of the sampled containers, across every stage of a scenario.
#[derive(Debug, Default)]
pub struct ContainerTracker {
    last: HashMap<String, Last>,
    seeded: bool,
}

impl ContainerTracker {
    /// Compare `snap` with the previous one. The first snapshot only sets the baseline (what
    /// happened before the run is not this run's event). `at_seconds` places the events.
    pub fn update(&mut self, snap: &Snapshot, at_seconds: f64) -> Vec<ContainerEvent> {
        let mut out = Vec::new();
        let seeded = self.seeded;
        self.seeded = true;
        let mut seen = Vec::with_capacity(snap.containers.len());
        for c in &snap.containers {
            seen.push(c.name.as_str());
            let prev = self.last.get(&c.name).cloned();
            let mut cur = Last {
                group: c.group.clone(),
                up: c.up,
                oom_kills: c.oom_kills_total,
                restarts: c.restarts_total,
                // A stopped container reports 0 usage but keeps its limits; keep the last
                // known ones for the event.
                memory_limit_bytes: c.memory_limit_bytes,
                cpu_limit_cores: c.cpu_limit_cores,
                killed: false,
            };
            if let Some(p) = &prev {
                if cur.memory_limit_bytes == 0 {
                    cur.memory_limit_bytes = p.memory_limit_bytes;
                }
                if cur.cpu_limit_cores == 0.0 {
                    cur.cpu_limit_cores = p.cpu_limit_cores;
                }
            }
            if seeded {
                let mut push = |kind| {
                    out.push(event(&c.name, &cur, kind, at_seconds));
                };
                match &prev {
                    Some(p) => {
                        let oom = cur.oom_kills > p.oom_kills;
                        let restarted = cur.restarts > p.restarts;
                        if oom {
                            push(ContainerEventKind::OomKill);
                        }
                        if restarted {
                            push(ContainerEventKind::Restart);
                        } else if p.up && !cur.up && !oom && !p.killed {
                            push(ContainerEventKind::Exit);
                        }
                        // Remembered until the container runs again after the kill.
                        let ran_again = restarted || (cur.up && !p.up);
                        cur.killed = oom || (p.killed && !ran_again);
                    }
                    // New during the run: only a kill it already carries is news.
                    None if cur.oom_kills > 0 && !cur.up => push(ContainerEventKind::OomKill),
                    None => {}
                }
            }
            self.last.insert(c.name.clone(), cur);
        }
        // A container that vanished while it was up was removed under the run.
        if seeded && !snap.containers.is_empty() {
            let gone: Vec<String> = self
                .last
                .iter()
                .filter(|(n, l)| l.up && !seen.contains(&n.as_str()))
                .map(|(n, _)| n.clone())
                .collect();
            for n in gone {
                if let Some(l) = self.last.remove(&n) {
                    out.push(event(&n, &l, ContainerEventKind::Exit, at_seconds));
                }
            }
        }
        out
    }
}

fn event(name: &str, l: &Last, kind: ContainerEventKind, at_seconds: f64) -> ContainerEvent {
    ContainerEvent {
        container: name.to_string(),
        group: l.group.clone(),
        kind,
        at_seconds,
        at: Some(SystemTime::now()),
        memory_limit_bytes: l.memory_limit_bytes,
        cpu_limit_cores: l.cpu_limit_cores,
        after_load_seconds: None,
    }
}

/// Responses (any HTTP status) and connect failures in a stage's status counts.
pub fn responses_and_connects(counts: &BTreeMap<String, u64>) -> (u64, u64) {
    let responses = counts
        .iter()
        .filter(|(k, _)| k.parse::<u16>().is_ok())
        .map(|(_, v)| *v)
        .sum();
    (responses, counts.get("connect").copied().unwrap_or(0))
}

/// Whether, and from when, the target refused connections within one stage.
#[derive(Debug, Default)]
pub struct DownWatch {
    prev: Option<(f64, u64, u64)>,
    /// Start of the current stretch without responses, and its connect failures so far.
    down: Option<(f64, u64)>,
    found: Option<TargetDown>,
}

impl DownWatch {
    /// Feed the cumulative (responses, connect failures) at `at_seconds` since the stage start.
    pub fn observe(&mut self, at_seconds: f64, responses: u64, connects: u64) {
        if let Some((t0, r0, c0)) = self.prev {
            let (dr, dc) = (responses.saturating_sub(r0), connects.saturating_sub(c0));
            if dr > 0 {
                if let Some((from, n)) = self.down.take() {
                    self.close(from, Some(at_seconds), n);
                }
            } else if dc > 0 {
                // The failures happened since the last reading: the stretch starts there.
                let d = self.down.get_or_insert((t0, 0));
                d.1 += dc;
            }
        }
        self.prev = Some((at_seconds, responses, connects));
    }

    fn close(&mut self, from: f64, back: Option<f64>, n: u64) {
        let until = back.or(self.prev.map(|p| p.0)).unwrap_or(from);
        if self.found.is_none() && until - from >= MIN_DOWN_SECONDS {
            self.found = Some(TargetDown {
                from_seconds: from,
                back_at_seconds: back,
                connect_failures: n,
            });
        } else if let Some(f) = self.found.as_mut() {
            // A later stretch of the same stage: count its failures, keep the first start.
            f.connect_failures += n;
            f.back_at_seconds = back;
        }
    }

    /// The first stretch of at least a second, if any; a stretch still open at the end of the
    /// stage has no `back_at_seconds`.
    pub fn finish(mut self) -> Option<TargetDown> {
        if let Some((from, n)) = self.down.take() {
            self.close(from, None, n);
        }
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::ContainerSample;

    fn sample(name: &str, up: bool, ooms: u64, restarts: u64) -> ContainerSample {
        ContainerSample {
            name: name.into(),
            group: "ai".into(),
            up,
            cpu_usage_seconds_total: 0.0,
            cpu_cores: 0.0,
            cpu_limit_cores: 1.0,
            memory_usage_bytes: 0,
            memory_limit_bytes: if up { 1 << 30 } else { 0 },
            cpu_throttled_seconds_total: 0.0,
            network_receive_bytes_total: 0,
            network_transmit_bytes_total: 0,
            restarts_total: restarts,
            oom_kills_total: ooms,
        }
    }

    fn snap(c: Vec<ContainerSample>) -> Snapshot {
        Snapshot {
            source_up: true,
            containers: c,
            ..Snapshot::default()
        }
    }

    #[test]
    fn oom_restart_and_exit_are_told_apart() {
        let mut t = ContainerTracker::default();
        // Earlier kills are the baseline, not events.
        assert!(t
            .update(
                &snap(vec![sample("a", true, 2, 0), sample("b", true, 0, 0)]),
                0.0
            )
            .is_empty());
        let ev = t.update(
            &snap(vec![sample("a", false, 3, 0), sample("b", true, 0, 0)]),
            1.5,
        );
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, ContainerEventKind::OomKill);
        assert_eq!(ev[0].container, "a");
        assert_eq!(ev[0].at_seconds, 1.5);
        // The stopped sample reports no limit; the last known one is kept.
        assert_eq!(ev[0].memory_limit_bytes, 1 << 30);
        // The kill was counted while it still ran; its stop in the next sample is the same
        // event, not an exit.
        let mut t2 = ContainerTracker::default();
        t2.update(&snap(vec![sample("k", true, 0, 0)]), 0.0);
        let ev = t2.update(&snap(vec![sample("k", true, 1, 0)]), 1.0);
        assert_eq!(ev.len(), 1);
        assert!(t2
            .update(&snap(vec![sample("k", false, 1, 0)]), 1.5)
            .is_empty());
        // Started again and then stopped: that exit is news.
        let ev = t2.update(&snap(vec![sample("k", true, 1, 1)]), 2.0);
        assert_eq!(ev[0].kind, ContainerEventKind::Restart);
        let ev = t2.update(&snap(vec![sample("k", false, 1, 1)]), 3.0);
        assert_eq!(ev[0].kind, ContainerEventKind::Exit);
        let ev = t.update(
            &snap(vec![sample("a", true, 3, 1), sample("b", false, 0, 0)]),
            2.0,
        );
        let kinds: Vec<_> = ev.iter().map(|e| (e.container.as_str(), e.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("a", ContainerEventKind::Restart),
                ("b", ContainerEventKind::Exit)
            ]
        );
        // a vanishes while up: removed under the run.
        let ev = t.update(&snap(vec![sample("b", false, 0, 0)]), 3.0);
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].container.as_str(), ev[0].kind),
            ("a", ContainerEventKind::Exit)
        );
    }

    #[test]
    fn a_stretch_of_refused_connections_is_found() {
        let mut w = DownWatch::default();
        let mut conn = 0;
        let mut resp = 0;
        for i in 0..=20 {
            let t = i as f64 * 0.2;
            if t <= 1.0 {
                resp += 10;
            } else {
                conn += 50;
            }
            w.observe(t, resp, conn);
        }
        let d = w.finish().expect("down");
        assert!((d.from_seconds - 1.0).abs() < 1e-9, "{d:?}");
        assert_eq!(d.back_at_seconds, None);
        assert_eq!(d.connect_failures, 50 * 15);

        // A blip of one reading is not a down target; a long stretch that ends is.
        let mut w = DownWatch::default();
        w.observe(0.0, 0, 0);
        w.observe(0.2, 0, 5);
        w.observe(0.4, 10, 5);
        w.observe(0.6, 10, 10);
        w.observe(2.0, 10, 20);
        w.observe(2.2, 20, 20);
        let d = w.finish().expect("down");
        assert_eq!((d.from_seconds, d.back_at_seconds), (0.4, Some(2.2)));
        assert_eq!(d.connect_failures, 15);

        let mut w = DownWatch::default();
        for (t, r) in [(0.0, 0), (0.2, 5), (0.4, 10)] {
            w.observe(t, r, 0);
        }
        assert_eq!(w.finish(), None);
    }

    #[test]
    fn status_counts_split_into_responses_and_connects() {
        let m: BTreeMap<String, u64> = [("200", 5), ("500", 2), ("connect", 7), ("timeout", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(responses_and_connects(&m), (7, 7));
    }
}
