//! Property-based fuzzing (proptest) of the three parsers that take outside input: config
//! loading (text a user writes), response parsing (bytes a target sends) and multipart
//! encoding (values and files a user supplies). The case counts are bounded so the targets
//! run in the normal `cargo test` in seconds; `PROPTEST_CASES=100000 cargo test --test fuzz`
//! runs them longer. Failing inputs proptest finds are kept in `proptest-regressions/` and
//! replayed first on every run.

use std::time::Duration;

use loadspec::load::http1::{Conns, RawRequest, Want};
use loadspec::load::FailureReason;
use proptest::prelude::*;

/// `cases` cases (or `PROPTEST_CASES`), failures kept in `proptest-regressions/fuzz.txt` and
/// replayed first on later runs.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("proptest-regressions/fuzz.txt"),
        )),
        ..ProptestConfig::default()
    }
}

const GOOD: &str = r#"[target]
base_url = "http://127.0.0.1:9"
timeout = "5s"
[[scenarios]]
name = "s"
executor = "ramping-vus"
stages = [{ duration = "1s", target = 2 }]
[[scenarios.requests]]
name = "r"
path = "/x"
headers = { X-A = "b" }
"#;

/// Pieces that have broken config loaders: huge and negative numbers, odd durations, deep
/// nesting, control characters, unclosed strings and tables.
const TOKENS: &[&str] = &[
    "9223372036854775808",
    "-1",
    "1e999",
    "nan",
    "\"500000000000y\"",
    "\"18446744073709551615s\"",
    "\"0s\"",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    "{a={a={a={a={a={a={a={a={a={a={a={a={a={a={a={a={a={a={a={a={a={a={a={a={a={a=1}}}}}}}}}}}}}}}}}}}}}}}}}}",
    "\"\\u0000\"",
    "\"a\\r\\nb\"",
    "\"${NOPE}\"",
    "\"http://u:p@h/a b\"",
    "\n[limits]\nmax_vus = 0\n",
    "\n[server]\nmax_connections = 0\n",
    "\"",
    "[",
    "=",
    "\n",
    "\u{feff}",
];

fn mutated() -> impl Strategy<Value = String> {
    prop::collection::vec((0.0f64..1.0, 0..TOKENS.len(), 0usize..8), 0..6).prop_map(|muts| {
        let mut s = GOOD.to_string();
        for (at, tok, cut) in muts {
            let mut i = ((s.len() as f64) * at) as usize;
            while !s.is_char_boundary(i) {
                i -= 1;
            }
            let mut end = (i + cut).min(s.len());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.replace_range(i..end, TOKENS[tok]);
        }
        s
    })
}

proptest! {
    #![proptest_config(config(512))]

    /// Loading never panics, and every error names a field or a position.
    #[test]
    fn config_loading_never_panics(text in prop_oneof![mutated(), ".{0,200}"]) {
        let dir = tempfile::tempdir().unwrap();
        match loadspec::config::parse_raw(&text, "fuzz.toml") {
            Err(e) => prop_assert!(!e.to_string().is_empty()),
            Ok(raw) => {
                if let Err(e) = loadspec::config::validate(raw, dir.path()) {
                    let e = e.to_string();
                    prop_assert!(e.contains(": "), "{}", e);
                }
            }
        }
    }
}

/// Send one GET to a server that answers `bytes` and closes; the result within 5 s.
fn exchange(rt: &tokio::runtime::Runtime, bytes: Vec<u8>) -> Result<(u16, u64), FailureReason> {
    rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 1024];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b).await {
                    Ok(n) if n > 0 => got.extend_from_slice(&b[..n]),
                    _ => return,
                }
            }
            let _ = s.write_all(&bytes).await;
        });
        let mut c = Conns::default();
        let head = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
        let target = loadspec::load::http1::Target::parse(&format!("http://{addr}/")).unwrap();
        let req = RawRequest {
            target: &target,
            head,
            body: &[],
            file: None,
            head_only: false,
        };
        let want = Want {
            body: true,
            headers: true,
        };
        let r = c.send_raw(req, want, Duration::from_secs(5)).await;
        let _ = server.await;
        r.map(|r| (r.status, r.received))
    })
}

/// A well-formed response: status, `n` headers, and a body framed by length or chunks.
fn response() -> impl Strategy<Value = (u16, Vec<u8>, usize)> {
    (
        200u16..600,
        0usize..300,
        prop::collection::vec(any::<u8>(), 0..2000),
        any::<bool>(),
    )
        .prop_map(|(status, n, body, chunked)| {
            let mut r = format!("HTTP/1.1 {status} X\r\n").into_bytes();
            for i in 0..n {
                r.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
            }
            let no_body = status == 204 || status == 304;
            if chunked && !no_body {
                r.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for c in body.chunks(333) {
                    r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    r.extend_from_slice(c);
                    r.extend_from_slice(b"\r\n");
                }
                r.extend_from_slice(b"0\r\n\r\n");
            } else {
                let body = if no_body { &[][..] } else { &body[..] };
                r.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                r.extend_from_slice(body);
            }
            (status, r, n)
        })
}

