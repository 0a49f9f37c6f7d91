//! Routing and the endpoints: the AI image API (S2, S3), the simple API (S1: login, posts),
//! health, the test helpers (fixed status, rotating mix, `?delay_ms=N`) and the control paths
//! under `/_` (stats, reset, stall), which are neither counted nor stalled.
//!
//! Every application request runs the same pipeline: mark in flight, take an authenticated AI
//! request's memory, read and check the input, burn the configured CPU, add any requested delay,
//! wait out a stall, count the response, then release the request's memory.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::cost::{self, TouchedMemory};
use super::multipart;
use super::state::{DemoState, LoginError};

/// Response body type of every endpoint.
pub type Body = Full<Bytes>;

/// Longest `?delay_ms=` or stall accepted (10 minutes).
const MAX_DELAY_MS: u64 = 600_000;
/// Longest username accepted at login.
const MAX_USERNAME: usize = 256;

/// The application routes. Each has a fixed key, so the stats have a bounded set of labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    AiImages,
    AiPrompt,
    Login,
    Posts,
    Healthz,
    Status,
    Mix,
    Other,
}

impl Route {
    fn of(method: &Method, path: &str) -> Route {
        let path = path
            .strip_suffix('/')
            .filter(|p| !p.is_empty())
            .unwrap_or(path);
        let route = match path {
            "/api/v1/ai-images" => Route::AiImages,
            "/api/v1/ai-images/prompt" => Route::AiPrompt,
            "/api/v1/login" => Route::Login,
            "/api/v1/posts" => Route::Posts,
            "/healthz" => Route::Healthz,
            "/api/v1/mix" => Route::Mix,
            p if p.starts_with("/api/v1/status/") => Route::Status,
            _ => return Route::Other,
        };
        if *method == route.method() {
            route
        } else {
            Route::Other
        }
    }

    fn method(self) -> Method {
        match self {
            Route::AiImages | Route::AiPrompt | Route::Login => Method::POST,
            _ => Method::GET,
        }
    }

    /// The stats key.
    fn key(self) -> &'static str {
        match self {
            Route::AiImages => "POST /api/v1/ai-images",
            Route::AiPrompt => "POST /api/v1/ai-images/prompt",
            Route::Login => "POST /api/v1/login",
            Route::Posts => "GET /api/v1/posts",
            Route::Healthz => "GET /healthz",
            Route::Status => "GET /api/v1/status/{code}",
            Route::Mix => "GET /api/v1/mix",
            Route::Other => "other",
        }
    }
}

/// A response, plus the request's memory, which must stay held until the response is ready.
type Reply = (Response<Body>, Option<TouchedMemory>);

/// The hyper service function.
pub async fn handle(
    state: Arc<DemoState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if req.uri().path().starts_with("/_") {
        return Ok(control(&state, &req));
    }
    state.conns(|c| {
        *c.requests_by_version
            .entry(format!("{:?}", req.version()))
            .or_default() += 1
    });
    let _in_flight = state.begin();
    let began = Instant::now();
    let route = Route::of(req.method(), req.uri().path());
    let (resp, _held) = match query_ms(req.uri().query(), "delay_ms") {
        Err(e) => (error(StatusCode::BAD_REQUEST, e.to_string()), None),
        Ok(extra) => {
            let reply = dispatch(&state, route, req).await;
            if let Some(ms) = extra.filter(|&ms| ms > 0) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            reply
        }
    };
    state.wait_while_stalled().await;
    state.record(route.key(), resp.status().as_u16(), began.elapsed());
    // `_held` drops before `_in_flight`, so RSS never counts memory of a finished request.
    Ok(resp)
}

