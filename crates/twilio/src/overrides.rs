//! Twilio's webhook connection overrides: key-value pairs in a webhook URL's fragment
//! (`https://host/hook#rc=5&rp=5xx,ct,rt`) that set how Twilio calls it, how long it waits and
//! how often it retries. The fragment is never sent: Twilio requests (and signs) the URL
//! without it.
//!
//! | key | meaning | range | default |
//! | --- | --- | --- | --- |
//! | `ct` | connect timeout, ms | 100–10,000 | 5,000 |
//! | `rt` | read timeout, ms | 100–15,000 | 15,000 |
//! | `tt` | total time for every attempt, ms | 100–15,000 | 15,000 |
//! | `rc` | retries after the first attempt | 0–5 | 1 |
//! | `rp` | what is retried: `4xx`, `5xx`, `ct`, `rt`, `all` (comma-separated) | | `ct` |
//!
//! Out-of-range numbers are clamped, unknown keys ignored, as Twilio does with what it does
//! not understand.

use std::time::Duration;

/// What makes a failed attempt worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryPolicy {
    /// The server answered 4xx.
    pub client_error: bool,
    /// The server answered 5xx.
    pub server_error: bool,
    /// The connection could not be made in time (refused, reset, timed out).
    pub connect: bool,
    /// No answer within the read timeout.
    pub read: bool,
}

/// How one webhook is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionOverrides {
    /// `ct`.
    pub connect_timeout: Duration,
    /// `rt`.
    pub read_timeout: Duration,
    /// `tt`.
    pub total_time: Duration,
    /// `rc`.
    pub retries: u32,
    /// `rp`.
    pub retry_on: RetryPolicy,
}

impl Default for ConnectionOverrides {
    fn default() -> Self {
        ConnectionOverrides {
            connect_timeout: Duration::from_millis(5_000),
            read_timeout: Duration::from_millis(15_000),
            total_time: Duration::from_millis(15_000),
            retries: 1,
            retry_on: RetryPolicy {
                connect: true,
                ..RetryPolicy::default()
            },
        }
    }
}

/// How one attempt ended, for [`ConnectionOverrides::retries_after`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// An HTTP status came back.
    Status(u16),
    /// The connection could not be made.
    ConnectFailed,
    /// No answer within the read timeout.
    ReadTimedOut,
}

impl ConnectionOverrides {
    /// Splits `url` into what is requested (and signed) and the overrides in its fragment.
    pub fn split(url: &str) -> (&str, ConnectionOverrides) {
        let Some((base, fragment)) = url.split_once('#') else {
            return (url, ConnectionOverrides::default());
        };
        let mut o = ConnectionOverrides::default();
        let millis = |v: &str, max: u64| {
            v.parse::<u64>()
                .ok()
                .map(|n| Duration::from_millis(n.clamp(100, max)))
        };
        for (key, value) in form_urlencoded::parse(fragment.as_bytes()) {
            match key.as_ref() {
                "ct" => o.connect_timeout = millis(&value, 10_000).unwrap_or(o.connect_timeout),
                "rt" => o.read_timeout = millis(&value, 15_000).unwrap_or(o.read_timeout),
                "tt" => o.total_time = millis(&value, 15_000).unwrap_or(o.total_time),
                "rc" => o.retries = value.parse::<u32>().map_or(o.retries, |n| n.min(5)),
                "rp" => {
                    let mut p = RetryPolicy::default();
                    for class in value.split(',').map(str::trim) {
                        match class {
                            "4xx" => p.client_error = true,
                            "5xx" => p.server_error = true,
                            "ct" => p.connect = true,
                            "rt" => p.read = true,
                            "all" => {
                                p = RetryPolicy {
                                    client_error: true,
                                    server_error: true,
                                    connect: true,
                                    read: true,
                                }
                            }
                            _ => {}
                        }
                    }
                    o.retry_on = p;
                }
                _ => {}
            }
        }
        (base, o)
    }

    /// Whether an attempt that ended as `attempt` is retried (when retries are left).
    pub fn retries_after(&self, attempt: Attempt) -> bool {
        let p = self.retry_on;
        match attempt {
            Attempt::Status(s) if (200..300).contains(&s) => false,
            Attempt::Status(s) if (400..500).contains(&s) => p.client_error,
            Attempt::Status(s) if s >= 500 => p.server_error,
            Attempt::Status(_) => false,
            Attempt::ConnectFailed => p.connect,
            Attempt::ReadTimedOut => p.read,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_fragment_twilios_defaults_apply() {
        let (url, o) = ConnectionOverrides::split("https://example.com/hook?mid=1");
        assert_eq!(url, "https://example.com/hook?mid=1");
        assert_eq!(o, ConnectionOverrides::default());
        assert!(o.retries_after(Attempt::ConnectFailed));
        assert!(!o.retries_after(Attempt::Status(503)));
        assert!(!o.retries_after(Attempt::ReadTimedOut));
    }

    #[test]
    fn the_fragment_overrides_and_is_not_part_of_the_url() {
        let (url, o) =
            ConnectionOverrides::split("https://example.com/hook?a=1#rc=5&rp=5xx,ct,rt&ct=900");
        assert_eq!(url, "https://example.com/hook?a=1");
        assert_eq!(o.retries, 5);
        assert_eq!(o.connect_timeout, Duration::from_millis(900));
        assert!(o.retries_after(Attempt::Status(503)));
        assert!(o.retries_after(Attempt::ReadTimedOut));
        assert!(!o.retries_after(Attempt::Status(400)));
        assert!(!o.retries_after(Attempt::Status(200)));
    }

    #[test]
    fn values_out_of_range_are_clamped_and_unknown_keys_ignored() {
        let (_, o) = ConnectionOverrides::split("https://h/#rc=99&tt=99999&ct=1&rp=all&zz=1");
        assert_eq!(o.retries, 5);
        assert_eq!(o.total_time, Duration::from_millis(15_000));
        assert_eq!(o.connect_timeout, Duration::from_millis(100));
        assert!(o.retries_after(Attempt::Status(404)));
        let (_, o) = ConnectionOverrides::split("https://h/#rc=two&rp=");
        assert_eq!(o.retries, 1);
        assert!(!o.retries_after(Attempt::ConnectFailed));
    }
}
