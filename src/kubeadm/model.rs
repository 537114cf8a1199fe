//! Serde types for the documents of a kubeadm v1.29 config file, field for field as upstream.
//!
//! Each struct mirrors one Go struct of Kubernetes v1.29; field names are the Go `json` tags.
//! Sources (kubernetes/kubernetes):
//! - `cmd/kubeadm/app/apis/kubeadm/v1beta3/types.go` (kubeadm.k8s.io/v1beta3)
//! - `cmd/kubeadm/app/apis/bootstraptoken/v1/types.go` (BootstrapToken)
//! - `staging/src/k8s.io/kubelet/config/v1beta1/types.go` (kubelet.config.k8s.io/v1beta1)
//! - `staging/src/k8s.io/kube-proxy/config/v1alpha1/types.go` (kubeproxy.config.k8s.io/v1alpha1)
//! - `staging/src/k8s.io/component-base/{config/v1alpha1,logs/api/v1,tracing/api/v1}/types.go`
//! - `staging/src/k8s.io/api/core/v1/types.go` (Taint)
//!
//! How the Go decoder behaves is kept where it matters to "does kubeadm accept this file":
//! every field may be absent (so every field is an `Option`, except the few that upstream
//! validation requires), no unknown field is allowed (`deny_unknown_fields`, kubeadm's strict
//! decoding), and the value types are JSON's: a string field takes only a string, a bool
//! only a bool. `metav1.Duration`, `metav1.Time` and `resource.Quantity` fail to decode in Go
//! when malformed, so [`Duration`], [`Time`] and [`Quantity`] reject bad values here too.
//! Go's embedded (`json:",inline"`) structs are spelled out, because serde's `flatten` does not
//! combine with `deny_unknown_fields`.
//!
//! Deliberately absent, because Kubernetes v1.29 does not have them (they are newer, so a v1.29
//! kubelet or kube-proxy would not know them either):
//! - KubeletConfiguration: `podLogsDir`, `containerLogMaxWorkers`, `containerLogMonitorInterval`
//!   (1.30); `failCgroupV1` (1.31); `singleProcessOOMKill`, `crashLoopBackOff` (1.32);
//!   `userNamespaces`, `imagePullCredentialsVerificationPolicy`,
//!   `preloadedImagesVerificationAllowlist`, `mergeDefaultEvictionSettings`,
//!   `draManagerReconcilePeriod`, `tlsCurvePreferences`, `memoryReservationPolicy` (later).
//! - KubeProxyConfiguration: `windowsRunAsService` (1.31), `iptables.snatNodeInternalIP` (later).
//!
//! Other documents of those API groups (CredentialProviderConfig, SerializedNodeConfigSource, …)
//! are not part of a kubeadm config file and are not modelled.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

pub const KUBEADM_API_VERSION: &str = "kubeadm.k8s.io/v1beta3";
pub const KUBELET_API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
pub const KUBE_PROXY_API_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";

type StringMap = BTreeMap<String, String>;

// ---------------------------------------------------------------------------------------------
// Value types that Go validates while decoding
// ---------------------------------------------------------------------------------------------

/// `metav1.Duration`: a string Go's `time.ParseDuration` accepts ("40s", "5m0s", "1h30m").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duration {
    pub text: String,
    /// The value in nanoseconds (negative durations are valid Go durations).
    pub nanos: i128,
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match parse_go_duration(&text) {
            Ok(nanos) => Ok(Duration { text, nanos }),
            Err(why) => Err(de::Error::custom(format!(
                "invalid duration {text:?}: {why} (Go durations look like \"40s\", \"5m0s\", \"1h\")"
            ))),
        }
    }
}