async fn dispatch(state: &Arc<DemoState>, route: Route, req: Request<Incoming>) -> Reply {
    match route {
        Route::AiImages => ai_images(state, req).await,
        Route::AiPrompt => ai_prompt(state, req).await,
        Route::Login => (login(state, req).await, None),
        Route::Posts => (posts(state, &req).await, None),
        Route::Healthz => (text(StatusCode::OK, "ok"), None),
        Route::Status => (fixed_status(req.uri().path()), None),
        Route::Mix => {
            let code = state.next_mix_status();
            (status_reply(code), None)
        }
        Route::Other => {
            let any = Route::of(&Method::POST, req.uri().path()) != Route::Other
                || Route::of(&Method::GET, req.uri().path()) != Route::Other;
            let status = if any {
                StatusCode::METHOD_NOT_ALLOWED
            } else {
                StatusCode::NOT_FOUND
            };
            (
                error(
                    status,
                    format!("no route for {} {}", req.method(), req.uri().path()),
                ),
                None,
            )
        }
    }
}

/// S3: multipart prompt + image. The body is read even when the request will be refused, so the
/// stats show what the client sent and the connection stays reusable.
async fn ai_images(state: &Arc<DemoState>, req: Request<Incoming>) -> Reply {
    let authorized = bearer(req.headers()).is_some();
    let admitted = match admit(state, authorized) {
        Ok(a) => a,
        Err(resp) => return (*resp, None),
    };
    let upload = multipart::parse(req, state.config().max_body.bytes()).await;
    let upload = match upload {
        Ok(mut up) => {
            up.seen.bearer_present = authorized;
            state.set_last_multipart(up.seen.clone());
            up
        }
        Err(_) if !authorized => return (unauthorized(), None),
        Err(r) => return (error(status(r.status), r.message), None),
    };
    if !authorized {
        return (unauthorized(), None);
    }
    if upload.prompt_chars.is_none() {
        let msg = format!("missing field `{}`", multipart::PROMPT_FIELD);
        return (error(StatusCode::BAD_REQUEST, msg), None);
    }
    if !upload.has_file {
        let msg = format!("missing file field `{}`", multipart::FILE_FIELD);
        return (error(StatusCode::BAD_REQUEST, msg), None);
    }
    let body = json!({
        "prompt_chars": upload.prompt_chars,
        "image_bytes": upload.seen.file_bytes,
        "image_fnv64": upload.seen.file_fnv64,
    });
    ai_work(state, body, admitted).await
}

#[derive(Deserialize)]
struct PromptBody {
    prompt: String,
}

/// S2: a JSON prompt, no image.
async fn ai_prompt(state: &Arc<DemoState>, req: Request<Incoming>) -> Reply {
    let authorized = bearer(req.headers()).is_some();
    let admitted = match admit(state, authorized) {
        Ok(a) => a,
        Err(resp) => return (*resp, None),
    };
    let body = read_body(req.into_body(), state.config().max_body.bytes()).await;
    if !authorized {
        return (unauthorized(), None);
    }
    let body = match body {
        Ok(b) => b,
        Err(resp) => return (resp, None),
    };
    match serde_json::from_slice::<PromptBody>(&body) {
        Ok(p) => {
            let fields = json!({ "prompt_chars": p.prompt.chars().count() });
            ai_work(state, fields, admitted).await
        }
        Err(e) => {
            let msg = format!("invalid JSON body: {e}");
            (error(StatusCode::BAD_REQUEST, msg), None)
        }
    }
}

/// Takes an authenticated AI request's memory as it arrives, before its body is read and before
/// it waits for the CPU, the way an upload server's buffers are held for the whole request:
/// memory in flight then follows the requests in flight, whether they are being read, queued
/// for the CPU or answered. It runs on the async worker rather than the blocking pool so that it
/// cannot itself queue behind the CPU burns. A request without a bearer token holds nothing.
/// The refusal is boxed: it is the rare path, and the success path should stay small.
fn admit(
    state: &DemoState,
    authorized: bool,
) -> Result<Option<cost::Admitted>, Box<Response<Body>>> {
    let mem = state.config().mem_per_request.bytes();
    if !authorized || mem == 0 {
        return Ok(None);
    }
    cost::admit(mem).map(Some).map_err(|e| {
        Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot allocate {mem} bytes for the request: {e}"),
        ))
    })
}

