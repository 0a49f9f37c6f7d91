//! The layer order written in `src/lib.rs` (`# Layers`) holds: every `crate::` and `super::`
//! path in `src/` names a top-level module of a strictly lower layer than the module it is
//! written in (or the module itself). That rules out upward imports, imports between modules
//! of one layer, and so every cycle between top-level modules. The source is read as text, so
//! the check sees `use` lines, paths in expressions and `#[serde(with = "crate::…")]` strings
//! alike; comments are left out.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

mod support_text;
use support_text::find_unquoted;

/// One path that crosses between top-level modules the wrong way.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    from: String,
    to: String,
}

/// Layer index (0 = lowest) of each top-level module, from the `# Layers` list of lib.rs:
/// numbered lines such as ``//! 3. [`load`], [`containers`]``.
fn layers(lib_rs: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut inside = false;
    let mut layer = 0;
    for line in lib_rs.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim();
        if doc.starts_with('#') {
            inside = doc == "# Layers";
            continue;
        }
        let numbered = doc
            .split_once(". ")
            .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        let (true, Some((_, names))) = (inside, numbered) else {
            continue;
        };
        for part in names.split("[`").skip(1) {
            let name = part.split("`]").next().unwrap_or_default();
            assert!(
                out.insert(name.to_string(), layer).is_none(),
                "{name} is listed in two layers"
            );
        }
        layer += 1;
    }
    out
}

/// The `pub mod x;` lines of lib.rs.
fn declared_modules(lib_rs: &str) -> Vec<String> {
    lib_rs
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .map(str::to_string)
        .collect()
}

/// The code of a line without its `//` comment (a `//` inside a string literal stays).
fn strip_comment(line: &str) -> &str {
    &line[..find_unquoted(line, "//").unwrap_or(line.len())]
}

fn ident_at(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// The first segments named by `crate::x`, `crate::{x, y::z}` and by `super::` chains that
/// climb out of `module` (its path from the crate root, inline modules included).
fn targets(code: &str, module: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (pos, _) in code.match_indices("crate::") {
        let before = code[..pos].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[pos + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start => {
                        item_start = false;
                        if let Some(id) = ident_at(&group[i..]) {
                            out.push(id.to_string());
                        }
                    }
                    _ => {}
                }
            }
        } else if let Some(id) = ident_at(rest) {
            out.push(id.to_string());
        }
    }
    let mut i = 0;
    while let Some(found) = code[i..].find("super::") {
        let pos = i + found;
        let before = code[..pos].chars().next_back();
        let mut rest = &code[pos..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        i = code.len() - rest.len();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if ups == module.len() {
            if let Some(id) = ident_at(rest) {
                out.push(id.to_string());
            }
        }
    }
    out
}

