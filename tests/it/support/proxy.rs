//! `SesProxy`: a fault-injecting HTTP proxy in front of the SES v2 emulator, in front of
//! LocalStack's S3 (see [`S3Fault`]), or in front of moto's DynamoDB (see [`DynamoError`]).
//!
//! The worker is pointed at the proxy (`ses.endpoint_url`); the proxy forwards to the emulator
//! unless the test's current [`Faults`] say otherwise. Tests flip the faults while the worker runs.
//!
//! Faults are SES-shaped, as the AWS REST-JSON protocol sends them: an HTTP status, the
//! `x-amzn-ErrorType` header naming the error and a JSON body `{"message": ...}`, so the SDK
//! parses them exactly as it parses real SES errors. Besides errors the proxy can delay sends,
//! drop connections without an answer (SES unreachable), and answer `GetAccount` itself
//! (sending enabled or paused, with a send quota). Random choices come from a seeded generator,
//! so a run's sequence of decisions is reproducible.
//!
//! In front of S3 (the worker's `s3.endpoint_url` pointed at the proxy, path-style), requests
//! whose path contains a marker (an object key) can be answered with S3-shaped errors: an HTTP
//! status and the XML `<Error><Code>…</Code><Message>…</Message></Error>` body S3 sends, so the
//! SDK parses them as it parses real S3 errors. Everything else is forwarded as it came.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// SES v2 `SendEmail`: `POST /v2/email/outbound-emails`.
const SEND_EMAIL_PATH: &str = "/v2/email/outbound-emails";
/// SES v2 `GetAccount`: `GET /v2/email/account`.
const ACCOUNT_PATH: &str = "/v2/email/account";

/// An error answer as SES v2 sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct SesError {
    /// HTTP status.
    pub status: u16,
    /// The error code, sent in `x-amzn-ErrorType`.
    pub code: &'static str,
    /// The `message` of the JSON body.
    pub message: &'static str,
}

impl SesError {
    /// 429 `TooManyRequestsException`: throttled.
    pub fn too_many_requests() -> Self {
        Self {
            status: 429,
            code: "TooManyRequestsException",
            message: "Maximum sending rate exceeded.",
        }
    }

    /// 400 `SendingPausedException`: the account may not send.
    pub fn sending_paused() -> Self {
        Self {
            status: 400,
            code: "SendingPausedException",
            message: "Sending is paused for this account.",
        }
    }

    /// 400 `MessageRejected`: this email cannot be sent.
    pub fn message_rejected() -> Self {
        Self {
            status: 400,
            code: "MessageRejected",
            message: "Email address is not verified.",
        }
    }

    /// 500 `InternalFailure`.
    pub fn internal_failure() -> Self {
        Self {
            status: 500,
            code: "InternalFailure",
            message: "The request processing has failed because of an unknown error.",
        }
    }

    /// 503 `ServiceUnavailable`.
    pub fn service_unavailable() -> Self {
        Self {
            status: 503,
            code: "ServiceUnavailable",
            message: "Service is unavailable, try again later.",
        }
    }
}

/// An error answer as S3 sends it (REST-XML).
#[derive(Debug, Clone, PartialEq)]
pub struct S3Error {
    /// HTTP status.
    pub status: u16,
    /// The `<Code>` of the XML body.
    pub code: &'static str,
    /// The `<Message>` of the XML body.
    pub message: &'static str,
}

impl S3Error {
    /// 403 `AccessDenied`: the caller's policy does not allow the call.
    pub fn access_denied() -> Self {
        Self {
            status: 403,
            code: "AccessDenied",
            message: "Access Denied",
        }
    }

    /// 503 `SlowDown`: S3's throttling answer.
    pub fn slow_down() -> Self {
        Self {
            status: 503,
            code: "SlowDown",
            message: "Please reduce your request rate.",
        }
    }
}

/// S3 requests to fail: those whose path contains `path_containing` (e.g. a manifest's key),
/// answered with `error`, the first `times` of them (`None`: all, until healed).
#[derive(Debug, Clone, PartialEq)]
pub struct S3Fault {
    /// The answer.
    pub error: S3Error,
    /// Only requests whose URL path, as sent (percent-encoded), contains this.
    pub path_containing: String,
    /// How many matching requests still get the error; `None`: every one.
    pub times: Option<u64>,
}

/// An error answer as DynamoDB sends it (the JSON 1.0 protocol: `__type` names the error).
#[derive(Debug, Clone, PartialEq)]
pub struct DynamoError {
    /// HTTP status.
    pub status: u16,
    /// The error code, e.g. `ThrottlingException`.
    pub code: &'static str,
    /// The `message` of the JSON body.
    pub message: &'static str,
}