/// Go's `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or "0"; the value in ns.
pub fn parse_go_duration(s: &str) -> Result<i128, String> {
    const MAX: i128 = i64::MAX as i128;
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err("empty".into());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
        let int_len = digits(rest);
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let n = digits(after_dot);
            frac_part = &after_dot[..n];
            rest = &after_dot[n..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err("a number must come before each unit".into());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err("missing unit".into()),
            other => return Err(format!("unknown unit {other:?}")),
        };
        let number: f64 = format!(
            "{}.{}",
            if int_part.is_empty() { "0" } else { int_part },
            frac_part
        )
        .trim_end_matches('.')
        .parse()
        .map_err(|_| "bad number".to_string())?;
        total += number * scale;
        if total > MAX as f64 + 1.0 {
            return Err("overflows".into());
        }
    }
    let nanos = total.round() as i128;
    if nanos > MAX + i128::from(neg) {
        return Err("overflows".into());
    }
    Ok(if neg { -nanos } else { nanos })
}

/// `metav1.Time`: an RFC 3339 timestamp ("2024-01-02T03:04:05Z").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Time(pub String);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if is_rfc3339(&text) {
            Ok(Time(text))
        } else {
            Err(de::Error::custom(format!(
                "invalid time {text:?}: not RFC 3339 (like \"2024-01-02T03:04:05Z\")"
            )))
        }
    }
}

/// Go's `time.Parse(time.RFC3339, …)`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        part.iter().all(u8::is_ascii_digit).then(|| {
            part.iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
        })
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    let (Some(year), Some(month), Some(day), Some(hour), Some(min), Some(sec)) = (
        num(0, 4),
        num(5, 2),
        num(8, 2),
        num(11, 2),
        num(14, 2),
        num(17, 2),
    ) else {
        return false;
    };
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return false;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days || hour > 23 || min > 59 || sec > 59 {
        return false;
    }
    let mut at = 19;
    if sep(at, b'.') {
        let n = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if n == 0 {
            return false;
        }
        at += 1 + n;
    }
    match b.get(at) {
        Some(b'Z') => at + 1 == b.len(),
        Some(b'+' | b'-') => {
            at + 6 == b.len()
                && sep(at + 3, b':')
                && num(at + 1, 2).is_some_and(|h| h < 24)
                && num(at + 4, 2).is_some_and(|m| m < 60)
        }
        _ => false,
    }
}

