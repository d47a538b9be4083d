//! Markdown to HTML that is safe to put in a page: raw HTML in the source is shown as text,
//! and links and images keep only addresses that cannot run script.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};

/// Renders `source` (CommonMark with tables and strikethrough) to sanitised HTML.
pub fn render(source: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let events = Parser::new_ext(source, options).map(|event| match event {
        // Written HTML is the writer's words, not markup.
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Link { link_type, dest_url: safe_url(dest_url), title, id })
        }
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Image { link_type, dest_url: safe_url(dest_url), title, id })
        }
        other => other,
    });
    let mut html = String::with_capacity(source.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// `url` when it is relative or `http`, `https`, `mailto` or `tel`; otherwise `#`.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    // Browsers ignore control characters and spaces inside a scheme (`java\tscript:`).
    let compact: String = url.chars().filter(|c| !c.is_ascii_control() && !c.is_whitespace()).collect();
    let scheme_end = compact.find(':');
    let relative = match scheme_end {
        None => true,
        Some(colon) => compact[..colon].contains(['/', '?', '#']),
    };
    let allowed = relative || {
        let scheme = compact[..scheme_end.unwrap_or(0)].to_ascii_lowercase();
        matches!(scheme.as_str(), "http" | "https" | "mailto" | "tel")
    };
    if allowed { url } else { CowStr::Borrowed("#") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_renders_and_script_does_not() {
        assert!(render("[x](javascript:alert(1))").contains("href=\"#\""));
        assert_eq!(render("**Soft** cotton"), "<p><strong>Soft</strong> cotton</p>\n");
        let html = render("<script>alert(1)</script>\n\nHi <img src=x onerror=alert(1)>");
        assert!(!html.contains("<script") && !html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        for link in
            ["[x](javascript:alert(1))", "[x](JaVa\tScRiPt:alert(1))", "[x](data:text/html,hi)", "![x](vbscript:x)"]
        {
            let html = render(link).to_lowercase();
            for scheme in ["javascript", "java\tscript", "data", "vbscript"] {
                assert!(!html.contains(&format!("=\"{scheme}")), "{link}: {html}");
            }
        }
        assert!(render("[x](https://example.com/a?b=1)").contains("href=\"https://example.com/a?b=1\""));
        assert!(render("[x](/pages/about)").contains("href=\"/pages/about\""));
        let attribute = render("[x](https://example.com/\"onmouseover=\"alert(1))");
        assert!(!attribute.contains("\"onmouseover"), "{attribute}");
    }
}
