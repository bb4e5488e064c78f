//! Fuzzes the line and path decoders: audit records (both forms), log-upload queries, store paths, URLs,
//! versions and MAC addresses.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ucupdate_protocol::{AuditFormat, AuditRecord, FirmwareVersion, HttpUrl, LogUpload, MacAddress, StorePath};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(record) = AuditRecord::parse_line(text) {
        for format in [AuditFormat::Csv, AuditFormat::R2] {
            assert_eq!(AuditRecord::parse_line(&record.to_line(format)).expect("re-parse"), record);
        }
    }
    if let Ok(Some(upload)) = LogUpload::from_query(text) {
        assert_eq!(LogUpload::from_query(&upload.to_query()).expect("re-parse"), Some(upload));
    }
    if let Ok((path, file)) = StorePath::parse_file_path(text) {
        // Whatever parses is one store directory plus one file: it cannot climb out.
        assert!(!path.relative_dir().split('/').any(|c| c == ".." || c.is_empty()));
        assert!(!file.as_str().contains(['/', '\\']));
    }
    let _ = text.parse::<HttpUrl>();
    let _ = text.parse::<FirmwareVersion>();
    let _ = text.parse::<MacAddress>();
});
