//! The request handler's daily audit log: one [`AuditRecord`] per check in
//! `DATA/Logs/Server/Audit/imageUpdates/RequestHandlerAuditLog_<server>_<YYYYMMDD>.log`, the
//! service's own place and name, in the configured [`AuditFormat`] (CSV with a header row by
//! default). Before that move the files lived in `DATA/audit/`; [`AuditLog::cleanup`] still
//! sweeps that directory so old files expire as before.
//!
//! Lines are appended without fsync (an audit line is not an acknowledged change), through a
//! [`BUFFER`]-byte buffer: they reach the file when it fills, on [`AuditLog::flush`] (the
//! server's flush tick, every `--flush-interval-ms`, and its shutdown), when the day's file
//! switches and when the log is dropped. A crash of the process (not a clean stop) therefore
//! loses at most the last flush interval's lines, and never more than [`BUFFER`] bytes. Before,
//! every check made its own `write(2)` under the log's lock, which serialised the workers and
//! cost 7 % of the stub's CPU (docs/BENCHMARKS.md §4). The file
//! switches when the date in the record's time changes, so the time is the caller's. A CSV
//! file gets its header row when it is created empty (a restart appends to the day's file
//! without a second header). [`AuditLog::cleanup`] deletes the files of days that ended the
//! retention period or more ago (the cleanup task calls it, with the same injected `now` as
//! the log cleanup).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use ucupdate_protocol::audit::{AuditFormat, CSV_HEADER};
use ucupdate_protocol::AuditRecord;

/// Where the audit files live inside the data directory (the service's layout).
pub const AUDIT_DIR: &str = "Logs/Server/Audit/imageUpdates";
/// Where they lived before; only cleaned up.
const LEGACY_AUDIT_DIR: &str = "audit";

/// The start of every audit file name.
const FILE_PREFIX: &str = "RequestHandlerAuditLog_";
/// `YYYYMMDD.log`, the end of every audit file name.
const DATE_SUFFIX: usize = 12;
/// Bytes of lines held before they are written (about 300 checks of one module each).
pub const BUFFER: usize = 64 * 1024;

/// The longest formatting buffer a thread keeps between lines (a check's line is a few
/// hundred bytes).
const KEPT_LINE_BYTES: usize = 4096;

thread_local! {
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Appends audit lines to the current day's file.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    legacy_dir: PathBuf,
    server: String,
    format: AuditFormat,
    current: Mutex<Option<Current>>,
}

/// The day's open file.
#[derive(Debug)]
struct Current {
    /// Days since the epoch of the records it holds: compared per check, where the file name
    /// would need a date formatted.
    day: u64,
    file: BufWriter<File>,
}

impl AuditLog {
    /// The log of `server` under `data_dir` (see [`AUDIT_DIR`]).
    pub fn new(data_dir: &Path, server: &str, format: AuditFormat) -> Self {
        AuditLog {
            dir: data_dir.join(AUDIT_DIR),
            legacy_dir: data_dir.join(LEGACY_AUDIT_DIR),
            server: server.to_owned(),
            format,
            current: Mutex::new(None),
        }
    }

    /// The directory the files are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Deletes the audit files (of any server name, in the current and the legacy directory)
    /// whose day ended `retention_secs` or more before `now_unix`; returns how many. The
    /// current file is never one of them.
    pub fn cleanup(&self, now_unix: u64, retention_secs: u64) -> io::Result<u64> {
        // File names end in `_YYYYMMDD.log`, which sorts like the date: every day before the
        // cutoff's goes.
        let cutoff = AuditRecord::file_name("", now_unix.saturating_sub(retention_secs));
        let cutoff = &cutoff[cutoff.len() - DATE_SUFFIX..];
        Ok(sweep(&self.dir, cutoff)? + sweep(&self.legacy_dir, cutoff)?)
    }

    /// Adds `record`'s line to the buffer of its day's file (see the module docs for when it
    /// is written).
    pub fn append(&self, record: &AuditRecord) -> io::Result<()> {
        // Formatted before the lock is taken (the lock covers only the copy into the buffer),
        // in a buffer each worker thread keeps from one check to the next.
        LINE.with_borrow_mut(|line| {
            line.clear();
            record.write_line(self.format, line);
            line.push_str("\r\n");
            let written = self.append_line(record.unix_secs, line);
            if line.capacity() > KEPT_LINE_BYTES {
                // A 500-module check's line is not kept for the thread's lifetime.
                *line = String::new();
            }
            written
        })
    }

