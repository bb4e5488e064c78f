//! The built-in dialect is exactly `wire`'s format (golden fixtures and random messages), and
//! the made-up foreign dialect of `tests/peers/` reads and writes what its peers speak.

use proptest::prelude::*;

use super::*;
use crate::identity::{DeviceIdentity, DeviceType, FileName, PathSegment};
use crate::store::FileKind;
use crate::version::FirmwareVersion;
use crate::wire::{CheckRequest, InstalledModule, OfferStatus, OfferedFile};

fn fixture(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    std::fs::read_to_string(format!("{path}{name}")).unwrap()
}

fn foreign() -> Dialect {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/peers/foreign.toml");
    Dialect::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn builtin_renders_every_golden_request_byte_for_byte() {
    let d = Dialect::builtin();
    for name in ["check_request.xml", "check_request_roundtable.xml"] {
        let text = fixture(name);
        let request = CheckRequest::decode(text.as_bytes()).unwrap();
        assert_eq!(d.encode_request(&request), text, "{name}");
    }
    assert_eq!(d.request.path, crate::wire::INTERNAL_HANDLER_PATH);
    assert_eq!(
        d.request.headers,
        vec![(
            "Content-Type".to_owned(),
            crate::wire::CONTENT_TYPE_XML.to_owned()
        )]
    );
}

#[test]
fn builtin_reads_and_writes_every_golden_reply_byte_for_byte() {
    let d = Dialect::builtin();
    for name in [
        "check_response_update.xml",
        "check_response_no_update.xml",
        "check_response_no_update_attribute.xml",
        "check_response_no_update_empty_list.xml",
        "check_response_vendor_shape.xml",
    ] {
        let text = fixture(name);
        let expected = CheckResponse::decode(text.as_bytes()).unwrap();
        assert_eq!(d.decode_reply(text.as_bytes()).unwrap(), expected, "{name}");
    }
    for name in ["check_response_update.xml", "check_response_no_update.xml"] {
        let text = fixture(name);
        let response = CheckResponse::decode(text.as_bytes()).unwrap();
        assert_eq!(d.encode_reply(&response), text, "{name}");
    }
}

#[test]
fn foreign_dialect_speaks_the_peers_format() {
    let d = foreign();
    let request = CheckRequest::decode(fixture("check_request.xml").as_bytes()).unwrap();
    let body = d.encode_request(&request);
    assert!(
        body.contains("<fw:Hardware>00:04:f2:00:01:76</fw:Hardware>"),
        "{body}"
    );
    assert!(body.contains("fw:product=\"CX700\""), "{body}");
    assert!(body.contains("<fw:Part><fw:Name>CPE.nbt</fw:Name><fw:Rev>1.0.522.101</fw:Rev>"));
    // What the Python server writes, with its own prefixes (s, r), not the dialect's.
    let reply = br#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:r="urn:example:firmware-check:2"><s:Body><r:CheckFirmwareResult r:count="2" r:internal="http://h/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.522.200/CPE" r:external=""><r:Offer><r:Rev>1.0.522.200</r:Rev><r:Image>CPE.nbt</r:Image><r:Signature>CPE.cat</r:Signature></r:Offer></r:CheckFirmwareResult></s:Body></s:Envelope>"#;
    let CheckResponse::Update(offer) = d.decode_reply(reply).unwrap() else {
        panic!("no offer")
    };
    assert_eq!(offer.version.to_string(), "1.0.522.200");
    assert_eq!(offer.update_type.as_str(), "CPE", "from the image's stem");
    assert_eq!(offer.image().unwrap().file_name.as_str(), "CPE.nbt");
    assert_eq!(offer.files[1].kind, FileKind::Catalog);
    let none = br#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:r="urn:example:firmware-check:2"><s:Body><r:CheckFirmwareResult/></s:Body></s:Envelope>"#;
    assert_eq!(d.decode_reply(none).unwrap(), CheckResponse::NoUpdate);
    // Same local names in another namespace are not the dialect's.
    let wrong_ns =
        String::from_utf8_lossy(reply).replace("urn:example:firmware-check:2", "urn:other");
    assert!(d.decode_reply(wrong_ns.as_bytes()).is_err());
    // No reply template: the stub writes the reply where the paths say, with the dialect's
    // prefixes, and "no update" as the empty result element.
    assert_eq!(
        d.encode_reply(&CheckResponse::NoUpdate),
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<env:Envelope xmlns:env=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:fw=\"urn:example:firmware-check:2\"><env:Body><fw:CheckFirmwareResult/></env:Body></env:Envelope>\n"
    );
    let written = d.encode_reply(&CheckResponse::Update(offer.clone()));
    assert!(
        written.contains("<fw:CheckFirmwareResult fw:count=\"2\" fw:internal=\"http://h/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.522.200/CPE\" fw:external=\"\"><fw:Offer><fw:Rev>1.0.522.200</fw:Rev><fw:Image>CPE.nbt</fw:Image><fw:Signature>CPE.cat</fw:Signature></fw:Offer>"),
        "{written}"
    );
    assert_eq!(
        d.decode_reply(written.as_bytes()).unwrap(),
        CheckResponse::Update(offer)
    );
}

#[test]
fn checks_are_read_back_through_the_template() {
    let text = fixture("check_request.xml");
    let request = CheckRequest::decode(text.as_bytes()).unwrap();
    assert_eq!(
        Dialect::builtin().decode_request(text.as_bytes()).unwrap(),
        request
    );
    let d = foreign();
    let mut two = request.clone();
    two.modules.push(InstalledModule {
        update_type: PathSegment::new("UCUpdater").unwrap(),
        file_name: FileName::new("UCUpdater.nbt").unwrap(),
        version: "1.0.0.7".parse().unwrap(),
        timestamp: None,
    });
    let body = d.encode_request(&two);
    assert_eq!(body.matches("<fw:Part>").count(), 2, "{body}");
    assert_eq!(d.decode_request(body.as_bytes()).unwrap(), two);
}

#[test]
fn bodies_that_are_not_a_check_in_the_dialect_say_why() {
    let d = foreign();
    let request = CheckRequest::decode(fixture("check_request.xml").as_bytes()).unwrap();
    let good = d.encode_request(&request);
    let err = |body: &str| d.decode_request(body.as_bytes()).unwrap_err().to_string();
    // Our own format is not this dialect's.
    let ours = request.encode();
    assert!(
        err(&ours).contains("does not fit the dialect's template"),
        "{}",
        err(&ours)
    );
    assert!(err("not xml").contains("not a check"));
    assert!(err("").contains("not a check"));
    let renamed = good.replace("fw:Hardware>", "fw:Hw>");
    assert!(err(&renamed).contains("differs from the template at byte"));
    let bad_mac = good.replace("00:04:f2:00:01:76", "00:04:f2:00:01:zz");
    assert!(err(&bad_mac).contains("`mac`"), "{}", err(&bad_mac));
    let bad_version = good.replace("1.0.522.101", "1.0.x.101");
    assert!(
        err(&bad_version).contains("`version`"),
        "{}",
        err(&bad_version)
    );
    let no_parts = {
        let start = good.find("      <fw:Part>").unwrap();
        let end = good.find("    </fw:CheckFirmware>").unwrap();
        format!("{}{}", &good[..start], &good[end..])
    };
    assert_eq!(
        d.decode_request(no_parts.as_bytes()),
        Err(DecodeError::NoModule)
    );
    let cut = &good[..good.len() / 2];
    assert!(err(cut).contains("not a check"));
}

#[test]
fn refuses_files_that_are_not_a_dialect() {
    let good = Dialect::builtin_toml();
    let cases: Vec<(String, &str)> = vec![
        (good.replace("format = 1", "format = 2"), "format"),
        (good.replace("format = 1\n", ""), "format"),
        (good.replace("name = ", "nam = "), "unknown key"),
        (
            good.replace("{{device_type}}", "{{device_type | upper}}"),
            "placeholder",
        ),
        (
            good.replace("{{device_type}}", "{{password}}"),
            "placeholder",
        ),
        (
            good.replace(
                "[\"Content-Type\"",
                "[\"Authorization\", \"NTLM x\"], [\"Content-Type\"",
            ),
            "credentials",
        ),
        (
            good.replace(
                "[\"Content-Type\"",
                "[\"Cookie\", \"a=b\"], [\"Content-Type\"",
            ),
            "credentials",
        ),
        (
            good.replace(
                "mac_format = \"XX-XX-XX-XX-XX-XX\"",
                "mac_format = \"XX-XX\"",
            ),
            "mac_format",
        ),
        (
            good.replace("update = \"Update\"", "update = \"x:Update\""),
            "prefix",
        ),
        (
            good.replace("version = \"@Version\"", "version = \"@V/x\""),
            "attribute",
        ),
        (
            good.replace("no_update = \"downloads-zero\"", "no_update = \"maybe\""),
            "no_update",
        ),
        (
            format!("{good}\n# {}\n", "x".repeat(MAX_DIALECT_BYTES)),
            "cap",
        ),
        ("not toml [".to_owned(), "TOML"),
    ];
    for (text, why) in cases {
        let err = Dialect::from_toml(&text).expect_err(why).to_string();
        assert!(err.contains(why), "{why}: {err}");
    }
}

#[test]
fn mac_formats_spell_and_recognise() {
    let mac: MacAddress = "00-04-F2-00-01-76".parse().unwrap();
    for pattern in [
        "XX-XX-XX-XX-XX-XX",
        "xx:xx:xx:xx:xx:xx",
        "XXXXXXXXXXXX",
        "xxxxxxxxxxxx",
    ] {
        let f = MacFormat::parse(pattern).unwrap();
        assert_eq!(f.pattern(), pattern);
        let spelled = f.spell(mac);
        assert_eq!(MacFormat::of(&spelled), Some(f), "{spelled}");
    }
    assert_eq!(MacFormat::of("not a mac"), None);
}

fn segment() -> impl Strategy<Value = PathSegment> {
    "[A-Za-z0-9][A-Za-z0-9 ._&<>'\"-]{0,10}[A-Za-z0-9]".prop_map(|s| PathSegment::new(&s).unwrap())
}

fn version() -> impl Strategy<Value = FirmwareVersion> {
    (0u32..9, 0u32..9, 0u32..9999, 0u32..9999)
        .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}").parse().unwrap())
}

