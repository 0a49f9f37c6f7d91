//! demo-target's options: the clap arguments (`--help` documents each), and the validated
//! [`DemoTargetConfig`] that the server runs on, with the per-request costs that are the ground
//! truth for loadspec's capacity analysis.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::units::ByteSize;

/// Default CPU per AI request, in milliseconds of thread CPU time.
pub const DEFAULT_CPU_MS: f64 = 20.0;
/// Default CPU per simple (S1) request.
pub const DEFAULT_SIMPLE_CPU_MS: f64 = 1.0;
/// Default memory held per in-flight AI request.
pub const DEFAULT_MEM_PER_REQUEST: ByteSize = ByteSize::mib(8);
/// Default memory held for the life of the process (the JVM / model heap).
pub const DEFAULT_BASE_MEMORY: ByteSize = ByteSize::mib(64);
/// Default largest request body accepted (the image upload).
pub const DEFAULT_MAX_BODY: ByteSize = ByteSize::mib(64);
/// Default answer mix of `GET /api/v1/mix`.
pub const DEFAULT_MIX: &str = "200:7,400:2,500:1";
/// Longest CPU burn or delay accepted, so a typo cannot wedge the server for hours.
const MAX_MS: f64 = 600_000.0;

/// Command-line options of `loadspec demo-target`.
///
/// Every option can also come from the environment variable named in `--help`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoTargetArgs {
    /// Address to listen on. Port 0 picks a free port; the bound address is printed on stdout as
    /// a line `listening on IP:PORT`.
    #[arg(long, env = "LOADSPEC_DEMO_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// CPU time burned per AI request (POST /api/v1/ai-images and /api/v1/ai-images/prompt), in
    /// milliseconds of the handling thread's CPU clock: real hashing work, not a sleep, and
    /// exact even when the container's CPU is throttled. Touching the request's memory counts
    /// towards it. Fractions allowed.
    #[arg(long, env = "LOADSPEC_DEMO_CPU_MS", value_name = "MS", default_value_t = DEFAULT_CPU_MS, value_parser = parse_ms)]
    pub cpu_ms: f64,

    /// CPU time burned per simple request (S1: POST /api/v1/login, GET /api/v1/posts), in
    /// milliseconds of thread CPU time.
    #[arg(long, env = "LOADSPEC_DEMO_SIMPLE_CPU_MS", value_name = "MS", default_value_t = DEFAULT_SIMPLE_CPU_MS, value_parser = parse_ms)]
    pub simple_cpu_ms: f64,

    /// Memory allocated and written page by page as soon as an AI request with a bearer token
    /// arrives (before its body is read and before it waits for the CPU), held until its response
    /// is ready, then returned to the OS (e.g. 8MiB, 512KB, 1024m). So RSS = base + in-flight AI
    /// requests × this, counting the requests still queued for the CPU, as on an upload server.
    #[arg(long, env = "LOADSPEC_DEMO_MEM_PER_REQUEST", value_name = "SIZE", default_value_t = DEFAULT_MEM_PER_REQUEST)]
    pub mem_per_request: ByteSize,

    /// Memory allocated and written at start and held until exit (emulates the JVM or model
    /// heap); it is real resident memory.
    #[arg(long, env = "LOADSPEC_DEMO_BASE_MEMORY", value_name = "SIZE", default_value_t = DEFAULT_BASE_MEMORY)]
    pub base_memory: ByteSize,

    /// Extra wall-clock delay per AI request, after the CPU burn, while its memory is held
    /// (emulates waiting on the model). Any request can add more with `?delay_ms=N`.
    #[arg(long, env = "LOADSPEC_DEMO_DELAY_MS", value_name = "MS", default_value_t = 0.0, value_parser = parse_ms)]
    pub delay_ms: f64,

    /// Fraction (0 to 1) of AI requests answered 500 after their costs were paid. Deterministic:
    /// after n valid AI requests exactly floor(n × ratio) have failed.
    #[arg(long, env = "LOADSPEC_DEMO_FAIL_RATIO", value_name = "RATIO", default_value_t = 0.0, value_parser = parse_ratio)]
    pub fail_ratio: f64,

    /// Answers of GET /api/v1/mix as STATUS:COUNT pairs. Every cycle of the counts' sum answers
    /// each status COUNT times, in the order given.
    #[arg(long, env = "LOADSPEC_DEMO_MIX", value_name = "MIX", default_value = DEFAULT_MIX)]
    pub mix: StatusMix,

    /// Largest request body accepted, in bytes with a unit; larger bodies get 413.
    #[arg(long, env = "LOADSPEC_DEMO_MAX_BODY", value_name = "SIZE", default_value_t = DEFAULT_MAX_BODY)]
    pub max_body: ByteSize,

    /// Tokio worker threads (default: one per core).
    #[arg(long, env = "LOADSPEC_DEMO_WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,

    /// Most threads burning CPU at once (the CPU work runs off the async workers, like a
    /// servlet container's thread pool).
    #[arg(long, env = "LOADSPEC_DEMO_BLOCKING_THREADS", value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u16).range(1..))]
    pub blocking_threads: u16,

    /// Serve HTTPS with this PEM certificate chain (needs --tls-key). HTTP/2 and HTTP/1.1 are
    /// offered by ALPN.
    #[arg(
        long,
        env = "LOADSPEC_DEMO_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "LOADSPEC_DEMO_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<std::path::PathBuf>,

    /// Require client certificates signed by this PEM CA (mutual TLS; needs --tls-cert).
    #[arg(
        long,
        env = "LOADSPEC_DEMO_TLS_CLIENT_CA",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<std::path::PathBuf>,

    /// On SIGTERM or SIGINT, how long in-flight requests may take to finish before exit.
    #[arg(long, env = "LOADSPEC_DEMO_SHUTDOWN_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

