//! The health endpoint: a small HTTP/1.1 server for container health checks and scrapers, and
//! the client side that `quilt-notify health` uses (so an image needs no curl and no shell).
//!
//! Three paths: `/healthz` (the process answers), `/readyz` (a receive succeeded recently and
//! the SES account is not paused) and `/metrics` (the worker's counters in Prometheus text
//! format). Served and asked with hyper, which the AWS SDK already builds, so parsing,
//! keep-alive and bad requests are hyper's; this module only chooses the answers. Knows nothing
//! of what the worker does beyond [`Status::readiness`] and [`Metrics::prometheus`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::telemetry::metrics::Metrics;
use crate::telemetry::prometheus;
use crate::worker::status::Status;

/// How long a client may take to send a request head before the connection is closed; also how
/// long a keep-alive connection may sit idle, so idle scrapers cannot pile up connections.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until `stop` is cancelled; open
/// connections then finish the request they are on and close.
pub async fn serve(
    listener: TcpListener,
    status: Arc<Status>,
    metrics: Arc<Metrics>,
    ready_within: Duration,
    stop: CancellationToken,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors and the like: pause rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let status = Arc::clone(&status);
        let metrics = Arc::clone(&metrics);
        let service = service_fn(move |request: Request<Incoming>| {
            let response = respond(&request, &status, &metrics, ready_within);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            // Errors are the client's (a reset, a malformed or slow request): nothing to log.
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
}

/// The answer to one request: GET or HEAD on one of the three paths.
fn respond(
    request: &Request<Incoming>,
    status: &Status,
    metrics: &Metrics,
    ready_within: Duration,
) -> Response<Full<Bytes>> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET or HEAD\n".to_owned(),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => match status.readiness(ready_within) {
            Ok(()) => text(StatusCode::OK, "ready\n".to_owned()),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics.prometheus());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(prometheus::CONTENT_TYPE),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "try /healthz, /readyz or /metrics\n".to_owned(),
        ),
    }
}

/// A plain-text response; hyper adds `content-length` and leaves the body out for HEAD.
fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// Asks a health URL (`http://host:port/path`) with hyper's client; Ok with the body on a 200.
///
/// # Errors
/// The URL is not plain `http://host:port/path`, nothing answers within `timeout`, or the
/// status is not 200 (the error then says the status line and the body).
pub async fn probe(url: &str, timeout: Duration) -> anyhow::Result<String> {
    if !url.starts_with("http://") {
        anyhow::bail!("{url}: only http:// URLs are supported");
    }
    let uri: Uri = url.parse().with_context(|| url.to_owned())?;
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let ask = async {
        let response = client.get(uri).await?;
        let status_line = format!("{:?} {}", response.version(), response.status());
        let ok = response.status() == StatusCode::OK;
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((ok, status_line, body))
    };
    let (ok, status_line, body) = tokio::time::timeout(timeout, ask)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {timeout:?}")))
        .with_context(|| url.to_owned())?;
    let body = String::from_utf8_lossy(&body).trim().to_owned();
    if ok {
        Ok(body)
    } else {
        anyhow::bail!("{url}: {status_line}: {body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn healthz_always_answers_and_readyz_follows_the_status() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr");
        let status = Arc::new(Status::default());
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            Arc::clone(&status),
            Arc::clone(&metrics),
            Duration::from_secs(60),
            stop.clone(),
        ));
        let get = |path: &'static str| {
            let url = format!("http://{address}{path}");
            async move { probe(&url, Duration::from_secs(2)).await }
        };

        assert_eq!(get("/healthz").await.expect("200"), "ok");
        let not_ready = get("/readyz").await.expect_err("503");
        assert_eq!(
            not_ready.to_string(),
            format!(
                "http://{address}/readyz: HTTP/1.1 503 Service Unavailable: not ready: no successful receive yet"
            ),
        );

        status.progressed();
        assert_eq!(get("/readyz").await.expect("200"), "ready");
        assert!(get("/nope").await.is_err());

        metrics.add(crate::telemetry::metrics::Counter::Sent, 7);
        let text = get("/metrics").await.expect("200");
        assert!(text.contains("\nquilt_notify_sent_total 7\n"), "{text}");
        stop.cancel();
    }

    /// A listener on a free port, serving fresh status and metrics until the token is cancelled.
    async fn spawn_server() -> (std::net::SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            Arc::new(Status::default()),
            Arc::new(Metrics::default()),
            Duration::from_secs(60),
            stop.clone(),
        ));
        (address, stop)
    }

    /// Sends `request` as raw bytes and reads until the server closes the connection.
    async fn exchange(address: std::net::SocketAddr, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
            .await
            .expect("the server closes the connection")
            .expect("read");
        response
    }

    #[tokio::test]
    async fn one_connection_serves_several_requests_and_head_gets_no_body() {
        let (address, stop) = spawn_server().await;
        let response = exchange(
            address,
            "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n\
             HEAD /readyz HTTP/1.1\r\nhost: x\r\n\r\n\
             POST /healthz HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await;
        let answers: Vec<&str> = response.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 3, "{response}");
        assert!(answers[0].starts_with("200 OK\r\n"), "{response}");
        assert!(answers[0].ends_with("\r\n\r\nok\n"), "{response}");
        assert!(
            answers[1].starts_with("503 Service Unavailable\r\n"),
            "{response}"
        );
        assert!(
            answers[1].ends_with("\r\n\r\n"),
            "HEAD has no body: {response}"
        );
        assert!(
            answers[2].starts_with("405 Method Not Allowed\r\n"),
            "{response}"
        );
        assert!(answers[2].contains("allow: GET, HEAD\r\n"), "{response}");
        stop.cancel();
    }

    #[tokio::test]
    async fn a_malformed_request_gets_400_and_an_unknown_path_404() {
        let (address, stop) = spawn_server().await;
        let garbage = exchange(address, "HELLO THERE\r\n\r\n").await;
        assert!(
            garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{garbage}"
        );
        let unknown = exchange(
            address,
            "GET /nope HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(
            unknown.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{unknown}"
        );
        assert!(
            unknown.ends_with("try /healthz, /readyz or /metrics\n"),
            "{unknown}"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn stopping_closes_idle_keep_alive_connections() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (address, stop) = spawn_server().await;
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut first = [0u8; 12];
        stream.read_exact(&mut first).await.expect("answer");
        assert_eq!(&first, b"HTTP/1.1 200");

        stop.cancel();
        let mut rest = Vec::new();
        // Within a second: sooner than HEADER_TIMEOUT would close it anyway.
        tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut rest))
            .await
            .expect("closed once stopped")
            .expect("read");
        assert!(String::from_utf8_lossy(&rest).ends_with("ok\n"));
    }

    #[tokio::test]
    async fn probing_nothing_fails_with_the_url() {
        let err = probe("http://127.0.0.1:9/healthz", Duration::from_secs(1))
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
        let https = probe("https://x/healthz", Duration::from_secs(1))
            .await
            .expect_err("not http");
        assert!(https.to_string().contains("only http://"), "{https}");
    }

    #[tokio::test]
    async fn a_worker_that_never_answers_is_unhealthy_within_the_timeout() {
        // Accepts the connection and reads nothing: a hung process, as a HEALTHCHECK sees it.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr");
        let held = tokio::spawn(async move { listener.accept().await });
        let asked = std::time::Instant::now();
        let err = probe(
            &format!("http://{address}/healthz"),
            Duration::from_millis(300),
        )
        .await
        .expect_err("no answer");
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{:?}",
            asked.elapsed()
        );
        assert!(err.to_string().contains(&address.to_string()), "{err}");
        held.abort();
    }
}
