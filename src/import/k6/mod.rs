//! `loadspec import k6 SCRIPT.js [-o plan.toml] [--strict]`: read a k6 script with a real
//! JavaScript parser (oxc) and write a loadspec plan that sends the same requests.
//!
//! The script is never run. [`flow`] walks it and evaluates the part that describes requests;
//! [`options`] maps `options`; [`requests`] builds steps; [`checks`] turns status checks into
//! `expect`; [`emit`] writes the TOML. Whatever falls outside that subset is a [`Finding`] with
//! its `line:col`, a one-line reason and the requests it affects: listed in the output's
//! header, on stderr, and an error (exit 2) with `--strict`.
//!
//! Limits: a script of at most [`MAX_SCRIPT_BYTES`]; functions and expressions nest at most
//! 64 deep (deeper branches are reported, not imported).

pub mod checks;
pub mod emit;
pub mod flow;
pub mod options;
pub mod requests;
pub mod value;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use oxc_allocator::Allocator;
use oxc_parser::Parser;
use oxc_span::SourceType;

use crate::config::raw::{DataConfig, DataMode, ExecutorKind};
use value::Val;

/// The largest script read: k6 scripts are a few kB; this bounds memory on a wrong file.
pub const MAX_SCRIPT_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct K6Args {
    /// The k6 script (JavaScript module).
    pub script: PathBuf,
    /// Where to write the plan; standard output when absent. Files the plan names (uploads,
    /// CSV data) are written relative to this file's directory.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Fail (exit 2, nothing written) if anything in the script is left out.
    #[arg(long)]
    pub strict: bool,
}

/// Something in the script the plan does not reproduce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub line: usize,
    pub col: usize,
    pub reason: String,
    /// Which requests (or which part of the plan) this changes.
    pub affects: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} (affects: {})",
            self.line, self.col, self.reason, self.affects
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the script {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}:{line}:{col}: syntax error: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{path}: {} construct(s) outside the supported subset (--strict)", .findings.len())]
    Strict {
        path: PathBuf,
        findings: Vec<Finding>,
    },
    #[error("{path}: no scenario sends a request, nothing to write")]
    Empty {
        path: PathBuf,
        findings: Vec<Finding>,
    },
    #[error("internal error: the plan written does not parse as a loadspec config: {0}")]
    Internal(String),
}

