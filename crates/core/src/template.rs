//! SMS templates with CRM tags: `Hi {{ contact.first_name }}, about {{ lead.custom.["Deal"] }}`.
//!
//! A template is parsed once, when it is saved: a syntax error or an unknown tag is reported
//! with the tag and its position. Rendering is a single pass over the parsed parts: it cannot run
//! code or loop, and it stops as soon as the output passes the caller's limit, so a hostile
//! template or context cannot blow up memory.
//!
//! We only substitute tags (no filters, conditions or loops): that is what the CRM's templates
//! use, and anything more would be a language to secure.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest template source accepted, in characters. Rendered bodies are capped separately.
pub const MAX_TEMPLATE_CHARS: usize = 10_000;

/// Where something is in a template: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a template cannot be saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The source is longer than [`MAX_TEMPLATE_CHARS`].
    #[error("the template is {chars} characters long; at most {MAX_TEMPLATE_CHARS} are allowed")]
    TooLong {
        /// Characters in the source.
        chars: usize,
    },
    /// A `{{` with no `}}` after it.
    #[error("tag opened at {at} is never closed with }}}}")]
    Unclosed {
        /// Where the `{{` is.
        at: Position,
    },
    /// `{{ }}` with nothing inside.
    #[error("empty tag at {at}")]
    Empty {
        /// Where the tag starts.
        at: Position,
    },
    /// The inside of a tag is not a well-formed path.
    #[error("malformed tag {} at {at}: {reason}", shown(.tag))]
    Malformed {
        /// The text inside the braces.
        tag: String,
        /// Where the tag starts.
        at: Position,
        /// What is wrong.
        reason: &'static str,
    },
    /// A well-formed path that names no known field.
    #[error("unknown tag {} at {at}", shown(.tag))]
    Unknown {
        /// The text inside the braces.
        tag: String,
        /// Where the tag starts.
        at: Position,
    },
}

impl TemplateError {
    /// Where the error is, if it has a position.
    pub fn position(&self) -> Option<Position> {
        match self {
            TemplateError::TooLong { .. } => None,
            TemplateError::Unclosed { at }
            | TemplateError::Empty { at }
            | TemplateError::Malformed { at, .. }
            | TemplateError::Unknown { at, .. } => Some(*at),
        }
    }
}

/// A tag as an error message shows it, `{{ contact.first_name }}`, its inside cut at
/// [`crate::text::QUOTE_CHARS`] characters and with control characters escaped.
fn shown(tag: &str) -> String {
    let mut inside: String = tag
        .chars()
        .take(crate::text::QUOTE_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if tag.chars().count() > crate::text::QUOTE_CHARS {
        inside.push('…');
    }
    format!("{{{{ {inside} }}}}")
}

/// The rendered body passed the caller's limit: copying stopped there, and the rest was only
/// counted, so the error tells the whole length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the rendered body has {chars} characters, more than {limit}")]
pub struct RenderTooLong {
    /// The limit that was passed.
    pub limit: usize,
    /// How many characters the whole rendered body has.
    pub chars: usize,
}

/// The parts of a postal address a template can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressField {
    /// First address line.
    Address1,
    /// Second address line.
    Address2,
    /// City.
    City,
    /// State or province.
    State,
    /// Postal code.
    Zipcode,
    /// Country code.
    Country,
    /// Country name.
    CountryName,
}

/// The parts of a user (the sender) a template can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserField {
    /// Name shown on e-mails.
    FromName,
    /// Address shown on e-mails.
    FromEmail,
    /// Phone.
    Phone,
    /// E-mail.
    Email,
    /// Full name.
    FullName,
    /// First name.
    FirstName,
    /// Last name.
    LastName,
}

