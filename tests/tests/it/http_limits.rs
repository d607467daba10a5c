//! Connection-level limits of the HTTP server (review M6): a client that never finishes its
//! request head is closed after the header timeout, a connection on which nothing moves after
//! the idle timeout, and connections beyond the cap wait until one closes.

use std::time::{Duration, Instant};

use api::settings::HttpSettings;
use api::Settings;
use fafcab_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound for "closed by the server" on a loaded machine; the limits under test are 1 s.
const CLOSE_DEADLINE: Duration = Duration::from_secs(20);

async fn app_with(b: Backend, http: HttpSettings) -> TestApp {
    let url = fresh_database(b).await;
    spawn_with(Settings {
        http,
        ..Settings::for_tests(&url)
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connects")
}

/// Reads until the server closes the connection (EOF or reset); panics after `CLOSE_DEADLINE`.
/// Returns what was read.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = vec![];
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + CLOSE_DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => panic!(
                "connection still open after {CLOSE_DEADLINE:?}; read {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn slowloris_is_closed_after_the_header_timeout(b: Backend) {
    let app = app_with(
        b,
        HttpSettings {
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(600),
            ..HttpSettings::default()
        },
    )
    .await;
    // One connection sends nothing; one sends half a request head and stops.
    let started = Instant::now();
    let mut silent = connect(&app).await;
    let mut partial = connect(&app).await;
    partial
        .write_all(b"GET /health HTTP/1.1\r\nHo")
        .await
        .unwrap();
    read_until_closed(&mut silent).await;
    read_until_closed(&mut partial).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A client that sends its head in time is served as before.
    let r = app.get("/health", &admin()).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn a_connection_where_nothing_moves_is_closed_after_the_idle_timeout(b: Backend) {
    let app = app_with(
        b,
        HttpSettings {
            header_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(1),
            ..HttpSettings::default()
        },
    )
    .await;
    // A whole head announcing a body that never comes: the header timeout does not apply, and
    // the request timeout (30 s) would answer only long after the idle timeout.
    let mut s = connect(&app).await;
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"query\":",
        admin()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let got = read_until_closed(&mut s).await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(started.elapsed() >= Duration::from_millis(900));
}

async fn connections_beyond_the_cap_wait_for_one_to_close(b: Backend) {
    let app = app_with(
        b,
        HttpSettings {
            header_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(600),
            max_connections: 2,
        },
    )
    .await;
    let first = connect(&app).await;
    let _second = connect(&app).await;
    let mut third = connect(&app).await;
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    // Both slots are taken: the third is not served while they stay open.
    let early = tokio::time::timeout(Duration::from_secs(1), third.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");
    drop(first);
    let got = read_until_closed(&mut third).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

on_both_backends!(
    slowloris_is_closed_after_the_header_timeout,
    a_connection_where_nothing_moves_is_closed_after_the_idle_timeout,
    connections_beyond_the_cap_wait_for_one_to_close,
);
