//! Every route of the console over HTTP, without a browser: who may see what, CSRF, sessions,
//! escaping, and bad input shown next to its field.

use std::time::Duration;

use sms_proto::v1::{CreateTemplateRequest, ListTemplatesRequest};
use sms_testkit::{ORG, USER, eventually};

use super::{Console, Http, ORG_B, TOKEN_A, TOKEN_B, USER_B, add_number, as_a, as_b, send, text};

const OURS: &str = "+12015550100";
const OURS_B: &str = "+12015550111";
const CONTACT: &str = "+12015550123";

fn enc(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// Every page a signed-in user can open, with what it needs to exist.
fn pages(message: &str, template: &str, media: &str) -> Vec<String> {
    vec![
        "/messages".into(),
        format!(
            "/messages?status=failed&direction=outbound&errors_only=1&our_number={}&contact_number={}&lead_id=l1&created_after=2026-01-01&created_before=2030-01-01",
            enc(OURS),
            enc(CONTACT)
        ),
        format!("/messages/{message}"),
        format!("/messages/{message}/status"),
        "/conversations".into(),
        format!("/conversation?ours={}&contact={}", enc(OURS), enc(CONTACT)),
        "/inbox".into(),
        "/inbox?include_done=1".into(),
        "/compose".into(),
        "/templates".into(),
        "/templates/new".into(),
        format!("/templates/{template}"),
        "/scheduled".into(),
        "/numbers".into(),
        "/optouts".into(),
        format!("/optouts?q={}", enc(CONTACT)),
        "/usage".into(),
        "/usage?from_month=2026-01&to_month=2026-12".into(),
        format!("/media/{media}"),
    ]
}

/// Every form, with fields that would be accepted (but for the CSRF token).
fn forms(
    message: &str,
    template: &str,
    inbound: &str,
) -> Vec<(String, Vec<(&'static str, String)>)> {
    vec![
        ("/signout".into(), vec![]),
        (
            "/conversation/reply".into(),
            vec![
                ("ours", OURS.into()),
                ("contact", CONTACT.into()),
                ("body", "csrf?".into()),
                ("key", "k1".into()),
            ],
        ),
        (format!("/inbox/{inbound}/done"), vec![("done", "1".into())]),
        (
            "/compose".into(),
            vec![
                ("to", CONTACT.into()),
                ("body", "csrf?".into()),
                ("when", "now".into()),
                ("key", "k2".into()),
            ],
        ),
        ("/preview".into(), vec![("body", "hello".into())]),
        (
            "/templates".into(),
            vec![("name", "t-csrf".into()), ("body", "hi".into())],
        ),
        (
            format!("/templates/{template}"),
            vec![("name", "renamed".into()), ("body", "hi".into())],
        ),
        (format!("/templates/{template}/delete"), vec![]),
        (format!("/scheduled/{message}/cancel"), vec![]),
        (
            format!("/scheduled/{message}/reschedule"),
            vec![
                ("send_at", super::later()),
                ("time_zone", "America/New_York".into()),
            ],
        ),
        (
            "/optouts/add".into(),
            vec![
                ("contact_number", CONTACT.into()),
                ("reason", "asked".into()),
            ],
        ),
        (
            "/optouts/remove".into(),
            vec![
                ("contact_number", CONTACT.into()),
                ("reason", "asked".into()),
            ],
        ),
        (
            "/optouts/replies".into(),
            vec![
                ("help_text", "help".into()),
                ("opt_out_confirmation", "bye".into()),
            ],
        ),
    ]
}

/// The templates a caller sees.
async fn templates_of(
    stack: &sms_testkit::Stack,
    request: tonic::Request<ListTemplatesRequest>,
) -> Vec<sms_proto::v1::Template> {
    stack
        .templates()
        .await
        .list_templates(request)
        .await
        .unwrap()
        .into_inner()
        .templates
}

fn form<'a>(
    fields: &'a [(&'static str, String)],
    csrf: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut v: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if let Some(t) = csrf {
        v.push(("csrf", t));
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_needs_a_session_a_csrf_token_and_stays_in_its_organization() {
    let console = Console::start(Duration::from_secs(600)).await;
    let stack = &console.stack;
    add_number(stack, ORG, USER, OURS).await;
    add_number(stack, ORG_B, USER_B, OURS_B).await;
    let mut templates = stack.templates().await;

    // Organization A: a message, a reply from the contact, a scheduled send, a template.
    let sent = send(stack, as_a(text(OURS, CONTACT, "Hello from A", false))).await;
    let (code, _) = stack
        .sim
        .reply(CONTACT, OURS, "Reply to A", Vec::new())
        .await
        .unwrap();
    assert_eq!(code, 200);
    let scheduled = send(stack, as_a(text(OURS, CONTACT, "Later", true))).await;
    let template = templates
        .create_template(as_a(CreateTemplateRequest {
            name: r#"<script>alert("x")</script>"#.into(),
            body: "Hi {{ contact.first_name }} <b>&amp;</b>".into(),
            shared: true,
        }))
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    // Organization B: the same kinds of things, which A's sessions must never see.
    let sent_b = send(stack, as_b(text(OURS_B, CONTACT, "Hello from B", false))).await;
    let template_b = templates
        .create_template(as_b(CreateTemplateRequest {
            name: "B's".into(),
            body: "B".into(),
            shared: true,
        }))
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    let inbound = eventually(Duration::from_secs(15), "the reply stored", || async {
        let m = stack
            .messaging()
            .await
            .list_inbox(as_a(sms_proto::v1::ListInboxRequest::default()))
            .await
            .ok()?;
        m.into_inner().messages.into_iter().next()
    })
    .await;

    let media = uuid::Uuid::new_v4().to_string();
    let mut anon = Http::new(&console.url);
    // No session: every page goes to sign-in; htmx requests are told to load it.
    for path in pages(&sent.id, &template.id, &media) {
        let p = anon.get(&path).await;
        assert_eq!((p.status, p.location()), (303, "/signin"), "{path}");
        let p = anon.get_htmx(&path).await;
        assert_eq!(p.status, 401, "{path}");
        assert_eq!(p.headers["hx-redirect"], "/signin", "{path}");
    }
    for (path, fields) in forms(&sent.id, &template.id, &inbound.id) {
        let p = anon.post(&path, &form(&fields, Some("made-up"))).await;
        assert_eq!((p.status, p.location()), (303, "/signin"), "{path}");
    }

    // Sign-in: its form's token must pair with its cookie; the API judges the token.
    let mut http = Http::new(&console.url);
    let p = http.get("/signin").await;
    assert_eq!(p.status, 200);
    let signin_cookie = p.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        signin_cookie.contains("HttpOnly") && signin_cookie.contains("SameSite=Strict"),
        "{signin_cookie}"
    );
    let mut stranger = Http::new(&console.url);
    let p = stranger
        .post(
            "/signin",
            &[
                ("csrf", &p.csrf()),
                ("token", TOKEN_A),
                ("organization_id", ORG),
                ("user_id", USER),
            ],
        )
        .await;
    assert_eq!(
        p.status, 403,
        "a sign-in form without its cookie is refused"
    );
    let p = http.sign_in("not-a-token", ORG, USER).await;
    assert_eq!(p.status, 422);
    assert!(
        p.body.contains(r#"id="token-error""#) && p.body.contains("This token is not accepted."),
        "{}",
        p.body
    );
    let p = http.sign_in(TOKEN_B, ORG, USER).await;
    assert_eq!(p.status, 422);
    assert!(
        p.body.contains(r#"id="organization_id-error""#),
        "{}",
        p.body
    );
    let p = http.sign_in(TOKEN_A, "", "a user with spaces").await;
    assert_eq!(p.status, 422);
    assert!(
        p.body.contains("Organization is required.") && p.body.contains(r#"id="user_id-error""#),
        "{}",
        p.body
    );
    let p = http.sign_in(TOKEN_A, ORG, USER).await;
    assert_eq!((p.status, p.location()), (303, "/messages"));
    let cookies: Vec<&str> = p
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("sms_console_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Strict")
            && session.contains("Path=/"),
        "{session}"
    );
    assert!(
        !session.contains(TOKEN_A),
        "the cookie names the session; the token stays on the server"
    );

    // Signed in: every page answers, with the console's headers.
    for path in pages(&sent.id, &template.id, &media) {
        let p = http.get(&path).await;
        let expected = if path.starts_with("/media/") {
            404
        } else {
            200
        };
        assert_eq!(p.status, expected, "{path}: {}", p.body);
        assert!(
            p.headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'"),
            "{path}"
        );
        assert_eq!(p.headers["x-frame-options"], "DENY");
    }
    let p = http.get("/messages").await;
    assert!(
        p.body.contains(&sent.id) && !p.body.contains(&sent_b.id),
        "A's log shows A's messages only"
    );
    assert!(p.body.contains("Hello from A") && !p.body.contains("Hello from B"));
    let p = http.get(&format!("/messages/{}", sent.id)).await;
    assert!(
        p.body.contains("Timeline") && p.body.contains("GSM-7"),
        "{}",
        p.body
    );
    let p = http
        .get(&format!(
            "/conversation?ours={}&contact={}",
            enc(OURS),
            enc(CONTACT)
        ))
        .await;
    assert!(
        p.body.contains("Reply to A") && p.body.contains("Hello from A"),
        "{}",
        p.body
    );
    let p = http.get("/scheduled").await;
    assert!(p.body.contains(&scheduled.id), "{}", p.body);

    // Another organization's things are not found, whatever their ids.
    for path in [
        format!("/messages/{}", sent_b.id),
        format!("/messages/{}/status", sent_b.id),
        format!("/templates/{}", template_b.id),
        format!(
            "/conversation?ours={}&contact={}",
            enc(OURS_B),
            enc(CONTACT)
        ),
        "/messages/not-an-id".to_owned(),
        "/templates/not-an-id".to_owned(),
        "/media/not-an-id".to_owned(),
        "/no-such-page".to_owned(),
    ] {
        let p = http.get(&path).await;
        assert_eq!(p.status, 404, "{path}: {}", p.body);
        assert!(!p.body.contains("Hello from B"), "{path}");
    }
    for (path, fields) in [
        (
            format!("/templates/{}", template_b.id),
            vec![("name", "stolen".to_owned()), ("body", "x".to_owned())],
        ),
        (format!("/templates/{}/delete", template_b.id), vec![]),
        (format!("/scheduled/{}/cancel", sent_b.id), vec![]),
        (
            format!("/inbox/{}/done", sent_b.id),
            vec![("done", "1".to_owned())],
        ),
    ] {
        let csrf = http.get("/messages").await.csrf();
        let p = http.post(&path, &form(&fields, Some(&csrf))).await;
        assert_eq!(p.status, 404, "{path}: {}", p.body);
    }
    let b = templates_of(stack, as_b(ListTemplatesRequest {})).await;
    assert_eq!(
        b.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["B's"],
        "B's template untouched"
    );

    // Every form refuses a missing or wrong CSRF token, and changes nothing.
    let csrf = http.get("/messages").await.csrf();
    // The same token with its last character changed.
    let last = if csrf.ends_with('x') { 'y' } else { 'x' };
    let wrong = format!("{}{last}", &csrf[..csrf.len() - 1]);
    for (path, fields) in forms(&scheduled.id, &template.id, &inbound.id) {
        for token in [None, Some(wrong.as_str()), Some("")] {
            let p = http.post(&path, &form(&fields, token)).await;
            assert_eq!(p.status, 403, "{path} with {token:?}: {}", p.body);
        }
    }
    let a = templates_of(stack, as_a(ListTemplatesRequest {})).await;
    assert_eq!(
        a.len(),
        1,
        "no template created, renamed or deleted without the token"
    );
    assert_eq!(a[0].name, template.name);
    let p = http.get("/scheduled").await;
    assert!(p.body.contains(&scheduled.id), "still scheduled");
    // The same token in the htmx header is accepted.
    let p = http
        .post_htmx("/preview", &[("body", "hello")], &csrf)
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains(r#"id="segments""#), "{}", p.body);

    // What users typed is escaped wherever it is shown.
    let p = http.get("/templates").await;
    assert!(
        p.body
            .contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"),
        "{}",
        p.body
    );
    assert!(!p.body.contains("<script>alert"), "never unescaped");
    let p = http.get(&format!("/templates/{}", template.id)).await;
    assert!(
        p.body.contains("&lt;b&gt;&amp;amp;&lt;/b&gt;") && !p.body.contains("<b>&amp;</b>"),
        "{}",
        p.body
    );

    // Bad input: the API's reason, next to its field.
    let compose_from = |to: &str, from: &str, body: &str, csrf: &str| {
        vec![
            ("to", to.to_owned()),
            ("from", from.to_owned()),
            ("body", body.to_owned()),
            ("when", "now".to_owned()),
            ("key", uuid::Uuid::new_v4().to_string()),
            ("csrf", csrf.to_owned()),
        ]
    };
    let compose = |to: &str, body: &str, csrf: &str| compose_from(to, OURS, body, csrf);
    for (fields, field, words) in [
        (compose("not a number", "hi", &csrf), "to", "digits only"),
        (compose(CONTACT, "", &csrf), "body", "empty"),
        (compose(CONTACT, &"x".repeat(1001), &csrf), "body", "1000"),
        (compose_from(CONTACT, OURS_B, "hi", &csrf), "from", ""),
    ] {
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let p = http.post("/compose", &pairs).await;
        assert_eq!(p.status, 422, "{pairs:?}: {}", p.body);
        let marker = format!(r#"id="{field}-error""#);
        let at = p
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {marker} in {}", p.body));
        assert!(
            p.body[at..].to_lowercase().contains(words),
            "{words}: {}",
            &p.body[at..at + 300]
        );
    }
    let mut later = compose(CONTACT, "hi", &csrf);
    later.extend([
        ("when", "later".to_owned()),
        ("send_at", super::later()),
        ("time_zone", "Mars/Olympus".to_owned()),
    ]);
    later.retain(|(k, v)| *k != "when" || v == "later");
    let pairs: Vec<(&str, &str)> = later.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = http.post("/compose", &pairs).await;
    assert_eq!(p.status, 422, "{}", p.body);
    assert!(p.body.contains(r#"id="time_zone-error""#), "{}", p.body);
    let p = http
        .post(
            "/templates",
            &[
                ("csrf", &csrf),
                ("name", "broken"),
                ("body", "Hi {{ contact.nickname }}"),
            ],
        )
        .await;
    assert_eq!(p.status, 422, "{}", p.body);
    assert!(p.body.contains(r#"id="body-error""#), "{}", p.body);
    let p = http
        .post(
            "/optouts/add",
            &[("csrf", &csrf), ("contact_number", "12"), ("reason", "x")],
        )
        .await;
    assert_eq!(p.status, 422, "{}", p.body);
    assert!(
        p.body.contains(r#"id="contact_number-error""#),
        "{}",
        p.body
    );
    let p = http.get("/messages?created_after=yesterday").await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains(r#"id="created_after-error""#), "{}", p.body);
    let p = http.get("/messages?contact_number=nonsense").await;
    assert!(
        p.body.contains(r#"id="contact_number-error""#),
        "{}",
        p.body
    );

    // Forms that work: done in the inbox (htmx swaps the row), a template saved.
    let p = http
        .post_htmx(
            &format!("/inbox/{}/done", inbound.id),
            &[("done", "1")],
            &csrf,
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body.starts_with("<tr") && p.body.contains("Reopen"),
        "{}",
        p.body
    );
    let p = http
        .post(
            "/templates",
            &[
                ("csrf", &csrf),
                ("name", "Welcome"),
                ("body", "Hi {{ contact.first_name }}"),
            ],
        )
        .await;
    assert_eq!((p.status, p.location()), (303, "/templates"), "{}", p.body);

    // Signing out ends the session on the server: the old cookie opens nothing.
    let old = http.cookies.clone();
    let p = http.post("/signout", &[("csrf", &csrf)]).await;
    assert_eq!((p.status, p.location()), (303, "/signin"));
    let mut replay = Http::new(&console.url);
    replay.cookies = old;
    let p = replay.get("/messages").await;
    assert_eq!(p.status, 303);
    assert!(p.location().starts_with("/signin"), "{}", p.location());
    console.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_session_goes_back_to_sign_in() {
    let console = Console::start(Duration::from_secs(1)).await;
    let mut http = Http::new(&console.url);
    let p = http.sign_in(TOKEN_A, ORG, USER).await;
    assert_eq!(p.status, 303);
    assert_eq!(http.get("/numbers").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let p = http.get("/numbers").await;
    assert_eq!((p.status, p.location()), (303, "/signin?expired=1"));
    let p = http.get("/signin?expired=1").await;
    assert!(p.body.contains("Your session ended"), "{}", p.body);
    console.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_never_breaks_a_page_nor_comes_back_unescaped() {
    let console = Console::start(Duration::from_secs(600)).await;
    add_number(&console.stack, ORG, USER, OURS).await;
    let mut http = Http::new(&console.url);
    assert_eq!(http.sign_in(TOKEN_A, ORG, USER).await.status, 303);
    let csrf = http.get("/messages").await.csrf();
    // Long: past every field's limit, short enough for a URL.
    let huge = "é".repeat(3_000);
    let values = [
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
        "\u{0}\u{7}\u{1b}[31m",
        "\u{202e}evil",
        "{{ contact.first_name",
        "+1 (201) 555-0100 ext. 9",
        "😀😀😀",
        huge.as_str(),
        "",
    ];
    let query_fields = [
        "status",
        "direction",
        "our_number",
        "contact_number",
        "lead_id",
        "created_after",
        "created_before",
        "page",
    ];
    let form_paths: [(&str, &[&str]); 8] = [
        (
            "/compose",
            &[
                "to",
                "from",
                "body",
                "when",
                "send_at",
                "time_zone",
                "key",
                "smart_encoding",
            ],
        ),
        ("/preview", &["body"]),
        ("/templates", &["name", "body", "shared"]),
        ("/conversation/reply", &["ours", "contact", "body", "key"]),
        ("/optouts/add", &["contact_number", "reason"]),
        ("/optouts/remove", &["contact_number", "reason"]),
        ("/optouts/replies", &["help_text", "opt_out_confirmation"]),
        (
            "/scheduled/00000000-0000-0000-0000-000000000000/reschedule",
            &["send_at", "time_zone"],
        ),
    ];
    let mut cases = 0;
    for v in values {
        for f in query_fields {
            for path in [
                "/messages",
                "/conversations",
                "/inbox",
                "/optouts",
                "/usage",
                "/scheduled",
            ] {
                let q = format!("{path}?{f}={}&q={}&from_month={}", enc(v), enc(v), enc(v));
                let p = http.get(&q).await;
                assert!(p.status < 500, "{q:.120}: {}", p.status);
                assert!(
                    !p.body.contains("<script>alert") && !p.body.contains("<img src=x"),
                    "{q:.120}"
                );
                cases += 1;
            }
        }
        for (path, fields) in form_paths {
            for f in fields.iter() {
                let p = http.post(path, &[(f, v), ("csrf", &csrf)]).await;
                assert!(
                    p.status < 500,
                    "{path} {f}={v:.40}: {} {:.300}",
                    p.status,
                    p.body
                );
                assert!(
                    !p.body.contains("<script>alert") && !p.body.contains("<img src=x"),
                    "{path} {f}"
                );
                cases += 1;
            }
        }
        for path in ["/messages/", "/templates/", "/media/", "/messages/x/"] {
            let p = http.get(&format!("{path}{}", enc(v))).await;
            assert!(p.status < 500, "{path}{v:.40}: {}", p.status);
            cases += 1;
        }
    }
    // A form larger than the console reads is refused as such.
    let big = "x".repeat(70_000);
    let p = http
        .post("/preview", &[("body", big.as_str()), ("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 400, "{:.300}", p.body);
    assert!(cases > 600, "{cases} cases");
    console.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forms_and_pages_do_what_they_say() {
    use sms_proto::v1::{
        AddNumberRequest, GetConversationRequest, GetMessageRequest, NumberKind, add_number_request,
    };
    let console = Console::start(Duration::from_secs(600)).await;
    let stack = &console.stack;
    add_number(stack, ORG, USER, OURS).await;
    // A number that cannot text: the numbers page warns about it.
    stack
        .numbers()
        .await
        .add_number(as_a(AddNumberRequest {
            number: "+12015550155".into(),
            kind: NumberKind::Internal as i32,
            owner: Some(add_number_request::Owner::OwnerUserId(USER.into())),
            sms_capable: Some(false),
            ..Default::default()
        }))
        .await
        .unwrap();
    let mut http = Http::new(&console.url);
    assert_eq!(http.sign_in(TOKEN_A, ORG, USER).await.status, 303);
    let p = http.get("/numbers").await;
    let row = &p.body[p.body.find(r#"data-number="+12015550155""#).unwrap()..];
    assert!(
        row[..row.find("</tr>").unwrap()].contains("Cannot send SMS"),
        "{row:.600}"
    );
    let row = &p.body[p.body.find(&format!(r#"data-number="{OURS}""#)).unwrap()..];
    assert!(!row[..row.find("</tr>").unwrap()].contains("Cannot send SMS"));

    // An image from the contact: inline in the thread, and a download.
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"
        .iter()
        .copied()
        .chain(std::iter::repeat_n(7u8, 500))
        .collect();
    let (code, _) = stack
        .sim
        .reply(
            CONTACT,
            OURS,
            "the photo",
            vec![("image/png".into(), png.clone())],
        )
        .await
        .unwrap();
    assert_eq!(code, 200);
    let attachment = eventually(Duration::from_secs(20), "the image stored", || async {
        let r = stack
            .messaging()
            .await
            .get_conversation(as_a(GetConversationRequest {
                our_number: OURS.into(),
                contact_number: CONTACT.into(),
                ..Default::default()
            }))
            .await
            .ok()?
            .into_inner();
        r.messages
            .into_iter()
            .flat_map(|m| m.attachments)
            .find(|a| a.state == "stored")
    })
    .await;
    let p = http
        .get(&format!(
            "/conversation?ours={}&contact={}",
            enc(OURS),
            enc(CONTACT)
        ))
        .await;
    assert!(
        p.body
            .contains(&format!(r#"<img src="/media/{}""#, attachment.id)),
        "{:.2000}",
        p.body
    );
    assert!(
        p.body
            .contains(&format!(r#"href="/media/{}?download=1""#, attachment.id))
    );
    let p = http.get(&format!("/media/{}", attachment.id)).await;
    assert_eq!(p.status, 200);
    assert_eq!(p.headers["content-type"], "image/png");
    assert!(
        p.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline")
    );
    assert!(
        p.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    let p = http
        .get(&format!("/media/{}?download=1", attachment.id))
        .await;
    assert_eq!(p.headers["content-type"], "application/octet-stream");
    assert!(
        p.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let mut b = Http::new(&console.url);
    assert_eq!(b.sign_in(TOKEN_B, ORG_B, USER_B).await.status, 303);
    assert_eq!(
        b.get(&format!("/media/{}", attachment.id)).await.status,
        404,
        "another organization's attachment"
    );

    // Reschedule, then cancel.
    let csrf = http.get("/scheduled").await.csrf();
    let p = http
        .post(
            "/compose",
            &[
                ("csrf", &csrf),
                ("to", CONTACT),
                ("from", OURS),
                ("body", "see you"),
                ("when", "later"),
                ("send_at", &super::later()),
                ("time_zone", "America/New_York"),
                ("key", "compose-1"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{:.500}", p.body);
    let id = p.location().trim_start_matches("/messages/").to_owned();
    let get = |id: String| async move {
        stack
            .messaging()
            .await
            .get_message(as_a(GetMessageRequest { id }))
            .await
            .unwrap()
            .into_inner()
            .message
            .unwrap()
    };
    let before = get(id.clone()).await.send_at.unwrap();
    let p = http
        .post(
            &format!("/scheduled/{id}/reschedule"),
            &[
                ("csrf", &csrf),
                ("send_at", &super::later().replace("T09:00", "T17:30")),
                ("time_zone", "America/New_York"),
            ],
        )
        .await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/scheduled"),
        "{:.500}",
        p.body
    );
    let after = get(id.clone()).await.send_at.unwrap();
    assert_eq!(
        after.seconds - before.seconds,
        8 * 3600 + 30 * 60,
        "moved to 17:30 the same day"
    );
    let p = http
        .post(
            &format!("/scheduled/{id}/reschedule"),
            &[
                ("csrf", &csrf),
                ("send_at", "2020-01-01T09:00"),
                ("time_zone", "America/New_York"),
            ],
        )
        .await;
    assert_eq!(p.status, 422);
    assert!(p.body.contains(r#"id="send_at-error""#), "{:.500}", p.body);
    let p = http
        .post(&format!("/scheduled/{id}/cancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 303);
    assert_eq!(
        get(id.clone()).await.status,
        sms_proto::v1::MessageStatus::Canceled as i32
    );
    let p = http
        .post(&format!("/scheduled/{id}/cancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        p.status, 422,
        "a canceled message cannot be canceled again: {:.500}",
        p.body
    );

    // Upcoming sends are listed soonest first, though the API lists the newest made first:
    // the morning's is made before the evening's.
    super::send(
        stack,
        as_a(super::text(OURS, CONTACT, "in the morning", true)),
    )
    .await;
    let mut evening = super::text(OURS, CONTACT, "in the evening", true);
    if let Some(l) = evening.send_at_local.as_mut() {
        l.date_time = l.date_time.replace("T09:00", "T19:00");
    }
    super::send(stack, as_a(evening)).await;
    let p = http.get("/scheduled").await;
    let (morning, evening) = (
        p.body.find("in the morning").unwrap(),
        p.body.find("in the evening").unwrap(),
    );
    assert!(morning < evening, "soonest first");

    // Opt out, back in, and the replies.
    let p = http
        .post(
            "/optouts/add",
            &[
                ("csrf", &csrf),
                ("contact_number", CONTACT),
                ("reason", "asked by phone"),
            ],
        )
        .await;
    assert_eq!(p.status, 303);
    let p = http.get(p.location()).await;
    assert!(
        p.body.contains("is opted out.") && p.body.contains("asked by phone"),
        "{:.2000}",
        p.body
    );
    let p = http
        .post(
            "/optouts/remove",
            &[
                ("csrf", &csrf),
                ("contact_number", CONTACT),
                ("reason", "asked to come back"),
            ],
        )
        .await;
    let p = http.get(p.location()).await;
    assert!(
        p.body.contains("is opted back in.") && p.body.contains("opted in"),
        "{:.2000}",
        p.body
    );
    let p = http
        .post(
            "/optouts/replies",
            &[
                ("csrf", &csrf),
                ("help_text", "Acme: call 555-0100 <b>now</b>"),
                ("opt_out_confirmation", "Acme: you will get no more texts."),
            ],
        )
        .await;
    assert_eq!(p.status, 303);
    let p = http.get("/optouts").await;
    assert!(
        p.body
            .contains("Acme: call 555-0100 &lt;b&gt;now&lt;/b&gt;")
            && p.body.contains("you will get no more texts."),
        "{:.3000}",
        p.body
    );
    console.shutdown().await;
}
