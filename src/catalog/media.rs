//! Images: uploads checked by their content (never their name or declared type), refused
//! before decoding when too big to be honest, re-encoded as WebP in the configured widths so
//! that nothing of the upload but its pixels is ever served, and kept on local disk or in an
//! S3-compatible bucket under content-hashed names that never change.

use std::io::Cursor;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::platform::config::{Config, MediaConfig, MediaStoreKind};
use crate::platform::error::{AppError, AppResult, ErrorCode, Problem};
use crate::platform::http::{Json, Query};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::pagination::{self, Page, PageParams};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

/// The largest body the upload route reads; `media.max_upload_bytes` is checked within it.
const UPLOAD_LIMIT: usize = 64 * 1024 * 1024;
/// Images decoded at once: each may take hundreds of megabytes while it is worked on.
const PROCESSING_AT_ONCE: usize = 2;
/// No side longer than this, whatever `media.max_pixels` allows.
const MAX_SIDE: u32 = 20_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload))
        .layer(DefaultBodyLimit::max(UPLOAD_LIMIT))
        .merge(OpenApiRouter::new().routes(routes!(list_media)).routes(routes!(get_media)))
}

/// Serves stored images: `GET /media/{key}`. Not part of the API document.
pub fn files_router() -> axum::Router<AppState> {
    axum::Router::new().route("/media/{prefix}/{file}", axum::routing::get(serve_file))
}

/// Where images are kept, and where shoppers fetch them.
pub struct MediaStore {
    store: Arc<dyn ObjectStore>,
    public_base: String,
    processing: tokio::sync::Semaphore,
}

impl MediaStore {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret;
        let media = &config.media;
        let store: Arc<dyn ObjectStore> = match media.store {
            MediaStoreKind::Local => {
                let dir = config.data_dir.join("media");
                std::fs::create_dir_all(&dir)
                    .map_err(|err| anyhow::anyhow!("cannot create the media folder {}: {err}", dir.display()))?;
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir)?)
            }
            MediaStoreKind::S3 => {
                let s3 = &media.s3;
                let mut builder = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_access_key_id(&s3.access_key_id)
                    .with_virtual_hosted_style_request(!s3.path_style);
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(secret.expose_secret());
                }
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
                }
                Arc::new(builder.build()?)
            }
        };
        let public_base = media.public_url.clone().unwrap_or_else(|| "/media".into()).trim_end_matches('/').to_owned();
        Ok(Self { store, public_base, processing: tokio::sync::Semaphore::new(PROCESSING_AT_ONCE) })
    }

    /// The address of a stored file.
    pub fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.public_base)
    }

    /// The sizes an image was made in, from what the database keeps of them.
    pub(crate) fn sizes(&self, variants: &str) -> Vec<ImageSize> {
        let stored: Vec<StoredSize> = serde_json::from_str(variants).unwrap_or_default();
        stored.into_iter().map(|s| ImageSize { width: s.width, height: s.height, url: self.url(&s.key) }).collect()
    }
}

/// One size of an image.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
    /// Where to fetch it: content-hashed, so it can be cached for ever.
    pub url: String,
}

/// A stored size, as the database keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSize {
    width: u32,
    height: u32,
    key: String,
    bytes: usize,
}

/// An uploaded image.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Media {
    pub id: String,
    /// What the upload was: `jpeg`, `png`, `gif` or `webp`.
    pub format: String,
    pub width: u32,
    pub height: u32,
    /// The sizes made from it, narrowest first, all WebP.
    pub sizes: Vec<ImageSize>,
    pub created_at: Timestamp,
}

#[derive(sqlx::FromRow)]
pub(crate) struct MediaRow {
    id: String,
    format: String,
    width: i64,
    height: i64,
    variants: String,
    created_at: Timestamp,
}

const MEDIA_COLUMNS: &str = "id, format, width, height, variants, created_at";

impl MediaRow {
    fn into_media(self, store: &MediaStore) -> Media {
        Media {
            sizes: store.sizes(&self.variants),
            id: self.id,
            format: self.format,
            width: self.width as u32,
            height: self.height as u32,
            created_at: self.created_at,
        }
    }
}