/// `resource.Quantity`: "100Mi", "0.5", "2", "1e3"; YAML numbers are accepted as in Go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a quantity such as \"100Mi\" or 2")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Quantity, E> {
                if is_quantity(s) {
                    Ok(Quantity(s.to_string()))
                } else {
                    Err(E::custom(format!(
                        "invalid quantity {s:?} (like \"100Mi\", \"1Gi\", \"500m\", \"2\")"
                    )))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                if v.is_finite() {
                    Ok(Quantity(v.to_string()))
                } else {
                    Err(E::custom(format!("invalid quantity {v}")))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `resource.ParseQuantity`: `[+-]?digits[.digits](binarySI|decimalSI|[eE][+-]?digits)`.
pub fn is_quantity(s: &str) -> bool {
    let s = s.trim();
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let int_len = body.bytes().take_while(u8::is_ascii_digit).count();
    let mut rest = &body[int_len..];
    let mut digits = int_len;
    if let Some(after) = rest.strip_prefix('.') {
        let n = after.bytes().take_while(u8::is_ascii_digit).count();
        digits += n;
        rest = &after[n..];
    }
    if digits == 0 {
        return false;
    }
    const SUFFIXES: [&str; 16] = [
        "", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    if SUFFIXES.contains(&rest) {
        return true;
    }
    match rest.strip_prefix(['e', 'E']) {
        Some(exp) => {
            let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            !exp.is_empty() && exp.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// component-base `TimeOrMetaDuration` (logging `flushFrequency`): a duration string, or an
/// integer number of nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeOrMetaDuration {
    Text(Duration),
    Nanos(i64),
}

impl<'de> Deserialize<'de> for TimeOrMetaDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TimeOrMetaDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string or an integer number of nanoseconds")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                match parse_go_duration(s) {
                    Ok(nanos) => Ok(TimeOrMetaDuration::Text(Duration {
                        text: s.to_string(),
                        nanos,
                    })),
                    Err(why) => Err(E::custom(format!("invalid duration {s:?}: {why}"))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(TimeOrMetaDuration::Nanos(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(TimeOrMetaDuration::Nanos)
                    .map_err(|_| E::custom(format!("duration {v}ns overflows")))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// kubeadm.k8s.io/v1beta3
// ---------------------------------------------------------------------------------------------

/// `InitConfiguration`: `kubeadm init`-only settings of the first control-plane node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InitConfiguration {
    pub api_version: String,
    pub kind: String,
    pub bootstrap_tokens: Option<Vec<BootstrapToken>>,
    pub node_registration: Option<NodeRegistrationOptions>,
    #[serde(rename = "localAPIEndpoint")]
    pub local_api_endpoint: Option<ApiEndpoint>,
    pub certificate_key: Option<String>,
    pub skip_phases: Option<Vec<String>>,
    pub patches: Option<Patches>,
}

/// `ClusterConfiguration`: cluster-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterConfiguration {
    pub api_version: String,
    pub kind: String,
    pub etcd: Option<Etcd>,
    pub networking: Option<Networking>,
    pub kubernetes_version: Option<String>,
    pub control_plane_endpoint: Option<String>,
    pub api_server: Option<ApiServer>,
    pub controller_manager: Option<ControlPlaneComponent>,
    pub scheduler: Option<ControlPlaneComponent>,
    pub dns: Option<Dns>,
    pub certificates_dir: Option<String>,
    pub image_repository: Option<String>,
    pub feature_gates: Option<BTreeMap<String, bool>>,
    pub cluster_name: Option<String>,
}

/// `ControlPlaneComponent`: settings common to the controller manager and the scheduler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ControlPlaneComponent {
    pub extra_args: Option<StringMap>,
    pub extra_volumes: Option<Vec<HostPathMount>>,
}

/// `APIServer`: `ControlPlaneComponent` (inline) plus the API server's own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiServer {
    pub extra_args: Option<StringMap>,
    pub extra_volumes: Option<Vec<HostPathMount>>,
    #[serde(rename = "certSANs")]
    pub cert_sans: Option<Vec<String>>,
    pub timeout_for_control_plane: Option<Duration>,
}

/// `DNS`: only `ImageMeta` (inline: `imageRepository`, `imageTag`) in v1beta3; the `type`
/// field of v1beta2 is gone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Dns {
    pub image_repository: Option<String>,
    pub image_tag: Option<String>,
}

/// `APIEndpoint`: where this node's API server advertises and binds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiEndpoint {
    pub advertise_address: Option<String>,
    pub bind_port: Option<i32>,
}

/// `NodeRegistrationOptions`: how the node registers itself (init and join).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeRegistrationOptions {
    pub name: Option<String>,
    pub cri_socket: Option<String>,
    /// Absent: kubeadm taints control-plane nodes; `[]`: no taints.
    pub taints: Option<Vec<Taint>>,
    pub kubelet_extra_args: Option<StringMap>,
    pub ignore_preflight_errors: Option<Vec<String>>,
    pub image_pull_policy: Option<String>,
}

/// `Networking`: the cluster's subnets and DNS domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Networking {
    pub service_subnet: Option<String>,
    pub pod_subnet: Option<String>,
    pub dns_domain: Option<String>,
}

/// `Etcd`: `local` and `external` are mutually exclusive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Etcd {
    pub local: Option<LocalEtcd>,
    pub external: Option<ExternalEtcd>,
}

/// `LocalEtcd`: `ImageMeta` (inline) plus the stacked etcd's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalEtcd {
    pub image_repository: Option<String>,
    pub image_tag: Option<String>,
    pub data_dir: Option<String>,
    pub extra_args: Option<StringMap>,
    #[serde(rename = "serverCertSANs")]
    pub server_cert_sans: Option<Vec<String>>,
    #[serde(rename = "peerCertSANs")]
    pub peer_cert_sans: Option<Vec<String>>,
}

/// `ExternalEtcd`: an etcd cluster kubeadm does not run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExternalEtcd {
    pub endpoints: Vec<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

