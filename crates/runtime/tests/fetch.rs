//! The fetch policy against real HTTP servers on loopback: a loopback target is refused unless
//! it is named in the exemption list, redirects are checked hop by hop, credentials do not
//! follow a redirect to another host, and bodies are capped while they stream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use sms_runtime::fetch::{Credentials, FetchError, FetchPolicy, Fetcher, Request};

/// Requests a server got: (path, Authorization header).
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A server that records the Authorization header of every request, at `base`.
async fn server(routes: Router) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = routes.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let record = record.clone();
            async move {
                let auth = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                record
                    .lock()
                    .unwrap()
                    .push((req.uri().path().to_owned(), auth));
                next.run(req).await
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

fn fetcher(exempt: &[&str], max_bytes: u64) -> Fetcher {
    Fetcher::new(FetchPolicy {
        allow_http: true,
        allow_private: exempt.iter().map(|s| (*s).to_owned()).collect(),
        ..FetchPolicy::strict(max_bytes)
    })
    .unwrap()
}

fn authority(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn loopback_is_refused_unless_named() {
    let (base, seen) = server(Router::new().route("/a", get(|| async { "hello" }))).await;
    let refused = fetcher(&[], 1024)
        .get(&format!("{base}/a"), &Request::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            FetchError::AddressNotAllowed {
                why: "loopback",
                ..
            }
        ),
        "{refused:?}"
    );
    // A name that resolves to loopback is refused when connecting, not only literal IPs.
    let port = base.rsplit(':').next().unwrap();
    let by_name = fetcher(&[], 1024)
        .get(&format!("http://localhost:{port}/a"), &Request::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            by_name,
            FetchError::AddressNotAllowed {
                why: "loopback",
                ..
            }
        ),
        "{by_name:?}"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "no request reached the server"
    );
    let allowed = fetcher(&[&authority(&base)], 1024)
        .get(&format!("{base}/a"), &Request::default())
        .await
        .unwrap();
    assert_eq!(allowed.bytes, b"hello");
}

#[tokio::test]
async fn redirects_are_checked_hop_by_hop() {
    let (target, _) = server(Router::new().route("/secret", get(|| async { "internal" }))).await;
    let to = format!("{target}/secret");
    let (base, _) = server(Router::new().route(
        "/r",
        get(move || {
            let to = to.clone();
            async move { (StatusCode::FOUND, [(header::LOCATION, to)]) }
        }),
    ))
    .await;
    // The first host is exempt; the redirect's target is another loopback server that is not.
    let e = fetcher(&[&authority(&base)], 1024)
        .get(&format!("{base}/r"), &Request::default())
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::AddressNotAllowed { .. }), "{e:?}");
    // A fetch restricted to some hosts does not leave them, even for an exempt one.
    let e = fetcher(&[&authority(&base), &authority(&target)], 1024)
        .get(
            &format!("{base}/r"),
            &Request {
                only_hosts: Some(vec![authority(&base)]),
                credentials: None,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::HostNotAllowed(_)), "{e:?}");
}

#[tokio::test]
async fn credentials_go_only_to_their_host() {
    let (cdn, cdn_seen) = server(Router::new().route("/file", get(|| async { "bytes" }))).await;
    let to = format!("{cdn}/file");
    let (api, api_seen) = server(Router::new().route(
        "/media",
        get(move |h: HeaderMap| {
            let to = to.clone();
            async move {
                if h.get(header::AUTHORIZATION).is_none() {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response()
            }
        }),
    ))
    .await;
    let hosts = vec![authority(&api), authority(&cdn)];
    let fetched = fetcher(&[&authority(&api), &authority(&cdn)], 1024)
        .get(
            &format!("{api}/media"),
            &Request {
                only_hosts: Some(hosts),
                credentials: Some(Credentials {
                    user: "AC1".into(),
                    password: "token".into(),
                    hosts: vec![authority(&api)],
                }),
            },
        )
        .await
        .unwrap();
    assert_eq!(fetched.bytes, b"bytes");
    assert!(api_seen.lock().unwrap()[0].1.is_some(), "the API got them");
    assert_eq!(
        cdn_seen.lock().unwrap()[0].1,
        None,
        "the redirect's host did not"
    );
}

#[tokio::test]
async fn bodies_are_capped_while_streaming() {
    let (base, _) = server(
        Router::new()
            .route("/big", get(|| async { vec![7u8; 5000] }))
            .route(
                "/chunked",
                get(|| async {
                    let chunks = (0..10).map(|_| Ok::<_, std::io::Error>(vec![1u8; 1000]));
                    axum::body::Body::from_stream(futures::stream::iter(chunks))
                }),
            ),
    )
    .await;
    let f = fetcher(&[&authority(&base)], 4096);
    for path in ["/big", "/chunked"] {
        let e = f
            .get(&format!("{base}{path}"), &Request::default())
            .await
            .unwrap_err();
        assert_eq!(e, FetchError::TooLarge { limit: 4096 }, "{path}");
    }
}