/// The plan's text and what it left out.
#[derive(Debug)]
pub struct Imported {
    pub toml: String,
    pub findings: Vec<Finding>,
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

/// Import `script`; relative files in the plan are written relative to `out_dir`.
pub fn import(script: &Path, out_dir: &Path, strict: bool) -> Result<Imported, ImportError> {
    let read_err = |reason: String| ImportError::Read {
        path: script.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(script).map_err(|e| read_err(e.to_string()))?;
    if meta.len() > MAX_SCRIPT_BYTES {
        return Err(read_err(format!(
            "{} bytes is larger than the limit of {MAX_SCRIPT_BYTES}",
            meta.len()
        )));
    }
    let src = std::fs::read_to_string(script).map_err(|e| read_err(e.to_string()))?;
    let alloc = Allocator::default();
    let parsed = Parser::new(&alloc, &src, SourceType::mjs()).parse();
    if let Some(e) = parsed.diagnostics.errors().next() {
        let offset = e.labels.first().map_or(0, |l| l.offset() as usize);
        let (line, col) = line_col(&src, offset);
        return Err(ImportError::Syntax {
            path: script.to_path_buf(),
            line,
            col,
            message: e.message.to_string(),
        });
    }
    let program = &parsed.program;
    let mut w = flow::Walker::new(&src, script);
    w.module(program);
    let opts = options::options(&mut w, program);
    for (name, why) in [
        (
            "teardown",
            "teardown() is not imported: loadspec has no once-per-test teardown",
        ),
        (
            "handleSummary",
            "handleSummary() is not imported: loadspec writes its own reports",
        ),
    ] {
        if let Some(f) = w.functions.get(name).copied() {
            w.report(f.span, why, format!("the requests in {name}()"));
        }
    }
    let setup = w.functions.get("setup").copied();
    let mut scenarios = Vec::new();
    for plan in opts.scenarios {
        w.reset();
        let mut cfg = plan.cfg;
        let data = match setup {
            Some(f) => {
                w.setup_phase = true;
                let v = w.call_fn(f, Vec::new(), f.span);
                w.setup_phase = false;
                v
            }
            None => Val::Null,
        };
        let Some(exec) = w.functions.get(&plan.exec).copied() else {
            w.report(
                plan.at,
                format!(
                    "scenario {}: no exported function {:?}",
                    cfg.name, plan.exec
                ),
                format!("scenario {} left out", cfg.name),
            );
            continue;
        };
        w.call_fn(exec, vec![data], exec.span);
        if !w.setup_steps.is_empty() {
            w.note("setup() runs once per VU in loadspec (k6 runs it once per test)");
        }
        cfg.setup = w.setup_steps.drain(..).map(|s| s.req).collect();
        cfg.requests = w.steps.drain(..).map(|s| s.req).collect();
        let think: f64 = w.sleeps.iter().sum();
        let open_model = matches!(
            cfg.executor,
            ExecutorKind::ConstantArrivalRate | ExecutorKind::RampingArrivalRate
        );
        if think > 0.0 && open_model {
            w.note(format!(
                "scenario {}: sleep() only holds a k6 VU longer in an arrival-rate scenario; loadspec starts iterations on schedule and writes no think time",
                cfg.name
            ));
        } else if think > 0.0 {
            if w.sleeps.len() > 1 {
                w.note(format!(
                    "scenario {}: the sleeps of an iteration add up to one think time of {think}s after it",
                    cfg.name
                ));
            }
            cfg.think_time = Some(std::time::Duration::from_secs_f64(think));
        }
        cfg.data = w.data.take().map(|d| DataConfig {
            file: d.path,
            mode: if d.per_vu {
                DataMode::PerVu
            } else {
                DataMode::RoundRobin
            },
        });
        if cfg.requests.is_empty() {
            w.report(
                exec.span,
                format!(
                    "scenario {}: its function sends no request that could be imported",
                    cfg.name
                ),
                format!("scenario {} left out", cfg.name),
            );
            continue;
        }
        scenarios.push(cfg);
    }
    let findings = std::mem::take(&mut w.findings);
    if scenarios.is_empty() {
        return Err(ImportError::Empty {
            path: script.to_path_buf(),
            findings,
        });
    }
    if strict && !findings.is_empty() {
        return Err(ImportError::Strict {
            path: script.to_path_buf(),
            findings,
        });
    }
    let toml = emit::emit(emit::Plan {
        script,
        out_dir,
        scenarios,
        sla: opts.sla,
        findings: &findings,
        notes: &w.notes,
        comments: &w.comments,
    })
    .map_err(|e| ImportError::Internal(e.to_string()))?;
    crate::config::parse_raw(&toml, "imported plan")
        .map_err(|e| ImportError::Internal(e.to_string()))?;
    Ok(Imported { toml, findings })
}

pub fn main(a: K6Args) -> ExitCode {
    let out_dir = match &a.output {
        Some(o) => o
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        None => PathBuf::from("."),
    };
    match import(&a.script, &out_dir, a.strict) {
        Ok(imp) => {
            if let Some(out) = &a.output {
                if let Err(e) = std::fs::write(out, &imp.toml) {
                    eprintln!("error: cannot write {}: {e}", out.display());
                    return ExitCode::FAILURE;
                }
            } else {
                print!("{}", imp.toml);
            }
            for f in &imp.findings {
                eprintln!("{}:{f}", a.script.display());
            }
            // The plan is right for the script; whether loadspec accepts it here also depends on
            // the environment (unset variables) and on what this build supports (https).
            let check = match &a.output {
                Some(o) => crate::config::load(o).map(drop),
                None => crate::config::parse_raw(&imp.toml, "the plan")
                    .and_then(|r| crate::config::validate(r, &out_dir))
                    .map(drop),
            };
            if let Err(e) = check {
                eprintln!(
                    "note: `loadspec validate` rejects the plan in this environment; set the variables it names or edit the plan:\n{e}"
                );
            }
            let dest = a
                .output
                .as_ref()
                .map_or("standard output".to_string(), |o| o.display().to_string());
            eprintln!(
                "{}: imported to {dest}; {} construct(s) left out{}",
                a.script.display(),
                imp.findings.len(),
                if imp.findings.is_empty() {
                    ""
                } else {
                    " (listed above and in the plan's header)"
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let ImportError::Strict { findings, .. } | ImportError::Empty { findings, .. } = &e {
                for f in findings {
                    eprintln!("{}:{f}", a.script.display());
                }
            }
            eprintln!("error: {e}");
            match e {
                ImportError::Internal(_) => ExitCode::FAILURE,
                _ => ExitCode::from(2),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import_text(js: &str, strict: bool) -> Result<Imported, ImportError> {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s.js");
        std::fs::write(&script, js).unwrap();
        import(&script, dir.path(), strict)
    }

    #[test]
    fn line_and_column_count_characters() {
        let src = "ab\n한글x";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 3), (2, 1));
        assert_eq!(line_col(src, 3 + "한글".len()), (2, 3));
        assert_eq!(line_col(src, 999), (2, 4));
    }

    #[test]
    fn odd_scripts_are_errors_or_findings_never_panics() {
        let deep = format!(
            "export default function () {{ http.get({}'http://h/'{}); }}",
            "(".repeat(500),
            ")".repeat(500)
        );
        for js in [
            "",
            "export default 5;",
            "export const options = 5; export default function () {}",
            "export const options = { scenarios: 3 }; export default function () {}",
            "export const options = { scenarios: { a: { executor: 'externally-controlled' } } };",
            "import http from 'k6/http'; export default function () { http.get(); }",
            "import http from 'k6/http'; export default function () { http.post('http://h/', open()); }",
            "import http from 'k6/http'; export default () => http.batch(5);",
            "import http from 'k6/http'; function f() { return f(); } export default function () { http.get(f()); }",
            "import http from 'k6/http'; export default function (d) { http.get('http://h/', { headers: { Authorization: d.x ? 'Bearer s3cret' : '' } }); }",
            deep.as_str(),
        ] {
            match import_text(&format!("import http from 'k6/http';\n{js}"), false) {
                Ok(imp) => assert!(imp.toml.contains("[[scenarios]]")),
                Err(ImportError::Empty { .. } | ImportError::Syntax { .. }) => {}
                Err(e) => panic!("{js}: {e}"),
            }
        }
    }

    #[test]
    fn a_secret_in_an_unimported_header_is_not_quoted() {
        let js = "import http from 'k6/http';\nexport default function (d) {\n  http.get('http://h/', { headers: { Authorization: d.x ? 'Bearer s3cret' : 'n' } });\n}";
        let imp = import_text(js, false).unwrap();
        assert_eq!(imp.findings.len(), 1, "{:?}", imp.findings);
        assert!(!imp.toml.contains("s3cret"));
        assert!(!imp.findings[0].to_string().contains("s3cret"));
        assert!(matches!(
            import_text(js, true),
            Err(ImportError::Strict { .. })
        ));
    }

    #[test]
    fn assigned_responses_env_defaults_and_open_model_sleeps() {
        let js = r#"import http from 'k6/http';
import { sleep } from 'k6';
const BASE = __ENV.BASE_URL || 'http://127.0.0.1:9000';
export const options = {
  scenarios: { o: { executor: 'constant-arrival-rate', rate: 5, duration: '1s', preAllocatedVUs: 2 } },
};
export default function () {
  let res;
  res = http.post(`${BASE}/api/v1/login`, JSON.stringify({ username: 'a', password: 'b' }));
  http.get(`${BASE}/api/v1/posts`, { headers: { Authorization: `Bearer ${res.json('token')}` } });
  sleep(1);
}
"#;
        let imp = import_text(js, true).expect("nothing is left out");
        let raw = crate::config::parse_raw(&imp.toml, "t").unwrap();
        assert_eq!(
            raw.target.base_url.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        let sc = &raw.scenarios[0];
        assert_eq!(sc.requests[0].captures[0].json.as_deref(), Some("/token"));
        assert_eq!(sc.requests[1].bearer_token.as_deref(), Some("${token}"));
        assert_eq!(sc.think_time, None);
        assert!(imp.toml.contains("writes no think time"), "{}", imp.toml);
        assert!(imp.toml.contains("uses the default"), "{}", imp.toml);
    }

    #[test]
    fn an_assignment_that_is_not_imported_is_reported_with_its_requests() {
        let js = "import http from 'k6/http';\nexport default function () {\n  http.get('http://h/a');\n  globalThis.r = http.get('http://h/b');\n}\n";
        let imp = import_text(js, false).unwrap();
        assert_eq!(imp.findings.len(), 1, "{:?}", imp.findings);
        assert_eq!((imp.findings[0].line, imp.findings[0].col), (4, 3));
        assert!(
            imp.findings[0].affects.contains("http.get at 4:18"),
            "{:?}",
            imp.findings
        );
    }

    #[test]
    fn a_scenario_whose_function_is_missing_is_reported_where_it_is_defined() {
        let js = "import http from 'k6/http';\nexport const options = {\n  scenarios: {\n    a: { executor: 'constant-vus', vus: 1, duration: '1s', exec: 'nope' },\n  },\n};\nexport default function () { http.get('http://h/'); }\n";
        match import_text(js, false) {
            Err(ImportError::Empty { findings, .. }) => {
                assert_eq!((findings[0].line, findings[0].col), (4, 5), "{findings:?}");
                assert!(findings[0].reason.contains("no exported function \"nope\""));
            }
            other => panic!("{other:?}"),
        }
    }
}
