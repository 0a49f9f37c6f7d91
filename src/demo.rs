//! `loadspec demo`: the embedded default for a newcomer with only Rust. It starts demo-target
//! as a child process with known costs, measures it through /proc, runs a short bottom-up
//! sweep of the seed's S3 request, serves /metrics and /report meanwhile, prints the summary
//! and the recommendation, writes the reports, and compares the fitted models with the costs
//! it configured.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::analysis::CapacityAnalysis;
use crate::containers::SourceKind;

/// The demo's config and image, compiled in so the demo runs from any directory.
const DEMO_TOML: &str = include_str!("../examples/demo.toml");
const TEST_PNG: &[u8] = include_bytes!("../examples/test.png");

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where /metrics and /report are served (falls back to a free port if taken).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Where the reports are written.
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
    /// CPU milliseconds each AI request burns in demo-target.
    #[arg(long, default_value_t = 20.0)]
    pub cpu_ms: f64,
    /// Extra wait per AI request in demo-target, milliseconds (the model's I/O).
    #[arg(long, default_value_t = 30.0)]
    pub delay_ms: f64,
    /// Memory each in-flight request holds in demo-target, MiB.
    #[arg(long, default_value_t = 4)]
    pub mem_per_request_mib: u64,
    /// Memory demo-target holds from the start, MiB.
    #[arg(long, default_value_t = 64)]
    pub base_memory_mib: u64,
    /// VU counts the sweep steps through.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,6,8,10")]
    pub vus: Vec<u64>,
    /// Length of each sweep step.
    #[arg(long, default_value = "7s", value_parser = humantime::parse_duration)]
    pub stage_duration: Duration,
    /// Run over HTTPS: demo-target gets a certificate from a CA made for this run (kept in a
    /// temporary directory and deleted at the end), and loadspec trusts that CA.
    #[arg(long)]
    pub tls: bool,
}

pub fn main(a: DemoArgs) -> ExitCode {
    crate::logging::init(crate::logging::LogFormat::Text);
    crate::runtime::run_command(async move {
        match run(a).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Start `loadspec demo-target` as a child and read the address it prints.
async fn start_target(a: &DemoArgs, tls: &[String]) -> anyhow::Result<(Child, SocketAddr)> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "demo-target",
            "--listen",
            "127.0.0.1:0",
            "--cpu-ms",
            &a.cpu_ms.to_string(),
            "--delay-ms",
            &a.delay_ms.to_string(),
            "--mem-per-request",
            &format!("{}MiB", a.mem_per_request_mib),
            "--base-memory",
            &format!("{}MiB", a.base_memory_mib),
        ])
        .args(tls)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix("listening on ") {
                return Ok::<_, anyhow::Error>(rest.trim().parse::<SocketAddr>()?);
            }
        }
        anyhow::bail!("demo-target exited before it listened")
    })
    .await
    .map_err(|_| anyhow::anyhow!("demo-target did not start within 20 s"))??;
    Ok((child, addr))
}

async fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let signals = crate::shutdown::listen(None)?;
    let dir = std::env::temp_dir().join(format!("loadspec-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut tls_args = Vec::new();
    let mut ca_file = None;
    if a.tls {
        let pki = crate::demo_target::tls::Pki::new("loadspec demo CA")?;
        let (cert, key) = pki
            .server(&["127.0.0.1", "localhost"])?
            .write(&dir, "server")?;
        std::fs::write(dir.join("ca.pem"), &pki.ca_pem)?;
        ca_file = Some(dir.join("ca.pem"));
        tls_args = vec![
            "--tls-cert".to_string(),
            cert.display().to_string(),
            "--tls-key".to_string(),
            key.display().to_string(),
        ];
    }
    let (mut child, addr) = match start_target(&a, &tls_args).await {
        Ok(started) => started,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("demo-target has no pid"))?;
    tracing::info!(%addr, pid, cpu_ms = a.cpu_ms, delay_ms = a.delay_ms,
        mem_per_request_mib = a.mem_per_request_mib, base_memory_mib = a.base_memory_mib, "demo-target started");

    std::fs::write(dir.join("test.png"), TEST_PNG)?;
    let mut raw = crate::config::parse_raw(DEMO_TOML, "embedded demo config")?;
    let scheme = if a.tls { "https" } else { "http" };
    raw.target.base_url = Some(format!("{scheme}://{addr}"));
    raw.target.tls.ca_file = ca_file;
    raw.containers.source = SourceKind::Process;
    raw.containers.pids = vec![pid];
    raw.containers.process_name = Some("demo-target".into());
    raw.reports.dir = a.reports.clone();
    raw.experiment.sweep.vus = a.vus.clone();
    raw.experiment.sweep.stage_duration = a.stage_duration;
    let settings = crate::config::validate(raw, &dir)?;

    let listener = match crate::server::bind(a.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "using a free port instead");
            crate::server::bind(SocketAddr::new(a.listen.ip(), 0)).await?
        }
    };
    let url = listener.local_addr()?;
    println!(
        "loadspec demo: sweeping {:?} VUs against demo-target at {scheme}://{addr}",
        a.vus
    );
    println!("  live: http://{url}/report   metrics: http://{url}/metrics\n");
    let finished = crate::daemon::run(
        settings,
        crate::daemon::DaemonOptions {
            listener: Some(listener),
            print_summary: true,
            ..Default::default()
        },
        signals,
    )
    .await?;
    let _ = std::fs::remove_dir_all(&dir);
    // The sweep is over and no request is in flight, so there is nothing to drain: stop the
    // demo-target (SIGKILL through tokio, no unsafe) and reap it.
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    if let Some((_, analysis)) = &finished.last {
        println!("{}", ground_truth(&a, analysis));
    }
    Ok(ExitCode::SUCCESS)
}

/// Compare the fitted models with what demo-target was told to cost.
///
/// CPU per request is the exact check: demo-target burns `cpu_ms` of CPU time per request, so
/// the slope of cores against TPS is that cost (plus its own HTTP and multipart handling).
/// Per VU it is that cost times the TPS one VU drives, which depends on the latency measured.
pub fn ground_truth(a: &DemoArgs, an: &CapacityAnalysis) -> String {
    let c = a.cpu_ms / 1e3;
    let mem_truth = (a.mem_per_request_mib << 20) as f64;
    let base_truth = (a.base_memory_mib << 20) as f64;
    let pct = |fit: f64, truth: f64| {
        if truth > 0.0 {
            format!("{:+.1}%", (fit - truth) / truth * 100.0)
        } else {
            "n/a".into()
        }
    };
    let r2 = |r: Option<f64>| r.map_or("–".to_string(), |r| format!("{r:.3}"));
    let mut out =
        String::from("ground truth (what demo-target was configured to cost) vs fitted:\n");
    if let Some(f) = &an.models.cpu_per_tps {
        out += &format!(
            "  CPU per request: truth {:.1} ms + request handling   fitted {:.1} ms ({})\n",
            c * 1e3,
            f.slope * 1e3,
            pct(f.slope, c)
        );
    }
    if let (Some(cpu), Some(tps)) = (&an.models.cpu, &an.models.tps) {
        let truth = c * tps.slope;
        out += &format!(
            "  CPU per VU     : truth {truth:.3} cores ({:.1} ms × {:.1} TPS per VU)   fitted {:.3} cores ({}, R² {})\n",
            c * 1e3,
            tps.slope,
            cpu.slope,
            pct(cpu.slope, truth),
            r2(cpu.r2)
        );
    }
    match &an.models.memory {
        Some(f) => {
            out += &format!(
                "  memory per VU  : truth {:.1} MiB per request in flight   fitted {:.1} MiB per VU ({}, R² {})\n",
                mem_truth / 1048576.0,
                f.slope / 1048576.0,
                pct(f.slope, mem_truth),
                r2(f.r2)
            );
            out += &format!(
                "  base memory    : truth {:.0} MiB + the runtime   fitted {:.1} MiB\n",
                base_truth / 1048576.0,
                f.base / 1048576.0
            );
        }
        None => out += "  memory         : no fit\n",
    }
    out
}