/// A known tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    /// `lead.display_name` (falls back to the primary contact's name).
    LeadDisplayName,
    /// `lead.name` (falls back to the primary contact's name).
    LeadName,
    /// `lead.description`.
    LeadDescription,
    /// `lead.url`.
    LeadUrl,
    /// `lead.status_label`.
    LeadStatusLabel,
    /// `lead.custom.["Field"]`.
    LeadCustom(String),
    /// `lead.primary_address.*`.
    LeadAddress(AddressField),
    /// `lead.primary_opportunity.custom.["Field"]`.
    OpportunityCustom(String),
    /// `contact.name`.
    ContactName,
    /// `contact.first_name`.
    ContactFirstName,
    /// `contact.last_name`.
    ContactLastName,
    /// `contact.title`.
    ContactTitle,
    /// `contact.primary_phone.phone`.
    ContactPhone,
    /// `contact.primary_email.email`.
    ContactEmail,
    /// `contact.primary_url.url`.
    ContactUrl,
    /// `contact.custom.["Field"]`.
    ContactCustom(String),
    /// `user.*`.
    User(UserField),
    /// `organization.name`.
    OrganizationName,
}

/// One step of a tag path: a name, or a quoted custom-field key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Name(String),
    Key(String),
}

impl Tag {
    fn from_steps(steps: &[Step]) -> Option<Tag> {
        use Step::{Key, Name};
        let names: Vec<&str> = steps
            .iter()
            .map(|s| match s {
                Name(n) => n.as_str(),
                Key(_) => "[]",
            })
            .collect();
        let key = || match steps.last() {
            Some(Key(k)) => k.clone(),
            _ => String::new(),
        };
        let tag = match names.as_slice() {
            ["lead", "display_name"] => Tag::LeadDisplayName,
            ["lead", "name"] => Tag::LeadName,
            ["lead", "description"] => Tag::LeadDescription,
            ["lead", "url"] => Tag::LeadUrl,
            ["lead", "status_label"] => Tag::LeadStatusLabel,
            ["lead", "custom", "[]"] => Tag::LeadCustom(key()),
            ["lead", "primary_address", field] => Tag::LeadAddress(match *field {
                "address_1" => AddressField::Address1,
                "address_2" => AddressField::Address2,
                "city" => AddressField::City,
                "state" => AddressField::State,
                "zipcode" => AddressField::Zipcode,
                "country" => AddressField::Country,
                "country_name" => AddressField::CountryName,
                _ => return None,
            }),
            ["lead", "primary_opportunity", "custom", "[]"] => Tag::OpportunityCustom(key()),
            ["contact", "name"] => Tag::ContactName,
            ["contact", "first_name"] => Tag::ContactFirstName,
            ["contact", "last_name"] => Tag::ContactLastName,
            ["contact", "title"] => Tag::ContactTitle,
            ["contact", "primary_phone", "phone"] => Tag::ContactPhone,
            ["contact", "primary_email", "email"] => Tag::ContactEmail,
            ["contact", "primary_url", "url"] => Tag::ContactUrl,
            ["contact", "custom", "[]"] => Tag::ContactCustom(key()),
            ["user", field] => Tag::User(match *field {
                "from_name" => UserField::FromName,
                "from_email" => UserField::FromEmail,
                "phone" => UserField::Phone,
                "email" => UserField::Email,
                "full_name" => UserField::FullName,
                "first_name" => UserField::FirstName,
                "last_name" => UserField::LastName,
                _ => return None,
            }),
            ["organization", "name"] => Tag::OrganizationName,
            _ => return None,
        };
        Some(tag)
    }