impl DynamoError {
    /// 400 `ThrottlingException`.
    pub fn throttling() -> Self {
        Self {
            status: 400,
            code: "ThrottlingException",
            message: "Rate of requests exceeds the allowed throughput.",
        }
    }

    /// 500 `InternalServerError`.
    pub fn internal_server_error() -> Self {
        Self {
            status: 500,
            code: "InternalServerError",
            message: "Internal server error",
        }
    }
}

/// What the proxy answers to `GetAccount` itself (a rejected send is tested against moto, which
/// rejects for real).
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// `SendingEnabled`.
    sending_enabled: bool,
    /// `SendQuota.MaxSendRate`.
    max_send_rate: f64,
}

impl Account {
    /// An account that may send, at `max_send_rate` emails per second.
    pub fn enabled(max_send_rate: f64) -> Self {
        Self {
            sending_enabled: true,
            max_send_rate,
        }
    }

    /// A paused account.
    pub fn paused() -> Self {
        Self {
            sending_enabled: false,
            max_send_rate: 14.0,
        }
    }
}

/// The faults in force. Build with the methods; `Faults::none()` passes everything through.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Fraction of `SendEmail` calls answered with `send_error` (0.0..=1.0).
    pub send_error_rate: f64,
    /// The error those calls get.
    pub send_error: SesError,
    /// When set, only `SendEmail` calls whose request body contains this string get the error
    /// or the delay (e.g. a route name: the route is in the message tags and the rendered text).
    pub only_containing: Option<String>,
    /// Wait this long before forwarding a `SendEmail` call.
    pub send_delay: Duration,
    /// Fraction of all requests (sends and account calls) whose connection is closed without
    /// an answer: SES unreachable.
    pub drop_rate: f64,
    /// Fraction of `SendEmail` calls forwarded to SES and, once SES accepted the email, answered
    /// by closing the connection: the answer is lost, the email is not.
    pub lose_answer_rate: f64,
    /// The `GetAccount` answer.
    pub account: Account,
    /// S3 requests answered with an error.
    pub s3: Option<S3Fault>,
    /// Fraction of DynamoDB requests (those with an `X-Amz-Target`) answered with an error.
    pub dynamodb_error_rate: f64,
    /// Every answer's `Date` header says this many seconds earlier than now (negative: later),
    /// as from a service whose clock disagrees with this machine's.
    pub date_behind_seconds: i64,
    /// The error those requests get.
    pub dynamodb_error: DynamoError,
}

impl Default for Faults {
    fn default() -> Self {
        Self::none()
    }
}

impl Faults {
    /// Pass-through; `GetAccount` answers "enabled, 50 per second".
    pub fn none() -> Self {
        Self {
            send_error_rate: 0.0,
            send_error: SesError::internal_failure(),
            only_containing: None,
            send_delay: Duration::ZERO,
            drop_rate: 0.0,
            lose_answer_rate: 0.0,
            account: Account::enabled(50.0),
            s3: None,
            dynamodb_error_rate: 0.0,
            dynamodb_error: DynamoError::throttling(),
            date_behind_seconds: 0,
        }
    }

    /// Dates every answer `seconds` earlier than now: the caller's clock looks that far ahead.
    pub fn date_behind(mut self, seconds: i64) -> Self {
        self.date_behind_seconds = seconds;
        self
    }

    /// Answers a fraction `rate` of DynamoDB requests with `error`.
    pub fn dynamodb_errors(mut self, rate: f64, error: DynamoError) -> Self {
        self.dynamodb_error_rate = rate;
        self.dynamodb_error = error;
        self
    }

    /// Answers a fraction `rate` of sends with `error`.
    pub fn send_errors(mut self, rate: f64, error: SesError) -> Self {
        self.send_error_rate = rate;
        self.send_error = error;
        self
    }

    /// Limits the send errors and delays to requests whose body contains `marker`.
    pub fn only_containing(mut self, marker: &str) -> Self {
        self.only_containing = Some(marker.to_owned());
        self
    }

    /// Delays every send by `delay` before forwarding it.
    pub fn send_delay(mut self, delay: Duration) -> Self {
        self.send_delay = delay;
        self
    }

    /// Drops the connection of a fraction `rate` of all requests.
    pub fn drop_connections(mut self, rate: f64) -> Self {
        self.drop_rate = rate;
        self
    }

    /// Forwards a fraction `rate` of sends and closes their connection once SES accepted them.
    pub fn lose_answers(mut self, rate: f64) -> Self {
        self.lose_answer_rate = rate;
        self
    }

    /// Sets the `GetAccount` answer.
    pub fn account(mut self, account: Account) -> Self {
        self.account = account;
        self
    }

