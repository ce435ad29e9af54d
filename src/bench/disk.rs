//! What the disk can take, asked of the kernel before a round writes gigabytes: the page
//! cache's dirty limit (past it, writers wait for the disk, so a sustained measurement has to
//! write more than that), the free space under the log directory (a round that cannot fit is
//! refused before it starts), and the flush that puts a directory's files on the disk.
//!
//! The parsers are pure, so the arithmetic is tested on made-up /proc contents.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::config::Formats;

/// Log bytes per relayed byte for each format, rounded up: a hex dump line is 79 bytes per 16
/// (4.94) plus each chunk's header line, a binary log is the bytes themselves, a capture adds
/// its packet and block headers (about 100 bytes per 64 KiB).
fn per_byte(formats: &Formats) -> f64 {
    let mut f = 0.0;
    if formats.hex {
        f += 4.96;
    }
    if formats.binary {
        f += 1.0;
    }
    if formats.pcap {
        f += 1.01;
    }
    f
}

/// About how many bytes of logs relaying `bytes` writes (a few percent over, for the index and
/// short chunks), or 0 when nothing is recorded.
pub fn expected_log_bytes(formats: &Formats, bytes: u64) -> u64 {
    let f = per_byte(formats);
    if f == 0.0 {
        return 0;
    }
    // f64 to u64 saturates: a size near the 1 PiB limit of --bytes cannot wrap.
    ((bytes as f64) * f * 1.03) as u64 + (1 << 20)
}

/// The download that writes about `log_bytes` of logs: the inverse of
/// [`expected_log_bytes`], in whole MiB.
pub fn bytes_for_logs(formats: &Formats, log_bytes: u64) -> u64 {
    let f = per_byte(formats);
    if f == 0.0 {
        return 0;
    }
    let bytes = (log_bytes as f64 / f) as u64;
    bytes.div_ceil(1 << 20).saturating_mul(1 << 20)
}

/// The kernel's dirty limit: how many bytes of written data may wait in the page cache before
/// writers are made to wait for the disk. Read from /proc/sys/vm and /proc/meminfo.
pub fn dirty_limit() -> io::Result<u64> {
    let read = |name: &str| std::fs::read_to_string(format!("/proc/sys/vm/{name}"));
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    dirty_limit_from(&read("dirty_bytes")?, &read("dirty_ratio")?, &meminfo)
        .ok_or_else(|| io::Error::other("/proc/sys/vm/dirty_* or /proc/meminfo unreadable"))
}

/// The limit as the kernel computes it: `dirty_bytes` when set, else `dirty_ratio` percent of
/// the memory that can hold dirty pages (free pages and the file cache, as
/// `global_dirtyable_memory` counts them).
pub fn dirty_limit_from(bytes: &str, ratio: &str, meminfo: &str) -> Option<u64> {
    let kb = |key: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(key))?;
        let rest = line.get(key.len()..)?.trim_start_matches(':').trim();
        rest.trim_end_matches("kB").trim().parse::<u64>().ok()
    };
    match bytes.trim().parse::<u64>().ok()? {
        0 => {
            let dirtyable = kb("MemFree")?
                .checked_add(kb("Active(file)")?)?
                .checked_add(kb("Inactive(file)")?)?
                .checked_mul(1024)?;
            let r: u64 = ratio.trim().parse().ok()?;
            Some(dirtyable / 100 * r.min(100))
        }
        b => Some(b),
    }
}

/// Bytes an unprivileged writer may still put in the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    // SAFETY: statvfs only writes the struct we pass; zeroed is a valid statvfs.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: path is a NUL-terminated string that outlives the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Puts every file in `dir` on the disk (fdatasync): what a closed log file still has in the
/// page cache is written and waited for. Returns the bytes the files hold.
pub fn sync_files(dir: &Path) -> io::Result<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        // fdatasync works on the file, not the descriptor: a new read-only one will do.
        let f = std::fs::File::open(entry.path())?;
        f.sync_data()?;
        total = total.saturating_add(f.metadata()?.len());
    }
    Ok(total)
}

/// A decimal size for messages: `7.3 GB`, `512 MB`.
pub fn gb(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e12 {
        format!("{:.1} TB", b / 1e12)
    } else if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else {
        format!("{:.0} MB", b / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse::parse_formats;

    const MEMINFO: &str = "MemTotal:       24683584 kB\nMemFree:        20000000 kB\n\
        MemAvailable:   24313456 kB\nActive(file):     500000 kB\nInactive(file):   500000 kB\n";

    #[test]
    fn dirty_limit_as_the_kernel_counts_it() {
        // 20% of (20 000 000 + 500 000 + 500 000) kB: MemAvailable is not what counts.
        let l = dirty_limit_from("0\n", "20\n", MEMINFO).unwrap();
        assert_eq!(l, 21_000_000u64 * 1024 / 100 * 20);
        // dirty_bytes, when set, wins over the ratio.
        assert_eq!(dirty_limit_from("1073741824", "20", MEMINFO), Some(1 << 30));
        assert!(dirty_limit_from("0", "x", MEMINFO).is_none());
        assert!(dirty_limit_from("", "20", MEMINFO).is_none());
        assert!(dirty_limit_from("0", "20", "MemFree: 1 kB\n").is_none());
        let huge = "MemFree: 18446744073709551615 kB\nActive(file): 1 kB\nInactive(file): 1 kB\n";
        assert!(dirty_limit_from("0", "20", huge).is_none());
    }

    #[test]
    fn log_volume_estimates() {
        let hb = parse_formats("hex,binary").unwrap();
        // The bench measures 5.94 log bytes per byte for hex,binary: the estimate is above.
        let e = expected_log_bytes(&hb, 1 << 30);
        assert!(e as f64 > 5.94 * (1u64 << 30) as f64, "{e}");
        assert!((e as f64) < 6.5 * (1u64 << 30) as f64, "{e}");
        assert_eq!(
            expected_log_bytes(&parse_formats("none").unwrap(), 1 << 30),
            0
        );
        assert_eq!(expected_log_bytes(&hb, 1 << 50) / (1 << 50), 6);
        let b = bytes_for_logs(&hb, 6_000_000_000);
        assert_eq!(b % (1 << 20), 0);
        assert!((1_000_000_000..1_020_000_000).contains(&b), "{b}");
        assert_eq!(bytes_for_logs(&parse_formats("none").unwrap(), 1 << 30), 0);
    }

    #[test]
    fn free_space_and_sync() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(free_bytes(Path::new("/no/such/dir")).is_err());
        std::fs::write(dir.path().join("a"), b"12345").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(sync_files(dir.path()).unwrap(), 5);
        assert_eq!(gb(7_300_000_000), "7.3 GB");
        assert_eq!(gb(512_000_000), "512 MB");
        assert_eq!(gb(675_000_000_000_000), "675.0 TB");
    }
}
