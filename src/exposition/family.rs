//! Labelled metric families on plain atomics, exposed by [`super::text`] without a gather step.
//!
//! A handle ([`Counter`], [`Gauge`], [`GaugeF`], [`Histogram`]) is an `Arc` around atomics,
//! resolved once per scenario or step, so recording a request is a few relaxed `fetch_add`s
//! with no lock shared by all VUs. Why not `prometheus-client`: its histogram takes a write
//! lock on every observation, and the hot path of a load generator is exactly that.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use super::text::{self, Value};

/// A metric kind that a [`Family`] holds one of per label set.
pub trait Metric: Clone + Send + Sync + 'static {
    /// The `# TYPE` of the family.
    const TYPE: &'static str;
    /// What every member of a family shares (histogram buckets).
    type Config: Send + Sync;
    fn create(cfg: &Self::Config) -> Self;
    fn encode(&self, cfg: &Self::Config, name: &str, labels: &str, out: &mut Vec<u8>);
}

/// A metric exposed as one sample per label set.
pub trait Scalar: Default + Clone + Send + Sync + 'static {
    const TYPE: &'static str;
    fn value(&self) -> Value;
}

impl<T: Scalar> Metric for T {
    const TYPE: &'static str = <T as Scalar>::TYPE;
    type Config = ();
    fn create(_: &()) -> Self {
        Self::default()
    }
    fn encode(&self, _: &(), name: &str, labels: &str, out: &mut Vec<u8>) {
        text::sample(out, name, "", labels, "", self.value());
    }
}

/// A monotonic integer counter.
#[derive(Clone, Default, Debug)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl Scalar for Counter {
    const TYPE: &'static str = "counter";
    fn value(&self) -> Value {
        Value::Int(self.get())
    }
}

/// An integer gauge.
#[derive(Clone, Default, Debug)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

impl Scalar for Gauge {
    const TYPE: &'static str = "gauge";
    fn value(&self) -> Value {
        Value::Signed(self.get())
    }
}

/// A float gauge (the bits of an `f64` in an atomic).
#[derive(Clone, Default, Debug)]
pub struct GaugeF(Arc<AtomicU64>);

impl GaugeF {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }
}

impl Scalar for GaugeF {
    const TYPE: &'static str = "gauge";
    fn value(&self) -> Value {
        Value::Float(self.get())
    }
}

/// Bucket bounds shared by a histogram family, with their `le` labels rendered once.
pub struct Buckets {
    bounds: Arc<[f64]>,
    le: Vec<String>,
}

impl Buckets {
    /// `bounds` ascending (the config validates it); `+Inf` is implied.
    pub fn new(bounds: &[f64]) -> Self {
        let le = bounds
            .iter()
            .map(|b| format!("le=\"{}\"", le_value(*b)))
            .collect();
        Self {
            bounds: bounds.into(),
            le,
        }
    }
}

/// A bucket bound as its `le` label value reads in the exposition (`2`, `0.25`, `1.805`).
pub fn le_value(bound: f64) -> String {
    let mut v = Vec::new();
    text::write_f64(&mut v, bound);
    String::from_utf8_lossy(&v).into_owned()
}

struct HistCore {
    bounds: Arc<[f64]>,
    /// Per bucket (not cumulative); the last slot is above every bound.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    count: AtomicU64,
}

/// A cumulative histogram with fixed buckets (`le` inclusive, as Prometheus defines it).
#[derive(Clone)]
pub struct Histogram(Arc<HistCore>);

impl Histogram {
    pub fn observe(&self, v: f64) {
        let h = &self.0;
        let i = h.bounds.partition_point(|b| *b < v);
        h.counts[i].fetch_add(1, Relaxed);
        // Float add by compare-and-swap: contention is per step, not global.
        let _ = h.sum.fetch_update(Relaxed, Relaxed, |s| {
            Some((f64::from_bits(s) + v).to_bits())
        });
        h.count.fetch_add(1, Relaxed);
    }
    pub fn get_sample_count(&self) -> u64 {
        self.0.count.load(Relaxed)
    }
    pub fn get_sample_sum(&self) -> f64 {
        f64::from_bits(self.0.sum.load(Relaxed))
    }
}

