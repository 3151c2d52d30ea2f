//! The pages, one module per section.

pub mod compose;
pub mod conversations;
pub mod messages;
pub mod numbers;
pub mod optouts;
pub mod scheduled;
pub mod signin;
pub mod templates;
pub mod usage;

/// A form with nothing but its CSRF token.
#[derive(Debug, serde::Deserialize)]
pub struct Empty {}

/// An optional text field: empty means absent.
pub fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}
