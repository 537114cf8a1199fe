//! The diskless guest that PXE-boots in `vm_pxe` (from `ezimg serve` on the host side) and in
//! `vm_ops` (from the ops guest's serve and dnsmasq): the el7 site it installs from, and what
//! it runs once its "installer" (the cached debian12 base's kernel and initrd) is up.

#![allow(dead_code)]

/// The default cluster (el7) with a `mac` on `node` (at `ip`), so the PXE tree has its entry.
pub fn site_cluster(node: &str, ip: &str, mac: &str) -> String {
    let mut t = crate::support::default_cluster();
    let at = t
        .find(&format!("hostname = \"{node}\"\n"))
        .expect("node in the default cluster");
    let ip_line = format!("ip = \"{ip}\"\n");
    let rel = t[at..].find(&ip_line).expect("ip line") + at + ip_line.len();
    t.insert_str(rel, &format!("mac = \"{mac}\"\n"));
    t
}

/// What the guest runs (bash, passed base64 on the kernel command line: no quoting to
/// survive). It brings its NIC up on the address its boot line names, asks serve at
/// `server:port` for its own (`node`) and another node's (`other`) kickstart as Anaconda would
/// (MAC header), reports `PXE mac=… own=… other=… cmdline=…` on virtio-serial, powers off.
pub fn report_script(server: &str, port: u16, node: &str, other: &str) -> String {
    format!(
        r#"udevadm settle
n=$(ls /sys/class/net | grep -v '^lo$' | head -n1)
mac=$(cat /sys/class/net/$n/address)
addr=$(sed -n 's/.* ip=\([0-9.]*\):.*/\1/p' /proc/cmdline)
ip link set "$n" up
ip addr add "$addr/24" dev "$n"
ks() {{
  exec 3<>/dev/tcp/{server}/{port} || {{ echo none; return; }}
  printf 'GET /ks/%s HTTP/1.0\r\nX-RHN-Provisioning-MAC-0: %s %s\r\n\r\n' "$1" "$n" "$mac" >&3
  head -n1 <&3 | cut -d' ' -f2
  exec 3<&-
}}
own=$(ks {node}); other=$(ks {other})
echo "PXE mac=$mac own=$own other=$other cmdline=$(cat /proc/cmdline)" >/dev/virtio-ports/ezimg.0
systemctl poweroff
"#
    )
}

/// The kernel arguments that make the base's kernel and initrd boot its root (an overlay disk)
/// with a serial console and run [`report_script`].
pub fn append(root_uuid: &str, script: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(script);
    format!(
        "root=UUID={root_uuid} ro console=ttyS0,115200 \
         systemd.run=\"bash -c 'echo {b64} | base64 -d | bash'\""
    )
}
