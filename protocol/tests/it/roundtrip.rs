//! Property tests: for every message and name type, `decode(encode(x)) == x`, and decoders
//! never panic on arbitrary bytes.

use proptest::prelude::*;
use ucupdate_protocol::wire::{
    CheckRequest, CheckResponse, InstalledModule, LogType, LogUpload, Offer, OfferStatus,
    OfferedFile, Provisioning, Sha256Digest,
};
use ucupdate_protocol::{
    AuditFormat, AuditRecord, DeviceIdentity, DeviceType, FileKind, FileName, FirmwareVersion,
    HttpUrl, MacAddress, PathSegment, ResponseModule, SerialNumber, StoreKind, StorePath,
    UpdateKey,
};

fn version() -> impl Strategy<Value = FirmwareVersion> {
    any::<[u32; 4]>().prop_map(|[a, b, c, d]| FirmwareVersion::new(a, b, c, d))
}

fn segment() -> impl Strategy<Value = PathSegment> {
    "[A-Za-z0-9_][A-Za-z0-9_. -]{0,14}[A-Za-z0-9_]"
        .prop_filter_map("safe", |s| PathSegment::new(&s).ok())
}

fn file_name(ext: &'static str) -> impl Strategy<Value = FileName> {
    "[A-Za-z0-9_-]{1,12}".prop_map(move |stem| FileName::new(&format!("{stem}.{ext}")).unwrap())
}

fn text() -> impl Strategy<Value = String> {
    // Free text as the wire carries it: no control characters, no surrounding white space.
    "[A-Za-z0-9@:/\\\\._&<>\"';#,%é-]([A-Za-z0-9@:/\\\\._&<>\"'; #,%é-]{0,20}[A-Za-z0-9@._#;,%-])?"
}

fn device_type() -> impl Strategy<Value = DeviceType> {
    prop_oneof![
        Just(DeviceType::UcPhone),
        Just(DeviceType::RoundTable),
        "Lync[A-Za-z]{1,8}".prop_map(|s| s.parse().unwrap()),
    ]
}

fn identity() -> impl Strategy<Value = DeviceIdentity> {
    (
        device_type(),
        segment(),
        segment(),
        segment(),
        segment(),
        proptest::option::of(any::<[u8; 6]>().prop_map(MacAddress::new)),
        proptest::option::of(
            "[A-Za-z0-9_-]{1,20}".prop_map(|s| s.parse::<SerialNumber>().unwrap()),
        ),
    )
        .prop_map(
            |(device_type, brand, model, revision, locale, mac, serial)| DeviceIdentity {
                device_type,
                brand,
                model,
                revision,
                locale,
                mac,
                serial,
            },
        )
}

fn module() -> impl Strategy<Value = InstalledModule> {
    (file_name("nbt"), version(), proptest::option::of(text())).prop_map(
        |(file_name, version, timestamp)| InstalledModule {
            update_type: PathSegment::new(file_name.stem()).unwrap(),
            file_name,
            version,
            timestamp,
        },
    )
}

fn request() -> impl Strategy<Value = CheckRequest> {
    (
        identity(),
        proptest::collection::vec(module(), 1..4),
        proptest::option::of(text()),
    )
        .prop_map(|(identity, modules, user)| CheckRequest {
            identity,
            modules,
            user,
        })
}

fn offered_file() -> impl Strategy<Value = OfferedFile> {
    (
        prop_oneof![
            Just(("nbt", FileKind::Image)),
            Just(("cat", FileKind::Catalog)),
            Just(("xml", FileKind::Description)),
            Just(("rtconfig", FileKind::RoundTableConfig)),
            Just(("bin", FileKind::Other))
        ],
        "[A-Za-z0-9_-]{1,12}",
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<[u8; 32]>().prop_map(Sha256Digest)),
    )
        .prop_map(|((ext, kind), stem, size, sha256)| OfferedFile {
            kind,
            file_name: FileName::new(&match ext {
                "rtconfig" => "RTConfig.xml".to_owned(),
                _ => format!("{stem}.{ext}"),
            })
            .unwrap(),
            size,
            sha256,
        })
}

fn response() -> impl Strategy<Value = CheckResponse> {
    let offer = (
        text(),
        proptest::option::of(text()),
        segment(),
        version(),
        proptest::option::of(text()),
        prop_oneof![
            Just(OfferStatus::Approved),
            Just(OfferStatus::Pending),
            Just(OfferStatus::Restore)
        ],
        proptest::collection::vec(offered_file(), 1..4),
    )
        .prop_map(
            |(base_url, ext, update_type, version, timestamp, status, files)| {
                CheckResponse::Update(Offer {
                    base_url,
                    external_base_url: ext.unwrap_or_default(),
                    update_type,
                    version,
                    timestamp,
                    status,
                    files,
                })
            },
        );
    prop_oneof![Just(CheckResponse::NoUpdate), offer]
}

fn url() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        "[a-z][a-z0-9.-]{0,20}[a-z0-9]",
        any::<u16>(),
        "(/[A-Za-z0-9._-]{1,10}){0,4}",
    )
        .prop_map(|(https, host, port, path)| {
            format!(
                "{}://{host}:{port}{path}",
                if https { "https" } else { "http" }
            )
        })
}