/// `JoinConfiguration`: settings of a node joining an existing cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JoinConfiguration {
    pub api_version: String,
    pub kind: String,
    pub node_registration: Option<NodeRegistrationOptions>,
    pub ca_cert_path: Option<String>,
    pub discovery: Discovery,
    /// Present only on a joining control-plane node.
    pub control_plane: Option<JoinControlPlane>,
    pub skip_phases: Option<Vec<String>>,
    pub patches: Option<Patches>,
}

/// `JoinControlPlane`: the control-plane instance deployed on a joining node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JoinControlPlane {
    #[serde(rename = "localAPIEndpoint")]
    pub local_api_endpoint: Option<ApiEndpoint>,
    pub certificate_key: Option<String>,
}

/// `Discovery`: how a joining node finds and trusts the cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Discovery {
    pub bootstrap_token: Option<BootstrapTokenDiscovery>,
    pub file: Option<FileDiscovery>,
    pub tls_bootstrap_token: Option<String>,
    pub timeout: Option<Duration>,
}

/// `BootstrapTokenDiscovery`: token-based discovery, pinned by `caCertHashes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BootstrapTokenDiscovery {
    pub token: String,
    pub api_server_endpoint: Option<String>,
    pub ca_cert_hashes: Option<Vec<String>>,
    #[serde(rename = "unsafeSkipCAVerification")]
    pub unsafe_skip_ca_verification: Option<bool>,
}

/// `FileDiscovery`: discovery from a kubeconfig file or URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileDiscovery {
    pub kube_config_path: String,
}

/// `HostPathMount`: an extra host volume of a control-plane component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostPathMount {
    pub name: String,
    pub host_path: String,
    pub mount_path: String,
    pub read_only: Option<bool>,
    pub path_type: Option<String>,
}

/// `Patches`: a directory of patches kubeadm applies to what it deploys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Patches {
    pub directory: Option<String>,
}

/// `BootstrapToken` (bootstraptoken/v1): a token `kubeadm init` creates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BootstrapToken {
    /// Absent: kubeadm generates one.
    pub token: Option<String>,
    pub description: Option<String>,
    pub ttl: Option<Duration>,
    pub expires: Option<Time>,
    pub usages: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
}

/// `Taint` (core/v1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: String,
    pub time_added: Option<Time>,
}

// ---------------------------------------------------------------------------------------------
// kubelet.config.k8s.io/v1beta1
// ---------------------------------------------------------------------------------------------

