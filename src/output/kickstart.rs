//! Kickstart files (el7, el9) rendered from `kickstart/<os>.ks.j2`.
//!
//! The template holds the installer commands; Rust computes every value and the whole `%post`
//! body, so quoting and the bundle/secret/bootstrap contract live in one place (shared with
//! cloud-init). `%post` runs in the installed system as a chroot (no `--nochroot`): the
//! bootstrap's `apply` sees it is not live and leaves service starts to the first boot.
//!
//! A ks.cfg holds its node's secrets (and, without `--bundle-url`, the bundle): serve it to that
//! node only. Anaconda also keeps copies of the kickstart under `/root` (`anaconda-ks.cfg`,
//! `original-ks.cfg`, mode 0600) on the installed node.
//!
//! Template context:
//!
//! | name | what |
//! | --- | --- |
//! | `os` | `el7` or `el9` |
//! | `cluster` | cluster name |
//! | `hostname`, `role` | the node |
//! | `network.{device,ip,netmask,gateway,nameservers}` | `device` is the MAC if given, else `cluster.network.interface`; `nameservers` comma-joined, maybe empty |
//! | `timezone`, `ntp_servers` | from the cluster file |
//! | `system_drive` | the one disk the installer sees, partitions and wipes (`sda`): the node's `system` disk, else `/dev/sda` |
//! | `other_drives` | the node's other declared disks with their purpose (`sdb (etcd)`), for a comment |
//! | `repos` | `{name, baseurl}`: the install source first (`url`), then the other `repo` lines; empty when the boot line gives the source |
//! | `packages` | `%packages` lines |
//! | `bundle.{file_name,sha256,url}` | the role bundle (`url` empty when embedded) |
//! | `post_log` | where `%post --log` writes |
//! | `post` | the `%post` body |
//! | `install_media` | the installer ISO carries the packages (`--format iso`): `cdrom`, and `repos` is empty |
//! | `media_post`, `media_post_log` | `--format iso`: the `%post --nochroot` body that copies the bundle and artifacts from the install media into the new system (empty otherwise), and its log |

use anyhow::{Context, Result};
use serde_json::json;

use super::NodeInput;
use crate::bundle::{NODE_BOOTSTRAP, NODE_SECRETS_DIR, NODE_STATE_DIR, bootstrap_script};
use crate::cluster::Os;
use crate::data::DataTree;
use crate::render;

/// Where the `%post` log lands on the installed system (no secret is ever echoed into it).
pub const POST_LOG: &str = "/root/ezimg-ks-post.log";

/// What `%packages` installs: the minimum to boot and run the bootstrap (curl, tar, gzip,
/// sha256sum are in `@core`); the bundle's layers install everything else, identically on
/// every delivery path.
pub const PACKAGES: [&str; 4] = ["@core", "curl", "tar", "gzip"];

const BUNDLE_EOF: &str = "EZIMG_BUNDLE_B64";
const BOOTSTRAP_EOF: &str = "EZIMG_BOOTSTRAP_EOF";

/// The template path for `os`, or why there is none.
pub fn template_path(os: Os) -> Result<&'static str> {
    match os {
        Os::El7 => Ok("kickstart/el7.ks.j2"),
        Os::El9 => Ok("kickstart/el9.ks.j2"),
        Os::Debian12 => anyhow::bail!(
            "kickstart is for el targets (el7, el9), not {os}: use the cloud-init seed \
             (--format cloud-init)"
        ),
    }
}

/// Where the media `%post --nochroot` logs, as the installer sees the new system.
pub const MEDIA_POST_LOG: &str = "/mnt/sysimage/root/ezimg-ks-media.log";

/// A kickstart that goes on a bootable installer ISO (`--format iso`): the bundle and artifacts
/// are on the same medium, under `/<MEDIA_DIR>/`.
#[derive(Debug, Clone)]
pub struct Media {
    /// The ISO's volume id (unescaped), to find and mount it when the installer has not.
    pub label: String,
    /// The ISO carries the OS packages: install from it, no network.
    pub install_from_media: bool,
}

/// Render the node's `ks.cfg`.
pub fn render(tree: &DataTree, input: &NodeInput) -> Result<String> {
    render_with(tree, input, None)
}

