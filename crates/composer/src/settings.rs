//! An organization's sending settings: quiet hours (held until the recipient's local window
//! opens) and a daily cap on segments (refused over it), read and replaced through
//! `SettingsService`, and applied to every send.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveTime, Timelike, Utc};
use jiff::civil::Time;
use sms_core::PhoneNumber;
use sms_core::quiet::{QuietError, Window};

use sms_runtime::auth::Caller;
use sqlx::PgPool;

use crate::error::{Common, SettingsError};
use crate::store::{self, settings::SettingsRow};

/// How long settings are trusted from memory: another composer replica applies a change
/// within this.
pub const SETTINGS_TTL: Duration = Duration::from_secs(5);

/// A contact who texted within this gets replies at any hour.
pub const REPLY_WINDOW: Duration = Duration::from_secs(30 * 60);

/// The largest daily cap (segments).
pub const MAX_DAILY_CAP: i64 = 100_000_000;

/// Quiet hours: the window in which the organization may send, when enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuietHours {
    /// Whether messages are held outside the window.
    pub enabled: bool,
    /// The window (kept while disabled).
    pub window: Window,
}

/// An organization's settings, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    /// Quiet hours.
    pub quiet: QuietHours,
    /// Segments a day (UTC); `None`: no cap.
    pub daily_segment_cap: Option<i64>,
}

impl Settings {
    fn from_row(r: SettingsRow) -> Result<Settings, QuietError> {
        let mut days = [false; 7];
        for (d, on) in days.iter_mut().zip(&r.quiet_days) {
            *d = *on;
        }
        Ok(Settings {
            quiet: QuietHours {
                enabled: r.quiet_enabled,
                window: Window::from_parts(civil(r.quiet_start), civil(r.quiet_end), days)?,
            },
            daily_segment_cap: r.daily_segment_cap,
        })
    }

    fn to_row(self) -> SettingsRow {
        let w = self.quiet.window;
        SettingsRow {
            quiet_enabled: self.quiet.enabled,
            quiet_start: naive(w.start()),
            quiet_end: naive(w.end()),
            quiet_days: w.day_mask().to_vec(),
            daily_segment_cap: self.daily_segment_cap,
        }
    }
}

fn civil(t: NaiveTime) -> Time {
    let n = |v: u32| i8::try_from(v).unwrap_or(0);
    Time::new(n(t.hour()), n(t.minute()), n(t.second()), 0).unwrap_or(Time::midnight())
}

fn naive(t: Time) -> NaiveTime {
    let n = |v: i8| u32::try_from(v).unwrap_or(0);
    NaiveTime::from_hms_opt(n(t.hour()), n(t.minute()), n(t.second())).unwrap_or_default()
}

/// Settings by organization, each trusted for [`SETTINGS_TTL`].
#[derive(Debug, Clone, Default)]
pub struct SettingsCache(Arc<RwLock<HashMap<String, (Settings, Instant)>>>);

impl SettingsCache {
    fn get(&self, organization_id: &str) -> Option<Settings> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(organization_id)
            .filter(|(_, at)| at.elapsed() < SETTINGS_TTL)
            .map(|(s, _)| *s)
    }

    fn insert(&self, organization_id: &str, s: Settings) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(organization_id.to_owned(), (s, Instant::now()));
    }
}

/// Why a message is held, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// When it goes out.
    pub until: DateTime<Utc>,
    /// What the caller and the message's history are told.
    pub note: String,
}

/// The settings capability: reads (briefly trusted from memory) and replaces an
/// organization's settings, and says when quiet hours hold a message.
#[derive(Clone)]
pub struct OrgSettings {
    pool: PgPool,
    cache: SettingsCache,
}

impl OrgSettings {
    /// Settings read from `pool`, each trusted for [`SETTINGS_TTL`].
    pub fn new(pool: PgPool) -> Self {
        OrgSettings {
            pool,
            cache: SettingsCache::default(),
        }
    }