/// `KubeletConfiguration` as of Kubernetes v1.29, every field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeletConfiguration {
    pub api_version: String,
    pub kind: String,
    pub enable_server: Option<bool>,
    pub static_pod_path: Option<String>,
    pub sync_frequency: Option<Duration>,
    pub file_check_frequency: Option<Duration>,
    pub http_check_frequency: Option<Duration>,
    #[serde(rename = "staticPodURL")]
    pub static_pod_url: Option<String>,
    #[serde(rename = "staticPodURLHeader")]
    pub static_pod_url_header: Option<BTreeMap<String, Vec<String>>>,
    pub address: Option<String>,
    pub port: Option<i32>,
    pub read_only_port: Option<i32>,
    pub tls_cert_file: Option<String>,
    pub tls_private_key_file: Option<String>,
    pub tls_cipher_suites: Option<Vec<String>>,
    pub tls_min_version: Option<String>,
    pub rotate_certificates: Option<bool>,
    #[serde(rename = "serverTLSBootstrap")]
    pub server_tls_bootstrap: Option<bool>,
    pub authentication: Option<KubeletAuthentication>,
    pub authorization: Option<KubeletAuthorization>,
    #[serde(rename = "registryPullQPS")]
    pub registry_pull_qps: Option<i32>,
    pub registry_burst: Option<i32>,
    #[serde(rename = "eventRecordQPS")]
    pub event_record_qps: Option<i32>,
    pub event_burst: Option<i32>,
    pub enable_debugging_handlers: Option<bool>,
    pub enable_contention_profiling: Option<bool>,
    pub healthz_port: Option<i32>,
    pub healthz_bind_address: Option<String>,
    pub oom_score_adj: Option<i32>,
    pub cluster_domain: Option<String>,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Option<Vec<String>>,
    pub streaming_connection_idle_timeout: Option<Duration>,
    pub node_status_update_frequency: Option<Duration>,
    pub node_status_report_frequency: Option<Duration>,
    pub node_lease_duration_seconds: Option<i32>,
    #[serde(rename = "imageMinimumGCAge")]
    pub image_minimum_gc_age: Option<Duration>,
    #[serde(rename = "imageMaximumGCAge")]
    pub image_maximum_gc_age: Option<Duration>,
    #[serde(rename = "imageGCHighThresholdPercent")]
    pub image_gc_high_threshold_percent: Option<i32>,
    #[serde(rename = "imageGCLowThresholdPercent")]
    pub image_gc_low_threshold_percent: Option<i32>,
    pub volume_stats_agg_period: Option<Duration>,
    pub kubelet_cgroups: Option<String>,
    pub system_cgroups: Option<String>,
    pub cgroup_root: Option<String>,
    #[serde(rename = "cgroupsPerQOS")]
    pub cgroups_per_qos: Option<bool>,
    pub cgroup_driver: Option<String>,
    pub cpu_manager_policy: Option<String>,
    pub cpu_manager_policy_options: Option<StringMap>,
    pub cpu_manager_reconcile_period: Option<Duration>,
    pub memory_manager_policy: Option<String>,
    pub topology_manager_policy: Option<String>,
    pub topology_manager_scope: Option<String>,
    pub topology_manager_policy_options: Option<StringMap>,
    pub qos_reserved: Option<StringMap>,
    pub runtime_request_timeout: Option<Duration>,
    pub hairpin_mode: Option<String>,
    pub max_pods: Option<i32>,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    pub pod_pids_limit: Option<i64>,
    pub resolv_conf: Option<String>,
    pub run_once: Option<bool>,
    #[serde(rename = "cpuCFSQuota")]
    pub cpu_cfs_quota: Option<bool>,
    #[serde(rename = "cpuCFSQuotaPeriod")]
    pub cpu_cfs_quota_period: Option<Duration>,
    pub node_status_max_images: Option<i32>,
    pub max_open_files: Option<i64>,
    pub content_type: Option<String>,
    #[serde(rename = "kubeAPIQPS")]
    pub kube_api_qps: Option<i32>,
    #[serde(rename = "kubeAPIBurst")]
    pub kube_api_burst: Option<i32>,
    pub serialize_image_pulls: Option<bool>,
    pub max_parallel_image_pulls: Option<i32>,
    pub eviction_hard: Option<StringMap>,
    pub eviction_soft: Option<StringMap>,
    pub eviction_soft_grace_period: Option<StringMap>,
    pub eviction_pressure_transition_period: Option<Duration>,
    pub eviction_max_pod_grace_period: Option<i32>,
    pub eviction_minimum_reclaim: Option<StringMap>,
    pub pods_per_core: Option<i32>,
    pub enable_controller_attach_detach: Option<bool>,
    pub protect_kernel_defaults: Option<bool>,
    #[serde(rename = "makeIPTablesUtilChains")]
    pub make_iptables_util_chains: Option<bool>,
    pub iptables_masquerade_bit: Option<i32>,
    pub iptables_drop_bit: Option<i32>,
    pub feature_gates: Option<BTreeMap<String, bool>>,
    pub fail_swap_on: Option<bool>,
    pub memory_swap: Option<MemorySwapConfiguration>,
    pub container_log_max_size: Option<String>,
    pub container_log_max_files: Option<i32>,
    pub config_map_and_secret_change_detection_strategy: Option<String>,
    pub system_reserved: Option<StringMap>,
    pub kube_reserved: Option<StringMap>,
    #[serde(rename = "reservedSystemCPUs")]
    pub reserved_system_cpus: Option<String>,
    pub show_hidden_metrics_for_version: Option<String>,
    pub system_reserved_cgroup: Option<String>,
    pub kube_reserved_cgroup: Option<String>,
    pub enforce_node_allocatable: Option<Vec<String>>,
    pub allowed_unsafe_sysctls: Option<Vec<String>>,
    pub volume_plugin_dir: Option<String>,
    #[serde(rename = "providerID")]
    pub provider_id: Option<String>,
    pub kernel_memcg_notification: Option<bool>,
    pub logging: Option<LoggingConfiguration>,
    pub enable_system_log_handler: Option<bool>,
    pub enable_system_log_query: Option<bool>,
    pub shutdown_grace_period: Option<Duration>,
    pub shutdown_grace_period_critical_pods: Option<Duration>,
    pub shutdown_grace_period_by_pod_priority: Option<Vec<ShutdownGracePeriodByPodPriority>>,
    pub reserved_memory: Option<Vec<MemoryReservation>>,
    pub enable_profiling_handler: Option<bool>,
    pub enable_debug_flags_handler: Option<bool>,
    pub seccomp_default: Option<bool>,
    pub memory_throttling_factor: Option<f64>,
    pub register_with_taints: Option<Vec<Taint>>,
    pub register_node: Option<bool>,
    pub tracing: Option<TracingConfiguration>,
    pub local_storage_capacity_isolation: Option<bool>,
    pub container_runtime_endpoint: Option<String>,
    pub image_service_endpoint: Option<String>,
}