    /// Answers every S3 request whose path contains `path_containing` with `error`.
    pub fn s3_error(mut self, path_containing: &str, error: S3Error) -> Self {
        self.s3 = Some(S3Fault {
            error,
            path_containing: path_containing.to_owned(),
            times: None,
        });
        self
    }

    /// Answers the first `times` S3 requests whose path contains `path_containing` with
    /// `error`, then forwards them again.
    pub fn s3_error_times(mut self, path_containing: &str, error: S3Error, times: u64) -> Self {
        self.s3 = Some(S3Fault {
            error,
            path_containing: path_containing.to_owned(),
            times: Some(times),
        });
        self
    }
}

/// What the proxy saw and did, for assertions and the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// `SendEmail` requests received.
    pub sends: u64,
    /// `SendEmail` requests forwarded to the emulator and answered by it with 2xx.
    pub sends_accepted: u64,
    /// `SendEmail` requests answered with an injected error.
    pub sends_failed: u64,
    /// Requests (of any kind) whose connection was dropped.
    pub dropped: u64,
    /// Sends SES accepted whose answer the proxy withheld (the connection closed instead).
    pub answers_lost: u64,
    /// `GetAccount` requests received.
    pub account_calls: u64,
    /// S3 requests whose path matched the S3 fault's marker.
    pub s3_matched: u64,
    /// S3 requests answered with an injected error.
    pub s3_failed: u64,
    /// DynamoDB requests received.
    pub dynamodb_calls: u64,
    /// DynamoDB requests answered with an injected error.
    pub dynamodb_failed: u64,
}

struct State {
    faults: Faults,
    rng: fastrand::Rng,
    stats: Stats,
    /// The JSON body of every `SendEmail` request received, in order.
    sends: Vec<serde_json::Value>,
}

/// What to do with one request, decided under the lock.
enum Decision {
    Drop,
    Fail(SesError),
    FailS3(S3Error),
    FailDynamo(DynamoError),
    Account(bool, f64),
    Forward {
        delay: Duration,
        is_send: bool,
        lose_answer: bool,
    },
}

/// A running proxy; stops when dropped.
pub struct SesProxy {
    /// `http://127.0.0.1:PORT`: put this in `ses.endpoint_url`.
    pub url: String,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

/// Closing a connection without an answer is done by failing the hyper service.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

impl SesProxy {
    /// A proxy in front of the SES emulator (the one the tests were given); `seed` as in
    /// [`SesProxy::start`].
    pub async fn in_front_of_ses(seed: u64) -> Self {
        Self::start(&super::Endpoints::from_env().ses, seed).await
    }

