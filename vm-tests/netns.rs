//! A private network namespace for VM tests whose host side is a real server (ezimg serve,
//! dnsmasq, the registry): a bridge with the ops node's address and one tap for the guest, no
//! other link, no route out. Shared by tests/vm_pxe.rs and tests/vm_ops.rs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A network namespace, deleted (with its bridge and tap) when dropped. Declare it before the
/// processes in it, so they are dropped (killed) first.
pub struct Netns(pub String);

impl Netns {
    /// `<prefix>-<random>` with `lo` up, `br0` holding `bridge_cidr`, and `tap0` on `br0`.
    pub fn new(prefix: &str, bridge_cidr: &str) -> Netns {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).expect("random");
        let name = format!(
            "{prefix}-{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        );
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        let n = ns.0.as_str();
        for args in [
            vec!["-n", n, "link", "set", "lo", "up"],
            vec!["-n", n, "link", "add", "br0", "type", "bridge"],
            vec!["-n", n, "addr", "add", bridge_cidr, "dev", "br0"],
            vec!["-n", n, "link", "set", "br0", "up"],
            vec!["-n", n, "tuntap", "add", "dev", "tap0", "mode", "tap"],
            vec!["-n", n, "link", "set", "tap0", "master", "br0"],
            vec!["-n", n, "link", "set", "tap0", "up"],
        ] {
            ip(&args);
        }
        ns
    }

    /// Another tap on `br0`, up (for a second or third guest).
    pub fn add_tap(&self, ifname: &str) {
        let n = self.0.as_str();
        for args in [
            vec!["-n", n, "tuntap", "add", "dev", ifname, "mode", "tap"],
            vec!["-n", n, "link", "set", ifname, "master", "br0"],
            vec!["-n", n, "link", "set", ifname, "up"],
        ] {
            ip(&args);
        }
    }

    /// `ip netns exec NS prog`: the child is `prog` itself (ip execs it).
    pub fn exec(&self, prog: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(prog);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// `ip ARGS`, which must succeed; its stdout.
pub fn ip(args: &[&str]) -> String {
    let o = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A process killed (and reaped) when dropped; its output goes to `log`.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Start `cmd` with stdout and stderr into `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let f = std::fs::File::create(&log).expect("log file");
        let err = f.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        Proc { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log has `needle` (the process announcing it is ready).
    pub fn wait_log(&mut self, needle: &str, what: &str) {
        let t = Instant::now();
        while !self.log().contains(needle) {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("{what} exited ({st}):\n{}", self.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{what}: no `{needle}` within 30s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
