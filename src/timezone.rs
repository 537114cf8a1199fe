//! Is a `timezone` one the nodes know? Checked at `check`/`build` time because a wrong name only
//! shows on the node (timedatectl refuses it, kickstart's `timezone` falls back to UTC, cloud-init
//! logs and carries on), long after the outputs were handed out.

use std::path::Path;

/// IANA names of tzdata 2025b, for machines without /usr/share/zoneinfo.
const SHIPPED: &str = include_str!("timezones.txt");

const ZONEINFO: &str = "/usr/share/zoneinfo";

/// `Ok` when `tz` names a zone; else why not.
pub fn check(tz: &str) -> Result<(), String> {
    check_in(Path::new(ZONEINFO), tz)
}

/// As `check`, with the zoneinfo folder given (tests use a missing one).
pub fn check_in(zoneinfo: &Path, tz: &str) -> Result<(), String> {
    // A name is a relative path under zoneinfo: refuse anything that could leave it.
    let well_formed = !tz.is_empty()
        && tz.len() <= 64
        && tz.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_+-".contains(&b))
        });
    if !well_formed {
        return Err("is not a time zone name such as Asia/Shanghai or UTC".into());
    }
    if zoneinfo.is_dir() {
        let f = zoneinfo.join(tz);
        let tzif = std::fs::read(&f).is_ok_and(|b| b.starts_with(b"TZif"));
        if tzif {
            return Ok(());
        }
        return Err(format!(
            "is not a time zone ({} has no such zone; see `timedatectl list-timezones`)",
            zoneinfo.display()
        ));
    }
    if shipped().any(|n| n == tz) {
        return Ok(());
    }
    Err(format!(
        "is not a time zone (not among tzdata 2025b's names; this machine has no {})",
        zoneinfo.display()
    ))
}

fn shipped() -> impl Iterator<Item = &'static str> {
    SHIPPED
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_against_the_shipped_list_without_zoneinfo() {
        let none = Path::new("/nonexistent/zoneinfo");
        assert_eq!(check_in(none, "Asia/Shanghai"), Ok(()));
        assert_eq!(check_in(none, "UTC"), Ok(()));
        assert!(check_in(none, "Mars/Olympus").is_err());
        assert!(check_in(none, "../../etc/passwd").is_err());
        assert!(check_in(none, "Asia/Shanghai ").is_err());
        assert!(shipped().count() > 500);
    }

    #[test]
    fn names_are_checked_against_the_hosts_zoneinfo() {
        if !Path::new(ZONEINFO).is_dir() {
            eprintln!("SKIP: this machine has no {ZONEINFO}");
            return;
        }
        assert_eq!(check("Asia/Shanghai"), Ok(()));
        assert_eq!(check("Europe/Berlin"), Ok(()));
        assert!(check("Mars/Olympus").is_err());
        // A file under zoneinfo that is not a zone.
        assert!(check("zone.tab").is_err());
        assert!(check("Asia").is_err());
    }
}
