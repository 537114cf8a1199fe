//! A typed model of kubeadm's config file (kubeadm.k8s.io/v1beta3 as of Kubernetes v1.29, with
//! the KubeletConfiguration and KubeProxyConfiguration documents it may carry), to check the
//! files ezimg renders before they reach a node.
//!
//! Why: kubeadm reads this file only on the node, at first boot. There, an invented or
//! misspelt field is at best a warning in a log nobody reads (kubeadm decodes leniently and
//! warns), and a malformed token, duration or subnet fails `kubeadm init` on a machine that is
//! already built. [`parse`] refuses what kubeadm's decoder would not understand: an unknown
//! document or field, a value of the wrong JSON type, a malformed duration. [`check`] adds the
//! few semantic rules of kubeadm's own validation that a rendered file can get wrong.
//!
//! The types follow the upstream Go structs field for field; see [`model`] for the sources
//! and for the newer upstream fields deliberately left out.
//!
//! Reading follows kubeadm's: the file is split on lines that start with `---` (textually,
//! before any YAML parsing, as kubeadm's `SplitYAMLDocuments` does), so a chunk holding only
//! blank lines or comments is an error, as it is for kubeadm. Each chunk is parsed as YAML and
//! then decoded with JSON's typing, as Go's `sigs.k8s.io/yaml` does: `"true"` is no bool, `4` is
//! no string.

pub mod model;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use anyhow::{Result, bail};
use ipnet::IpNet;
use serde::Deserialize;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde_saphyr::Spanned;

pub use model::*;

/// The placeholder ezimg renders for the bootstrap token secret (see `render`).
pub const TOKEN_PLACEHOLDER: &str = crate::secret_placeholder!("kube_bootstrap_token");
/// The placeholder ezimg renders for the cluster CA's public key pin.
pub const CA_CERT_HASH_PLACEHOLDER: &str = crate::secret_placeholder!("kube_ca_cert_hash");

/// One parsed document of a kubeadm config file.
// A file holds a handful of documents: boxing the large ones would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Document {
    Init(InitConfiguration),
    Cluster(ClusterConfiguration),
    Join(JoinConfiguration),
    Kubelet(KubeletConfiguration),
    KubeProxy(KubeProxyConfiguration),
}

impl Document {
    /// The document's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Document::Init(_) => "InitConfiguration",
            Document::Cluster(_) => "ClusterConfiguration",
            Document::Join(_) => "JoinConfiguration",
            Document::Kubelet(_) => "KubeletConfiguration",
            Document::KubeProxy(_) => "KubeProxyConfiguration",
        }
    }
}

/// The kinds a kubeadm v1.29 config file may hold, with the apiVersion of each.
const KINDS: [(&str, &str); 5] = [
    ("InitConfiguration", KUBEADM_API_VERSION),
    ("ClusterConfiguration", KUBEADM_API_VERSION),
    ("JoinConfiguration", KUBEADM_API_VERSION),
    ("KubeletConfiguration", KUBELET_API_VERSION),
    ("KubeProxyConfiguration", KUBE_PROXY_API_VERSION),
];

/// Parse a multi-document YAML kubeadm config (`---` separated). `origin` names the file in errors.
/// Errors name the document number, its kind, and the field (serde path) and say why.
///
/// One error line per bad document (the first problem in each), with the file's line number.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for (index, chunk) in split_documents(text, origin)?.iter().enumerate() {
        match parse_document(chunk, index + 1, origin) {
            Ok(doc) => docs.push(doc),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(docs)
}

/// One `---`-separated chunk of the file.
struct Chunk {
    text: String,
    /// 1-based line of the file where the chunk starts.
    first_line: usize,
    lines: usize,
}

/// Split as k8s.io/apimachinery's YAMLReader does for kubeadm: a line starting with `---` ends a
/// document; only spaces or a comment may follow on it; a chunk of zero lines is skipped.
fn split_documents(text: &str, origin: &str) -> Result<Vec<Chunk>> {
    let mut chunks = Vec::new();
    let mut current = Chunk {
        text: String::new(),
        first_line: 1,
        lines: 0,
    };
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let number = i + 1;
        if let Some(rest) = line.strip_prefix("---") {
            let rest = rest.trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                bail!(
                    "{origin}: line {number}: only a comment may follow the document separator `---`, not {rest:?}"
                );
            }
            let next = Chunk {
                text: String::new(),
                first_line: number + 1,
                lines: 0,
            };
            let done = std::mem::replace(&mut current, next);
            if done.lines > 0 {
                chunks.push(done);
            }
        } else {
            current.text.push_str(line);
            current.lines += 1;
        }
    }
    if current.lines > 0 {
        chunks.push(current);
    }
    Ok(chunks)
}

fn parse_document(chunk: &Chunk, number: usize, origin: &str) -> Result<Document> {
    let at = |kind: Option<&str>, line: Option<u64>| {
        let mut s = format!("{origin}: document {number}");
        if let Some(kind) = kind {
            s.push_str(&format!(" ({kind})"));
        }
        if let Some(line) = line {
            s.push_str(&format!(", line {}", line + chunk.first_line as u64 - 1));
        }
        s
    };
    let root: Spanned<Node> = match serde_saphyr::from_str_with_options(&chunk.text, yaml_options())
    {
        Ok(root) => root,
        Err(e) => {
            let (line, msg) = yaml_error(&e);
            bail!("{}: {msg}", at(None, line))
        }
    };
    let Node::Map(entries) = &root.value else {
        let last = chunk.first_line + chunk.lines - 1;
        let what = if matches!(root.value, Node::Null) {
            format!(
                "lines {}-{last} hold only blank lines or comments, which kubeadm refuses \
                 as a document without apiVersion and kind (a stray `---`?)",
                chunk.first_line
            )
        } else {
            "not a mapping with apiVersion and kind".to_string()
        };
        bail!("{}: {what}", at(None, None));
    };
    let field = |name: &str| -> Result<(&str, Option<u64>)> {
        let Some((key, value)) = entries.iter().find(|(k, _)| k.value == name) else {
            bail!(
                "{}: missing field `{name}`",
                at(None, line_of(&root.referenced))
            );
        };
        match &value.value {
            Node::Str(s) => Ok((s.as_str(), line_of(&key.referenced))),
            _ => bail!(
                "{}: {name}: must be a string",
                at(None, line_of(&key.referenced))
            ),
        }
    };
    let (api_version, api_line) = field("apiVersion")?;
    let (kind, kind_line) = field("kind")?;
    let Some((kind, expected)) = KINDS.iter().find(|(k, _)| *k == kind) else {
        let known: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
        bail!(
            "{}: kind: unknown kind {kind:?} (a kubeadm v1.29 config holds {})",
            at(None, kind_line),
            known.join(", ")
        );
    };
    if api_version != *expected {
        bail!(
            "{}: apiVersion: {api_version:?} is not supported: {kind} is {expected} in Kubernetes v1.29",
            at(Some(kind), api_line)
        );
    }
    let de = NodeDe { node: &root };
    let doc = match *kind {
        "InitConfiguration" => InitConfiguration::deserialize(de).map(Document::Init),
        "ClusterConfiguration" => ClusterConfiguration::deserialize(de).map(Document::Cluster),
        "JoinConfiguration" => JoinConfiguration::deserialize(de).map(Document::Join),
        "KubeletConfiguration" => KubeletConfiguration::deserialize(de).map(Document::Kubelet),
        _ => KubeProxyConfiguration::deserialize(de).map(Document::KubeProxy),
    };
    doc.map_err(|e| {
        let line = e.line.or_else(|| line_of(&root.referenced));
        let path = e.path();
        let path = if path.is_empty() {
            String::new()
        } else {
            format!("{path}: ")
        };
        anyhow::anyhow!("{}: {path}{}", at(Some(kind), line), e.msg)
    })
}

