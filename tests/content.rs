//! Pages and blog posts through the admin and store APIs, on both databases: Markdown made
//! safe, drafts hidden, scheduling, renamed slugs, tags and authors, and bad input refused
//! without a write.

mod common;

use std::io::Cursor;
use std::time::Duration;

use backroom::accounts::roles::Role;
use backroom::platform::time::Timestamp;
use common::TestApp;
use serde_json::{Value, json};

/// A 64×48 PNG, uploaded: its media id.
async fn upload_picture(app: &TestApp, auth: &str) -> String {
    let picture = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(picture).write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    let response = reqwest::Client::new()
        .post(app.url("/api/v1/admin/media"))
        .header("authorization", auth)
        .header("content-type", "image/png")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let uploaded = common::Resp::read(response).await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text);
    uploaded.body["id"].as_str().unwrap().to_owned()
}

fn in_ms(ms: i64) -> Value {
    json!(Timestamp::now().plus_millis(ms))
}

conformance! {
    async fn staff_write_posts_and_pages_and_visitors_see_them_once_published(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("editor@example.com", Role::Admin).await;
        let h = [("authorization", auth.as_str())];

        let created = app
            .post(
                "/api/v1/admin/posts",
                json!({
                    "title": "Our linen, from field to shirt",
                    "body": "## Grown in Normandy\n\nFlax is **pulled**, not cut. [more](javascript:alert(1))\n\n<script>alert(1)</script><img src=x onerror=alert(1)>",
                    "tags": ["Linen", "Making of", "linen"],
                    "meta_description": "How our linen is made.",
                }),
                &h,
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let post = created.body.clone();
        let id = post["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("pst_"));
        assert_eq!(post["slug"], "our-linen-from-field-to-shirt");
        assert_eq!(post["status"], "draft");
        assert_eq!(post["published_at"], Value::Null);
        assert_eq!(post["tags"], json!(["Linen", "Making of"]));
        assert_eq!(post["authors"][0]["name"], "Sam Staff");
        assert_eq!(created.header("etag"), Some("\"v1\""));
        let html = post["body_html"].as_str().unwrap();
        assert!(html.contains("<h2>Grown in Normandy</h2>") && html.contains("<strong>pulled</strong>"), "{html}");
        assert!(!html.contains("<script") && !html.contains("<img") && html.contains("href=\"#\""), "{html}");

        // A draft is the staff's alone; they read it (a preview) and visitors do not.
        app.get("/api/v1/store/posts/our-linen-from-field-to-shirt", &[]).await.problem(404, "not_found");
        assert_eq!(app.get("/api/v1/store/posts", &[]).await.body["data"], json!([]));
        let read = app.get(&format!("/api/v1/admin/posts/{id}"), &h).await;
        assert_eq!(read.body, post);

        // Published under If-Match: visitors see it, with an excerpt from the body.
        let etag = read.header("etag").unwrap().to_owned();
        let published = app
            .patch(&format!("/api/v1/admin/posts/{id}"), json!({"status": "published"}), &[h[0], ("if-match", &etag)])
            .await;
        assert_eq!(published.status, 200, "{}", published.text);
        assert_eq!(published.body["status"], "published");
        assert!(published.body["published_at"].is_string());
        app.patch(&format!("/api/v1/admin/posts/{id}"), json!({"title": "Lost"}), &[h[0], ("if-match", &etag)])
            .await
            .problem(412, "precondition_failed");
        let shown = app.get("/api/v1/store/posts/our-linen-from-field-to-shirt", &[]).await;
        assert_eq!(shown.status, 200, "{}", shown.text);
        assert_eq!(shown.body["title"], "Our linen, from field to shirt");
        assert_eq!(shown.body["meta_title"], "Our linen, from field to shirt");
        assert_eq!(shown.body["meta_description"], "How our linen is made.");
        assert_eq!(shown.body["excerpt"], "Grown in Normandy Flax is pulled, not cut. more <script>alert(1)</script><img src=x onerror=alert(1)>");
        assert_eq!(shown.body["tags"], json!([{"name": "Linen", "slug": "linen"}, {"name": "Making of", "slug": "making-of"}]));
        assert_eq!(shown.body["authors"], json!([{"id": post["authors"][0]["id"], "name": "Sam Staff"}]));
        assert!(shown.body.get("body").is_none() && shown.body.get("id").is_none());
        // Read again with its ETag: 304 while it is the same, 200 once it changed.
        let etag = shown.header("etag").unwrap().to_owned();
        assert_eq!(app.get("/api/v1/store/posts/our-linen-from-field-to-shirt", &[("if-none-match", &etag)]).await.status, 304);

        // The same title gets a slug of its own; a second post, tagged differently.
        let second = app
            .post("/api/v1/admin/posts", json!({"title": "Our linen, from field to shirt", "status": "published", "tags": ["News"], "excerpt": "Part two."}), &h)
            .await;
        assert_eq!(second.body["slug"], "our-linen-from-field-to-shirt-2");

        // Scheduled: hidden until its time, then shown with nothing else done.
        let scheduled = app
            .post("/api/v1/admin/posts", json!({"title": "Winter sale", "status": "scheduled", "published_at": in_ms(1_500), "tags": ["News"]}), &h)
            .await;
        assert_eq!(scheduled.status, 201, "{}", scheduled.text);
        assert_eq!(scheduled.body["status"], "scheduled");
        app.get("/api/v1/store/posts/winter-sale", &[]).await.problem(404, "not_found");
        tokio::time::sleep(Duration::from_millis(1_700)).await;
        assert_eq!(app.get("/api/v1/store/posts/winter-sale", &[]).await.status, 200);
        let scheduled_id = scheduled.body["id"].as_str().unwrap();
        assert_eq!(app.get(&format!("/api/v1/admin/posts/{scheduled_id}"), &h).await.body["status"], "published");

        // Newest first, a page at a time, and by tag.
        let first = app.get("/api/v1/store/posts?limit=2", &[]).await;
        let slugs = |page: &Value| -> Vec<String> {
            page["data"].as_array().unwrap().iter().map(|p| p["slug"].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(slugs(&first.body), ["winter-sale", "our-linen-from-field-to-shirt-2"]);
        let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
        let rest = app.get(&format!("/api/v1/store/posts?limit=2&after={cursor}"), &[]).await;
        assert_eq!(slugs(&rest.body), ["our-linen-from-field-to-shirt"]);
        assert!(rest.body["next_cursor"].is_null());
        let news = app.get("/api/v1/store/posts?tag=news", &[]).await;
        assert_eq!(slugs(&news.body), ["winter-sale", "our-linen-from-field-to-shirt-2"]);
        assert_eq!(news.body["data"][1]["excerpt"], "Part two.");
        app.get("/api/v1/store/posts?after=nonsense", &[]).await.problem(422, "validation_failed");

        // A new slug: the old address answers 301 to the new one, until it is taken back.
        let etag = app.get(&format!("/api/v1/admin/posts/{id}"), &h).await.header("etag").unwrap().to_owned();
        let renamed = app
            .patch(&format!("/api/v1/admin/posts/{id}"), json!({"slug": "linen-field-to-shirt"}), &[h[0], ("if-match", &etag)])
            .await;
        assert_eq!(renamed.status, 200, "{}", renamed.text);
        assert_eq!(renamed.body["published_at"], published.body["published_at"]);
        let old = app.get("/api/v1/store/posts/our-linen-from-field-to-shirt", &[]).await;
        assert_eq!(old.status, 301);
        assert_eq!(old.header("location"), Some("/api/v1/store/posts/linen-field-to-shirt"));
        let renamed_read = app.get("/api/v1/store/posts/linen-field-to-shirt", &[("if-none-match", &etag)]).await;
        assert_eq!(renamed_read.status, 200);
        assert_ne!(renamed_read.header("etag"), Some(etag.as_str()));
        let taken = app
            .patch(&format!("/api/v1/admin/posts/{id}"), json!({"slug": "our-linen-from-field-to-shirt-2"}), &[h[0], ("if-match", "\"v3\"")])
            .await;
        taken.problem(409, "conflict");

        // Pages are read by slug, apart from posts: a page may share a post's slug.
        let picture = upload_picture(&app, &auth).await;
        let page = app
            .post("/api/v1/admin/pages", json!({"title": "Winter sale", "body": "Terms of the sale.", "status": "published", "noindex": true, "canonical_url": "https://shop.example.com/pages/sale", "cover": {"media_id": picture, "alt": "Snow on the shop"}}), &h)
            .await;
        assert_eq!(page.status, 201, "{}", page.text);
        assert_eq!(page.body["slug"], "winter-sale");
        assert!(page.body["id"].as_str().unwrap().starts_with("pag_"));
        let shown = app.get("/api/v1/store/pages/winter-sale", &[]).await;
        assert_eq!(shown.body["body_html"], "<p>Terms of the sale.</p>\n");
        assert_eq!(shown.body["noindex"], true);
        assert_eq!(shown.body["canonical_url"], "https://shop.example.com/pages/sale");
        assert_eq!(shown.body["cover"]["alt"], "Snow on the shop");
        assert_eq!((shown.body["cover"]["width"].as_u64(), shown.body["cover"]["height"].as_u64()), (Some(64), Some(48)));
        assert!(shown.body["cover"]["sizes"][0]["url"].as_str().unwrap().starts_with("/media/"));
        // `null` takes the cover away; a field left out stays as it was.
        let page_id = page.body["id"].as_str().unwrap();
        let uncovered = app.patch(&format!("/api/v1/admin/pages/{page_id}"), json!({"cover": null}), &[h[0], ("if-match", "\"v1\"")]).await;
        assert_eq!(uncovered.status, 200, "{}", uncovered.text);
        assert_eq!(uncovered.body["cover"], Value::Null);
        assert_eq!(uncovered.body["noindex"], true);
        let pages = app.get("/api/v1/admin/pages", &h).await;
        assert_eq!(pages.body["data"].as_array().unwrap().len(), 1);
        let drafts = app.get("/api/v1/admin/posts?status=draft", &h).await;
        assert_eq!(drafts.body["data"], json!([]));

        // Deleted: gone, old slugs too.
        assert_eq!(app.delete(&format!("/api/v1/admin/posts/{id}"), &h).await.status, 204);
        app.get("/api/v1/store/posts/linen-field-to-shirt", &[]).await.problem(404, "not_found");
        app.get("/api/v1/store/posts/our-linen-from-field-to-shirt", &[]).await.problem(404, "not_found");
        assert_eq!(app.count(&format!("SELECT COUNT(*) FROM content_tags WHERE content_id = '{id}'")).await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'post.%'").await, 6);
    }

    async fn bad_content_is_refused_and_changes_nothing(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("editor@example.com", Role::Admin).await;
        let h = [("authorization", auth.as_str())];
        let reader = app.staff("reader@example.com", Role::Staff).await;

        let bad = app
            .post(
                "/api/v1/admin/posts",
                json!({
                    "title": " ",
                    "slug": "Not A Slug",
                    "excerpt": "x".repeat(1_001),
                    "meta_title": "two\nlines",
                    "canonical_url": "javascript:alert(1)",
                    "cover": {"media_id": "nope"},
                    "author_ids": ["stf_nobody", "someone"],
                    "status": "scheduled",
                }),
                &h,
            )
            .await;
        bad.problem(422, "validation_failed");
        let mut fields = bad.error_fields();
        fields.sort();
        assert_eq!(
            fields,
            ["author_ids[0]", "author_ids[1]", "canonical_url", "cover.media_id", "excerpt", "meta_title", "published_at", "slug", "title"]
        );

        for (body, field) in [
            (json!({"title": "Later", "status": "published", "published_at": in_ms(3_600_000)}), "published_at"),
            (json!({"title": "Past", "status": "scheduled", "published_at": in_ms(-1_000)}), "published_at"),
            (json!({"title": "Odd", "status": "archived"}), "status"),
            (json!({"title": "Who", "author_ids": ["stf_01aaaaaaaaaaaaaaaaaaaaaaaa"]}), "author_ids[0]"),
            (json!({"title": "Img", "cover": {"media_id": "med_01aaaaaaaaaaaaaaaaaaaaaaaa"}}), "cover.media_id"),
            (json!({"title": "Far", "canonical_url": "//elsewhere.example.com/x"}), "canonical_url"),
            (json!({"title": "Tags", "tags": ["ok", ""]}), "tags[1]"),
        ] {
            let refused = app.post("/api/v1/admin/posts", body.clone(), &h).await;
            refused.problem(422, "validation_failed");
            assert_eq!(refused.error_fields(), [field], "{body}");
        }
        app.post("/api/v1/admin/posts", json!({"title": "x", "surprise": 1}), &h).await.problem(422, "validation_failed");
        app.post("/api/v1/admin/pages", json!({"title": "About"}), &[("authorization", &reader)]).await.problem(403, "forbidden");
        app.post("/api/v1/admin/pages", json!({"title": "About"}), &[]).await.problem(401, "unauthenticated");
        assert_eq!(app.count("SELECT COUNT(*) FROM content").await, 0);

        // Staff without the right to write still read; a taken slug is a conflict.
        let about = app.post("/api/v1/admin/pages", json!({"title": "About", "slug": "about"}), &h).await;
        assert_eq!(about.status, 201, "{}", about.text);
        assert_eq!(app.get("/api/v1/admin/pages", &[("authorization", &reader)]).await.status, 200);
        app.post("/api/v1/admin/pages", json!({"title": "About us", "slug": "about"}), &h).await.problem(409, "conflict");
        let id = about.body["id"].as_str().unwrap();
        let patched = app.patch(&format!("/api/v1/admin/pages/{id}"), json!({"status": "scheduled"}), &[h[0], ("if-match", "\"v1\"")]).await;
        assert_eq!(patched.error_fields(), ["published_at"]);
        let nulled = app.patch(&format!("/api/v1/admin/pages/{id}"), json!({"status": "published", "published_at": null}), &[h[0], ("if-match", "\"v1\"")]).await;
        assert_eq!(nulled.error_fields(), ["published_at"]);
        app.get("/api/v1/admin/pages/pst_01aaaaaaaaaaaaaaaaaaaaaaaa", &h).await.problem(404, "not_found");
        assert_eq!(app.count("SELECT COUNT(*) FROM content").await, 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM content WHERE version = 1").await, 1);
    }
}

conformance! {
    async fn the_site_says_what_staff_set_and_nothing_else(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("owner@example.com", Role::Admin).await;
        let h = [("authorization", auth.as_str())];
        let reader = app.staff("reader@example.com", Role::Staff).await;

        let site = app.get("/api/v1/store/site", &[]).await;
        assert_eq!(site.status, 200, "{}", site.text);
        assert_eq!(site.body["name"], "Test Shop");
        assert_eq!(site.body["language"], "en");
        assert_eq!(site.body["logo"], Value::Null);

        let logo = upload_picture(&app, &auth).await;
        let changed = app
            .patch(
                "/api/v1/admin/site",
                json!({
                    "name": "Oak & Thread",
                    "description": "Clothes made to last.",
                    "logo": {"media_id": logo, "alt": "Oak & Thread"},
                    "social": {"instagram": "https://instagram.com/oakandthread", "x": "https://x.com/oakandthread"},
                    "contact": {"email": "hello@oak.example", "phone": "+33 1 23 45 67 89", "address": "5 rue Saint-Denis\n75001 Paris"},
                    "language": "fr-CA",
                }),
                &[h[0], ("if-match", "\"v1\"")],
            )
            .await;
        assert_eq!(changed.status, 200, "{}", changed.text);
        assert_eq!(changed.header("etag"), Some("\"v2\""));
        let site = app.get("/api/v1/store/site", &[]).await;
        assert_eq!(site.body["name"], "Oak & Thread");
        assert_eq!(site.body["social"]["instagram"], "https://instagram.com/oakandthread");
        assert_eq!(site.body["contact"]["address"], "5 rue Saint-Denis\n75001 Paris");
        assert_eq!(site.body["language"], "fr-CA");
        assert_eq!((site.body["logo"]["width"].as_u64(), site.body["logo"]["alt"].as_str()), (Some(64), Some("Oak & Thread")));

        let bad = app
            .patch(
                "/api/v1/admin/site",
                json!({
                    "name": "",
                    "social": {"myspace": "https://myspace.com/a", "x": "http://x.com/a"},
                    "contact": {"email": "not an address", "phone": "call us"},
                    "language": "French",
                    "logo": {"media_id": "med_01aaaaaaaaaaaaaaaaaaaaaaaa"},
                }),
                &[h[0], ("if-match", "\"v2\"")],
            )
            .await;
        bad.problem(422, "validation_failed");
        let mut fields = bad.error_fields();
        fields.sort();
        assert_eq!(fields, ["contact.email", "contact.phone", "language", "name", "social.myspace", "social.x"]);
        let unknown_logo = app.patch("/api/v1/admin/site", json!({"logo": {"media_id": "med_01aaaaaaaaaaaaaaaaaaaaaaaa"}}), &[h[0], ("if-match", "\"v2\"")]).await;
        assert_eq!(unknown_logo.error_fields(), ["logo.media_id"]);
        app.patch("/api/v1/admin/site", json!({"name": "Lost"}), &[h[0], ("if-match", "\"v1\"")]).await.problem(412, "precondition_failed");
        app.patch("/api/v1/admin/site", json!({"name": "Mine"}), &[("authorization", &reader), ("if-match", "\"v2\"")]).await.problem(403, "forbidden");
        assert_eq!(app.get("/api/v1/admin/site", &[("authorization", &reader)]).await.body, changed.body);

        // `null` takes the logo away, and the rest stays.
        let plain = app.patch("/api/v1/admin/site", json!({"logo": null}), &[h[0], ("if-match", "\"v2\"")]).await;
        assert_eq!(plain.body["logo"], Value::Null);
        assert_eq!(plain.body["name"], "Oak & Thread");
    }

    async fn menus_lead_where_things_are_now_and_only_to_what_visitors_see(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("owner@example.com", Role::Admin).await;
        let h = [("authorization", auth.as_str())];
        let clothing = app.post("/api/v1/admin/categories", json!({"name": "Clothing"}), &h).await;
        let shirts = app.post("/api/v1/admin/categories", json!({"name": "Shirts", "parent_id": clothing.body["id"]}), &h).await;
        assert_eq!(shirts.status, 201, "{}", shirts.text);
        let shirt = app
            .post(
                "/api/v1/admin/products",
                json!({"title": "Linen Shirt", "status": "published", "options": [{"name": "Size", "values": ["M"]}],
                       "variants": [{"sku": "LS-M", "options": {"Size": "M"}, "prices": [{"currency": "EUR", "amount": 5900}]}]}),
                &h,
            )
            .await;
        assert_eq!(shirt.status, 201, "{}", shirt.text);
        let about = app.post("/api/v1/admin/pages", json!({"title": "About", "status": "published"}), &h).await;
        let draft = app.post("/api/v1/admin/posts", json!({"title": "Coming soon"}), &h).await;

        let items = json!([
            {"label": "Home", "kind": "home"},
            {"label": "Shirts", "kind": "category", "target": shirts.body["id"], "children": [
                {"label": "Linen shirt", "kind": "product", "target": shirt.body["id"]},
            ]},
            {"label": "About us", "kind": "page", "target": about.body["id"]},
            {"label": "Soon", "kind": "post", "target": draft.body["id"], "children": [{"label": "Hidden", "kind": "home"}]},
            {"label": "Journal", "kind": "blog"},
            {"label": "Instagram", "kind": "url", "target": "https://instagram.com/oakandthread"},
        ]);
        let menu = app.post("/api/v1/admin/menus", json!({"handle": "main", "title": "Main", "items": items}), &h).await;
        assert_eq!(menu.status, 201, "{}", menu.text);
        assert_eq!(menu.body["items"].as_array().unwrap().len(), 6);
        assert_eq!(menu.body["items"][1]["children"][0]["target"], shirt.body["id"]);
        assert_eq!(menu.body["items"][0], json!({"label": "Home", "kind": "home", "target": "", "children": []}));

        let shown = app.get("/api/v1/store/menus/main", &[]).await;
        assert_eq!(shown.status, 200, "{}", shown.text);
        assert_eq!(
            shown.body["items"],
            json!([
                {"label": "Home", "url": "/", "children": []},
                {"label": "Shirts", "url": "/categories/clothing/shirts", "children": [
                    {"label": "Linen shirt", "url": "/products/linen-shirt", "children": []},
                ]},
                {"label": "About us", "url": "/pages/about", "children": []},
                {"label": "Journal", "url": "/blog", "children": []},
                {"label": "Instagram", "url": "https://instagram.com/oakandthread", "children": []},
            ])
        );

        // Renamed: the menu follows. Unpublished: the item goes.
        let shirt_id = shirt.body["id"].as_str().unwrap();
        let renamed = app.patch(&format!("/api/v1/admin/products/{shirt_id}"), json!({"handle": "the-linen-shirt"}), &[h[0], ("if-match", "\"v1\"")]).await;
        assert_eq!(renamed.status, 200, "{}", renamed.text);
        let about_id = about.body["id"].as_str().unwrap();
        app.patch(&format!("/api/v1/admin/pages/{about_id}"), json!({"status": "draft"}), &[h[0], ("if-match", "\"v1\"")]).await;
        let shown = app.get("/api/v1/store/menus/main", &[]).await;
        assert_eq!(shown.body["items"][1]["children"][0]["url"], "/products/the-linen-shirt");
        let labels: Vec<&str> = shown.body["items"].as_array().unwrap().iter().map(|i| i["label"].as_str().unwrap()).collect();
        assert_eq!(labels, ["Home", "Shirts", "Journal", "Instagram"]);

        // Bad menus write nothing.
        let deep = json!([{"label": "1", "kind": "home", "children": [{"label": "2", "kind": "home", "children": [
            {"label": "3", "kind": "home", "children": [{"label": "4", "kind": "home"}]}]}]}]);
        let refused = app.post("/api/v1/admin/menus", json!({"handle": "footer", "title": "Footer", "items": deep}), &h).await;
        assert_eq!(refused.error_fields(), ["items[0].children[0].children[0].children"]);
        let bad = json!([
            {"label": "", "kind": "home"},
            {"label": "Evil", "kind": "url", "target": "javascript:alert(1)"},
            {"label": "Odd", "kind": "banner"},
            {"label": "Far", "kind": "page", "target": "prd_01aaaaaaaaaaaaaaaaaaaaaaaa"},
        ]);
        let refused = app.post("/api/v1/admin/menus", json!({"handle": "Footer!", "title": "Footer", "items": bad}), &h).await;
        refused.problem(422, "validation_failed");
        let mut fields = refused.error_fields();
        fields.sort();
        assert_eq!(fields, ["handle", "items[0].label", "items[1].target", "items[2].kind", "items[3].target"]);
        let gone = json!([{"label": "Gone", "kind": "product", "target": "prd_01aaaaaaaaaaaaaaaaaaaaaaaa"}]);
        let refused = app.post("/api/v1/admin/menus", json!({"handle": "footer", "title": "Footer", "items": gone}), &h).await;
        assert_eq!(refused.error_fields(), ["items[0].target"]);
        app.post("/api/v1/admin/menus", json!({"handle": "main", "title": "Again"}), &h).await.problem(409, "conflict");
        assert_eq!(app.count("SELECT COUNT(*) FROM menus").await, 1);
        app.get("/api/v1/store/menus/footer", &[]).await.problem(404, "not_found");
    }
}

conformance! {
    async fn redirect_rules_answer_addresses_nothing_else_answers(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("owner@example.com", Role::Admin).await;
        let h = [("authorization", auth.as_str())];
        for (from, to, status) in [
            ("/old-about/", "/pages/about", 301),
            ("/old-blog/*", "/blog/*", 301),
            ("/summer-2019/*", "/", 302),
            ("/discontinued", "", 410),
            ("/shop-elsewhere", "https://other.example.com/shop", 301),
        ] {
            let created = app.post("/api/v1/admin/redirects", json!({"from": from, "to": to, "status": status}), &h).await;
            assert_eq!(created.status, 201, "{}", created.text);
        }
        let moved = |path: &'static str| {
            let app = &app;
            async move {
                let resp = app.get(path, &[]).await;
                (resp.status, resp.header("location").map(str::to_owned))
            }
        };
        assert_eq!(moved("/old-about").await, (301, Some("/pages/about".into())));
        assert_eq!(moved("/old-about/?utm_source=mail").await, (301, Some("/pages/about?utm_source=mail".into())));
        assert_eq!(moved("/old-blog/spring-sale").await, (301, Some("/blog/spring-sale".into())));
        assert_eq!(moved("/summer-2019/hats/red").await, (302, Some("/".into())));
        assert_eq!(moved("/shop-elsewhere").await, (301, Some("https://other.example.com/shop".into())));
        app.get("/discontinued", &[]).await.problem(410, "gone");
        app.get("/never-was", &[]).await.problem(404, "not_found");
        app.post("/old-about", json!({}), &[]).await.problem(404, "not_found");
        // A route that exists is never shadowed.
        let rule = app.post("/api/v1/admin/redirects", json!({"from": "/api/v1/store/site", "to": "/elsewhere"}), &h).await;
        assert_eq!(rule.status, 201);
        assert_eq!(app.get("/api/v1/store/site", &[]).await.status, 200);

        // Bad rules are refused and write nothing.
        for (body, field) in [
            (json!({"from": "no-slash", "to": "/x"}), "from"),
            (json!({"from": "/a*b", "to": "/x"}), "from"),
            (json!({"from": "/a?b=1", "to": "/x"}), "from"),
            (json!({"from": "/a", "to": "javascript:alert(1)"}), "to"),
            (json!({"from": "/a", "to": "/b/*"}), "to"),
            (json!({"from": "/a", "to": "/x", "status": 307}), "status"),
            (json!({"from": "/a", "to": "/x", "status": 410}), "to"),
            (json!({"from": "/a", "to": "/a/"}), "to"),
        ] {
            let refused = app.post("/api/v1/admin/redirects", body.clone(), &h).await;
            refused.problem(422, "validation_failed");
            assert_eq!(refused.error_fields(), [field], "{body}");
        }
        app.post("/api/v1/admin/redirects", json!({"from": "/old-about", "to": "/x"}), &h).await.problem(409, "conflict");
        assert_eq!(app.count("SELECT COUNT(*) FROM redirects").await, 6);

        // A file of rules: all or nothing, a path already there is replaced.
        let import = |csv: &'static str| {
            let app = &app;
            let auth = auth.clone();
            async move {
                let response = reqwest::Client::new()
                    .post(app.url("/api/v1/admin/redirects/import"))
                    .header("authorization", auth)
                    .header("content-type", "text/csv")
                    .body(csv)
                    .send()
                    .await
                    .unwrap();
                common::Resp::read(response).await
            }
        };
        let bad = import("from,to,status\n/one,/two,301\n/three,/four,999\nbroken,/x,\n").await;
        bad.problem(422, "validation_failed");
        assert_eq!(bad.error_fields(), ["rows[3].status", "rows[4].from"]);
        assert_eq!(app.count("SELECT COUNT(*) FROM redirects").await, 6);
        let done = import("from,to,status\n/old-about,/pages/about-us,301\n/catalogue/*,/categories/*,\n/gone-too,,410\n").await;
        assert_eq!(done.status, 200, "{}", done.text);
        assert_eq!(done.body, json!({"created": 2, "updated": 1}));
        assert_eq!(moved("/old-about").await, (301, Some("/pages/about-us".into())));
        assert_eq!(moved("/catalogue/shirts/linen").await, (301, Some("/categories/shirts/linen".into())));
        app.get("/gone-too", &[]).await.problem(410, "gone");

        // Changed, then deleted: each takes effect at once.
        let list = app.get("/api/v1/admin/redirects?limit=100", &h).await;
        let rule = list.body["data"].as_array().unwrap().iter().find(|r| r["from"] == "/summer-2019/*").unwrap().clone();
        let id = rule["id"].as_str().unwrap();
        let changed = app.patch(&format!("/api/v1/admin/redirects/{id}"), json!({"status": 410}), &[h[0], ("if-match", "\"v1\"")]).await;
        assert_eq!(changed.status, 200, "{}", changed.text);
        assert_eq!(changed.body["to"], "");
        app.get("/summer-2019/hats", &[]).await.problem(410, "gone");
        assert_eq!(app.delete(&format!("/api/v1/admin/redirects/{id}"), &h).await.status, 204);
        app.get("/summer-2019/hats", &[]).await.problem(404, "not_found");
    }
}

conformance! {
    async fn search_engines_get_sitemaps_of_what_is_shown_and_robots_rules(backend) {
        let app = TestApp::spawn_with(backend, |config| config.public_url = Some("https://shop.example".into())).await;
        let auth = app.staff("owner@example.com", Role::Admin).await;
        let h = [("authorization", auth.as_str())];
        let picture = upload_picture(&app, &auth).await;
        let clothing = app.post("/api/v1/admin/categories", json!({"name": "Clothing"}), &h).await;
        app.post("/api/v1/admin/categories", json!({"name": "Shirts", "parent_id": clothing.body["id"]}), &h).await;
        let product = |title: &str, status: &str| {
            json!({"title": title, "status": status, "images": [{"media_id": picture, "alt": title}],
                   "options": [{"name": "Size", "values": ["M"]}],
                   "variants": [{"sku": title.replace(' ', "-"), "options": {"Size": "M"}, "prices": [{"currency": "EUR", "amount": 5900}]}]})
        };
        let shirt = app.post("/api/v1/admin/products", product("Linen Shirt", "published"), &h).await;
        assert_eq!(shirt.status, 201, "{}", shirt.text);
        app.post("/api/v1/admin/products", product("Secret Shirt", "draft"), &h).await;
        app.post("/api/v1/admin/collections", json!({"title": "Summer", "published": true}), &h).await;
        app.post("/api/v1/admin/posts", json!({"title": "Linen", "status": "published", "cover": {"media_id": picture}}), &h).await;
        app.post("/api/v1/admin/posts", json!({"title": "Hidden from search", "status": "published", "noindex": true}), &h).await;
        app.post("/api/v1/admin/pages", json!({"title": "About", "status": "published"}), &h).await;
        app.post("/api/v1/admin/pages", json!({"title": "Copy", "status": "published", "canonical_url": "/pages/about"}), &h).await;
        app.post("/api/v1/admin/pages", json!({"title": "Draft"}), &h).await;

        let index = app.get("/sitemap.xml", &[]).await;
        assert_eq!(index.status, 200);
        assert_eq!(index.header("content-type"), Some("application/xml; charset=utf-8"));
        for kind in ["products", "categories", "collections", "posts", "pages"] {
            assert!(index.text.contains(&format!("<loc>https://shop.example/sitemaps/{kind}-1.xml</loc>")), "{}", index.text);
        }
        let products = app.get("/sitemaps/products-1.xml", &[]).await.text;
        assert!(products.contains("<loc>https://shop.example/products/linen-shirt</loc><lastmod>"), "{products}");
        assert!(products.contains("<image:loc>https://shop.example/media/"), "{products}");
        assert!(!products.contains("secret-shirt"), "{products}");
        let categories = app.get("/sitemaps/categories-1.xml", &[]).await.text;
        assert!(categories.contains("<loc>https://shop.example/categories/clothing/shirts</loc>"), "{categories}");
        assert!(app.get("/sitemaps/collections-1.xml", &[]).await.text.contains("/collections/summer</loc>"));
        let posts = app.get("/sitemaps/posts-1.xml", &[]).await.text;
        assert!(posts.contains("/blog/linen</loc>") && posts.contains("<image:image>"), "{posts}");
        assert!(!posts.contains("hidden-from-search"), "{posts}");
        let pages = app.get("/sitemaps/pages-1.xml", &[]).await.text;
        for path in ["/</loc>", "/blog</loc>", "/pages/about</loc>"] {
            assert!(pages.contains(&format!("<loc>https://shop.example{path}")), "{pages}");
        }
        assert!(!pages.contains("/pages/copy") && !pages.contains("/pages/draft"), "{pages}");
        app.get("/sitemaps/products-2.xml", &[]).await.problem(404, "not_found");

        // A change shows at once: a renamed product, a new post.
        let id = shirt.body["id"].as_str().unwrap();
        app.patch(&format!("/api/v1/admin/products/{id}"), json!({"handle": "linen-shirt-blue"}), &[h[0], ("if-match", "\"v1\"")]).await;
        app.post("/api/v1/admin/posts", json!({"title": "Fresh news", "status": "published"}), &h).await;
        assert!(app.get("/sitemaps/products-1.xml", &[]).await.text.contains("/products/linen-shirt-blue</loc>"));
        assert!(app.get("/sitemaps/posts-1.xml", &[]).await.text.contains("/blog/fresh-news</loc>"));

        // robots.txt: the rules every shop has, the shop's own lines, the sitemap.
        let robots = app.get("/robots.txt", &[]).await;
        assert_eq!(robots.header("content-type"), Some("text/plain; charset=utf-8"));
        for line in ["User-agent: *", "Disallow: /cart", "Disallow: /checkout", "Disallow: /account", "Disallow: /search", "Sitemap: https://shop.example/sitemap.xml"] {
            assert!(robots.text.lines().any(|l| l == line), "{line}: {}", robots.text);
        }
        let own = app.patch("/api/v1/admin/site", json!({"robots": "# no AI crawlers\nUser-agent: GPTBot\nDisallow: /"}), &[h[0], ("if-match", "\"v1\"")]).await;
        assert_eq!(own.status, 200, "{}", own.text);
        assert!(app.get("/robots.txt", &[]).await.text.contains("\n# no AI crawlers\nUser-agent: GPTBot\nDisallow: /\n"));
        let bad = app.patch("/api/v1/admin/site", json!({"robots": "Let everyone in"}), &[h[0], ("if-match", "\"v2\"")]).await;
        assert_eq!(bad.error_fields(), ["robots"]);
    }
}

/// `feed` as feedparser reads it: whether it is well formed, its kind, title, and each
/// entry's title, link, author and summary.
fn parsed_feed(feed: &str) -> Value {
    let python = common::python_with("feedparser==6.0.14");
    let script = "import feedparser, json, sys\n\
        d = feedparser.parse(sys.stdin.read())\n\
        print(json.dumps({'bozo': d.bozo, 'version': d.version, 'title': d.feed.get('title'),\n\
            'entries': [{'title': e.get('title'), 'link': e.get('link'), 'author': e.get('author'),\n\
                         'summary': e.get('summary'), 'tags': [t.term for t in e.get('tags', [])],\n\
                         'content': (e.get('content') or [{}])[0].get('value')} for e in d.entries]}))";
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(feed.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)))
}

conformance! {
    async fn feed_readers_get_the_latest_posts_in_rss_and_atom(backend) {
        let app = TestApp::spawn_with(backend, |config| config.public_url = Some("https://shop.example".into())).await;
        let auth = app.staff("owner@example.com", Role::Admin).await;
        let h = [("authorization", auth.as_str())];
        app.patch("/api/v1/admin/site", json!({"name": "Oak & Thread", "description": "Made to last."}), &[h[0], ("if-match", "\"v1\"")]).await;
        let day = 86_400_000;
        for (title, days_ago) in [("Older <news>", 3), ("Newest & best", 1)] {
            let body = json!({"title": title, "status": "published", "published_at": in_ms(-days_ago * day),
                              "body": "**Bold** words & more.", "tags": ["News"]});
            assert_eq!(app.post("/api/v1/admin/posts", body, &h).await.status, 201);
        }
        app.post("/api/v1/admin/posts", json!({"title": "Draft"}), &h).await;

        let rss = app.get("/blog/rss.xml", &[]).await;
        assert_eq!(rss.header("content-type"), Some("application/rss+xml; charset=utf-8"));
        let read = parsed_feed(&rss.text);
        assert_eq!((read["bozo"].as_bool(), read["version"].as_str()), (Some(false), Some("rss20")), "{}", rss.text);
        assert_eq!(read["title"], "Oak & Thread");
        let titles: Vec<&str> = read["entries"].as_array().unwrap().iter().map(|e| e["title"].as_str().unwrap()).collect();
        assert_eq!(titles, ["Newest & best", "Older <news>"]);
        assert_eq!(read["entries"][0]["link"], "https://shop.example/blog/newest-best");
        assert_eq!(read["entries"][0]["tags"], json!(["News"]));
        assert_eq!(read["entries"][0]["content"], "<p><strong>Bold</strong> words &amp; more.</p>");

        let atom = app.get("/blog/atom.xml", &[]).await;
        assert_eq!(atom.header("content-type"), Some("application/atom+xml; charset=utf-8"));
        let read = parsed_feed(&atom.text);
        assert_eq!((read["bozo"].as_bool(), read["version"].as_str()), (Some(false), Some("atom10")), "{}", atom.text);
        assert_eq!(read["entries"][1]["title"], "Older <news>");
        assert_eq!(read["entries"][1]["link"], "https://shop.example/blog/older-news");
        assert_eq!(read["entries"][1]["author"], "Sam Staff");
        assert_eq!(read["entries"][1]["summary"], "Bold words & more.");
    }
}
