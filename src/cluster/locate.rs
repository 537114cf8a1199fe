//! Where a field sits in the cluster file, from the parsed document's spans.
//!
//! Why spans and not a text search: the same text occurs in many places (a VIP equal to the
//! gateway also matches `registry_mirror`, an empty string matches every `""`), so a search
//! names the wrong line. toml_edit keeps the byte range of every key, value and table header,
//! whatever way the file writes them (tables, dotted keys, inline tables, arrays of tables).

use std::ops::Range;

use crate::tomlfile::line_col;

/// One step of a path through the document: a key, or an index into an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// A dotted path (`vrrp.vip`) as segments.
pub fn path(dotted: &str) -> Vec<Seg<'_>> {
    dotted.split('.').map(Seg::Key).collect()
}

/// The parsed document of a cluster file, for locating fields.
pub struct Spans<'t> {
    text: &'t str,
    doc: Option<toml_edit::Document<&'t str>>,
}

/// A field's place: the value's span when the file writes the field, else (the field took its
/// default) the span of the nearest enclosing table or value that the file does write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub span: Range<usize>,
    /// True when `span` is the field's own value.
    pub exact: bool,
}

impl<'t> Spans<'t> {
    pub fn new(text: &'t str) -> Self {
        Spans {
            text,
            doc: toml_edit::Document::parse(text).ok(),
        }
    }

    /// The span of the item at `path`, or of its nearest ancestor that has one.
    pub fn find(&self, path: &[Seg]) -> Option<Found> {
        let mut item = self.doc.as_ref()?.as_item();
        let mut best: Option<Range<usize>> = None;
        for seg in path {
            let next = match *seg {
                Seg::Key(k) => item.get(k),
                Seg::Index(n) => item.get(n),
            };
            let Some(next) = next else {
                // The field is not in the file: point at the enclosing table.
                return best.map(|span| Found { span, exact: false });
            };
            item = next;
            // Implicit tables (`[roles.slb]` makes `roles`) have no span of their own.
            if let Some(s) = item.span() {
                best = Some(s);
            }
        }
        let exact = item.is_value() && item.span().is_some();
        best.map(|span| Found { span, exact })
    }

    /// `(line, column)`, 1-based, of `path`'s place.
    pub fn line_col(&self, path: &[Seg]) -> Option<(usize, usize)> {
        self.find(path).map(|f| line_col(self.text, f.span.start))
    }

    /// The value at `path` exactly as the file writes it (`"192.168.2.2"`, `100`), when the
    /// file writes it on one line.
    pub fn raw(&self, path: &[Seg]) -> Option<&'t str> {
        let f = self.find(path)?;
        if !f.exact {
            return None;
        }
        let s = self.text.get(f.span)?;
        (!s.contains('\n')).then_some(s)
    }

    /// The field whose key or value is at `span` (what a parse error points at), named as
    /// diagnostics name fields (`node "worker-03".ip`), and the value as written when `span` is
    /// a value on one line.
    pub fn field_at(&self, span: &Range<usize>) -> Option<(String, Option<&'t str>)> {
        let root = self.doc.as_ref()?.as_item();
        let mut trail = Vec::new();
        let is_value = walk(root, span, &mut trail)?;
        let mut label = String::new();
        let mut i = 0;
        while i < trail.len() {
            match (&trail[i], trail.get(i + 1)) {
                (Owned::Key(k), Some(Owned::Index(n))) if i == 0 && k == "node" => {
                    let host = root
                        .get("node")
                        .and_then(|t| t.get(*n))
                        .and_then(|t| t.get("hostname"))
                        .and_then(toml_edit::Item::as_str)
                        .filter(|h| !h.is_empty());
                    label.push_str(&match host {
                        Some(h) => format!("node {h:?}"),
                        None => format!("node #{}", n + 1),
                    });
                    i += 2;
                    continue;
                }
                (Owned::Key(k), _) => {
                    if !label.is_empty() {
                        label.push('.');
                    }
                    label.push_str(k);
                }
                (Owned::Index(n), _) => label.push_str(&format!("[{n}]")),
            }
            i += 1;
        }
        let raw = self
            .text
            .get(span.clone())
            .filter(|s| is_value && !s.contains('\n'));
        Some((label, raw))
    }

    /// `origin:line:column` of `path`, or `origin` alone when nothing in the file locates it.
    pub fn place(&self, origin: &str, path: &[Seg]) -> String {
        match self.line_col(path) {
            Some((l, c)) => format!("{origin}:{l}:{c}"),
            None => origin.to_string(),
        }
    }
}

