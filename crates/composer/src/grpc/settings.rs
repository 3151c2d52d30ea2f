//! `sms.v1.SettingsService`.

use sms_proto::v1::settings_service_server::SettingsService;
use sms_proto::v1::{
    GetSettingsRequest, GetSettingsResponse, UpdateSettingsRequest, UpdateSettingsResponse,
};
use tonic::{Request, Response, Status};

use jiff::civil::Time;
use sms_core::quiet::Window;

use super::call;
use crate::error::{Common, SettingsError};
use crate::settings::{MAX_DAILY_CAP, QuietHours, Settings};

/// `sms.v1.SettingsService`.
#[derive(Clone)]
pub struct SettingsApi {
    auth: super::Auth,
    settings: crate::settings::OrgSettings,
}

impl SettingsApi {
    /// The service over its capabilities, its calls authenticated by `auth`.
    pub fn new(auth: super::Auth, settings: crate::settings::OrgSettings) -> Self {
        SettingsApi { auth, settings }
    }
}

#[tonic::async_trait]
impl SettingsService for SettingsApi {
    async fn get_settings(
        &self,
        request: Request<GetSettingsRequest>,
    ) -> Result<Response<GetSettingsResponse>, Status> {
        call!(
            self,
            request,
            "GetSettings",
            crate::error::SettingsError,
            |caller| {
                self.settings
                    .get_settings(&caller)
                    .await
                    .map(|s| GetSettingsResponse {
                        settings: Some(settings_to(s)),
                    })
            }
        )
    }

    async fn update_settings(
        &self,
        request: Request<UpdateSettingsRequest>,
    ) -> Result<Response<UpdateSettingsResponse>, Status> {
        call!(
            self,
            request,
            "UpdateSettings",
            crate::error::SettingsError,
            |caller| {
                let asked = request.get_ref().settings.clone().unwrap_or_default();
                match settings_from(&asked) {
                    Err(e) => Err(e),
                    Ok(s) => self.settings.update_settings(&caller, s).await.map(|s| {
                        UpdateSettingsResponse {
                            settings: Some(settings_to(s)),
                        }
                    }),
                }
            }
        )
    }
}

/// Settings as asked for in a request: unset quiet hours are off with the default window.
fn settings_from(s: &sms_proto::v1::Settings) -> Result<Settings, SettingsError> {
    let quiet = match &s.quiet_hours {
        None => QuietHours::default(),
        Some(q) => {
            for day in &q.days {
                sms_core::text::check("quiet_hours.days", day, 16, sms_core::text::Lines::Single)?;
            }
            if q.days.len() > 7 {
                return Err(SettingsError::Common(Common::TooManyEntries {
                    field: "quiet_hours.days",
                    count: q.days.len(),
                    max: 7,
                }));
            }
            let or = |v: &str, default: &str| {
                if v.trim().is_empty() {
                    default.to_owned()
                } else {
                    v.to_owned()
                }
            };
            for (field, v) in [("quiet_hours.start", &q.start), ("quiet_hours.end", &q.end)] {
                sms_core::text::check(field, v, 16, sms_core::text::Lines::Single)?;
            }
            let window = Window::new(&or(&q.start, "08:00"), &or(&q.end, "21:00"), &q.days)
                .map_err(SettingsError::QuietHours)?;
            QuietHours {
                enabled: q.enabled,
                window,
            }
        }
    };
    let daily_segment_cap = match s.daily_segment_cap {
        0 => None,
        cap if (1..=MAX_DAILY_CAP).contains(&cap) => Some(cap),
        cap => {
            return Err(SettingsError::InvalidDailyCap {
                given: cap,
                max: MAX_DAILY_CAP,
            });
        }
    };
    Ok(Settings {
        quiet,
        daily_segment_cap,
    })
}

/// Settings as the API shows them.
fn settings_to(s: Settings) -> sms_proto::v1::Settings {
    let w = s.quiet.window;
    sms_proto::v1::Settings {
        quiet_hours: Some(sms_proto::v1::QuietHours {
            enabled: s.quiet.enabled,
            start: hhmm(w.start()),
            end: hhmm(w.end()),
            days: w.days().into_iter().map(str::to_owned).collect(),
        }),
        daily_segment_cap: s.daily_segment_cap.unwrap_or(0),
    }
}

fn hhmm(t: Time) -> String {
    if t.second() == 0 {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }
}