/// Render the node's `ks.cfg` for an installer ISO (see [`Media`]).
pub fn render_for_media(tree: &DataTree, input: &NodeInput, media: &Media) -> Result<String> {
    render_with(tree, input, Some(media))
}

fn render_with(tree: &DataTree, input: &NodeInput, media: Option<&Media>) -> Result<String> {
    let os = input.cluster.os;
    let path = template_path(os)?;
    let ctx = context_with(input, media)
        .with_context(|| format!("kickstart for node {}", input.node.hostname))?;
    render::render_file(
        tree,
        path,
        &minijinja::Value::from(minijinja::value::Serde(ctx)),
    )
    .with_context(|| format!("rendering kickstart for node {}", input.node.hostname))
}

/// The template context (see the module doc).
pub fn context(input: &NodeInput) -> Result<serde_json::Value> {
    context_with(input, None)
}

fn context_with(input: &NodeInput, media: Option<&Media>) -> Result<serde_json::Value> {
    let install_media = media.is_some_and(|m| m.install_from_media);
    let c = input.cluster;
    let node = input.node;
    let net = &c.network;
    let device = match &node.mac {
        Some(mac) => mac.to_ascii_lowercase(),
        None => net.interface.clone(),
    };
    // Every value goes on a kickstart command line, split like a shell would: plain words only.
    let word = |what: &str, v: &str| -> Result<String> {
        if !v.is_empty()
            && v.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "._-:/+@".contains(ch))
        {
            Ok(v.to_string())
        } else {
            anyhow::bail!("{what} {v:?} cannot go on a kickstart line (letters, digits, ._-:/+@)")
        }
    };
    let ntp: Vec<String> = c
        .ntp_servers
        .iter()
        .map(|s| word("ntp server", s))
        .collect::<Result<_>>()?;
    // The install source and the trees the installer also uses: baseurls, no mirrorlist.
    // From the ISO's own packages: no repository line (it would need the network).
    let repos: Vec<serde_json::Value> = crate::cluster::yum_repos(c)
        .iter()
        .filter(|r| r.install && !install_media)
        .map(|r| {
            Ok(json!({"name": r.installer_name,
                      "baseurl": word("repository URL", &r.install_url())?}))
        })
        .collect::<Result<_>>()?;
    // Anaconda names disks without /dev/ (`sda`, `disk/by-id/...`).
    let system_drive = word(
        "system disk",
        node.system_disk().trim_start_matches("/dev/"),
    )?;
    let other_drives: Vec<String> = node
        .disks
        .iter()
        .filter(|d| d.purpose != crate::cluster::DiskPurpose::System)
        .map(|d| word("disk", &d.device).map(|dev| format!("{dev} ({})", d.purpose.as_str())))
        .collect::<Result<_>>()?;
    Ok(json!({
        "os": c.os,
        "cluster": word("cluster name", &c.name)?,
        "hostname": word("hostname", &node.hostname)?,
        "role": word("role", &node.role)?,
        "network": {
            "device": word("network device", &device)?,
            "ip": node.ip.to_string(),
            "netmask": net.cidr.netmask().to_string(),
            "gateway": net.gateway.to_string(),
            "nameservers": net.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","),
        },
        "timezone": word("timezone", &c.timezone)?,
        "ntp_servers": ntp,
        "repos": repos,
        "system_drive": system_drive,
        "other_drives": other_drives.join(", "),
        "packages": PACKAGES,
        "bundle": {
            "file_name": input.bundle.file_name,
            "sha256": input.bundle.sha256,
            "url": input.bundle.url.clone().unwrap_or_default(),
        },
        "post_log": POST_LOG,
        "post": post_body_with(input, media)?,
        "install_media": install_media,
        "media_post": media.map(|m| media_post_body(input, m)).transpose()?.unwrap_or_default(),
        "media_post_log": MEDIA_POST_LOG,
        "root_password_hash": root_password_hash(input)?,
        "ssh_keys": if c.os == crate::cluster::Os::El7 { vec![] } else { sshkey_lines(input)? },
    }))
}

