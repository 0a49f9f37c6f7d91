//! Stage summaries rebuilt from Prometheus: the same [`StageSummary`] the in-process observer
//! measures, with every shard's counters summed. Counts are counter differences across the
//! window (value at its end minus value at its start, a series born inside the window counts
//! whole), not `increase()`, which extrapolates. Latency quantiles come from the summed
//! histogram buckets, so their resolution is the bucket layout's.

use std::collections::BTreeMap;

use super::prom::{PromError, Prometheus, Sample};
use super::windows::Window;
use crate::analysis::{LatencySummary, ResourceSummary, StageSummary};

/// Which series hold the containers' CPU and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ContainerSeries {
    /// loadspec's own `loadspec_container_*` (the Docker or process source), else cAdvisor's.
    Auto,
    /// `loadspec_container_*`.
    Loadspec,
    /// cAdvisor's `container_*`, mapped as prometheus/rules/cadvisor.rules.yml maps them.
    Cadvisor,
    /// No container figures.
    None,
}

/// The PromQL of one container source: selectors already mapped to `container`/`group`.
struct Source {
    cpu_usage: String,
    cpu_limit: String,
    memory: String,
    memory_limit: String,
}

/// cAdvisor's labels mapped as in cadvisor.rules.yml: `group` is the container's name in the
/// pod spec, `container` becomes namespace/pod/container.
fn cadvisor(expr: &str) -> String {
    format!(
        r#"sum by (container, group) (label_join(label_replace({expr}, "group", "$1", "container", "(.+)"), "container", "/", "namespace", "pod", "container"))"#
    )
}

impl Source {
    fn loadspec() -> Self {
        Self {
            cpu_usage: "loadspec_container_cpu_usage_seconds_total".into(),
            cpu_limit: "loadspec_container_cpu_limit_cores".into(),
            memory: "loadspec_container_memory_usage_bytes".into(),
            memory_limit: "loadspec_container_memory_limit_bytes".into(),
        }
    }

    /// cAdvisor: `RANGE` is replaced by the window where a range is needed.
    fn cadvisor() -> Self {
        let c = r#"{container!="", container!="POD"}"#;
        Self {
            cpu_usage: format!("container_cpu_usage_seconds_total{c}"),
            cpu_limit: cadvisor(&format!(
                "container_spec_cpu_quota{c} / container_spec_cpu_period{c}"
            )),
            memory: cadvisor(&format!("container_memory_working_set_bytes{c}")),
            memory_limit: cadvisor(&format!("container_spec_memory_limit_bytes{c} > 0")),
        }
    }

    fn cpu_rate(&self, range: &str, cadv: bool) -> String {
        let r = format!("rate({}[{range}])", self.cpu_usage);
        if cadv {
            cadvisor(&r)
        } else {
            format!("sum by (container, group) ({r})")
        }
    }
}

/// Reads one run (or time range) from Prometheus.
pub struct Reader<'a> {
    pub prom: &'a Prometheus,
    /// `and on(instance, job) loadspec_run_info{run_id="…"}` or empty: only the run's shards.
    pub run_filter: Option<String>,
    pub containers: ContainerSeries,
}

fn label<'s>(s: &'s Sample, name: &str) -> &'s str {
    s.labels.get(name).map(String::as_str).unwrap_or("")
}

fn secs(d: f64) -> String {
    format!("{}s", d.round().max(1.0) as u64)
}

