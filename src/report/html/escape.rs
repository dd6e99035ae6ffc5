//! Making text safe inside the page: every string that comes from a call
//! (SIP reason phrases, headers, LiveKit names …) goes through [`text`]
//! before it reaches HTML or SVG, and every path through [`url_path`].

use std::path::{Component, Path};

/// Escapes `&`, `<`, `>`, `"` and `'`: safe in element content and in
/// quoted attribute values alike.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab/newline have no business in a page.
            c if c.is_control() && c != '\n' && c != '\t' && c != '\r' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A relative path as a URL path: each component percent-encoded, joined with `/`.
pub fn url_path(path: &Path) -> String {
    let components: Vec<String> = path
        .components()
        .map(|c| match c {
            Component::RootDir => String::new(),
            Component::CurDir => ".".into(),
            Component::ParentDir => "..".into(),
            other => percent_encode(&other.as_os_str().to_string_lossy()),
        })
        .collect();
    components.join("/")
}

fn percent_encode(component: &str) -> String {
    let mut out = String::new();
    for byte in component.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether `s` may be a link target: only plain `https://` URLs (never
/// `javascript:` and the like).
pub fn is_safe_link(s: &str) -> bool {
    s.starts_with("https://") && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_neutralised() {
        assert_eq!(
            text(r#"<script>alert("x")</script> & 'q'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;"
        );
        assert_eq!(text("a\u{0}b"), "a\u{fffd}b");
    }

    #[test]
    fn paths_become_relative_urls() {
        assert_eq!(url_path(Path::new("003-smoke/rx.wav")), "003-smoke/rx.wav");
        assert_eq!(url_path(Path::new("a b/\"x\".wav")), "a%20b/%22x%22.wav");
        assert_eq!(url_path(Path::new("/tmp/run/../x.wav")), "/tmp/run/../x.wav");
    }

    #[test]
    fn only_https_links() {
        assert!(is_safe_link("https://github.com/livekit/sip/issues/1"));
        assert!(!is_safe_link("javascript:alert(1)"));
        assert!(!is_safe_link("docs/failure-modes.md#1-404-no-trunk-found-the-trunk-does-not-match"));
    }
}