/// `KubeletAuthentication`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeletAuthentication {
    pub x509: Option<KubeletX509Authentication>,
    pub webhook: Option<KubeletWebhookAuthentication>,
    pub anonymous: Option<KubeletAnonymousAuthentication>,
}

/// `KubeletX509Authentication`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeletX509Authentication {
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<String>,
}

/// `KubeletWebhookAuthentication`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeletWebhookAuthentication {
    pub enabled: Option<bool>,
    #[serde(rename = "cacheTTL")]
    pub cache_ttl: Option<Duration>,
}

/// `KubeletAnonymousAuthentication`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeletAnonymousAuthentication {
    pub enabled: Option<bool>,
}

/// `KubeletAuthorization`: `mode` is `AlwaysAllow` or `Webhook`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeletAuthorization {
    pub mode: Option<String>,
    pub webhook: Option<KubeletWebhookAuthorization>,
}

/// `KubeletWebhookAuthorization`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeletWebhookAuthorization {
    #[serde(rename = "cacheAuthorizedTTL")]
    pub cache_authorized_ttl: Option<Duration>,
    #[serde(rename = "cacheUnauthorizedTTL")]
    pub cache_unauthorized_ttl: Option<Duration>,
}

/// `MemorySwapConfiguration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemorySwapConfiguration {
    pub swap_behavior: Option<String>,
}

/// `ShutdownGracePeriodByPodPriority`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ShutdownGracePeriodByPodPriority {
    pub priority: Option<i32>,
    pub shutdown_grace_period_seconds: Option<i64>,
}

/// `MemoryReservation`: memory reserved on one NUMA node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryReservation {
    pub numa_node: Option<i32>,
    pub limits: Option<BTreeMap<String, Quantity>>,
}

// ---------------------------------------------------------------------------------------------
// component-base (shared by the kubelet and kube-proxy)
// ---------------------------------------------------------------------------------------------

/// `LoggingConfiguration` (component-base logs/api/v1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoggingConfiguration {
    pub format: Option<String>,
    pub flush_frequency: Option<TimeOrMetaDuration>,
    pub verbosity: Option<u32>,
    pub vmodule: Option<Vec<VModuleItem>>,
    pub options: Option<FormatOptions>,
}

/// `VModuleItem`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VModuleItem {
    pub file_pattern: String,
    pub verbosity: Option<u32>,
}

/// `FormatOptions`: options of the `text` and `json` log formats.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FormatOptions {
    pub text: Option<OutputRoutingOptions>,
    pub json: Option<OutputRoutingOptions>,
}

/// `OutputRoutingOptions` (inline in `TextOptions` and `JSONOptions`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutputRoutingOptions {
    pub split_stream: Option<bool>,
    pub info_buffer_size: Option<Quantity>,
}

/// `TracingConfiguration` (component-base tracing/api/v1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TracingConfiguration {
    pub endpoint: Option<String>,
    pub sampling_rate_per_million: Option<i32>,
}