/// Every violation in one file. `file_module` is the file's module path (`["load", "vu"]`).
fn check_file(
    name: &str,
    text: &str,
    file_module: &[String],
    layer: &BTreeMap<String, usize>,
) -> Vec<Violation> {
    let from = &file_module[0];
    let Some(&own) = layer.get(from) else {
        return vec![Violation {
            file: name.to_string(),
            line: 0,
            from: from.clone(),
            to: "(module missing from the # Layers list in src/lib.rs)".into(),
        }];
    };
    let mut out = Vec::new();
    let mut module = file_module.to_vec();
    // Inline `mod x {` blocks: the brace depth each opened at.
    let mut inline: Vec<i64> = Vec::new();
    let mut depth: i64 = 0;
    for (n, line) in text.lines().enumerate() {
        let code = strip_comment(line);
        let t = code.trim_start();
        let t = t.strip_prefix("pub ").unwrap_or(t);
        if let Some(m) = t.strip_prefix("mod ").and_then(ident_at) {
            if code.contains('{') {
                inline.push(depth);
                module.push(m.to_string());
            }
        }
        for to in targets(code, &module) {
            // A name missing from the list (a new module) is flagged too.
            if to != *from && layer.get(&to).is_none_or(|&l| l >= own) {
                out.push(Violation {
                    file: name.to_string(),
                    line: n + 1,
                    from: from.clone(),
                    to,
                });
            }
        }
        for c in code.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if inline.last() == Some(&depth) {
                        inline.pop();
                        module.pop();
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("read src/") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/load/vu.rs` → `["load", "vu"]`, `src/load/mod.rs` → `["load"]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts
}

#[test]
fn every_crate_path_points_down_the_documented_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = fs::read_to_string(root.join("src/lib.rs")).expect("src/lib.rs");
    let layer = layers(&lib);
    assert!(
        layer.len() >= 10,
        "the # Layers list in src/lib.rs was not found or is nearly empty: {layer:?}"
    );
    for m in declared_modules(&lib) {
        assert!(
            layer.contains_key(&m),
            "module {m} is declared in src/lib.rs but missing from its # Layers list"
        );
    }
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut bad = Vec::new();
    let mut checked = 0;
    for f in &files {
        let rel = f.strip_prefix(root.join("src")).expect("under src/");
        let module = module_path(rel);
        if matches!(module.as_slice(), [m] if m == "lib" || m == "main") {
            continue;
        }
        let text = fs::read_to_string(f).expect("read source");
        bad.extend(check_file(
            &format!("src/{}", rel.display()),
            &text,
            &module,
            &layer,
        ));
        checked += 1;
    }
    assert!(checked > 50, "only {checked} files found under src/");
    let report: Vec<String> = bad
        .iter()
        .map(|v| {
            format!(
                "{}:{}: {} (layer {:?}) uses {} (layer {:?})",
                v.file,
                v.line,
                v.from,
                layer.get(&v.from).map(|l| l + 1),
                v.to,
                layer.get(&v.to).map(|l| l + 1)
            )
        })
        .collect();
    assert!(
        report.is_empty(),
        "imports against the layer order of src/lib.rs:\n{}",
        report.join("\n")
    );
}

/// The checker itself: it must flag an upward import, a same-layer import, an import of a
/// module missing from the list, a grouped `crate::{…}` and a `super::` that climbs to the
/// root, and it must not flag comments, downward paths or `super::` inside the module.
#[test]
fn the_checker_flags_what_it_should() {
    let lib = "//! # Layout\n//! 1. [`nope`]\n//! # Layers\n//! text\n//! 1. [`low`], [`leaf`]\n\
               //! 2. [`mid`]\n//! 3. [`high`]\n\npub mod high;\npub mod leaf;\npub mod low;\npub mod mid;\n";
    let layer = layers(lib);
    assert_eq!(
        layer,
        BTreeMap::from([
            ("low".to_string(), 0),
            ("leaf".to_string(), 0),
            ("mid".to_string(), 1),
            ("high".to_string(), 2),
        ])
    );
    assert_eq!(declared_modules(lib), ["high", "leaf", "low", "mid"]);
    let src = "use crate::low::X; // crate::high is only mentioned\n\
               use crate::high::Y;\n\
               fn f() { crate::leaf::g(); }\n\
               use crate::{low::A, high::{B, C}};\n\
               #[serde(with = \"crate::high::ser\")]\n\
               const S: &str = \"http://x\"; use crate::mid::Z;\n\
               use super::sub::W;\n\
               use super::super::high::Q;\n\
               mod tests { use super::super::low::T; use super::*; }\n\
               use crate::unknown::U;\n";
    let v = check_file("src/mid/a.rs", src, &["mid".into(), "a".into()], &layer);
    let got: Vec<(usize, &str)> = v.iter().map(|v| (v.line, v.to.as_str())).collect();
    assert_eq!(
        got,
        [
            (2, "high"),
            (4, "high"),
            (5, "high"),
            (8, "high"),
            (10, "unknown")
        ]
    );
    let v = check_file(
        "src/low.rs",
        "use crate::leaf::X;\n",
        &["low".into()],
        &layer,
    );
    assert_eq!(v.len(), 1, "same layer must be flagged: {v:?}");
    let v = check_file("src/other.rs", "", &["other".into()], &layer);
    assert_eq!(v.len(), 1, "a module missing from the list must be flagged");
    assert_eq!(strip_comment("let c = '\"'; // crate::x"), "let c = '\"'; ");
}
