//! The one way we fetch a URL that came from outside (attachment URLs, a carrier's media URLs,
//! and later outbound webhook endpoints): https only, every address checked at connect time,
//! redirects followed by hand and checked again, credentials only to the hosts they belong to,
//! sizes capped while streaming, bounded time.
//!
//! Why each rule:
//! * **Addresses are checked when connecting**, in the DNS resolver the HTTP client connects
//!   through, so a name that resolved to a public address for a check and to 127.0.0.1 for the
//!   connection (DNS rebinding) cannot pass: there is one resolution, and it is the checked one.
//!   Loopback, private, link-local, CGNAT, multicast, unspecified, reserved and IPv4-mapped IPv6
//!   addresses are refused; literal IPs in URLs are checked the same way.
//! * **Redirects are followed here, one by one**: each hop is a new URL from outside and gets
//!   every check again; a fetch restricted to some hosts (a carrier's media) stays on them.
//! * **Credentials go only to their host**: they are sent on a hop whose host is in the
//!   request's credential hosts, never on plain http, and never to a host a redirect named.
//! * **Development** may allow http and named loopback hosts (`host:port` entries, exact: the
//!   host and the port): the simulator and the tests run on 127.0.0.1. A hop whose host and
//!   port are such an entry connects through a client of its own, whose resolver exempts only
//!   the entries' names; every other hop goes through the strict one, so a name on the list
//!   (`localhost`) reaches no other port of it, whatever the URL's spelling or a redirect.
//!   Nothing else is exempt.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use sms_core::text::quote;

/// What a fetcher may do.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Plain `http://` URLs are fetched too (development only).
    pub allow_http: bool,
    /// `host:port` entries exempt from the address rules (the host and the port, exactly):
    /// the simulator's and the tests' loopback servers. Empty in production.
    pub allow_private: Vec<String>,
    /// Largest body read.
    pub max_bytes: u64,
    /// Time for the whole fetch, redirects included.
    pub timeout: Duration,
    /// Redirects followed at most.
    pub max_redirects: usize,
}

impl FetchPolicy {
    /// https only, nothing exempt, `max_bytes`, 30 s, 3 redirects.
    pub fn strict(max_bytes: u64) -> Self {
        FetchPolicy {
            allow_http: false,
            allow_private: Vec::new(),
            max_bytes,
            timeout: Duration::from_secs(30),
            max_redirects: 3,
        }
    }

    /// Whether `host` (as a URL names it, without brackets) and `port` are an exempt entry.
    fn exempt(&self, host: &str, port: u16) -> bool {
        let key = authority(host, port);
        self.allow_private
            .iter()
            .any(|entry| entry.eq_ignore_ascii_case(&key))
    }

    /// The host names of the exempt entries: what the exempt client's resolver lets resolve
    /// to anything.
    fn exempt_names(&self) -> HashSet<String> {
        self.allow_private
            .iter()
            .filter_map(|entry| entry.rsplit_once(':'))
            .map(|(host, _)| {
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase()
            })
            .collect()
    }
}

/// `host:port`, with an IPv6 host in brackets (as entries and URLs write it).
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Why an `SMS_FETCH_ALLOW_PRIVATE` entry is not one, if it is not: an entry names a host and
/// a port, both (a bare host would exempt every port of it).
pub fn exemption_error(entry: &str) -> Option<&'static str> {
    let Some((host, port)) = entry.rsplit_once(':') else {
        return Some("expected host:port (the port too: a host alone would exempt all its ports)");
    };
    if host.is_empty() || host == "[" || (host.contains(':') && !host.starts_with('[')) {
        return Some("expected host:port, an IPv6 host in brackets ([::1]:8090)");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => None,
        _ => Some("the port must be a number from 1 to 65535"),
    }
}

/// Why a URL was not fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Not a URL we can use.
    #[error("{} is not a valid absolute URL", quote(.0))]
    InvalidUrl(String),
    /// Spaces (or other white space) before or after the URL: not a URL as given, and a sign
    /// of something pasted in whole, so refused rather than trimmed.
    #[error("{} has white space around it; send the URL alone", quote(.0))]
    Whitespace(String),
    /// Not https (or http in development).
    #[error("{} is not https; only https URLs are fetched", quote(.0))]
    Scheme(String),
    /// The host is not one this fetch may reach (a carrier's media come from its own hosts).
    #[error("{} is not one of the hosts this may be fetched from", quote(.0))]
    HostNotAllowed(String),
    /// The host is, or resolves to, an address we never connect to.
    #[error("{} is a {why} address; it is not fetched", quote(.host))]
    AddressNotAllowed {
        /// The URL's host.
        host: String,
        /// What kind of address it is.
        why: &'static str,
    },
    /// The host does not resolve.
    #[error("{} does not resolve", quote(.0))]
    UnknownHost(String),
    /// Larger than allowed.
    #[error("larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The server answered with an error status.
    #[error("HTTP {0}")]
    Status(u16),
    /// More redirects than allowed, or one without a usable `Location`.
    #[error("too many redirects, or a redirect without a usable Location")]
    Redirects,
    /// No answer in time.
    #[error("no answer within the time allowed")]
    Timeout,
    /// The connection failed.
    #[error("the connection failed: {0}")]
    Network(String),
}

