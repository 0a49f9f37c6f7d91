//! The Docker source, the container collector and the limits control against the real Docker
//! engine, with real `--cpus`/`--memory` limits on demo-target containers this test makes from
//! the locally built image. Under CI=true a missing engine fails these tests.

mod support_containers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use loadspec::containers::{
    spawn_sampler, ContainersConfig, LimitsControl, Snapshot, SnapshotRx, SourceKind,
};
use loadspec::metrics::containers::ContainerExporter;
use loadspec::metrics::text::Expose;
use support_containers::*;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

fn cfg_for(name: &str) -> ContainersConfig {
    ContainersConfig {
        source: SourceKind::Docker,
        names: vec![name.to_string()],
        interval: Duration::from_millis(500),
        ..Default::default()
    }
}

/// The sampler's cancellation, cancelled when the test ends (also on a failed assert).
struct Sampler {
    rx: SnapshotRx,
    token: CancellationToken,
}

impl Sampler {
    fn start(cfg: &ContainersConfig) -> Self {
        let token = CancellationToken::new();
        let rx = spawn_sampler(cfg, token.clone());
        Sampler { rx, token }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

fn exposition(rx: SnapshotRx) -> String {
    let mut buf = Vec::new();
    ContainerExporter::new(rx).expose(&mut buf);
    String::from_utf8(buf).unwrap()
}

/// `97.5MiB` → bytes, as `docker stats` prints sizes.
fn parse_docker_size(s: &str) -> f64 {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().unwrap_or_else(|_| panic!("size {s:?}"));
    let f = match unit {
        "B" => 1.0,
        "KiB" | "kB" => 1024.0,
        "MiB" | "MB" => 1024.0 * 1024.0,
        "GiB" | "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => panic!("unit {unit:?} in {s:?}"),
    };
    n * f
}

/// Run streaming `docker stats` on `name` for `window` and return its (cores, memory bytes)
/// readings, without the first one (the CLI has no previous reading to diff against yet). The
/// CLI redraws the screen more often than the engine produces readings, so repeated lines are
/// one reading.
fn docker_stats_stream(name: &str, window: Duration) -> tokio::task::JoinHandle<Vec<(f64, f64)>> {
    use std::io::BufRead;
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new("docker")
            .args(["stats", "--format", "{{.CPUPerc}};{{.MemUsage}}", &name])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker stats runs");
        let out = child.stdout.take().unwrap();
        let end = std::time::Instant::now() + window;
        let mut readings = Vec::new();
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if std::time::Instant::now() >= end {
                break;
            }
            // Each refresh starts with "clear screen" escapes; keep what follows them.
            let text = line.rsplit('H').next().unwrap_or("").trim();
            if let Some((cpu, mem)) = text.split_once(';') {
                if let Ok(pct) = cpu.trim_end_matches('%').parse::<f64>() {
                    let used = parse_docker_size(mem.split('/').next().unwrap_or(""));
                    if readings.last() != Some(&(pct / 100.0, used)) {
                        readings.push((pct / 100.0, used));
                    }
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        readings.into_iter().skip(1).collect()
    })
}

/// (busy, total) jiffies of the whole host from /proc/stat.
fn host_cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let line = stat.lines().next().expect("cpu line");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Idle cores of the host between two readings.
fn spare_cores(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = (b.1 - a.1) as f64;
    let busy = (b.0 - a.0) as f64;
    let ncpu = loadspec::containers::host::online_cpus() as f64;
    if total <= 0.0 {
        return ncpu;
    }
    (1.0 - busy / total) * ncpu
}

/// CPU-bound load on `--cpus=1` and then `--cpus=0.5`: loadspec's CPU rate is the limit within
/// 10 %, the limits are exported exactly, and CPU and memory agree with `docker stats`. The two
/// run one after the other so they do not compete for the host's cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_rate_limits_and_docker_stats_agree() {
    if !docker_available() {
        return;
    }
    ensure_image();
    for (cpus, tag) in [(1.0_f64, "cpu1"), (0.5, "cpu05")] {
        let c = Container::demo(
            tag,
            &[
                "--cpus",
                &cpus.to_string(),
                "--memory=256m",
                "--memory-swap=256m",
            ],
            &[
                "--cpu-ms",
                "40",
                "--mem-per-request",
                "256KiB",
                "--base-memory",
                "96MiB",
            ],
        );
        let addr = c.addr();
        wait_healthy(addr, Duration::from_secs(20)).await;
        let mut s = Sampler::start(&cfg_for(&c.name));
        let load = tokio::spawn(load(addr, 4, Duration::from_secs(10), 20_000));

        // Let the load reach its steady state, then measure for 5 s while `docker stats` takes
        // its own reading inside the same window.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let stats = docker_stats_stream(&c.name, Duration::from_secs(5));
        let mut samples = Vec::new();
        let host_before = host_cpu_ticks();
        let end = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < end {
            s.rx.changed().await.expect("sampler runs");
            let snap = s.rx.borrow_and_update().clone();
            assert!(snap.source_up);
            samples.push(find(&snap, &c.name).expect("container sampled").clone());
        }
        let spare = spare_cores(host_before, host_cpu_ticks());
        let ok = load.await.unwrap();
        assert!(ok > 20, "the load got only {ok} answers");

        let n = samples.len() as f64;
        assert!(n >= 6.0, "only {n} samples in 5 s at 500ms");
        let cores = samples.iter().map(|x| x.cpu_cores).sum::<f64>() / n;
        let mem = samples
            .iter()
            .map(|x| x.memory_usage_bytes as f64)
            .sum::<f64>()
            / n;
        // The demand (4 burning threads) is far above the limit, so the container runs at its
        // limit unless the host itself has no idle CPU left to give it (other jobs on a small
        // machine); then it is held below the limit by the host, not by the quota, and the
        // bound is what it could have reached: what it used plus the host's idle cores.
        let reachable = cpus.min(cores + spare);
        eprintln!("--cpus={cpus}: {cores:.3} cores, host idle {spare:.2} cores, {ok} answers");
        assert!(
            within(cores, reachable, 0.10) && cores <= cpus * 1.10,
            "--cpus={cpus}: measured {cores:.3} cores, reachable {reachable:.3} ({:?})",
            samples.iter().map(|x| x.cpu_cores).collect::<Vec<_>>()
        );
        for x in &samples {
            assert!(x.up);
            assert_eq!(x.cpu_limit_cores, cpus);
            assert_eq!(x.memory_limit_bytes, 256 * 1024 * 1024);
        }
        // 96 MiB of touched base memory plus the binary: well above it, well below the limit.
        assert!(
            mem > 96.0 * 1048576.0 && mem < 200.0 * 1048576.0,
            "memory {mem}"
        );

        // `docker stats` readings over the same 5 s, averaged like ours.
        let readings = stats.await.unwrap();
        assert!(readings.len() >= 2, "docker stats gave {readings:?}");
        let dn = readings.len() as f64;
        let docker_cores = readings.iter().map(|r| r.0).sum::<f64>() / dn;
        let docker_mem = readings.iter().map(|r| r.1).sum::<f64>() / dn;
        assert!(
            within(cores, docker_cores, 0.10),
            "--cpus={cpus}: loadspec {cores:.3} cores, docker stats {docker_cores:.3} ({readings:?})"
        );
        assert!(
            within(mem, docker_mem, 0.10),
            "loadspec memory {mem}, docker stats {docker_mem}"
        );
        // Throttling and traffic counters move.
        let last = samples.last().unwrap();
        if cores >= 0.9 * cpus {
            // At the limit with more demand than quota: the kernel throttled it.
            assert!(last.cpu_throttled_seconds_total > 0.0, "{last:?}");
        }
        assert!(last.network_receive_bytes_total > 0 && last.network_transmit_bytes_total > 0);
    }
}

/// A container whose memory limit is below demo-target's base memory is OOM-killed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_kill_is_counted() {
    if !docker_available() {
        return;
    }
    ensure_image();
    let c = Container::demo(
        "oom",
        &["--memory=48m", "--memory-swap=48m"],
        &["--base-memory", "128MiB"],
    );
    let mut s = Sampler::start(&cfg_for(&c.name));
    let snap = wait_for(&mut s.rx, Duration::from_secs(30), "an OOM kill", |snap| {
        find(snap, &c.name).is_some_and(|x| x.oom_kills_total >= 1 && !x.up)
    })
    .await;
    assert_eq!(c.inspect("{{.State.OOMKilled}}"), "true");
    let x = find(&snap, &c.name).unwrap();
    assert_eq!(x.oom_kills_total, 1, "{x:?}");
    assert_eq!(x.memory_limit_bytes, 48 * 1024 * 1024);
    // Later rounds do not count the same kill again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let later = s.rx.borrow().clone();
    assert_eq!(find(&later, &c.name).unwrap().oom_kills_total, 1);
    let text = exposition(s.rx.clone());
    let line = format!(
        "loadspec_container_oom_kills_total{{container=\"{}\",group=\"{}\"}} 1",
        c.name, c.name
    );
    assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
}

