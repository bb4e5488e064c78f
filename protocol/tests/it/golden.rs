//! Golden fixtures: every message this project emits is byte-for-byte a file under `fixtures/`,
//! every tolerated foreign spelling decodes to the value its canonical twin does, and every
//! malformed fixture is refused with the error it names.

use std::fs;
use std::path::PathBuf;

use ucupdate_protocol::audit::{self, AuditFormat, ResponseModule};
use ucupdate_protocol::wire::{CheckRequest, CheckResponse, LogUpload, OfferStatus, Provisioning};
use ucupdate_protocol::{AuditRecord, DeviceType, FileKind, ProtocolError};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

#[test]
fn check_request_is_canonical() {
    let request = CheckRequest::decode(&fixture("check_request.xml")).unwrap();
    assert_eq!(request.identity.device_type, DeviceType::UcPhone);
    assert_eq!(
        request.identity.mac.unwrap().to_string(),
        "00-04-F2-00-01-76"
    );
    assert_eq!(request.user.as_deref(), Some("sip:alice@contoso.com"));
    assert_eq!(request.modules[0].version.to_string(), "1.0.522.101");
    assert_eq!(request.encode(), text("check_request.xml"));
}

#[test]
fn roundtable_request_with_blank_mac_and_two_modules() {
    let request = CheckRequest::decode(&fixture("check_request_roundtable.xml")).unwrap();
    assert_eq!(request.identity.mac, None);
    assert_eq!(
        request.identity.serial.as_ref().unwrap().as_str(),
        "RT-0042"
    );
    assert_eq!(request.modules.len(), 2);
    assert_eq!(request.user, None);
    assert_eq!(request.encode(), text("check_request_roundtable.xml"));
}

#[test]
fn tolerant_request_reads_like_the_canonical_one() {
    let canonical = CheckRequest::decode(&fixture("check_request.xml")).unwrap();
    let foreign = CheckRequest::decode(&fixture("check_request_tolerant.xml")).unwrap();
    assert_eq!(foreign.identity.device_type, canonical.identity.device_type);
    assert_eq!(foreign.identity.mac, canonical.identity.mac);
    assert_eq!(
        foreign.identity.locale, canonical.identity.locale,
        "attribute form of a field"
    );
    assert_eq!(
        foreign.modules[0].update_type.as_str(),
        "CPE",
        "update type from the file stem"
    );
    assert_eq!(foreign.modules[0].version, canonical.modules[0].version);
    assert_eq!(foreign.user, None);
}

/// `Vendor` (the audit log's word) reads as `Brand` (the rules'); with both, `Brand` wins;
/// with neither, the missing field is named `Brand`.
#[test]
fn vendor_reads_as_brand() {
    let canonical = CheckRequest::decode(&fixture("check_request.xml")).unwrap();
    let vendor = CheckRequest::decode(&fixture("check_request_vendor.xml")).unwrap();
    assert_eq!(vendor, canonical);
    // The writer keeps writing Brand.
    assert_eq!(vendor.encode(), text("check_request.xml"));
    let both = text("check_request_vendor.xml").replace(
        "<Vendor>Polycom</Vendor>",
        "<vendor>Other</vendor><Brand>Polycom</Brand>",
    );
    assert_eq!(CheckRequest::decode(both.as_bytes()).unwrap(), canonical);
    let attr = text("check_request_vendor.xml")
        .replace("<Vendor>Polycom</Vendor>", "")
        .replace(
            "<DeviceUpdateRequest>",
            "<DeviceUpdateRequest Vendor=\"Polycom\">",
        );
    assert_eq!(CheckRequest::decode(attr.as_bytes()).unwrap(), canonical);
    let neither = text("check_request_vendor.xml").replace("<Vendor>Polycom</Vendor>", "");
    assert_eq!(
        CheckRequest::decode(neither.as_bytes()).unwrap_err(),
        ProtocolError::MissingField("Brand")
    );
}

#[test]
fn update_response_is_canonical() {
    let response = CheckResponse::decode(&fixture("check_response_update.xml")).unwrap();
    let CheckResponse::Update(offer) = &response else {
        panic!("expected an offer")
    };
    assert_eq!(offer.status, OfferStatus::Approved);
    assert_eq!(offer.version.to_string(), "1.0.522.200");
    let image = offer.image().unwrap();
    assert_eq!(image.size, Some(1_048_576));
    assert!(image.sha256.is_some());
    assert_eq!(response.encode(), text("check_response_update.xml"));
}