/// The AI model's part, common to S2 and S3: the rest of the CPU (touching the memory at
/// admission counted towards it), the delay, then maybe an injected failure. `fields` are added
/// to the success body next to a fresh id. The admitted memory is handed back with the reply.
async fn ai_work(
    state: &Arc<DemoState>,
    mut fields: serde_json::Value,
    admitted: Option<cost::Admitted>,
) -> Reply {
    let cfg = state.config();
    let touched = admitted.as_ref().map_or(Duration::ZERO, |a| a.touch_cpu);
    if let Err(resp) = burn(cfg.cpu, touched).await {
        return (resp, None);
    }
    let held = admitted.map(|a| a.memory);
    if !cfg.delay.is_zero() {
        tokio::time::sleep(cfg.delay).await;
    }
    if state.next_ai_fails() {
        let resp = error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected failure (--fail-ratio)",
        );
        return (resp, held);
    }
    fields["id"] = json!(state.next_id());
    (json_reply(StatusCode::OK, &fields), held)
}

/// Burns what is left of `cpu` after `touched` on the blocking pool, so the async workers keep
/// accepting and answering. With nothing left to burn it does nothing at all (no task).
async fn burn(cpu: Duration, touched: Duration) -> Result<(), Response<Body>> {
    if cpu <= touched {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || cost::burn_rest(cpu, touched))
        .await
        .map(drop)
        .map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cost task failed: {e}"),
            )
        })
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    /// Required, but any value is accepted: the demo has no user database.
    #[allow(dead_code)]
    password: String,
}

/// S1 login: JSON or urlencoded `username` and `password`; any password is accepted.
async fn login(state: &Arc<DemoState>, req: Request<Incoming>) -> Response<Body> {
    let form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let body = match read_body(req.into_body(), state.config().max_body.bytes()).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let creds = if form {
        let mut user = None;
        let mut pass = None;
        for (k, v) in url::form_urlencoded::parse(&body) {
            match &*k {
                "username" => user = Some(v.into_owned()),
                "password" => pass = Some(v.into_owned()),
                _ => {}
            }
        }
        match (user, pass) {
            (Some(username), Some(password)) => Ok(LoginBody { username, password }),
            (None, _) => Err("missing field `username`".to_string()),
            (_, None) => Err("missing field `password`".to_string()),
        }
    } else {
        serde_json::from_slice::<LoginBody>(&body).map_err(|e| format!("invalid JSON body: {e}"))
    };
    let creds = match creds {
        Ok(c) => c,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    if creds.username.is_empty() || creds.username.len() > MAX_USERNAME {
        let msg = format!("field `username` must be 1..={MAX_USERNAME} bytes");
        return error(StatusCode::BAD_REQUEST, msg);
    }
    if let Err(resp) = burn(state.config().simple_cpu, Duration::ZERO).await {
        return resp;
    }
    match state.login(&creds.username) {
        Ok(token) => json_reply(StatusCode::OK, &json!({ "token": token })),
        Err(LoginError::TooManyUsers) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("more than {} users logged in", super::state::MAX_USERS),
        ),
    }
}

/// S1 posts: needs a token this server issued.
async fn posts(state: &Arc<DemoState>, req: &Request<Incoming>) -> Response<Body> {
    let user = match bearer(req.headers()).and_then(|t| state.read_posts(t)) {
        Some(u) => u,
        None => return unauthorized(),
    };
    if let Err(resp) = burn(state.config().simple_cpu, Duration::ZERO).await {
        return resp;
    }
    let list: Vec<_> = (1..=3)
        .map(|i| json!({ "id": i, "title": format!("post {i}"), "reader": user }))
        .collect();
    json_reply(StatusCode::OK, &serde_json::Value::Array(list))
}