impl FetchError {
    /// Whether trying again later may work (a network hiccup, a 5xx, a 429).
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Timeout | FetchError::Network(_) | FetchError::UnknownHost(_) => true,
            FetchError::Status(s) => *s >= 500 || *s == 429 || *s == 408,
            FetchError::InvalidUrl(_)
            | FetchError::Whitespace(_)
            | FetchError::Scheme(_)
            | FetchError::HostNotAllowed(_)
            | FetchError::AddressNotAllowed { .. }
            | FetchError::TooLarge { .. }
            | FetchError::Redirects => false,
        }
    }
}

/// Why `ip` is never connected to, if it is not.
pub fn forbidden_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() || a == 0 => "unspecified",
        _ if ip.is_private() => "private",
        _ if ip.is_link_local() => "link-local",
        (100, 64..=127, _) => "shared (CGNAT)",
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_broadcast() => "broadcast",
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "reserved",
        (198, 18..=19, _) => "benchmarking",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    Some(match segments {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        // ::ffff:a.b.c.d reaches an IPv4 address through a v6 socket: refused outright.
        [0, 0, 0, 0, 0, 0xffff, _, _] => "IPv4-mapped",
        // The deprecated IPv4-compatible form, and NAT64 of private space, likewise.
        [0, 0, 0, 0, 0, 0, _, _] => "IPv4-compatible",
        [0x64, 0xff9b, ..] => "NAT64",
        [s, ..] if s & 0xfe00 == 0xfc00 => "unique local (private)",
        [s, ..] if s & 0xffc0 == 0xfe80 => "link-local",
        [s, ..] if s & 0xffc0 == 0xfec0 => "site-local",
        [s, ..] if s & 0xff00 == 0xff00 => "multicast",
        [0x2001, 0xdb8, ..] => "documentation",
        _ => return None,
    })
}

/// The resolver a client connects through: a name resolves only to addresses we may reach,
/// except the names it is told to exempt (the exempt client's: the names of the exempt
/// entries, used only for hops whose port is the entry's too).
struct CheckedResolver {
    exempt: Arc<HashSet<String>>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let exempt = self.exempt.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| Box::new(FetchError::UnknownHost(host.clone())))?
                .collect();
            if exempt.contains(&host.to_ascii_lowercase()) {
                return Ok(Box::new(found.into_iter()) as Addrs);
            }
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match forbidden_address(a.ip()) {
                    Some(why) => {
                        refused.get_or_insert(why);
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                let error = match refused {
                    Some(why) => FetchError::AddressNotAllowed { host, why },
                    None => FetchError::UnknownHost(host),
                };
                return Err(Box::new(error) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Basic-auth credentials, and the only hosts they may be sent to.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password (a carrier account's auth token).
    pub password: String,
    /// Hosts (`host` or `host:port`) that receive them.
    pub hosts: Vec<String>,
}

/// What one fetch may reach.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// When set, every hop must be on one of these hosts (`host` or `host:port`).
    pub only_hosts: Option<Vec<String>>,
    /// Credentials for the hosts they belong to.
    pub credentials: Option<Credentials>,
}

/// A fetched body.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The URL the body came from (after redirects).
    pub url: String,
    /// The `Content-Type` the server declared.
    pub content_type: Option<String>,
    /// The body.
    pub bytes: Vec<u8>,
}

/// The answer to a POST.
#[derive(Debug, Clone)]
pub struct Posted {
    /// Its HTTP status.
    pub status: u16,
    /// The start of its body (at most the policy's `max_bytes`).
    pub body_start: Vec<u8>,
}

/// Fetches URLs under a [`FetchPolicy`]. Cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    /// Connects only where the address rules allow.
    client: reqwest::Client,
    /// Development only: the client for hops to an exempt `host:port` (see the module).
    exempt_client: Option<reqwest::Client>,
    policy: Arc<FetchPolicy>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("policy", &self.policy)
            .finish()
    }
}

fn host_matches(list: &[String], host: &str, port: u16) -> bool {
    list.iter()
        .any(|entry| entry.eq_ignore_ascii_case(host) || *entry == format!("{host}:{port}"))
}

