//! `sms.v1.SettingsService`.

use sms_proto::v1::settings_service_server::SettingsService;
use sms_proto::v1::{
    GetSettingsRequest, GetSettingsResponse, UpdateSettingsRequest, UpdateSettingsResponse,
};
use tonic::{Request, Response, Status};

use super::call;
use crate::settings::Settings;

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
        call!(self, request, "GetSettings", |caller| {
            self.settings
                .get_settings(&caller)
                .await
                .map(|s| GetSettingsResponse {
                    settings: Some(s.to_proto()),
                })
        })
    }

    async fn update_settings(
        &self,
        request: Request<UpdateSettingsRequest>,
    ) -> Result<Response<UpdateSettingsResponse>, Status> {
        call!(self, request, "UpdateSettings", |caller| {
            let asked = request.get_ref().settings.clone().unwrap_or_default();
            match Settings::from_proto(&asked) {
                Err(e) => Err(e),
                Ok(s) => self.settings.update_settings(&caller, s).await.map(|s| {
                    UpdateSettingsResponse {
                        settings: Some(s.to_proto()),
                    }
                }),
            }
        })
    }
}
