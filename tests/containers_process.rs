//! The /proc process source against a real demo-target child process under CPU-bound load:
//! its CPU time agrees with the kernel's own accounting in /proc/<pid>/stat over the same
//! interval, and its memory with the child's resident set.

mod support_containers;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use loadspec::containers::{spawn_process_sampler, ContainersConfig, SourceKind};
use support_containers::{find, load, wait_for, wait_healthy, within};
use tokio_util::sync::CancellationToken;

/// The child, killed when the test ends.
struct Target(Child);

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime + stime of `pid` in seconds, straight from the kernel.
fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("child alive");
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // SAFETY: sysconf only reads a kernel value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11] + f[12]) / hz
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_source_matches_proc_accounting() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadspec"))
        .args([
            "demo-target",
            "--listen",
            "127.0.0.1:0",
            "--cpu-ms",
            "20",
            "--mem-per-request",
            "256KiB",
            "--base-memory",
            "64MiB",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo-target starts");
    let stdout = child.stdout.take().unwrap();
    let target = Target(child);
    let pid = target.0.id();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    wait_healthy(addr, Duration::from_secs(10)).await;

    let cfg = ContainersConfig {
        source: SourceKind::Process,
        process_name: Some("demo".into()),
        groups: [("demo".to_string(), "ai".to_string())].into(),
        interval: Duration::from_millis(250),
        ..Default::default()
    };
    let token = CancellationToken::new();
    let _cancel = token.clone().drop_guard();
    let mut rx = spawn_process_sampler(&cfg, &[pid], token);
    let load = tokio::spawn(load(addr, 2, Duration::from_secs(6), 10_000));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Two fresh snapshots ~4 s apart, each paired with the kernel's figure read right after it.
    wait_for(&mut rx, Duration::from_secs(5), "a sample", |s| {
        find(s, "demo").is_some_and(|x| x.up)
    })
    .await;
    rx.changed().await.unwrap();
    let first = rx.borrow_and_update().clone();
    let k0 = proc_cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(4)).await;
    rx.borrow_and_update();
    rx.changed().await.unwrap();
    let second = rx.borrow_and_update().clone();
    let k1 = proc_cpu_seconds(pid);
    let ok = load.await.unwrap();
    assert!(ok > 10, "load got {ok} answers");

    let a = find(&first, "demo").unwrap();
    let b = find(&second, "demo").unwrap();
    assert_eq!(b.group, "ai");
    let ours = b.cpu_usage_seconds_total - a.cpu_usage_seconds_total;
    let kernel = k1 - k0;
    eprintln!("process source {ours:.3} CPU s, /proc {kernel:.3} CPU s");
    assert!(kernel > 0.5, "the load burned only {kernel:.2} CPU seconds");
    assert!(
        within(ours, kernel, 0.10),
        "process source {ours:.3} CPU s vs /proc {kernel:.3} CPU s"
    );
    // Base memory (64 MiB, touched) is resident.
    assert!(b.memory_usage_bytes > 64 << 20, "{b:?}");
    assert_eq!(
        b.memory_limit_bytes,
        loadspec::containers::host::mem_total_bytes()
    );
    assert_eq!(
        b.cpu_limit_cores,
        loadspec::containers::host::online_cpus() as f64
    );

    // The child exits: the series stays, down, with its last counters.
    drop(target);
    let gone = wait_for(&mut rx, Duration::from_secs(5), "the process down", |s| {
        find(s, "demo").is_some_and(|x| !x.up)
    })
    .await;
    assert!(find(&gone, "demo").unwrap().cpu_usage_seconds_total >= b.cpu_usage_seconds_total);
}
