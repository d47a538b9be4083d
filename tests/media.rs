//! Images: real ones become WebP in every width and are served for ever under names that
//! change with their content; hostile ones (markup hidden in an image, an SVG with a script,
//! a page with an image's name, a header claiming a huge picture, a garbled file) are
//! refused cleanly and leave nothing behind; the bucket can be S3 (moto on loopback).

mod common;

use std::io::Cursor;
use std::time::Duration;

use backroom::accounts::roles::Role;
use common::TestApp;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use serde_json::json;

fn photo(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
    let picture =
        RgbImage::from_fn(width, height, |x, y| Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 128]));
    let mut bytes = Vec::new();
    DynamicImage::ImageRgb8(picture).write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

fn logo(width: u32, height: u32) -> Vec<u8> {
    let picture = RgbaImage::from_fn(width, height, |x, _| Rgba([20, 40, 200, if x % 2 == 0 { 255 } else { 0 }]));
    let mut bytes = Vec::new();
    DynamicImage::ImageRgba8(picture).write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
    bytes
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A PNG whose header claims `width`×`height` pixels, with almost no data behind it: what a
/// decompression bomb looks like before it is opened.
fn claimed_png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    bytes.extend(13u32.to_be_bytes());
    bytes.extend(&ihdr);
    bytes.extend(crc32(&ihdr).to_be_bytes());
    bytes.extend(&logo(2, 2)[33..]);
    bytes
}

async fn upload(app: &TestApp, auth: &str, bytes: &[u8], content_type: &str) -> common::Resp {
    let client = reqwest::Client::new();
    let response = client
        .post(app.url("/api/v1/admin/media"))
        .header("authorization", auth)
        .header("content-type", content_type)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    common::Resp::read(response).await
}

