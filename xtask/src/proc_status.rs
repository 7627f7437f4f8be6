//! A process's memory as Linux reports it in `/proc/<pid>/status`: what replay reports of itself
//! and what the bench reads of the processes it measures.

/// `field` of `/proc/<pid>/status` (`/proc/self/status` without a pid) in KiB, for the fields
/// Linux gives in kB (`VmHWM`, the peak resident memory; `VmRSS`, the resident memory now);
/// `None` when the process is gone or the field is not there.
pub fn kib(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = pid.map_or_else(|| "/proc/self/status".to_owned(), |pid| format!("/proc/{pid}/status"));
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests;
