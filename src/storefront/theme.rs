//! The theme: the templates pages are rendered with and the files they link to (styles,
//! script, icon). The built-in theme is compiled in; a file of the same name in the theme
//! folder (`templates/` or `assets/` under `storefront.theme_dir`) replaces it, read at
//! start, so a shop changes its look without building anything.
//!
//! Assets are served under names that carry a hash of their bytes
//! (`/assets/theme.3f2a9c1b.css`), so browsers and CDNs may keep them for ever: a changed file
//! gets a new name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::{Environment, Value};

use super::page::Encoded;
use crate::platform::config::Config;

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../../templates/storefront/layout.html")),
    ("macros.html", include_str!("../../templates/storefront/macros.html")),
    ("home.html", include_str!("../../templates/storefront/home.html")),
    ("product.html", include_str!("../../templates/storefront/product.html")),
    ("listing.html", include_str!("../../templates/storefront/listing.html")),
    ("blog.html", include_str!("../../templates/storefront/blog.html")),
    ("entry.html", include_str!("../../templates/storefront/entry.html")),
    ("error.html", include_str!("../../templates/storefront/error.html")),
    ("cart.html", include_str!("../../templates/storefront/cart.html")),
    ("checkout.html", include_str!("../../templates/storefront/checkout.html")),
    ("confirmation.html", include_str!("../../templates/storefront/confirmation.html")),
    ("account.html", include_str!("../../templates/storefront/account.html")),
    ("signin.html", include_str!("../../templates/storefront/signin.html")),
    ("register.html", include_str!("../../templates/storefront/register.html")),
    ("message.html", include_str!("../../templates/storefront/message.html")),
];

const ASSETS: &[(&str, &[u8])] = &[
    ("theme.css", include_bytes!("../../templates/storefront/assets/theme.css")),
    ("theme.js", include_bytes!("../../templates/storefront/assets/theme.js")),
    ("favicon.svg", include_bytes!("../../templates/storefront/assets/favicon.svg")),
    ("logo.png", include_bytes!("../../templates/storefront/assets/logo.png")),
    ("share.png", include_bytes!("../../templates/storefront/assets/share.png")),
];

/// An asset as served: its bytes, encoded ahead, and its type.
pub struct Asset {
    pub body: Encoded,
    pub content_type: &'static str,
}

/// The templates and the assets, ready to serve.
pub struct Theme {
    env: Environment<'static>,
    /// Assets by the hashed file name they are served under.
    assets: HashMap<String, Asset>,
    /// The path each asset is served at, by its own name.
    urls: Arc<HashMap<String, String>>,
}

/// The type of a file, by its name.
fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("avif") => "image/avif",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("txt") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// `theme.css` served as `theme.{hash}.css`.
fn hashed_name(name: &str, bytes: &[u8]) -> String {
    let hash = format!("{:016x}", crate::platform::http::content_hash(bytes));
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{}.{ext}", &hash[..10]),
        None => format!("{name}.{}", &hash[..10]),
    }
}

/// The files directly in `folder`, by name; none when the folder does not exist.
fn files_in(folder: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Ok(Vec::new()) };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if !path.is_file() {
            continue;
        }
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            files.push((name.to_owned(), path.clone()));
        }
    }
    Ok(files)
}

impl Theme {
    /// The built-in theme with the theme folder's files over it. A template that does not
    /// compile stops the start, named.
    pub fn load(config: &Config) -> anyhow::Result<Self> {
        let folder = config.storefront.theme_dir.clone().unwrap_or_else(|| config.data_dir.join("theme"));
        let mut sources: HashMap<String, Vec<u8>> =
            ASSETS.iter().map(|(name, bytes)| ((*name).to_owned(), bytes.to_vec())).collect();
        for (name, path) in files_in(&folder.join("assets"))? {
            if name.starts_with('.') {
                continue;
            }
            sources.insert(name, std::fs::read(&path)?);
        }
        let mut urls: HashMap<String, String> = HashMap::new();
        let mut assets = HashMap::new();
        for (name, bytes) in sources {
            let served = hashed_name(&name, &bytes);
            urls.insert(name.clone(), format!("/assets/{served}"));
            let body = Encoded::compressed(bytes, 11);
            assets.insert(served, Asset { body, content_type: content_type(&name) });
        }

        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        for (name, path) in files_in(&folder.join("templates"))? {
            if !name.ends_with(".html") {
                continue;
            }
            let source = std::fs::read_to_string(&path)?;
            env.add_template_owned(name, source)
                .map_err(|err| anyhow::anyhow!("theme template {}: {err}", path.display()))?;
        }
        env.set_formatter(escape_for_html);
        let urls = Arc::new(urls);
        let known = urls.clone();
        env.add_function("asset", move |name: &str| -> Result<String, minijinja::Error> {
            known.get(name).cloned().ok_or_else(|| {
                minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("the theme has no asset `{name}`"),
                )
            })
        });
        Ok(Self { env, assets, urls })
    }

    /// Renders the template `name` with `context`.
    pub fn render(&self, name: &str, context: Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(context)
    }

    /// The path the asset `name` is served at.
    pub fn asset_path(&self, name: &str) -> Option<&str> {
        self.urls.get(name).map(String::as_str)
    }

    /// The asset served under the hashed name `file`.
    pub fn asset(&self, file: &str) -> Option<&Asset> {
        self.assets.get(file)
    }
}

/// Escapes text in HTML the way browsers need it: `&`, `<`, `>` and both quotes, leaving `/`
/// as it is (addresses stay readable, and pages smaller).
fn escape_for_html(
    out: &mut minijinja::Output<'_>,
    state: &minijinja::State<'_, '_>,
    value: &Value,
) -> Result<(), minijinja::Error> {
    match value.as_str() {
        Some(text) if !value.is_safe() && matches!(state.auto_escape(), minijinja::AutoEscape::Html) => {
            let mut rest = text;
            while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
                out.write_str(&rest[..at])?;
                out.write_str(match rest.as_bytes()[at] {
                    b'&' => "&amp;",
                    b'<' => "&lt;",
                    b'>' => "&gt;",
                    b'"' => "&quot;",
                    _ => "&#39;",
                })?;
                rest = &rest[at + 1..];
            }
            out.write_str(rest)?;
            Ok(())
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_named_by_their_bytes() {
        let a = hashed_name("theme.css", b"body{}");
        assert!(a.starts_with("theme.") && a.ends_with(".css") && a.len() == "theme..css".len() + 10, "{a}");
        assert_ne!(a, hashed_name("theme.css", b"body{color:red}"));
        assert_eq!(content_type("x.woff2"), "font/woff2");
    }
}
