//! Fuzzes the server stub's request handling without sockets, through the same public functions
//! its HTTP layer calls: the first byte picks the route. A check body goes through
//! `CheckRequest::decode` and `Model::decide` (a model with an approved and a pending rule and a
//! test device); a file URL through `StorePath::parse_file_path`; a log-upload query through
//! `LogUpload::from_query`. None may panic, and what each accepts must be safe to use: every
//! offered file URL parses back to the rule's store directory, and every accepted path or log
//! name joins under the data directory as plain components (no traversal).
#![no_main]
use std::path::{Component, Path};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ucupdate_protocol::{
    CheckRequest, CheckResponse, FileName, HttpUrl, LogUpload, Sha256Digest, StorePath, UpdateKey,
};
use ucupdate_server_stub::model::{BaseUrls, FileMeta, Model, TestDevice};

fn model() -> &'static (Model, BaseUrls) {
    static MODEL: OnceLock<(Model, BaseUrls)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let mut model = Model::default();
        let file = |name: &str| FileMeta {
            name: FileName::new(name).unwrap(),
            size: 10,
            sha256: Sha256Digest([name.len() as u8; 32]),
        };
        for (key, approve) in [
            ("UCPhone/Polycom/CX700/A/ENU/CPE", true),
            ("RoundTable/Microsoft/RT/A/ENU/CPE", false),
        ] {
            let key: UpdateKey = key.parse().unwrap();
            model.import(
                key.clone(),
                "1.0.522.101".parse().unwrap(),
                vec![file("CPE.nbt"), file("CPE.cat")],
                false,
            );
            if approve {
                model.approve(&key).unwrap();
            }
        }
        model
            .test_devices
            .insert(TestDevice::Mac("00-04-F2-00-01-76".parse().unwrap()));
        let bases = BaseUrls {
            internal: Some("http://pool.contoso.com:80/".parse::<HttpUrl>().unwrap()),
            external: Some("https://ext.contoso.com/".parse::<HttpUrl>().unwrap()),
        };
        (model, bases)
    })
}

fn plain_components(relative: &str) {
    for c in Path::new(relative).components() {
        assert!(
            matches!(c, Component::Normal(_)),
            "unsafe component in {relative:?}"
        );
    }
    assert!(!relative.contains('\\'), "backslash in {relative:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&route, rest)) = data.split_first() else {
        return;
    };
    match route % 3 {
        0 => {
            let Ok(request) = CheckRequest::decode(rest) else {
                return;
            };
            let (model, bases) = model();
            let decision = model.decide(&request, bases);
            let encoded = decision.response.encode();
            let again = CheckResponse::decode(encoded.as_bytes()).expect("own reply decodes");
            assert_eq!(again, decision.response);
            if let CheckResponse::Update(offer) = &decision.response {
                for file in &offer.files {
                    let url = format!("{}/{}", offer.base_url, file.file_name);
                    let url: HttpUrl = url.parse().expect("offered URL parses");
                    let (path, name) = StorePath::parse_file_path(&url.path).expect("store path");
                    assert_eq!(path.version, offer.version);
                    assert_eq!(name, file.file_name);
                }
            }
        }
        1 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok((path, file)) = StorePath::parse_file_path(text) {
                plain_components(&format!("{}/{}", path.relative_dir(), file));
                let again = StorePath::parse_file_path(&path.file_url_path(&file)).expect("again");
                assert_eq!(again, (path, file));
            }
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(Some(upload)) = LogUpload::from_query(text) {
                plain_components(&format!(
                    "{}/{}/{}",
                    upload.device,
                    upload.log_type.as_str(),
                    upload.file_name
                ));
                let again = LogUpload::from_query(&upload.to_query()).expect("again");
                assert_eq!(again, Some(upload));
            }
        }
    }
});
