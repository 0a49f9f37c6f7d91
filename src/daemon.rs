//! The daemon: serves metrics and reports, samples containers, runs the configured experiment,
//! writes its reports, and then idles, repeats or exits. SIGHUP reloads the config (a bad one
//! is logged and the old one kept); SIGTERM/SIGINT drain in-flight requests up to the drain
//! deadline, print the final summary and return. After every run the SLA verdict is printed as
//! the summary's last line and the CI files are written ([`crate::ci`]); the verdict of the last
//! run comes back in [`Finished`], and sets the exit code only when `on_finish = "exit"`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::analysis::{analyze, CapacityAnalysis, StageSummary};
use crate::ci::Verdict;
use crate::config::raw::OnFinish;
use crate::config::Settings;
use crate::containers::SnapshotRx;
use crate::experiment::{console, run_experiment, Outcome, Runtime};
use crate::load::executor::Stop;
use crate::load::plan::Shard;
use crate::metrics::LoadMetrics;
use crate::report::{RunInfo, TestedLimits};
use crate::server::{AppState, ReportView};
use crate::shutdown::SignalEvent;

/// Options that do not come from the config file.
#[derive(Default)]
pub struct DaemonOptions {
    pub shard: Shard,
    /// Where SIGHUP reloads from.
    pub config_path: Option<PathBuf>,
    /// A listener bound by the caller (tests, the demo); else `server.listen` is bound.
    pub listener: Option<TcpListener>,
    /// Print the end-of-run summary to stdout.
    pub print_summary: bool,
    /// The verdict line, the summary export and the JUnit file.
    pub ci: crate::ci::Outputs,
    /// How a running plan shows its progress.
    pub progress: crate::experiment::progress::Display,
    /// `--start-at`: overrides `experiment.start_at`.
    pub start_at: Option<crate::config::start::StartAt>,
    /// `--run-id`: overrides `experiment.run_id`.
    pub run_id: Option<String>,
}

/// What the daemon reports back when it stops (for the demo and tests).
pub struct Finished {
    pub last: Option<(Outcome, CapacityAnalysis)>,
    /// The SLA verdict of the last run; its `exit_code()` is the process's.
    pub verdict: Option<Verdict>,
    /// Files of `opts.ci` that could not be written (the process then exits 1).
    pub output_errors: Vec<String>,
}

impl Finished {
    /// Why the last experiment was aborted, if it was: the process then exits non-zero.
    pub fn aborted(&self) -> Option<&str> {
        self.last.as_ref()?.0.aborted.as_deref()
    }
}

fn analysis_for(settings: &Settings, stages: &[StageSummary], scenario: &str) -> CapacityAnalysis {
    let mine: Vec<StageSummary> = stages
        .iter()
        .filter(|s| scenario.is_empty() || s.scenario == scenario)
        .cloned()
        .collect();
    analyze(
        &mine,
        &settings.raw.sla,
        &settings.raw.prices,
        &settings.raw.analysis,
    )
}

/// Reload the config file. The read and the validation (which reads data and body files) run
/// on the blocking pool, so a slow disk cannot stall the async workers that drive the VUs.
async fn reload(path: &Option<PathBuf>, metrics: &LoadMetrics, shard: Shard) -> Option<Settings> {
    let Some(path) = path else {
        tracing::warn!("SIGHUP ignored: no config file to reload");
        return None;
    };
    let p = path.clone();
    let loaded = tokio::task::spawn_blocking(move || crate::config::load(&p))
        .await
        .unwrap_or_else(|e| {
            Err(crate::config::ConfigError::Parse(format!(
                "the reload task failed: {e}"
            )))
        })
        .map_err(|e| e.to_string())
        .and_then(|s| {
            s.raw
                .experiment
                .mode
                .check_shard(shard)
                .map_err(|e| e.to_string())?;
            Ok(s)
        });
    match loaded {
        Ok(s) => {
            metrics.config_reload_ok.set(1);
            metrics.config_reloads.with_label_values(&["success"]).inc();
            tracing::info!(path = %path.display(), "config reloaded; the new plan starts now");
            Some(s)
        }
        Err(e) => {
            metrics.config_reload_ok.set(0);
            metrics.config_reloads.with_label_values(&["failure"]).inc();
            tracing::error!(path = %path.display(), error = %e, "config reload failed; keeping the running config");
            None
        }
    }
}

