//! Text formatting shared by every report format: numbers for tables and chart labels, and
//! escaping for HTML and SVG. The report's renderers (html, svg, tables) import from here, not
//! from each other; the number forms themselves are owned by [`crate::units`].

pub use crate::units::{format_bytes, trim_float};

/// A chart label: [`trim_float`] of the value rounded to three decimals.
pub fn trim_rounded(v: f64) -> String {
    trim_float((v * 1000.0).round() / 1000.0)
}

/// Escape text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(trim_float(1.5), "1.5");
        assert_eq!(trim_float(2.0), "2");
        assert_eq!(trim_rounded(0.12345), "0.123");
        assert_eq!(trim_rounded(1e-4), "0");
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