async fn fetch(app: &TestApp, url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let response = reqwest::get(app.url(url)).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

conformance! {
    async fn real_images_become_webp_in_every_width_and_hostile_ones_are_refused(backend) {
        let app = TestApp::spawn_with(backend, |config| {
            config.media.max_pixels = 4_000_000;
            config.media.max_upload_bytes = 2 * 1024 * 1024;
        })
        .await;
        let auth = app.staff("admin@example.com", Role::Admin).await;

        // A photo wider than every size: one WebP per configured width.
        let jpeg = photo(1600, 1200, ImageFormat::Jpeg);
        let made = upload(&app, &auth, &jpeg, "image/jpeg").await;
        assert_eq!(made.status, 201, "{}", made.text);
        assert_eq!((made.body["format"].as_str(), made.body["width"].as_u64()), (Some("jpeg"), Some(1600)));
        let widths: Vec<u64> = made.body["sizes"].as_array().unwrap().iter().map(|s| s["width"].as_u64().unwrap()).collect();
        assert_eq!(widths, [320, 640, 1280]);
        assert_eq!(made.body["sizes"][1]["height"], 480);
        let url = made.body["sizes"][1]["url"].as_str().unwrap().to_owned();
        let (status, headers, body) = fetch(&app, &url).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "image/webp");
        assert!(headers["cache-control"].to_str().unwrap().contains("immutable"));
        let served = image::load_from_memory(&body).unwrap();
        assert_eq!((image::guess_format(&body).unwrap(), served.width(), served.height()), (ImageFormat::WebP, 640, 480));

        // The same file again is the same image; names follow content.
        let again = upload(&app, &auth, &jpeg, "application/octet-stream").await;
        assert_eq!((again.status, &again.body["id"]), (200, &made.body["id"]));

        // Narrower than some sizes: those it can fill, then its own width. Its transparency stays.
        let png = upload(&app, &auth, &logo(400, 100), "image/png").await;
        assert_eq!(png.status, 201, "{}", png.text);
        let widths: Vec<u64> = png.body["sizes"].as_array().unwrap().iter().map(|s| s["width"].as_u64().unwrap()).collect();
        assert_eq!(widths, [320, 400]);
        let (_, _, body) = fetch(&app, png.body["sizes"][1]["url"].as_str().unwrap()).await;
        assert!(image::load_from_memory(&body).unwrap().color().has_alpha());
        // A PNG sent as a JPEG is judged by its content; GIF and WebP are taken too.
        let misnamed = upload(&app, &auth, &logo(50, 50), "image/jpeg").await;
        assert_eq!((misnamed.status, misnamed.body["format"].as_str()), (201, Some("png")));
        for format in [ImageFormat::Gif, ImageFormat::WebP] {
            let taken = upload(&app, &auth, &photo(64, 48, format), "image/gif").await;
            assert_eq!(taken.status, 201, "{format:?}: {}", taken.text);
        }
        let media = app.count("SELECT COUNT(*) FROM media").await;

        // Hostile files: each refused with a reason, and nothing stored.
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>"#;
        upload(&app, &auth, svg, "image/svg+xml").await.problem(415, "unsupported_media_type");
        upload(&app, &auth, b"<!doctype html><html><script>alert(1)</script></html>", "image/jpeg").await.problem(415, "unsupported_media_type");
        let mut gif_js = photo(16, 16, ImageFormat::Gif);
        gif_js.extend_from_slice(b"*/=1;<script>alert(1)</script>");
        let refused = upload(&app, &auth, &gif_js, "image/gif").await;
        assert_eq!(refused.problem(422, "validation_failed")["errors"][0]["code"], "polyglot");
        let mut png_zip = logo(16, 16);
        png_zip.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00payload.html");
        assert_eq!(upload(&app, &auth, &png_zip, "image/png").await.problem(422, "validation_failed")["errors"][0]["code"], "polyglot");
        let bomb = upload(&app, &auth, &claimed_png(100_000, 100_000), "image/png").await;
        assert_eq!(bomb.problem(422, "validation_failed")["errors"][0]["code"], "too_many_pixels");
        let wide = upload(&app, &auth, &photo(2500, 2000, ImageFormat::Png), "image/png").await;
        assert_eq!(wide.problem(422, "validation_failed")["errors"][0]["code"], "too_many_pixels", "5 megapixels over a 4 megapixel limit");
        let mut garbled = jpeg[..4].to_vec();
        garbled.extend((0..4000u32).map(|n| (n * 7919 % 251) as u8));
        assert_eq!(upload(&app, &auth, &garbled, "image/jpeg").await.problem(422, "validation_failed")["errors"][0]["code"], "unreadable");
        upload(&app, &auth, &vec![0xff; 3 * 1024 * 1024], "image/jpeg").await.problem(413, "payload_too_large");
        upload(&app, &auth, b"", "image/jpeg").await.problem(422, "validation_failed");
        assert_eq!(app.count("SELECT COUNT(*) FROM media").await, media);
        let files = walk(&app.data_dir().join("media"));
        assert_eq!(files.len(), 3 + 2 + 1 + 2, "the files of the images taken, no others: {files:?}");

        // Products show their images in order, with their text.
        let product = app.post("/api/v1/admin/products", json!({
            "title": "Poster", "status": "published", "variants": [{"sku": "POSTER"}],
            "images": [{"media_id": png.body["id"], "alt": "The logo"}, {"media_id": made.body["id"], "alt": "A gradient"}],
        }), &[("authorization", &auth)]).await;
        assert_eq!(product.status, 201, "{}", product.text);
        assert_eq!(product.body["images"][0]["alt"], "The logo");
        let shown = app.get("/api/v1/store/products/poster", &[]).await;
        assert_eq!(shown.body["images"][1]["sizes"][2]["width"], 1280);
        assert_eq!(shown.body["images"][1]["sizes"], made.body["sizes"]);
        let id = product.body["id"].as_str().unwrap();
        let reordered = app.patch(&format!("/api/v1/admin/products/{id}"), json!({"images": [{"media_id": made.body["id"]}]}), &[("authorization", &auth)]).await;
        assert_eq!(reordered.body["images"].as_array().unwrap().len(), 1);
        assert_eq!(app.get("/api/v1/store/products/poster", &[]).await.body["images"][0]["media_id"], made.body["id"]);
        let unknown = app.patch(&format!("/api/v1/admin/products/{id}"), json!({"images": [{"media_id": "med_01JZZZZZZZZZZZZZZZZZZZZZZZ"}]}), &[("authorization", &auth)]).await;
        assert_eq!(unknown.problem(422, "validation_failed")["errors"][0]["field"], "images[0].media_id");
        assert_eq!(fetch(&app, "/media/0123456789abcdef01234567/9999.webp").await.0, 404);
        assert_eq!(fetch(&app, "/media/..%2F..%2Fetc/passwd.webp").await.0, 404);
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// moto's S3 on loopback, with a bucket.
struct S3Server {
    child: std::process::Child,
    port: u16,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_s3(bucket: &str) -> S3Server {
    let python = common::python_with("moto[server]==5.2.5");
    let server = python.with_file_name("moto_server");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let s3 = S3Server { child, port };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(answer) = client.put(format!("http://127.0.0.1:{port}/{bucket}")).send().await
            && answer.status().is_success()
        {
            return s3;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not answer on {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_can_live_in_an_s3_bucket() {
    let s3 = start_s3("shop-media").await;
    let endpoint = format!("http://127.0.0.1:{}", s3.port);
    let app = TestApp::spawn_with(common::Backend::Sqlite, |config| {
        config.media.store = backroom::platform::config::MediaStoreKind::S3;
        config.media.s3.bucket = "shop-media".into();
        config.media.s3.endpoint = Some(endpoint.clone());
        config.media.s3.path_style = true;
        config.media.s3.access_key_id = "testing".into();
        config.media.s3.secret_access_key = Some("testing".to_owned().into());
    })
    .await;
    let auth = app.staff("admin@example.com", Role::Admin).await;
    let made = upload(&app, &auth, &photo(800, 600, ImageFormat::Jpeg), "image/jpeg").await;
    assert_eq!(made.status, 201, "{}", made.text);
    let url = made.body["sizes"][0]["url"].as_str().unwrap().to_owned();
    let (status, _, body) = fetch(&app, &url).await;
    assert_eq!(status, 200);
    assert_eq!(image::load_from_memory(&body).unwrap().width(), 320);
    // The files are in the bucket, not on disk.
    let listing = reqwest::get(format!("{endpoint}/shop-media?list-type=2")).await.unwrap().text().await.unwrap();
    let key = url.trim_start_matches("/media/");
    assert!(listing.contains(key), "{listing}");
    assert_eq!(listing.matches("<Key>").count(), 3, "{listing}");
    assert!(walk(&app.data_dir().join("media")).is_empty());
}