impl Metric for Histogram {
    const TYPE: &'static str = "histogram";
    type Config = Buckets;
    fn create(cfg: &Buckets) -> Self {
        Self(Arc::new(HistCore {
            bounds: cfg.bounds.clone(),
            counts: (0..=cfg.bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }))
    }
    fn encode(&self, cfg: &Buckets, name: &str, labels: &str, out: &mut Vec<u8>) {
        // Buckets are read one by one while requests record; +Inf and _count both come from
        // the same cumulative total so the exposition is self-consistent.
        let mut cum = 0u64;
        for (c, le) in self.0.counts.iter().zip(&cfg.le) {
            cum += c.load(Relaxed);
            text::sample(out, name, "_bucket", labels, le, Value::Int(cum));
        }
        cum += self.0.counts[cfg.le.len()].load(Relaxed);
        text::sample(out, name, "_bucket", labels, "le=\"+Inf\"", Value::Int(cum));
        let sum = Value::Float(self.get_sample_sum());
        text::sample(out, name, "_sum", labels, "", sum);
        text::sample(out, name, "_count", labels, "", Value::Int(cum));
    }
}

/// Seconds the [`WindowMax`] looks back: the current second and the ones before it.
pub const MAX_WINDOW_SECS: u64 = 10;

/// A slot packs the second it belongs to (low 24 bits) above the value in microseconds + 1
/// (40 bits; 0 means empty), so a slot is reset and raised in one compare-and-swap.
const VALUE_BITS: u32 = 40;
const VALUE_MASK: u64 = (1 << VALUE_BITS) - 1;
const EPOCH_MASK: u64 = (1 << 24) - 1;

/// Seconds since the first use in this process: the clock of every [`WindowMax`].
fn now_secs() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs()
}

/// The highest value observed in the last [`MAX_WINDOW_SECS`] seconds, with microsecond
/// resolution: one slot per second, a ring of them. Recording is one compare-and-swap on
/// the current second's slot; a scrape takes the maximum of the slots still in the window,
/// and writes no sample at all when nothing was observed in it (no response is "no data",
/// not a maximum of 0).
#[derive(Clone, Default)]
pub struct WindowMax(Arc<[AtomicU64; MAX_WINDOW_SECS as usize]>);

impl WindowMax {
    pub fn observe(&self, secs: f64) {
        self.observe_at(secs, now_secs());
    }

    fn observe_at(&self, secs: f64, now: u64) {
        if secs.is_nan() || secs < 0.0 {
            return;
        }
        let us = ((secs * 1e6) as u64).saturating_add(1).min(VALUE_MASK);
        let epoch = now & EPOCH_MASK;
        let slot = &self.0[(now % MAX_WINDOW_SECS) as usize];
        let _ = slot.fetch_update(Relaxed, Relaxed, |cur| {
            // A slot from an older second starts afresh; the current one only rises.
            let held = if cur >> VALUE_BITS == epoch {
                cur & VALUE_MASK
            } else {
                0
            };
            (us > held).then_some(epoch << VALUE_BITS | us)
        });
    }

    /// The maximum in the window, in seconds; `None` when nothing was observed in it.
    pub fn get(&self) -> Option<f64> {
        self.get_at(now_secs())
    }

    fn get_at(&self, now: u64) -> Option<f64> {
        self.0
            .iter()
            .map(|s| s.load(Relaxed))
            .filter(|v| {
                let age = (now & EPOCH_MASK).wrapping_sub(v >> VALUE_BITS) & EPOCH_MASK;
                v & VALUE_MASK != 0 && age < MAX_WINDOW_SECS
            })
            .map(|v| v & VALUE_MASK)
            .max()
            .map(|us| (us - 1) as f64 / 1e6)
    }
}

impl Metric for WindowMax {
    const TYPE: &'static str = "gauge";
    type Config = ();
    fn create(_: &()) -> Self {
        Self::default()
    }
    fn encode(&self, _: &(), name: &str, labels: &str, out: &mut Vec<u8>) {
        if let Some(v) = self.get() {
            text::sample(out, name, "", labels, "", Value::Float(v));
        }
    }
}

struct Child<M> {
    labels: String,
    metric: M,
}

/// One metric family: a name, its label names, and a member per label set, exposed in the
/// order of their label values.
pub struct Family<M: Metric> {
    name: &'static str,
    help: &'static str,
    label_names: &'static [&'static str],
    cfg: M::Config,
    children: RwLock<BTreeMap<Vec<String>, Child<M>>>,
}

