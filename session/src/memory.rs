//! The process's own memory, for `--stats`: what a benchmark or a test bounds.

/// The peak resident set of this process so far, in bytes: Linux's `VmHWM` (every party
/// of `qmpc run`, and the dealer, are threads of one process, so it is theirs together).
/// `None` where `/proc/self/status` has no such line (another system).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

/// [`peak_rss_bytes`] as a JSON value: the number, or `null`.
pub fn peak_rss_json() -> String {
    peak_rss_bytes().map_or("null".to_string(), |b| b.to_string())
}

/// `VmHWM:    123456 kB` in `/proc/self/status`, in bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut fields = line["VmHWM:".len()..].split_whitespace();
    let kb: u64 = fields.next()?.parse().ok()?;
    (fields.next() == Some("kB")).then_some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_high_water_mark_is_read_in_bytes() {
        let status = "Name:\tqmpc\nVmPeak:\t  900 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(1234 * 1024));
        assert_eq!(parse_vm_hwm("VmRSS:\t 1000 kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t 12 MB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_peak_at_least_as_large_as_what_it_touched() {
        let v = vec![1u8; 64 << 20];
        let touched: u64 = v.iter().map(|&b| u64::from(b)).sum();
        let peak = peak_rss_bytes().expect("Linux has VmHWM");
        assert!(peak >= touched, "{peak} < {touched}");
    }
}
