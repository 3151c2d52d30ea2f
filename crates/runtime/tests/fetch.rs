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

/// An exempt name is exempt at its port only: `localhost:<port>` on the list reaches no other
/// port of localhost, however the URL spells it, whether fetched, redirected to or POSTed.
#[tokio::test]
async fn an_exempt_name_reaches_its_own_port_only() {
    let (other, seen) = server(Router::new().route("/metrics", get(|| async { "secrets" }))).await;
    let other_port = other.rsplit(':').next().unwrap().to_owned();
    let to_other = format!("http://localhost:{other_port}/metrics");
    let (base, _) = server(Router::new().route("/a", get(|| async { "hello" })).route(
        "/r",
        get(move || {
            let to = to_other.clone();
            async move { (StatusCode::FOUND, [(header::LOCATION, to)]) }
        }),
    ))
    .await;
    let port = base.rsplit(':').next().unwrap();
    let f = fetcher(&[&format!("localhost:{port}")], 1024);
    let none = Request::default();
    // Its own port: fetched, by name, in any case.
    for url in [
        format!("http://localhost:{port}/a"),
        format!("http://LOCALHOST:{port}/a"),
    ] {
        assert_eq!(f.get(&url, &none).await.unwrap().bytes, b"hello", "{url}");
    }
    // Any other port of the same name: refused when connecting.
    for url in [
        format!("http://localhost:{other_port}/metrics"),
        format!("http://LocalHost:{other_port}/metrics"),
        format!(
            "http://\u{ff4c}\u{ff4f}\u{ff43}\u{ff41}\u{ff4c}\u{ff48}\u{ff4f}\u{ff53}\u{ff54}:{other_port}/metrics"
        ),
        format!("http://localhost:{port}/r"),
    ] {
        let e = f.get(&url, &none).await.unwrap_err();
        assert!(
            matches!(e, FetchError::AddressNotAllowed { .. }),
            "{url}: {e:?}"
        );
    }
    // A trailing dot is another name (it may not even resolve): not exempt either.
    assert!(
        f.get(&format!("http://localhost.:{other_port}/metrics"), &none)
            .await
            .is_err()
    );
    let e = f
        .post(
            &format!("http://localhost:{other_port}/metrics"),
            &[],
            Vec::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::AddressNotAllowed { .. }), "{e:?}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "no request reached the other port"
    );
}

#[test]
fn an_exemption_names_its_port() {
    use sms_runtime::Env;
    let policy = |value: &str| {
        sms_runtime::config::fetch_policy(
            &Env::from_pairs(&[("SMS_FETCH_ALLOW_PRIVATE", value)]),
            true,
            1024,
        )
    };
    for bad in [
        "localhost",
        "127.0.0.1",
        "localhost:",
        "localhost:0",
        "::1:8090",
        ":8090",
    ] {
        let e = policy(bad).unwrap_err();
        assert_eq!(e.var, "SMS_FETCH_ALLOW_PRIVATE", "{bad}");
    }
    for good in ["localhost:8090", "127.0.0.1:8090", "[::1]:8090"] {
        assert!(policy(good).is_ok(), "{good}");
    }
}
