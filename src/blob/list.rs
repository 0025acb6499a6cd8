//! The `List Blobs` response: blob names, properties and metadata, and the marker of the
//! next page. The service writes a small, regular XML document; this reads exactly what it
//! needs from it (elements and their text, the five predefined entities and character
//! references) instead of pulling in a general XML parser.

use super::{BlobItem, BlobProps};

/// One page of a listing.
#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<BlobItem>,
    /// Where the next page starts (`None`: this was the last).
    pub next_marker: Option<String>,
}

/// Reads a `<EnumerationResults>` document. Blobs whose properties cannot be read are an
/// error: a listing that silently lost an ownership would unbalance the replicas.
pub fn parse(xml: &str) -> Result<Page, String> {
    let mut page = Page::default();
    let mut rest = xml;
    while let Some(blob) = element(rest, "Blob") {
        rest = &rest[blob.end..];
        let body = blob.inner;
        let name = text(body, "Name").ok_or("a <Blob> without <Name>")?;
        let props = element(body, "Properties").ok_or("a <Blob> without <Properties>")?;
        let etag = quoted(text(props.inner, "Etag").ok_or("a blob without <Etag>")?);
        let modified =
            text(props.inner, "Last-Modified").ok_or("a blob without <Last-Modified>")?;
        let last_modified = httpdate::parse_http_date(&modified)
            .map_err(|_| format!("Last-Modified '{modified}' is not an HTTP date"))?;
        let mut metadata = Vec::new();
        if let Some(meta) = element(body, "Metadata") {
            let mut m = meta.inner;
            while let Some((tag, value, end)) = next_child(m) {
                metadata.push((tag.to_ascii_lowercase(), unescape(value)));
                m = &m[end..];
            }
        }
        page.items.push(BlobItem {
            name,
            props: BlobProps {
                etag,
                last_modified,
            },
            metadata,
        });
    }
    page.next_marker = text(xml_tail(xml), "NextMarker").filter(|m| !m.is_empty());
    Ok(page)
}

/// Listings give ETags bare, the `ETag` header quoted (the form `If-Match` takes): one form
/// for both, so that an ETag from either compares and conditions alike.
fn quoted(etag: String) -> String {
    if etag.starts_with('"') {
        etag
    } else {
        format!("\"{etag}\"")
    }
}

/// The part of the document after the last `</Blobs>` (where `NextMarker` lives), or all of
/// it.
fn xml_tail(xml: &str) -> &str {
    xml.rfind("</Blobs>").map_or(xml, |i| &xml[i..])
}

struct Element<'a> {
    inner: &'a str,
    /// Offset just past the closing tag, in the searched text.
    end: usize,
}

/// The first `<tag>…</tag>` (or `<tag attr…>…</tag>`) in `s`; a self-closed `<tag/>` is
/// empty.
fn element<'a>(s: &'a str, tag: &str) -> Option<Element<'a>> {
    let mut from = 0;
    loop {
        let at = from + s[from..].find(&format!("<{tag}"))?;
        let after = &s[at + 1 + tag.len()..];
        let close = after.find('>')?;
        let head = &after[..close];
        // `<Blobs>` must not match `<Blob`.
        if !(head.is_empty() || head.starts_with(char::is_whitespace) || head == "/") {
            from = at + 1;
            continue;
        }
        let body_at = at + 1 + tag.len() + close + 1;
        if head.ends_with('/') {
            return Some(Element {
                inner: "",
                end: body_at,
            });
        }
        let end_tag = format!("</{tag}>");
        let len = s[body_at..].find(&end_tag)?;
        return Some(Element {
            inner: &s[body_at..body_at + len],
            end: body_at + len + end_tag.len(),
        });
    }
}

fn text(s: &str, tag: &str) -> Option<String> {
    element(s, tag).map(|e| unescape(e.inner))
}

/// The next child element of a flat list: (tag, raw text, offset past it).
fn next_child(s: &str) -> Option<(&str, &str, usize)> {
    let open = s.find('<')?;
    let after = &s[open + 1..];
    let close = after.find('>')?;
    let head = &after[..close];
    if head.starts_with('/') {
        return None;
    }
    if let Some(tag) = head.strip_suffix('/') {
        return Some((tag.trim(), "", open + 1 + close + 1));
    }
    let tag = head.split_whitespace().next()?;
    let body_at = open + 1 + close + 1;
    let end_tag = format!("</{tag}>");
    let len = s[body_at..].find(&end_tag)?;
    Some((
        tag,
        &s[body_at..body_at + len],
        body_at + len + end_tag.len(),
    ))
}

fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(semi) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..semi];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => out.push(c),
            None => out.push_str(&tail[..=semi]),
        }
        rest = &tail[semi + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_properties_metadata_and_the_next_marker() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="c"><Prefix>ns/hub/$default/ownership/</Prefix><Marker/><MaxResults>5000</MaxResults><Blobs><Blob><Name>ns/hub/$default/ownership/0</Name><Properties><Creation-Time>Mon, 07 Dec 2026 04:52:06 GMT</Creation-Time><Last-Modified>Mon, 07 Dec 2026 04:52:07 GMT</Last-Modified><Etag>"0x8DD1"</Etag><Content-Length>0</Content-Length></Properties><Metadata><ownerid>a&amp;b</ownerid></Metadata></Blob><Blob><Name>ns/hub/$default/ownership/1</Name><Properties><Last-Modified>Mon, 07 Dec 2026 04:52:08 GMT</Last-Modified><Etag>0x8DD2</Etag></Properties><Metadata><ownerid /></Metadata></Blob></Blobs><NextMarker>page&lt;2</NextMarker></EnumerationResults>"#;
        let page = parse(xml).unwrap();
        assert_eq!(page.items.len(), 2);
        let a = &page.items[0];
        assert_eq!(a.name, "ns/hub/$default/ownership/0");
        assert_eq!(a.props.etag, "\"0x8DD1\"");
        assert_eq!(
            a.props.last_modified,
            httpdate::parse_http_date("Mon, 07 Dec 2026 04:52:07 GMT").unwrap()
        );
        assert_eq!(a.metadata, vec![("ownerid".to_string(), "a&b".to_string())]);
        assert_eq!(
            page.items[1].metadata,
            vec![("ownerid".to_string(), String::new())]
        );
        assert_eq!(
            page.items[1].props.etag, "\"0x8DD2\"",
            "bare ETags are quoted"
        );
        assert_eq!(page.next_marker.as_deref(), Some("page<2"));

        let empty =
            parse(r#"<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>"#).unwrap();
        assert!(empty.items.is_empty() && empty.next_marker.is_none());
        assert!(parse("<Blobs><Blob><Name>x</Name></Blob></Blobs>").is_err());
        assert_eq!(unescape("&#65;&#x42;&bogus;"), "AB&bogus;");
    }
}