    /// Starts a proxy to `upstream` on a free local port. `seed` fixes the random choices.
    pub async fn start(upstream: &str, seed: u64) -> Self {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let state = Arc::new(Mutex::new(State {
            faults: Faults::none(),
            rng: fastrand::Rng::with_seed(seed),
            stats: Stats::default(),
            sends: Vec::new(),
        }));
        let client = reqwest::Client::new();
        let upstream = upstream.trim_end_matches('/').to_owned();
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                let client = client.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        handle(
                            Arc::clone(&state),
                            client.clone(),
                            upstream.clone(),
                            request,
                        )
                    });
                    // An error here is a dropped connection, on purpose or by the client.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, state, accept }
    }

    /// Replaces the faults in force.
    pub fn set(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Back to pass-through (keeping nothing of the previous faults).
    pub fn heal(&self) {
        self.set(Faults::none());
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    /// The JSON body of every `SendEmail` request so far (what the worker asked SES to do).
    pub fn send_requests(&self) -> Vec<serde_json::Value> {
        self.lock().sends.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for SesProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn decide(
    state: &Mutex<State>,
    method: &Method,
    path: &str,
    dynamodb: bool,
    body: &[u8],
) -> Decision {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let State {
        faults,
        rng,
        stats,
        sends,
    } = &mut *state;
    let is_send = method == Method::POST && path == SEND_EMAIL_PATH;
    let is_account = method == Method::GET && path == ACCOUNT_PATH;
    if is_send {
        stats.sends += 1;
        sends.push(serde_json::from_slice(body).unwrap_or(serde_json::Value::Null));
    }
    if is_account {
        stats.account_calls += 1;
    }
    if dynamodb {
        stats.dynamodb_calls += 1;
    }
    if faults.drop_rate > 0.0 && rng.f64() < faults.drop_rate {
        stats.dropped += 1;
        return Decision::Drop;
    }
    if let Some(fault) = faults.s3.as_mut() {
        if path.contains(&fault.path_containing) {
            stats.s3_matched += 1;
            if fault.times.is_none_or(|left| left > 0) {
                fault.times = fault.times.map(|left| left - 1);
                stats.s3_failed += 1;
                return Decision::FailS3(fault.error.clone());
            }
        }
    }
    if dynamodb && faults.dynamodb_error_rate > 0.0 && rng.f64() < faults.dynamodb_error_rate {
        stats.dynamodb_failed += 1;
        return Decision::FailDynamo(faults.dynamodb_error.clone());
    }
    if is_account {
        let Account {
            sending_enabled,
            max_send_rate,
        } = faults.account;
        return Decision::Account(sending_enabled, max_send_rate);
    }
    if !is_send {
        return Decision::Forward {
            delay: Duration::ZERO,
            is_send,
            lose_answer: false,
        };
    }
    let targeted = faults.only_containing.as_ref().is_none_or(|marker| {
        body.windows(marker.len().max(1))
            .any(|w| w == marker.as_bytes())
    });
    if targeted && faults.send_error_rate > 0.0 && rng.f64() < faults.send_error_rate {
        stats.sends_failed += 1;
        return Decision::Fail(faults.send_error.clone());
    }
    let lose_answer =
        targeted && faults.lose_answer_rate > 0.0 && rng.f64() < faults.lose_answer_rate;
    Decision::Forward {
        delay: if targeted {
            faults.send_delay
        } else {
            Duration::ZERO
        },
        is_send,
        lose_answer,
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    client: reqwest::Client,
    upstream: String,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let behind = state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .faults
        .date_behind_seconds;
    let mut response = answer(state, client, upstream, parts, body).await?;
    if behind != 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let date = aws_sdk_sqs::primitives::DateTime::from_secs(now - behind)
            .fmt(aws_sdk_sqs::primitives::DateTimeFormat::HttpDate)
            .expect("an HTTP date");
        response.headers_mut().insert(
            hyper::header::DATE,
            HeaderValue::from_str(&date).expect("a header value"),
        );
    }
    Ok(response)
}

/// The answer to one request, as the faults in force decide.
async fn answer(
    state: Arc<Mutex<State>>,
    client: reqwest::Client,
    upstream: String,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let path = parts.uri.path().to_owned();
    let dynamodb = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("DynamoDB_"));
    match decide(&state, &parts.method, &path, dynamodb, &body) {
        Decision::Drop => Err(Dropped),
        Decision::Fail(error) => Ok(error_response(&error)),
        Decision::FailS3(error) => Ok(s3_error_response(&error)),
        Decision::FailDynamo(error) => Ok(dynamo_error_response(&error)),
        Decision::Account(enabled, rate) => Ok(account_response(enabled, rate)),
        Decision::Forward {
            delay,
            is_send,
            lose_answer,
        } => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let response = forward(&client, &upstream, &parts, body).await;
            if is_send && response.status().is_success() {
                let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                state.stats.sends_accepted += 1;
                if lose_answer {
                    state.stats.answers_lost += 1;
                    return Err(Dropped);
                }
            }
            Ok(response)
        }
    }
}

fn json_response(status: u16, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error_response(error: &SesError) -> Response<Full<Bytes>> {
    let mut response = json_response(error.status, &json!({ "message": error.message }));
    response.headers_mut().insert(
        HeaderName::from_static("x-amzn-errortype"),
        HeaderValue::from_static(error.code),
    );
    response
}

fn s3_error_response(error: &S3Error) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>\
         <RequestId>QNPROXY</RequestId><HostId>quilt-notify-test-proxy</HostId></Error>",
        error.code, error.message
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(error.status).unwrap_or(StatusCode::FORBIDDEN);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    response
}

fn dynamo_error_response(error: &DynamoError) -> Response<Full<Bytes>> {
    let body = json!({
        "__type": format!("com.amazonaws.dynamodb.v20120810#{}", error.code),
        "message": error.message,
    });
    let mut response = json_response(error.status, &body);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    response
}

fn account_response(sending_enabled: bool, max_send_rate: f64) -> Response<Full<Bytes>> {
    json_response(
        200,
        &json!({
            "DedicatedIpAutoWarmupEnabled": false,
            "EnforcementStatus": if sending_enabled { "HEALTHY" } else { "SHUTDOWN" },
            "ProductionAccessEnabled": true,
            "SendingEnabled": sending_enabled,
            "SendQuota": {
                "Max24HourSend": 50000.0,
                "MaxSendRate": max_send_rate,
                "SentLast24Hours": 0.0,
            },
        }),
    )
}

async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let target = format!(
        "{upstream}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut outgoing = client.request(parts.method.clone(), target).body(body);
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST && name != hyper::header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(e) => {
            return json_response(502, &json!({ "message": format!("proxy upstream: {e}") }));
        }
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        let hop = [
            hyper::header::CONNECTION,
            hyper::header::TRANSFER_ENCODING,
            hyper::header::CONTENT_LENGTH,
        ];
        if !hop.contains(name) {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}