/// Give the metrics a (re)loaded config's latency buckets (with its SLA edges), SLA and
/// prices; between runs, since new buckets start the histograms afresh.
fn configure(metrics: &LoadMetrics, settings: &Settings) {
    let raw = &settings.raw;
    metrics.configure(&raw.latency_buckets(), &raw.sla, &raw.prices);
}

/// Run until the plan ends (with `on_finish = exit`) or a drain.
pub async fn run(
    mut settings: Settings,
    opts: DaemonOptions,
    mut signals: UnboundedReceiver<SignalEvent>,
) -> anyhow::Result<Finished> {
    settings.raw.experiment.mode.check_shard(opts.shard)?;
    let metrics = Arc::new(LoadMetrics::new(&settings.raw.latency_buckets()));
    configure(&metrics, &settings);
    metrics.config_reload_ok.set(1);
    let background = CancellationToken::new();
    let _guard = background.clone().drop_guard();
    // Only the first shard measures containers, so replicas do not count them N times.
    let containers: SnapshotRx = if opts.shard.is_first() {
        crate::containers::spawn_sampler(&settings.raw.containers, background.clone())
    } else {
        tokio::sync::watch::channel(Arc::new(crate::containers::Snapshot::default())).1
    };
    let model_metrics = crate::metrics::model::ModelMetrics::new(&metrics.registry)?;
    let live: Arc<Mutex<Vec<StageSummary>>> = Arc::default();
    let state = Arc::new(AppState {
        registry: metrics.registry.clone(),
        exposers: vec![
            metrics.clone(),
            Arc::new(crate::metrics::containers::ContainerExporter::new(
                containers.clone(),
            )),
        ],
        last_metrics_len: 0.into(),
        scrapes: 0.into(),
        ready: false.into(),
        running: false.into(),
        runs: 0.into(),
        live: live.clone(),
        report: RwLock::new(ReportView::default()),
    });
    let listener = match opts.listener {
        Some(l) => l,
        None => crate::server::bind(settings.raw.server.listen).await?,
    };
    let addr = listener.local_addr()?;
    crate::server::spawn_server_thread(
        listener,
        state.clone(),
        crate::server::ServerLimits::from_config(&settings.raw.server),
        background.clone(),
    )?;
    tracing::info!(%addr, "serving /metrics, /report, /healthz, /readyz");
    // A test hook of debug builds only: a panic in a background task, to show that the
    // process exits non-zero with the panic logged (tests/reliability.rs).
    #[cfg(debug_assertions)]
    if std::env::var_os("LOADSPEC_DEBUG_PANIC_IN_TASK").is_some() {
        tokio::spawn(async {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            panic!("LOADSPEC_DEBUG_PANIC_IN_TASK");
        });
    }
    state.ready.store(true, Ordering::Relaxed);

    let mut finished = Finished {
        last: None,
        verdict: None,
        output_errors: Vec::new(),
    };
    let mut runs = 0u64;
    'runs: loop {
        runs += 1;
        live.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let mode = settings.raw.experiment.mode;
        // Only the first plan run is tied to the common start; repeats and reloads start now.
        let start_at = (runs == 1 && mode == crate::experiment::config::Mode::Plan)
            .then(|| opts.start_at.or(settings.raw.experiment.start_at))
            .flatten();
        let run_id = crate::config::start::run_id(
            opts.run_id
                .as_deref()
                .or(settings.raw.experiment.run_id.as_deref()),
            start_at,
            mode.as_str(),
            runs,
        );
        metrics.set_run(&run_id, opts.shard);
        let mut run = RunInfo::new(run_id);
        if opts.shard.count > 1 {
            run.shard = Some(format!("{}/{}", opts.shard.index, opts.shard.count));
        }
        run.mode = Some(mode.as_str().to_string());
        run.started = Some(std::time::SystemTime::now());
        if let Some(u) = &settings.raw.target.base_url {
            run.set_target(u);
        }
        if mode == crate::experiment::config::Mode::Sweep {
            let spec = &settings.raw.experiment.sweep.spec;
            if spec.cpus.is_some() || spec.memory.is_some() {
                run.tested_spec = Some(TestedLimits {
                    cpus: spec.cpus,
                    memory_bytes: spec.memory,
                });
            }
        }
        let analyzer = {
            let s = settings.clone();
            move |stages: &[StageSummary]| analysis_for(&s, stages, "")
        };
        *state.report.write().unwrap_or_else(|e| e.into_inner()) = ReportView {
            run: run.clone(),
            analysis: None,
            stages: Vec::new(),
            analyze: Some(Box::new(analyzer)),
        };
        let rt = Runtime {
            metrics: metrics.clone(),
            containers: containers.clone(),
            shard: opts.shard,
            live: live.clone(),
            progress: opts.progress,
            origin: start_at,
        };
        let stop = Stop::default();
        state.running.store(true, Ordering::Relaxed);
        let exp = {
            let (s, rt, stop) = (settings.clone(), rt.clone(), stop.clone());
            tokio::spawn(async move { run_experiment(&s, &rt, stop).await })
        };
        tokio::pin!(exp);
        let mut exiting = false;
        let mut pending: Option<Settings> = None;
        let outcome = loop {
            tokio::select! {
                r = &mut exp => break r?,
                ev = signals.recv() => match ev {
                    Some(SignalEvent::Drain) | None => {
                        exiting = true;
                        drain(&stop, settings.raw.lifecycle.drain_timeout);
                    }
                    Some(SignalEvent::Reload) => {
                        if let Some(new) = reload(&opts.config_path, &metrics, opts.shard).await {
                            pending = Some(new);
                            drain(&stop, settings.raw.lifecycle.drain_timeout);
                        }
                    }
                },
            }
        };
        run.ended = Some(std::time::SystemTime::now());
        run.notes = outcome.notes.clone();
        if settings.raw.target.tls.insecure_skip_verify {
            run.notes.push(
                "target.tls.insecure_skip_verify was on: the target's certificate was not verified"
                    .into(),
            );
        }
        run.restored_limits = outcome.restored.clone();
        if outcome.tested_spec.is_some() {
            run.tested_spec = outcome.tested_spec.clone();
        }
        run.error = outcome.aborted.clone();
        if outcome.interrupted {
            run.notes
                .push("the experiment was interrupted before its plan ended".into());
        }
        let analysis = analysis_for(&settings, &outcome.stages, &outcome.scenario);
        if opts.shard.count > 1 {
            // One shard's load against the whole stack's containers: its fits are not the run's,
            // so it neither exports model gauges nor lets its report pass for the answer.
            run.notes.push(format!(
                "this process ran shard {} of {}: its stages hold this shard's load only, so its models are not the run's; `loadspec analyze --prometheus URL --run-id {}` gives the whole picture",
                opts.shard.index, opts.shard.count, run.run_id
            ));
        } else {
            model_metrics.update(&analysis);
        }
        if opts.print_summary {
            println!(
                "{}",
                console::render(&outcome.totals, outcome.elapsed, &outcome.stages, &analysis)
            );
            for n in &run.notes {
                println!("  * {n}");
            }
        }
        // An aborted experiment writes its report even without stages: it is the error report.
        if settings.raw.reports.enabled && (!outcome.stages.is_empty() || outcome.aborted.is_some())
        {
            // File I/O on the blocking pool, off the async workers.
            let written = {
                let (dir, run, stages, analysis) = (
                    settings.raw.reports.dir.clone(),
                    run.clone(),
                    outcome.stages.clone(),
                    analysis.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    crate::report::write_reports(&dir, &run, &stages, &analysis)
                })
                .await
            };
            let written = match written {
                Ok(r) => r,
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            match written {
                Ok(p) => {
                    tracing::info!(html = %p.html.display(), json = %p.json.display(), markdown = %p.markdown.display(), "reports written");
                    if opts.print_summary {
                        println!("  reports: {}", p.dir.display());
                    }
                }
                Err(e) => {
                    tracing::error!(dir = %settings.raw.reports.dir.display(), error = %e, "cannot write reports")
                }
            }
        }
        let verdict = Verdict::evaluate(&settings, &outcome);
        finished.output_errors = opts.ci.write(&settings, &run, &outcome, &verdict);
        if opts.print_summary || opts.ci.print_verdict {
            // The last line of the summary, and the only one under --quiet.
            println!("{}", verdict.line(opts.ci.color));
        }
        finished.verdict = Some(verdict);
        *state.report.write().unwrap_or_else(|e| e.into_inner()) = ReportView {
            run,
            analysis: Some(analysis.clone()),
            stages: outcome.stages.clone(),
            analyze: None,
        };
        finished.last = Some((outcome, analysis));
        state.runs.fetch_add(1, Ordering::Relaxed);
        state.running.store(false, Ordering::Relaxed);
        if exiting || outcome_aborted(&finished) {
            break 'runs;
        }
        if let Some(new) = pending.take() {
            settings = new;
            configure(&metrics, &settings);
            continue 'runs;
        }
        match settings.raw.lifecycle.on_finish {
            OnFinish::Exit => {
                exit_grace(&state, settings.raw.lifecycle.exit_grace, &mut signals).await;
                break 'runs;
            }
            OnFinish::Repeat => continue 'runs,
            OnFinish::Idle => {
                tracing::info!(%addr, "plan finished; idling (SIGHUP reloads and runs again, SIGTERM exits)");
                loop {
                    match signals.recv().await {
                        Some(SignalEvent::Drain) | None => break 'runs,
                        Some(SignalEvent::Reload) => {
                            if let Some(new) = reload(&opts.config_path, &metrics, opts.shard).await
                            {
                                settings = new;
                                configure(&metrics, &settings);
                                continue 'runs;
                            }
                        }
                    }
                }
            }
        }
    }
    tracing::info!("stopped");
    Ok(finished)
}

