//! The server's shared state: configuration, the base heap, counters that tests read through
//! `GET /_stats` or in-process through [`DemoState::stats`], the S1 sessions, the deterministic
//! rotations (mix, injected failures) and the stall window.
//!
//! Counters use atomics; the maps use `std::sync::Mutex` because every critical section is a
//! short map update with no `.await` inside, which is cheaper than tokio's async mutex.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::config::DemoTargetConfig;
use super::cost::TouchedMemory;
use crate::latency::{LatencyRecorder, LatencySummary};

/// Most distinct usernames that may log in; beyond it login answers 503, so a runaway client
/// cannot grow the session table without bound.
pub const MAX_USERS: usize = 100_000;

/// What the multipart parser saw in the last `POST /api/v1/ai-images`, for tests that check
/// the client's encoding. The bearer token itself is never kept, only whether one was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultipartSeen {
    /// Field names in the order they arrived (at most 64).
    pub field_names: Vec<String>,
    /// The `prompt` field's text (at most 4096 bytes are kept).
    pub prompt: Option<String>,
    /// The file part's filename.
    pub filename: Option<String>,
    /// The file part's content type.
    pub content_type: Option<String>,
    /// The file part's length in bytes.
    pub file_bytes: u64,
    /// FNV-1a 64 of the file part's bytes, as 16 lowercase hex digits.
    pub file_fnv64: String,
    /// Whether an `Authorization: Bearer <token>` header was present.
    pub bearer_present: bool,
}

/// The configured costs, echoed in the stats so a test or the analysis can read the ground truth
/// from the server it measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostsView {
    pub cpu_ms: f64,
    pub simple_cpu_ms: f64,
    pub mem_per_request_bytes: u64,
    pub base_memory_bytes: u64,
    pub delay_ms: f64,
    pub fail_ratio: f64,
    pub mix: String,
}

/// A snapshot of the counters (the `GET /_stats` body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoStats {
    pub uptime_seconds: f64,
    /// Responses per route (`"POST /api/v1/ai-images"`, `"other"` for unknown paths) and status.
    /// Control paths (`/_stats`, `/_control/...`) are not counted.
    pub requests: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Application requests being handled now.
    pub in_flight: u64,
    /// Most application requests in flight at once since start or the last reset.
    pub max_in_flight: u64,
    /// Application requests finished (answered, or abandoned by the client) since the reset.
    pub completed: u64,
    /// Valid AI requests (those that paid the configured costs).
    pub ai_requests: u64,
    /// Of those, the ones answered 500 by `--fail-ratio`.
    pub injected_failures: u64,
    pub last_multipart: Option<MultipartSeen>,
    /// `GET /api/v1/posts` answered 200, per username of the token used.
    pub posts_by_user: BTreeMap<String, u64>,
    /// Successful logins per username.
    pub logins_by_user: BTreeMap<String, u64>,
    /// Milliseconds left in the current stall window (0 when not stalled).
    pub stall_remaining_ms: u64,
    /// Seconds from the parsed request head to the response being ready, as the handler sees
    /// it (costs, `?delay_ms`, stalls), over application requests since start or the reset:
    /// the server-side truth that a client's latency can be compared with.
    pub handling: LatencySummary,
    pub costs: CostsView,
    /// Connections and protocols since start (not reset by `/_control/reset`).
    #[serde(default)]
    pub connections: ConnStats,
}

