//! Why a request got no response: the client classifies every failure into one of these, and
//! the metrics count them by [`FailureReason::as_str`] as the `reason` label.

/// Why a request got no response (or none that counts). docs/reliability.md says what a user
/// sees for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    Timeout,
    Connect,
    Tls,
    Io,
    Body,
    /// A value rendered at run time (a capture, a data row) made the request unsendable:
    /// a line break in a header, a URL that does not parse. Nothing was sent.
    InvalidRequest,
    /// The response head was over `limits.max_response_head` bytes or
    /// `limits.max_response_headers` lines.
    HeaderTooLarge,
    /// The body was over `limits.max_capture_body` on a step that captures from it.
    CaptureTooLarge,
    /// No file descriptor for a socket (EMFILE/ENFILE, or the VUs' share of the limit is in
    /// use): loadspec's own limit, not the target.
    FdLimit,
    /// Cut at the drain deadline (or a ramp-down's grace period) before its response.
    Interrupted,
}

impl FailureReason {
    pub const ALL: [FailureReason; 10] = [
        FailureReason::Timeout,
        FailureReason::Connect,
        FailureReason::Tls,
        FailureReason::Io,
        FailureReason::Body,
        FailureReason::InvalidRequest,
        FailureReason::HeaderTooLarge,
        FailureReason::CaptureTooLarge,
        FailureReason::FdLimit,
        FailureReason::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Connect => "connect",
            FailureReason::Tls => "tls",
            FailureReason::Io => "io",
            FailureReason::Body => "body",
            FailureReason::InvalidRequest => "invalid_request",
            FailureReason::HeaderTooLarge => "header_too_large",
            FailureReason::CaptureTooLarge => "capture_too_large",
            FailureReason::FdLimit => "fd_limit",
            FailureReason::Interrupted => "interrupted",
        }
    }

    /// Failed before any byte reached the target: the VU backs off instead of retrying at
    /// once, so a dead target or a bad value costs loadspec almost nothing.
    pub fn without_exchange(self) -> bool {
        matches!(
            self,
            FailureReason::Connect | FailureReason::InvalidRequest | FailureReason::FdLimit
        )
    }
}