/// `docker restart`: the restart counter goes up by one and the series never disappear;
/// `docker rm`: the series disappear. The group comes from the `loadspec.group` label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_is_counted_and_removed_container_disappears() {
    if !docker_available() {
        return;
    }
    ensure_image();
    let c = Container::demo(
        "restart",
        &[
            "--cpus=0.5",
            "--memory=128m",
            "--label",
            "loadspec.group=ai",
        ],
        &["--base-memory", "8MiB"],
    );
    let mut s = Sampler::start(&cfg_for(&c.name));
    let first = wait_for(
        &mut s.rx,
        Duration::from_secs(20),
        "the container up",
        |snap| find(snap, &c.name).is_some_and(|x| x.up),
    )
    .await;
    let before = find(&first, &c.name).unwrap().clone();
    assert_eq!(before.group, "ai");
    assert_eq!(before.restarts_total, 0);

    let name = c.name.clone();
    let restart = tokio::task::spawn_blocking(move || docker(&["restart", "-t", "1", &name]));
    // Every snapshot during and after the restart still carries the container.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        s.rx.changed().await.expect("sampler runs");
        let snap = s.rx.borrow_and_update().clone();
        let x = find(&snap, &c.name)
            .unwrap_or_else(|| panic!("series vanished during restart: {snap:#?}"))
            .clone();
        if restart.is_finished() && x.up && x.restarts_total >= 1 {
            break x;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "restart not seen: {x:?}"
        );
    };
    restart.await.unwrap();
    assert_eq!(after.restarts_total, 1, "{after:?}");
    assert_eq!(after.group, "ai");
    let text = exposition(s.rx.clone());
    let line = format!(
        "loadspec_container_restarts_total{{container=\"{}\",group=\"ai\"}} 1",
        c.name
    );
    assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");

    docker(&["rm", "-f", &c.name]);
    wait_for(
        &mut s.rx,
        Duration::from_secs(10),
        "the container gone",
        |snap| snap.source_up && find(snap, &c.name).is_none(),
    )
    .await;
    let text = exposition(s.rx.clone());
    assert!(
        !text.contains(&c.name),
        "removed container still exported:\n{text}"
    );
    assert!(text.lines().any(|l| l == "loadspec_docker_up 1"));
}