/// Keys for el9's `sshkey --username=root "KEY"` lines (a `"` would end the quoted key).
fn sshkey_lines(input: &NodeInput) -> Result<Vec<String>> {
    let keys = ssh_keys(input)?;
    if let Some(k) = keys.iter().find(|k| k.contains('"')) {
        anyhow::bail!(
            "ssh key {:?}…: a `\"` cannot stand in a kickstart sshkey line",
            &k[..k.len().min(20)]
        );
    }
    Ok(keys)
}

/// Root's password hash for `rootpw --iscrypted`, or "" (locked).
fn root_password_hash(input: &NodeInput) -> Result<String> {
    match &input.cluster.access.root_password_hash {
        Some(h) if crate::cluster::is_crypt_hash(h) => Ok(h.clone()),
        Some(_) => anyhow::bail!("access.root_password_hash is not a crypt(3) hash"),
        None => Ok(String::new()),
    }
}

/// Secret names become file names under `/etc/ezimg/secrets`.
pub fn check_secret_name(name: &str) -> Result<()> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(())
    } else {
        anyhow::bail!("secret name {name:?}: only a-z, 0-9 and _ are allowed")
    }
}

/// Root's SSH keys: the cluster file's `[access] ssh_authorized_keys`, then the role parameter
/// `ssh_authorized_keys` (a list of strings) if the role has one.
pub fn ssh_keys(input: &NodeInput) -> Result<Vec<String>> {
    let mut keys = input.cluster.access.ssh_authorized_keys.clone();
    if let Some(v) = input.plan.params.get("ssh_authorized_keys") {
        let arr = v
            .as_array()
            .context("role parameter ssh_authorized_keys must be a list of strings")?;
        for k in arr {
            let k = k
                .as_str()
                .context("role parameter ssh_authorized_keys must be a list of strings")?;
            if !keys.iter().any(|have| have == k) {
                keys.push(k.to_string());
            }
        }
    }
    for k in &keys {
        if k.contains(['\n', '\r']) {
            anyhow::bail!("an ssh_authorized_keys entry spans several lines");
        }
    }
    Ok(keys)
}

/// The `%post --nochroot` body of an ISO's kickstart: the bundle and the artifacts from the
/// install media into the new system's `/var/lib/ezimg`, where the bootstrap looks first. The
/// installer mounts the medium it booted from at `/run/install/repo` (el7; el9 may use
/// `/run/install/sources/mount-0000-cdrom`); failing those, it is mounted by its label.
pub fn media_post_body(input: &NodeInput, media: &Media) -> Result<String> {
    let q = crate::bundle::shell_quote;
    let b = input.bundle;
    if b.file_name.contains(['/', '\n']) || b.file_name.is_empty() {
        anyhow::bail!("bundle file name {:?} is not a plain name", b.file_name);
    }
    if media.label.chars().any(char::is_control) {
        anyhow::bail!(
            "the ISO's volume id {:?} holds a control character",
            media.label
        );
    }
    let dir = super::installer_iso::MEDIA_DIR;
    let mut s = String::new();
    s.push_str(&format!(
        "# ezimg: bundle {} and the node's artifacts from the install media (volume id {})\n",
        b.file_name,
        q(&media.label)
    ));
    s.push_str("set -euo pipefail\n");
    s.push_str(&format!(
        "label={}\nbundle={}\nsys=/mnt/sysimage\n",
        q(&media.label),
        q(&b.file_name)
    ));
    s.push_str(&format!(
        r#"src=
for d in /run/install/repo /run/install/sources/mount-0000-cdrom /run/install/source /mnt/install/repo; do
    if [ -f "$d/{dir}/$bundle" ]; then src=$d; break; fi
done
mounted=
if [ -z "$src" ]; then
    dev=$(blkid -L "$label" || true)
    if [ -z "$dev" ]; then
        echo "ezimg: the install media (volume id $label) is not attached" >&2
        exit 1
    fi
    src=$(mktemp -d /tmp/ezimg-media.XXXXXX)
    mount -o ro "$dev" "$src"
    mounted=$src
fi
install -d -m 0755 "$sys{NODE_STATE_DIR}"
cp -f "$src/{dir}/$bundle" "$sys{NODE_STATE_DIR}/$bundle"
if [ -d "$src/{dir}/artifacts" ]; then
    install -d -m 0755 "$sys{NODE_STATE_DIR}/artifacts"
    cp -R "$src/{dir}/artifacts/." "$sys{NODE_STATE_DIR}/artifacts/"
fi
if [ -n "$mounted" ]; then umount "$mounted" && rmdir "$mounted"; fi
"#
    ));
    Ok(s)
}

