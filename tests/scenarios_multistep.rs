//! Multi-step scenarios end to end (issue 6): setup steps, captures (JSON pointer, header,
//! regex), `${var}` templates, CSV/JSON data rows, the iteration-duration histogram and the
//! config errors. Every run is against a real server on 127.0.0.1:0 — the in-process demo
//! target, whose per-username login and posts counters are the server-side ground truth, or a
//! tiny session server for header captures — and every run is bounded in iterations and time.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use loadspec::demo_target::{self, DemoHandle, DemoTargetConfig};
use loadspec::load::executor::{self, Stop};
use loadspec::load::plan::Shard;
use loadspec::load::vu::ScenarioCtx;
use loadspec::metrics::text::Expose;
use loadspec::metrics::LoadMetrics;

const USERS_CSV: &str =
    "username,password\nalice,alice-pw\nbob,bob-pw\ncarol,carol-pw\ndave,dave-pw\n";
/// Upper bound of any one run in these tests.
const RUN_LIMIT: Duration = Duration::from_secs(30);

const LOGIN_SETUP: &str = r#"
[[scenarios.setup]]
name = "login"
method = "POST"
path = "/api/v1/login"
expect = [200]
body = { type = "json", json = { username = "${username}", password = "${password}" } }
captures = [{ name = "token", json = "/token" }]
"#;

const LOGIN_STEP: &str = r#"
[[scenarios.requests]]
name = "login"
method = "POST"
path = "/api/v1/login"
expect = [200]
body = { type = "json", json = { username = "${username}", password = "${password}" } }
captures = [{ name = "token", json = "/token" }]
"#;

const POSTS_STEP: &str = r#"
[[scenarios.requests]]
name = "posts"
path = "/api/v1/posts"
headers = { Authorization = "Bearer ${token}" }
expect = [200]
"#;

async fn demo() -> (SocketAddr, DemoHandle) {
    demo_target::spawn(DemoTargetConfig::free())
        .await
        .expect("demo target starts")
}

fn target(addr: SocketAddr) -> String {
    format!("[target]\nbase_url = \"http://{addr}\"\ntimeout = \"5s\"\n")
}

/// Validate `toml` (relative files resolve in `dir`), run every scenario to its end with the
/// real executors and a fresh registry, and return the exposition text of that registry.
async fn run_plan(toml: &str, dir: &Path) -> Metrics {
    let raw = loadspec::config::parse_raw(toml, "test.toml").expect("config parses");
    let settings =
        loadspec::config::validate(raw, dir).unwrap_or_else(|e| panic!("config invalid: {e}"));
    let metrics = LoadMetrics::new(&settings.raw.metrics.buckets);
    for sc in &settings.scenarios {
        let ctx = ScenarioCtx::new(sc.clone(), &metrics);
        let run = executor::run(
            ctx,
            Shard::default(),
            Stop::default(),
            tokio::time::Instant::now(),
        );
        tokio::time::timeout(RUN_LIMIT, run)
            .await
            .expect("the run ends within its bound");
    }
    let mut buf = Vec::new();
    loadspec::metrics::text::encode(&[&metrics as &dyn Expose], &metrics.registry, &mut buf)
        .expect("metrics encode");
    Metrics(String::from_utf8(buf).expect("UTF-8 exposition"))
}

/// Prometheus exposition text with a lookup by name and labels.
struct Metrics(String);

impl Metrics {
    /// The value of the one series of `name` carrying all `labels`; 0 when there is none.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut found = None;
        for line in self.0.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (n, lbl) = series.split_once('{').unwrap_or((series, ""));
            if n != name
                || !labels
                    .iter()
                    .all(|(k, v)| lbl.contains(&format!("{k}=\"{v}\"")))
            {
                continue;
            }
            assert!(
                found.is_none(),
                "more than one series {name}{labels:?}:\n{}",
                self.0
            );
            found = Some(value.parse::<f64>().expect("numeric sample"));
        }
        found.unwrap_or(0.0)
    }

    fn checks(&self, request: &str, result: &str) -> u64 {
        self.get(
            "loadspec_checks_total",
            &[("request", request), ("result", result)],
        ) as u64
    }

    fn iterations(&self, scenario: &str) -> u64 {
        self.get("loadspec_iterations_total", &[("scenario", scenario)]) as u64
    }
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Status counts the demo target gave one route.
fn route(h: &DemoHandle, key: &str) -> BTreeMap<u16, u64> {
    h.stats().requests.get(key).cloned().unwrap_or_default()
}