/// `GET /api/v1/status/{code}`.
fn fixed_status(path: &str) -> Response<Body> {
    let code = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    match code.parse::<u16>().ok().filter(|c| (200..=599).contains(c)) {
        Some(c) => status_reply(c),
        None => error(
            StatusCode::BAD_REQUEST,
            format!("status `{code}` in the path must be a number from 200 to 599"),
        ),
    }
}

/// An answer with the given status and, where the status allows a body, `{"status": code}`.
fn status_reply(code: u16) -> Response<Body> {
    let st = status(code);
    if st == StatusCode::NO_CONTENT || st == StatusCode::NOT_MODIFIED {
        let mut r = Response::new(Body::default());
        *r.status_mut() = st;
        return r;
    }
    json_reply(st, &json!({ "status": code }))
}

/// `/_stats`, `/_stats/reset`, `/_control/stall?ms=N`.
fn control(state: &DemoState, req: &Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/_stats") => match serde_json::to_value(state.stats()) {
            Ok(v) => json_reply(StatusCode::OK, &v),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        (&Method::POST, "/_stats/reset") => {
            state.reset();
            json_reply(StatusCode::OK, &json!({ "reset": true }))
        }
        (&Method::POST, "/_control/stall") => match query_ms(req.uri().query(), "ms") {
            Ok(Some(ms)) => {
                state.stall_for(Duration::from_millis(ms));
                json_reply(StatusCode::OK, &json!({ "stall_ms": ms }))
            }
            Ok(None) => error(StatusCode::BAD_REQUEST, "query parameter `ms` is required"),
            Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
        },
        (m, p) => error(
            StatusCode::NOT_FOUND,
            format!("no control route for {m} {p}"),
        ),
    }
}

/// A millisecond query parameter that is not a whole number in range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query parameter `{name}` must be 0..={MAX_DELAY_MS} ms, got `{value}`")]
struct QueryMsError {
    name: String,
    value: String,
}

/// A millisecond query parameter, 0..=600000.
fn query_ms(query: Option<&str>, name: &str) -> Result<Option<u64>, QueryMsError> {
    let Some(q) = query else { return Ok(None) };
    let Some((_, v)) = url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name) else {
        return Ok(None);
    };
    v.parse::<u64>()
        .ok()
        .filter(|&ms| ms <= MAX_DELAY_MS)
        .map(Some)
        .ok_or_else(|| QueryMsError {
            name: name.to_string(),
            value: v.into_owned(),
        })
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Reads a whole body of at most `max` bytes: 413 if larger, 400 if the stream fails.
async fn read_body(body: Incoming, max: u64) -> Result<Bytes, Response<Body>> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    match Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {max} bytes (--max-body)"),
        )),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("cannot read body: {e}"),
        )),
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn unauthorized() -> Response<Body> {
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "missing or invalid `Authorization: Bearer <token>`",
    );
    r.headers_mut()
        .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    r
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_reply(status, &json!({ "error": message.into() }))
}

fn json_reply(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_their_method() {
        assert_eq!(
            Route::of(&Method::POST, "/api/v1/ai-images"),
            Route::AiImages
        );
        assert_eq!(
            Route::of(&Method::POST, "/api/v1/ai-images/"),
            Route::AiImages
        );
        assert_eq!(Route::of(&Method::GET, "/api/v1/ai-images"), Route::Other);
        assert_eq!(Route::of(&Method::GET, "/api/v1/status/503"), Route::Status);
        assert_eq!(Route::of(&Method::GET, "/nope"), Route::Other);
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer  xyz "));
        assert_eq!(bearer(&h), Some("xyz"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn query_ms_validates() {
        assert_eq!(query_ms(None, "delay_ms"), Ok(None));
        assert_eq!(
            query_ms(Some("a=1&delay_ms=250"), "delay_ms"),
            Ok(Some(250))
        );
        assert!(query_ms(Some("delay_ms=-1"), "delay_ms")
            .unwrap_err()
            .to_string()
            .contains("delay_ms"));
        assert!(query_ms(Some("delay_ms=999999999"), "delay_ms").is_err());
    }
}
