//! The S3 upload, `POST /api/v1/ai-images`: parses multipart/form-data with `multer` (the same
//! streaming parser a real Rust backend would use) and records what arrived — field order, the
//! prompt, the file's name, type, length and FNV-1a hash — without keeping the image.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::Request;
use multer::{Constraints, Multipart, SizeLimit};

use super::state::MultipartSeen;

/// The text field with the prompt.
pub const PROMPT_FIELD: &str = "prompt";
/// The file field with the image (the seed's name).
pub const FILE_FIELD: &str = "beforeImagePath";
/// Largest prompt accepted; it is text, so anything bigger is a client bug.
const MAX_PROMPT: u64 = 64 * 1024;
/// Prompt bytes kept for the stats.
const KEEP_PROMPT: usize = 4096;
/// Field names kept for the stats.
const KEEP_FIELDS: usize = 64;

/// A parsed upload.
#[derive(Debug, Clone)]
pub struct Upload {
    pub seen: MultipartSeen,
    /// Characters in the whole prompt (the stats may keep only its start).
    pub prompt_chars: Option<usize>,
    /// Whether the file field was present.
    pub has_file: bool,
}

/// Why an upload was rejected: the status to answer and a message naming the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub message: String,
}

impl Reject {
    fn bad(message: impl Into<String>) -> Self {
        Reject {
            status: 400,
            message: message.into(),
        }
    }
}

impl From<multer::Error> for Reject {
    fn from(e: multer::Error) -> Self {
        let status = match e {
            multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
                413
            }
            _ => 400,
        };
        Reject {
            status,
            message: format!("malformed multipart body: {e}"),
        }
    }
}

/// FNV-1a 64 offset basis, the hash of no bytes.
pub const FNV64_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Continues an FNV-1a 64 hash over `bytes`, so a file can be hashed chunk by chunk.
pub fn fnv1a64_update(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Reads the whole multipart body (at most `max_body` bytes) and returns what it held. A body
/// that is not multipart, is cut short or is too large is rejected; missing fields are not —
/// the caller decides, after recording what did arrive.
pub async fn parse(req: Request<Incoming>, max_body: u64) -> Result<Upload, Reject> {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Reject::bad("missing Content-Type; expected multipart/form-data"))?;
    let boundary =
        multer::parse_boundary(ct).map_err(|e| Reject::bad(format!("Content-Type `{ct}`: {e}")))?;
    let limits = SizeLimit::new()
        .whole_stream(max_body)
        .for_field(PROMPT_FIELD, MAX_PROMPT);
    let mut mp = Multipart::with_constraints(
        req.into_body().into_data_stream(),
        boundary,
        Constraints::new().size_limit(limits),
    );

    let mut up = Upload {
        seen: MultipartSeen::default(),
        prompt_chars: None,
        has_file: false,
    };
    let mut hash = FNV64_OFFSET;
    while let Some(mut field) = mp.next_field().await? {
        let name = field.name().unwrap_or("").to_string();
        if name == PROMPT_FIELD && up.prompt_chars.is_none() {
            let bytes = field.bytes().await?;
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| Reject::bad(format!("field `{PROMPT_FIELD}` is not valid UTF-8")))?;
            up.prompt_chars = Some(text.chars().count());
            up.seen.prompt = Some(truncate(text, KEEP_PROMPT));
        } else if name == FILE_FIELD && !up.has_file {
            up.has_file = true;
            up.seen.filename = field.file_name().map(str::to_string);
            up.seen.content_type = field.content_type().map(|m| m.to_string());
            while let Some(chunk) = field.chunk().await? {
                up.seen.file_bytes += chunk.len() as u64;
                hash = fnv1a64_update(hash, &chunk);
            }
        } else {
            // Other and repeated fields are read and dropped; only their names are kept.
            while field.chunk().await?.is_some() {}
        }
        if up.seen.field_names.len() < KEEP_FIELDS {
            up.seen.field_names.push(name);
        }
    }
    up.seen.file_fnv64 = format!("{hash:016x}");
    Ok(up)
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_vectors() {
        assert_eq!(fnv1a64_update(FNV64_OFFSET, b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64_update(FNV64_OFFSET, b"a"), 0xaf63dc4c8601ec8c);
        let whole = fnv1a64_update(FNV64_OFFSET, b"foobar");
        assert_eq!(whole, 0x85944171f73967e8);
        assert_eq!(
            fnv1a64_update(fnv1a64_update(FNV64_OFFSET, b"foo"), b"bar"),
            whole
        );
    }

    #[test]
    fn truncates_on_char_boundary() {
        let s = "화이톤".to_string(); // 3 bytes per character
        assert_eq!(truncate(s.clone(), 4), "화");
        assert_eq!(truncate(s.clone(), 9), s);
    }
}
