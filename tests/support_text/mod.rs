//! Text scanning shared by the tests that read source or exposition text line by line.

/// Byte offset of the first `pat` in `line` that is not inside a double-quoted string. Inside a
/// string a backslash escapes the next byte; outside, a char literal such as `'"'` does not
/// open a string.
pub fn find_unquoted(line: &str, pat: &str) -> Option<usize> {
    let b = line.as_bytes();
    let mut in_str = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'\'' if !in_str && b.get(i + 2) == Some(&b'\'') => i += 2,
            _ if !in_str && b[i..].starts_with(pat.as_bytes()) => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}