impl Fetcher {
    /// A fetcher enforcing `policy`.
    pub fn new(policy: FetchPolicy) -> Result<Self, reqwest::Error> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let policy = Arc::new(policy);
        let client = |exempt: HashSet<String>| {
            reqwest::Client::builder()
                .dns_resolver(Arc::new(CheckedResolver {
                    exempt: Arc::new(exempt),
                }))
                // Redirects are followed by hand, each hop checked; proxies from the
                // environment would connect for us, unchecked.
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(policy.timeout)
                .connect_timeout(Duration::from_secs(10))
                .build()
        };
        let exempt_client = if policy.allow_private.is_empty() {
            None
        } else {
            Some(client(policy.exempt_names())?)
        };
        Ok(Fetcher {
            client: client(HashSet::new())?,
            exempt_client,
            policy,
        })
    }

    /// The client a hop to `url` goes through: the exempt one only when its host and port
    /// are exactly an exempt entry.
    fn client_for(&self, url: &reqwest::Url) -> &reqwest::Client {
        let host = url
            .host_str()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = url.port_or_known_default().unwrap_or(443);
        match &self.exempt_client {
            Some(exempt) if self.policy.exempt(host, port) => exempt,
            _ => &self.client,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// Checks a URL against the policy and the request before any connection.
    pub fn check(&self, url: &str, request: &Request) -> Result<reqwest::Url, FetchError> {
        // The URL parser would quietly drop white space around it.
        if url.trim() != url {
            return Err(FetchError::Whitespace(url.to_owned()));
        }
        let parsed =
            reqwest::Url::parse(url).map_err(|_| FetchError::InvalidUrl(url.to_owned()))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.policy.allow_http => {}
            _ => return Err(FetchError::Scheme(url.to_owned())),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(FetchError::InvalidUrl(url.to_owned()));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| FetchError::InvalidUrl(url.to_owned()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = parsed.port_or_known_default().unwrap_or(443);
        if let Some(only) = &request.only_hosts
            && !host_matches(only, &host, port)
        {
            return Err(FetchError::HostNotAllowed(host));
        }
        let exempt = self.policy.exempt(&host, port);
        match parsed.host() {
            Some(url::Host::Ipv4(ip)) if !exempt => {
                if let Some(why) = forbidden_address(IpAddr::V4(ip)) {
                    return Err(FetchError::AddressNotAllowed { host, why });
                }
            }
            Some(url::Host::Ipv6(ip)) if !exempt => {
                if let Some(why) = forbidden_address(IpAddr::V6(ip)) {
                    return Err(FetchError::AddressNotAllowed { host, why });
                }
            }
            _ => {}
        }
        Ok(parsed)
    }

    /// Fetches `url` with the checks of the policy and of `request`.
    pub async fn get(&self, url: &str, request: &Request) -> Result<Fetched, FetchError> {
        tokio::time::timeout(self.policy.timeout, self.get_unbounded(url, request))
            .await
            .map_err(|_| FetchError::Timeout)?
    }

    async fn get_unbounded(&self, url: &str, request: &Request) -> Result<Fetched, FetchError> {
        let mut current = self.check(url, request)?;
        for _ in 0..=self.policy.max_redirects {
            let mut call = self.client_for(&current).get(current.clone());
            if let Some(c) = &request.credentials {
                let host = current.host_str().unwrap_or("");
                let port = current.port_or_known_default().unwrap_or(443);
                let secure = current.scheme() == "https" || self.policy.allow_http;
                if secure && host_matches(&c.hosts, host, port) {
                    call = call.basic_auth(&c.user, Some(&c.password));
                }
            }
            let response = call.send().await.map_err(transport)?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(FetchError::Redirects)?;
                let next = current.join(location).map_err(|_| FetchError::Redirects)?;
                current = self.check(next.as_str(), request)?;
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            return self.read(current, response).await;
        }
        Err(FetchError::Redirects)
    }

    /// POSTs `body` to `url` with `headers`, under the policy: the URL and every address
    /// checked as for a fetch, no redirect followed (a 3xx is the answer), no credentials, the
    /// answer read up to the policy's `max_bytes` (the rest dropped). Any HTTP status is an
    /// answer; only a refused URL or a failed connection is an error.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> Result<Posted, FetchError> {
        let target = self.check(url, &Request::default())?;
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| FetchError::Network(format!("the {name} header is not valid")))?;
            map.insert(*name, value);
        }
        let call = async {
            let mut response = self
                .client_for(&target)
                .post(target.clone())
                .headers(map)
                .body(body)
                .send()
                .await
                .map_err(transport)?;
            let status = response.status().as_u16();
            let limit = usize::try_from(self.policy.max_bytes).unwrap_or(usize::MAX);
            let mut start = Vec::new();
            // An answer that breaks off, or is unreadable, still has its status (the timeout
            // still bounds the whole call).
            while start.len() < limit {
                match response.chunk().await {
                    Ok(Some(chunk)) => start.extend_from_slice(&chunk),
                    Ok(None) | Err(_) => break,
                }
            }
            start.truncate(limit);
            Ok(Posted {
                status,
                body_start: start,
            })
        };
        tokio::time::timeout(self.policy.timeout, call)
            .await
            .map_err(|_| FetchError::Timeout)?
    }

    async fn read(
        &self,
        url: reqwest::Url,
        mut response: reqwest::Response,
    ) -> Result<Fetched, FetchError> {
        let limit = self.policy.max_bytes;
        let declared_length = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_length.is_some_and(|n| n > limit) {
            return Err(FetchError::TooLarge { limit });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if bytes.len() as u64 + chunk.len() as u64 > limit {
                return Err(FetchError::TooLarge { limit });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            url: url.to_string(),
            content_type,
            bytes,
        })
    }
}

