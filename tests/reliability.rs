//! Reliability (issue 11): no config, target or client can freeze, crash or exhaust loadspec,
//! and every request is counted. Config checks run the real binary (`loadspec validate` exits
//! 2 naming the field); load checks run the daemon against servers written here on
//! 127.0.0.1:0 that misbehave on purpose. Every loop is bounded in count and time.

mod support_core;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support_core::cli::*;

const GOOD: &str = r#"
[target]
base_url = "http://127.0.0.1:9"
[[scenarios]]
name = "s"
executor = "constant-vus"
vus = 1
duration = "1s"
[[scenarios.requests]]
name = "r"
path = "/x"
"#;

/// `loadspec validate` on `cfg` with `envs`, killed after 20 s (a FIFO once blocked it
/// forever): (exit code, stderr).
fn validate(cfg: &Path, envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["validate", "--config"])
        .arg(cfg)
        .current_dir(cfg.parent().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let t = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
            return (out.status.code(), text);
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            return (None, "still running after 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// (what, config text, the field and the reason the error must name)
fn bad_configs(dir: &Path) -> Vec<(&'static str, String, &'static str, &'static str)> {
    let g = GOOD.to_string();
    let fifo = dir.join("rows.csv");
    mkfifo(&fifo);
    let data = |file: &str| {
        g.replace(
            "[[scenarios.requests]]",
            &format!("[scenarios.data]\nfile = \"{file}\"\n[[scenarios.requests]]"),
        )
    };
    let multipart = |file: &str| {
        g.replace(
            "path = \"/x\"",
            &format!(
                "path = \"/x\"\nmethod = \"POST\"\n[scenarios.requests.body]\ntype = \"multipart\"\nfiles = [{{ name = \"f\", path = \"{file}\" }}]"
            ),
        )
    };
    vec![
        (
            "a 500000000000-year stage",
            g.replace("executor = \"constant-vus\"\nvus = 1\nduration = \"1s\"", "executor = \"ramping-vus\"\nstages = [{ duration = \"500000000000y\", target = 1 }]"),
            "scenarios[0].stages[0].duration",
            "at most 366 days",
        ),
        (
            "u64::MAX seconds",
            g.replace("duration = \"1s\"", "duration = \"18446744073709551615s\""),
            "scenarios[0].duration",
            "at most 366 days",
        ),
        (
            "a start offset of 400 days",
            g.replace("vus = 1", "vus = 1\nstart = \"400d\""),
            "scenarios[0].start",
            "at most 366 days",
        ),
        (
            "a drain timeout of 1000 years",
            format!("[lifecycle]\ndrain_timeout = \"1000y\"\n{g}"),
            "lifecycle.drain_timeout",
            "at most 366 days",
        ),
        (
            "2^32 VUs",
            g.replace("vus = 1", "vus = 4294967296"),
            "scenarios[0].vus",
            "at most limits.max_vus (10000)",
        ),
        (
            "a ramp to 20000 VUs",
            g.replace("executor = \"constant-vus\"\nvus = 1\nduration = \"1s\"", "executor = \"ramping-vus\"\nstages = [{ duration = \"1s\", target = 20000 }]"),
            "scenarios[0].stages[0].target",
            "at most limits.max_vus",
        ),
        (
            "a lowered VU ceiling",
            format!("[limits]\nmax_vus = 5\n{}", g.replace("vus = 1", "vus = 6")),
            "scenarios[0].vus",
            "at most limits.max_vus (5)",
        ),
        (
            "a sweep beyond the ceiling",
            format!("[experiment]\nmode = \"sweep\"\n[experiment.sweep]\nvus = [1, 20000]\n{g}"),
            "experiment.sweep.vus[1]",
            "at most limits.max_vus",
        ),
        (
            "a space in the base URL",
            g.replace("http://127.0.0.1:9", "http://127.0.0.1:9/a b"),
            "scenarios[0].requests[0].path",
            "cannot be sent",
        ),
        (
            "a static header with a line break",
            g.replace("[[scenarios]]", "[target.headers]\nX-A = \"a\\r\\nb\"\n[[scenarios]]"),
            "target.headers.X-A",
            "not a valid header value",
        ),
        (
            "userinfo and a bearer token",
            g.replace("http://127.0.0.1:9", "http://u:pw@127.0.0.1:9").replace("[target]", "[target]\nbearer_token = \"abcd\""),
            "scenarios[0].requests[0].path",
            "give one of them",
        ),
        (
            "a data file at /dev/zero",
            data("/dev/zero"),
            "scenarios[0].data.file",
            "is not a regular file (it is a character device)",
        ),
        (
            "a data file that is a FIFO",
            data(fifo.to_str().unwrap()),
            "scenarios[0].data.file",
            "is not a regular file (it is a FIFO)",
        ),
        (
            "a multipart file at /dev/zero",
            multipart("/dev/zero"),
            "scenarios[0].requests[0].body.files[0].path",
            "character device",
        ),
        (
            "a multipart file that is a FIFO",
            multipart(fifo.to_str().unwrap()),
            "scenarios[0].requests[0].body.files[0].path",
            "FIFO",
        ),
        (
            "an integer of 2^63",
            g.replace("vus = 1", "vus = 9223372036854775808"),
            "line 7, column 7",
            "number too large",
        ),
        (
            "deep nesting",
            format!("{g}\n[target.headers]\nX = {}1{}\n", "[".repeat(300), "]".repeat(300)),
            "line 14, column",
            "recursion limit",
        ),
        (
            "a bad limit",
            format!("[limits]\nmax_response_headers = 2\n{g}"),
            "limits.max_response_headers",
            "between 16 and 8192",
        ),
    ]
}

#[test]
fn invalid_configs_exit_2_naming_the_field_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    for (what, text, field, reason) in bad_configs(dir.path()) {
        let cfg = write(dir.path(), "bad.toml", &text);
        let (code, err) = validate(&cfg, &[]);
        assert_eq!(code, Some(2), "{what}: {err}");
        assert!(
            err.contains(field) && err.contains(reason),
            "{what}: the error should name {field:?} and {reason:?}:\n{err}"
        );
        assert!(!err.contains("panicked"), "{what}: {err}");
    }
    // The ceiling is configurable, and a good config still passes.
    let raised = format!(
        "[limits]\nmax_vus = 20000\n{}",
        GOOD.replace("vus = 1", "vus = 15000")
    );
    let (code, err) = validate(&write(dir.path(), "ok.toml", &raised), &[]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn config_files_that_are_not_regular_or_not_utf8_are_refused_with_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = validate(Path::new("/dev/zero"), &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("character device"), "{err}");
    let fifo = dir.path().join("cfg.toml");
    mkfifo(&fifo);
    let (code, err) = validate(&fifo, &[]);
    assert_eq!(code, Some(2), "a FIFO config: {err}");
    assert!(err.contains("FIFO"), "{err}");
    let big = write(
        dir.path(),
        "big.toml",
        &format!("# {}\n{GOOD}", "x".repeat(2 << 20)),
    );
    let (code, err) = validate(&big, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("limit of 1048576 bytes"), "{err}");
    let utf = dir.path().join("utf.toml");
    let mut bytes = GOOD.as_bytes().to_vec();
    let at = GOOD.find("/x").unwrap() + 1;
    bytes.insert(at, 0xff);
    std::fs::write(&utf, bytes).unwrap();
    let (code, err) = validate(&utf, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("offset {at} (line 11, column 10)")),
        "{err}"
    );
}

#[test]
fn the_token_is_redacted_from_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "tok-SECRET-5e1d7";
    let text = GOOD
        .replace(
            "path = \"/x\"",
            "url = \"http://127.0.0.1:9/a b?api_key=${LOADSPEC_TOKEN}\"",
        )
        .replace(
            "http://127.0.0.1:9\"\n[[",
            "http://u:${LOADSPEC_TOKEN}@127.0.0.1:9\"\n[[",
        )
        .replace("vus = 1", "vus = 0");
    let cfg = write(dir.path(), "tok.toml", &text);
    let (code, err) = validate(&cfg, &[("LOADSPEC_TOKEN", secret)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("scenarios[0].requests[0].url"), "{err}");
    assert!(err.contains("<redacted>"), "{err}");
    assert!(!err.contains(secret), "the token leaked:\n{err}");
}