/// Why a millisecond or ratio flag is out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("`{0}` is not a number of milliseconds")]
    NotMs(String),
    #[error("must be between 0 and {MAX_MS} ms, got {0}")]
    MsRange(String),
    #[error("`{0}` is not a number")]
    NotRatio(String),
    #[error("must be between 0 and 1, got {0}")]
    RatioRange(String),
}

/// Milliseconds: a finite number from 0 to 600000.
fn parse_ms(s: &str) -> Result<f64, ArgError> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| ArgError::NotMs(s.to_string()))?;
    if !v.is_finite() || !(0.0..=MAX_MS).contains(&v) {
        return Err(ArgError::MsRange(s.to_string()));
    }
    Ok(v)
}

/// A ratio from 0 to 1.
fn parse_ratio(s: &str) -> Result<f64, ArgError> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| ArgError::NotRatio(s.to_string()))?;
    if !v.is_finite() || !(0.0..=1.0).contains(&v) {
        return Err(ArgError::RatioRange(s.to_string()));
    }
    Ok(v)
}

/// A deterministic rotation of status codes, e.g. `200:7,400:2,500:1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMix {
    parts: Vec<(u16, u32)>,
    cycle: u64,
}

impl StatusMix {
    /// Requests in one full cycle (the sum of the counts).
    pub fn cycle_len(&self) -> u64 {
        self.cycle
    }

    /// The status answered to the `n`-th request (0-based) of the endpoint.
    pub fn status_at(&self, n: u64) -> u16 {
        let mut i = n % self.cycle;
        for &(code, count) in &self.parts {
            if i < u64::from(count) {
                return code;
            }
            i -= u64::from(count);
        }
        // Unreachable: `cycle` is the sum of the counts, so `i` always lands in a part.
        self.parts[0].0
    }

    /// The (status, count) pairs in order.
    pub fn parts(&self) -> &[(u16, u32)] {
        &self.parts
    }
}

/// Why a `--status-mix` value is refused; quotes the offending item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusMixError {
    #[error("`{0}` is not STATUS:COUNT")]
    Form(String),
    #[error("status `{code}` in `{item}` must be 200..=599")]
    Status { code: String, item: String },
    #[error("count `{count}` in `{item}` must be 1..=1000000")]
    Count { count: String, item: String },
    #[error("empty; expected STATUS:COUNT pairs such as 200:7,400:2,500:1")]
    Empty,
}

impl FromStr for StatusMix {
    type Err = StatusMixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = Vec::new();
        for item in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (code, count) = item
                .split_once(':')
                .ok_or_else(|| StatusMixError::Form(item.to_string()))?;
            let code: u16 = code
                .trim()
                .parse()
                .ok()
                .filter(|c| (200..=599).contains(c))
                .ok_or_else(|| StatusMixError::Status {
                    code: code.to_string(),
                    item: item.to_string(),
                })?;
            let count: u32 = count
                .trim()
                .parse()
                .ok()
                .filter(|c| (1..=1_000_000).contains(c))
                .ok_or_else(|| StatusMixError::Count {
                    count: count.to_string(),
                    item: item.to_string(),
                })?;
            parts.push((code, count));
        }
        if parts.is_empty() {
            return Err(StatusMixError::Empty);
        }
        let cycle = parts.iter().map(|&(_, n)| u64::from(n)).sum();
        Ok(StatusMix { parts, cycle })
    }
}

impl fmt::Display for StatusMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (code, count)) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{code}:{count}")?;
        }
        Ok(())
    }
}