/// `ClientConnectionConfiguration` (component-base config/v1alpha1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientConnectionConfiguration {
    pub kubeconfig: Option<String>,
    pub accept_content_types: Option<String>,
    pub content_type: Option<String>,
    pub qps: Option<f32>,
    pub burst: Option<i32>,
}

// ---------------------------------------------------------------------------------------------
// kubeproxy.config.k8s.io/v1alpha1
// ---------------------------------------------------------------------------------------------

/// `KubeProxyConfiguration` as of Kubernetes v1.29, every field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeProxyConfiguration {
    pub api_version: String,
    pub kind: String,
    pub feature_gates: Option<BTreeMap<String, bool>>,
    pub client_connection: Option<ClientConnectionConfiguration>,
    pub logging: Option<LoggingConfiguration>,
    pub hostname_override: Option<String>,
    pub bind_address: Option<String>,
    pub healthz_bind_address: Option<String>,
    pub metrics_bind_address: Option<String>,
    pub bind_address_hard_fail: Option<bool>,
    pub enable_profiling: Option<bool>,
    pub show_hidden_metrics_for_version: Option<String>,
    pub mode: Option<String>,
    pub iptables: Option<KubeProxyIpTablesConfiguration>,
    pub ipvs: Option<KubeProxyIpvsConfiguration>,
    pub nftables: Option<KubeProxyNfTablesConfiguration>,
    pub winkernel: Option<KubeProxyWinkernelConfiguration>,
    pub detect_local_mode: Option<String>,
    pub detect_local: Option<DetectLocalConfiguration>,
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Option<String>,
    pub node_port_addresses: Option<Vec<String>>,
    pub oom_score_adj: Option<i32>,
    pub conntrack: Option<KubeProxyConntrackConfiguration>,
    pub config_sync_period: Option<Duration>,
    pub port_range: Option<String>,
}

/// `KubeProxyIPTablesConfiguration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeProxyIpTablesConfiguration {
    pub masquerade_bit: Option<i32>,
    pub masquerade_all: Option<bool>,
    pub localhost_node_ports: Option<bool>,
    pub sync_period: Option<Duration>,
    pub min_sync_period: Option<Duration>,
}

/// `KubeProxyIPVSConfiguration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeProxyIpvsConfiguration {
    pub sync_period: Option<Duration>,
    pub min_sync_period: Option<Duration>,
    pub scheduler: Option<String>,
    #[serde(rename = "excludeCIDRs")]
    pub exclude_cidrs: Option<Vec<String>>,
    #[serde(rename = "strictARP")]
    pub strict_arp: Option<bool>,
    pub tcp_timeout: Option<Duration>,
    pub tcp_fin_timeout: Option<Duration>,
    pub udp_timeout: Option<Duration>,
}

/// `KubeProxyNFTablesConfiguration` (alpha in v1.29).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeProxyNfTablesConfiguration {
    pub masquerade_bit: Option<i32>,
    pub masquerade_all: Option<bool>,
    pub sync_period: Option<Duration>,
    pub min_sync_period: Option<Duration>,
}

/// `KubeProxyWinkernelConfiguration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeProxyWinkernelConfiguration {
    pub network_name: Option<String>,
    pub source_vip: Option<String>,
    #[serde(rename = "enableDSR")]
    pub enable_dsr: Option<bool>,
    pub root_hns_endpoint_name: Option<String>,
    pub forward_health_check_vip: Option<bool>,
}

/// `DetectLocalConfiguration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DetectLocalConfiguration {
    pub bridge_interface: Option<String>,
    pub interface_name_prefix: Option<String>,
}

/// `KubeProxyConntrackConfiguration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeProxyConntrackConfiguration {
    pub max_per_core: Option<i32>,
    pub min: Option<i32>,
    pub tcp_established_timeout: Option<Duration>,
    pub tcp_close_wait_timeout: Option<Duration>,
    pub tcp_be_liberal: Option<bool>,
    pub udp_timeout: Option<Duration>,
    pub udp_stream_timeout: Option<Duration>,
}