    /// The organization's settings (the defaults when it never set any).
    pub async fn of(&self, organization_id: &str) -> Result<Settings, Common> {
        if let Some(s) = self.cache.get(organization_id) {
            return Ok(s);
        }
        let s = match store::settings::get(&self.pool, organization_id).await? {
            None => Settings::default(),
            Some(row) => Settings::from_row(row).unwrap_or_else(|e| {
                tracing::error!(organization_id, error = %e, "stored settings unusable; defaults used");
                Settings::default()
            }),
        };
        self.cache.insert(organization_id, s);
        Ok(s)
    }

    /// The caller's organization's settings.
    pub async fn get_settings(&self, caller: &Caller) -> Result<Settings, SettingsError> {
        Ok(self.of(&caller.organization_id).await?)
    }

    /// Replaces the caller's organization's settings.
    pub async fn update_settings(
        &self,
        caller: &Caller,
        s: Settings,
    ) -> Result<Settings, SettingsError> {
        let org = caller.organization_id.as_str();
        // The days are counted only while there is a cap: counting starts, seeded from the
        // messages already accepted for today and later, when one is set.
        let mut tx = self.pool.begin().await?;
        let was_capped = store::settings::lock_cap(&mut tx, org).await?.is_some();
        store::settings::put(&mut tx, org, &s.to_row()).await?;
        match (was_capped, s.daily_segment_cap.is_some()) {
            (false, true) => {
                let today = store::settings::day_of(Utc::now());
                store::settings::start_counting(&mut tx, org, today).await?;
            }
            (true, false) => store::settings::stop_counting(&mut tx, org).await?,
            _ => {}
        }
        tx.commit().await?;
        self.cache.insert(&caller.organization_id, s);
        tracing::info!(organization_id = %caller.organization_id, settings = ?s, "settings replaced");
        Ok(s)
    }

    /// When a message from `from` to `to` due at `due` must wait for quiet hours to end:
    /// `None` when it may go then (quiet hours off, inside the window, or a reply to a
    /// contact who texted `from` within [`REPLY_WINDOW`]).
    pub(crate) async fn quiet_hold(
        &self,
        settings: &Settings,
        organization_id: &str,
        from: &PhoneNumber,
        to: &PhoneNumber,
        due: DateTime<Utc>,
    ) -> Result<Option<Hold>, SettingsError> {
        if !settings.quiet.enabled {
            return Ok(None);
        }
        let window = settings.quiet.window;
        let (zones, main) = sms_core::quiet::zones_of(to);
        let at = jiff::Timestamp::new(
            due.timestamp(),
            i32::try_from(due.timestamp_subsec_nanos()).unwrap_or(0),
        )
        .unwrap_or_else(|_| jiff::Timestamp::now());
        let Some(release) = window.release(at, &zones, &main) else {
            return Ok(None);
        };
        let since = Utc::now()
            - chrono::Duration::from_std(REPLY_WINDOW).unwrap_or(chrono::Duration::zero());
        // Only asked when the message would be held: a reply in a conversation goes now.
        if store::inbound::texted_since(&self.pool, organization_id, from.e164(), to.e164(), since)
            .await?
        {
            return Ok(None);
        }
        let until = DateTime::from_timestamp(
            release.as_second(),
            u32::try_from(release.subsec_nanosecond()).unwrap_or(0),
        )
        .unwrap_or(due);
        let zone_names: Vec<&str> = if zones.is_empty() {
            vec![main.iana_name().unwrap_or("UTC")]
        } else {
            zones.iter().map(|z| z.iana_name().unwrap_or("?")).collect()
        };
        let shown = match zones.as_slice() {
            [only] => only.clone(),
            _ => main.clone(),
        };
        let local = release.to_zoned_datetime(shown.clone());
        let note = format!(
            "held for quiet hours: the organization sends {window} in the recipient's time \
             ({}); goes out at {} ({} {})",
            zone_names.join(", "),
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            local.strftime("%H:%M:%S"),
            shown.iana_name().unwrap_or("UTC"),
        );
        Ok(Some(Hold { until, note }))
    }
}
