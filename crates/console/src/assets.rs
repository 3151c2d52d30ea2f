//! Files the pages load, compiled into the binary: nothing is fetched from elsewhere.
//!
//! htmx 2.0.11 (`htmx.org` on the npm registry, `dist/htmx.min.js`, Zero-Clause BSD,
//! `assets/htmx-LICENSE`), and the console's own stylesheet. Their paths carry a version, so
//! browsers may keep them.

use axum::http::header;
use axum::response::IntoResponse;

/// Where htmx is served.
pub const HTMX_PATH: &str = "/static/htmx-2.0.11.min.js";
/// Where the stylesheet is served (bump the version when it changes).
pub const CSS_PATH: &str = "/static/console-1.css";

const HTMX: &[u8] = include_bytes!("../assets/htmx-2.0.11.min.js");
const CSS: &[u8] = include_bytes!("../assets/console.css");
const CACHE: &str = "public, max-age=31536000, immutable";

/// `GET` htmx.
pub async fn htmx() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        HTMX,
    )
}

/// `GET` the stylesheet.
pub async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        CSS,
    )
}
