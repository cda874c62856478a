//! Per-VM QEMU uids: each VM's QEMU runs as a uid of its own, taken from the range right
//! after the QEMU user (`kcore-qemu`, uid U: U+1 ..= U+count), kept in the VM's spec across
//! restarts and given back when the VM is deleted. Two QEMUs never share a uid, so one that
//! escapes its guest cannot signal, ptrace or read the memory of another.
//!
//! The uids have no passwd entries: a range is only safe if no user has (or will get) one
//! of them, so at start the node refuses a range that holds a user or that overlaps the
//! ranges `useradd` hands out (login.defs' `UID_MIN..UID_MAX`, `SYS_UID_MIN..SYS_UID_MAX`).

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::os::unix::fs::MetadataExt;

/// The uids VMs' QEMUs run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidRange {
    pub first: u32,
    pub count: u32,
}

impl UidRange {
    /// The `count` uids after the QEMU user's `base`.
    pub fn after(base: u32, count: u32) -> UidRange {
        UidRange {
            first: base.saturating_add(1),
            count,
        }
    }

    pub fn last(&self) -> u32 {
        self.first.saturating_add(self.count.saturating_sub(1))
    }

    pub fn contains(&self, uid: u32) -> bool {
        (self.first..=self.last()).contains(&uid)
    }

    /// Refuse a range that holds a user, or that `useradd` could give to a new user.
    /// `login_defs` and `passwd` are the texts of /etc/login.defs (empty: its defaults) and
    /// /etc/passwd.
    pub fn check(&self, user: &str, login_defs: &str, passwd: &str) -> Result<(), String> {
        if self.count == 0 || self.first.checked_add(self.count - 1).is_none() {
            return Err(format!(
                "the {} uids after {user} do not fit below 2^32",
                self.count
            ));
        }
        let fix = format!(
            "give {user} a uid with {} unused uids after it, outside the ranges useradd \
             allocates, e.g. `usermod -u 2100000000 {user}` (or pass --qemu-uids N)",
            self.count
        );
        for (what, range) in useradd_ranges(login_defs) {
            if self.first <= *range.end() && *range.start() <= self.last() {
                return Err(format!(
                    "per-VM QEMU uids {}-{} (after {user}) overlap {what} {}-{} from \
                     /etc/login.defs, which useradd gives to new users: {fix}",
                    self.first,
                    self.last(),
                    range.start(),
                    range.end()
                ));
            }
        }
        // A passwd entry in the range would own that VM's process.
        for (name, uid) in passwd_users(passwd) {
            if self.contains(uid) {
                return Err(format!(
                    "per-VM QEMU uid {uid} (after {user}) belongs to user {name}: {fix}"
                ));
            }
        }
        Ok(())
    }

    /// The lowest uid of the range not in `used` and for which `busy` is false (e.g. a
    /// process still runs as it).
    pub fn pick(&self, used: &HashSet<u32>, busy: impl Fn(u32) -> bool) -> Option<u32> {
        (self.first..=self.last()).find(|u| !used.contains(u) && !busy(*u))
    }
}

/// The uid ranges useradd allocates from, per /etc/login.defs (Debian's defaults when a key
/// is missing).
fn useradd_ranges(login_defs: &str) -> Vec<(&'static str, RangeInclusive<u32>)> {
    let get = |key: &str, default: u32| {
        login_defs
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(key)).then(|| it.next()?.parse::<u32>().ok())?
            })
            .next_back()
            .unwrap_or(default)
    };
    vec![
        (
            "UID_MIN..UID_MAX",
            get("UID_MIN", 1000)..=get("UID_MAX", 60000),
        ),
        (
            "SYS_UID_MIN..SYS_UID_MAX",
            get("SYS_UID_MIN", 100)..=get("SYS_UID_MAX", 999),
        ),
    ]
}

fn passwd_users(passwd: &str) -> Vec<(String, u32)> {
    passwd
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?.to_string();
            let uid = f.nth(1)?.parse().ok()?;
            Some((name, uid))
        })
        .collect()
}

/// True if a live process runs as `uid` (a QEMU of a VM that was deleted while its
/// process lingered must not share its uid with a new VM).
pub fn has_process(uid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.parse::<u32>().is_ok())
            && std::fs::metadata(e.path()).is_ok_and(|m| m.uid() == uid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_lowest_free_uid() {
        let r = UidRange::after(2_100_000_000, 4);
        assert_eq!(r.first, 2_100_000_001);
        assert_eq!(r.last(), 2_100_000_004);
        let used: HashSet<u32> = [2_100_000_001].into();
        assert_eq!(r.pick(&used, |_| false), Some(2_100_000_002));
        assert_eq!(r.pick(&used, |u| u == 2_100_000_002), Some(2_100_000_003));
        let all: HashSet<u32> = (r.first..=r.last()).collect();
        assert_eq!(r.pick(&all, |_| false), None);
    }

    #[test]
    fn ranges_useradd_allocates_from_are_refused() {
        // kcore-qemu as a system user (uid 999): its successors are where users go.
        let e = UidRange::after(999, 10)
            .check("kcore-qemu", "", "")
            .expect_err("overlaps UID_MIN");
        assert!(e.contains("UID_MIN..UID_MAX 1000-60000"), "{e}");
        assert!(e.contains("usermod -u"), "{e}");
        let e = UidRange::after(500, 10)
            .check("kcore-qemu", "", "")
            .expect_err("overlaps SYS_UID");
        assert!(e.contains("SYS_UID_MIN"), "{e}");
        // login.defs moves the ranges.
        let defs = "# comment\nUID_MIN 5000\nUID_MAX 6000\nSYS_UID_MIN 100\nSYS_UID_MAX 499\n";
        UidRange::after(999, 10)
            .check("kcore-qemu", defs, "")
            .expect("free under these login.defs");
        let passwd = "root:x:0:0:root:/root:/bin/bash\nkcore-qemu:x:2100000000:994::/:/x\n";
        UidRange::after(2_100_000_000, 4096)
            .check("kcore-qemu", "", passwd)
            .expect("high range is free");
        // A user inside the range owns that uid.
        let e = UidRange::after(2_100_000_000, 4096)
            .check(
                "kcore-qemu",
                "",
                &format!("{passwd}bob:x:2100000007:1::/:/x\n"),
            )
            .expect_err("bob is in the range");
        assert!(
            e.contains("2100000007 (after kcore-qemu) belongs to user bob"),
            "{e}"
        );
        assert!(
            UidRange::after(u32::MAX - 2, 10)
                .check("kcore-qemu", "", "")
                .is_err()
        );
    }

    #[test]
    fn root_has_processes_and_a_fresh_uid_has_none() {
        assert!(has_process(nix::unistd::geteuid().as_raw()));
        assert!(!has_process(2_100_999_999));
    }
}
