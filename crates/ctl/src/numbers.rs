//! `smsctl numbers …` and `smsctl groups …`.

use std::process::ExitCode;

use crate::connection::{Connection, explain};
use crate::format::{number_json, number_line};
use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use sms_proto::v1::numbers_service_client::NumbersServiceClient;
use sms_proto::v1::{
    AddGroupMemberRequest, AddNumberRequest, CreateGroupRequest, GetNumberRequest, Group,
    ListGroupsRequest, ListNumbersRequest, NumberKind, ReleaseNumberRequest,
    RemoveGroupMemberRequest, add_number_request,
};

/// `smsctl numbers …`.
#[derive(Debug, Subcommand)]
pub enum NumbersCommand {
    /// Search the numbers the carrier has for rent in a country (warns when only voice-only
    /// numbers are available).
    Search(crate::renting::SearchArgs),
    /// Rent a number from the carrier (as a search listed it): it sends and receives at once.
    Rent {
        /// The number, E.164.
        number: String,
        #[command(flatten)]
        owner: crate::renting::OwnerArgs,
        /// Rent it even though it cannot send SMS.
        #[arg(long)]
        allow_voice_only: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take on a number the carrier account already holds (ported in, bought elsewhere).
    Import {
        /// The number, E.164.
        number: String,
        #[command(flatten)]
        owner: crate::renting::OwnerArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record a number without the carrier: an external number (--external), or one the
    /// carrier is set up for by other means.
    Add {
        /// The number, E.164.
        number: String,
        /// Owning user (default: the calling user).
        #[arg(long, conflicts_with = "owner_group")]
        owner_user: Option<String>,
        /// Owning group.
        #[arg(long)]
        owner_group: Option<String>,
        /// An external number (never used to send).
        #[arg(long)]
        external: bool,
        /// Its own send rate, in segments a second (default: the carriers' usual limit for
        /// its kind: long code 1, toll-free 3, short code 100).
        #[arg(long)]
        rate: Option<f64>,
        /// Its burst, in segments (default: the rate rounded up).
        #[arg(long, requires = "rate")]
        burst: Option<u32>,
        /// The carrier connection its messages go through (`twilio`, or an SMPP
        /// connection's name; default: the platform's default).
        #[arg(long)]
        carrier: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set which carrier connection a number's messages go through (`default` for the
    /// platform's default).
    Carrier {
        /// E.164 or id.
        number: String,
        /// `twilio`, an SMPP connection's name, or `default`.
        connection: String,
    },
    /// Set how fast a number may send (`--rate 0` puts it back to its kind's default).
    Rate {
        /// E.164 or id.
        number: String,
        /// Segments a second.
        #[arg(long)]
        rate: f64,
        /// Segments at once (default: the rate rounded up).
        #[arg(long)]
        burst: Option<u32>,
    },
    /// List the organization's numbers.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one number.
    Get {
        /// E.164 or id.
        number: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Release a number: it stops sending at once, and a rented or imported number is given
    /// back to the carrier.
    Release {
        /// E.164 or id.
        number: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `smsctl groups …`.
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Create a group; prints its id.
    Create {
        /// Name.
        name: String,
    },
    /// Add a user to a group.
    AddMember {
        /// Group id.
        group: String,
        /// User id.
        user: String,
    },
    /// Remove a user from a group.
    RemoveMember {
        /// Group id.
        group: String,
        /// User id.
        user: String,
    },
    /// List groups and their members.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `numbers`.
pub async fn numbers(conn: &Connection, command: NumbersCommand) -> anyhow::Result<ExitCode> {
    let mut client = NumbersServiceClient::new(conn.channel().await?);
    match command {
        NumbersCommand::Add {
            number,
            owner_user,
            owner_group,
            external,
            rate,
            burst,
            carrier,
            json,
        } => {
            let owner = match (owner_group, owner_user.or_else(|| conn.user.clone())) {
                (Some(g), _) => add_number_request::Owner::OwnerGroupId(g),
                (None, Some(u)) => add_number_request::Owner::OwnerUserId(u),
                (None, None) => {
                    bail!("no owner: pass --owner-user or --owner-group, or set SMS_USER")
                }
            };
            let kind = if external {
                NumberKind::External
            } else {
                NumberKind::Internal
            };
            let request = conn.request(
                AddNumberRequest {
                    number,
                    kind: kind as i32,
                    owner: Some(owner),
                    send_rate: rate,
                    send_burst: burst,
                    carrier_connection: carrier.unwrap_or_default(),
                    ..Default::default()
                },
                false,
            )?;
            let reply = client
                .add_number(request)
                .await
                .map_err(explain)?
                .into_inner();
            let n = reply.number.context("the reply has no number")?;
            if json {
                println!(
                    "{}",
                    json!({ "number": number_json(&n), "warnings": reply.warnings })
                );
            } else {
                println!("{}", number_line(&n));
                for w in &reply.warnings {
                    eprintln!("warning: {w}");
                }
            }
        }
        NumbersCommand::Get { number, json } => {
            let request = conn.request(GetNumberRequest { number }, false)?;
            let reply = client
                .get_number(request)
                .await
                .map_err(explain)?
                .into_inner();
            let n = reply.number.context("the reply has no number")?;
            if json {
                println!("{}", number_json(&n));
            } else {
                println!("{}", number_line(&n));
            }
        }
        NumbersCommand::Rate {
            number,
            rate,
            burst,
        } => {
            let request = conn.request(
                sms_proto::v1::SetNumberRateRequest {
                    number,
                    send_rate: rate,
                    send_burst: burst.unwrap_or(0),
                },
                false,
            )?;
            let reply = client
                .set_number_rate(request)
                .await
                .map_err(explain)?
                .into_inner();
            let n = reply.number.context("the reply has no number")?;
            println!("{}", number_line(&n));
        }
        NumbersCommand::Carrier { number, connection } => {
            let connection = if connection == "default" {
                String::new()
            } else {
                connection
            };
            let request = conn.request(
                sms_proto::v1::SetNumberCarrierRequest {
                    number,
                    carrier_connection: connection,
                },
                false,
            )?;
            let reply = client
                .set_number_carrier(request)
                .await
                .map_err(explain)?
                .into_inner();
            let n = reply.number.context("the reply has no number")?;
            println!("{}", number_line(&n));
        }
        NumbersCommand::Search(args) => return crate::renting::search(conn, args).await,
        NumbersCommand::Rent {
            number,
            owner,
            allow_voice_only,
            json,
        } => {
            return crate::renting::take_on(conn, number, owner, Some(allow_voice_only), json)
                .await;
        }
        NumbersCommand::Import {
            number,
            owner,
            json,
        } => return crate::renting::take_on(conn, number, owner, None, json).await,
        NumbersCommand::Release { number, json } => {
            let request = conn.request(ReleaseNumberRequest { number }, false)?;
            let reply = client
                .release_number(request)
                .await
                .map_err(explain)?
                .into_inner();
            let n = reply.number.context("the reply has no number")?;
            if json {
                println!("{}", number_json(&n));
            } else {
                println!("released {}", n.number);
            }
        }
        NumbersCommand::List { json } => {
            let request = conn.request(ListNumbersRequest {}, false)?;
            let reply = client
                .list_numbers(request)
                .await
                .map_err(explain)?
                .into_inner();
            if json {
                let all: Vec<Value> = reply.numbers.iter().map(number_json).collect();
                println!("{}", Value::Array(all));
            } else {
                for n in &reply.numbers {
                    println!("{}", number_line(n));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `groups`.
pub async fn groups(conn: &Connection, command: GroupsCommand) -> anyhow::Result<ExitCode> {
    let mut client = NumbersServiceClient::new(conn.channel().await?);
    match command {
        GroupsCommand::Create { name } => {
            let r = conn.request(CreateGroupRequest { name }, false)?;
            let g = client
                .create_group(r)
                .await
                .map_err(explain)?
                .into_inner()
                .group;
            println!("{}", g.context("the reply has no group")?.id);
        }
        GroupsCommand::AddMember { group, user } => {
            let r = conn.request(
                AddGroupMemberRequest {
                    group_id: group,
                    user_id: user,
                },
                false,
            )?;
            let g = client
                .add_group_member(r)
                .await
                .map_err(explain)?
                .into_inner()
                .group;
            println!("{}", group_line(&g.context("the reply has no group")?));
        }
        GroupsCommand::RemoveMember { group, user } => {
            let r = conn.request(
                RemoveGroupMemberRequest {
                    group_id: group,
                    user_id: user,
                },
                false,
            )?;
            let g = client
                .remove_group_member(r)
                .await
                .map_err(explain)?
                .into_inner()
                .group;
            println!("{}", group_line(&g.context("the reply has no group")?));
        }
        GroupsCommand::List { json } => {
            let r = conn.request(ListGroupsRequest {}, false)?;
            let groups = client
                .list_groups(r)
                .await
                .map_err(explain)?
                .into_inner()
                .groups;
            if json {
                let all: Vec<Value> = groups
                    .iter()
                    .map(|g| json!({"id": g.id, "name": g.name, "members": g.member_user_ids}))
                    .collect();
                println!("{}", Value::Array(all));
            } else {
                for g in &groups {
                    println!("{}", group_line(g));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn group_line(g: &Group) -> String {
    format!(
        "{}  {}  members: {}",
        g.id,
        g.name,
        g.member_user_ids.join(", ")
    )
}
