//! Readings of a process from the kernel: CPU time (all threads, exited ones included, in
//! nanoseconds), peak resident memory, and which process listens on a TCP port (moto's, to
//! charge it its share of a run).

use std::io;
use std::time::Duration;

fn clock_time(clock: libc::clockid_t) -> io::Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// CPU time (user + system) consumed so far by the calling thread.
pub fn thread_cpu() -> Duration {
    clock_time(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or_default()
}

/// CPU time (user + system) consumed so far by this process.
pub fn self_cpu() -> Duration {
    clock_time(libc::CLOCK_PROCESS_CPUTIME_ID).unwrap_or_default()
}

/// CPU time (user + system) consumed so far by process `pid`.
pub fn cpu(pid: u32) -> io::Result<Duration> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid out-pointer; the call only reads `pid`.
    let rc = unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    clock_time(clock)
}

fn field_kib(status: &str, pid: u32, field: &str) -> io::Result<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("no {field} in /proc/{pid}/status")))
}

fn status_kib(pid: u32, field: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    field_kib(&status, pid, field)
}

/// Peak resident set size (`VmHWM`) of `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> io::Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// Current resident set size (`VmRSS`) of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// The process with a socket listening on 127.0.0.1/0.0.0.0 `port` (IPv4), if it is visible.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port_hex = format!("{port:04X}");
    let inode = tcp.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let local = cols.get(1)?;
        let state = cols.get(3)?;
        // 0A = LISTEN
        (local.ends_with(&format!(":{port_hex}")) && *state == "0A")
            .then(|| cols.get(9).map(|s| s.to_string()))?
    })?;
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == target) {
                return Some(pid);
            }
        }
    }
    None
}

/// The port of an `http://host:port` URL.
pub fn port_of(url: &str) -> Option<u16> {
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_found_listening_and_its_cpu_and_memory_are_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(pid_listening_on(port), Some(std::process::id()));
        let before = cpu(std::process::id()).unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(cpu(std::process::id()).unwrap() > before);
        assert!(self_cpu() > Duration::ZERO);
        // One reading: other test threads may allocate between two.
        let me = std::process::id();
        let status = std::fs::read_to_string(format!("/proc/{me}/status")).unwrap();
        let peak = field_kib(&status, me, "VmHWM:").unwrap();
        let current = field_kib(&status, me, "VmRSS:").unwrap();
        assert!(peak >= current && current > 0, "{peak} {current}");
        assert!(peak_rss_kib(std::process::id()).unwrap() > 0);
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        assert_eq!(port_of("http://127.0.0.1:5000"), Some(5000));
    }
}