/// An engine socket that does not exist: sampling keeps retrying and docker_up is 0.
#[tokio::test]
async fn unreachable_engine_exports_docker_up_zero() {
    let cfg = ContainersConfig {
        docker_host: Some("unix:///nonexistent/loadspec-test/docker.sock".into()),
        ..cfg_for("anything")
    };
    let mut s = Sampler::start(&cfg);
    let a = wait_for(
        &mut s.rx,
        Duration::from_secs(5),
        "a failed round",
        |snap| !snap.source_up && snap.taken_at > std::time::UNIX_EPOCH,
    )
    .await;
    // It keeps running: a second (retried) round follows after the backoff.
    let b = wait_for(
        &mut s.rx,
        Duration::from_secs(5),
        "a retried round",
        |snap| snap.taken_at > a.taken_at,
    )
    .await;
    assert!(!b.source_up && b.containers.is_empty());
    let text = exposition(s.rx.clone());
    assert!(text.lines().any(|l| l == "loadspec_docker_up 0"), "{text}");
    assert!(!text.contains("container="), "{text}");
}

/// A unix-socket proxy to the real engine that the test can take away and bring back, which
/// is what an engine restart looks like to loadspec.
struct EngineProxy {
    path: PathBuf,
    token: CancellationToken,
}

impl EngineProxy {
    fn start(path: &Path) -> Self {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind proxy socket");
        let token = CancellationToken::new();
        let t = token.clone();
        tokio::spawn(async move {
            loop {
                let (mut down, _) = tokio::select! {
                    _ = t.cancelled() => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => return },
                };
                let t = t.clone();
                tokio::spawn(async move {
                    let Ok(mut up) = UnixStream::connect("/var/run/docker.sock").await else {
                        return;
                    };
                    tokio::select! {
                        _ = t.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                    }
                });
            }
        });
        EngineProxy {
            path: path.to_path_buf(),
            token,
        }
    }

    fn stop(&self) {
        self.token.cancel();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The engine goes away mid-run: docker_up drops to 0 and the container's series leave; when
/// it returns, sampling resumes on its own and the series come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_outage_mid_run_recovers() {
    if !docker_available() {
        return;
    }
    ensure_image();
    let c = Container::demo(
        "outage",
        &["--cpus=0.5", "--memory=128m"],
        &["--base-memory", "8MiB"],
    );
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let proxy = EngineProxy::start(&sock);
    let cfg = ContainersConfig {
        docker_host: Some(format!("unix://{}", sock.display())),
        ..cfg_for(&c.name)
    };
    let mut s = Sampler::start(&cfg);
    let up = |snap: &Snapshot| snap.source_up && find(snap, &c.name).is_some_and(|x| x.up);
    wait_for(&mut s.rx, Duration::from_secs(20), "the container up", up).await;

    proxy.stop();
    let down = wait_for(
        &mut s.rx,
        Duration::from_secs(10),
        "the engine down",
        |snap| !snap.source_up,
    )
    .await;
    assert!(down.containers.is_empty());
    assert!(exposition(s.rx.clone())
        .lines()
        .any(|l| l == "loadspec_docker_up 0"));

    let _proxy = EngineProxy::start(&sock);
    let back = wait_for(&mut s.rx, Duration::from_secs(20), "the engine back", up).await;
    assert!(find(&back, &c.name).unwrap().cpu_usage_seconds_total > 0.0);
}

