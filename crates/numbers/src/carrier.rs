//! The carrier's phone-number API (Twilio's `AvailablePhoneNumbers` and
//! `IncomingPhoneNumbers`, or the simulator speaking them): what the composer needs to search,
//! rent, import and release numbers. The wire format is `sms_twilio::numbers`'; this is only
//! the HTTP around it.

use std::time::Duration;

use serde::de::DeserializeOwned;
use sms_twilio::ApiError;
use sms_twilio::numbers::{
    AvailableNumber, AvailablePage, Category, IncomingNumber, IncomingPage, NumberSetup,
    SearchQuery,
};

/// Where the carrier is and who we are there.
#[derive(Clone)]
pub struct CarrierConfig {
    /// `SMS_TWILIO_API_URL`.
    pub api_url: String,
    /// `SMS_TWILIO_ACCOUNT_SID`.
    pub account_sid: String,
    /// `SMS_TWILIO_AUTH_TOKEN`.
    pub auth_token: String,
    /// `SMS_PUBLIC_URL`: where the carrier reaches our webhooks (the inbound receiver).
    pub public_url: String,
    /// `SMS_CARRIER_TIMEOUT_MS`: the longest one call takes.
    pub timeout: Duration,
    /// `SMS_CARRIER_RELEASE_RETRY_MS`: how often released numbers the carrier did not take
    /// back at once are given back again (30 s).
    pub release_retry: Duration,
}

impl std::fmt::Debug for CarrierConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarrierConfig")
            .field("api_url", &self.api_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"(hidden)")
            .field("public_url", &self.public_url)
            .field("timeout", &self.timeout)
            .field("release_retry", &self.release_retry)
            .finish()
    }
}

/// Why a call to the carrier's number API failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The carrier answered no (a 4xx with its error).
    #[error("the carrier refused (HTTP {status}, code {code:?}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Twilio's error code.
        code: Option<u32>,
        /// Its words.
        message: String,
    },
    /// The carrier could not be asked, or did not answer in time, or answered something that
    /// is not its API: what was asked may or may not have happened.
    #[error("the carrier did not answer: {0}")]
    Unavailable(String),
}

impl CallError {
    /// Twilio's error code, when it refused with one.
    pub fn code(&self) -> Option<u32> {
        match self {
            CallError::Refused { code, .. } => *code,
            CallError::Unavailable(_) => None,
        }
    }
}

/// A client of the carrier's number API for one account.
#[derive(Debug, Clone)]
pub struct Carrier {
    http: reqwest::Client,
    config: CarrierConfig,
}

impl Carrier {
    /// How often released numbers are given back again.
    pub fn release_retry(&self) -> Duration {
        self.config.release_retry
    }

    /// A client for `config`.
    pub fn new(config: CarrierConfig) -> anyhow::Result<Carrier> {
        Ok(Carrier {
            http: sms_runtime::http_client(config.timeout)?,
            config: CarrierConfig {
                api_url: config.api_url.trim_end_matches('/').to_owned(),
                public_url: config.public_url.trim_end_matches('/').to_owned(),
                ..config
            },
        })
    }

    /// How a number of ours is set up at the carrier: incoming messages and status to our
    /// webhooks, labelled with the organization.
    pub fn setup(&self, organization_id: &str, number: Option<&str>) -> NumberSetup {
        NumberSetup {
            phone_number: number.map(str::to_owned),
            sms_url: format!("{}/webhooks/twilio/incoming", self.config.public_url),
            status_callback: format!("{}/webhooks/twilio/status", self.config.public_url),
            friendly_name: Some(format!("sms {organization_id}").chars().take(64).collect()),
        }
    }