/// What the server does per request: the known costs and the test-helper behaviour.
///
/// `Default` matches the command-line defaults; [`DemoTargetConfig::free`] has no costs at all,
/// for tests that only care about the protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoTargetConfig {
    /// Thread CPU time per valid AI request.
    pub cpu: Duration,
    /// Thread CPU time per valid S1 request (login, posts).
    pub simple_cpu: Duration,
    /// Memory held per in-flight valid AI request.
    pub mem_per_request: ByteSize,
    /// Memory held for the life of the server.
    pub base_memory: ByteSize,
    /// Wall-clock delay per valid AI request, after the CPU burn.
    pub delay: Duration,
    /// Fraction of valid AI requests answered 500.
    pub fail_ratio: f64,
    /// Answers of `GET /api/v1/mix`.
    pub mix: StatusMix,
    /// Largest request body accepted.
    pub max_body: ByteSize,
}

impl Default for DemoTargetConfig {
    fn default() -> Self {
        DemoTargetConfig {
            cpu: ms(DEFAULT_CPU_MS),
            simple_cpu: ms(DEFAULT_SIMPLE_CPU_MS),
            mem_per_request: DEFAULT_MEM_PER_REQUEST,
            base_memory: DEFAULT_BASE_MEMORY,
            delay: Duration::ZERO,
            fail_ratio: 0.0,
            mix: DEFAULT_MIX.parse().expect("the default mix parses"),
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

impl DemoTargetConfig {
    /// No CPU, memory or delay costs: a protocol-only target.
    pub fn free() -> Self {
        DemoTargetConfig {
            cpu: Duration::ZERO,
            simple_cpu: Duration::ZERO,
            mem_per_request: ByteSize(0),
            base_memory: ByteSize(0),
            ..Self::default()
        }
    }

    /// The config the command-line options describe (clap has already validated each value).
    pub fn from_args(args: &DemoTargetArgs) -> Self {
        DemoTargetConfig {
            cpu: ms(args.cpu_ms),
            simple_cpu: ms(args.simple_cpu_ms),
            mem_per_request: args.mem_per_request,
            base_memory: args.base_memory,
            delay: ms(args.delay_ms),
            fail_ratio: args.fail_ratio,
            mix: args.mix.clone(),
            max_body: args.max_body,
        }
    }
}

impl From<&DemoTargetArgs> for DemoTargetConfig {
    fn from(args: &DemoTargetArgs) -> Self {
        Self::from_args(args)
    }
}

fn ms(v: f64) -> Duration {
    Duration::from_secs_f64(v / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: DemoTargetArgs,
    }

    fn parse(argv: &[&str]) -> Result<DemoTargetArgs, clap::Error> {
        let mut full = vec!["demo-target"];
        full.extend_from_slice(argv);
        Wrap::try_parse_from(full).map(|w| w.args)
    }

    #[test]
    fn mix_rotates_in_order() {
        let mix: StatusMix = "200:7,400:2,500:1".parse().unwrap();
        assert_eq!(mix.cycle_len(), 10);
        let got: Vec<u16> = (0..10).map(|i| mix.status_at(i)).collect();
        assert_eq!(got, [200, 200, 200, 200, 200, 200, 200, 400, 400, 500]);
        assert_eq!(mix.status_at(17), 400);
        assert_eq!(mix.to_string(), "200:7,400:2,500:1");
    }

    #[test]
    fn mix_rejects_bad_input() {
        for bad in ["", "200", "200:0", "99:1", "600:1", "200:x", "abc:1"] {
            assert!(bad.parse::<StatusMix>().is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_match_config_default() {
        let args = parse(&[]).unwrap();
        assert_eq!(
            DemoTargetConfig::from_args(&args),
            DemoTargetConfig::default()
        );
    }

    #[test]
    fn bad_flags_name_the_flag() {
        for (argv, flag) in [
            (&["--fail-ratio", "1.5"][..], "--fail-ratio"),
            (&["--cpu-ms=-3"][..], "--cpu-ms"),
            (&["--cpu-ms", "abc"][..], "--cpu-ms"),
            (&["--mem-per-request", "8XB"][..], "--mem-per-request"),
            (&["--base-memory", "lots"][..], "--base-memory"),
            (&["--mix", "200:0"][..], "--mix"),
            (&["--workers", "0"][..], "--workers"),
            (&["--listen", "nowhere"][..], "--listen"),
        ] {
            let err = parse(argv).expect_err(flag).to_string();
            assert!(err.contains(flag), "{flag}: {err}");
        }
    }

    #[test]
    fn parses_costs() {
        let args = parse(&[
            "--cpu-ms",
            "12.5",
            "--mem-per-request",
            "16MiB",
            "--fail-ratio",
            "0.25",
        ])
        .unwrap();
        let cfg = DemoTargetConfig::from(&args);
        assert_eq!(cfg.cpu, Duration::from_micros(12_500));
        assert_eq!(cfg.mem_per_request, ByteSize::mib(16));
        assert_eq!(cfg.fail_ratio, 0.25);
    }
}
