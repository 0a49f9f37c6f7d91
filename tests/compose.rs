//! Proves docker-compose.yml on the real Docker engine. No registry is reachable here, so the
//! public images are replaced by local stand-ins imported from root filesystems: loadspec (and
//! the demo target, same image) from the test's own `loadspec` binary, and Prometheus from
//! Debian's /usr/bin/prometheus. docker-compose.test.yml points the services at them. The test
//! checks that `compose config` accepts the file exactly as users run it, then starts
//! demo-target, loadspec and prometheus and waits until Prometheus inside the project scrapes
//! loadspec, has loaded the rules, and sees the demo target's container metrics.

mod observability;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use observability::{repo, require, run_ok, Prom};

/// `docker compose` (v2 plugin) when present, else Debian's `docker-compose`.
fn compose_cmd() -> Option<Vec<String>> {
    let ok = |c: &mut Command| {
        c.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok(Command::new("docker").args(["compose", "version"])) {
        return Some(vec!["docker".into(), "compose".into()]);
    }
    if ok(Command::new("docker-compose").arg("version")) {
        return Some(vec!["docker-compose".into()]);
    }
    None
}

fn docker_up() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Shared libraries a dynamically linked binary needs, from `ldd`.
fn shared_libs(bin: &Path) -> Vec<PathBuf> {
    let out = run_ok(Command::new("ldd").arg(bin));
    out.lines()
        .filter_map(|l| {
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// `docker import`s a root filesystem holding `files` (source, path inside the image) and the
/// libraries they link against, with the given entrypoint.
fn import_image(tag: &str, files: &[(&Path, &str)], entrypoint: &str) {
    let root = tempfile::tempdir().expect("tempdir");
    let copy = |src: &Path, dest: &str| {
        let to = root.path().join(dest.trim_start_matches('/'));
        fs::create_dir_all(to.parent().unwrap()).expect("mkdir");
        fs::copy(src, &to).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    };
    for (src, dest) in files {
        copy(src, dest);
        for lib in shared_libs(src) {
            copy(&lib, lib.to_str().expect("utf-8 path"));
        }
    }
    fs::create_dir_all(root.path().join("tmp")).expect("mkdir tmp");
    let mut tar = Command::new("tar")
        .args(["-C"])
        .arg(root.path())
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tar");
    run_ok(
        Command::new("docker")
            .args(["import", "--change"])
            .arg(format!("ENTRYPOINT [\"{entrypoint}\"]"))
            .args(["-", tag])
            .stdin(tar.stdout.take().expect("tar stdout")),
    );
    let status = tar.wait().expect("wait for tar");
    assert!(
        status.success(),
        "tar of the root filesystem failed: {status}"
    );
}

/// The compose project under test; `down -v` and image removal on every exit path.
struct Project {
    cmd: Vec<String>,
    name: String,
    env: Vec<(String, String)>,
    images: Vec<String>,
}

impl Project {
    fn compose(&self) -> Command {
        let mut c = Command::new(&self.cmd[0]);
        c.args(&self.cmd[1..])
            .current_dir(repo())
            .args(["-p", &self.name])
            .args(["-f", "docker-compose.yml", "-f", "docker-compose.test.yml"]);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn logs(&self) -> String {
        let out = self
            .compose()
            .args(["logs", "--no-color", "--tail", "40"])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self
            .compose()
            .args(["down", "-v", "--remove-orphans", "-t", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for image in &self.images {
            let _ = Command::new("docker")
                .args(["rmi", "-f", image])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[test]
fn compose_file_is_valid_as_users_run_it() {
    if !require(docker_up(), "the Docker engine") {
        return;
    }
    let Some(cmd) = compose_cmd() else {
        require(false, "docker compose or docker-compose");
        return;
    };
    // No variables set: the defaults in the file must make it complete.
    let out = run_ok(
        Command::new(&cmd[0])
            .args(&cmd[1..])
            .current_dir(repo())
            .args(["-f", "docker-compose.yml", "config"]),
    );
    for service in ["demo-target:", "loadspec:", "prometheus:", "grafana:"] {
        assert!(out.contains(service), "service {service} missing:\n{out}");
    }
    // Every published port is on loopback by default, never on all interfaces.
    for port in [
        "127.0.0.1:3000:3000",
        "127.0.0.1:9090:9090",
        "127.0.0.1:9464:9464",
        "127.0.0.1:8080:8080",
    ] {
        assert!(out.contains(port), "{port} not published:\n{out}");
    }
}

#[test]
fn compose_stack_scrapes_loadspec_loads_rules_and_sees_the_demo_target() {
    let prometheus_bin = Path::new("/usr/bin/prometheus");
    if !require(docker_up(), "the Docker engine")
        || !require(prometheus_bin.exists(), "/usr/bin/prometheus")
    {
        return;
    }
    let Some(cmd) = compose_cmd() else {
        require(false, "docker compose or docker-compose");
        return;
    };
    let id = std::process::id();
    let loadspec_image = format!("loadspec-compose-test/loadspec:{id}");
    let prometheus_image = format!("loadspec-compose-test/prometheus:{id}");
    let project = Project {
        cmd,
        name: format!("loadspec-compose-test-{id}"),
        env: vec![
            ("LOADSPEC_TEST_IMAGE".into(), loadspec_image.clone()),
            ("PROMETHEUS_TEST_IMAGE".into(), prometheus_image.clone()),
            // Empty: Docker publishes each on a free loopback port.
            ("DEMO_TARGET_PORT".into(), String::new()),
            ("LOADSPEC_PORT".into(), String::new()),
            ("PROMETHEUS_PORT".into(), String::new()),
            ("GRAFANA_PORT".into(), String::new()),
        ],
        images: vec![loadspec_image.clone(), prometheus_image.clone()],
    };
    import_image(
        &loadspec_image,
        &[(
            Path::new(env!("CARGO_BIN_EXE_loadspec")),
            "/usr/local/bin/loadspec",
        )],
        "/usr/local/bin/loadspec",
    );
    import_image(
        &prometheus_image,
        &[(prometheus_bin, "/bin/prometheus")],
        "/bin/prometheus",
    );

    // Grafana has no local stand-in, so it is the one service not started.
    run_ok(project.compose().args([
        "up",
        "-d",
        "--no-build",
        "demo-target",
        "loadspec",
        "prometheus",
    ]));
    let port = run_ok(project.compose().args(["port", "prometheus", "9090"]));
    let prom = Prom {
        addr: port.trim().to_string(),
    };
    assert!(
        prom.addr.starts_with("127.0.0.1:"),
        "published on {:?}",
        prom.addr
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    loop {
        let scraped = prom
            .query(r#"up{job="loadspec"} == 1"#)
            .is_ok_and(|s| !s.is_empty());
        let groups = prom
            .get_data("/api/v1/rules")
            .and_then(|d| d["groups"].as_array().map(|g| g.len()))
            .unwrap_or(0);
        let demo = prom
            .query(r#"loadspec_container_up{group="demo",container=~".*demo-target.*"} == 1"#)
            .unwrap_or_default();
        if scraped && groups >= 6 && !demo.is_empty() {
            break;
        }
        last = format!(
            "loadspec scraped: {scraped}, rule groups: {groups}, demo-target series: {demo:?}"
        );
        assert!(
            Instant::now() < deadline,
            "after 120 s: {last}\n--- compose logs:\n{}",
            project.logs()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let _ = last;
}
