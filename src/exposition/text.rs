//! The Prometheus text exposition format (0.0.4), appended straight to a byte buffer.
//!
//! Why our own writer: `prometheus::TextEncoder` works on `Registry::gather()`, which builds a
//! protobuf `MetricFamily` for every series (cloning each label pair), sorts them and only then
//! encodes. With 20 scenarios × 5 requests and 100 containers (~4,400 series) a profile of
//! `/metrics` showed most of the time in malloc, free and memmove. The families in
//! [`super::family`] keep their label sets pre-rendered, so a scrape is a walk over atomics
//! that appends bytes. The output is the same text the prometheus crate writes.

/// The content type of this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Something that appends its families to a `/metrics` body.
pub trait Expose: Send + Sync {
    fn expose(&self, out: &mut Vec<u8>);
}

/// A whole `/metrics` body: the directly written families, then `registry`'s (the process
/// collector and the model gauges), appended to `out`.
pub fn encode<E: std::ops::Deref<Target = dyn Expose>>(
    exposers: &[E],
    registry: &prometheus::Registry,
    out: &mut Vec<u8>,
) -> prometheus::Result<()> {
    for e in exposers {
        e.expose(out);
    }
    prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &registry.gather(), out)
}

/// `# HELP` and `# TYPE` lines of a family.
pub fn header(out: &mut Vec<u8>, name: &str, help: &str, kind: &str) {
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    for b in help.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b => out.push(b),
        }
    }
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.as_bytes());
    out.push(b'\n');
}

/// `a="x",b="y"` (no braces), with label values escaped, rendered once per series.
pub fn render_labels(names: &[&str], values: &[&str]) -> String {
    let mut s = String::new();
    for (i, (n, v)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(n);
        s.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s
}

/// A sample value.
#[derive(Clone, Copy)]
pub enum Value {
    Int(u64),
    Signed(i64),
    Float(f64),
}

/// One sample line: `name{labels,extra} value`. `labels` comes from [`render_labels`];
/// `extra` is an already rendered label such as `le="0.5"`.
pub fn sample(out: &mut Vec<u8>, name: &str, suffix: &str, labels: &str, extra: &str, v: Value) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
    if !labels.is_empty() || !extra.is_empty() {
        out.push(b'{');
        out.extend_from_slice(labels.as_bytes());
        if !labels.is_empty() && !extra.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(extra.as_bytes());
        out.push(b'}');
    }
    out.push(b' ');
    match v {
        Value::Int(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        Value::Signed(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        Value::Float(f) => write_f64(out, f),
    }
    out.push(b'\n');
}

/// A float as Prometheus reads it: `NaN`, `+Inf`, `-Inf`, integers without a fraction, the
/// rest as Rust's shortest round-trip form.
pub fn write_f64(out: &mut Vec<u8>, f: f64) {
    use std::io::Write;
    if f.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if f.fract() == 0.0 && f.abs() < 1e15 {
        out.extend_from_slice(itoa::Buffer::new().format(f as i64).as_bytes());
    } else {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{f}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(labels: &str, extra: &str, v: Value) -> String {
        let mut out = Vec::new();
        sample(&mut out, "m", "_x", labels, extra, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_read_the_way_prometheus_parses_them() {
        let f = |v: f64| {
            let mut o = Vec::new();
            write_f64(&mut o, v);
            String::from_utf8(o).unwrap()
        };
        assert_eq!(f(2.0), "2");
        assert_eq!(f(0.25), "0.25");
        assert_eq!(f(0.005), "0.005");
        assert_eq!(f(-3.0), "-3");
        assert_eq!(f(1e20), "100000000000000000000");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(line("", "", Value::Int(7)), "m_x 7\n");
        assert_eq!(line("", "", Value::Signed(-7)), "m_x -7\n");
    }

    #[test]
    fn labels_are_escaped_and_joined() {
        let l = render_labels(&["a", "b"], &["x\"y", "back\\slash\nnl"]);
        assert_eq!(l, r#"a="x\"y",b="back\\slash\nnl""#);
        assert_eq!(line(&l, "", Value::Int(1)), format!("m_x{{{l}}} 1\n"));
        assert_eq!(
            line("a=\"1\"", "le=\"0.5\"", Value::Float(0.5)),
            "m_x{a=\"1\",le=\"0.5\"} 0.5\n"
        );
        assert_eq!(
            line("", "le=\"+Inf\"", Value::Int(3)),
            "m_x{le=\"+Inf\"} 3\n"
        );
        let mut h = Vec::new();
        header(&mut h, "m", "two\nlines \\ here", "counter");
        assert_eq!(
            String::from_utf8(h).unwrap(),
            "# HELP m two\\nlines \\\\ here\n# TYPE m counter\n"
        );
    }
}