/// Why an upload was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    TooLarge(usize),
    NotAnImage,
    /// Markup or an archive hidden in an image: a file meant to be read as something else.
    Polyglot,
    TooManyPixels(u32, u32),
    Unreadable(String),
}

impl Refusal {
    fn into_error(self) -> AppError {
        match self {
            Refusal::TooLarge(max) => {
                AppError::new(ErrorCode::PayloadTooLarge, format!("Images may be at most {max} bytes."))
            }
            Refusal::NotAnImage => AppError::new(
                ErrorCode::UnsupportedMediaType,
                "This is not a JPEG, PNG, WebP or GIF image (its content decides, not its name or type).",
            ),
            Refusal::Polyglot => AppError::invalid_field(
                "body",
                "polyglot",
                "holds markup or an archive besides the image; re-save it from an image editor",
            ),
            Refusal::TooManyPixels(width, height) => AppError::invalid_field(
                "body",
                "too_many_pixels",
                format!("is {width}×{height} pixels, more than this shop takes"),
            ),
            Refusal::Unreadable(reason) => {
                AppError::invalid_field("body", "unreadable", format!("cannot be decoded as an image: {reason}"))
            }
        }
    }
}

/// An image checked, decoded and re-encoded in every width.
pub struct Processed {
    pub hash: String,
    pub format: &'static str,
    pub width: u32,
    pub height: u32,
    /// Width, height and WebP bytes of each size.
    pub sizes: Vec<(u32, u32, Vec<u8>)>,
}

/// Text that has no business in an image: a file holding it is meant to be read as a page,
/// a script or an archive by something that ignores the image part.
const HIDDEN: [&[u8]; 9] =
    [b"<script", b"<html", b"<svg", b"<?php", b"<iframe", b"<body", b"javascript:", b"PK\x03\x04", b"PK\x05\x06"];

/// Looks where such text hides (the headers and comments at the start, what trails the
/// picture at the end) rather than through the compressed picture itself, where a few
/// bytes can match by chance.
fn hides_something(bytes: &[u8]) -> bool {
    const WINDOW: usize = 64 * 1024;
    let head = &bytes[..bytes.len().min(WINDOW)];
    let tail = &bytes[bytes.len().saturating_sub(WINDOW)..];
    [head, tail].iter().any(|part| {
        HIDDEN.iter().any(|needle| part.windows(needle.len()).any(|window| window.eq_ignore_ascii_case(needle)))
    })
}