/// What the server saw of its connections: TLS handshakes, the protocol each connection
/// spoke, and requests per HTTP version (over HTTP/2 each request is one stream).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnStats {
    /// Connections accepted.
    pub accepted: u64,
    /// TLS handshakes completed: full ones and resumed sessions.
    pub tls_full: u64,
    pub tls_resumed: u64,
    /// TLS handshakes that failed or timed out.
    pub tls_failed: u64,
    /// TLS connections that chose HTTP/2 by ALPN.
    pub h2_alpn: u64,
    /// Requests by HTTP version: `HTTP/1.1`, `HTTP/2.0`.
    pub requests_by_version: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Sessions {
    token_by_user: HashMap<String, String>,
    user_by_token: HashMap<String, String>,
    logins_by_user: BTreeMap<String, u64>,
    posts_by_user: BTreeMap<String, u64>,
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginError {
    TooManyUsers,
}

/// Shared state of one demo-target server.
pub struct DemoState {
    cfg: DemoTargetConfig,
    started: Instant,
    /// Held for the life of the state so the base heap stays resident.
    _base: TouchedMemory,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    completed: AtomicU64,
    ai_requests: AtomicU64,
    injected_failures: AtomicU64,
    mix_counter: AtomicU64,
    id_counter: AtomicU64,
    counts: Mutex<BTreeMap<(&'static str, u16), u64>>,
    last_multipart: Mutex<Option<MultipartSeen>>,
    sessions: Mutex<Sessions>,
    stall_until: Mutex<Option<Instant>>,
    handling: LatencyRecorder,
    conns: Mutex<ConnStats>,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every update here
/// leaves the maps consistent, so the data is still good.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DemoState {
    /// Allocates and touches the base heap, so construction costs about a millisecond per
    /// 100 MiB and fails if the memory cannot be mapped.
    pub fn new(cfg: DemoTargetConfig) -> std::io::Result<Self> {
        let base = TouchedMemory::allocate(cfg.base_memory.bytes())?;
        Ok(DemoState {
            cfg,
            started: Instant::now(),
            _base: base,
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            ai_requests: AtomicU64::new(0),
            injected_failures: AtomicU64::new(0),
            mix_counter: AtomicU64::new(0),
            id_counter: AtomicU64::new(0),
            counts: Mutex::new(BTreeMap::new()),
            last_multipart: Mutex::new(None),
            sessions: Mutex::new(Sessions::default()),
            stall_until: Mutex::new(None),
            handling: LatencyRecorder::new(),
            conns: Mutex::default(),
        })
    }

    /// The configuration this server runs with.
    pub fn config(&self) -> &DemoTargetConfig {
        &self.cfg
    }

    /// Marks an application request as in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight {
            state: Arc::clone(self),
        }
    }

    /// Counts one response of `route` that took `took` to handle.
    pub fn record(&self, route: &'static str, status: u16, took: Duration) {
        *lock(&self.counts).entry((route, status)).or_insert(0) += 1;
        self.handling.record(took);
    }

    /// Updates the connection counters.
    pub fn conns(&self, f: impl FnOnce(&mut ConnStats)) {
        f(&mut lock(&self.conns));
    }

    /// A fresh id for a created resource.
    pub fn next_id(&self) -> u64 {
        self.id_counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The status of the next `GET /api/v1/mix`.
    pub fn next_mix_status(&self) -> u16 {
        let n = self.mix_counter.fetch_add(1, Ordering::SeqCst);
        self.cfg.mix.status_at(n)
    }

    /// Counts a valid AI request and says whether `--fail-ratio` fails it. The n-th request
    /// (1-based) fails when floor(n·r) > floor((n−1)·r), so exactly floor(n·r) of the first n
    /// fail, spread evenly.
    pub fn next_ai_fails(&self) -> bool {
        let n = self.ai_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let r = self.cfg.fail_ratio;
        let fails = (n as f64 * r).floor() > ((n - 1) as f64 * r).floor();
        if fails {
            self.injected_failures.fetch_add(1, Ordering::SeqCst);
        }
        fails
    }

    /// Remembers the last multipart upload.
    pub fn set_last_multipart(&self, seen: MultipartSeen) {
        *lock(&self.last_multipart) = Some(seen);
    }

    /// Logs `username` in: the same username always gets the same token from this server, and
    /// different usernames get different random tokens.
    pub fn login(&self, username: &str) -> Result<String, LoginError> {
        let mut s = lock(&self.sessions);
        let token = match s.token_by_user.get(username) {
            Some(t) => t.clone(),
            None => {
                if s.token_by_user.len() >= MAX_USERS {
                    return Err(LoginError::TooManyUsers);
                }
                let token = format!("dt_{:032x}", rand::random::<u128>());
                s.token_by_user.insert(username.to_string(), token.clone());
                s.user_by_token.insert(token.clone(), username.to_string());
                token
            }
        };
        *s.logins_by_user.entry(username.to_string()).or_insert(0) += 1;
        Ok(token)
    }

    /// The username a token was issued to, counting one posts read for it; `None` if this
    /// server did not issue the token.
    pub fn read_posts(&self, token: &str) -> Option<String> {
        let mut s = lock(&self.sessions);
        let user = s.user_by_token.get(token)?.clone();
        *s.posts_by_user.entry(user.clone()).or_insert(0) += 1;
        Some(user)
    }

    /// Holds every response for `dur` from now (replacing any current window).
    pub fn stall_for(&self, dur: Duration) {
        *lock(&self.stall_until) = Some(Instant::now() + dur);
    }

    /// Waits while a stall window is open. Re-reads the window after each wait, so a stall
    /// extended meanwhile holds the response again.
    pub async fn wait_while_stalled(&self) {
        loop {
            let until = *lock(&self.stall_until);
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t.into()).await,
                _ => return,
            }
        }
    }

    /// Zeroes the counters, the rotations and max_in_flight (to the current in-flight count).
    /// Sessions stay valid; their per-user counts restart.
    pub fn reset(&self) {
        lock(&self.counts).clear();
        *lock(&self.last_multipart) = None;
        {
            let mut s = lock(&self.sessions);
            s.logins_by_user.clear();
            s.posts_by_user.clear();
        }
        self.max_in_flight
            .store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
        self.completed.store(0, Ordering::SeqCst);
        self.ai_requests.store(0, Ordering::SeqCst);
        self.injected_failures.store(0, Ordering::SeqCst);
        self.mix_counter.store(0, Ordering::SeqCst);
        self.handling.reset();
    }

    /// A snapshot of all counters.
    pub fn stats(&self) -> DemoStats {
        let mut requests: BTreeMap<String, BTreeMap<u16, u64>> = BTreeMap::new();
        for (&(route, status), &n) in lock(&self.counts).iter() {
            requests
                .entry(route.to_string())
                .or_default()
                .insert(status, n);
        }
        let (posts_by_user, logins_by_user) = {
            let s = lock(&self.sessions);
            (s.posts_by_user.clone(), s.logins_by_user.clone())
        };
        let stall_remaining_ms = lock(&self.stall_until)
            .map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64)
            .unwrap_or(0);
        let c = &self.cfg;
        DemoStats {
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            requests,
            in_flight: self.in_flight.load(Ordering::SeqCst),
            max_in_flight: self.max_in_flight.load(Ordering::SeqCst),
            completed: self.completed.load(Ordering::SeqCst),
            ai_requests: self.ai_requests.load(Ordering::SeqCst),
            injected_failures: self.injected_failures.load(Ordering::SeqCst),
            last_multipart: lock(&self.last_multipart).clone(),
            posts_by_user,
            logins_by_user,
            stall_remaining_ms,
            handling: self.handling.total(),
            costs: CostsView {
                cpu_ms: c.cpu.as_secs_f64() * 1000.0,
                simple_cpu_ms: c.simple_cpu.as_secs_f64() * 1000.0,
                mem_per_request_bytes: c.mem_per_request.bytes(),
                base_memory_bytes: c.base_memory.bytes(),
                delay_ms: c.delay.as_secs_f64() * 1000.0,
                fail_ratio: c.fail_ratio,
                mix: c.mix.to_string(),
            },
            connections: lock(&self.conns).clone(),
        }
    }
}

