//! Test support: the `reference` of every diagnosis and doctor finding
//! points into `docs/` (`docs/failure-modes.md#<anchor>`,
//! `docs/livekit-sip.md#<anchor>`). These helpers check, at test time, that
//! such a link names a file that exists and a heading that exists in it,
//! with anchors computed the way GitHub renders them.

use std::path::Path;

/// GitHub's anchor for a Markdown heading's text: lower case; letters,
/// digits, `-` and `_` kept; each space becomes `-`; everything else
/// (punctuation, `+`, quotes, backticks) is dropped.
pub fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of every ATX heading (`#` … `######`) outside code fences, in
/// order; a repeated anchor gets `-1`, `-2` … as on GitHub.
pub fn anchors(markdown: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = github_anchor(&line[hashes..]);
        let mut anchor = base.clone();
        let mut n = 0;
        while out.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        out.push(anchor);
    }
    out
}

/// Every `docs/<file>#<anchor>` in a reference string, as (path, anchor);
/// the anchor is empty when the link has none.
pub fn doc_links(reference: &str) -> Vec<(String, String)> {
    let path_char = |c: char| c.is_ascii_alphanumeric() || "_-./".contains(c);
    let anchor_char = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
    let mut out = Vec::new();
    let mut rest = reference;
    while let Some(at) = rest.find("docs/") {
        let link = &rest[at..];
        let path: String = link.chars().take_while(|&c| path_char(c)).collect();
        let after = &link[path.len()..];
        let anchor: String = match after.strip_prefix('#') {
            Some(a) => a.chars().take_while(|&c| anchor_char(c)).collect(),
            None => String::new(),
        };
        rest = &after[anchor.len()..];
        out.push((path.trim_end_matches('.').to_string(), anchor));
    }
    out
}

/// `Ok` when `reference` has at least one `docs/…#anchor` link and each
/// names a file under the crate root and a heading in that file.
pub fn check_reference(reference: &str) -> Result<(), String> {
    let links = doc_links(reference);
    if links.is_empty() {
        return Err(format!("no docs/…#anchor link in {reference:?}"));
    }
    for (path, anchor) in links {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(&path);
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("{reference:?}: cannot read {}: {e}", file.display()))?;
        if anchor.is_empty() {
            return Err(format!("{reference:?}: link to {path} without #anchor"));
        }
        let known = anchors(&text);
        if !known.contains(&anchor) {
            return Err(format!("{reference:?}: {path} has no heading with anchor #{anchor}; it has {known:?}"));
        }
    }
    Ok(())
}

/// Panics unless every `(code, reference)` passes [`check_reference`];
/// `what` names the kind of row in the message.
#[cfg(test)]
pub fn assert_references<'a>(what: &str, rows: impl IntoIterator<Item = (&'a str, &'a str)>) {
    for (code, reference) in rows {
        if let Err(e) = check_reference(reference) {
            panic!("{what} {code}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_as_github_makes_them() {
        assert_eq!(
            github_anchor(r#"1. 404 "No trunk found": the trunk does not match"#),
            "1-404-no-trunk-found-the-trunk-does-not-match"
        );
        assert_eq!(github_anchor("5. Numbers not in +E.164 form"), "5-numbers-not-in-e164-form");
        assert_eq!(github_anchor("4. agent_name mismatch"), "4-agent_name-mismatch");
        assert_eq!(github_anchor("18. SDP rejected: 400, 415, 488"), "18-sdp-rejected-400-415-488");
        let md = "# Title\n\n```\n# not a heading\n```\n## Same\n## Same\n#nospace\n";
        assert_eq!(anchors(md), ["title", "same", "same-1"]);
    }

    #[test]
    fn links_are_found_in_reference_text() {
        let links = doc_links("docs/a.md#x-1 (item 1); docs/b.md#y_2, docs/c.md; livekit/sip#592");
        let want = [("docs/a.md", "x-1"), ("docs/b.md", "y_2"), ("docs/c.md", "")];
        assert_eq!(links, want.map(|(p, a)| (p.to_string(), a.to_string())));
        assert!(check_reference("livekit/sip#592").is_err());
        assert!(check_reference("docs/failure-modes.md#no-such-heading").is_err());
        assert!(check_reference("docs/no-such-file.md#x").is_err());
        assert!(check_reference("docs/failure-modes.md#authentication-strategy").is_ok());
    }

    /// The docs' own Markdown links between and within the two files resolve too.
    #[test]
    fn links_inside_the_docs_resolve() {
        for name in ["failure-modes.md", "livekit-sip.md"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs").join(name);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for (k, _) in text.match_indices("](") {
                let target: String = text[k + 2..].chars().take_while(|&c| c != ')').collect();
                let Some((file, anchor)) = target.split_once('#') else { continue };
                let file = if file.is_empty() { name } else { file };
                let reference = format!("docs/{file}#{anchor}");
                assert!(check_reference(&reference).is_ok(), "{name}: {}", check_reference(&reference).unwrap_err());
            }
        }
    }
}
