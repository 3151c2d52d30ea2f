//! End-to-end tests of the SMS platform live in `it/`; this library is empty.
