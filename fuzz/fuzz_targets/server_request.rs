//! Fuzzes the server stub's request handling without sockets, through its socket-free core
//! (`App::call`, the same entry point its listeners use): the first byte picks the route.
//! A check body is POSTed to the internal handler of an app with an approved and a pending rule
//! and a test device; a request target is sent as a `GET` of the internal site; a log-upload
//! query is POSTed with a small log; an `Authorization` header goes to the external site on a
//! fresh connection. No input may panic or get a 5xx, and what each accepts must be safe to
//! use: an offer decodes and every offered file URL parses back to the rule's store directory,
//! a served file's path is plain components, a stored log's name joins under the data
//! directory as plain components (no traversal), and no token authenticates a connection
//! without a handshake. The pure functions behind each route are checked directly too.
#![no_main]
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use ucupdate_protocol::wire::{EXTERNAL_HANDLER_PATH, INTERNAL_HANDLER_PATH};
use ucupdate_protocol::{CheckResponse, FileName, HttpUrl, LogUpload, StorePath, UpdateKey};
use ucupdate_server_stub::{App, ConnState, ServerConfig, Site, TestDevice};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: App,
    data: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let data =
            std::env::temp_dir().join(format!("ucupdate-fuzz-request-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let mut config = ServerConfig::loopback(&data);
        config.public_internal_url = Some("http://pool.contoso.com:80/".parse().unwrap());
        config.public_external_url = Some("https://ext.contoso.com/".parse().unwrap());
        let app = App::open(&config).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let control = app.control();
            for (key, approve) in [
                ("UCPhone/Polycom/CX700/A/ENU/CPE", true),
                ("RoundTable/Microsoft/RT/A/ENU/CPE", false),
            ] {
                let key: UpdateKey = key.parse().unwrap();
                let files = ["CPE.nbt", "CPE.cat"]
                    .map(|name| (FileName::new(name).unwrap(), name.as_bytes().to_vec()));
                control
                    .publish(&key, "1.0.522.101".parse().unwrap(), files.to_vec())
                    .await
                    .unwrap();
                if approve {
                    control.approve(&key).await.unwrap();
                }
            }
            control
                .add_test_device(TestDevice::Mac("00-04-F2-00-01-76".parse().unwrap()))
                .await
                .unwrap();
        });
        Fixture { runtime, app, data }
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

/// One request on a fresh connection of `site`: the status and the whole body.
fn call(site: Site, request: Request<Full<Bytes>>) -> (StatusCode, Bytes) {
    let f = fixture();
    let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
    let mut conn = ConnState::new(site, peer);
    f.runtime.block_on(async {
        let response = f.app.call(request, &mut conn).await;
        let status = response.status();
        let body = response.into_body().collect().await.expect("body");
        assert!(!status.is_server_error(), "{status}");
        (status, body.to_bytes())
    })
}

fn check(body: &[u8]) {
    let request = Request::post(INTERNAL_HANDLER_PATH)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let (status, reply) = call(Site::Internal, request);
    if status != StatusCode::OK {
        return;
    }
    let response = CheckResponse::decode(&reply).expect("own reply decodes");
    assert_eq!(
        CheckResponse::decode(response.encode().as_bytes()).unwrap(),
        response
    );
    if let CheckResponse::Update(offer) = &response {
        for file in &offer.files {
            let url = format!("{}/{}", offer.base_url, file.file_name);
            let url: HttpUrl = url.parse().expect("offered URL parses");
            let (path, name) = StorePath::parse_file_path(&url.path).expect("store path");
            assert_eq!(path.version, offer.version);
            assert_eq!(name, file.file_name);
        }
    }
}

fn download(target: &str) {
    if let Ok((path, file)) = StorePath::parse_file_path(target) {
        plain_components(&format!("{}/{}", path.relative_dir(), file));
        let again = StorePath::parse_file_path(&path.file_url_path(&file)).expect("again");
        assert_eq!(again, (path, file));
    }
    let Ok(request) = Request::get(target).body(Full::new(Bytes::new())) else {
        return; // Not a request target hyper would pass on either.
    };
    let (status, _) = call(Site::Internal, request);
    if status.is_success() {
        let path = request_path(target);
        let (store, file) = StorePath::parse_file_path(&path).expect("served a store path");
        plain_components(&format!("{}/{}", store.relative_dir(), file));
    }
}

/// The path part of a request target (origin or absolute form).
fn request_path(target: &str) -> String {
    target
        .parse::<http::Uri>()
        .map(|u| u.path().to_owned())
        .unwrap_or_default()
}

fn log_upload(query: &str) {
    let accepted = match LogUpload::from_query(query) {
        Ok(Some(upload)) => {
            plain_components(&format!(
                "{}/{}/{}",
                upload.device,
                upload.log_type.as_str(),
                upload.file_name
            ));
            let again = LogUpload::from_query(&upload.to_query()).expect("again");
            assert_eq!(again.as_ref(), Some(&upload));
            Some(upload)
        }
        _ => None,
    };
    let target = format!("{INTERNAL_HANDLER_PATH}?{query}");
    let Ok(request) = Request::post(target.as_str()).body(Full::new(Bytes::from_static(b"log")))
    else {
        return;
    };
    // The handler sees the query as the URI carries it, which may differ from `query` when
    // `query` holds a `#`: judge what was stored by what the handler parsed.
    let seen = request.uri().query().unwrap_or("").to_owned();
    let (status, _) = call(Site::Internal, request);
    if status == StatusCode::OK {
        let upload = match accepted {
            Some(upload) if seen == query => upload,
            _ => LogUpload::from_query(&seen)
                .ok()
                .flatten()
                .expect("a stored log had a valid query"),
        };
        let stored = fixture()
            .data
            .join("logs")
            .join(upload.device.as_str())
            .join(upload.log_type.as_str())
            .join(upload.file_name.as_str());
        assert!(stored.starts_with(fixture().data.join("logs")));
        let _ = std::fs::remove_file(stored);
    }
}

fn authorization(value: &[u8]) {
    let Ok(value) = http::HeaderValue::from_bytes(value) else {
        return;
    };
    let request = Request::post(EXTERNAL_HANDLER_PATH)
        .header("authorization", value)
        .body(Full::new(Bytes::from_static(b"<DeviceUpdateRequest/>")))
        .unwrap();
    let (status, _) = call(Site::External, request);
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a token alone authenticated"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&route, rest)) = data.split_first() else {
        return;
    };
    match route % 4 {
        0 => check(rest),
        3 => authorization(rest),
        other => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if other == 1 {
                download(text);
            } else {
                log_upload(text);
            }
        }
    }
});