impl<M: Metric> Family<M> {
    pub fn new(
        name: &'static str,
        help: &'static str,
        label_names: &'static [&'static str],
        cfg: M::Config,
    ) -> Self {
        Self {
            name,
            help,
            label_names,
            cfg,
            children: RwLock::default(),
        }
    }

    /// The member for `values` (one per label name, in order), created on first use.
    pub fn with_label_values(&self, values: &[&str]) -> M {
        debug_assert_eq!(values.len(), self.label_names.len(), "{}", self.name);
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        if let Some(c) = self.read().get(&key) {
            return c.metric.clone();
        }
        let mut w = self.children.write().unwrap_or_else(|e| e.into_inner());
        w.entry(key)
            .or_insert_with(|| Child {
                labels: text::render_labels(self.label_names, values),
                metric: M::create(&self.cfg),
            })
            .metric
            .clone()
    }

    /// Stop exposing the member for `values`; false if there was none.
    pub fn remove_label_values(&self, values: &[&str]) -> bool {
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let mut w = self.children.write().unwrap_or_else(|e| e.into_inner());
        w.remove(&key).is_some()
    }

    /// Keep only the members whose label values pass `keep`.
    pub fn retain(&self, keep: impl Fn(&[String]) -> bool) {
        self.children
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keep(k));
    }

    /// Stop exposing every member (for info series where only the latest may be 1).
    pub fn clear(&self) {
        self.children
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Vec<String>, Child<M>>> {
        self.children.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl<M: Metric> text::Expose for Family<M> {
    /// A family without members writes nothing, as the prometheus crate does.
    fn expose(&self, out: &mut Vec<u8>) {
        let children = self.read();
        if children.is_empty() {
            return;
        }
        text::header(out, self.name, self.help, M::TYPE);
        for c in children.values() {
            c.metric.encode(&self.cfg, self.name, &c.labels, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::text::Expose;

    fn expose(f: &dyn Expose) -> String {
        let mut out = Vec::new();
        f.expose(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_le_inclusive() {
        let f: Family<Histogram> =
            Family::new("h_seconds", "Help.", &["s"], Buckets::new(&[0.1, 0.5, 2.0]));
        let h = f.with_label_values(&["a"]);
        for v in [0.05, 0.1, 0.3, 0.5, 3.0] {
            h.observe(v);
        }
        assert_eq!(h.get_sample_count(), 5);
        assert!((h.get_sample_sum() - 3.95).abs() < 1e-12);
        assert_eq!(
            expose(&f),
            "# HELP h_seconds Help.\n# TYPE h_seconds histogram\n\
             h_seconds_bucket{s=\"a\",le=\"0.1\"} 2\n\
             h_seconds_bucket{s=\"a\",le=\"0.5\"} 4\n\
             h_seconds_bucket{s=\"a\",le=\"2\"} 4\n\
             h_seconds_bucket{s=\"a\",le=\"+Inf\"} 5\n\
             h_seconds_sum{s=\"a\"} 3.95\n\
             h_seconds_count{s=\"a\"} 5\n"
        );
    }

    #[test]
    fn members_are_shared_sorted_and_removable() {
        let f: Family<Counter> = Family::new("c_total", "C.", &["k", "v"], ());
        let b = f.with_label_values(&["b", "1"]);
        f.with_label_values(&["a", "2"]).inc_by(3);
        b.inc();
        // The same label set is the same counter.
        f.with_label_values(&["b", "1"]).inc();
        assert_eq!(b.get(), 2);
        assert_eq!(
            expose(&f),
            "# HELP c_total C.\n# TYPE c_total counter\n\
             c_total{k=\"a\",v=\"2\"} 3\nc_total{k=\"b\",v=\"1\"} 2\n"
        );
        assert!(f.remove_label_values(&["a", "2"]));
        assert!(!f.remove_label_values(&["a", "2"]));
        assert!(!expose(&f).contains("k=\"a\""));
        let g: Family<GaugeF> = Family::new("g", "G.", &[], ());
        assert_eq!(expose(&g), "", "a family without members writes nothing");
        g.with_label_values(&[]).set(0.125);
        assert_eq!(expose(&g), "# HELP g G.\n# TYPE g gauge\ng 0.125\n");
    }

    #[test]
    fn window_max_covers_the_last_ten_seconds_and_is_absent_when_empty() {
        let m = WindowMax::default();
        assert_eq!(m.get_at(100), None, "nothing observed: no value, not 0");
        m.observe_at(0.25, 100);
        m.observe_at(1.5, 100);
        m.observe_at(0.75, 100);
        m.observe_at(0.5, 103);
        assert_eq!(m.get_at(103), Some(1.5));
        // 1.5 s was seen at second 100: in the window up to second 109, gone at 110.
        assert_eq!(m.get_at(109), Some(1.5));
        assert_eq!(m.get_at(110), Some(0.5));
        assert_eq!(m.get_at(113), None);
        // A slot reused ten seconds later starts afresh instead of keeping the old maximum.
        m.observe_at(0.001, 110);
        assert_eq!(m.get_at(110), Some(0.5));
        assert_eq!(m.get_at(113), Some(0.001));
        // Microsecond resolution, and NaN or negative values are ignored.
        m.observe_at(f64::NAN, 113);
        m.observe_at(-1.0, 113);
        m.observe_at(0.000_002, 120);
        assert_eq!(m.get_at(120), Some(0.000_002));
        let f: Family<WindowMax> = Family::new("m_seconds", "M.", &["s"], ());
        f.with_label_values(&["a"]).observe(0.125);
        f.with_label_values(&["b"]);
        assert_eq!(
            expose(&f),
            "# HELP m_seconds M.\n# TYPE m_seconds gauge\nm_seconds{s=\"a\"} 0.125\n"
        );
    }

    #[test]
    fn concurrent_recording_loses_nothing() {
        let f: Family<Histogram> = Family::new("h", "H.", &[], Buckets::new(&[1.0]));
        let h = f.with_label_values(&[]);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || (0..10_000).for_each(|_| h.observe(0.5)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(h.get_sample_count(), 40_000);
        assert_eq!(h.get_sample_sum(), 20_000.0);
    }
}
