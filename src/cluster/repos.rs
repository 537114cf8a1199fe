//! The yum/dnf repositories of el nodes, by URL (`baseurl`), never a mirrorlist: CentOS 7 is end
//! of life, its mirrorlists answer nothing and its trees live on only in the CentOS vault (and
//! EPEL 7 in the Fedora archive). One list serves the `yum-mirror` layer's `.repo` file and
//! kickstart's `url`/`repo` lines, so the installer and the installed node use the same trees.
//!
//! `yum_mirror` is a mirror's root URL (`""`: the public trees) and `yum_mirror_layout` how it is
//! laid out:
//!
//! | layout | el7 (CentOS 7.9.2009) | EPEL 7 | el9 (Rocky 9) | EPEL 9 |
//! | --- | --- | --- | --- | --- |
//! | `vault`, `yum_mirror = ""` | `https://vault.centos.org/7.9.2009/` | `https://archives.fedoraproject.org/pub/archive/epel/7/` | `https://dl.rockylinux.org/pub/rocky/9/` | `https://dl.fedoraproject.org/pub/epel/9/` |
//! | `vault`, a root `M` | `M/centos/7.9.2009/` | `M/epel/7/` | `M/rocky/9/` | `M/epel/9/` |
//! | `aliyun` (seed 000/002; `M` defaults to `https://mirrors.aliyun.com`) | `M/centos-vault/7.9.2009/` | `M/epel-archive/7/` | `M/rockylinux/9/` | `M/epel/9/` |

use serde::{Deserialize, Serialize};

use super::{Cluster, Os};

/// How a yum mirror's root is laid out (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MirrorLayout {
    /// The upstream trees: the CentOS vault and the Fedora archive (el7), Rocky and Fedora (el9).
    #[default]
    Vault,
    /// mirrors.aliyun.com's names, the seeds' mirror: `centos-vault/`, `epel-archive/`, `rockylinux/`.
    Aliyun,
}

/// The CentOS 7 release whose trees the vault keeps (the last: 7.9.2009).
pub const CENTOS7_RELEASE: &str = "7.9.2009";

/// The public root of the aliyun layout.
pub const ALIYUN_ROOT: &str = "https://mirrors.aliyun.com";

/// One repository. `baseurl` carries `$basearch` (yum/dnf expand it on the node); kickstart
/// gets [`YumRepo::install_url`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct YumRepo {
    /// The `[id]` of the `.repo` file; kickstart's `repo --name`.
    pub id: &'static str,
    pub name: &'static str,
    pub baseurl: String,
    /// `file:///etc/pki/rpm-gpg/…` shipped by the distribution; `None`: gpgcheck=0 (EPEL: its key
    /// comes with epel-release, which a node using these repositories does not install).
    pub gpgkey: Option<&'static str>,
    /// Also a source of the installer (kickstart `url` for the first, `repo` for the others).
    pub install: bool,
    /// Kickstart's `repo --name`: the name the installer itself gives that tree (CentOS 7's
    /// built-in `updates`/`extras`, Rocky's `.treeinfo` variant `AppStream`), so the line
    /// replaces the installer's own entry instead of adding a second one.
    pub installer_name: &'static str,
}

impl YumRepo {
    /// The baseurl as the installer takes it: nodes are x86_64 (kernel-ml is built for it only).
    pub fn install_url(&self) -> String {
        self.baseurl.replace("$basearch", "x86_64")
    }
}

/// Where each tree lives for `layout` and a mirror root (`""`: the public trees).
struct Roots {
    centos7: String,
    epel7: String,
    rocky9: String,
    epel9: String,
}

fn roots(mirror: &str, layout: MirrorLayout) -> Roots {
    let m = mirror.trim_end_matches('/');
    match (layout, m) {
        (MirrorLayout::Vault, "") => Roots {
            centos7: format!("https://vault.centos.org/{CENTOS7_RELEASE}"),
            epel7: "https://archives.fedoraproject.org/pub/archive/epel/7".into(),
            rocky9: "https://dl.rockylinux.org/pub/rocky/9".into(),
            epel9: "https://dl.fedoraproject.org/pub/epel/9".into(),
        },
        (MirrorLayout::Vault, m) => Roots {
            centos7: format!("{m}/centos/{CENTOS7_RELEASE}"),
            epel7: format!("{m}/epel/7"),
            rocky9: format!("{m}/rocky/9"),
            epel9: format!("{m}/epel/9"),
        },
        (MirrorLayout::Aliyun, m) => {
            let m = if m.is_empty() { ALIYUN_ROOT } else { m };
            Roots {
                centos7: format!("{m}/centos-vault/{CENTOS7_RELEASE}"),
                epel7: format!("{m}/epel-archive/7"),
                rocky9: format!("{m}/rockylinux/9"),
                epel9: format!("{m}/epel/9"),
            }
        }
    }
}

/// The repositories of the cluster's OS, install source first; none for Debian.
pub fn yum_repos(cluster: &Cluster) -> Vec<YumRepo> {
    let r = roots(&cluster.yum_mirror, cluster.yum_mirror_layout);
    let centos_key = Some("file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7");
    let rocky_key = Some("file:///etc/pki/rpm-gpg/RPM-GPG-KEY-Rocky-9");
    let repo = |id, name, baseurl: String, gpgkey, installer_name: Option<&'static str>| YumRepo {
        id,
        name,
        baseurl,
        gpgkey,
        install: installer_name.is_some(),
        installer_name: installer_name.unwrap_or(id),
    };
    match cluster.os {
        Os::El7 => vec![
            repo(
                "base",
                "CentOS-7.9.2009 - Base",
                format!("{}/os/$basearch/", r.centos7),
                centos_key,
                Some("base"),
            ),
            repo(
                "updates",
                "CentOS-7.9.2009 - Updates",
                format!("{}/updates/$basearch/", r.centos7),
                centos_key,
                Some("updates"),
            ),
            repo(
                "extras",
                "CentOS-7.9.2009 - Extras",
                format!("{}/extras/$basearch/", r.centos7),
                centos_key,
                Some("extras"),
            ),
            repo(
                "epel",
                "Extra Packages for Enterprise Linux 7 (archive) - $basearch",
                format!("{}/$basearch/", r.epel7),
                None,
                None,
            ),
        ],
        Os::El9 => vec![
            repo(
                "baseos",
                "Rocky Linux 9 - BaseOS",
                format!("{}/BaseOS/$basearch/os/", r.rocky9),
                rocky_key,
                Some("BaseOS"),
            ),
            repo(
                "appstream",
                "Rocky Linux 9 - AppStream",
                format!("{}/AppStream/$basearch/os/", r.rocky9),
                rocky_key,
                Some("AppStream"),
            ),
            repo(
                "crb",
                "Rocky Linux 9 - CRB",
                format!("{}/CRB/$basearch/os/", r.rocky9),
                rocky_key,
                None,
            ),
            repo(
                "extras",
                "Rocky Linux 9 - Extras",
                format!("{}/extras/$basearch/os/", r.rocky9),
                rocky_key,
                None,
            ),
            repo(
                "epel",
                "Extra Packages for Enterprise Linux 9 - $basearch",
                format!("{}/Everything/$basearch/", r.epel9),
                None,
                None,
            ),
        ],
        Os::Debian12 => vec![],
    }
}