proptest! {
    #[test]
    fn version_round_trips(v in version()) {
        prop_assert_eq!(v.to_string().parse::<FirmwareVersion>().unwrap(), v);
    }

    #[test]
    fn versions_order_like_their_parts(a in version(), b in version()) {
        prop_assert_eq!(a.cmp(&b), a.parts().cmp(&b.parts()));
    }

    #[test]
    fn mac_round_trips_in_every_spelling(bytes in any::<[u8; 6]>()) {
        let mac = MacAddress::new(bytes);
        let canonical = mac.to_string();
        prop_assert_eq!(canonical.parse::<MacAddress>().unwrap(), mac);
        prop_assert_eq!(canonical.replace('-', ":").to_lowercase().parse::<MacAddress>().unwrap(), mac);
        prop_assert_eq!(canonical.replace('-', "").parse::<MacAddress>().unwrap(), mac);
    }

    #[test]
    fn request_round_trips(r in request()) {
        prop_assert_eq!(CheckRequest::decode(r.encode().as_bytes()).unwrap(), r);
    }

    #[test]
    fn response_round_trips(r in response()) {
        prop_assert_eq!(CheckResponse::decode(r.encode().as_bytes()).unwrap(), r);
    }

    #[test]
    fn provisioning_round_trips(enabled in any::<bool>(), int in proptest::option::of(url()), ext in proptest::option::of(url())) {
        let p = Provisioning { enabled, internal_url: int, external_url: ext };
        prop_assert_eq!(Provisioning::decode(p.encode().as_bytes()).unwrap(), p);
    }

    #[test]
    fn audit_records_round_trip_in_both_forms(secs in 0u64..8_000_000_000, client in text(), r in request(), resp in response(), csv in any::<bool>()) {
        let record = AuditRecord { unix_secs: secs, client, request: r, response: ResponseModule::of(&resp) };
        let format = if csv { AuditFormat::Csv } else { AuditFormat::R2 };
        let line = record.to_line(format);
        prop_assert!(!line.contains('\n'));
        prop_assert_eq!(AuditRecord::parse_line(&line).unwrap(), record.clone());
        let file = format!("{}\r\n{line}\r\n{line}\r\n", ucupdate_protocol::audit::CSV_HEADER);
        prop_assert_eq!(ucupdate_protocol::audit::parse_log(&file).unwrap(), vec![record.clone(), record]);
    }

    #[test]
    fn log_upload_round_trips(stem in "[A-Za-z0-9_.-]{1,20}", ext in proptest::sample::select(ucupdate_protocol::wire::ALLOWED_LOG_EXTENSIONS), mac in any::<[u8; 6]>(), watson in any::<bool>()) {
        let file = FileName::new(&format!("{stem}.{ext}")).unwrap();
        let device = PathSegment::new(&MacAddress::new(mac).to_string()).unwrap();
        let log_type = if watson { LogType::Watson } else { LogType::CeLog };
        let upload = LogUpload::new(log_type, file, device).unwrap();
        prop_assert_eq!(LogUpload::from_query(&upload.to_query()).unwrap(), Some(upload));
    }

    #[test]
    fn store_path_round_trips(dt in device_type(), parts in proptest::array::uniform5(segment()), v in version(), ext in any::<bool>(), file in file_name("nbt")) {
        let [brand, model, revision, locale, update_type] = parts;
        let path = StorePath {
            kind: if ext { StoreKind::External } else { StoreKind::Internal },
            key: UpdateKey { device_type: dt, brand, model, revision, locale, update_type },
            version: v,
        };
        let url = path.file_url_path(&file).replace(' ', "%20");
        prop_assert_eq!(StorePath::parse_file_path(&url).unwrap(), (path.clone(), file));
        prop_assert_eq!(path.key.to_string().parse::<UpdateKey>().unwrap(), path.key);
    }

    #[test]
    fn http_url_round_trips(u in url()) {
        let parsed: HttpUrl = u.parse().unwrap();
        prop_assert_eq!(parsed.to_string().parse::<HttpUrl>().unwrap(), parsed);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = CheckRequest::decode(&bytes);
        let _ = CheckResponse::decode(&bytes);
        let _ = Provisioning::decode(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = AuditRecord::parse_line(&text);
        let _ = LogUpload::from_query(&text);
        let _ = StorePath::parse_file_path(&text);
        let _ = text.parse::<HttpUrl>();
    }

    #[test]
    fn decoders_never_panic_on_mutated_messages(r in request(), cut in any::<prop::sample::Index>(), flip in any::<u8>()) {
        let mut bytes = r.encode().into_bytes();
        let at = cut.index(bytes.len());
        bytes[at] ^= flip;
        let _ = CheckRequest::decode(&bytes);
        bytes.truncate(at);
        let _ = CheckRequest::decode(&bytes);
    }
}

/// A digest is 64 hex digits and nothing else: `u8::from_str_radix` takes a leading `+`, so
/// `+f` once read as the byte 0x0F (found by profiling the parser, not by a user).
#[test]
fn a_digest_with_signs_is_refused() {
    let signed = "+f".repeat(32);
    assert!(signed.parse::<Sha256Digest>().is_err());
    let good = "0F".repeat(32);
    assert_eq!(good.parse::<Sha256Digest>().unwrap().0, [0x0f; 32]);
    assert!("é".repeat(32).parse::<Sha256Digest>().is_err());
}