#[test]
fn no_update_has_one_emitted_form_and_three_readings() {
    assert_eq!(
        CheckResponse::NoUpdate.encode(),
        text("check_response_no_update.xml")
    );
    for name in [
        "check_response_no_update.xml",
        "check_response_no_update_empty_list.xml",
        "check_response_no_update_attribute.xml",
    ] {
        assert_eq!(
            CheckResponse::decode(&fixture(name)).unwrap(),
            CheckResponse::NoUpdate,
            "{name}"
        );
    }
}

#[test]
fn vendor_shaped_response_without_our_extensions() {
    let CheckResponse::Update(offer) =
        CheckResponse::decode(&fixture("check_response_vendor_shape.xml")).unwrap()
    else {
        panic!("expected an offer")
    };
    assert_eq!(
        offer.status,
        OfferStatus::Approved,
        "status defaults to approved"
    );
    assert_eq!(offer.external_base_url, "");
    let kinds: Vec<FileKind> = offer.files.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [FileKind::Image, FileKind::Catalog, FileKind::Description]
    );
    assert!(offer
        .files
        .iter()
        .all(|f| f.size.is_none() && f.sha256.is_none()));
}

#[test]
fn provisioning_is_canonical_and_found_among_other_properties() {
    let p = Provisioning::decode(&fixture("provisioning.xml")).unwrap();
    assert!(p.enabled);
    assert_eq!(p.encode(), text("provisioning.xml"));
    assert_eq!(
        Provisioning::decode(&fixture("provisioning_inband_full.xml")).unwrap(),
        p
    );
}

#[test]
fn audit_logs_in_both_forms_are_canonical_and_hold_the_same_records() {
    let csv = text("audit_log.csv");
    let r2 = text("audit_log_r2.log");
    assert!(csv.starts_with("Logging DateTime,"));
    assert_eq!(csv.lines().next(), Some(audit::CSV_HEADER));
    let records = audit::parse_log(&csv).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        audit::parse_log(&r2).unwrap(),
        records,
        "both forms carry the same records"
    );
    for (format, file) in [(AuditFormat::Csv, &csv), (AuditFormat::R2, &r2)] {
        let lines: Vec<String> = records.iter().map(|r| r.to_line(format)).collect();
        let body: Vec<&str> = file.lines().filter(|l| *l != audit::CSV_HEADER).collect();
        assert_eq!(lines, body, "{format:?} lines are canonical");
    }
    let [offer, none] = &records[..] else {
        unreachable!()
    };
    assert_eq!(offer.client, "10.1.2.3");
    let request = CheckRequest::decode(&fixture("check_request.xml")).unwrap();
    assert_eq!(
        offer.request, request,
        "the record carries the whole request"
    );
    let response = CheckResponse::decode(&fixture("check_response_update.xml")).unwrap();
    assert_eq!(offer.response, ResponseModule::of(&response));
    assert_eq!(
        offer.response[0]
            .signature_file_name
            .as_ref()
            .unwrap()
            .as_str(),
        "CPE.cat"
    );
    assert!(none.response.is_empty());
    assert_eq!(none.request.identity.serial, None);
    assert_eq!(none.request.modules.len(), 2);
    assert_eq!(none.request.modules[1].timestamp, None);
    assert_eq!(
        none.request.user.as_deref(),
        Some("CONTOSO\\bob, the \"tester\"")
    );
}

#[test]
fn audit_reader_refuses_broken_records() {
    for line in [
        "2026-11-25 09:46:40,10.1.2.3,UCPhone",
        "2026-11-25 09:46:40,\"unterminated,UCPhone,,,P,M,A,ENU,,,",
        "2026-11-25 09:46:40;10.1.2.3;UCPhone;;;P;M;A;ENU;CPE.nbt;1.0.0.1;;",
        "2026-13-25 09:46:40;10.1.2.3;UCPhone;;;P;M;A;ENU;;;",
        "not a record",
    ] {
        assert!(
            matches!(
                AuditRecord::parse_line(line),
                Err(ProtocolError::BadAuditLine(_))
            ),
            "{line:?}"
        );
    }
}

