//! Shared helpers of the CI tests: demo-target run as the pipelines in docs/ci.md run it (a
//! child process on 127.0.0.1:0), `loadspec run` bounded in time with its output in files,
//! demo-target's own counts from `GET /_stats`, and the JUnit schema check with Python's
//! `xmlschema` (`.ci/run` installs it into a venv and sets `LOADSPEC_PYTHON`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_loadspec");

/// The repository's examples/ci.toml, the config the pipeline examples run.
pub const CI_TOML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ci.toml");

/// `loadspec demo-target --listen 127.0.0.1:0 ARGS…`, killed when dropped.
pub struct DemoTarget {
    child: Child,
    pub addr: SocketAddr,
}

impl DemoTarget {
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["demo-target", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("demo-target starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("demo-target prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            panic!("no address from demo-target: {line:?}");
        };
        Self { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /_stats` as JSON.
    pub fn stats(&self) -> serde_json::Value {
        let body = get(self.addr, "/_stats");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/_stats: {e}: {body}"))
    }

    /// Responses with `status` to `POST /api/v1/ai-images` so far, by the server's count.
    pub fn ai_images(&self, status: u16) -> u64 {
        self.stats()["requests"]["POST /api/v1/ai-images"][status.to_string()]
            .as_u64()
            .unwrap_or(0)
    }
}

impl Drop for DemoTarget {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain `GET` over a fresh connection, bounded by socket timeouts; returns the body.
pub fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// What one `loadspec run` left behind.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Assert the exit code, showing both outputs when it differs.
    pub fn expect_code(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }

    /// The summary's last line: the verdict.
    pub fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }
}

/// Run `loadspec ARGS` in `dir` with `envs`, killed after `within`; output goes to files so a
/// full pipe can never stall it.
pub fn loadspec(dir: &Path, args: &[&str], envs: &[(&str, &str)], within: Duration) -> Run {
    let out = dir.join("stdout.txt");
    let err = dir.join("stderr.txt");
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("loadspec starts");
    let t = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if t.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "loadspec {args:?} did not exit within {within:?}:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        code,
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
    }
}

/// A tool the test needs is there: true. Missing: false with a note, or a failure under
/// CI=true, where nothing may be skipped.
pub fn required(ok: bool, what: &str) -> bool {
    if !ok {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{what} is required under CI=true"
        );
        eprintln!("skipping: {what} is not available");
    }
    ok
}

/// A Python with `xmlschema`: `LOADSPEC_PYTHON`, else `python3`. `None` (with a note) when
/// there is none; under CI=true that fails the test instead.
pub fn xmlschema_python() -> Option<PathBuf> {
    let py = std::env::var_os("LOADSPEC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import xmlschema"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let what = format!("Python's xmlschema ({} cannot import it)", py.display());
    required(ok, &what).then_some(py)
}

/// Validate `xml` against tests/fixtures/junit-10.xsd (the Jenkins JUnit schema); panics with
/// the validator's message when it does not conform.
pub fn validate_junit(xml: &Path) {
    let Some(py) = xmlschema_python() else { return };
    let xsd = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/junit-10.xsd");
    let out = Command::new(py)
        .args([
            "-c",
            "import sys, xmlschema; xmlschema.XMLSchema(sys.argv[1]).validate(sys.argv[2]); print('valid')",
            xsd,
        ])
        .arg(xml)
        .output()
        .expect("python runs");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "valid",
        "{} does not validate against junit-10.xsd:\n{}\n{}",
        xml.display(),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(xml).unwrap_or_default()
    );
}

/// Read and parse a JSON file.
pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}