/// Checks an upload and makes its sizes. Runs for a while on big images: call it off the
/// async threads.
pub fn process(bytes: &[u8], config: &MediaConfig) -> Result<Processed, Refusal> {
    if bytes.len() > config.max_upload_bytes {
        return Err(Refusal::TooLarge(config.max_upload_bytes));
    }
    let format = match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg) => "jpeg",
        Ok(ImageFormat::Png) => "png",
        Ok(ImageFormat::Gif) => "gif",
        Ok(ImageFormat::WebP) => "webp",
        _ => return Err(Refusal::NotAnImage),
    };
    if hides_something(bytes) {
        return Err(Refusal::Polyglot);
    }
    let unreadable = |err: image::ImageError| Refusal::Unreadable(err.to_string());
    let reader = || {
        let mut reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| Refusal::Unreadable(e.to_string()))?;
        let mut limits = Limits::default();
        limits.max_image_width = Some(MAX_SIDE);
        limits.max_image_height = Some(MAX_SIDE);
        limits.max_alloc = Some(config.max_pixels.saturating_mul(4).saturating_add(64 * 1024 * 1024));
        reader.limits(limits);
        Ok::<_, Refusal>(reader)
    };
    // The header alone says how big the picture is: refuse a bomb before decoding it.
    let (width, height) = match reader()?.into_dimensions() {
        Ok(size) => size,
        Err(image::ImageError::Limits(_)) => return Err(Refusal::TooManyPixels(MAX_SIDE + 1, MAX_SIDE + 1)),
        Err(err) => return Err(unreadable(err)),
    };
    if u64::from(width) * u64::from(height) > config.max_pixels || width > MAX_SIDE || height > MAX_SIDE {
        return Err(Refusal::TooManyPixels(width, height));
    }
    let mut decoder = reader()?.into_decoder().map_err(unreadable)?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut picture = DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    picture.apply_orientation(orientation);
    let (width, height) = (picture.width(), picture.height());
    let mut widths: Vec<u32> = config.widths.iter().copied().filter(|w| *w < width).collect();
    let widest = config.widths.iter().copied().max().unwrap_or(width);
    widths.push(width.min(widest));
    widths.sort_unstable();
    widths.dedup();
    let mut sizes = Vec::with_capacity(widths.len());
    for target in widths {
        let resized = if target == width {
            picture.clone()
        } else {
            let target_height = ((u64::from(height) * u64::from(target)) / u64::from(width)).max(1) as u32;
            picture.resize_exact(target, target_height, image::imageops::FilterType::CatmullRom)
        };
        let mut webp = Vec::new();
        let encoder = image::codecs::webp::WebPEncoder::new_lossless(&mut webp);
        let encoded = if resized.color().has_alpha() {
            let rgba = resized.to_rgba8();
            encoder.encode(rgba.as_raw(), rgba.width(), rgba.height(), image::ExtendedColorType::Rgba8)
        } else {
            let rgb = resized.to_rgb8();
            encoder.encode(rgb.as_raw(), rgb.width(), rgb.height(), image::ExtendedColorType::Rgb8)
        };
        encoded.map_err(unreadable)?;
        sizes.push((resized.width(), resized.height(), webp));
    }
    let digest = Sha256::digest(bytes);
    let hash = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Processed { hash, format, width, height, sizes })
}

fn not_found() -> AppError {
    AppError::not_found("No image has this id.")
}

/// Upload an image: the file itself as the body, whatever its `Content-Type`. JPEG, PNG,
/// WebP and GIF are taken, judged by their content; each is made into WebP in the shop's
/// widths. The same file uploaded again gives the image already made (200).
#[utoipa::path(post, path = "/api/v1/admin/media", tag = "admin: media",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = Media),
        (status = 200, description = "This very file was uploaded before", body = Media),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Markup hidden in it, too many pixels, or not decodable", body = Problem, content_type = "application/problem+json"),
    ))]
async fn upload(State(state): State<AppState>, staff: CurrentStaff, body: Bytes) -> AppResult<Response> {
    staff.require(Permission::ProductsWrite)?;
    if body.is_empty() {
        return Err(AppError::invalid_field("body", "required", "is empty: send the image file as the body"));
    }
    let (media, created) = save_image(&state, body).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(media)).into_response())
}

/// Checks an image, makes and stores its sizes, and records it; whether it is new (the same
/// file saved before gives the image made then).
pub async fn save_image(state: &AppState, body: Bytes) -> AppResult<(Media, bool)> {
    let hash = format!("{:x}", Sha256::digest(&body));
    if let Some(existing) = find_by_hash(state, &hash).await? {
        return Ok((existing, false));
    }
    let config = state.config.media.clone();
    let _turn = state
        .media
        .processing
        .acquire()
        .await
        .map_err(|err| AppError::internal(anyhow::anyhow!("image processing is closed: {err}")))?;
    let processed = tokio::task::spawn_blocking(move || process(&body, &config))
        .await
        .map_err(|err| AppError::internal(anyhow::anyhow!("image processing stopped: {err}")))?
        .map_err(Refusal::into_error)?;
    let prefix = &processed.hash[..24];
    let mut stored = Vec::with_capacity(processed.sizes.len());
    for (width, height, webp) in processed.sizes {
        let key = format!("{prefix}/{width}.webp");
        let bytes = webp.len();
        state
            .media
            .store
            .put(&StorePath::from(key.as_str()), webp.into())
            .await
            .map_err(|err| AppError::internal(anyhow::anyhow!("cannot store {key}: {err}")))?;
        stored.push(StoredSize { width, height, key, bytes });
    }
    let id = new_id("med");
    let now = Timestamp::now();
    let variants = serde_json::to_string(&stored).map_err(AppError::internal)?;
    let mut tx = state.db.begin().await?;
    let inserted = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO media (id, hash, format, width, height, bytes, variants, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (hash) DO NOTHING",
        )
        .bind(&id)
        .bind(&processed.hash)
        .bind(processed.format)
        .bind(i64::from(processed.width))
        .bind(i64::from(processed.height))
        .bind(stored.iter().map(|s| s.bytes as i64).sum::<i64>())
        .bind(&variants)
        .bind(now)
        .execute(conn)
        .await
    })?;
    tx.commit().await?;
    if inserted == 0 {
        // The same file, saved at the same time by someone else.
        let existing = find_by_hash(state, &processed.hash).await?.ok_or_else(not_found)?;
        return Ok((existing, false));
    }
    let media = Media {
        id,
        format: processed.format.into(),
        width: processed.width,
        height: processed.height,
        sizes: stored
            .iter()
            .map(|s| ImageSize { width: s.width, height: s.height, url: state.media.url(&s.key) })
            .collect(),
        created_at: now,
    };
    Ok((media, true))
}