impl Reader<'_> {
    fn filtered(&self, expr: &str, offset: Option<&str>) -> String {
        match (&self.run_filter, offset) {
            (None, _) => expr.to_string(),
            (Some(f), None) => format!("({expr} and on(instance, job) {f})"),
            (Some(f), Some(o)) => format!("({expr} and on(instance, job) {f} offset {o})"),
        }
    }

    /// Per-`by` growth of a counter from `a` to `b` (evaluated at `b`).
    async fn counter_delta(
        &self,
        metric: &str,
        matchers: &str,
        by: &str,
        d: f64,
        b: f64,
    ) -> Result<BTreeMap<String, f64>, PromError> {
        let o = secs(d);
        let now = self.filtered(&format!("{metric}{{{matchers}}}"), None);
        let then = self.filtered(&format!("{metric}{{{matchers}}} offset {o}"), Some(&o));
        let q =
            format!("(sum by ({by}) ({now}) - sum by ({by}) ({then})) or sum by ({by}) ({now})");
        let out = self.prom.instant(&q, b).await?;
        Ok(out
            .iter()
            .map(|s| (label(s, by).to_string(), s.value.max(0.0)))
            .collect())
    }

    async fn scalar(&self, q: &str, at: f64) -> Result<Option<f64>, PromError> {
        Ok(self
            .prom
            .instant(q, at)
            .await?
            .first()
            .map(|s| s.value)
            .filter(|v| v.is_finite()))
    }

    /// One stage's summary over its measured window `[a, b]`.
    pub async fn stage(
        &self,
        w: &Window,
        name: &str,
        a: f64,
        b: f64,
    ) -> Result<StageSummary, PromError> {
        let d = b - a;
        let r = secs(d);
        let sc = format!(
            r#"scenario="{}""#,
            w.scenario.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let checks = self
            .counter_delta("loadspec_checks_total", &sc, "result", d, b)
            .await?;
        let requests = checks.values().sum::<f64>().round() as u64;
        let errors = checks.get("fail").copied().unwrap_or(0.0).round() as u64;
        let mut status = BTreeMap::new();
        for (k, v) in self
            .counter_delta("loadspec_http_requests_total", &sc, "code", d, b)
            .await?
        {
            status.insert(k, v.round() as u64);
        }
        for (k, v) in self
            .counter_delta("loadspec_http_request_failures_total", &sc, "reason", d, b)
            .await?
        {
            status.insert(k, v.round() as u64);
        }
        status.retain(|_, v| *v > 0);
        let dropped = self
            .counter_delta("loadspec_dropped_iterations_total", &sc, "scenario", d, b)
            .await?
            .values()
            .sum::<f64>()
            .round() as u64;
        let vus_q = format!(
            "sum({})",
            self.filtered(&format!("avg_over_time(loadspec_vus{{{sc}}}[{r}])"), None)
        );
        let vus = self.scalar(&vus_q, b).await?.unwrap_or(0.0);
        let rate_q = format!(
            "sum({})",
            self.filtered(
                &format!("avg_over_time(loadspec_arrival_rate_target_per_second{{{sc}}}[{r}])"),
                None
            )
        );
        let target_rate = self.scalar(&rate_q, b).await?.filter(|r| *r > 0.0);
        let latency = self.latency(&sc, d, b).await?;
        let (containers, groups) = self.resources(d, b).await?;
        Ok(StageSummary {
            scenario: w.scenario.clone(),
            stage_index: w.index,
            stage: name.to_string(),
            vus,
            target_rate,
            window_seconds: d,
            requests,
            // Successes per second, as the observer counts them; every request in the rate.
            tps: if d > 0.0 {
                (requests - errors.min(requests)) as f64 / d
            } else {
                0.0
            },
            request_rate: if d > 0.0 { requests as f64 / d } else { 0.0 },
            // No response in the window: no latency (the buckets would read 0).
            latency: status
                .keys()
                .any(|k| k.parse::<u16>().is_ok())
                .then_some(latency),
            errors,
            error_ratio: if requests > 0 {
                errors as f64 / requests as f64
            } else {
                0.0
            },
            status,
            dropped_iterations: dropped,
            containers,
            groups,
            // Lifecycle events, a dead target and the host's idle CPU are seen by the observer
            // only; Prometheus has no sample of them per stage.
            events: Vec::new(),
            target_down: None,
            host: None,
        })
    }

    async fn latency(&self, sc: &str, d: f64, b: f64) -> Result<LatencySummary, PromError> {
        let m = "loadspec_http_request_duration_seconds";
        let buckets = self
            .counter_delta(&format!("{m}_bucket"), sc, "le", d, b)
            .await?;
        let mut cum: Vec<(f64, f64)> = buckets
            .iter()
            .filter_map(|(le, n)| Some((parse_le(le)?, *n)))
            .collect();
        cum.sort_by(|x, y| x.0.total_cmp(&y.0));
        let sum = self
            .counter_delta(&format!("{m}_sum"), sc, "scenario", d, b)
            .await?;
        let count = self
            .counter_delta(&format!("{m}_count"), sc, "scenario", d, b)
            .await?;
        let (sum, count) = (sum.values().sum::<f64>(), count.values().sum::<f64>());
        let max_q = format!(
            "max({})",
            self.filtered(
                &format!(
                    "max_over_time(loadspec_http_request_duration_max_seconds{{{sc}}}[{}])",
                    secs(d)
                ),
                None
            )
        );
        let max = match self.scalar(&max_q, b).await? {
            Some(m) => m,
            // Without the max gauge: the upper edge of the highest bucket that filled.
            None => highest_filled_edge(&cum),
        };
        Ok(LatencySummary {
            avg: if count > 0.0 { sum / count } else { 0.0 },
            p50: quantile(&cum, 0.50),
            p95: quantile(&cum, 0.95),
            p99: quantile(&cum, 0.99),
            max,
        })
    }

    async fn resources(
        &self,
        d: f64,
        b: f64,
    ) -> Result<(Vec<ResourceSummary>, Vec<ResourceSummary>), PromError> {
        let cadv = match self.containers {
            ContainerSeries::None => return Ok((Vec::new(), Vec::new())),
            ContainerSeries::Loadspec => false,
            ContainerSeries::Cadvisor => true,
            ContainerSeries::Auto => {
                let probe = format!(
                    "count(count_over_time(loadspec_container_cpu_usage_seconds_total[{}]))",
                    secs(d)
                );
                self.scalar(&probe, b).await?.is_none()
            }
        };
        let src = if cadv {
            Source::cadvisor()
        } else {
            Source::loadspec()
        };
        let r = secs(d);
        let by = |q: String| format!("sum by (container, group) ({q})");
        let mem = if cadv {
            src.memory.clone()
        } else {
            by(src.memory.clone())
        };
        let queries = [
            src.cpu_rate(&r, cadv),
            format!("max_over_time(({})[{r}:1s])", src.cpu_rate("5s", cadv)),
            format!(
                "max_over_time(({})[{r}:1s])",
                if cadv {
                    src.cpu_limit.clone()
                } else {
                    by(src.cpu_limit.clone())
                }
            ),
            format!("avg_over_time(({mem})[{r}:1s])"),
            format!("max_over_time(({mem})[{r}:1s])"),
            format!(
                "max_over_time(({})[{r}:1s])",
                if cadv {
                    src.memory_limit.clone()
                } else {
                    by(src.memory_limit.clone())
                }
            ),
            format!("count_over_time(({mem})[{r}:1s])"),
        ];
        let mut rows: BTreeMap<(String, String), ResourceSummary> = BTreeMap::new();
        for (i, q) in queries.iter().enumerate() {
            for s in self.prom.instant(q, b).await? {
                let key = (
                    label(&s, "container").to_string(),
                    label(&s, "group").to_string(),
                );
                let row = rows.entry(key.clone()).or_insert_with(|| ResourceSummary {
                    name: key.0.clone(),
                    group: key.1.clone(),
                    ..Default::default()
                });
                let v = if s.value.is_finite() { s.value } else { 0.0 };
                match i {
                    0 => row.cpu_cores_avg = v,
                    1 => row.cpu_cores_max = v,
                    2 => row.cpu_limit_cores = v,
                    3 => row.memory_bytes_avg = v,
                    4 => row.memory_bytes_max = v,
                    5 => row.memory_limit_bytes = v,
                    _ => row.samples = v as u64,
                }
            }
        }
        let mut containers: Vec<ResourceSummary> = rows.into_values().collect();
        for c in &mut containers {
            finish(c);
        }
        // Groups: per-sample sums, so the max is the group's peak, not a sum of peaks.
        let mut groups: BTreeMap<String, ResourceSummary> = BTreeMap::new();
        for c in &containers {
            let g = groups
                .entry(c.group.clone())
                .or_insert_with(|| ResourceSummary {
                    name: c.group.clone(),
                    group: c.group.clone(),
                    ..Default::default()
                });
            g.cpu_cores_avg += c.cpu_cores_avg;
            g.cpu_limit_cores += c.cpu_limit_cores;
            g.memory_bytes_avg += c.memory_bytes_avg;
            g.memory_limit_bytes += c.memory_limit_bytes;
            g.samples = g.samples.max(c.samples);
        }
        let gq = [
            format!(
                "max_over_time((sum by (group) ({}))[{r}:1s])",
                src.cpu_rate("5s", cadv)
            ),
            format!("max_over_time((sum by (group) ({mem}))[{r}:1s])"),
        ];
        for (i, q) in gq.iter().enumerate() {
            for s in self.prom.instant(q, b).await? {
                if let Some(g) = groups.get_mut(label(&s, "group")) {
                    let v = if s.value.is_finite() { s.value } else { 0.0 };
                    if i == 0 {
                        g.cpu_cores_max = v;
                    } else {
                        g.memory_bytes_max = v;
                    }
                }
            }
        }
        let mut groups: Vec<ResourceSummary> = groups.into_values().collect();
        for g in &mut groups {
            finish(g);
        }
        Ok((containers, groups))
    }
}