proptest! {
    #![proptest_config(config(128))]

    /// Any bytes from a server that then closes: a response or a failure reason, never a panic
    /// and never a timeout (the close ends every framing).
    #[test]
    fn response_parsing_never_panics(
        prefix in prop_oneof![
            Just(b"HTTP/1.1 200 OK\r\n".to_vec()),
            Just(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
            Just(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n".to_vec()),
            Just(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()),
            Just(Vec::new()),
        ],
        tail in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut bytes = prefix;
        bytes.extend_from_slice(&tail);
        match exchange(&rt, bytes) {
            Ok((status, _)) => prop_assert!((100..1000).contains(&status)),
            Err(r) => prop_assert!(r != FailureReason::Timeout, "timed out"),
        }
    }

    /// A well-formed response is read whole: its status, and every byte counted. Up to 256
    /// header lines are a response; more are `header_too_large`.
    #[test]
    fn well_formed_responses_are_read_exactly((status, bytes, lines) in response()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let len = bytes.len() as u64;
        let r = exchange(&rt, bytes);
        // The X- lines plus Content-Length or Transfer-Encoding.
        if lines + 1 > 256 {
            prop_assert_eq!(r, Err(FailureReason::HeaderTooLarge));
        } else {
            prop_assert_eq!(r, Ok((status, len)));
        }
    }
}

/// A TOML string literal for `s`.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Text that may contain the encoder's own boundary, line breaks and dashes.
fn nasty_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^$]{0,40}",
        "[^$]{0,10}".prop_map(|s| format!("{s}\r\n------loadspec-boundary-7d9f1c2a5e3b--\r\n{s}")),
        Just("\r\n--".to_string()),
    ]
}

fn nasty_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(any::<u8>(), 0..50).prop_map(|mut v| {
            v.extend_from_slice(b"\r\n------loadspec-boundary-7d9f1c2a5e3b\r\n");
            v
        }),
    ]
}

proptest! {
    #![proptest_config(config(128))]

    /// The multipart body decodes (with an independent parser, multer) to exactly the fields
    /// and files that went in, whatever they contain.
    #[test]
    fn multipart_encoding_round_trips(
        fields in prop::collection::vec(("[a-zA-Z0-9_-]{1,8}", nasty_text()), 0..4),
        files in prop::collection::vec(("[a-zA-Z0-9_-]{1,8}", nasty_bytes()), 0..3),
    ) {
        multipart_case(fields, files)?;
    }
}

/// Encode `fields` and `files` through the config, decode with multer, compare.
fn multipart_case(
    fields: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
) -> Result<(), TestCaseError> {
    if fields.is_empty() && files.is_empty() {
        return Ok(());
    }
    let dir = tempfile::tempdir().unwrap();
    let mut toml = GOOD.replace("path = \"/x\"", "path = \"/x\"\nmethod = \"POST\"");
    toml.push_str("[scenarios.requests.body]\ntype = \"multipart\"\nfields = [");
    for (n, v) in &fields {
        toml.push_str(&format!(
            "{{ name = {}, value = {} }},",
            toml_str(n),
            toml_str(v)
        ));
    }
    toml.push_str("]\nfiles = [");
    for (i, (n, data)) in files.iter().enumerate() {
        let f = dir.path().join(format!("f{i}.bin"));
        std::fs::write(&f, data).unwrap();
        toml.push_str(&format!(
            "{{ name = {}, path = \"f{i}.bin\" }},",
            toml_str(n)
        ));
    }
    toml.push_str("]\n");
    let raw = loadspec::config::parse_raw(&toml, "fuzz.toml").unwrap();
    let settings = loadspec::config::validate(raw, dir.path()).unwrap();
    let body = &settings.scenarios[0].steps[0].body;
    let ct = body.content_type().unwrap().to_str().unwrap().to_string();
    let bytes: Vec<u8> = body.static_chunks().unwrap().concat();
    let boundary = multer::parse_boundary(&ct).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let parts = rt.block_on(async move {
        let stream =
            futures::stream::once(
                async move { Ok::<_, std::io::Error>(bytes::Bytes::from(bytes)) },
            );
        let mut m = multer::Multipart::new(stream, boundary);
        let mut out = Vec::new();
        while let Some(f) = m.next_field().await.map_err(|e| e.to_string())? {
            let name = f.name().unwrap_or_default().to_string();
            let data = f.bytes().await.map_err(|e| e.to_string())?;
            out.push((name, data.to_vec()));
        }
        Ok::<_, String>(out)
    });
    let parts = parts.map_err(TestCaseError::fail)?;
    let want: Vec<(String, Vec<u8>)> = fields
        .iter()
        .map(|(n, v)| (n.clone(), v.as_bytes().to_vec()))
        .chain(files.iter().cloned())
        .collect();
    prop_assert_eq!(parts, want);
    Ok(())
}

// Regressions the targets above found, kept as plain tests.

/// A file that contains the multipart boundary used to split the body there (the boundary
/// was fixed); it is now chosen so that no part contains it.
#[test]
fn a_file_containing_the_boundary_still_round_trips() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 1,
        ..config(1)
    });
    let files = vec![(
        "0".to_string(),
        b"\r\n------loadspec-boundary-7d9f1c2a5e3b\r\n".to_vec(),
    )];
    runner
        .run(
            &(Just(Vec::<(String, String)>::new()), Just(files)),
            |(fields, files)| multipart_case(fields, files),
        )
        .unwrap();
}

/// A chunked response's chunk-size lines are bytes received too (`data_received` counted
/// only the decoded body).
#[test]
fn chunk_framing_counts_as_received() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec();
    let len = r.len() as u64;
    assert_eq!(exchange(&rt, r), Ok((200, len)));
}
