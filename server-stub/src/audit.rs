//! The request handler's daily audit log: one [`AuditRecord`] line per check in
//! `DATA/audit/RequestHandlerAuditLog_<server>_<YYYYMMDD>.log`.
//!
//! Lines are appended without fsync (an audit line is not an acknowledged change); the file
//! switches when the date in the record's time changes, so the time is the caller's.
//! [`AuditLog::cleanup`] deletes the files of days that ended the retention period or more
//! ago (the cleanup task calls it, with the same injected `now` as the log cleanup).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use ucupdate_protocol::AuditRecord;

/// The start of every audit file name.
const FILE_PREFIX: &str = "RequestHandlerAuditLog_";
/// `YYYYMMDD.log`, the end of every audit file name.
const DATE_SUFFIX: usize = 12;

/// Appends audit lines to the current day's file.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    server: String,
    current: Mutex<Option<(String, File)>>,
}

impl AuditLog {
    pub fn new(dir: PathBuf, server: &str) -> Self {
        AuditLog {
            dir,
            server: server.to_owned(),
            current: Mutex::new(None),
        }
    }

    /// Deletes the audit files (of any server name) whose day ended `retention_secs` or more
    /// before `now_unix`; returns how many. The current file is never one of them.
    pub fn cleanup(&self, now_unix: u64, retention_secs: u64) -> io::Result<u64> {
        // File names end in `_YYYYMMDD.log`, which sorts like the date: every day before the
        // cutoff's goes.
        let cutoff = AuditRecord::file_name("", now_unix.saturating_sub(retention_secs));
        let cutoff = &cutoff[cutoff.len() - DATE_SUFFIX..];
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.as_encoded_bytes();
            if !name.starts_with(FILE_PREFIX.as_bytes())
                || name.len() < FILE_PREFIX.len() + DATE_SUFFIX
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

    pub fn append(&self, record: &AuditRecord) -> io::Result<()> {
        let name = AuditRecord::file_name(&self.server, record.unix_secs);
        let mut line = record.to_line();
        line.push_str("\r\n");
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_none_or(|(n, _)| *n != name) {
            crate::disk::create_private_dir(&self.dir)?;
            let file = crate::disk::private_file()
                .create(true)
                .append(true)
                .open(self.dir.join(&name))?;
            *current = Some((name, file));
        }
        match current.as_mut() {
            Some((_, file)) => file.write_all(line.as_bytes()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use ucupdate_protocol::CheckRequest;

    #[test]
    fn writes_one_file_per_day() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().to_owned(), "stub");
        let request = CheckRequest::decode(
            b"<DeviceUpdateRequest><DeviceType>UCPhone</DeviceType><Brand>Polycom</Brand><Model>CX700</Model>\
              <Revision>A</Revision><Locale>ENU</Locale><MacAddress>00-04-F2-00-01-76</MacAddress>\
              <Modules><Module FileName=\"CPE.nbt\" Version=\"1.0.0.0\"/></Modules></DeviceUpdateRequest>",
        )
        .unwrap();
        let mut record = AuditRecord {
            unix_secs: 1_795_600_000,
            client: "127.0.0.1".into(),
            request,
            outcome: "none".into(),
        };
        log.append(&record).unwrap();
        record.unix_secs += 86_400;
        log.append(&record).unwrap();
        let first = fs::read_to_string(dir.path().join("RequestHandlerAuditLog_stub_20261125.log"))
            .unwrap();
        assert_eq!(
            AuditRecord::parse_line(first.trim_end()).unwrap().unix_secs,
            1_795_600_000
        );
        assert!(dir
            .path()
            .join("RequestHandlerAuditLog_stub_20261126.log")
            .exists());
    }

    #[test]
    fn cleanup_deletes_days_past_the_retention_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().to_owned(), "stub");
        let day = 86_400;
        let now = 1_795_600_000; // 2026-11-25
        for name in [
            "RequestHandlerAuditLog_stub_20261114.log",
            "RequestHandlerAuditLog_stub_20261115.log",
            "RequestHandlerAuditLog_other_20261101.log",
            "RequestHandlerAuditLog_stub_20261125.log",
            "notes.txt",
        ] {
            fs::write(dir.path().join(name), "x").unwrap();
        }
        // 10 days: the cutoff day is 2026-11-15, the days before it go.
        assert_eq!(log.cleanup(now, 10 * day).unwrap(), 2);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "RequestHandlerAuditLog_stub_20261115.log",
                "RequestHandlerAuditLog_stub_20261125.log",
                "notes.txt"
            ]
        );
        assert_eq!(log.cleanup(now, 10 * day).unwrap(), 0);
    }
}