    fn append_line(&self, unix_secs: u64, line: &str) -> io::Result<()> {
        let day = unix_secs / 86_400;
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_none_or(|c| c.day != day) {
            // The old day's lines first, so a file never misses lines it was given.
            if let Some(mut old) = current.take() {
                old.file.flush()?;
            }
            let name = AuditRecord::file_name(&self.server, unix_secs);
            crate::disk::create_private_dir(&self.dir)?;
            let mut file = crate::disk::private_file()
                .create(true)
                .append(true)
                .open(self.dir.join(&name))?;
            if self.format == AuditFormat::Csv && file.metadata()?.len() == 0 {
                file.write_all(format!("{CSV_HEADER}\r\n").as_bytes())?;
            }
            *current = Some(Current {
                day,
                file: BufWriter::with_capacity(BUFFER, file),
            });
        }
        match current.as_mut() {
            Some(c) => c.file.write_all(line.as_bytes()),
            None => Ok(()),
        }
    }

    /// Writes the buffered lines to the file now (no fsync).
    pub fn flush(&self) -> io::Result<()> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        match current.as_mut() {
            Some(c) => c.file.flush(),
            None => Ok(()),
        }
    }
}

/// Deletes the dated audit files in `dir` whose date sorts before `cutoff` (`YYYYMMDD.log`).
fn sweep(dir: &Path, cutoff: &str) -> io::Result<u64> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.as_encoded_bytes();
        if !name.starts_with(FILE_PREFIX.as_bytes()) || name.len() < FILE_PREFIX.len() + DATE_SUFFIX
        {
            continue;
        }
        let date = &name[name.len() - DATE_SUFFIX..];
        let dated = date[..8].iter().all(u8::is_ascii_digit) && date.ends_with(b".log");
        if dated && date < cutoff.as_bytes() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use ucupdate_protocol::audit::parse_log;
    use ucupdate_protocol::CheckRequest;

    fn record(unix_secs: u64) -> AuditRecord {
        let request = CheckRequest::decode(
            b"<DeviceUpdateRequest><DeviceType>UCPhone</DeviceType><Brand>Polycom</Brand><Model>CX700</Model>\
              <Revision>A</Revision><Locale>ENU</Locale><MacAddress>00-04-F2-00-01-76</MacAddress>\
              <Modules><Module FileName=\"CPE.nbt\" Version=\"1.0.0.0\"/></Modules></DeviceUpdateRequest>",
        )
        .unwrap();
        AuditRecord {
            unix_secs,
            client: "127.0.0.1".into(),
            request,
            response: Vec::new(),
        }
    }

    #[test]
    fn writes_one_file_per_day_with_one_header_under_the_service_path() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path(), "stub", AuditFormat::Csv);
        let mut r = record(1_795_600_000);
        log.append(&r).unwrap();
        drop(log);
        // A restart appends to the day's file without a second header.
        let log = AuditLog::new(dir.path(), "stub", AuditFormat::Csv);
        log.append(&r).unwrap();
        r.unix_secs += 86_400;
        log.append(&r).unwrap();
        log.flush().unwrap();
        let audit_dir = dir.path().join("Logs/Server/Audit/imageUpdates");
        let first =
            fs::read_to_string(audit_dir.join("RequestHandlerAuditLog_stub_20261125.log")).unwrap();
        assert!(first.starts_with("Logging DateTime,"), "{first}");
        assert_eq!(first.matches("Logging DateTime").count(), 1, "{first}");
        let records = parse_log(&first).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].unix_secs, 1_795_600_000);
        assert!(audit_dir
            .join("RequestHandlerAuditLog_stub_20261126.log")
            .exists());
    }

    #[test]
    fn lines_wait_in_the_buffer_until_a_flush_a_day_switch_or_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path(), "stub", AuditFormat::R2);
        let day1 = log.dir().join("RequestHandlerAuditLog_stub_20261125.log");
        let day2 = log.dir().join("RequestHandlerAuditLog_stub_20261126.log");
        let lines = |p: &Path| parse_log(&fs::read_to_string(p).unwrap()).unwrap().len();
        log.append(&record(1_795_600_000)).unwrap();
        log.append(&record(1_795_600_001)).unwrap();
        assert_eq!(lines(&day1), 0, "written per check, not buffered");
        log.flush().unwrap();
        assert_eq!(lines(&day1), 2);
        // The next day's first line writes the old day's last ones.
        log.append(&record(1_795_600_002)).unwrap();
        log.append(&record(1_795_600_000 + 86_400)).unwrap();
        assert_eq!(lines(&day1), 3);
        assert_eq!(lines(&day2), 0);
        drop(log);
        assert_eq!(lines(&day2), 1);
    }

    /// The formatting buffer a thread reuses leaves nothing of one line in the next: a
    /// 300-module line, then short ones, in both formats, read back as they were recorded.
    #[test]
    fn each_line_is_its_own_after_a_long_one() {
        for format in [AuditFormat::R2, AuditFormat::Csv] {
            let dir = tempfile::tempdir().unwrap();
            let log = AuditLog::new(dir.path(), "stub", format);
            let mut long = record(1_795_600_000);
            let module = long.request.modules[0].clone();
            long.request.modules = vec![module; 300];
            log.append(&long).unwrap();
            let mut short = record(1_795_600_001);
            short.client = "10.1.2.3".into();
            log.append(&short).unwrap();
            log.append(&record(1_795_600_002)).unwrap();
            log.flush().unwrap();
            let path = log.dir().join("RequestHandlerAuditLog_stub_20261125.log");
            let records = parse_log(&fs::read_to_string(path).unwrap()).unwrap();
            let summary: Vec<_> = records
                .iter()
                .map(|r| (r.unix_secs, r.client.as_str(), r.request.modules.len()))
                .collect();
            assert_eq!(
                summary,
                [
                    (1_795_600_000, "127.0.0.1", 300),
                    (1_795_600_001, "10.1.2.3", 1),
                    (1_795_600_002, "127.0.0.1", 1)
                ],
                "{format:?}"
            );
        }
    }

    #[test]
    fn a_full_buffer_is_written_without_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path(), "stub", AuditFormat::R2);
        let line = record(1_795_600_000).to_line(AuditFormat::R2).len() + 2;
        for _ in 0..BUFFER / line + 1 {
            log.append(&record(1_795_600_000)).unwrap();
        }
        let path = log.dir().join("RequestHandlerAuditLog_stub_20261125.log");
        let on_disk = fs::metadata(&path).unwrap().len() as usize;
        assert!(
            on_disk > 0 && on_disk.is_multiple_of(line),
            "{on_disk} bytes of {line}-byte lines"
        );
    }

    #[test]
    fn r2_form_has_no_header_and_semicolons() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path(), "stub", AuditFormat::R2);
        log.append(&record(1_795_600_000)).unwrap();
        log.flush().unwrap();
        let text =
            fs::read_to_string(log.dir().join("RequestHandlerAuditLog_stub_20261125.log")).unwrap();
        assert!(
            text.starts_with("2026-11-25 09:46:40;127.0.0.1;UCPhone;"),
            "{text}"
        );
        assert_eq!(parse_log(&text).unwrap(), vec![record(1_795_600_000)]);
    }

    #[test]
    fn cleanup_deletes_days_past_the_retention_only_in_both_directories() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path(), "stub", AuditFormat::Csv);
        let day = 86_400;
        let now = 1_795_600_000; // 2026-11-25
        let legacy = dir.path().join("audit");
        fs::create_dir_all(log.dir()).unwrap();
        fs::create_dir_all(&legacy).unwrap();
        for name in [
            "RequestHandlerAuditLog_stub_20261114.log",
            "RequestHandlerAuditLog_stub_20261115.log",
            "RequestHandlerAuditLog_other_20261101.log",
            "RequestHandlerAuditLog_stub_20261125.log",
            "notes.txt",
        ] {
            fs::write(log.dir().join(name), "x").unwrap();
        }
        fs::write(legacy.join("RequestHandlerAuditLog_stub_20261001.log"), "x").unwrap();
        fs::write(legacy.join("RequestHandlerAuditLog_stub_20261124.log"), "x").unwrap();
        // 10 days: the cutoff day is 2026-11-15, the days before it go.
        assert_eq!(log.cleanup(now, 10 * day).unwrap(), 3);
        let names = |d: &Path| {
            let mut left: Vec<String> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            left.sort();
            left
        };
        assert_eq!(
            names(log.dir()),
            [
                "RequestHandlerAuditLog_stub_20261115.log",
                "RequestHandlerAuditLog_stub_20261125.log",
                "notes.txt"
            ]
        );
        assert_eq!(names(&legacy), ["RequestHandlerAuditLog_stub_20261124.log"]);
        assert_eq!(log.cleanup(now, 10 * day).unwrap(), 0);
    }
}