fn outcome_aborted(f: &Finished) -> bool {
    f.aborted().is_some()
}

/// Before an `on_finish = "exit"`: serve `/metrics` until one more scrape has taken the final
/// values, at most `grace` (a signal ends the wait). The scrape is counted when its body is
/// built, so a short pause lets the response reach the scraper.
async fn exit_grace(
    state: &AppState,
    grace: std::time::Duration,
    signals: &mut UnboundedReceiver<SignalEvent>,
) {
    if grace.is_zero() {
        return;
    }
    let seen = state.scrapes.load(Ordering::Relaxed);
    tracing::info!(
        ?grace,
        "plan finished; waiting for a last scrape of /metrics before exiting"
    );
    let scraped = async {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
        while state.scrapes.load(Ordering::Relaxed) == seen {
            tick.tick().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    tokio::select! {
        _ = scraped => tracing::info!("final values scraped"),
        _ = tokio::time::sleep(grace) => tracing::warn!(?grace, "no scrape within lifecycle.exit_grace; exiting"),
        _ = signals.recv() => {}
    }
}

/// Start a drain: no new iterations now, in-flight ones cut after `deadline`.
fn drain(stop: &Stop, deadline: std::time::Duration) {
    if stop.drain.is_cancelled() {
        return;
    }
    stop.drain.cancel();
    let abort = stop.abort.clone();
    tokio::spawn(async move {
        tokio::time::sleep(deadline).await;
        if !abort.is_cancelled() {
            tracing::warn!("drain deadline passed: cutting in-flight requests");
            abort.cancel();
        }
    });
}