/// The `%post` body: bundle, secrets and bootstrap as the bundle contract says, then run it.
/// Nothing here echoes a secret, and there is no `set -x`, so the `--log` holds none.
pub fn post_body(input: &NodeInput) -> Result<String> {
    post_body_with(input, None)
}

fn post_body_with(input: &NodeInput, media: Option<&Media>) -> Result<String> {
    use base64::Engine as _;
    let b = input.bundle;
    let q = crate::bundle::shell_quote;
    let mut s = String::new();
    s.push_str(&format!(
        "# ezimg: node {} (role {}), bundle {} sha256 {}{}\n",
        input.node.hostname,
        input.node.role,
        b.file_name,
        b.sha256,
        match (&b.url, media) {
            (_, Some(_)) => " copied from the install media".to_string(),
            (Some(u), None) => format!(" fetched from {u}"),
            (None, None) => " embedded below".to_string(),
        },
    ));
    s.push_str("set -euo pipefail\n");
    s.push_str(&format!(
        "install -d -m 0755 {NODE_STATE_DIR}\ninstall -d -m 0700 {NODE_SECRETS_DIR}\n"
    ));
    if b.url.is_none() && media.is_none() {
        if b.file_name.contains(['/', '\'', '\n']) || b.file_name.is_empty() {
            anyhow::bail!("bundle file name {:?} is not a plain name", b.file_name);
        }
        s.push_str(&format!(
            "base64 -d >{} <<'{BUNDLE_EOF}'\n",
            q(&format!("{NODE_STATE_DIR}/{}", b.file_name))
        ));
        let enc = base64::engine::general_purpose::STANDARD.encode(&b.bytes);
        // Short lines keep the file friendly to editors and to anaconda's line reader.
        for chunk in enc.as_bytes().chunks(76) {
            s.push_str(&String::from_utf8_lossy(chunk));
            s.push('\n');
        }
        s.push_str(BUNDLE_EOF);
        s.push('\n');
    }
    if !input.secrets.is_empty() {
        // umask first: the file is never readable by others, not even for an instant.
        s.push_str("umask 077\n");
        for (name, value) in &input.secrets {
            check_secret_name(name)?;
            let path = format!("{NODE_SECRETS_DIR}/{name}");
            s.push_str(&format!(
                "printf '%s' {} >{path}\nchown root:root {path}\nchmod 0600 {path}\n",
                q(value)
            ));
        }
        s.push_str("umask 022\n");
    }
    // el9 installs them with `sshkey`; el7's anaconda has no such command.
    let keys = if input.cluster.os == crate::cluster::Os::El7 {
        ssh_keys(input)?
    } else {
        vec![]
    };
    if !keys.is_empty() {
        s.push_str("install -d -m 0700 /root/.ssh\n");
        for k in &keys {
            s.push_str(&format!(
                "printf '%s\\n' {} >>/root/.ssh/authorized_keys\n",
                q(k)
            ));
        }
        s.push_str("chmod 0600 /root/.ssh/authorized_keys\n");
    }
    let boot = bootstrap_script(input);
    if boot.lines().any(|l| l == BOOTSTRAP_EOF) {
        anyhow::bail!("the bootstrap script contains the heredoc delimiter {BOOTSTRAP_EOF}");
    }
    s.push_str(&format!("cat >{NODE_BOOTSTRAP} <<'{BOOTSTRAP_EOF}'\n"));
    s.push_str(&boot);
    if !boot.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(&format!("{BOOTSTRAP_EOF}\nchmod 0700 {NODE_BOOTSTRAP}\n"));
    s.push_str(&format!("bash {NODE_BOOTSTRAP}\n"));
    // Anaconda ends a section at a line starting with '%' (%end, or a new section).
    // The line is not quoted in the error: it may hold a secret.
    if let Some(n) = s.lines().position(|l| l.trim_start().starts_with('%')) {
        anyhow::bail!(
            "line {} of the %post body (a secret value or the bootstrap) starts with '%', \
             which would end the section early",
            n + 1
        );
    }
    Ok(s)
}