/// An application request in flight; dropping it (answered or abandoned) completes it.
pub struct InFlight {
    state: Arc<DemoState>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.state.completed.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(fail_ratio: f64) -> Arc<DemoState> {
        Arc::new(
            DemoState::new(DemoTargetConfig {
                fail_ratio,
                ..DemoTargetConfig::free()
            })
            .unwrap(),
        )
    }

    #[test]
    fn fail_ratio_is_exact_and_spread() {
        let s = state(0.3);
        let fails: Vec<bool> = (0..10).map(|_| s.next_ai_fails()).collect();
        assert_eq!(fails.iter().filter(|&&f| f).count(), 3);
        // Not bunched: no two failures in a row at 30 %.
        assert!(!fails.windows(2).any(|w| w[0] && w[1]), "{fails:?}");
        assert_eq!(s.stats().injected_failures, 3);
        let none = state(0.0);
        assert!((0..100).all(|_| !none.next_ai_fails()));
        let all = state(1.0);
        assert!((0..100).all(|_| all.next_ai_fails()));
    }

    #[test]
    fn tokens_are_per_user_and_stable() {
        let s = state(0.0);
        let a = s.login("alice").unwrap();
        let b = s.login("bob").unwrap();
        assert_ne!(a, b);
        assert_eq!(s.login("alice").unwrap(), a);
        assert_eq!(s.read_posts(&a).as_deref(), Some("alice"));
        assert_eq!(s.read_posts("dt_forged"), None);
        let st = s.stats();
        assert_eq!(st.posts_by_user.get("alice"), Some(&1));
        assert_eq!(st.logins_by_user.get("alice"), Some(&2));
    }

    #[test]
    fn in_flight_and_reset() {
        let s = state(0.0);
        let g1 = s.begin();
        let g2 = s.begin();
        assert_eq!(s.stats().in_flight, 2);
        drop(g1);
        s.reset();
        let st = s.stats();
        assert_eq!((st.in_flight, st.max_in_flight, st.completed), (1, 1, 0));
        drop(g2);
        let st = s.stats();
        assert_eq!((st.in_flight, st.max_in_flight, st.completed), (0, 1, 1));
    }
}