fn finish(r: &mut ResourceSummary) {
    r.cpu_utilization = if r.cpu_limit_cores > 0.0 {
        r.cpu_cores_avg / r.cpu_limit_cores
    } else {
        0.0
    };
    r.memory_utilization = if r.memory_limit_bytes > 0.0 {
        r.memory_bytes_avg / r.memory_limit_bytes
    } else {
        0.0
    };
}

fn parse_le(le: &str) -> Option<f64> {
    match le {
        "+Inf" => Some(f64::INFINITY),
        s => s.parse().ok(),
    }
}

/// `histogram_quantile` over cumulative `(le, count)` buckets: linear inside the bucket, the
/// highest finite edge when the rank falls in +Inf, 0 with no observations.
pub fn quantile(cum: &[(f64, f64)], q: f64) -> f64 {
    let Some(&(_, total)) = cum.last() else {
        return 0.0;
    };
    if total <= 0.0 {
        return 0.0;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, n) in cum {
        if n >= rank {
            if le.is_infinite() {
                return prev.0;
            }
            let width = n - prev.1;
            return if width > 0.0 {
                prev.0 + (le - prev.0) * (rank - prev.1) / width
            } else {
                le
            };
        }
        prev = (le, n);
    }
    prev.0
}

/// The upper edge of the highest bucket that gained observations (an upper bound of the max).
fn highest_filled_edge(cum: &[(f64, f64)]) -> f64 {
    let mut prev = 0.0;
    let mut edge = 0.0;
    let mut last_finite = 0.0;
    for &(le, n) in cum {
        if n > prev {
            edge = if le.is_finite() { le } else { last_finite };
        }
        if le.is_finite() {
            last_finite = le;
        }
        prev = n;
    }
    edge
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_like_histogram_quantile() {
        // 100 observations: 50 in (0, 0.1], 40 in (0.1, 0.5], 10 in (0.5, 1].
        let cum = [
            (0.1, 50.0),
            (0.5, 90.0),
            (1.0, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert!((quantile(&cum, 0.5) - 0.1).abs() < 1e-12);
        // rank 95 is half-way through the (0.5, 1] bucket.
        assert!((quantile(&cum, 0.95) - 0.75).abs() < 1e-12);
        assert!((quantile(&cum, 0.25) - 0.05).abs() < 1e-12);
        assert_eq!(quantile(&[], 0.95), 0.0);
        assert_eq!(quantile(&[(1.0, 0.0), (f64::INFINITY, 0.0)], 0.95), 0.0);
        // Everything above the last finite edge: that edge, as Prometheus answers.
        assert_eq!(quantile(&[(1.0, 0.0), (f64::INFINITY, 5.0)], 0.5), 1.0);
    }

    #[test]
    fn highest_filled_edge_bounds_the_max() {
        let cum = [(0.1, 50.0), (0.5, 90.0), (1.0, 90.0), (f64::INFINITY, 90.0)];
        assert_eq!(highest_filled_edge(&cum), 0.5);
    }

    #[test]
    fn cadvisor_mapping_matches_the_recording_rules() {
        let q = Source::cadvisor().memory;
        assert!(q.contains(r#"label_replace(container_memory_working_set_bytes{container!="", container!="POD"}, "group", "$1", "container", "(.+)")"#), "{q}");
        assert!(
            q.contains(r#""container", "/", "namespace", "pod", "container""#),
            "{q}"
        );
    }
}