/// Limits set (lowered, then raised) and restored through update_container; `docker inspect`
/// shows every step, and swap is pinned to the memory limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_set_and_restored() {
    if !docker_available() {
        return;
    }
    ensure_image();
    let c = Container::demo(
        "limits",
        &["--cpus=1", "--memory=256m"],
        &["--base-memory", "8MiB"],
    );
    let host = ContainersConfig::default().effective_docker_host();
    let ctl = LimitsControl::connect(&host)
        .await
        .expect("engine reachable");
    let fmt = "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}";
    assert_eq!(c.inspect(fmt), "1000000000 268435456 536870912");
    let got = ctl.get(&c.name).await.unwrap();
    assert_eq!((got.cpus, got.memory_bytes), (1.0, 268435456));

    ctl.set(&c.name, 0.5, 128 << 20).await.expect("lower");
    assert_eq!(c.inspect(fmt), "500000000 134217728 134217728");
    let got = ctl.get(&c.name).await.unwrap();
    assert_eq!((got.cpus, got.memory_bytes), (0.5, 134217728));

    ctl.set(&c.name, 1.5, 512 << 20).await.expect("raise");
    assert_eq!(c.inspect(fmt), "1500000000 536870912 536870912");
    assert_eq!(ctl.changed().await, vec![c.name.clone()]);

    ctl.restore().await.expect("restore");
    assert_eq!(c.inspect(fmt), "1000000000 268435456 536870912");
    assert!(ctl.changed().await.is_empty());
    // The cgroup really follows: the container is still running and the sampler agrees.
    assert_eq!(c.inspect("{{.State.Running}}"), "true");

    // Bad input names the container and the reason, and changes nothing.
    let err = ctl.set(&c.name, 0.001, 128 << 20).await.unwrap_err();
    assert!(
        err.to_string().contains("cpus must be at least 0.01"),
        "{err}"
    );
    assert_eq!(c.inspect(fmt), "1000000000 268435456 536870912");
    let err = ctl
        .set("loadspec-test-no-such-container", 1.0, 128 << 20)
        .await;
    assert!(err.is_err());
}

/// Keep `Arc` in use for snapshot clones in helpers.
#[allow(dead_code)]
fn _types(_: Arc<Snapshot>) {}
