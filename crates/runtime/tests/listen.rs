//! Listeners keep a burst of new connections waiting rather than dropping their SYNs: a
//! dispatcher replica opens up to 128 carrier calls at once, beside the other replicas', and a
//! dropped SYN is sent again only after a second, past a short carrier timeout (the call then
//! looks like one whose outcome is unknown, though its request never left).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

/// Connections made to `addr` at once, none accepted: how many were made within 500 ms.
async fn burst(addr: SocketAddr, n: usize) -> usize {
    let attempts: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_millis(500),
                    tokio::net::TcpStream::connect(addr),
                )
                .await
                .ok()
                .and_then(Result::ok)
            })
        })
        .collect();
    let mut made = Vec::new();
    for a in attempts {
        if let Some(stream) = a.await.unwrap() {
            made.push(stream);
        }
    }
    made.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_waits_to_be_accepted() {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    // Beyond what a standard listener keeps (128), within what ours does.
    let n = 1000;
    let ours = sms_runtime::health::bind(loopback).await.unwrap();
    assert_eq!(burst(ours.local_addr().unwrap(), n).await, n);
    let ours_std = sms_runtime::health::bind_std(loopback).unwrap();
    assert_eq!(burst(ours_std.local_addr().unwrap(), n).await, n);
    // The standard listener, as the test harness once bound the carrier's: SYNs dropped.
    let standard = std::net::TcpListener::bind(loopback).unwrap();
    let made = burst(standard.local_addr().unwrap(), n).await;
    assert!(made < n, "the standard backlog kept {made} of {n}");
}
