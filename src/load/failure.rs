//! Why a request got no response: the client classifies every failure into one of these, and
//! the metrics count them by [`FailureReason::as_str`] as the `reason` label.

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    Timeout,
    Connect,
    Tls,
    Io,
    Body,
}

impl FailureReason {
    pub const ALL: [FailureReason; 5] = [
        FailureReason::Timeout,
        FailureReason::Connect,
        FailureReason::Tls,
        FailureReason::Io,
        FailureReason::Body,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Connect => "connect",
            FailureReason::Tls => "tls",
            FailureReason::Io => "io",
            FailureReason::Body => "body",
        }
    }
}
