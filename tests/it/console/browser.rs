//! The console in headless Chromium (Debian's `chromium` and `chromium-driver`), driven over
//! WebDriver (fantoccini): sign in, send and watch the status reach delivered, open a
//! conversation and reply, see the segment counter change at 160/161 and on an emoji, cancel
//! a scheduled message, opt a contact out and see the next send refused.
//!
//! `SMS_CONSOLE_SCREENSHOTS=docs/console` writes each page's screenshot there (the README's).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use sms_proto::v1::{GetMessageRequest, MessageStatus};
use sms_testkit::{ORG, USER};

use super::{Console, TOKEN_A, add_number, as_a, send, text};

const OURS: &str = "+12015550100";
const CONTACT: &str = "+12015550123";
const LANDLINE: &str = "+12015550177";
const WAIT: Duration = Duration::from_secs(20);

/// chromedriver on a free loopback port, stopped when dropped.
struct Driver {
    child: tokio::process::Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver did not start ({e}): install Debian's chromium and \
                     chromium-driver (.ci/run does)"
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Driver { child, url }
    }

    async fn browser(&self, profile: &std::path::Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Where screenshots go, if anywhere.
fn screenshots() -> Option<PathBuf> {
    std::env::var_os("SMS_CONSOLE_SCREENSHOTS").map(|d| {
        let dir = PathBuf::from(d);
        let dir = if dir.is_relative() {
            // Tests run in tests/; the README's paths are the workspace's.
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(dir)
        } else {
            dir
        };
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

async fn shot(c: &Client, name: &str) {
    if let Some(dir) = screenshots() {
        let png = c.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

async fn css(c: &Client, selector: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
}

/// Waits until `selector`'s text is `expected`.
async fn text_is(c: &Client, selector: &str, expected: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = match c.find(Locator::Css(selector)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.trim() == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{selector}: {text:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the page's text contains `expected`.
async fn page_has(c: &Client, expected: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        // Between two pages there may be no body for a moment.
        let body = match c.find(Locator::Css("body")).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if body.contains(expected) {
            return;
        }
        assert!(Instant::now() < deadline, "{expected:?} not in {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fill(c: &Client, selector: &str, value: &str) {
    let e = css(c, selector).await;
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_uses_the_console_in_chromium() {
    let console = Console::start(Duration::from_secs(600)).await;
    let stack = &console.stack;
    add_number(stack, ORG, USER, OURS).await;
    let driver = Driver::start().await;
    let profile = std::env::temp_dir().join(format!("sms-console-{}", uuid::Uuid::new_v4()));
    let c = driver.browser(&profile).await;
    let url = |path: &str| format!("{}{path}", console.url);

    // Sign in.
    c.goto(&url("/signin")).await.unwrap();
    fill(&c, "#token", TOKEN_A).await;
    fill(&c, "#organization_id", ORG).await;
    fill(&c, "#user_id", USER).await;
    // An administrator: the walk-through opts contacts in and out and edits replies.
    css(&c, "#admin").await.click().await.unwrap();
    shot(&c, "signin").await;
    css(&c, "button[type=submit]").await.click().await.unwrap();
    css(&c, "nav a.active[href='/messages']").await;

    // Send a message and watch its status reach delivered (the page follows it by itself).
    c.goto(&url("/compose")).await.unwrap();
    fill(&c, "#to", CONTACT).await;
    css(&c, &format!("#from option[value='{OURS}']"))
        .await
        .click()
        .await
        .unwrap();
    fill(&c, "#body", "Hello from the console").await;
    text_is(&c, "#segments", "1").await;
    shot(&c, "compose").await;
    css(&c, "form[action='/compose'] button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    css(&c, "#live [data-status]").await;
    text_is(&c, "#live [data-status]", "delivered").await;
    shot(&c, "message").await;

    // A landline: the message fails, and its page says why in plain words, with the code.
    stack.sim.update(|b| {
        b.landlines.insert(LANDLINE.to_owned());
    });
    c.goto(&url("/compose")).await.unwrap();
    fill(&c, "#to", LANDLINE).await;
    fill(&c, "#body", "Are you there?").await;
    css(&c, "form[action='/compose'] button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    text_is(&c, "#live [data-status]", "failed").await;
    page_has(&c, "landline").await;
    page_has(&c, "Carrier error code 30006.").await;
    shot(&c, "message-failed").await;

    // The contact answers; open the conversation and reply.
    let (code, _) = stack
        .sim
        .reply(CONTACT, OURS, "Can we talk tomorrow?", Vec::new())
        .await
        .unwrap();
    assert_eq!(code, 200);
    let deadline = Instant::now() + WAIT;
    loop {
        c.goto(&url("/conversations")).await.unwrap();
        let body = css(&c, "main").await.text().await.unwrap();
        if body.contains("Can we talk tomorrow?") {
            break;
        }
        assert!(Instant::now() < deadline, "the reply never showed: {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    shot(&c, "conversations").await;
    css(
        &c,
        &format!("a[href*='contact={}']", CONTACT.replace('+', "%2B")),
    )
    .await
    .click()
    .await
    .unwrap();
    css(&c, ".bubble.inbound").await;
    fill(&c, "#body", "Sure, 10am works.").await;
    css(&c, "form[action='/conversation/reply'] button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    page_has(&c, "Sure, 10am works.").await;
    let outbound = c.find_all(Locator::Css(".bubble.outbound")).await.unwrap();
    assert_eq!(outbound.len(), 2, "the first message and the reply");
    shot(&c, "conversation").await;

    // The inbox: the contact's message, marked done in place.
    c.goto(&url("/inbox")).await.unwrap();
    page_has(&c, "Can we talk tomorrow?").await;
    shot(&c, "inbox").await;
    css(&c, "td form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    text_is(&c, "td form button[type=submit]", "Reopen").await;

    // The template editor counts as you type: 160 GSM-7 characters are one segment, 161 are
    // two; one emoji makes it UCS-2.
    c.goto(&url("/templates/new")).await.unwrap();
    fill(&c, "#name", "Follow-up").await;
    let body = css(&c, "#body").await;
    body.send_keys(&"a".repeat(160)).await.unwrap();
    text_is(&c, "#length", "160").await;
    text_is(&c, "#segments", "1").await;
    text_is(&c, "#left", "0").await;
    text_is(&c, "#encoding", "GSM-7").await;
    body.send_keys("a").await.unwrap();
    text_is(&c, "#segments", "2").await;
    text_is(&c, "#left", "145").await;
    // ChromeDriver types only characters of the Basic Multilingual Plane: the emoji goes in
    // as a person's paste would, with the input event the page listens to.
    c.execute(
        "const b = document.getElementById('body'); \
         b.value = 'Hi {{ contact.first_name }}, see you at 10 \u{1F600}'; \
         b.dispatchEvent(new Event('input', { bubbles: true }));",
        vec![],
    )
    .await
    .unwrap();
    text_is(&c, "#encoding", "UCS-2").await;
    text_is(&c, "#segments", "1").await;
    text_is(&c, "#non-gsm mark", "\u{1F600}").await;
    page_has(&c, "Hi Jane, see you at 10").await;
    shot(&c, "template-editor").await;
    css(&c, "form.stack button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    page_has(&c, "Follow-up").await;
    shot(&c, "templates").await;

    // Cancel a scheduled message.
    let scheduled = send(
        stack,
        as_a(text(OURS, CONTACT, "Reminder: our call tomorrow", true)),
    )
    .await;
    c.goto(&url("/scheduled")).await.unwrap();
    page_has(&c, "Reminder: our call tomorrow").await;
    shot(&c, "scheduled").await;
    css(&c, &format!("tr[data-id='{}'] button.danger", scheduled.id))
        .await
        .click()
        .await
        .unwrap();
    page_has(&c, "Nothing scheduled.").await;
    let m = stack
        .messaging()
        .await
        .get_message(as_a(GetMessageRequest {
            id: scheduled.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(m.status, MessageStatus::Canceled as i32);

    // Opt the contact out; the next send to them is refused, with the reason at the field.
    c.goto(&url("/optouts")).await.unwrap();
    fill(&c, "#contact_number", CONTACT).await;
    fill(&c, "#reason", "Asked on the phone").await;
    css(
        &c,
        "form[action='/optouts/add'] button[type=submit]:not([formaction])",
    )
    .await
    .click()
    .await
    .unwrap();
    page_has(&c, "is opted out.").await;
    shot(&c, "optouts").await;
    // The composer hears of opt-outs over the bus, a moment after the registry records one (a
    // loaded machine makes the moment longer): the console's refusal is checked once it has.
    let api = stack.messaging().await;
    sms_testkit::eventually(WAIT, "the composer to hear of the opt-out", || {
        let mut api = api.clone();
        async move {
            let request = sms_testkit::sms(OURS, CONTACT, "are you still there?");
            let refusal = api.send_message(as_a(request)).await.err()?;
            tonic_types::StatusExt::get_details_error_info(&refusal)
                .filter(|info| info.reason == "OPTED_OUT")
                .map(|_| ())
        }
    })
    .await;
    c.goto(&url("/compose")).await.unwrap();
    fill(&c, "#to", CONTACT).await;
    fill(&c, "#body", "One more thing").await;
    css(&c, "form[action='/compose'] button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    let refusal = css(&c, "#to-error").await.text().await.unwrap();
    assert!(refusal.contains("opted out"), "{refusal}");

    // The other pages, for the README.
    for (path, name) in [
        ("/messages", "messages"),
        ("/numbers", "numbers"),
        ("/usage", "usage"),
    ] {
        c.goto(&url(path)).await.unwrap();
        css(&c, "main h1").await;
        shot(&c, name).await;
    }
    page_has(&c, "segments").await;
    // At phone width.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&url("/messages")).await.unwrap();
    css(&c, "main h1").await;
    shot(&c, "phone-messages").await;
    c.goto(&url(&format!(
        "/conversation?ours={}&contact={}",
        OURS.replace('+', "%2B"),
        CONTACT.replace('+', "%2B")
    )))
    .await
    .unwrap();
    css(&c, ".bubble.inbound").await;
    shot(&c, "phone-conversation").await;

    c.close().await.unwrap();
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
    console.shutdown().await;
}
