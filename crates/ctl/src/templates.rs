//! `smsctl templates …`.

use std::process::ExitCode;

use crate::connection::{Connection, explain};
use crate::format::timestamp;
use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use sms_proto::v1::templates_service_client::TemplatesServiceClient;
use sms_proto::v1::{
    CreateTemplateRequest, DeleteTemplateRequest, GetTemplateRequest, ListTemplatesRequest,
    PreviewRequest, Template, TemplateContext, UpdateTemplateRequest, preview_request,
};

/// `smsctl templates …`.
#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Save a template; prints its id.
    Create {
        /// Name.
        #[arg(long)]
        name: String,
        /// Body with CRM tags, e.g. "Hi {{ contact.first_name }}".
        #[arg(long)]
        body: String,
        /// Visible to the whole organization.
        #[arg(long)]
        shared: bool,
    },
    /// Change a template (only its creator may).
    Update {
        /// Template id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New body.
        #[arg(long)]
        body: Option<String>,
        /// Share with the organization (true) or keep private (false).
        #[arg(long)]
        shared: Option<bool>,
    },
    /// Show a template.
    Get {
        /// Template id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the templates you can see.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a template (only its creator may).
    Delete {
        /// Template id.
        id: String,
    },
    /// Render a template or a raw body and show what it costs.
    Preview {
        /// Template id.
        #[arg(long, conflicts_with = "body", required_unless_present = "body")]
        id: Option<String>,
        /// A raw body with tags.
        #[arg(long)]
        body: Option<String>,
        /// A JSON file with the context: {"lead": {...}, "contact": {...}, "user": {...},
        /// "organization": {...}}.
        #[arg(long)]
        context: Option<std::path::PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `templates`.
pub async fn templates(conn: &Connection, command: TemplatesCommand) -> anyhow::Result<ExitCode> {
    let mut client = TemplatesServiceClient::new(conn.channel().await?);
    match command {
        TemplatesCommand::Create { name, body, shared } => {
            let r = conn.request(CreateTemplateRequest { name, body, shared }, true)?;
            let t = client
                .create_template(r)
                .await
                .map_err(explain)?
                .into_inner()
                .template;
            println!("{}", t.context("the reply has no template")?.id);
        }
        TemplatesCommand::Update {
            id,
            name,
            body,
            shared,
        } => {
            let r = conn.request(
                UpdateTemplateRequest {
                    id,
                    name,
                    body,
                    shared,
                },
                true,
            )?;
            let t = client
                .update_template(r)
                .await
                .map_err(explain)?
                .into_inner()
                .template;
            println!(
                "{}",
                template_line(&t.context("the reply has no template")?)
            );
        }
        TemplatesCommand::Get { id, json } => {
            let r = conn.request(GetTemplateRequest { id }, true)?;
            let t = client
                .get_template(r)
                .await
                .map_err(explain)?
                .into_inner()
                .template;
            let t = t.context("the reply has no template")?;
            if json {
                println!("{}", template_json(&t));
            } else {
                println!("{}\n{}", template_line(&t), t.body);
            }
        }
        TemplatesCommand::List { json } => {
            let r = conn.request(ListTemplatesRequest {}, true)?;
            let all = client
                .list_templates(r)
                .await
                .map_err(explain)?
                .into_inner()
                .templates;
            if json {
                println!("{}", Value::Array(all.iter().map(template_json).collect()));
            } else {
                for t in &all {
                    println!("{}", template_line(t));
                }
            }
        }
        TemplatesCommand::Delete { id } => {
            let r = conn.request(DeleteTemplateRequest { id: id.clone() }, true)?;
            client.delete_template(r).await.map_err(explain)?;
            println!("deleted {id}");
        }
        TemplatesCommand::Preview {
            id,
            body,
            context,
            json,
        } => {
            let source = match (id, body) {
                (Some(id), _) => preview_request::Source::TemplateId(id),
                (None, Some(body)) => preview_request::Source::Body(body),
                (None, None) => bail!("give --id or --body"),
            };
            let context = context.as_deref().map(read_context).transpose()?;
            let r = conn.request(
                PreviewRequest {
                    source: Some(source),
                    context,
                },
                true,
            )?;
            let p = client.preview(r).await.map_err(explain)?.into_inner();
            if json {
                println!(
                    "{}",
                    json!({
                        "body": p.body, "encoding": p.encoding, "segments": p.segments,
                        "characters": p.characters, "non_gsm": p.non_gsm, "length": p.length,
                        "too_long": p.too_long, "smart_body": p.smart_body,
                        "smart_encoding": p.smart_encoding, "smart_segments": p.smart_segments,
                        "segments_saved": p.segments_saved,
                    })
                );
            } else {
                println!("{}", p.body);
                println!("---");
                println!(
                    "{} characters{}; {}, {} segment(s), {} units",
                    p.length,
                    if p.too_long {
                        " (over the 1000-character limit)"
                    } else {
                        ""
                    },
                    p.encoding,
                    p.segments,
                    p.characters
                );
                if !p.non_gsm.is_empty() {
                    println!("UCS-2 forced by: {}", p.non_gsm.join(" "));
                }
                if p.segments_saved > 0 {
                    println!(
                        "Smart encoding would send {} in {} segment(s), saving {}",
                        p.smart_encoding, p.smart_segments, p.segments_saved
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn template_line(t: &Template) -> String {
    let visibility = if t.shared { "shared" } else { "private" };
    format!(
        "{}  {}  ({visibility}, by {})",
        t.id, t.name, t.owner_user_id
    )
}

fn template_json(t: &Template) -> Value {
    json!({
        "id": t.id, "name": t.name, "body": t.body, "shared": t.shared,
        "owner_user_id": t.owner_user_id,
        "created_at": timestamp(t.created_at.as_ref()),
        "updated_at": timestamp(t.updated_at.as_ref()),
    })
}

/// Reads a JSON context file into the protobuf context.
pub(crate) fn read_context(path: &std::path::Path) -> anyhow::Result<TemplateContext> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the context file {}", path.display()))?;
    let c: sms_core::template::Context = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid context (JSON)", path.display()))?;
    let map = |m: &std::collections::BTreeMap<String, String>| {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let a = &c.lead.primary_address;
    Ok(TemplateContext {
        lead: Some(sms_proto::v1::Lead {
            display_name: c.lead.display_name.clone(),
            name: c.lead.name.clone(),
            primary_contact_name: c.lead.primary_contact_name.clone(),
            description: c.lead.description.clone(),
            url: c.lead.url.clone(),
            status_label: c.lead.status_label.clone(),
            custom: map(&c.lead.custom),
            primary_address: Some(sms_proto::v1::Address {
                address_1: a.address_1.clone(),
                address_2: a.address_2.clone(),
                city: a.city.clone(),
                state: a.state.clone(),
                zipcode: a.zipcode.clone(),
                country: a.country.clone(),
                country_name: a.country_name.clone(),
            }),
            primary_opportunity_custom: map(&c.lead.primary_opportunity_custom),
        }),
        contact: Some(sms_proto::v1::Contact {
            name: c.contact.name.clone(),
            first_name: c.contact.first_name.clone(),
            last_name: c.contact.last_name.clone(),
            title: c.contact.title.clone(),
            phone: c.contact.phone.clone(),
            email: c.contact.email.clone(),
            url: c.contact.url.clone(),
            custom: map(&c.contact.custom),
        }),
        user: Some(sms_proto::v1::User {
            from_name: c.user.from_name.clone(),
            from_email: c.user.from_email.clone(),
            phone: c.user.phone.clone(),
            email: c.user.email.clone(),
            full_name: c.user.full_name.clone(),
            first_name: c.user.first_name.clone(),
            last_name: c.user.last_name.clone(),
        }),
        organization: Some(sms_proto::v1::Organization {
            name: c.organization.name.clone(),
        }),
    })
}