fn request() -> impl Strategy<Value = CheckRequest> {
    let module = (
        segment(),
        version(),
        proptest::option::of("[0-9T:Z-]{1,20}"),
    )
        .prop_map(|(t, v, ts)| InstalledModule {
            file_name: FileName::new(&format!("{t}.nbt")).unwrap(),
            update_type: t,
            version: v,
            timestamp: ts,
        });
    (
        segment(),
        segment(),
        proptest::option::of(any::<[u8; 6]>()),
        proptest::option::of("[A-Za-z0-9_-]{1,20}"),
        proptest::collection::vec(module, 1..4),
        proptest::option::of("sip:[a-z&<]{1,8}@x\\.com"),
    )
        .prop_map(|(brand, model, mac, serial, modules, user)| CheckRequest {
            identity: DeviceIdentity {
                device_type: DeviceType::UcPhone,
                brand,
                model,
                revision: PathSegment::new("A").unwrap(),
                locale: PathSegment::new("ENU").unwrap(),
                mac: mac.map(MacAddress::new),
                serial: serial.map(|s| s.parse().unwrap()),
            },
            modules,
            user,
        })
}

fn response() -> impl Strategy<Value = CheckResponse> {
    let file = (
        segment(),
        any::<bool>(),
        proptest::option::of(0u64..1 << 40),
        any::<bool>(),
    )
        .prop_map(|(name, catalog, size, sha)| {
            let file_name =
                FileName::new(&format!("{name}.{}", if catalog { "cat" } else { "nbt" })).unwrap();
            OfferedFile {
                kind: FileKind::of(&file_name),
                file_name,
                size,
                sha256: sha.then_some(crate::wire::Sha256Digest([7; 32])),
            }
        });
    let offer = (
        segment(),
        version(),
        proptest::collection::vec(file, 1..4),
        "[a-z/:.&]{1,30}",
    )
        .prop_map(|(t, v, files, url)| {
            CheckResponse::Update(Offer {
                base_url: format!("http://{url}"),
                external_base_url: String::new(),
                update_type: t,
                version: v,
                timestamp: None,
                status: OfferStatus::Pending,
                files,
            })
        });
    prop_oneof![Just(CheckResponse::NoUpdate), offer]
}

