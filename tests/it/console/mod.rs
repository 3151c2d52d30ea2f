//! The operator console: every route over HTTP (status codes, organization scoping, CSRF,
//! sessions, escaping), and the flows a person follows in headless Chromium.

mod browser;
mod routes;

use std::collections::HashMap;
use std::time::Duration;

use sms_proto::v1::{
    AddNumberRequest, LocalDateTime, NumberKind, SendMessageRequest, add_number_request,
};
use sms_runtime::auth::{Grant, Organizations, Tokens};
use sms_testkit::{ORG, Options, Stack, USER};
use tokio_util::sync::CancellationToken;

/// The API token of organization A's CRM.
pub const TOKEN_A: &str = "console-test-token-a";
/// The API token of organization B's CRM.
pub const TOKEN_B: &str = "console-test-token-b";
/// The other organization.
pub const ORG_B: &str = "org-b";
/// Its user.
pub const USER_B: &str = "user-2";

/// A stack whose API needs tokens (one per organization), and the console in front of it.
pub struct Console {
    pub stack: Stack,
    pub url: String,
    shutdown: CancellationToken,
}

impl Console {
    pub async fn start(idle: Duration) -> Console {
        let grant = |org: &str| Grant {
            system: format!("crm-{org}"),
            organizations: Organizations::Only([org.to_owned()].into_iter().collect()),
        };
        let stack = Stack::start_with(Options {
            api_tokens: Tokens::new([
                (TOKEN_A.to_owned(), grant(ORG)),
                (TOKEN_B.to_owned(), grant(ORG_B)),
            ]),
            ..Options::default()
        })
        .await;
        let config = sms_console::Config {
            api_url: stack.grpc_url.clone(),
            optout_url: stack.optout_url.clone(),
            lifetimes: sms_console::session::Lifetimes {
                idle,
                absolute: Duration::from_secs(3600),
            },
            secure_cookies: false,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(sms_console::run(config, listener, shutdown.clone()));
        Console {
            stack,
            url,
            shutdown,
        }
    }

    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.stack.shutdown().await;
    }
}

/// A local time two months ahead (`YYYY-MM-DDT09:00`), within the scheduling horizon.
pub fn later() -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(60 * 24);
    format!("{}T09:00", &t.to_string()[..10])
}

/// Sends (as the request's caller) and returns the accepted message.
pub async fn send(
    stack: &Stack,
    request: tonic::Request<SendMessageRequest>,
) -> sms_proto::v1::Message {
    stack
        .messaging()
        .await
        .send_message(request)
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap()
}

/// A text from `from` to `to`; sent at 09:00 New York time two months ahead when `later`.
pub fn text(from: &str, to: &str, body: &str, later: bool) -> SendMessageRequest {
    SendMessageRequest {
        from: from.into(),
        to: to.into(),
        body: body.into(),
        send_at_local: later.then(|| LocalDateTime {
            date_time: self::later(),
            time_zone: "America/New_York".into(),
        }),
        ..Default::default()
    }
}

/// `message` as a call of `org`'s CRM (its token) for `user`.
pub fn authed<T>(message: T, org: &str, user: &str) -> tonic::Request<T> {
    let token = if org == ORG { TOKEN_A } else { TOKEN_B };
    let mut r = sms_testkit::as_caller(message, org, user);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// Organization A's user's call.
pub fn as_a<T>(message: T) -> tonic::Request<T> {
    authed(message, ORG, USER)
}

/// Organization B's user's call.
pub fn as_b<T>(message: T) -> tonic::Request<T> {
    authed(message, ORG_B, USER_B)
}

/// Adds a number of `org`, owned by `user`.
pub async fn add_number(stack: &Stack, org: &str, user: &str, number: &str) {
    stack
        .numbers()
        .await
        .add_number(authed(
            AddNumberRequest {
                number: number.into(),
                kind: NumberKind::Internal as i32,
                owner: Some(add_number_request::Owner::OwnerUserId(user.into())),
                send_rate: Some(1000.0),
                ..Default::default()
            },
            org,
            user,
        ))
        .await
        .unwrap();
}

/// A response, read whole.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find(r#"name="csrf" value=""#)
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.body));
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

/// A browser without JavaScript: keeps cookies, follows nothing.
pub struct Http {
    client: reqwest::Client,
    base: String,
    pub cookies: HashMap<String, String>,
}

impl Http {
    pub fn new(base: &str) -> Http {
        Http {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn read(&mut self, r: reqwest::Response) -> Page {
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        Page {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.read(r).await
    }

    pub async fn get_htmx(&mut self, path: &str) -> Page {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("hx-request", "true")
            .send()
            .await
            .unwrap();
        self.read(r).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.read(r).await
    }

    /// A form posted by htmx: the CSRF token in its header.
    pub async fn post_htmx(&mut self, path: &str, form: &[(&str, &str)], csrf: &str) -> Page {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("hx-request", "true")
            .header("x-csrf-token", csrf)
            .form(form)
            .send()
            .await
            .unwrap();
        self.read(r).await
    }

    /// Signs in as an administrator of `org`; returns the sign-in's answer.
    pub async fn sign_in(&mut self, token: &str, org: &str, user: &str) -> Page {
        self.sign_in_as(token, org, user, true).await
    }

    /// Signs in, as an administrator or not; returns the sign-in's answer.
    pub async fn sign_in_as(&mut self, token: &str, org: &str, user: &str, admin: bool) -> Page {
        let form = self.get("/signin").await;
        assert_eq!(form.status, 200);
        let csrf = form.csrf();
        let mut fields = vec![
            ("csrf", csrf.as_str()),
            ("token", token),
            ("organization_id", org),
            ("user_id", user),
        ];
        if admin {
            fields.push(("admin", "1"));
        }
        self.post("/signin", &fields).await
    }
}