    /// The value of this tag in `ctx`; a missing value is empty text.
    fn value<'a>(&self, ctx: &'a Context) -> &'a str {
        let lead = &ctx.lead;
        let contact = &ctx.contact;
        let user = &ctx.user;
        let fallback = |own: &'a str| -> &'a str {
            [
                own,
                lead.primary_contact_name.as_str(),
                contact.name.as_str(),
            ]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or("")
        };
        let custom = |map: &'a BTreeMap<String, String>, k: &str| -> &'a str {
            map.get(k).map(String::as_str).unwrap_or("")
        };
        match self {
            Tag::LeadDisplayName => fallback(&lead.display_name),
            Tag::LeadName => fallback(&lead.name),
            Tag::LeadDescription => &lead.description,
            Tag::LeadUrl => &lead.url,
            Tag::LeadStatusLabel => &lead.status_label,
            Tag::LeadCustom(k) => custom(&lead.custom, k),
            Tag::LeadAddress(f) => {
                let a = &lead.primary_address;
                match f {
                    AddressField::Address1 => &a.address_1,
                    AddressField::Address2 => &a.address_2,
                    AddressField::City => &a.city,
                    AddressField::State => &a.state,
                    AddressField::Zipcode => &a.zipcode,
                    AddressField::Country => &a.country,
                    AddressField::CountryName => &a.country_name,
                }
            }
            Tag::OpportunityCustom(k) => custom(&lead.primary_opportunity_custom, k),
            Tag::ContactName => &contact.name,
            Tag::ContactFirstName => &contact.first_name,
            Tag::ContactLastName => &contact.last_name,
            Tag::ContactTitle => &contact.title,
            Tag::ContactPhone => &contact.phone,
            Tag::ContactEmail => &contact.email,
            Tag::ContactUrl => &contact.url,
            Tag::ContactCustom(k) => custom(&contact.custom, k),
            Tag::User(f) => match f {
                UserField::FromName => &user.from_name,
                UserField::FromEmail => &user.from_email,
                UserField::Phone => &user.phone,
                UserField::Email => &user.email,
                UserField::FullName => &user.full_name,
                UserField::FirstName => &user.first_name,
                UserField::LastName => &user.last_name,
            },
            Tag::OrganizationName => &ctx.organization.name,
        }
    }
}

/// The data a template renders against. Every field is optional (missing is empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Context {
    /// The lead.
    pub lead: Lead,
    /// The contact being texted.
    pub contact: Contact,
    /// The sending user.
    pub user: User,
    /// The organization.
    pub organization: Organization,
}

/// A lead (a company or household in the CRM).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lead {
    /// Display name.
    pub display_name: String,
    /// Name.
    pub name: String,
    /// Name of the lead's primary contact, the fallback for the lead's names.
    pub primary_contact_name: String,
    /// Description.
    pub description: String,
    /// URL.
    pub url: String,
    /// Status label.
    pub status_label: String,
    /// Custom fields by name.
    pub custom: BTreeMap<String, String>,
    /// Primary address.
    pub primary_address: Address,
    /// Custom fields of the primary opportunity, by name.
    pub primary_opportunity_custom: BTreeMap<String, String>,
}

/// A postal address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Address {
    /// First line.
    pub address_1: String,
    /// Second line.
    pub address_2: String,
    /// City.
    pub city: String,
    /// State or province.
    pub state: String,
    /// Postal code.
    pub zipcode: String,
    /// Country code.
    pub country: String,
    /// Country name.
    pub country_name: String,
}

/// A contact (a person on a lead).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Contact {
    /// Full name.
    pub name: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Job title.
    pub title: String,
    /// Primary phone.
    pub phone: String,
    /// Primary e-mail.
    pub email: String,
    /// Primary URL.
    pub url: String,
    /// Custom fields by name.
    pub custom: BTreeMap<String, String>,
}

/// The sending user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    /// Name shown on e-mails.
    pub from_name: String,
    /// Address shown on e-mails.
    pub from_email: String,
    /// Phone.
    pub phone: String,
    /// E-mail.
    pub email: String,
    /// Full name.
    pub full_name: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
}

/// The organization.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Organization {
    /// Name.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Tag(Tag),
}

