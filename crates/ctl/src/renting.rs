//! `smsctl numbers search|rent|import`: numbers from the carrier.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::ValueEnum;
use serde_json::{Value, json};
use sms_proto::v1::numbers_service_client::NumbersServiceClient;
use sms_proto::v1::{
    AvailableNumber, AvailableNumberType, ImportNumberRequest, RentNumberRequest,
    SearchAvailableNumbersRequest, import_number_request, rent_number_request,
};

use crate::connection::{Connection, explain};
use crate::format::{capabilities, number_json, number_line};

/// The kinds of number the carrier rents.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NumberType {
    /// Geographic (with an area code in the US and Canada).
    Local,
    /// Mobile.
    Mobile,
    /// Toll-free.
    TollFree,
}

/// `smsctl numbers search`'s arguments.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Country (ISO code: US, GB, DE, ...).
    pub country: String,
    /// Type of number.
    #[arg(long = "type", value_enum, default_value = "local")]
    pub kind: NumberType,
    /// Area code (three digits; US, CA, PR).
    #[arg(long)]
    pub area_code: Option<String>,
    /// Digits (or letters, as on a keypad) the number contains; * for any one digit.
    #[arg(long)]
    pub contains: Option<String>,
    /// Only numbers that can send SMS.
    #[arg(long)]
    pub sms: bool,
    /// Only numbers that can send MMS.
    #[arg(long)]
    pub mms: bool,
    /// Only numbers that take calls.
    #[arg(long)]
    pub voice: bool,
    /// At most this many (1 to 50; 20 by default).
    #[arg(long, default_value_t = 0)]
    pub limit: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `smsctl numbers rent` / `import`'s owner.
#[derive(Debug, clap::Args)]
pub struct OwnerArgs {
    /// Owning user (default: the calling user).
    #[arg(long, conflicts_with = "owner_group")]
    pub owner_user: Option<String>,
    /// Owning group.
    #[arg(long)]
    pub owner_group: Option<String>,
}

impl OwnerArgs {
    /// (user, group), the user defaulting to the caller.
    fn resolve(self, conn: &Connection) -> anyhow::Result<(Option<String>, Option<String>)> {
        match (self.owner_group, self.owner_user.or_else(|| conn.user())) {
            (Some(g), _) => Ok((None, Some(g))),
            (None, Some(u)) => Ok((Some(u), None)),
            (None, None) => bail!("no owner: pass --owner-user or --owner-group, or set SMS_USER"),
        }
    }
}

fn flag(on: bool) -> Option<bool> {
    on.then_some(true)
}

/// `smsctl numbers search`.
pub async fn search(conn: &Connection, a: SearchArgs) -> anyhow::Result<ExitCode> {
    let mut client = NumbersServiceClient::new(conn.channel().await?);
    let kind = match a.kind {
        NumberType::Local => AvailableNumberType::Local,
        NumberType::Mobile => AvailableNumberType::Mobile,
        NumberType::TollFree => AvailableNumberType::TollFree,
    };
    let request = conn.request(
        SearchAvailableNumbersRequest {
            country: a.country,
            r#type: kind as i32,
            area_code: a.area_code.unwrap_or_default(),
            contains: a.contains.unwrap_or_default(),
            sms: flag(a.sms),
            mms: flag(a.mms),
            voice: flag(a.voice),
            limit: a.limit,
        },
        false,
    )?;
    let reply = client
        .search_available_numbers(request)
        .await
        .map_err(explain)?
        .into_inner();
    if a.json {
        let numbers: Vec<Value> = reply.numbers.iter().map(available_json).collect();
        println!(
            "{}",
            json!({
                "numbers": numbers,
                "voice_only": reply.voice_only,
                "warnings": reply.warnings,
            })
        );
    } else {
        for n in &reply.numbers {
            println!("{}", available_line(n));
        }
        if reply.numbers.is_empty() {
            println!("no numbers found");
        }
        for w in &reply.warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `smsctl numbers rent` (`allow_voice_only` is `Some`) or `import` (`None`).
pub async fn take_on(
    conn: &Connection,
    number: String,
    owner: OwnerArgs,
    allow_voice_only: Option<bool>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut client = NumbersServiceClient::new(conn.channel().await?);
    let (user, group) = owner.resolve(conn)?;
    let (row, warnings) = match allow_voice_only {
        Some(allow_voice_only) => {
            let owner = match (user, group) {
                (_, Some(g)) => rent_number_request::Owner::OwnerGroupId(g),
                (u, None) => rent_number_request::Owner::OwnerUserId(u.unwrap_or_default()),
            };
            let request = conn.request(
                RentNumberRequest {
                    number,
                    owner: Some(owner),
                    allow_voice_only,
                },
                false,
            )?;
            let reply = client
                .rent_number(request)
                .await
                .map_err(explain)?
                .into_inner();
            (reply.number, reply.warnings)
        }
        None => {
            let owner = match (user, group) {
                (_, Some(g)) => import_number_request::Owner::OwnerGroupId(g),
                (u, None) => import_number_request::Owner::OwnerUserId(u.unwrap_or_default()),
            };
            let request = conn.request(
                ImportNumberRequest {
                    number,
                    owner: Some(owner),
                },
                false,
            )?;
            let reply = client
                .import_number(request)
                .await
                .map_err(explain)?
                .into_inner();
            (reply.number, reply.warnings)
        }
    };
    let n = row.context("the reply has no number")?;
    if json {
        println!(
            "{}",
            json!({ "number": number_json(&n), "warnings": warnings })
        );
    } else {
        println!("{}", number_line(&n));
        for w in &warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn type_name(t: i32) -> &'static str {
    match AvailableNumberType::try_from(t) {
        Ok(AvailableNumberType::Mobile) => "mobile",
        Ok(AvailableNumberType::TollFree) => "toll_free",
        _ => "local",
    }
}

fn available_json(n: &AvailableNumber) -> Value {
    json!({
        "number": n.number,
        "friendly_name": n.friendly_name,
        "country": n.country,
        "locality": n.locality,
        "region": n.region,
        "type": type_name(n.r#type),
        "sms_capable": n.sms_capable,
        "mms_capable": n.mms_capable,
        "voice_capable": n.voice_capable,
    })
}

fn available_line(n: &AvailableNumber) -> String {
    let place = [n.locality.as_str(), n.region.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    let voice_only = if n.sms_capable { "" } else { "  VOICE ONLY" };
    format!(
        "{}  {}  {}  [{}]  {place}{voice_only}",
        n.number,
        n.country,
        type_name(n.r#type),
        capabilities(n.sms_capable, n.mms_capable, n.voice_capable)
    )
}