/// What the foreign dialect can say: an image and maybe its catalog, no sizes, digests or
/// status (approved), the update type being the image's stem.
fn foreign_response() -> impl Strategy<Value = CheckResponse> {
    let offer = (
        segment(),
        version(),
        any::<bool>(),
        proptest::option::of("[0-9T:Z-]{1,20}"),
        "[a-z/:.&]{1,30}",
    )
        .prop_map(|(t, v, catalog, timestamp, url)| {
            let file = |ext: &str| {
                let file_name = FileName::new(&format!("{t}.{ext}")).unwrap();
                OfferedFile {
                    kind: FileKind::of(&file_name),
                    file_name,
                    size: None,
                    sha256: None,
                }
            };
            let mut files = vec![file("nbt")];
            if catalog {
                files.push(file("cat"));
            }
            CheckResponse::Update(Offer {
                base_url: format!("http://{url}"),
                external_base_url: format!("https://ext/{url}"),
                update_type: t.clone(),
                version: v,
                timestamp,
                status: OfferStatus::Approved,
                files,
            })
        });
    prop_oneof![Just(CheckResponse::NoUpdate), offer]
}

proptest! {
    #[test]
    fn builtin_requests_equal_wire_requests(r in request()) {
        prop_assert_eq!(Dialect::builtin().encode_request(&r), r.encode());
    }

    #[test]
    fn builtin_replies_equal_wire_replies_and_read_back(r in response()) {
        let d = Dialect::builtin();
        let text = d.encode_reply(&r);
        prop_assert_eq!(&text, &r.encode());
        prop_assert_eq!(d.decode_reply(text.as_bytes()).unwrap(), r);
    }

    #[test]
    fn requests_read_back_through_the_builtin_and_the_foreign_dialect(r in request()) {
        let ours = Dialect::builtin();
        let body = ours.encode_request(&r);
        prop_assert_eq!(ours.decode_request(body.as_bytes()).unwrap(), r.clone());
        prop_assert_eq!(CheckRequest::decode(body.as_bytes()).unwrap(), r.clone());
        let d = foreign();
        prop_assert_eq!(d.decode_request(d.encode_request(&r).as_bytes()).unwrap(), r);
    }

    #[test]
    fn replies_written_from_the_paths_alone_read_back(r in response()) {
        let mut paths_only = Dialect::builtin();
        paths_only.reply.body = None;
        let text = paths_only.encode_reply(&r);
        prop_assert_eq!(paths_only.decode_reply(text.as_bytes()).unwrap(), r);
    }

    #[test]
    fn foreign_replies_read_back(r in foreign_response()) {
        let d = foreign();
        prop_assert_eq!(d.decode_reply(d.encode_reply(&r).as_bytes()).unwrap(), r);
    }

    #[test]
    fn foreign_requests_are_well_formed_and_carry_the_values(r in request()) {
        let body = foreign().encode_request(&r);
        let root = tree::parse(body.as_bytes()).unwrap();
        let names = Path::parse("soap:Body/fw:CheckFirmware/fw:Part/fw:Name", &[
            ("soap".to_owned(), "http://schemas.xmlsoap.org/soap/envelope/".to_owned()),
            ("fw".to_owned(), "urn:example:firmware-check:2".to_owned()),
        ].into_iter().collect()).unwrap();
        prop_assert_eq!(names.elements(&root).len(), r.modules.len());
        prop_assert_eq!(names.value(&root), Some(r.modules[0].file_name.as_str()));
    }
}

#[test]
fn builtin_refuses_every_malformed_reply_fixture() {
    let d = Dialect::builtin();
    for name in [
        "response_bad_count.xml",
        "response_bad_sha.xml",
        "response_downloads_without_update.xml",
        "response_missing_base_url.xml",
        "response_negative_size.xml",
        "response_traversal_file.xml",
        "request_entity_expansion.xml",
        "request_truncated.xml",
    ] {
        let text = fixture(&format!("malformed/{name}"));
        assert!(
            CheckResponse::decode(text.as_bytes()).is_err(),
            "{name}: wire accepts it"
        );
        assert!(d.decode_reply(text.as_bytes()).is_err(), "{name} accepted");
    }
}
