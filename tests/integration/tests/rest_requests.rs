//! The client's REST requests against servers that misbehave on purpose: a body that never
//! ends (the client stops reading at `max_message_size`), and a kept-alive connection the
//! server closes as the next request arrives (an idempotent request is sent again on a new
//! connection). Both servers are a few lines of raw TCP, so the misbehaviour is exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mode_client::{Client, ClientConfig, ClientError};
use mode_integration::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const INFO: &str = r#"{"id":1001,"projectId":1,"name":"d","tag":"","deviceClass":"sensor"}"#;

/// Reads one request's head (up to the empty line); false when the client closed first.
async fn read_request(stream: &mut BufReader<TcpStream>) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        match stream.read_line(&mut line).await {
            Ok(0) | Err(_) => return false,
            Ok(_) if line == "\r\n" => return true,
            Ok(_) => {}
        }
    }
}

fn client_of(addr: std::net::SocketAddr, max: usize) -> Client {
    let config = ClientConfig::builder(D1, key(D1))
        .plain()
        .mqtt_host("127.0.0.1")
        .mqtt_port(9) // nothing listens: these tests use REST only
        .api_url(format!("http://{addr}"))
        .max_message_size(max)
        .backoff(fast_backoff())
        .build()
        .unwrap();
    Client::connect(config).unwrap().0
}

#[tokio::test]
async fn an_endless_answer_is_cut_at_the_size_limit_not_read_whole() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    const CHUNK: usize = 64 * 1024;
    const OFFERED: usize = 256 * 1024 * 1024;
    let written = Arc::new(AtomicUsize::new(0));
    let server = tokio::spawn({
        let written = written.clone();
        async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut stream = BufReader::new(tcp);
            assert!(read_request(&mut stream).await);
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
            stream.write_all(head.as_bytes()).await.unwrap();
            let chunk = format!("{CHUNK:x}\r\n{}\r\n", " ".repeat(CHUNK));
            // 256 MiB unless the client hangs up first.
            while written.load(Ordering::SeqCst) < OFFERED {
                if stream.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
                written.fetch_add(CHUNK, Ordering::SeqCst);
            }
        }
    });
    let client = client_of(addr, 1024 * 1024);
    let err = client.device_info().await.unwrap_err();
    assert!(
        matches!(err, ClientError::MessageTooLarge { max, .. } if max == 1024 * 1024),
        "{err:?}"
    );
    server.await.unwrap();
    // What the server got out before the client hung up: the limit, plus what the socket
    // buffers hold. Reading the whole answer first would have taken all 256 MiB.
    let sent = written.load(Ordering::SeqCst);
    assert!(sent < 64 * 1024 * 1024, "the server wrote {sent} bytes");
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body_is_read() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut stream = BufReader::new(tcp);
        read_request(&mut stream).await;
        // Announces 10 MiB and sends none of it: only the header can end this request.
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n";
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = read_request(&mut stream).await; // holds the connection open
    });
    let err = client_of(addr, 1024 * 1024)
        .device_info()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::MessageTooLarge {
                size: 10_485_760,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_idempotent_request_on_a_connection_the_server_just_closed_is_sent_again() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    tokio::spawn({
        let connections = connections.clone();
        async move {
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{INFO}",
                INFO.len()
            );
            // First connection: one answer, kept alive; the next request on it is read and
            // the connection closed without an answer, as a server timing out an idle
            // connection does just as a request arrives.
            let (tcp, _) = listener.accept().await.unwrap();
            connections.fetch_add(1, Ordering::SeqCst);
            let mut first = BufReader::new(tcp);
            assert!(read_request(&mut first).await);
            first.write_all(answer.as_bytes()).await.unwrap();
            assert!(read_request(&mut first).await);
            drop(first);
            // Any later connection answers.
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                connections.fetch_add(1, Ordering::SeqCst);
                let mut stream = BufReader::new(tcp);
                while read_request(&mut stream).await {
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let client = client_of(addr, 1024 * 1024);
    assert_eq!(client.device_info().await.unwrap().id, D1);
    let again = client.device_info().await;
    assert_eq!(again.unwrap().id, D1, "the second GET must succeed");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}