fn users_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("users.csv"), USERS_CSV).expect("write users.csv");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_vu_iterations_each_vu_uses_its_own_token() {
    let (addr, h) = demo().await;
    let dir = users_dir();
    let toml = format!(
        "{}\n[[scenarios]]\nname = \"s1\"\nexecutor = \"per-vu-iterations\"\nvus = 4\niterations = 5\nmax_duration = \"20s\"\ndata = {{ file = \"users.csv\" }}\n{LOGIN_SETUP}{POSTS_STEP}",
        target(addr)
    );
    let m = run_plan(&toml, dir.path()).await;
    let s = h.stats();
    // One login per VU (setup), with that VU's row; every posts read used the token that
    // login issued, so the server attributes 5 reads to each user and never answers 401.
    let per_user = counts(&[("alice", 1), ("bob", 1), ("carol", 1), ("dave", 1)]);
    assert_eq!(s.logins_by_user, per_user);
    let reads = counts(&[("alice", 5), ("bob", 5), ("carol", 5), ("dave", 5)]);
    assert_eq!(s.posts_by_user, reads);
    assert_eq!(route(&h, "GET /api/v1/posts"), BTreeMap::from([(200, 20)]));
    assert_eq!(
        (m.checks("login", "pass"), m.checks("login", "fail")),
        (4, 0)
    );
    assert_eq!(
        (m.checks("posts", "pass"), m.checks("posts", "fail")),
        (20, 0)
    );
    assert_eq!(m.iterations("s1"), 20);

    // The iteration histogram: one observation per iteration, and each iteration lasts at
    // least as long as its posts request (setup is not part of an iteration).
    let it = [("scenario", "s1")];
    assert_eq!(
        m.get("loadspec_iteration_duration_seconds_count", &it),
        20.0
    );
    let it_sum = m.get("loadspec_iteration_duration_seconds_sum", &it);
    let posts_sum = m.get(
        "loadspec_http_request_duration_seconds_sum",
        &[("request", "posts")],
    );
    assert!(posts_sum > 0.0, "posts were timed");
    assert!(
        it_sum >= posts_sum,
        "iterations {it_sum}s < their posts {posts_sum}s"
    );
    h.shutdown().await.expect("demo target stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_and_open_models_keep_tokens_per_vu() {
    let (addr, h) = demo().await;
    let dir = users_dir();
    // Closed model: 3 VUs for 1 s, so dave's row is never used.
    let toml = format!(
        "{}\n[[scenarios]]\nname = \"closed\"\nexecutor = \"constant-vus\"\nvus = 3\nduration = \"1s\"\nthink_time = \"10ms\"\ndata = {{ file = \"users.csv\" }}\n{LOGIN_SETUP}{POSTS_STEP}",
        target(addr)
    );
    let m = run_plan(&toml, dir.path()).await;
    let s = h.stats();
    assert_eq!(
        s.logins_by_user,
        counts(&[("alice", 1), ("bob", 1), ("carol", 1)])
    );
    let total: u64 = s.posts_by_user.values().sum();
    assert_eq!(
        total,
        m.iterations("closed"),
        "one read per iteration: {:?}",
        s.posts_by_user
    );
    assert_eq!(s.posts_by_user.len(), 3, "{:?}", s.posts_by_user);
    assert!(total >= 3, "each VU ran: {:?}", s.posts_by_user);
    assert_eq!(route(&h, "GET /api/v1/posts").get(&401), None);
    assert_eq!(m.checks("posts", "fail"), 0);

    // Open model: two pre-allocated VUs (ids 0 and 1) serve every arrival.
    let (addr, h) = demo().await;
    let toml = format!(
        "{}\n[[scenarios]]\nname = \"open\"\nexecutor = \"constant-arrival-rate\"\nrate = 20\nduration = \"1s\"\npre_allocated_vus = 2\nmax_vus = 2\ndata = {{ file = \"users.csv\" }}\n{LOGIN_SETUP}{POSTS_STEP}",
        target(addr)
    );
    let m = run_plan(&toml, dir.path()).await;
    let s = h.stats();
    assert!(
        s.logins_by_user.values().all(|n| *n == 1),
        "{:?}",
        s.logins_by_user
    );
    assert!(
        s.logins_by_user.keys().all(|u| u == "alice" || u == "bob"),
        "{:?}",
        s.logins_by_user
    );
    let total: u64 = s.posts_by_user.values().sum();
    assert_eq!(total, m.iterations("open"));
    assert!(total >= 10, "about 20 arrivals in 1 s, got {total}");
    assert_eq!(route(&h, "GET /api/v1/posts").get(&401), None);
    assert_eq!(m.checks("posts", "fail"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_json_pointer_fails_the_capture_and_the_vu_goes_on() {
    let (addr, h) = demo().await;
    let dir = users_dir();
    let bad_login = LOGIN_STEP.replace("json = \"/token\"", "json = \"/data/token\"");
    let toml = format!(
        "{}\n[[scenarios]]\nname = \"s1\"\nexecutor = \"per-vu-iterations\"\nvus = 2\niterations = 3\nmax_duration = \"20s\"\ndata = {{ file = \"users.csv\" }}\n{bad_login}{POSTS_STEP}",
        target(addr)
    );
    let m = run_plan(&toml, dir.path()).await;
    let s = h.stats();
    // Login answered 200 every time, yet each capture failed: a failed check under the
    // login step, and the iteration ends there, so posts is never sent. Both VUs still ran
    // all their iterations.
    assert_eq!(s.logins_by_user, counts(&[("alice", 3), ("bob", 3)]));
    assert_eq!(route(&h, "POST /api/v1/login"), BTreeMap::from([(200, 6)]));
    assert_eq!(
        (m.checks("login", "pass"), m.checks("login", "fail")),
        (0, 6)
    );
    assert_eq!(
        m.get(
            "loadspec_http_requests_total",
            &[("request", "login"), ("code", "200")]
        ),
        6.0
    );
    assert!(
        route(&h, "GET /api/v1/posts").is_empty(),
        "posts must not be sent"
    );
    assert_eq!(m.checks("posts", "pass") + m.checks("posts", "fail"), 0);
    assert_eq!(m.iterations("s1"), 6);
    assert_eq!(
        m.get(
            "loadspec_iteration_duration_seconds_count",
            &[("scenario", "s1")]
        ),
        6.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_setup_capture_sends_nothing_that_needs_it() {
    let (addr, h) = demo().await;
    let dir = users_dir();
    let bad_setup = LOGIN_SETUP.replace("json = \"/token\"", "json = \"/nope\"");
    // The open model retries setup on the VU's next arrival; no posts go out without a token.
    let toml = format!(
        "{}\n[[scenarios]]\nname = \"s1\"\nexecutor = \"constant-arrival-rate\"\nrate = 10\nduration = \"1s\"\npre_allocated_vus = 1\nmax_vus = 1\ndata = {{ file = \"users.csv\" }}\nsetup_retry = {{ max = 1, backoff = \"50ms\" }}\non_setup_failure = \"retry\"\n{bad_setup}{POSTS_STEP}",
        target(addr)
    );
    let m = run_plan(&toml, dir.path()).await;
    let s = h.stats();
    let logins = s.logins_by_user.get("alice").copied().unwrap_or(0);
    // Each round is 2 attempts 50 ms apart, then 50 ms before the next round: about 10 in
    // 1 s, and never more than the 10 arrivals' worth of rounds.
    assert!(
        (4..=20).contains(&logins) && logins % 2 == 0,
        "setup retried in rounds of 2, got {logins}"
    );
    assert_eq!(s.logins_by_user.len(), 1, "{:?}", s.logins_by_user);
    assert_eq!(m.checks("login", "fail"), logins);
    assert_eq!(m.checks("login", "pass"), 0);
    assert!(
        route(&h, "GET /api/v1/posts").is_empty(),
        "posts without a token were sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_capture_takes_the_token() {
    let (addr, h) = demo().await;
    let dir = users_dir();
    let login = LOGIN_SETUP.replace(
        "json = \"/token\"",
        r#"regex = '"token"\s*:\s*"(dt_[0-9a-f]+)"'"#,
    );
    let toml = format!(
        "{}\n[[scenarios]]\nname = \"s1\"\nexecutor = \"per-vu-iterations\"\nvus = 2\niterations = 3\nmax_duration = \"20s\"\ndata = {{ file = \"users.csv\" }}\n{login}{POSTS_STEP}",
        target(addr)
    );
    let m = run_plan(&toml, dir.path()).await;
    let s = h.stats();
    assert_eq!(s.posts_by_user, counts(&[("alice", 3), ("bob", 3)]));
    assert_eq!(
        (m.checks("posts", "pass"), m.checks("posts", "fail")),
        (6, 0)
    );
}

/// A server for header captures: `GET /session` answers a new `x-session: sess-N`; `GET
/// /use/{id}` records its path and the `x-session` header it got.
async fn session_server() -> (SocketAddr, Arc<Mutex<Vec<(String, String)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, next) = (seen2.clone(), next.clone());
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let (seen, next) = (seen.clone(), next.clone());
                async move {
                    let path = req.uri().path().to_string();
                    let mut resp = Response::new(Full::new(Bytes::from_static(b"ok\nbye")));
                    if path == "/session" {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let v = format!("sess-{n}").parse().expect("header value");
                        resp.headers_mut().insert("x-session", v);
                    } else {
                        let h = req
                            .headers()
                            .get("x-session")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        seen.lock().expect("lock").push((path, h));
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_capture_feeds_url_and_headers_of_later_steps() {
    let (addr, seen) = session_server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        r#"{}
[[scenarios]]
name = "hdr"
executor = "per-vu-iterations"
vus = 2
iterations = 3
max_duration = "20s"

[[scenarios.requests]]
name = "session"
path = "/session"
captures = [{{ name = "sid", header = "X-Session" }}]

[[scenarios.requests]]
name = "use"
path = "/use/${{sid}}"
headers = {{ X-Session = "${{sid}}" }}

[[scenarios.requests]]
name = "body"
path = "/session"
captures = [{{ name = "text", regex = '(?s)(.*)' }}]

[[scenarios.requests]]
name = "bad-header"
path = "/use/bad"
headers = {{ X-Session = "${{text}}" }}

[[scenarios.requests]]
name = "missing"
path = "/session"
captures = [{{ name = "nothing", header = "x-not-sent" }}]

[[scenarios.requests]]
name = "after-missing"
path = "/use/after"
"#,
        target(addr)
    );
    let m = run_plan(&toml, dir.path()).await;
    let seen = seen.lock().expect("lock").clone();
    // Each `use` carried the session its own iteration captured, in the path and the header,
    // and the 6 iterations got 6 different sessions.
    assert_eq!(seen.len(), 6, "{seen:?}");
    let mut ids: Vec<&str> = seen.iter().map(|(_, h)| h.as_str()).collect();
    for (path, h) in &seen {
        assert!(h.starts_with("sess-"), "{seen:?}");
        assert_eq!(path, &format!("/use/{h}"));
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6, "{seen:?}");
    // An absent header fails the capture: counted, and the rest of the iteration is skipped.
    assert_eq!(
        (m.checks("missing", "pass"), m.checks("missing", "fail")),
        (0, 6)
    );
    assert_eq!(
        m.checks("after-missing", "pass") + m.checks("after-missing", "fail"),
        0
    );
    assert_eq!(
        (m.checks("use", "pass"), m.checks("session", "pass")),
        (6, 6)
    );
    // A captured value that is not a valid header value (a newline) is not sent without the
    // header: the step fails its check, and the next step (it has no captures) still runs.
    assert_eq!(
        (
            m.checks("bad-header", "pass"),
            m.checks("bad-header", "fail")
        ),
        (0, 6)
    );
    assert_eq!(m.checks("missing", "fail"), 6);
    assert_eq!(m.iterations("hdr"), 6);
}

fn rotation_config(addr: SocketAddr, vus: u64, iterations: u64, data: &str) -> String {
    format!(
        "{}\n[[scenarios]]\nname = \"rows\"\nexecutor = \"per-vu-iterations\"\nvus = {vus}\niterations = {iterations}\nmax_duration = \"20s\"\ndata = {data}\n{LOGIN_STEP}{POSTS_STEP}",
        target(addr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_rows_per_vu_wrap_by_vu_index() {
    let (addr, h) = demo().await;
    let dir = users_dir();
    // 5 VUs over 4 rows: VU 4 wraps to row 0, so alice logs in for two VUs.
    let toml = rotation_config(addr, 5, 3, r#"{ file = "users.csv", mode = "per-vu" }"#);
    let m = run_plan(&toml, dir.path()).await;
    let s = h.stats();
    let want = counts(&[("alice", 6), ("bob", 3), ("carol", 3), ("dave", 3)]);
    assert_eq!(s.logins_by_user, want);
    assert_eq!(s.posts_by_user, want);
    assert_eq!(m.checks("posts", "fail"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_rows_round_robin_across_iterations() {
    let (addr, h) = demo().await;
    let dir = users_dir();
    // 2 VUs × 3 iterations = 6 iterations take rows 0..6 in turn: alice, bob, carol, dave,
    // alice, bob — whatever the interleaving of the VUs.
    let toml = rotation_config(
        addr,
        2,
        3,
        r#"{ file = "users.csv", mode = "round-robin" }"#,
    );
    let m = run_plan(&toml, dir.path()).await;
    let s = h.stats();
    let want = counts(&[("alice", 2), ("bob", 2), ("carol", 1), ("dave", 1)]);
    assert_eq!(s.logins_by_user, want);
    assert_eq!(
        s.posts_by_user, want,
        "each iteration read with the token of its own row"
    );
    assert_eq!(m.checks("posts", "fail"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_data_file_rows() {
    let (addr, h) = demo().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Values that are not strings render as JSON text (the password 7 is sent as "7").
    let rows = r#"[{"username": "j\"one", "password": "x"}, {"username": "jtwo", "password": 7}]"#;
    std::fs::write(dir.path().join("users.json"), rows).expect("write users.json");
    let toml = rotation_config(addr, 2, 2, r#"{ file = "users.json" }"#);
    let m = run_plan(&toml, dir.path()).await;
    let s = h.stats();
    // The quote in the first username survives JSON escaping into the login body.
    let want = counts(&[("j\"one", 2), ("jtwo", 2)]);
    assert_eq!(s.logins_by_user, want);
    assert_eq!(s.posts_by_user, want);
    assert_eq!(m.checks("login", "fail"), 0);
}

#[test]
fn data_columns_and_capture_names_must_not_collide() {
    let dir = users_dir();
    let toml = format!(
        "{}\n[[scenarios]]\nname = \"s1\"\nexecutor = \"per-vu-iterations\"\nvus = 1\niterations = 1\ndata = {{ file = \"users.csv\" }}\n{}{POSTS_STEP}",
        target("127.0.0.1:9".parse().expect("addr")),
        LOGIN_SETUP.replace("name = \"token\"", "name = \"username\"")
    );
    let raw = loadspec::config::parse_raw(&toml, "t.toml").expect("parses");
    let err = loadspec::config::validate(raw, dir.path())
        .expect_err("a capture may not shadow a data column")
        .to_string();
    assert!(
        err.contains("scenarios[0].setup[0].captures[0].name"),
        "{err}"
    );
    assert!(err.contains("data column"), "{err}");
}

/// Run the real binary on `config` (bounded); returns (exit code, stdout, stderr).
async fn loadspec(args: &[&str], envs: &[(&str, String)]) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadspec"));
    cmd.args(args).kill_on_drop(true).env_remove("RUST_LOG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("loadspec finished in time")
        .expect("loadspec runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const RUN_SECTIONS: &str = "[lifecycle]\non_finish = \"exit\"\n[server]\nlisten = \"127.0.0.1:0\"\n[reports]\nenabled = false\n[analysis]\nsettle = \"0s\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_name_the_field_and_start_nothing() {
    let (addr, h) = demo().await;
    let dir = users_dir();
    let scenario = |data: &str, steps: &str| {
        format!(
            "{}{RUN_SECTIONS}\n[[scenarios]]\nname = \"s1\"\nexecutor = \"per-vu-iterations\"\nvus = 1\niterations = 1\n{data}\n{steps}",
            target(addr)
        )
    };
    let data = "data = { file = \"users.csv\" }";
    let cases = [
        (
            "unknown-var",
            scenario(
                data,
                &format!("{LOGIN_SETUP}{}", POSTS_STEP.replace("${token}", "${tokn}")),
            ),
            vec![
                "scenarios[0].requests[0].headers.Authorization",
                "unknown variable `${tokn}`",
            ],
        ),
        (
            "use-before-capture",
            scenario(data, &format!("{POSTS_STEP}{LOGIN_STEP}")),
            vec![
                "scenarios[0].requests[0].headers.Authorization",
                "used before it is captured",
                "scenarios[0].requests[1]",
            ],
        ),
        (
            "missing-data-file",
            scenario(
                "data = { file = \"no-such-users.csv\" }",
                &format!("{LOGIN_SETUP}{POSTS_STEP}"),
            ),
            vec!["scenarios[0].data.file", "no-such-users.csv"],
        ),
    ];
    for (name, toml, wants) in cases {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, toml).expect("write config");
        let (code, stdout, stderr) =
            loadspec(&["run", "--config", file.to_str().unwrap()], &[]).await;
        assert_eq!(code, 2, "{name}: {stderr}");
        for w in wants {
            assert!(stderr.contains(w), "{name}: want {w:?} in {stderr}");
        }
        assert!(stdout.is_empty(), "{name}: nothing runs, got {stdout}");
        assert!(
            !stderr.contains("serving"),
            "{name}: nothing binds: {stderr}"
        );
    }
    assert_eq!(h.stats().completed, 0, "no request reached the target");

    // A name that is neither a capture nor a data column is read from the environment.
    let file = dir.path().join("env.toml");
    let steps = "[[scenarios.requests]]\nname = \"health\"\npath = \"/healthz\"\nheaders = { X-Run = \"${LOADSPEC_TEST_RUN_ID}\" }\n";
    std::fs::write(&file, scenario("", steps)).expect("write config");
    let path = file.to_str().unwrap();
    let (code, _, stderr) = loadspec(&["validate", "--config", path], &[]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("unknown variable `${LOADSPEC_TEST_RUN_ID}`"),
        "{stderr}"
    );
    let env = [("LOADSPEC_TEST_RUN_ID", "run-42".to_string())];
    let (code, _, stderr) = loadspec(&["validate", "--config", path], &env).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stderr.contains("warning"),
        "no data file, no warning: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_names_json_keys_and_warns_about_rows_and_the_environment() {
    let (addr, _h) = demo().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A header typo: `passwd` instead of `password`.
    std::fs::write(
        dir.path().join("users.csv"),
        "username,passwd\nalice,alice-pw\n",
    )
    .expect("write users.csv");
    let scenario = |data: &str| {
        format!(
            "{}\n[[scenarios]]\nname = \"s1\"\nexecutor = \"per-vu-iterations\"\nvus = 1\niterations = 1\ndata = {data}\n{LOGIN_SETUP}{POSTS_STEP}",
            target(addr)
        )
    };
    let file = dir.path().join("typo.toml");
    std::fs::write(&file, scenario("{ file = \"users.csv\" }")).expect("write");
    let path = file.to_str().unwrap();
    // The missing column is named by its JSON key.
    let (code, _, stderr) = loadspec(&["validate", "--config", path], &[]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("scenarios[0].setup[0].body.json.password: unknown variable `${password}`"),
        "{stderr}"
    );
    // With `password` set in the environment it validates, and says where it came from.
    let env = [("password", "from-env".to_string())];
    let (code, _, stderr) = loadspec(&["validate", "--config", path], &env).await;
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(
        lines,
        vec!["warning: scenarios[0]: ${password} is not a column of users.csv; taken from the environment (a typo in the file's header row?)"],
        "{stderr}"
    );

    // Round-robin rows with a setup login that uses them: a warning, in both commands.
    std::fs::write(dir.path().join("users.csv"), USERS_CSV).expect("write users.csv");
    let file = dir.path().join("rr.toml");
    let rr = scenario("{ file = \"users.csv\", mode = \"round-robin\" }").replace(
        "headers = { Authorization = \"Bearer ${token}\" }",
        "headers = { Authorization = \"Bearer ${token}\", X-User = \"${username}\" }",
    );
    std::fs::write(&file, &rr).expect("write");
    let (code, _, stderr) = loadspec(&["validate", "--config", file.to_str().unwrap()], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: scenarios[0].data: mode = \"round-robin\""),
        "{stderr}"
    );
    // Per-VU rows, or round-robin rows the setup does not use, are fine.
    for ok in [
        rr.replace("mode = \"round-robin\"", "mode = \"per-vu\""),
        scenario("{ file = \"users.csv\", mode = \"round-robin\" }"),
    ] {
        std::fs::write(&file, ok).expect("write");
        let (code, _, stderr) =
            loadspec(&["validate", "--config", file.to_str().unwrap()], &[]).await;
        assert_eq!(code, 0, "{stderr}");
        assert!(!stderr.contains("warning"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_example_runs_against_demo_target_without_errors() {
    let (addr, h) = demo().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let example = std::fs::read_to_string(root.join("s1-simple-apis.toml")).expect("S1 example");
    std::fs::copy(root.join("users.csv"), dir.path().join("users.csv")).expect("copy users.csv");
    // The same file with 1 s stages; base_url comes from the environment as a user would set it.
    assert!(
        example.contains("duration = \"15s\""),
        "the example's stages changed"
    );
    let short = format!(
        "{RUN_SECTIONS}{}",
        example.replace("duration = \"15s\"", "duration = \"1s\"")
    );
    let file = dir.path().join("s1.toml");
    std::fs::write(&file, short).expect("write config");
    let env = [("LOADSPEC__TARGET__BASE_URL", format!("http://{addr}"))];
    let (code, stdout, stderr) = loadspec(&["run", "--config", file.to_str().unwrap()], &env).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("0 failed)"), "no failed checks: {stdout}");
    let s = h.stats();
    // 20 VUs over the 4 users, one login each in setup: 5 logins per user.
    let logins = counts(&[("alice", 5), ("bob", 5), ("carol", 5), ("dave", 5)]);
    assert_eq!(s.logins_by_user, logins);
    let posts = route(&h, "GET /api/v1/posts");
    assert_eq!(posts.keys().collect::<Vec<_>>(), vec![&200], "{posts:?}");
    assert!(posts[&200] >= 20, "{posts:?}");
    assert_eq!(s.posts_by_user.values().sum::<u64>(), posts[&200]);
}

// ---- Failure paths (issue 20): a login server that checks passwords and can restart. ----

/// Server-side tallies of [`LoginServer`], per username.
#[derive(Default)]
struct LoginTally {
    /// Every `POST /api/v1/login`, right password or not.
    attempts: BTreeMap<String, u64>,
    posts_ok: BTreeMap<String, u64>,
    /// `GET /api/v1/posts` answered 401, per username of the last token that user got.
    posts_401: u64,
    /// Valid tokens (a restart forgets them, as a server that keeps sessions in memory).
    tokens: BTreeMap<String, String>,
    next: u64,
}

/// A login/posts server with real password checks: `POST /api/v1/login` with the JSON
/// `{username, password}` gives `{"token"}` when the password is `<username>-pw`, else 401;
/// `GET /api/v1/posts` needs a token it issued since its last (re)start, else 401.
struct LoginServer {
    addr: SocketAddr,
    tally: Arc<Mutex<LoginTally>>,
    conns: Mutex<tokio_util::sync::CancellationToken>,
}

impl LoginServer {
    async fn start() -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let s = Arc::new(Self {
            addr: listener.local_addr().expect("addr"),
            tally: Arc::default(),
            conns: Mutex::new(tokio_util::sync::CancellationToken::new()),
        });
        s.serve(listener);
        s
    }

    fn serve(self: &Arc<Self>, listener: tokio::net::TcpListener) {
        let cancel = self.conns.lock().expect("lock").clone();
        let tally = self.tally.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => return },
                    _ = cancel.cancelled() => return,
                };
                let (tally, cancel) = (tally.clone(), cancel.clone());
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let tally = tally.clone();
                    async move { Ok::<_, Infallible>(login_route(req, &tally).await) }
                });
                tokio::spawn(async move {
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    tokio::select! { _ = conn => {}, _ = cancel.cancelled() => {} }
                });
            }
        });
    }

    /// Close every connection and the listener, forget every token, and listen again on the
    /// same port: what a client sees when the server restarts.
    async fn restart(self: &Arc<Self>) {
        let old = std::mem::take(&mut *self.conns.lock().expect("lock"));
        old.cancel();
        self.tally.lock().expect("lock").tokens.clear();
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        self.serve(listener);
    }

    fn attempts(&self) -> BTreeMap<String, u64> {
        self.tally.lock().expect("lock").attempts.clone()
    }
}

async fn login_route(
    req: Request<hyper::body::Incoming>,
    tally: &Mutex<LoginTally>,
) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let reply = |code: u16, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = hyper::StatusCode::from_u16(code).expect("status");
        r
    };
    if req.uri().path() == "/api/v1/login" {
        let body = req.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let user = v["username"].as_str().unwrap_or("").to_string();
        let pass = v["password"].as_str().unwrap_or("");
        let mut t = tally.lock().expect("lock");
        *t.attempts.entry(user.clone()).or_default() += 1;
        if pass != format!("{user}-pw") {
            return reply(401, "{}".into());
        }
        t.next += 1;
        let token = format!("tok-{}", t.next);
        t.tokens.insert(token.clone(), user);
        return reply(200, format!("{{\"token\":\"{token}\"}}"));
    }
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    let mut t = tally.lock().expect("lock");
    match t.tokens.get(&token).cloned() {
        Some(user) => {
            *t.posts_ok.entry(user).or_default() += 1;
            reply(200, "[]".into())
        }
        None => {
            t.posts_401 += 1;
            reply(401, "{}".into())
        }
    }
}

/// Five users; dave's password in the file is wrong.
const USERS_ONE_BAD: &str =
    "username,password\nalice,alice-pw\nbob,bob-pw\ncarol,carol-pw\ndave,WRONG\neve,eve-pw\n";

fn one_bad_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("users.csv"), USERS_ONE_BAD).expect("write users.csv");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_setup_is_retried_by_the_policy_then_the_vu_stops_in_every_executor() {
    let schedules = [
        ("constant-vus", "vus = 5\nduration = \"1500ms\"\nthink_time = \"10ms\""),
        (
            "ramping-vus",
            "stages = [{ duration = \"500ms\", target = 5 }, { duration = \"1s\", target = 5 }]\nthink_time = \"10ms\"",
        ),
        (
            "ramping-vus",
            "step = true\nstages = [{ duration = \"1500ms\", target = 5 }]\nthink_time = \"10ms\"",
        ),
        (
            "constant-arrival-rate",
            "rate = 40\nduration = \"1500ms\"\npre_allocated_vus = 5\nmax_vus = 5",
        ),
        (
            "ramping-arrival-rate",
            "start_rate = 10\nstages = [{ duration = \"1500ms\", target = 40 }]\npre_allocated_vus = 5\nmax_vus = 5",
        ),
        (
            "per-vu-iterations",
            "vus = 5\niterations = 20\nmax_duration = \"20s\"",
        ),
    ];
    for (executor, schedule) in schedules {
        let srv = LoginServer::start().await;
        let dir = one_bad_dir();
        let toml = format!(
            "{}\n[[scenarios]]\nname = \"s1\"\nexecutor = \"{executor}\"\n{schedule}\ndata = {{ file = \"users.csv\" }}\nsetup_retry = {{ max = 2, backoff = \"100ms\" }}\non_setup_failure = \"stop-vu\"\n{LOGIN_SETUP}{POSTS_STEP}",
            target(srv.addr)
        );
        let m = run_plan(&toml, dir.path()).await;
        // dave: the first attempt and two retries, then his VU stops; the others log in once.
        let want = counts(&[
            ("alice", 1),
            ("bob", 1),
            ("carol", 1),
            ("dave", 3),
            ("eve", 1),
        ]);
        assert_eq!(srv.attempts(), want, "{executor} {schedule}");
        let t = srv.tally.lock().expect("lock");
        assert_eq!(t.posts_401, 0, "{executor}: posts went out without a token");
        assert_eq!(t.posts_ok.get("dave"), None, "{executor}");
        let setup = |r: &str| m.get("loadspec_setup_runs_total", &[("result", r)]) as u64;
        assert_eq!((setup("success"), setup("failure")), (4, 3), "{executor}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_setup_failure_retry_tries_again_at_each_iteration() {
    let srv = LoginServer::start().await;
    let dir = one_bad_dir();
    // 4 iterations, each a round of 1 + 1 attempts: dave tries 8 times, 30 ms apart.
    let toml = format!(
        "{}\n[[scenarios]]\nname = \"s1\"\nexecutor = \"per-vu-iterations\"\nvus = 5\niterations = 4\nmax_duration = \"20s\"\ndata = {{ file = \"users.csv\" }}\nsetup_retry = {{ max = 1, backoff = \"30ms\" }}\non_setup_failure = \"retry\"\n{LOGIN_SETUP}{POSTS_STEP}",
        target(srv.addr)
    );
    let t = std::time::Instant::now();
    let m = run_plan(&toml, dir.path()).await;
    assert_eq!(srv.attempts().get("dave"), Some(&8));
    assert_eq!(srv.attempts().get("alice"), Some(&1));
    // 7 pauses of 30 ms between dave's 8 attempts.
    assert!(
        t.elapsed() >= Duration::from_millis(210),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(m.iterations("s1"), 16, "the healthy VUs ran all of theirs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_pool_rotates_over_every_preallocated_vu_and_row() {
    let srv = LoginServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let users: String = (0..5).map(|i| format!("u{i},u{i}-pw\n")).collect();
    std::fs::write(
        dir.path().join("users.csv"),
        format!("username,password\n{users}"),
    )
    .expect("write users.csv");
    // 40 arrivals of ~1 ms each need a small fraction of one VU; all 5 must still take turns.
    let toml = format!(
        "{}\n[[scenarios]]\nname = \"open\"\nexecutor = \"constant-arrival-rate\"\nrate = 20\nduration = \"2s\"\npre_allocated_vus = 5\nmax_vus = 5\ndata = {{ file = \"users.csv\" }}\n{LOGIN_SETUP}{POSTS_STEP}",
        target(srv.addr)
    );
    let m = run_plan(&toml, dir.path()).await;
    let t = srv.tally.lock().expect("lock");
    // Every arrival is run or counted as dropped; a stall of the whole machine longer than
    // the idle VUs' claims (250 ms here) drops the ones it made late, as k6 does.
    let dropped = m.get("loadspec_dropped_iterations_total", &[("scenario", "open")]) as u64;
    assert_eq!(m.iterations("open") + dropped, 40);
    assert!(dropped <= 2, "{dropped} arrivals dropped");
    let logins: Vec<u64> = t.attempts.values().copied().collect();
    assert_eq!(logins, vec![1; 5], "{:?}", t.attempts);
    let posts: Vec<u64> = t.posts_ok.values().copied().collect();
    assert_eq!(
        posts.len(),
        5,
        "every preallocated VU ran: {:?}",
        t.posts_ok
    );
    assert!(
        posts.iter().all(|n| (4..=12).contains(n)),
        "the load is spread: {:?}",
        t.posts_ok
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_makes_the_vus_log_in_again_and_200s_resume() {
    let srv = LoginServer::start().await;
    let dir = users_dir();
    let toml = format!(
        "{}\n[[scenarios]]\nname = \"s1\"\nexecutor = \"constant-vus\"\nvus = 3\nduration = \"2s\"\nthink_time = \"20ms\"\ndata = {{ file = \"users.csv\" }}\nrerun_setup_on = [401]\nmax_setup_reruns = 3\n{LOGIN_SETUP}{POSTS_STEP}",
        target(srv.addr)
    );
    let restarter = {
        let srv = srv.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(800)).await;
            let before = srv.tally.lock().expect("lock").posts_ok.clone();
            srv.restart().await;
            before
        })
    };
    let m = run_plan(&toml, dir.path()).await;
    let before = restarter.await.expect("restart");
    let t = srv.tally.lock().expect("lock");
    // One login before the restart and one after, per VU.
    assert_eq!(
        t.attempts,
        counts(&[("alice", 2), ("bob", 2), ("carol", 2)])
    );
    // At most one request per VU met the forgotten token.
    assert!(t.posts_401 <= 3, "{} 401s", t.posts_401);
    for (user, n) in &t.posts_ok {
        let was = before.get(user).copied().unwrap_or(0);
        assert!(was > 0 && *n > was + 5, "{user}: {was} then {n}");
    }
    let setup = |r: &str| m.get("loadspec_setup_runs_total", &[("result", r)]) as u64;
    assert_eq!((setup("success"), setup("failure")), (6, 0));
}