/// A parsed, valid template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses and validates a template source.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let chars = source.chars().count();
        if chars > MAX_TEMPLATE_CHARS {
            return Err(TemplateError::TooLong { chars });
        }
        let mut parts = Vec::new();
        let mut rest = source;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let at = position(source, offset + open);
            let inner_start = open + 2;
            let Some(close) = rest[inner_start..].find("}}") else {
                return Err(TemplateError::Unclosed { at });
            };
            let inner = rest[inner_start..inner_start + close].trim();
            if inner.is_empty() {
                return Err(TemplateError::Empty { at });
            }
            let steps = parse_path(inner).map_err(|reason| TemplateError::Malformed {
                tag: inner.to_owned(),
                at,
                reason,
            })?;
            let tag = Tag::from_steps(&steps).ok_or_else(|| TemplateError::Unknown {
                tag: inner.to_owned(),
                at,
            })?;
            parts.push(Part::Tag(tag));
            let consumed = inner_start + close + 2;
            rest = &rest[consumed..];
            offset += consumed;
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// The tags the template uses, in order.
    pub fn tags(&self) -> impl Iterator<Item = &Tag> {
        self.parts.iter().filter_map(|p| match p {
            Part::Tag(t) => Some(t),
            Part::Text(_) => None,
        })
    }

    /// Renders against `ctx`, failing when the output passes `max_chars` characters; past the
    /// limit nothing more is copied, only counted, so the error has the whole length.
    pub fn render(&self, ctx: &Context, max_chars: usize) -> Result<String, RenderTooLong> {
        let mut out = String::new();
        let mut chars = 0usize;
        for part in &self.parts {
            let piece = match part {
                Part::Text(t) => t.as_str(),
                Part::Tag(tag) => tag.value(ctx),
            };
            // Count before copying, so a huge value is refused without being copied.
            chars += piece.chars().count();
            if chars <= max_chars {
                out.push_str(piece);
            }
        }
        if chars > max_chars {
            return Err(RenderTooLong {
                limit: max_chars,
                chars,
            });
        }
        Ok(out)
    }
}

/// Line and column (1-based, in characters) of a byte offset.
fn position(source: &str, byte_offset: usize) -> Position {
    let before = &source[..byte_offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        line,
        column: before[line_start..].chars().count() + 1,
    }
}

/// Parses `a.b.["Key"]` / `a.b["Key"]` into steps.
fn parse_path(inner: &str) -> Result<Vec<Step>, &'static str> {
    let mut steps = Vec::new();
    let mut s = inner;
    loop {
        if let Some(after) = s.strip_prefix('[') {
            let after = after.trim_start();
            let quote = after
                .chars()
                .next()
                .filter(|c| *c == '"' || *c == '\'')
                .ok_or("a custom field must be quoted, like [\"Field Name\"]")?;
            let (key, tail) = read_quoted(&after[1..], quote)?;
            let tail = tail
                .trim_start()
                .strip_prefix(']')
                .ok_or("expected ] after the field name")?;
            if key.is_empty() {
                return Err("the custom field name is empty");
            }
            steps.push(Step::Key(key));
            s = tail;
        } else {
            let end = s
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(s.len());
            let name = &s[..end];
            if name.is_empty() {
                return Err("expected a field name");
            }
            steps.push(Step::Name(name.to_owned()));
            s = &s[end..];
        }
        if s.is_empty() {
            return Ok(steps);
        }
        if s.starts_with('[') {
            continue;
        }
        s = s
            .strip_prefix('.')
            .ok_or("fields are separated by '.' (filters and expressions are not supported)")?;
        if s.is_empty() {
            return Err("the tag ends with '.'");
        }
    }
}