async fn find_by_hash(state: &AppState, hash: &str) -> AppResult<Option<Media>> {
    let sql = format!("SELECT {MEDIA_COLUMNS} FROM media WHERE hash = $1");
    let row = db_run!(state.db.read().await?, |conn| sqlx::query_as::<_, MediaRow>(&sql)
        .bind(hash)
        .fetch_optional(conn)
        .await)?;
    Ok(row.map(|row| row.into_media(&state.media)))
}

/// List images, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/media", tag = "admin: media", params(PageParams),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Page<Media>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_media(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(page): Query<PageParams>,
) -> AppResult<Json<Page<Media>>> {
    staff.require(Permission::ProductsRead)?;
    let rows = pagination::oldest_first(&state.db, "media", MEDIA_COLUMNS, &page, |row: &MediaRow| &row.id).await?;
    let data = rows.data.into_iter().map(|row| row.into_media(&state.media)).collect();
    Ok(Json(Page { data, next_cursor: rows.next_cursor }))
}

/// Read an image's sizes.
#[utoipa::path(get, path = "/api/v1/admin/media/{id}", tag = "admin: media", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Media),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_media(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<Json<Media>> {
    staff.require(Permission::ProductsRead)?;
    if !has_shape(&id, "med") {
        return Err(not_found());
    }
    let sql = format!("SELECT {MEDIA_COLUMNS} FROM media WHERE id = $1");
    let row = db_run!(state.db.read().await?, |conn| sqlx::query_as::<_, MediaRow>(&sql)
        .bind(&id)
        .fetch_optional(conn)
        .await)?
    .ok_or_else(not_found)?;
    Ok(Json(row.into_media(&state.media)))
}

/// A stored file, cached by browsers and CDNs for a year: its name changes with its content.
async fn serve_file(State(state): State<AppState>, Path((prefix, file)): Path<(String, String)>) -> Response {
    let missing = || AppError::not_found("No such image.").into_response();
    let well_formed = prefix.len() == 24
        && prefix.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && file
            .strip_suffix(".webp")
            .is_some_and(|w| !w.is_empty() && w.len() <= 5 && w.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed {
        return missing();
    }
    let key = format!("{prefix}/{file}");
    let found = match state.media.store.get(&StorePath::from(key.as_str())).await {
        Ok(found) => found.bytes().await,
        Err(object_store::Error::NotFound { .. }) => return missing(),
        Err(err) => Err(err),
    };
    match found {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("image/webp")),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
                (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            ],
            bytes,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, media.key = %key, "a stored image cannot be read");
            AppError::internal(anyhow::anyhow!("cannot read {key}")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_archives_in_images_are_found() {
        assert!(hides_something(b"GIF89a....<SCRIPT>alert(1)</script>"));
        assert!(hides_something(b"\x89PNG....PK\x03\x04zip"));
        assert!(!hides_something(b"\xff\xd8\xff\xe0 plain jpeg bytes \x00\x01"));
    }
}