/// YAML as Go's yaml.v2 reads it: YAML 1.1 booleans (`yes`, `on`) and octals (`0644`),
/// duplicate keys refused.
fn yaml_options() -> serde_saphyr::options::Options {
    let mut options = serde_saphyr::options::Options::default();
    options.legacy_octal_numbers = true;
    options.with_snippet = false;
    options
}

/// The line (within the chunk) and message of a YAML syntax error.
fn yaml_error(e: &serde_saphyr::Error) -> (Option<u64>, String) {
    let line = e.location().and_then(|l| line_of(&l));
    let mut msg = e.without_snippet().to_string();
    // The parser appends a position within the chunk; the caller names the file's line.
    if let Some(at) = msg.rfind(" at line ")
        && msg[at + 9..]
            .bytes()
            .all(|c| c.is_ascii_digit() || b", column".contains(&c))
    {
        msg.truncate(at);
    }
    let msg = msg.replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    (line, format!("invalid YAML: {msg}"))
}

fn line_of(location: &serde_saphyr::Location) -> Option<u64> {
    (location.line() > 0).then(|| location.line())
}

// ---------------------------------------------------------------------------------------------
// A YAML tree with positions, decoded into the model with JSON's typing
// ---------------------------------------------------------------------------------------------

/// A YAML node as JSON sees it, with the position of every key and value.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a YAML value")
            }
            fn visit_unit<E>(self) -> std::result::Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> std::result::Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> std::result::Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<Node, E> {
                Ok(Node::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<Node, E> {
                Ok(Node::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<Node, E> {
                Ok(Node::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Node, E> {
                Ok(Node::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// A decoding error with the path (innermost segment first) and line where it arose.
#[derive(Debug)]
struct PathError {
    msg: String,
    path: Vec<Segment>,
    line: Option<u64>,
}

#[derive(Debug)]
enum Segment {
    Key(String),
    Index(usize),
}

impl PathError {
    fn within(mut self, segment: Segment, line: Option<u64>) -> Self {
        self.path.push(segment);
        self.line = self.line.or(line);
        self
    }

    /// `networking.podSubnet`, `bootstrapTokens[0].token`, `evictionHard["memory.available"]`.
    fn path(&self) -> String {
        let mut out = String::new();
        for segment in self.path.iter().rev() {
            match segment {
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
                Segment::Key(k)
                    if !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
                {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Segment::Key(k) => out.push_str(&format!("[{k:?}]")),
            }
        }
        out
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for PathError {}

impl de::Error for PathError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        PathError {
            msg: msg.to_string(),
            path: Vec::new(),
            line: None,
        }
    }

    /// Short: the field and the nearest known one, not the whole list of a struct's fields.
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let hint = expected
            .iter()
            .map(|e| (edit_distance(&field.to_lowercase(), &e.to_lowercase()), e))
            .filter(|(d, _)| *d <= 2.max(field.len() / 4))
            .min_by_key(|(d, _)| *d)
            .map(|(_, e)| format!(" (did you mean `{e}`?)"))
            .unwrap_or_default();
        de::Error::custom(format!("unknown field `{field}`{hint}"))
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Decodes the model from a [`Node`] with JSON's typing, recording where errors arise.
#[derive(Clone, Copy)]
struct NodeDe<'a> {
    node: &'a Spanned<Node>,
}

impl<'de> Deserializer<'de> for NodeDe<'de> {
    type Error = PathError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, PathError> {
        match &self.node.value {
            Node::Null => v.visit_unit(),
            Node::Bool(b) => v.visit_bool(*b),
            Node::Int(i) => v.visit_i64(*i),
            Node::UInt(u) => v.visit_u64(*u),
            Node::Float(f) => v.visit_f64(*f),
            Node::Str(s) => v.visit_borrowed_str(s),
            Node::Seq(items) => v.visit_seq(SeqDe {
                items: items.iter().enumerate(),
            }),
            Node::Map(entries) => v.visit_map(MapDe {
                entries: entries.iter(),
                pending: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, PathError> {
        match self.node.value {
            Node::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> std::result::Result<V::Value, PathError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> std::result::Result<V::Value, PathError> {
        match &self.node.value {
            Node::Str(s) => v.visit_enum(s.as_str().into_deserializer()),
            _ => self.deserialize_any(v),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct SeqDe<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Spanned<Node>>>,
}

impl<'de> SeqAccess<'de> for SeqDe<'de> {
    type Error = PathError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> std::result::Result<Option<T::Value>, PathError> {
        let Some((i, item)) = self.items.next() else {
            return Ok(None);
        };
        seed.deserialize(NodeDe { node: item })
            .map(Some)
            .map_err(|e| e.within(Segment::Index(i), line_of(&item.referenced)))
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, (Spanned<String>, Spanned<Node>)>,
    pending: Option<&'a (Spanned<String>, Spanned<Node>)>,
}

impl<'de> MapAccess<'de> for MapDe<'de> {
    type Error = PathError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> std::result::Result<Option<K::Value>, PathError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some(entry);
        let key = &entry.0;
        seed.deserialize(BorrowedStrDeserializer::<PathError>::new(&key.value))
            .map(Some)
            .map_err(|e| e.within(Segment::Key(key.value.clone()), line_of(&key.referenced)))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> std::result::Result<T::Value, PathError> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("a value without a key"));
        };
        seed.deserialize(NodeDe { node: value })
            .map_err(|e| e.within(Segment::Key(key.value.clone()), line_of(&key.referenced)))
    }
}

// ---------------------------------------------------------------------------------------------
// Semantic checks
// ---------------------------------------------------------------------------------------------

/// Semantic checks beyond the schema: exactly one of Init/Join; Init comes with a Cluster doc;
/// bootstrap token format `[a-z0-9]{6}.[a-z0-9]{16}` (but the file may hold the placeholder
/// `@@EZIMG_SECRET_kube_bootstrap_token@@` instead of a token: accept exactly that string too);
/// caCertHashes entries are `sha256:<64 hex>`; durations parse as Go durations ("40s", "5m0s", "1h");
/// controlPlaneEndpoint is host:port; podSubnet/serviceSubnet are CIDRs and do not overlap;
/// kube-proxy mode is "", "iptables" or "ipvs"; kubelet cgroupDriver is "systemd" or "cgroupfs".
///
/// Durations are checked by [`parse`] already (a malformed one fails Go's decoding too).
/// Besides, as kubeadm validates: a kind at most once; discovery by exactly one of
/// `bootstrapToken` and `file`; token discovery with an `apiServerEndpoint` (host:port) and with
/// `caCertHashes` unless `unsafeSkipCAVerification`; `caCertHashes` may also hold the
/// placeholder `@@EZIMG_SECRET_kube_ca_cert_hash@@`; `etcd.local` and `etcd.external` exclusive;
/// advertise addresses are IPs; enumerations (imagePullPolicy, taint effects, hostPath types)
/// hold known values; kubelet reservations, eviction thresholds and clusterDNS are well formed.
pub fn check(docs: &[Document], origin: &str) -> Result<()> {
    let mut p = Problems {
        origin,
        list: Vec::new(),
    };
    let mut seen: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, doc) in docs.iter().enumerate() {
        seen.entry(doc.kind()).or_default().push(i + 1);
    }
    for (kind, at) in &seen {
        if at.len() > 1 {
            let at: Vec<String> = at.iter().map(usize::to_string).collect();
            p.file(format!(
                "{kind} appears more than once (documents {})",
                at.join(", ")
            ));
        }
    }
    let has = |kind: &str| seen.contains_key(kind);
    match (has("InitConfiguration"), has("JoinConfiguration")) {
        (false, false) => p.file("neither an InitConfiguration nor a JoinConfiguration".into()),
        (true, true) => p.file("both an InitConfiguration and a JoinConfiguration".into()),
        (true, false) if !has("ClusterConfiguration") => {
            p.file("an InitConfiguration needs a ClusterConfiguration document".into())
        }
        _ => {}
    }
    for (i, doc) in docs.iter().enumerate() {
        let mut d = DocProblems {
            p: &mut p,
            number: i + 1,
            kind: doc.kind(),
        };
        match doc {
            Document::Init(c) => check_init(&mut d, c),
            Document::Cluster(c) => check_cluster(&mut d, c),
            Document::Join(c) => check_join(&mut d, c),
            Document::Kubelet(c) => check_kubelet(&mut d, c),
            Document::KubeProxy(c) => check_kube_proxy(&mut d, c),
        }
    }
    if p.list.is_empty() {
        Ok(())
    } else {
        bail!("{}", p.list.join("\n"))
    }
}

struct Problems<'a> {
    origin: &'a str,
    list: Vec<String>,
}

impl Problems<'_> {
    fn file(&mut self, msg: String) {
        self.list.push(format!("{}: {msg}", self.origin));
    }
}

struct DocProblems<'a, 'b> {
    p: &'a mut Problems<'b>,
    number: usize,
    kind: &'static str,
}

impl DocProblems<'_, '_> {
    fn at(&mut self, path: &str, msg: impl fmt::Display) {
        let line = format!(
            "{}: document {} ({}): {path}: {msg}",
            self.p.origin, self.number, self.kind
        );
        self.p.list.push(line);
    }
}

fn check_init(d: &mut DocProblems, c: &InitConfiguration) {
    for (i, t) in c.bootstrap_tokens.iter().flatten().enumerate() {
        if let Some(token) = &t.token {
            check_token(d, &format!("bootstrapTokens[{i}].token"), token);
        }
    }
    if let Some(n) = &c.node_registration {
        check_node_registration(d, "nodeRegistration", n);
    }
    if let Some(e) = &c.local_api_endpoint {
        check_api_endpoint(d, "localAPIEndpoint", e);
    }
    if let Some(key) = &c.certificate_key {
        check_certificate_key(d, "certificateKey", key);
    }
}

fn check_cluster(d: &mut DocProblems, c: &ClusterConfiguration) {
    if let Some(endpoint) = c
        .control_plane_endpoint
        .as_deref()
        .filter(|e| !e.is_empty())
        && let Err(why) = host_port(endpoint)
    {
        d.at(
            "controlPlaneEndpoint",
            format!("{endpoint:?} is not host:port: {why}"),
        );
    }
    if let Some(n) = &c.networking {
        let pods = n
            .pod_subnet
            .as_deref()
            .map(|s| cidrs(d, "networking.podSubnet", s));
        let services = n
            .service_subnet
            .as_deref()
            .map(|s| cidrs(d, "networking.serviceSubnet", s));
        for p in pods.iter().flatten() {
            for s in services.iter().flatten() {
                if p.contains(&s.network()) || s.contains(&p.network()) {
                    d.at(
                        "networking",
                        format!("podSubnet {p} and serviceSubnet {s} overlap"),
                    );
                }
            }
        }
    }
    if let Some(etcd) = &c.etcd {
        if etcd.local.is_some() && etcd.external.is_some() {
            d.at("etcd", "local and external are mutually exclusive");
        }
        if let Some(external) = &etcd.external
            && external.endpoints.is_empty()
        {
            d.at("etcd.external.endpoints", "must not be empty");
        }
    }
    let volumes = [
        (
            "apiServer",
            c.api_server.as_ref().and_then(|a| a.extra_volumes.as_ref()),
        ),
        (
            "controllerManager",
            c.controller_manager
                .as_ref()
                .and_then(|a| a.extra_volumes.as_ref()),
        ),
        (
            "scheduler",
            c.scheduler.as_ref().and_then(|a| a.extra_volumes.as_ref()),
        ),
    ];
    for (component, volumes) in volumes {
        for (i, v) in volumes.into_iter().flatten().enumerate() {
            let path_type = v.path_type.as_deref().unwrap_or_default();
            const TYPES: [&str; 8] = [
                "",
                "DirectoryOrCreate",
                "Directory",
                "FileOrCreate",
                "File",
                "Socket",
                "CharDevice",
                "BlockDevice",
            ];
            if !TYPES.contains(&path_type) {
                d.at(
                    &format!("{component}.extraVolumes[{i}].pathType"),
                    format!("{path_type:?} is not one of {}", TYPES[1..].join(", ")),
                );
            }
        }
    }
}

fn check_join(d: &mut DocProblems, c: &JoinConfiguration) {
    let discovery = &c.discovery;
    match (&discovery.bootstrap_token, &discovery.file) {
        (None, None) => d.at("discovery", "needs bootstrapToken or file"),
        (Some(_), Some(_)) => d.at(
            "discovery",
            "bootstrapToken and file are mutually exclusive",
        ),
        _ => {}
    }
    if let Some(b) = &discovery.bootstrap_token {
        check_token(d, "discovery.bootstrapToken.token", &b.token);
        match b.api_server_endpoint.as_deref() {
            None | Some("") => d.at("discovery.bootstrapToken.apiServerEndpoint", "is not set"),
            Some(endpoint) => {
                if let Err(why) = host_port(endpoint) {
                    d.at(
                        "discovery.bootstrapToken.apiServerEndpoint",
                        format!("{endpoint:?} is not host:port: {why}"),
                    );
                }
            }
        }
        let hashes = b.ca_cert_hashes.as_deref().unwrap_or_default();
        for (i, hash) in hashes.iter().enumerate() {
            if hash != CA_CERT_HASH_PLACEHOLDER && !is_ca_cert_hash(hash) {
                d.at(
                    &format!("discovery.bootstrapToken.caCertHashes[{i}]"),
                    format!("{hash:?} is not sha256:<64 hex digits>"),
                );
            }
        }
        if hashes.is_empty() && b.unsafe_skip_ca_verification != Some(true) {
            d.at(
                "discovery.bootstrapToken.caCertHashes",
                "is empty: set it, or unsafeSkipCAVerification: true",
            );
        }
    }
    if let Some(token) = discovery
        .tls_bootstrap_token
        .as_deref()
        .filter(|t| !t.is_empty())
    {
        check_token(d, "discovery.tlsBootstrapToken", token);
    }
    if let Some(n) = &c.node_registration {
        check_node_registration(d, "nodeRegistration", n);
    }
    if let Some(cp) = &c.control_plane {
        if let Some(e) = &cp.local_api_endpoint {
            check_api_endpoint(d, "controlPlane.localAPIEndpoint", e);
        }
        if let Some(key) = &cp.certificate_key {
            check_certificate_key(d, "controlPlane.certificateKey", key);
        }
    }
}

fn check_kubelet(d: &mut DocProblems, c: &KubeletConfiguration) {
    if let Some(driver) = &c.cgroup_driver
        && driver != "systemd"
        && driver != "cgroupfs"
    {
        d.at(
            "cgroupDriver",
            format!("{driver:?} is neither systemd nor cgroupfs"),
        );
    }
    for (i, ip) in c.cluster_dns.iter().flatten().enumerate() {
        if ip.parse::<IpAddr>().is_err() {
            d.at(
                &format!("clusterDNS[{i}]"),
                format!("{ip:?} is not an IP address"),
            );
        }
    }
    let quantities = [
        ("kubeReserved", &c.kube_reserved),
        ("systemReserved", &c.system_reserved),
    ];
    for (field, map) in quantities {
        for (resource, value) in map.iter().flatten() {
            if !is_quantity(value) {
                d.at(
                    &format!("{field}.{resource}"),
                    format!("{value:?} is not a quantity (like \"500m\", \"1Gi\")"),
                );
            }
        }
    }
    let thresholds = [
        ("evictionHard", &c.eviction_hard),
        ("evictionSoft", &c.eviction_soft),
        ("evictionMinimumReclaim", &c.eviction_minimum_reclaim),
    ];
    for (field, map) in thresholds {
        for (signal, value) in map.iter().flatten() {
            let percent = value
                .strip_suffix('%')
                .map(|n| n.parse::<f64>().is_ok_and(|n| (0.0..=100.0).contains(&n)));
            if !percent.unwrap_or_else(|| is_quantity(value)) {
                d.at(
                    &format!("{field}[{signal:?}]"),
                    format!("{value:?} is neither a quantity nor a percentage"),
                );
            }
        }
    }
    for (signal, value) in c.eviction_soft_grace_period.iter().flatten() {
        if let Err(why) = parse_go_duration(value) {
            d.at(
                &format!("evictionSoftGracePeriod[{signal:?}]"),
                format!("invalid duration {value:?}: {why}"),
            );
        }
    }
    if let Some(size) = &c.container_log_max_size
        && !is_quantity(size)
    {
        d.at(
            "containerLogMaxSize",
            format!("{size:?} is not a quantity (like \"10Mi\")"),
        );
    }
    for (field, value) in [
        (
            "imageGCHighThresholdPercent",
            c.image_gc_high_threshold_percent,
        ),
        (
            "imageGCLowThresholdPercent",
            c.image_gc_low_threshold_percent,
        ),
    ] {
        if value.is_some_and(|v| !(0..=100).contains(&v)) {
            d.at(field, "must be between 0 and 100");
        }
    }
    if let (Some(high), Some(low)) = (
        c.image_gc_high_threshold_percent,
        c.image_gc_low_threshold_percent,
    ) && low >= high
    {
        d.at(
            "imageGCLowThresholdPercent",
            "must be less than imageGCHighThresholdPercent",
        );
    }
}

fn check_kube_proxy(d: &mut DocProblems, c: &KubeProxyConfiguration) {
    if let Some(mode) = &c.mode
        && !["", "iptables", "ipvs"].contains(&mode.as_str())
    {
        d.at("mode", format!("{mode:?} is not \"\", iptables or ipvs"));
    }
    if let Some(cidr) = c.cluster_cidr.as_deref().filter(|c| !c.is_empty()) {
        cidrs(d, "clusterCIDR", cidr);
    }
}

fn check_node_registration(d: &mut DocProblems, path: &str, n: &NodeRegistrationOptions) {
    if let Some(policy) = &n.image_pull_policy
        && !["", "Always", "IfNotPresent", "Never"].contains(&policy.as_str())
    {
        d.at(
            &format!("{path}.imagePullPolicy"),
            format!("{policy:?} is not Always, IfNotPresent or Never"),
        );
    }
    for (i, taint) in n.taints.iter().flatten().enumerate() {
        if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&taint.effect.as_str()) {
            d.at(
                &format!("{path}.taints[{i}].effect"),
                format!(
                    "{:?} is not NoSchedule, PreferNoSchedule or NoExecute",
                    taint.effect
                ),
            );
        }
    }
}

fn check_api_endpoint(d: &mut DocProblems, path: &str, e: &ApiEndpoint) {
    if let Some(address) = e.advertise_address.as_deref().filter(|a| !a.is_empty())
        && address.parse::<IpAddr>().is_err()
    {
        d.at(
            &format!("{path}.advertiseAddress"),
            format!("{address:?} is not an IP address"),
        );
    }
    if let Some(port) = e.bind_port
        && !(0..=65535).contains(&port)
    {
        d.at(&format!("{path}.bindPort"), format!("{port} is not a port"));
    }
}

/// 32 bytes in hex, as `kubeadm init --upload-certs` makes, or a secret placeholder.
fn check_certificate_key(d: &mut DocProblems, path: &str, key: &str) {
    let placeholder = crate::bundle::format::secret_name(key).is_some();
    let hex = key.len() == 64 && key.bytes().all(|c| c.is_ascii_hexdigit());
    if !(placeholder || hex) {
        d.at(path, "is not 64 hex digits (a 32-byte AES key)");
    }
}

fn check_token(d: &mut DocProblems, path: &str, token: &str) {
    if token != TOKEN_PLACEHOLDER && !is_bootstrap_token(token) {
        d.at(
            path,
            format!("{token:?} is not a bootstrap token ([a-z0-9]{{6}}.[a-z0-9]{{16}})"),
        );
    }
}

/// `[a-z0-9]{6}.[a-z0-9]{16}`.
pub fn is_bootstrap_token(token: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    token
        .split_once('.')
        .is_some_and(|(id, secret)| ok(id, 6) && ok(secret, 16))
}

/// `sha256:<64 hex digits>`, a pin of the CA's public key.
pub fn is_ca_cert_hash(hash: &str) -> bool {
    hash.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// Comma-separated CIDRs (a dual-stack pair is allowed), each reported if malformed.
fn cidrs(d: &mut DocProblems, path: &str, value: &str) -> Vec<IpNet> {
    let mut nets = Vec::new();
    for part in value.split(',') {
        match part.trim().parse::<IpNet>() {
            Ok(net) => nets.push(net.trunc()),
            Err(_) => d.at(path, format!("{part:?} is not a CIDR (like 10.244.0.0/16)")),
        }
    }
    nets
}

/// `host:port` as Go's `net.SplitHostPort` reads it, with an IP or DNS name and a real port.
fn host_port(value: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (host, port) = rest.split_once("]:").ok_or("missing port")?;
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        (host, port)
    } else {
        let (host, port) = value.rsplit_once(':').ok_or("missing port")?;
        if host.contains(':') {
            return Err("an IPv6 address needs brackets".into());
        }
        (host, port)
    };
    if !port.bytes().all(|c| c.is_ascii_digit()) || !matches!(port.parse::<u16>(), Ok(1..)) {
        return Err(format!("{port:?} is not a port"));
    }
    if host.is_empty() {
        return Err("empty host".into());
    }
    let dns_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.parse::<IpAddr>().is_err() && !(host.len() <= 253 && host.split('.').all(dns_label)) {
        return Err(format!("{host:?} is neither an IP address nor a DNS name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "sha256:7d3e0b8c2f1a9e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d";
    const KEY: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

    /// A first control-plane node of an HA cluster, as ezimg renders it.
    const HA_INIT: &str = r#"# kubeadm config for cp1
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
bootstrapTokens:
  - token: "@@EZIMG_SECRET_kube_bootstrap_token@@"
    description: ezimg join token
    ttl: 24h0m0s
    usages:
      - signing
      - authentication
    groups:
      - system:bootstrappers:kubeadm:default-node-token
nodeRegistration:
  name: cp1
  criSocket: unix:///run/containerd/containerd.sock
  imagePullPolicy: IfNotPresent
  kubeletExtraArgs:
    node-ip: 192.168.10.11
  taints:
    - key: node-role.kubernetes.io/control-plane
      effect: NoSchedule
  ignorePreflightErrors:
    - Swap
localAPIEndpoint:
  advertiseAddress: 192.168.10.11
  bindPort: 6443
certificateKey: "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: v1.29.4
clusterName: ezimg
controlPlaneEndpoint: k8s-api.ezimg.internal:8443
imageRepository: registry.k8s.io
certificatesDir: /etc/kubernetes/pki
networking:
  dnsDomain: cluster.local
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/12
etcd:
  local:
    dataDir: /var/lib/etcd
    extraArgs:
      listen-metrics-urls: http://0.0.0.0:2381
    serverCertSANs: [cp1, 192.168.10.11]
    peerCertSANs: [192.168.10.11]
apiServer:
  certSANs:
    - k8s-api.ezimg.internal
    - 192.168.10.10
    - 127.0.0.1
  timeoutForControlPlane: 4m0s
  extraArgs:
    authorization-mode: Node,RBAC
    audit-log-maxage: "30"
  extraVolumes:
    - name: audit
      hostPath: /var/log/kubernetes/audit
      mountPath: /var/log/kubernetes/audit
      readOnly: false
      pathType: DirectoryOrCreate
controllerManager:
  extraArgs:
    bind-address: 0.0.0.0
scheduler:
  extraArgs:
    bind-address: 0.0.0.0
dns:
  imageRepository: registry.k8s.io/coredns
  imageTag: v1.11.1
featureGates:
  EtcdLearnerMode: true
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
clusterDNS:
  - 10.96.0.10
clusterDomain: cluster.local
maxPods: 110
podPidsLimit: 4096
serializeImagePulls: false
maxParallelImagePulls: 4
rotateCertificates: true
serverTLSBootstrap: true
failSwapOn: true
resolvConf: /etc/resolv.conf
staticPodPath: /etc/kubernetes/manifests
nodeStatusUpdateFrequency: 10s
nodeStatusReportFrequency: 5m0s
evictionPressureTransitionPeriod: 5m0s
evictionHard:
  memory.available: 100Mi
  nodefs.available: 10%
  nodefs.inodesFree: 5%
  imagefs.available: 15%
evictionSoft:
  memory.available: 300Mi
evictionSoftGracePeriod:
  memory.available: 1m30s
kubeReserved: {cpu: 200m, memory: 512Mi, ephemeral-storage: 1Gi}
systemReserved: {cpu: 200m, memory: 512Mi}
containerLogMaxSize: 50Mi
containerLogMaxFiles: 5
imageGCHighThresholdPercent: 85
imageGCLowThresholdPercent: 80
featureGates:
  GracefulNodeShutdown: true
shutdownGracePeriod: 30s
shutdownGracePeriodCriticalPods: 10s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
    cacheTTL: 2m0s
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 5m0s
    cacheUnauthorizedTTL: 30s
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
bindAddress: 0.0.0.0
metricsBindAddress: 0.0.0.0:10249
clusterCIDR: 10.244.0.0/16
ipvs:
  scheduler: rr
  strictARP: true
  syncPeriod: 30s
  minSyncPeriod: 0s
  tcpTimeout: 0s
conntrack:
  maxPerCore: 32768
  min: 131072
  tcpEstablishedTimeout: 24h0m0s
  tcpCloseWaitTimeout: 1h0m0s
"#;

    fn worker_join() -> String {
        format!(
            r#"apiVersion: kubeadm.k8s.io/v1beta3
kind: JoinConfiguration
nodeRegistration:
  name: worker1
  criSocket: unix:///run/containerd/containerd.sock
  kubeletExtraArgs:
    node-ip: 192.168.10.21
discovery:
  bootstrapToken:
    apiServerEndpoint: k8s-api.ezimg.internal:8443
    token: abcdef.0123456789abcdef
    caCertHashes:
      - {HASH}
      - "@@EZIMG_SECRET_kube_ca_cert_hash@@"
  tlsBootstrapToken: abcdef.0123456789abcdef
  timeout: 5m0s
"#
        )
    }

    fn control_plane_join() -> String {
        format!(
            r#"apiVersion: kubeadm.k8s.io/v1beta3
kind: JoinConfiguration
nodeRegistration:
  name: cp2
  taints:
    - key: node-role.kubernetes.io/control-plane
      effect: NoSchedule
discovery:
  bootstrapToken:
    apiServerEndpoint: "[fd00::10]:8443"
    token: "@@EZIMG_SECRET_kube_bootstrap_token@@"
    caCertHashes: ["@@EZIMG_SECRET_kube_ca_cert_hash@@"]
controlPlane:
  localAPIEndpoint:
    advertiseAddress: 192.168.10.12
    bindPort: 6443
  certificateKey: {KEY}
"#
        )
    }

    fn parse_ok(text: &str) -> Vec<Document> {
        match parse(text, "kubeadm.yaml") {
            Ok(docs) => docs,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// The error of `parse` then `check`, which must fail.
    fn refused(text: &str) -> String {
        match parse(text, "kubeadm.yaml").and_then(|d| check(&d, "kubeadm.yaml")) {
            Ok(()) => panic!("accepted:\n{text}"),
            Err(e) => format!("{e:#}"),
        }
    }

    fn assert_has(msg: &str, parts: &[&str]) {
        for part in parts {
            assert!(msg.contains(part), "{part:?} missing from: {msg}");
        }
    }

    #[test]
    fn ha_init_config_parses_and_checks() {
        let docs = parse_ok(HA_INIT);
        let kinds: Vec<&str> = docs.iter().map(Document::kind).collect();
        assert_eq!(
            kinds,
            [
                "InitConfiguration",
                "ClusterConfiguration",
                "KubeletConfiguration",
                "KubeProxyConfiguration"
            ]
        );
        check(&docs, "kubeadm.yaml").expect("check");
        let Document::Cluster(c) = &docs[1] else {
            panic!()
        };
        let timeout = c
            .api_server
            .as_ref()
            .and_then(|a| a.timeout_for_control_plane.as_ref());
        assert_eq!(timeout.map(|d| d.nanos), Some(240_000_000_000));
        let Document::Kubelet(k) = &docs[2] else {
            panic!()
        };
        assert_eq!(k.cgroup_driver.as_deref(), Some("systemd"));
        assert_eq!(
            k.feature_gates.as_ref().map(|g| g["GracefulNodeShutdown"]),
            Some(true)
        );
        let Document::KubeProxy(p) = &docs[3] else {
            panic!()
        };
        assert_eq!(p.ipvs.as_ref().and_then(|i| i.strict_arp), Some(true));
    }

    #[test]
    fn worker_join_parses_and_checks() {
        let docs = parse_ok(&worker_join());
        check(&docs, "join.yaml").expect("check");
        let [Document::Join(j)] = docs.as_slice() else {
            panic!()
        };
        let b = j
            .discovery
            .bootstrap_token
            .as_ref()
            .expect("bootstrapToken");
        assert_eq!(b.ca_cert_hashes.as_ref().map(Vec::len), Some(2));
        assert!(j.control_plane.is_none());
    }

    #[test]
    fn control_plane_join_parses_and_checks() {
        let docs = parse_ok(&control_plane_join());
        check(&docs, "join.yaml").expect("check");
        let [Document::Join(j)] = docs.as_slice() else {
            panic!()
        };
        let endpoint = j
            .control_plane
            .as_ref()
            .and_then(|c| c.local_api_endpoint.as_ref());
        assert_eq!(
            endpoint.and_then(|e| e.advertise_address.as_deref()),
            Some("192.168.10.12")
        );
    }

    #[test]
    fn unknown_field_is_refused_with_its_path_line_and_a_hint() {
        let text = HA_INIT.replace("  podSubnet: 10.244", "  podSubnets: 10.244");
        let msg = refused(&text);
        assert_has(
            &msg,
            &[
                "kubeadm.yaml: document 2 (ClusterConfiguration), line 38: ",
                "networking.podSubnets: unknown field `podSubnets` (did you mean `podSubnet`?)",
            ],
        );
        assert!(!msg.contains("expected one of"), "{msg}");
    }

    #[test]
    fn newer_than_1_29_field_is_refused() {
        let text = HA_INIT.replace(
            "cgroupDriver: systemd",
            "cgroupDriver: systemd\npodLogsDir: /x",
        );
        assert_has(
            &refused(&text),
            &["(KubeletConfiguration)", "podLogsDir: unknown field"],
        );
    }

    #[test]
    fn wrong_api_version_is_refused() {
        let text = HA_INIT.replacen("kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta2", 1);
        assert_has(
            &refused(&text),
            &[
                "document 1 (InitConfiguration), line 2: apiVersion: ",
                "\"kubeadm.k8s.io/v1beta2\" is not supported: InitConfiguration is kubeadm.k8s.io/v1beta3",
            ],
        );
        let text = HA_INIT.replace("kind: KubeletConfiguration", "kind: KubeletConfig");
        assert_has(
            &refused(&text),
            &["document 3, line 75: kind: unknown kind \"KubeletConfig\""],
        );
    }

    #[test]
    fn bad_token_is_refused() {
        let text = HA_INIT.replace(
            "\"@@EZIMG_SECRET_kube_bootstrap_token@@\"",
            "abcdef.0123456789ABCDEF",
        );
        assert_has(
            &refused(&text),
            &[
                "document 1 (InitConfiguration): bootstrapTokens[0].token: ",
                "\"abcdef.0123456789ABCDEF\" is not a bootstrap token",
            ],
        );
        let text = worker_join().replace("token: abcdef.", "token: abcdefg.");
        assert_has(&refused(&text), &["discovery.bootstrapToken.token: "]);
        // Only the exact placeholder stands in for a token.
        let text = worker_join().replace(
            "token: abcdef.0123456789abcdef\n",
            "token: \"@@EZIMG_SECRET_kube_ca_cert_hash@@\"\n",
        );
        assert_has(&refused(&text), &["discovery.bootstrapToken.token: "]);
    }

    #[test]
    fn bad_ca_cert_hash_is_refused() {
        let text = worker_join().replace(HASH, &HASH[..70]);
        assert_has(
            &refused(&text),
            &[
                "document 1 (JoinConfiguration): discovery.bootstrapToken.caCertHashes[0]: ",
                "is not sha256:<64 hex digits>",
            ],
        );
        let text = worker_join().replace("sha256:", "md5:");
        assert_has(&refused(&text), &["caCertHashes[0]"]);
    }

    #[test]
    fn overlapping_subnets_are_refused() {
        let text = HA_INIT.replace("podSubnet: 10.244.0.0/16", "podSubnet: 10.96.128.0/17");
        assert_has(
            &refused(&text),
            &[
                "(ClusterConfiguration): networking: podSubnet 10.96.128.0/17 and serviceSubnet 10.96.0.0/12 overlap",
            ],
        );
        let text = HA_INIT.replace("podSubnet: 10.244.0.0/16", "podSubnet: 10.244.0.0/33");
        assert_has(
            &refused(&text),
            &["networking.podSubnet: \"10.244.0.0/33\" is not a CIDR"],
        );
        // A dual-stack pair is fine.
        let text = HA_INIT
            .replace(
                "podSubnet: 10.244.0.0/16",
                "podSubnet: 10.244.0.0/16,fd00:10:244::/56",
            )
            .replace(
                "serviceSubnet: 10.96.0.0/12",
                "serviceSubnet: 10.96.0.0/12,fd00:10:96::/112",
            );
        check(&parse_ok(&text), "kubeadm.yaml").expect("check");
    }

    #[test]
    fn bad_duration_is_refused() {
        let text = HA_INIT.replace(
            "timeoutForControlPlane: 4m0s",
            "timeoutForControlPlane: 4 minutes",
        );
        assert_has(
            &refused(&text),
            &[
                "document 2 (ClusterConfiguration), line 52: ",
                "apiServer.timeoutForControlPlane: invalid duration \"4 minutes\"",
            ],
        );
        // A bare number is no Go duration either (metav1.Duration decodes only strings).
        let text = worker_join().replace("timeout: 5m0s", "timeout: 300");
        assert_has(
            &refused(&text),
            &["discovery.timeout: invalid type: integer `300`"],
        );
        let text = HA_INIT.replace("memory.available: 1m30s", "memory.available: 90");
        assert_has(&refused(&text), &["evictionSoftGracePeriod"]);
    }

    #[test]
    fn non_bool_feature_gate_is_refused() {
        let text = HA_INIT.replace(
            "GracefulNodeShutdown: true",
            "GracefulNodeShutdown: \"true\"",
        );
        assert_has(
            &refused(&text),
            &[
                "document 3 (KubeletConfiguration), line 108: ",
                "featureGates.GracefulNodeShutdown: invalid type: string \"true\", expected a boolean",
            ],
        );
        let text = HA_INIT.replace(
            "GracefulNodeShutdown: true",
            "GracefulNodeShutdown: enabled",
        );
        assert_has(
            &refused(&text),
            &["featureGates.GracefulNodeShutdown: invalid type: string"],
        );
        // YAML 1.1 booleans are booleans to Go's yaml.v2 too.
        let text = HA_INIT.replace("GracefulNodeShutdown: true", "GracefulNodeShutdown: yes");
        check(&parse_ok(&text), "kubeadm.yaml").expect("check");
    }

    #[test]
    fn json_typing_like_go() {
        // A number where kubeadm wants a string fails in Go's decoder as well.
        let text = HA_INIT.replace("node-ip: 192.168.10.11", "v: 4");
        assert_has(
            &refused(&text),
            &["nodeRegistration.kubeletExtraArgs.v: invalid type: integer `4`, expected a string"],
        );
        let text = HA_INIT.replace("maxPods: 110", "maxPods: \"110\"");
        assert_has(&refused(&text), &["maxPods: invalid type: string \"110\""]);
        let text = HA_INIT.replace("maxPods: 110", "maxPods: 3000000000");
        assert_has(
            &refused(&text),
            &["maxPods: invalid value: integer `3000000000`"],
        );
        let text = HA_INIT.replace("memory.available: 300Mi", "memory.available: 300");
        assert_has(
            &refused(&text),
            &["evictionSoft[\"memory.available\"]: invalid type: integer"],
        );
    }

    #[test]
    fn missing_required_field_is_refused() {
        let text = worker_join().replace("    token: abcdef.0123456789abcdef\n", "");
        assert_has(
            &refused(&text),
            &["discovery.bootstrapToken: missing field `token`"],
        );
        let text = worker_join().replace("discovery:", "discover:");
        assert_has(
            &refused(&text),
            &["discover: unknown field `discover` (did you mean `discovery`?)"],
        );
    }

    #[test]
    fn stray_separators_and_comments_are_refused_as_kubeadm_does() {
        // A comment header split off by `---` is a document without a kind for kubeadm.
        let text = format!("# header\n---\n{HA_INIT}");
        assert_has(
            &refused(&text),
            &["document 1: lines 1-1 hold only blank lines or comments"],
        );
        let text = format!("{HA_INIT}---\n\n");
        assert_has(&refused(&text), &["document 5: lines "]);
        // Leading and trailing bare separators are fine.
        parse_ok(&format!("---\n{HA_INIT}---\n"));
        let text = HA_INIT.replacen("---\n", "--- x\n", 1);
        assert_has(
            &refused(&text),
            &["kubeadm.yaml: line 28: only a comment may follow"],
        );
        let text = HA_INIT.replacen("---\n", "--- # next\n", 1);
        parse_ok(&text);
    }

    #[test]
    fn invalid_yaml_and_duplicate_keys_are_refused() {
        let text = HA_INIT.replace(
            "  dnsDomain: cluster.local\n",
            "  dnsDomain: [cluster.local\n",
        );
        assert_has(&refused(&text), &["document 2, line ", "invalid YAML"]);
        let text = HA_INIT.replace("maxPods: 110", "maxPods: 110\nmaxPods: 120");
        assert_has(
            &refused(&text),
            &["document 3, line 81: invalid YAML: duplicate mapping key: maxPods"],
        );
        // Every bad document is reported, one line each.
        let text = HA_INIT
            .replace("podSubnet:", "podSubnets:")
            .replace("strictARP:", "strictArp:");
        let msg = refused(&text);
        assert_has(&msg, &["document 2 (", "document 4 ("]);
        assert_eq!(msg.lines().count(), 2, "{msg}");
    }

    #[test]
    fn document_rules_are_checked() {
        let (init, rest) = HA_INIT.split_once("---\n").expect("init");
        let (_cluster, components) = rest.split_once("---\n").expect("cluster");
        let text = format!("{init}---\n{components}");
        assert_has(
            &refused(&text),
            &["an InitConfiguration needs a ClusterConfiguration"],
        );
        let text = format!("{HA_INIT}---\n{}", worker_join());
        assert_has(
            &refused(&text),
            &["both an InitConfiguration and a JoinConfiguration"],
        );
        let text = format!("{}---\n{}", worker_join(), worker_join());
        assert_has(
            &refused(&text),
            &["JoinConfiguration appears more than once (documents 1, 2)"],
        );
        let (_, components) = HA_INIT
            .split_once("kind: KubeletConfiguration")
            .expect("kubelet");
        let text = format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration{components}"
        );
        assert_has(
            &refused(&text),
            &["neither an InitConfiguration nor a JoinConfiguration"],
        );
    }

    #[test]
    fn semantic_checks() {
        let cases: [(String, &str); 10] = [
            (
                HA_INIT.replace("k8s-api.ezimg.internal:8443", "k8s-api.ezimg.internal"),
                "controlPlaneEndpoint: \"k8s-api.ezimg.internal\" is not host:port",
            ),
            (
                HA_INIT.replace("mode: ipvs", "mode: nftables"),
                "(KubeProxyConfiguration): mode: \"nftables\" is not",
            ),
            (
                HA_INIT.replace("cgroupDriver: systemd", "cgroupDriver: system"),
                "(KubeletConfiguration): cgroupDriver: \"system\" is neither systemd nor cgroupfs",
            ),
            (
                worker_join().replace(
                    "apiServerEndpoint: k8s-api.ezimg.internal:8443",
                    "apiServerEndpoint: \"\"",
                ),
                "discovery.bootstrapToken.apiServerEndpoint: is not set",
            ),
            (
                worker_join()
                    .replace(&format!("      - {HASH}\n"), "")
                    .replace("      - \"@@EZIMG_SECRET_kube_ca_cert_hash@@\"\n", "")
                    .replace("    caCertHashes:\n", ""),
                "caCertHashes: is empty",
            ),
            (
                worker_join().replace(
                    "  timeout: 5m0s",
                    "  file:\n    kubeConfigPath: /etc/x.conf",
                ),
                "discovery: bootstrapToken and file are mutually exclusive",
            ),
            (
                control_plane_join()
                    .replace("advertiseAddress: 192.168.10.12", "advertiseAddress: cp2"),
                "controlPlane.localAPIEndpoint.advertiseAddress: \"cp2\" is not an IP address",
            ),
            (
                HA_INIT.replace("effect: NoSchedule", "effect: NoSchedul"),
                "nodeRegistration.taints[0].effect: \"NoSchedul\"",
            ),
            (
                HA_INIT.replace("kubeReserved: {cpu: 200m", "kubeReserved: {cpu: 200 m"),
                "kubeReserved.cpu: \"200 m\" is not a quantity",
            ),
            (
                HA_INIT.replace("  - 10.96.0.10", "  - kube-dns"),
                "clusterDNS[0]: \"kube-dns\" is not an IP address",
            ),
        ];
        for (text, expected) in cases {
            assert_has(&refused(&text), &[expected]);
        }
    }

    #[test]
    fn check_reports_every_problem() {
        let text = HA_INIT
            .replace("cgroupDriver: systemd", "cgroupDriver: system")
            .replace("mode: ipvs", "mode: userspace");
        let msg = refused(&text);
        assert_eq!(msg.lines().count(), 2, "{msg}");
    }

    #[test]
    fn go_durations() {
        let ok = [
            ("0", 0),
            ("40s", 40_000_000_000),
            ("5m0s", 300_000_000_000),
            ("1h", 3_600_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("1.5s", 1_500_000_000),
            (".5s", 500_000_000),
            ("-2ms", -2_000_000),
            ("+3us", 3_000),
            ("3\u{b5}s", 3_000),
            ("100ns", 100),
            ("0s", 0),
        ];
        for (text, nanos) in ok {
            assert_eq!(parse_go_duration(text), Ok(nanos), "{text}");
        }
        for bad in [
            "",
            "1",
            "s",
            "1d",
            "1h-5m",
            ".s",
            "4 minutes",
            "-",
            "10000000h",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quantities_and_times() {
        for good in [
            "100Mi", "1Gi", "500m", "2", "0.5", "1e3", "1E", "+1k", "1.", ".5Gi",
        ] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["", "Mi", "1K", "1mi", "1e", "1 Gi", "10%", "1.2.3"] {
            assert!(!is_quantity(bad), "{bad}");
        }
        for good in ["2024-01-02T03:04:05Z", "2024-02-29T23:59:59.123+05:30"] {
            assert!(is_rfc3339(good), "{good}");
        }
        for bad in [
            "2024-01-02",
            "2023-02-29T00:00:00Z",
            "2024-01-02 03:04:05Z",
            "2024-01-02T03:04:05",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
        let text = HA_INIT.replace("ttl: 24h0m0s", "expires: 2024-13-01T00:00:00Z");
        assert_has(
            &refused(&text),
            &["bootstrapTokens[0].expires: invalid time"],
        );
    }

    /// Every upstream v1.29 field of every document, so a misspelt serde name shows up here.
    #[test]
    fn every_upstream_field_is_known() {
        let kubeadm = format!(
            r#"apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
bootstrapTokens:
  - token: abcdef.0123456789abcdef
    description: d
    ttl: 1h
    expires: "2030-01-01T00:00:00Z"
    usages: [signing]
    groups: [g]
nodeRegistration:
  name: node1
  criSocket: unix:///run/containerd/containerd.sock
  taints:
    - key: k
      value: v
      effect: NoExecute
      timeAdded: "2030-01-01T00:00:00Z"
  kubeletExtraArgs: {{a: b}}
  ignorePreflightErrors: [all]
  imagePullPolicy: Never
localAPIEndpoint: {{advertiseAddress: 10.0.0.1, bindPort: 6443}}
certificateKey: {KEY}
skipPhases: [addon/kube-proxy]
patches: {{directory: /etc/kubernetes/patches}}
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
etcd:
  local:
    imageRepository: r
    imageTag: t
    dataDir: /var/lib/etcd
    extraArgs: {{a: b}}
    serverCertSANs: [a]
    peerCertSANs: [a]
networking: {{serviceSubnet: 10.96.0.0/12, podSubnet: 10.244.0.0/16, dnsDomain: cluster.local}}
kubernetesVersion: v1.29.0
controlPlaneEndpoint: 10.0.0.1:6443
apiServer:
  extraArgs: {{a: b}}
  extraVolumes:
    - {{name: audit, hostPath: /a, mountPath: /a, readOnly: true, pathType: File}}
  certSANs: [a]
  timeoutForControlPlane: 4m
controllerManager: {{extraArgs: {{a: b}}, extraVolumes: []}}
scheduler: {{extraArgs: {{a: b}}, extraVolumes: []}}
dns: {{imageRepository: r, imageTag: t}}
certificatesDir: /etc/kubernetes/pki
imageRepository: registry.k8s.io
featureGates: {{EtcdLearnerMode: true}}
clusterName: kubernetes
"#
        );
        let external = r#"apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
etcd:
  external: {endpoints: ["https://10.0.0.1:2379"], caFile: a, certFile: b, keyFile: c}
"#;
        let join = r#"apiVersion: kubeadm.k8s.io/v1beta3
kind: JoinConfiguration
nodeRegistration: {name: node2}
caCertPath: /etc/kubernetes/pki/ca.crt
discovery:
  file: {kubeConfigPath: /etc/kubernetes/discovery.conf}
  tlsBootstrapToken: abcdef.0123456789abcdef
  timeout: 5m
controlPlane: {localAPIEndpoint: {advertiseAddress: 10.0.0.2, bindPort: 6443}}
skipPhases: [preflight]
patches: {directory: /p}
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
"#;
        let kubelet = r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
enableServer: true
staticPodPath: /etc/kubernetes/manifests
syncFrequency: 1m
fileCheckFrequency: 20s
httpCheckFrequency: 20s
staticPodURL: http://example
staticPodURLHeader: {X-A: [b, c]}
address: 0.0.0.0
port: 10250
readOnlyPort: 0
tlsCertFile: a
tlsPrivateKeyFile: b
tlsCipherSuites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
tlsMinVersion: VersionTLS12
rotateCertificates: true
serverTLSBootstrap: true
authentication:
  x509: {clientCAFile: /ca.crt}
  webhook: {enabled: true, cacheTTL: 2m}
  anonymous: {enabled: false}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 5m, cacheUnauthorizedTTL: 30s}
registryPullQPS: 5
registryBurst: 10
eventRecordQPS: 50
eventBurst: 100
enableDebuggingHandlers: true
enableContentionProfiling: false
healthzPort: 10248
healthzBindAddress: 127.0.0.1
oomScoreAdj: -999
clusterDomain: cluster.local
clusterDNS: [10.96.0.10]
streamingConnectionIdleTimeout: 4h
nodeStatusUpdateFrequency: 10s
nodeStatusReportFrequency: 5m
nodeLeaseDurationSeconds: 40
imageMinimumGCAge: 2m
imageMaximumGCAge: 0s
imageGCHighThresholdPercent: 85
imageGCLowThresholdPercent: 80
volumeStatsAggPeriod: 1m
kubeletCgroups: /k
systemCgroups: /s
cgroupRoot: /
cgroupsPerQOS: true
cgroupDriver: cgroupfs
cpuManagerPolicy: none
cpuManagerPolicyOptions: {full-pcpus-only: "true"}
cpuManagerReconcilePeriod: 10s
memoryManagerPolicy: None
topologyManagerPolicy: none
topologyManagerScope: container
topologyManagerPolicyOptions: {prefer-closest-numa-nodes: "true"}
qosReserved: {memory: 50%}
runtimeRequestTimeout: 2m
hairpinMode: promiscuous-bridge
maxPods: 110
podCIDR: 10.244.0.0/24
podPidsLimit: -1
resolvConf: /etc/resolv.conf
runOnce: false
cpuCFSQuota: true
cpuCFSQuotaPeriod: 100ms
nodeStatusMaxImages: 50
maxOpenFiles: 1000000
contentType: application/vnd.kubernetes.protobuf
kubeAPIQPS: 50
kubeAPIBurst: 100
serializeImagePulls: true
maxParallelImagePulls: 1
evictionHard: {memory.available: 100Mi}
evictionSoft: {memory.available: 300Mi}
evictionSoftGracePeriod: {memory.available: 30s}
evictionPressureTransitionPeriod: 5m
evictionMaxPodGracePeriod: 0
evictionMinimumReclaim: {imagefs.available: 2Gi}
podsPerCore: 0
enableControllerAttachDetach: true
protectKernelDefaults: false
makeIPTablesUtilChains: true
iptablesMasqueradeBit: 14
iptablesDropBit: 15
featureGates: {NodeSwap: false}
failSwapOn: true
memorySwap: {swapBehavior: LimitedSwap}
containerLogMaxSize: 10Mi
containerLogMaxFiles: 5
configMapAndSecretChangeDetectionStrategy: Watch
systemReserved: {cpu: 100m}
kubeReserved: {memory: 1Gi}
reservedSystemCPUs: "0-1"
showHiddenMetricsForVersion: "1.28"
systemReservedCgroup: /system.slice
kubeReservedCgroup: /kube.slice
enforceNodeAllocatable: [pods]
allowedUnsafeSysctls: [net.core.somaxconn]
volumePluginDir: /usr/libexec/kubernetes/kubelet-plugins/volume/exec/
providerID: p
kernelMemcgNotification: false
logging:
  format: text
  flushFrequency: 5s
  verbosity: 2
  vmodule: [{filePattern: "kubelet*", verbosity: 4}]
  options:
    text: {splitStream: false, infoBufferSize: "0"}
    json: {splitStream: true, infoBufferSize: 64Ki}
enableSystemLogHandler: true
enableSystemLogQuery: false
shutdownGracePeriod: 30s
shutdownGracePeriodCriticalPods: 10s
shutdownGracePeriodByPodPriority: [{priority: 0, shutdownGracePeriodSeconds: 30}]
reservedMemory: [{numaNode: 0, limits: {memory: 1Gi}}]
enableProfilingHandler: true
enableDebugFlagsHandler: true
seccompDefault: false
memoryThrottlingFactor: 0.9
registerWithTaints: [{key: k, effect: NoSchedule}]
registerNode: true
tracing: {endpoint: "localhost:4317", samplingRatePerMillion: 100}
localStorageCapacityIsolation: true
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
imageServiceEndpoint: unix:///run/containerd/containerd.sock
"#;
        let proxy = r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
featureGates: {A: true}
clientConnection: {kubeconfig: /k, acceptContentTypes: "", contentType: application/json, qps: 5.5, burst: 10}
logging: {format: json, flushFrequency: 5000000000, verbosity: 0}
hostnameOverride: node1
bindAddress: 0.0.0.0
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
bindAddressHardFail: false
enableProfiling: false
showHiddenMetricsForVersion: ""
mode: iptables
iptables: {masqueradeBit: 14, masqueradeAll: false, localhostNodePorts: true, syncPeriod: 30s, minSyncPeriod: 1s}
ipvs: {syncPeriod: 30s, minSyncPeriod: 0s, scheduler: rr, excludeCIDRs: [10.0.0.0/8], strictARP: true, tcpTimeout: 0s, tcpFinTimeout: 0s, udpTimeout: 0s}
nftables: {masqueradeBit: 14, masqueradeAll: false, syncPeriod: 30s, minSyncPeriod: 1s}
winkernel: {networkName: net, sourceVip: 10.0.0.1, enableDSR: false, rootHnsEndpointName: r, forwardHealthCheckVip: false}
detectLocalMode: ClusterCIDR
detectLocal: {bridgeInterface: br0, interfaceNamePrefix: veth}
clusterCIDR: 10.244.0.0/16
nodePortAddresses: [10.0.0.0/8]
oomScoreAdj: -999
conntrack: {maxPerCore: 32768, min: 131072, tcpEstablishedTimeout: 24h, tcpCloseWaitTimeout: 1h, tcpBeLiberal: false, udpTimeout: 30s, udpStreamTimeout: 300s}
configSyncPeriod: 15m
portRange: ""
"#;
        let all = format!("{kubeadm}---\n{kubelet}---\n{proxy}");
        assert_eq!(parse_ok(&all).len(), 4);
        check(&parse_ok(&all), "all.yaml").expect("check");
        assert_eq!(parse_ok(external).len(), 1);
        assert_eq!(parse_ok(join).len(), 3);
    }
}
