//! Learning from captures of our own format and of the foreign test dialect; ambiguity and
//! missing pieces are refused with the hint that decides them.

use super::super::check::check;
use super::*;
use crate::wire::{CheckRequest, CheckResponse};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn foreign() -> Dialect {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/peers/foreign.toml");
    Dialect::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const FOREIGN_REPLY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:r="urn:example:firmware-check:2"><s:Body><r:CheckFirmwareResult r:count="2" r:internal="http://pool/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/1.0.522.200/CPE" r:external=""><r:Offer><r:Rev>1.0.522.200</r:Rev><r:Stamp>2010-01-01T00:00:00Z</r:Stamp><r:Image>CPE.nbt</r:Image><r:Signature>CPE.cat</r:Signature></r:Offer></r:CheckFirmwareResult></s:Body></s:Envelope>
"#;

fn device(mac: &str, version: &str) -> CheckRequest {
    let text = String::from_utf8(fixture("check_request.xml"))
        .unwrap()
        .replace("00-04-F2-00-01-76", mac)
        .replace("1.0.522.101", version);
    CheckRequest::decode(text.as_bytes()).unwrap()
}

fn foreign_exchange() -> Exchange {
    Exchange {
        method: "POST".into(),
        path: "/fw/check.asmx".into(),
        headers: vec![
            (
                "Content-Type".into(),
                "application/soap+xml; charset=utf-8".into(),
            ),
            ("Authorization".into(), "NTLM c2VjcmV0".into()),
            ("Cookie".into(), "session=secret".into()),
            ("User-Agent".into(), "FakePhone/2.0".into()),
        ],
        request: foreign()
            .encode_request(&device("00-04-F2-00-01-76", "1.0.522.101"))
            .into_bytes(),
        reply: FOREIGN_REPLY.as_bytes().to_vec(),
    }
}

#[test]
fn learns_the_foreign_dialect_from_one_exchange() {
    let exchange = foreign_exchange();
    let learned = learn("pool", &exchange, &Hints::default()).unwrap();
    assert!(
        !learned.toml.contains("secret") && !learned.toml.contains("c2VjcmV0"),
        "{}",
        learned.toml
    );
    assert_eq!(learned.stripped_headers, vec!["Authorization", "Cookie"]);
    let d = &learned.dialect;
    assert_eq!(d.request.path, "/fw/check.asmx");
    assert_eq!(d.request.mac_format.pattern(), "xx:xx:xx:xx:xx:xx");
    // Another device renders exactly as the hand-written dialect renders it.
    let other = device("0A-0B-0C-0D-0E-0F", "1.0.600.1");
    assert_eq!(d.encode_request(&other), foreign().encode_request(&other));
    let CheckResponse::Update(offer) = d.decode_reply(FOREIGN_REPLY.as_bytes()).unwrap() else {
        panic!("no offer")
    };
    assert_eq!(offer.version.to_string(), "1.0.522.200");
    assert_eq!(offer.files.len(), 2);
    // And `check` shows the capture reproduced byte for byte.
    let report = check(d, &exchange).unwrap();
    assert!(report.identical, "{report:?}");
    assert_eq!(report.offers.unwrap().len(), 1);
}

#[test]
fn learns_our_own_format_too() {
    let exchange = Exchange {
        method: "POST".into(),
        path: "/RequestHandler/ucdevice.upx".into(),
        headers: vec![("Content-Type".into(), "text/xml; charset=utf-8".into())],
        request: fixture("check_request.xml"),
        reply: fixture("check_response_update.xml"),
    };
    let learned = learn("ours", &exchange, &Hints::default()).unwrap();
    let other = device("0A-0B-0C-0D-0E-0F", "1.0.600.1");
    assert_eq!(learned.dialect.encode_request(&other), other.encode());
    let reply = fixture("check_response_update.xml");
    assert_eq!(
        learned.dialect.decode_reply(&reply).unwrap(),
        CheckResponse::decode(&reply).unwrap()
    );
    assert!(check(&learned.dialect, &exchange).unwrap().identical);
}

#[test]
fn ambiguous_captures_ask_for_a_hint() {
    let mut two_macs = foreign_exchange();
    let body = String::from_utf8(two_macs.request.clone()).unwrap();
    two_macs.request = body
        .replace("<fw:Sn>", "<fw:Wifi>00:04:f2:00:01:99</fw:Wifi><fw:Sn>")
        .into_bytes();
    let err = learn("x", &two_macs, &Hints::default()).unwrap_err();
    assert!(
        matches!(err, LearnError::Ambiguous { flag, .. } if flag.starts_with("--mac")),
        "{err}"
    );
    let hinted = Hints {
        mac: Some("00-04-F2-00-01-76".into()),
        ..Hints::default()
    };
    let learned = learn("x", &two_macs, &hinted).unwrap();
    assert!(
        learned
            .toml
            .contains("<fw:Wifi>00:04:f2:00:01:99</fw:Wifi>"),
        "the other MAC stays literal"
    );

    let mut twice = foreign_exchange();
    twice.request = body
        .replace("<fw:Sn>", "<fw:Firmware>1.0.522.101</fw:Firmware><fw:Sn>")
        .into_bytes();
    let err = learn("x", &twice, &Hints::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--version") && err.contains("Firmware") && err.contains("Rev"),
        "{err}"
    );
    let by_field = Hints {
        version: Some("Rev".into()),
        ..Hints::default()
    };
    assert!(learn("x", &twice, &by_field).is_ok());
}

#[test]
fn captures_that_cannot_teach_say_why() {
    let mut no_offer = foreign_exchange();
    no_offer.reply = br#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:r="urn:example:firmware-check:2"><s:Body><r:CheckFirmwareResult/></s:Body></s:Envelope>"#.to_vec();
    let err = learn("x", &no_offer, &Hints::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("offers no update"), "{err}");
    let mut no_reply = foreign_exchange();
    no_reply.reply.clear();
    assert!(learn("x", &no_reply, &Hints::default())
        .unwrap_err()
        .to_string()
        .contains("no reply"));
    let mut not_a_check = foreign_exchange();
    not_a_check.request = b"<Hello>world</Hello>".to_vec();
    assert!(learn("x", &not_a_check, &Hints::default())
        .unwrap_err()
        .to_string()
        .contains("version"));
    let mut binary = foreign_exchange();
    binary.request = vec![0x16, 0x03, 0x01, 0x02, 0x00];
    assert!(matches!(
        learn("x", &binary, &Hints::default()),
        Err(LearnError::RequestNotXml(_))
    ));
}

/// A check listing `modules` (file, version) after the fixture's CPE module.
fn several(modules: &[(&str, &str)]) -> CheckRequest {
    let mut request = device("00-04-F2-00-01-76", "1.0.522.101");
    for (file, version) in modules {
        let file_name = crate::identity::FileName::new(file).unwrap();
        request.modules.push(crate::wire::InstalledModule {
            update_type: crate::identity::PathSegment::new(file_name.stem()).unwrap(),
            file_name,
            version: version.parse().unwrap(),
            timestamp: Some("2009-06-01T10:00:00Z".into()),
        });
    }
    request
}

#[test]
fn a_check_with_several_modules_teaches_the_module_section() {
    for (name, dialect) in [("foreign", foreign()), ("ours", Dialect::builtin())] {
        let request = several(&[("UCUpdater.nbt", "1.0.0.7"), ("Lang.bin", "1.0.522.101")]);
        let mut exchange = foreign_exchange();
        exchange.request = dialect.encode_request(&request).into_bytes();
        if name == "ours" {
            exchange.reply = fixture("check_response_update.xml");
        }
        let learned = learn("pool", &exchange, &Hints::default()).unwrap();
        let toml = &learned.toml;
        assert_eq!(toml.matches("{{#modules}}").count(), 1, "{name}: {toml}");
        assert!(
            !toml.contains("UCUpdater") && !toml.contains("1.0.0.7"),
            "{name}: {toml}"
        );
        let report = check(&learned.dialect, &exchange).unwrap();
        assert!(report.identical, "{name}: {toml}");
        assert_eq!(report.device.modules, request.modules, "{name}");
        // Another device with another number of modules renders as its own phone would.
        let other = several(&[("X.nbt", "2.0.0.1")]);
        assert_eq!(
            learned.dialect.encode_request(&other),
            dialect.encode_request(&other),
            "{name}"
        );
        assert_eq!(
            learned
                .dialect
                .decode_request(dialect.encode_request(&other).as_bytes()),
            Ok(other),
            "{name}"
        );
    }
}