#[test]
fn log_upload_query_is_canonical() {
    let query = text("log_upload_query.txt");
    let upload = LogUpload::from_query(query.trim_end()).unwrap().unwrap();
    assert_eq!(upload.device.as_str(), "00-04-F2-00-01-76");
    assert_eq!(upload.to_query(), query.trim_end());
}

#[test]
fn malformed_fixtures_are_refused_with_the_right_error() {
    use ProtocolError as E;
    type Check = fn(&ProtocolError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("request_missing_device_type.xml", |e| {
            matches!(e, E::MissingField("DeviceType"))
        }),
        ("request_bad_version.xml", |e| {
            matches!(e, E::BadVersion { .. })
        }),
        ("request_traversal_brand.xml", |e| {
            matches!(e, E::UnsafeComponent { .. })
        }),
        ("request_no_modules.xml", |e| {
            matches!(e, E::MissingField("Module"))
        }),
        ("request_bad_mac.xml", |e| matches!(e, E::BadMac(_))),
        ("request_truncated.xml", |e| matches!(e, E::Xml(_))),
        (
            "request_entity_expansion.xml",
            |e| matches!(e, E::Xml(m) if m.contains("DTD")),
        ),
        ("request_bad_utf8.xml", |e| matches!(e, E::BadUtf8 { .. })),
        ("request_wrong_root.xml", |e| {
            matches!(e, E::WrongRoot { .. })
        }),
    ];
    for (name, check) in cases {
        let err = CheckRequest::decode(&fixture(&format!("malformed/{name}"))).unwrap_err();
        assert!(check(&err), "{name}: {err}");
    }
    let cases: &[(&str, Check)] = &[
        ("response_bad_sha.xml", |e| {
            matches!(
                e,
                E::InvalidField {
                    field: "SHA256",
                    ..
                }
            )
        }),
        ("response_missing_base_url.xml", |e| {
            matches!(e, E::MissingField("BaseURL"))
        }),
        ("response_downloads_without_update.xml", |e| {
            matches!(e, E::MissingField("Update"))
        }),
        ("response_bad_count.xml", |e| {
            matches!(
                e,
                E::InvalidField {
                    field: "Downloads",
                    ..
                }
            )
        }),
        ("response_traversal_file.xml", |e| {
            matches!(e, E::UnsafeComponent { .. })
        }),
        ("response_negative_size.xml", |e| {
            matches!(e, E::InvalidField { field: "Size", .. })
        }),
    ];
    for (name, check) in cases {
        let err = CheckResponse::decode(&fixture(&format!("malformed/{name}"))).unwrap_err();
        assert!(check(&err), "{name}: {err}");
    }
    let cases: &[(&str, Check)] = &[
        ("provisioning_missing_enabled.xml", |e| {
            matches!(e, E::MissingField("updatesServerEnabled"))
        }),
        ("provisioning_bad_enabled.xml", |e| {
            matches!(e, E::InvalidField { .. })
        }),
        ("provisioning_bad_url.xml", |e| {
            matches!(
                e,
                E::InvalidField {
                    field: "updatesServerInternalUrl",
                    ..
                }
            )
        }),
    ];
    for (name, check) in cases {
        let err = Provisioning::decode(&fixture(&format!("malformed/{name}"))).unwrap_err();
        assert!(check(&err), "{name}: {err}");
    }
}

#[test]
fn oversized_bodies_are_refused_before_parsing() {
    let mut body = fixture("check_request.xml");
    body.resize(ucupdate_protocol::wire::MAX_MESSAGE_BYTES + 1, b' ');
    assert!(matches!(
        CheckRequest::decode(&body),
        Err(ProtocolError::TooLarge { .. })
    ));
}

#[test]
fn log_uploads_refuse_bad_names_types_and_sizes() {
    for query in [
        "action=logupload&type=CELog&file=x.exe&device=00-04-F2-00-01-76",
        "action=logupload&type=CELog&file=..%2Fx.clg&device=00-04-F2-00-01-76",
        "action=logupload&type=Kernel&file=x.clg&device=00-04-F2-00-01-76",
        "action=logupload&type=CELog&file=x.clg&device=..",
        "action=logupload&type=CELog&device=00-04-F2-00-01-76",
    ] {
        assert!(LogUpload::from_query(query).is_err(), "{query}");
    }
    assert_eq!(LogUpload::from_query("action=check").unwrap(), None);
    assert!(LogUpload::check_size(1_024_000).is_ok());
    assert!(LogUpload::check_size(1_024_001).is_err());
}