/// Reads a quoted string body up to `quote`, with `\\` escapes; returns it and the rest.
fn read_quoted(s: &str, quote: char) -> Result<(String, &str), &'static str> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => out.push(escaped),
                None => break,
            },
            c if c == quote => return Ok((out, &s[i + c.len_utf8()..])),
            c => out.push(c),
        }
    }
    Err("the field name's quote is never closed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        let mut c = Context::default();
        c.contact.first_name = "Ana".into();
        c.contact.name = "Ana Lopez".into();
        c.lead.custom.insert("Deal Size".into(), "$5k".into());
        c.lead
            .primary_opportunity_custom
            .insert("Stage".into(), "Demo".into());
        c.lead.primary_address.city = "Lisbon".into();
        c.user.first_name = "Sam".into();
        c.organization.name = "Acme".into();
        c
    }

    #[test]
    fn renders_every_kind_of_tag() {
        let t = Template::parse(
            "Hi {{ contact.first_name }}, {{user.first_name}} from {{ organization.name }}. \
             {{ lead.custom.[\"Deal Size\"] }} / {{ lead.primary_opportunity.custom[\"Stage\"] }} \
             in {{ lead.primary_address.city }}{{ contact.title }}.",
        )
        .unwrap();
        assert_eq!(
            t.render(&ctx(), 1000).unwrap(),
            "Hi Ana, Sam from Acme. $5k / Demo in Lisbon."
        );
    }

    #[test]
    fn lead_names_fall_back_to_the_primary_contact() {
        let t = Template::parse("{{ lead.name }}|{{ lead.display_name }}").unwrap();
        assert_eq!(t.render(&ctx(), 100).unwrap(), "Ana Lopez|Ana Lopez");
        let mut c = ctx();
        c.lead.primary_contact_name = "Bo Primary".into();
        c.lead.display_name = "Globex".into();
        assert_eq!(t.render(&c, 100).unwrap(), "Bo Primary|Globex");
    }

    #[test]
    fn missing_values_are_empty() {
        let t = Template::parse("[{{ contact.custom.[\"Nope\"] }}][{{ lead.url }}]").unwrap();
        assert_eq!(t.render(&Context::default(), 100).unwrap(), "[][]");
    }

    #[test]
    fn errors_name_the_tag_and_position() {
        let e = Template::parse("Hi\nthere {{ contact.nickname }}").unwrap_err();
        assert_eq!(
            e,
            TemplateError::Unknown {
                tag: "contact.nickname".into(),
                at: Position { line: 2, column: 7 }
            }
        );
        assert_eq!(
            e.to_string(),
            "unknown tag {{ contact.nickname }} at line 2, column 7"
        );
        assert!(matches!(
            Template::parse("é {{ contact.first_name"),
            Err(TemplateError::Unclosed {
                at: Position { line: 1, column: 3 }
            })
        ));
        assert!(matches!(
            Template::parse("{{   }}"),
            Err(TemplateError::Empty { .. })
        ));
        for bad in [
            "{{ contact.first_name | upper }}",
            "{{ lead.custom.[Deal] }}",
            "{{ lead.custom.[\"Deal\" }}",
            "{{ lead.custom.[\"\"] }}",
            "{{ lead. }}",
            "{{ .lead }}",
            "{{ lead..name }}",
        ] {
            assert!(
                matches!(Template::parse(bad), Err(TemplateError::Malformed { .. })),
                "{bad}"
            );
        }
        for unknown in [
            "{{ lead.custom }}",
            "{{ user.password }}",
            "{{ lead.name.x }}",
        ] {
            assert!(
                matches!(Template::parse(unknown), Err(TemplateError::Unknown { .. })),
                "{unknown}"
            );
        }
    }

    #[test]
    fn stray_closing_braces_are_text() {
        let t = Template::parse("a }} b").unwrap();
        assert_eq!(t.render(&Context::default(), 10).unwrap(), "a }} b");
    }

    #[test]
    fn rendering_stops_at_the_limit() {
        let mut c = ctx();
        c.contact.first_name = "x".repeat(10_000);
        let t = Template::parse(&"{{ contact.first_name }}".repeat(400)).unwrap();
        // The whole length is told, not the limit plus one.
        assert_eq!(
            t.render(&c, 1000),
            Err(RenderTooLong {
                limit: 1000,
                chars: 4_000_000
            })
        );
        let exact = Template::parse(&"é".repeat(1000)).unwrap();
        assert_eq!(exact.render(&c, 1000).unwrap().chars().count(), 1000);
        let over = Template::parse(&"é".repeat(1001)).unwrap();
        assert_eq!(over.render(&c, 1000).unwrap_err().chars, 1001);
    }

    #[test]
    fn source_length_is_capped() {
        assert!(matches!(
            Template::parse(&"a".repeat(MAX_TEMPLATE_CHARS + 1)),
            Err(TemplateError::TooLong { .. })
        ));
    }
}
