//! The SQL of numbers, groups and rentals. The tables are in the composer's schema (its
//! migrations create them): the send path reads them in its own queries, and a number's
//! change is written with its feed entry and its state event in one transaction.

pub mod groups;
pub mod numbers;

pub use groups::GroupRow;
pub use numbers::{NumberRow, NumberSource};
