//! The health endpoint: a minimal HTTP/1.1 listener for container health checks, and the client
//! side that `quilt-notify health` uses (so an image needs no curl and no shell).
//!
//! Three paths: `/healthz` (the process answers), `/readyz` (a receive succeeded recently and
//! the SES account is not paused) and `/metrics` (the worker's counters in Prometheus text
//! format). Hand-written rather than a web framework: three fixed answers do not earn a server
//! crate's compile time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::telemetry::metrics::Metrics;
use crate::worker::status::Status;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    status: Arc<Status>,
    metrics: Arc<Metrics>,
    ready_within: Duration,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let Ok((mut stream, _)) = accepted else {
            // Out of file descriptors and the like: pause rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let status = Arc::clone(&status);
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let Some(request) = read_head(&mut stream).await else {
                return;
            };
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (code, content_type, body) = if path == "/metrics" {
                ("200 OK", PROMETHEUS_TEXT, metrics.prometheus())
            } else {
                let (code, body) = answer(path, &status, ready_within);
                (code, "text/plain", body)
            };
            let response = format!(
                "HTTP/1.1 {code}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Reads the request head (up to the blank line, at most 4 KiB, within 2 s). Reading it all
/// matters: closing a socket with unread input resets the connection under the client.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(256);
    let mut buffer = [0u8; 512];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 4096 {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buffer))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..n]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn answer(path: &str, status: &Status, ready_within: Duration) -> (&'static str, String) {
    match path {
        "/healthz" => ("200 OK", "ok\n".to_owned()),
        "/readyz" => match status.readiness(ready_within) {
            Ok(()) => ("200 OK", "ready\n".to_owned()),
            Err(reason) => ("503 Service Unavailable", format!("not ready: {reason}\n")),
        },
        _ => (
            "404 Not Found",
            "try /healthz, /readyz or /metrics\n".to_owned(),
        ),
    }
}

/// Asks a health URL (`http://host:port/path`); Ok with the body on a 200.
///
/// # Errors
/// The URL is not plain `http://host:port/path`, nothing answers, or the status is not 200.
pub fn probe(url: &str, timeout: Duration) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let address: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{url}: no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&address, timeout).map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status_line = response.lines().next().unwrap_or_default();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_owned())
        .unwrap_or_default();
    if status_line.split_whitespace().nth(1) == Some("200") {
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
            tokio::task::spawn_blocking(move || probe(&url, Duration::from_secs(2)))
        };

        assert_eq!(get("/healthz").await.expect("join").expect("200"), "ok");
        let not_ready = get("/readyz").await.expect("join").expect_err("503");
        assert!(
            not_ready.to_string().contains("no successful receive yet"),
            "{not_ready}"
        );

        status.receive_succeeded();
        assert_eq!(get("/readyz").await.expect("join").expect("200"), "ready");
        assert!(get("/nope").await.expect("join").is_err());

        metrics.add(crate::telemetry::metrics::Counter::Sent, 7);
        let text = get("/metrics").await.expect("join").expect("200");
        assert!(text.contains("\nquilt_notify_sent_total 7\n"), "{text}");
        stop.cancel();
    }

    #[test]
    fn probing_nothing_fails_with_the_url() {
        let err = probe("http://127.0.0.1:9/healthz", Duration::from_secs(1)).expect_err("refused");
        assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
        assert!(probe("https://x/healthz", Duration::from_secs(1)).is_err());
    }
}
