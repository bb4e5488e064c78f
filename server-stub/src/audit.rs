//! The request handler's daily audit log: one [`AuditRecord`] line per check in
//! `DATA/audit/RequestHandlerAuditLog_<server>_<YYYYMMDD>.log`.
//!
//! Lines are appended without fsync (an audit line is not an acknowledged change); the file
//! switches when the date in the record's time changes, so the time is the caller's.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use ucupdate_protocol::AuditRecord;

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
}
