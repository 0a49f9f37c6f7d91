//! The `loadspec` binary as a child process: spawn `run` with its output collected, signal
//! it, wait for log lines and its exit, all bounded in time; write config files; list reports.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_loadspec");

/// The smallest valid config: one VU for one second against a port nothing listens on. The
/// config tests break it one field at a time.
pub const GOOD: &str = r#"
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

pub fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A running `loadspec run` child whose stderr is collected in the background.
pub struct Proc {
    pub child: Child,
    pub metrics: std::net::SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

pub fn spawn_run(cfg: &Path, envs: &[(&str, &str)]) -> Proc {
    spawn_run_with(cfg, envs, None)
}

/// [`spawn_run`] with its file-descriptor limit (soft and hard) set to `nofile`, as
/// `ulimit -n` would.
pub fn spawn_run_with(cfg: &Path, envs: &[(&str, &str)], nofile: Option<u64>) -> Proc {
    let mut cmd = Command::new(BIN);
    if let Some(n) = nofile {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n as libc::rlim_t,
                    rlim_max: n as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.args(["run", "--config"])
        .arg(cfg)
        .current_dir(cfg.parent().unwrap());
    cmd.env("RUST_LOG", "debug,hyper=info,h2=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    // Owned by the guard from here on, so a failed start below still kills the child.
    let mut p = Proc {
        child,
        metrics: ([0, 0, 0, 0], 0).into(),
        log,
    };
    // The server address is in the log ("serving ... addr=...").
    let t = Instant::now();
    p.metrics = loop {
        let text = p.log();
        if let Some(i) = text.find("addr=") {
            let rest = &text[i + 5..];
            let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
            let a = rest[..end].trim_matches(|c: char| !c.is_ascii_digit() && c != '.' && c != ':');
            if let Ok(a) = a.parse() {
                break a;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no server address in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    p
}

impl Proc {
    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            if t.elapsed() > within {
                let _ = self.child.kill();
                panic!("did not exit within {within:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Write `text` to the config file `cfg`, send SIGHUP, and wait for `expect` in the log.
    pub fn reload(&self, cfg: &Path, text: &str, expect: &str) {
        std::fs::write(cfg, text).unwrap();
        self.signal(libc::SIGHUP);
        self.wait_log(expect, Duration::from_secs(10));
    }

    pub fn wait_log(&self, needle: &str, within: Duration) {
        let t = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                t.elapsed() < within,
                "{needle:?} not logged within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
