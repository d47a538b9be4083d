//! Bodies served many times: compressed (Brotli, gzip) once each, the first time a request
//! takes that encoding, with a weak `ETag` shared by the encodings, and answered 304 when the
//! request already has them.

use std::io::Write as _;
use std::sync::OnceLock;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Below this many bytes, compressing saves too little to be worth it.
const COMPRESS_FROM: usize = 512;

/// A body with its compressed forms, each made the first time a request takes it, and a tag
/// of its bytes.
pub struct Encoded {
    identity: Bytes,
    gzip: OnceLock<Option<Bytes>>,
    brotli: OnceLock<Option<Bytes>>,
    /// Brotli's quality, 0 to 11.
    quality: u32,
    etag: HeaderValue,
}

impl Encoded {
    /// `bytes`, to be compressed at Brotli `quality` (11 for files served for ever, lower for
    /// pages rendered often).
    pub fn new(bytes: Vec<u8>, quality: u32) -> Self {
        let etag = HeaderValue::from_str(&format!("W/\"{:016x}\"", crate::platform::http::content_hash(&bytes)))
            .unwrap_or(HeaderValue::from_static("W/\"0\""));
        Self { identity: bytes.into(), gzip: OnceLock::new(), brotli: OnceLock::new(), quality, etag }
    }

    /// As [`Encoded::new`], compressed at once in both encodings.
    pub fn compressed(bytes: Vec<u8>, quality: u32) -> Self {
        let encoded = Self::new(bytes, quality);
        encoded.gzip();
        encoded.brotli();
        encoded
    }

    fn gzip(&self) -> Option<&Bytes> {
        self.gzip.get_or_init(|| compress(&self.identity, gzip)).as_ref()
    }

    fn brotli(&self) -> Option<&Bytes> {
        self.brotli.get_or_init(|| compress(&self.identity, |bytes| brotli(bytes, self.quality))).as_ref()
    }

    /// The body as it is.
    pub fn as_bytes(&self) -> &[u8] {
        &self.identity
    }

    /// The size of the body as it is, in bytes.
    pub fn size(&self) -> usize {
        self.identity.len()
    }

    /// What it takes in memory: the body in every encoding made so far.
    pub fn kept_size(&self) -> usize {
        let made = |encoded: &OnceLock<Option<Bytes>>| encoded.get().and_then(Option::as_ref).map_or(0, Bytes::len);
        self.identity.len() + made(&self.gzip) + made(&self.brotli)
    }

    /// The body in the best encoding the request accepts, and that encoding's name.
    fn for_request(&self, headers: &HeaderMap) -> (Bytes, Option<&'static str>) {
        let accepts = accepted_encodings(headers);
        if accepts.brotli
            && let Some(body) = self.brotli()
        {
            return (body.clone(), Some("br"));
        }
        if accepts.gzip
            && let Some(body) = self.gzip()
        {
            return (body.clone(), Some("gzip"));
        }
        (self.identity.clone(), None)
    }

    /// 200 (or `status`) with the body, or 304 when `If-None-Match` names it.
    pub fn respond(&self, headers: &HeaderMap, status: StatusCode, content_type: &str, cache: &str) -> Response {
        let cache = HeaderValue::from_str(cache).unwrap_or(HeaderValue::from_static("no-cache"));
        let vary = HeaderValue::from_static("Accept-Encoding");
        if status == StatusCode::OK && if_none_match(headers, &self.etag) {
            return (
                StatusCode::NOT_MODIFIED,
                [(header::ETAG, self.etag.clone()), (header::CACHE_CONTROL, cache), (header::VARY, vary)],
            )
                .into_response();
        }
        let (body, encoding) = self.for_request(headers);
        let mut response = (status, body).into_response();
        let set = response.headers_mut();
        set.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("text/plain")),
        );
        set.insert(header::CACHE_CONTROL, cache);
        set.insert(header::VARY, vary);
        if status == StatusCode::OK {
            set.insert(header::ETAG, self.etag.clone());
        }
        if let Some(encoding) = encoding {
            set.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        response
    }
}

/// `bytes` compressed by `encode`, when that is worth it: not for small bodies, nor when it
/// saves nothing.
fn compress(bytes: &[u8], encode: impl FnOnce(&[u8]) -> Option<Vec<u8>>) -> Option<Bytes> {
    if bytes.len() < COMPRESS_FROM {
        return None;
    }
    encode(bytes).filter(|encoded| encoded.len() < bytes.len()).map(Bytes::from)
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 3), flate2::Compression::new(5));
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok()
}

fn brotli(bytes: &[u8], quality: u32) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() / 3);
    let params = brotli::enc::BrotliEncoderParams { quality: quality as i32, lgwin: 22, ..Default::default() };
    brotli::BrotliCompress(&mut std::io::Cursor::new(bytes), &mut out, &params).ok()?;
    Some(out)
}

struct Accepts {
    brotli: bool,
    gzip: bool,
}

/// Which encodings `Accept-Encoding` allows (a `q=0` refuses one).
fn accepted_encodings(headers: &HeaderMap) -> Accepts {
    let mut accepts = Accepts { brotli: false, gzip: false };
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()).is_some_and(|q| q <= 0.0)
            });
            match coding.as_str() {
                "br" => accepts.brotli = !refused,
                "gzip" | "x-gzip" => accepts.gzip = !refused,
                "*" if !refused => {
                    accepts.brotli = true;
                    accepts.gzip = true;
                }
                _ => {}
            }
        }
    }
    accepts
}

/// Whether `If-None-Match` names `etag` (compared weakly) or is `*`.
fn if_none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(value) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else { return false };
    let ours = etag.to_str().unwrap_or("").trim_start_matches("W/");
    value.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking(accept: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(accept).unwrap());
        headers
    }

    #[test]
    fn the_best_accepted_encoding_is_served() {
        let body = Encoded::new("<p>hello</p>".repeat(200).into_bytes(), 5);
        assert_eq!(body.for_request(&asking("gzip, deflate, br")).1, Some("br"));
        assert_eq!(body.for_request(&asking("gzip, br;q=0")).1, Some("gzip"));
        assert_eq!(body.for_request(&asking("identity")).1, None);
        assert_eq!(body.for_request(&HeaderMap::new()).1, None);
        let (brotli, _) = body.for_request(&asking("br"));
        let mut plain = Vec::new();
        brotli::BrotliDecompress(&mut std::io::Cursor::new(&brotli[..]), &mut plain).unwrap();
        assert_eq!(plain, "<p>hello</p>".repeat(200).into_bytes());
        // Too small to be worth it: served as it is.
        assert_eq!(Encoded::new(b"<p>hi</p>".to_vec(), 5).for_request(&asking("br")).1, None);
    }
}
