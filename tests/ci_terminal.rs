//! `loadspec run` at a real terminal (issue 19): tmux gives it a pseudo-terminal, and
//! `capture-pane` reads the screen. One live bar per scenario shows elapsed/total, the stage and
//! its VUs (or the arrival rate and dropped iterations), TPS, p95 and errors, with the figures
//! the plan and the server make true; the verdict is coloured, and `NO_COLOR` / `--no-color`
//! leave no colour on the screen. Under CI=true a missing tmux fails the test.

mod support_ci;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support_ci::*;

/// demo-target's delay per request: the p95 on the bar cannot be below it.
const DELAY_MS: f64 = 50.0;

fn tmux_available() -> bool {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    required(ok, "tmux")
}

/// A tmux server of this test's own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Self {
        Self {
            socket: format!("loadspec-test-{:08x}", rand::random::<u32>()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A detached 200×50 session running `script` with sh.
    fn session(&self, name: &str, script: &Path) {
        self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "200",
            "-y",
            "50",
            &format!("sh {}", script.display()),
        ]);
    }

    /// The visible screen; `-e` keeps the colour escapes.
    fn screen(&self, name: &str, escapes: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", name];
        if escapes {
            args.push("-e");
        }
        self.run(&args)
    }

    /// Poll the screen until `pred` holds; the screen then.
    fn wait(
        &self,
        name: &str,
        within: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let t = Instant::now();
        loop {
            let s = self.screen(name, false);
            if pred(&s) {
                return s;
            }
            assert!(
                t.elapsed() < within,
                "no {what} on the screen within {within:?}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// Two scenarios: a closed one stepping to 3 VUs, an open one at 4 iterations per second.
fn config(base: &str, secs: u64) -> String {
    let request = r#"[[scenarios.requests]]
name = "prompt"
method = "POST"
path = "/api/v1/ai-images/prompt"
expect = [200]
body = { type = "json", json = { prompt = "a cat" } }
"#;
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[target]
base_url = "http://{base}"
bearer_token = "t"
[lifecycle]
on_finish = "exit"
[reports]
enabled = false
[[scenarios]]
name = "closed"
executor = "ramping-vus"
step = true
stages = [{{ duration = "{secs}s", target = 3, name = "T1" }}]
{request}[[scenarios]]
name = "open"
executor = "constant-arrival-rate"
rate = 4
duration = "{secs}s"
pre_allocated_vus = 2
max_vus = 4
{request}"#
    )
}

/// A script that runs loadspec with `prefix` (environment) and `args`, then prints its exit
/// code and keeps the pane open for the capture.
fn script(dir: &Path, name: &str, config: &str, prefix: &str, args: &str) -> std::path::PathBuf {
    let p = dir.join(format!("{name}.sh"));
    std::fs::write(
        &p,
        format!(
            "cd {}\nunset NO_COLOR RUST_LOG\n{prefix} {BIN} run --config {config} {args}\necho \"EXIT=$?\"\nsleep 60\n",
            dir.display()
        ),
    )
    .unwrap();
    p
}

/// The number before `unit` in `line` (`52.0 TPS` → 52.0).
fn figure(line: &str, before: &str) -> f64 {
    let head = line
        .split(before)
        .next()
        .unwrap_or_else(|| panic!("no {before:?} in {line:?}"));
    head.split_whitespace()
        .last()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no figure before {before:?} in {line:?}"))
}

#[test]
fn a_live_bar_per_scenario_shows_the_plans_vus_rate_and_the_measured_figures() {
    if !tmux_available() {
        return;
    }
    let target = DemoTarget::start(&["--cpu-ms=1", &format!("--delay-ms={DELAY_MS}")]);
    let dir = tempfile::tempdir().unwrap();
    let base = target.addr.to_string();
    std::fs::write(dir.path().join("long.toml"), config(&base, 8)).unwrap();
    std::fs::write(dir.path().join("short.toml"), config(&base, 2)).unwrap();
    let tmux = Tmux::new();
    tmux.session("bars", &script(dir.path(), "bars", "long.toml", "", ""));

    // Both bars at once, with the closed scenario's VUs at its stage target and a figure on
    // every field.
    let screen = tmux.wait("bars", Duration::from_secs(30), "two live bars", |s| {
        s.lines().any(|l| {
            l.starts_with("closed [") && l.contains(" · T1 · 3 VUs · ") && !l.contains(" 0.0 TPS")
        }) && s
            .lines()
            .any(|l| l.starts_with("open   [") && l.contains(" · rate 4.0/s · "))
    });
    let closed = screen.lines().find(|l| l.starts_with("closed [")).unwrap();
    let open = screen.lines().find(|l| l.starts_with("open   [")).unwrap();
    for line in [closed, open] {
        assert!(line.contains("s/8s · "), "elapsed/total: {line}");
        let p95 = figure(line, " ms · ");
        assert!((DELAY_MS..5000.0).contains(&p95), "p95 {p95} ms on {line}");
        assert_eq!(figure(line, " % errors"), 0.0, "{line}");
    }
    // 3 VUs, each waiting at least the delay per request: no more than 3 / 0.05 s = 60 TPS.
    // The bar's rate is completions over its tick, and a tick that runs late shortens the
    // next one, so allow a quarter more; counting each request twice would still be far out.
    let tps = figure(closed, " TPS");
    assert!(
        tps > 0.0 && tps <= 1.25 * 3.0 * 1000.0 / DELAY_MS,
        "TPS {tps}: {closed}"
    );
    assert!(open.contains(" dropped · "), "{open}");
    assert!(figure(open, " dropped") < 4.0, "{open}");

    // The verdict, coloured at a terminal.
    tmux.wait("bars", Duration::from_secs(40), "the exit code", |s| {
        s.contains("EXIT=")
    });
    let plain = tmux.screen("bars", false);
    assert!(plain.contains("EXIT=0"), "{plain}");
    // The bars' last state stays on screen, full.
    assert!(
        plain.contains("closed [========================] "),
        "{plain}"
    );
    assert!(
        plain.contains("open   [========================] "),
        "{plain}"
    );
    assert!(plain.contains("SLA met: ✓ closed p95 "), "{plain}");
    let coloured = tmux.screen("bars", true);
    assert!(
        coloured.contains("\x1b[32m✓ closed p95"),
        "no colour at a terminal:\n{coloured:?}"
    );

    // NO_COLOR and --no-color: no colour anywhere on the screen.
    tmux.session(
        "env",
        &script(dir.path(), "env", "short.toml", "NO_COLOR=1", ""),
    );
    tmux.session(
        "flag",
        &script(dir.path(), "flag", "short.toml", "", "--no-color"),
    );
    for name in ["env", "flag"] {
        let s = tmux.wait(name, Duration::from_secs(40), "the exit code", |s| {
            s.contains("EXIT=")
        });
        assert!(
            s.contains("EXIT=0") && s.contains("SLA met: ✓ closed p95"),
            "{name}:\n{s}"
        );
        let e = tmux.screen(name, true);
        assert!(!e.contains('\x1b'), "{name}: colour on the screen:\n{e:?}");
    }
}

#[test]
fn quiet_at_a_terminal_shows_only_the_verdict() {
    if !tmux_available() {
        return;
    }
    let target = DemoTarget::start(&["--cpu-ms=1"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("short.toml"),
        config(&target.addr.to_string(), 2),
    )
    .unwrap();
    let tmux = Tmux::new();
    tmux.session(
        "quiet",
        &script(dir.path(), "quiet", "short.toml", "", "--quiet"),
    );
    let s = tmux.wait("quiet", Duration::from_secs(40), "the exit code", |s| {
        s.contains("EXIT=")
    });
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        2,
        "more than the verdict and the exit code:\n{s}"
    );
    assert!(lines[0].starts_with("SLA met: ✓ closed p95 "), "{s}");
    assert_eq!(lines[1], "EXIT=0");
}
