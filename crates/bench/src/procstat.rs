//! What a process has cost so far, from `/proc`: CPU seconds (utime + stime of `/proc/<pid>/stat`, every
//! thread of the process together) and peak RSS (VmHWM of `/proc/<pid>/status`). Read just before a relay is
//! stopped, and for its walsender (a Postgres backend, readable by any user).

use crate::relay::vm_hwm_bytes;
use std::sync::OnceLock;

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on Linux when that fails).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// utime + stime in clock ticks from a `/proc/<pid>/stat` line (the name in parentheses may hold spaces).
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the name start at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds (user + system) the process has used so far; `None` when it is gone.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(cpu_ticks(&stat)? as f64 / clock_ticks())
}

/// Peak RSS (VmHWM) in bytes; `None` when the process is gone.
pub fn peak_rss(pid: u32) -> Option<u64> {
    vm_hwm_bytes(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime() {
        let stat = "4242 (java (Connect)) S 1 4242 4242 0 -1 4194304 1000 0 0 0 1234 567 0 0 20 0 50 0 \
                    100 2000000 3000 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(1234 + 567));
        assert_eq!(cpu_ticks("1 (x) S 1 2"), None);
        assert!(cpu_secs(std::process::id()).is_some());
        assert!(peak_rss(std::process::id()).is_some_and(|b| b > 0));
    }
}