/// A failed request as a [`FetchError`], keeping the resolver's own refusal.
fn transport(e: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(f) = s.downcast_ref::<FetchError>() {
            return f.clone();
        }
        source = s.source();
    }
    if e.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Network(e.to_string())
    }
}

/// The set of `host:port` entries as given in `SMS_FETCH_ALLOW_PRIVATE`.
pub fn parse_hosts(value: &str) -> HashSet<String> {
    value
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_addresses() {
        let no = |s: &str| forbidden_address(s.parse().unwrap());
        for (addr, why) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("100.127.255.254", "shared (CGNAT)"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("198.18.0.1", "benchmarking"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("::ffff:127.0.0.1", "IPv4-mapped"),
            ("::ffff:8.8.8.8", "IPv4-mapped"),
            ("fd00::1", "unique local (private)"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("64:ff9b::a00:1", "NAT64"),
        ] {
            assert_eq!(no(addr), Some(why), "{addr}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "172.32.0.1",
            "2606:4700::1",
        ] {
            assert_eq!(no(public), None, "{public}");
        }
    }

    fn fetcher(allow_http: bool, allow_private: &[&str]) -> Fetcher {
        Fetcher::new(FetchPolicy {
            allow_http,
            allow_private: allow_private.iter().map(|s| (*s).to_owned()).collect(),
            ..FetchPolicy::strict(1024)
        })
        .unwrap()
    }

    #[test]
    fn urls_are_checked_before_any_connection() {
        let f = fetcher(false, &[]);
        let none = Request::default();
        assert_eq!(
            f.check("http://example.com/a.png", &none),
            Err(FetchError::Scheme("http://example.com/a.png".into()))
        );
        assert!(matches!(
            f.check("ftp://example.com/a.png", &none),
            Err(FetchError::Scheme(_))
        ));
        assert!(matches!(
            f.check("not a url", &none),
            Err(FetchError::InvalidUrl(_))
        ));
        assert!(matches!(
            f.check("https://user:pw@example.com/", &none),
            Err(FetchError::InvalidUrl(_))
        ));
        for local in [
            "https://127.0.0.1/x",
            "https://2130706433/x",
            "https://0x7f.1/x",
            "https://[::1]/x",
            "https://[::ffff:10.0.0.1]/x",
            "https://169.254.169.254/latest/meta-data/",
        ] {
            assert!(
                matches!(
                    f.check(local, &none),
                    Err(FetchError::AddressNotAllowed { .. })
                ),
                "{local}: {:?}",
                f.check(local, &none)
            );
        }
        assert!(f.check("https://example.com/a.png", &none).is_ok());
        let only = Request {
            only_hosts: Some(vec!["api.twilio.com".into()]),
            credentials: None,
        };
        assert_eq!(
            f.check("https://evil.example/a.png", &only),
            Err(FetchError::HostNotAllowed("evil.example".into()))
        );
        assert!(f.check("https://API.twilio.com/x", &only).is_ok());
    }

    #[test]
    fn the_exemption_is_exact() {
        let f = fetcher(true, &["127.0.0.1:8090"]);
        let none = Request::default();
        assert!(f.check("http://127.0.0.1:8090/x", &none).is_ok());
        assert!(matches!(
            f.check("http://127.0.0.1:8091/x", &none),
            Err(FetchError::AddressNotAllowed { .. })
        ));
        assert!(matches!(
            f.check("http://10.0.0.1:8090/x", &none),
            Err(FetchError::AddressNotAllowed { .. })
        ));
    }

    #[test]
    fn errors_quote_a_little_of_the_url() {
        let long = format!("https://{}.example/", "a".repeat(5000));
        let e = FetchError::InvalidUrl(long).to_string();
        assert!(e.len() < 200, "{e}");
    }
}
