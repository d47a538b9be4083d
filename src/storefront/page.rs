//! A rendered page as it is served: its body [`Encoded`] (each encoding made once), with the
//! cache policy of its kind and the pages' content security policy.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub use crate::platform::encoded::Encoded;

/// What pages may load: only this site's own styles, scripts and forms, images from here or
/// from the object store. JSON-LD blocks are data, which browsers never run.
const PAGE_POLICY: &str = "default-src 'self'; img-src 'self' https: data:; script-src 'self'; style-src 'self'; \
     object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// How long others may keep a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Catalog and content pages: shared caches may keep them a minute, and serve them a
    /// while longer as they check again.
    Public,
    /// Search and filtered lists: the same, but briefly.
    Brief,
    /// Error pages.
    NoStore,
}

impl Freshness {
    fn header(self) -> &'static str {
        match self {
            Self::Public => "public, max-age=60, stale-while-revalidate=300",
            Self::Brief => "public, max-age=30",
            Self::NoStore => "no-store",
        }
    }
}

/// A rendered HTML page.
pub struct Page {
    pub status: StatusCode,
    body: Encoded,
    freshness: Freshness,
}

impl Page {
    /// A page of `html`, to be compressed at a quality quick enough to do on every render.
    pub fn new(status: StatusCode, html: String, freshness: Freshness) -> Self {
        Self { status, body: Encoded::new(html.into_bytes(), 4), freshness }
    }

    /// Its size, for bounding caches.
    pub fn size(&self) -> usize {
        self.body.size()
    }

    /// What it takes in memory.
    pub fn kept_size(&self) -> usize {
        self.body.kept_size()
    }

    pub fn respond(&self, headers: &HeaderMap) -> Response {
        let mut response = self.body.respond(headers, self.status, "text/html; charset=utf-8", self.freshness.header());
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_POLICY));
        response
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        self.respond(&HeaderMap::new())
    }
}