/// A cluster file that does not deserialize: `file:line:column: field = value: why`, the field
/// and value found from the error's span.
pub fn parse_error(text: &str, origin: &str, e: &toml::de::Error) -> anyhow::Error {
    let Some(span) = e.span() else {
        return anyhow::anyhow!("{origin}: {}", e.message());
    };
    let (l, c) = line_col(text, span.start);
    let spans = Spans::new(text);
    let what = match spans.field_at(&span) {
        Some((field, Some(raw))) => format!("{field} = {raw}: "),
        Some((field, None)) => format!("{field}: "),
        None => String::new(),
    };
    anyhow::anyhow!("{origin}:{l}:{c}: {what}{}", e.message())
}

enum Owned {
    Key(String),
    Index(usize),
}

/// Find the key or value at `span` under `item`; the path to it goes to `trail`. Returns
/// whether it is a value (else a key).
fn walk(item: &toml_edit::Item, span: &Range<usize>, trail: &mut Vec<Owned>) -> Option<bool> {
    if let Some(t) = item.as_table_like() {
        for (k, child) in t.iter() {
            trail.push(Owned::Key(k.to_string()));
            let key_span = t.get_key_value(k).and_then(|(key, _)| key.span());
            if key_span.as_ref() == Some(span) {
                return Some(false);
            }
            if child.is_value() && child.span().as_ref() == Some(span) {
                return Some(true);
            }
            if let Some(found) = walk(child, span, trail) {
                return Some(found);
            }
            trail.pop();
        }
        return None;
    }
    let mut n = 0;
    while let Some(child) = item.get(n) {
        trail.push(Owned::Index(n));
        if child.is_value() && child.span().as_ref() == Some(span) {
            return Some(true);
        }
        if let Some(found) = walk(child, span, trail) {
            return Some(found);
        }
        trail.pop();
        n += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name = \"a\"\n\n[network]\ngateway = \"192.168.2.2\"\n\n\
[vrrp]\nvip = \"192.168.2.2\"\n\n[[node]]\nhostname = \"\"\nip = \"10.0.0.1\"\n\n\
[[node]]\nhostname = \"b\"\nip = \"10.0.0.1\"\ndisk = [{ device = \"sdb\", mount = \"/x\" }]\n";

    #[test]
    fn values_are_found_where_they_are_written() {
        let s = Spans::new(TEXT);
        assert_eq!(s.line_col(&path("vrrp.vip")), Some((7, 7)));
        assert_eq!(s.raw(&path("vrrp.vip")), Some("\"192.168.2.2\""));
        assert_eq!(s.line_col(&path("network.gateway")), Some((4, 11)));
        let ip1 = [Seg::Key("node"), Seg::Index(1), Seg::Key("ip")];
        assert_eq!(s.line_col(&ip1), Some((15, 6)));
        let host0 = [Seg::Key("node"), Seg::Index(0), Seg::Key("hostname")];
        assert_eq!(s.line_col(&host0), Some((10, 12)));
        assert_eq!(s.raw(&host0), Some("\"\""));
        let dev = [
            Seg::Key("node"),
            Seg::Index(1),
            Seg::Key("disk"),
            Seg::Index(0),
            Seg::Key("device"),
        ];
        assert_eq!(s.raw(&dev), Some("\"sdb\""));
        assert_eq!(s.line_col(&dev), Some((16, 20)));
    }

    #[test]
    fn a_span_names_its_field() {
        let s = Spans::new(TEXT);
        let at = |needle: &str| {
            let start = TEXT.find(needle).expect("in text");
            start..start + needle.len()
        };
        assert_eq!(
            s.field_at(&at("\"10.0.0.1\"\ndisk")),
            None,
            "not a value's span"
        );
        let second = TEXT.rfind("\"10.0.0.1\"").expect("in text");
        assert_eq!(
            s.field_at(&(second..second + 10)),
            Some(("node \"b\".ip".to_string(), Some("\"10.0.0.1\"")))
        );
        assert_eq!(
            s.field_at(&at("\"sdb\"")),
            Some(("node \"b\".disk[0].device".to_string(), Some("\"sdb\"")))
        );
        assert_eq!(s.field_at(&at("vip")), Some(("vrrp.vip".to_string(), None)));
    }

    #[test]
    fn a_defaulted_field_points_at_its_table() {
        let s = Spans::new(TEXT);
        let f = s.find(&path("vrrp.advert_int")).expect("table found");
        assert!(!f.exact);
        assert_eq!(s.line_col(&path("vrrp.advert_int")), Some((6, 1)));
        assert_eq!(s.raw(&path("vrrp.advert_int")), None);
        assert_eq!(s.place("c.toml", &path("kubernetes.version")), "c.toml");
    }

    #[test]
    fn dotted_keys_and_inline_tables_are_located_too() {
        let s = Spans::new("vrrp.vip = \"1.2.3.4\"\nnetwork = { cidr = \"10.0.0.0/8\" }\n");
        assert_eq!(s.line_col(&path("vrrp.vip")), Some((1, 12)));
        assert_eq!(s.line_col(&path("network.cidr")), Some((2, 20)));
    }
}