    /// Numbers of `category` for sale in `country`; `None` when the carrier sells none of
    /// that kind there.
    pub async fn search(
        &self,
        country: &str,
        category: Category,
        query: &SearchQuery,
    ) -> Result<Option<Vec<AvailableNumber>>, CallError> {
        let path = sms_twilio::numbers::available_path(&self.config.account_sid, country, category);
        let page: Option<AvailablePage> = self.get(&path, &query.params()).await?;
        Ok(page.map(|p| p.available_phone_numbers))
    }

    /// The account's number `number`, if it holds it.
    pub async fn held(&self, number: &str) -> Result<Option<IncomingNumber>, CallError> {
        let path = sms_twilio::numbers::incoming_numbers_path(&self.config.account_sid);
        let page: Option<IncomingPage> = self
            .get(&path, &[("PhoneNumber", number.to_owned())])
            .await?;
        Ok(page.and_then(|p| {
            p.incoming_phone_numbers
                .into_iter()
                .find(|n| n.phone_number == number)
        }))
    }

    /// Rents the number in `setup`.
    pub async fn rent(&self, setup: &NumberSetup) -> Result<IncomingNumber, CallError> {
        let path = sms_twilio::numbers::incoming_numbers_path(&self.config.account_sid);
        self.post(&path, &setup.to_form()).await
    }

    /// Sets a held number's webhooks.
    pub async fn configure(
        &self,
        sid: &str,
        setup: &NumberSetup,
    ) -> Result<IncomingNumber, CallError> {
        let path = sms_twilio::numbers::incoming_number_path(&self.config.account_sid, sid);
        self.post(&path, &setup.to_form()).await
    }

    /// Gives a held number back. A number the carrier no longer has for us is given back
    /// already.
    pub async fn release(&self, sid: &str) -> Result<(), CallError> {
        let path = sms_twilio::numbers::incoming_number_path(&self.config.account_sid, sid);
        let (status, body) = self
            .send(self.http.delete(format!("{}{path}", self.config.api_url)))
            .await?;
        match status {
            200..=299 | 404 => Ok(()),
            _ => Err(refusal(status, &body)),
        }
    }

    /// Sends `request` with the account's credentials: the answer's status and body.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, bytes::Bytes), CallError> {
        let response = request
            .basic_auth(&self.config.account_sid, Some(&self.config.auth_token))
            .send()
            .await
            .map_err(|e| CallError::Unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| CallError::Unavailable(format!("reading the answer: {e}")))?;
        Ok((status, body))
    }

    /// A GET; `None` for a 404.
    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<T>, CallError> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}{path}", self.config.api_url),
            query.iter().map(|(k, v)| (*k, v.as_str())),
        )
        .map_err(|e| CallError::Unavailable(format!("the carrier's URL: {e}")))?;
        let (status, body) = self.send(self.http.get(url)).await?;
        match status {
            404 => Ok(None),
            200..=299 => Ok(Some(parse(&body)?)),
            _ => Err(refusal(status, &body)),
        }
    }

    /// A form POST.
    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<T, CallError> {
        let (status, body) = self
            .send(
                self.http
                    .post(format!("{}{path}", self.config.api_url))
                    .form(form),
            )
            .await?;
        if (200..300).contains(&status) {
            parse(&body)
        } else {
            Err(refusal(status, &body))
        }
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, CallError> {
    serde_json::from_slice(body)
        .map_err(|e| CallError::Unavailable(format!("the carrier's answer is unreadable: {e}")))
}

/// A non-2xx answer: a refusal for a 4xx (other than 429), the carrier unavailable otherwise.
fn refusal(status: u16, body: &[u8]) -> CallError {
    let api: Option<ApiError> = serde_json::from_slice(body).ok();
    let message = api.as_ref().map_or_else(
        || String::from_utf8_lossy(body).chars().take(200).collect(),
        |e| e.message.clone(),
    );
    if (400..500).contains(&status) && status != 429 {
        CallError::Refused {
            status,
            code: api.map(|e| e.code),
            message,
        }
    } else {
        CallError::Unavailable(format!("HTTP {status}: {message}"))
    }
}
