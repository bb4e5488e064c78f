//! R2's RoundTable rule: every RoundTable update carries a generic `RTConfig.xml`. The stub
//! adds one to an update that lacks it (package import, `Control::publish`, the admin
//! publish) and offers it with the image (kind `rtconfig`); a package's own is kept; other
//! device types get none.

use http::{Method, StatusCode};
use ucupdate_protocol::{
    CheckRequest, CheckResponse, FileKind, FileName, InstalledModule, PathSegment, UpdateKey,
};
use ucupdate_server_stub::roundtable::GENERIC_RTCONFIG;
use ucupdate_server_stub::{PackageEntry, Site};

use crate::common::*;

const RT_KEY: &str = "RoundTable/Microsoft/RoundTable/A/ENU/RoundTable";

fn rt_key() -> UpdateKey {
    RT_KEY.parse().unwrap()
}

fn rt_check(running: &str) -> String {
    let mut identity = ucupdate_server_stub::testing::identity(MAC);
    identity.device_type = "RoundTable".parse().unwrap();
    identity.brand = "Microsoft".parse().unwrap();
    identity.model = "RoundTable".parse().unwrap();
    CheckRequest {
        identity,
        modules: vec![InstalledModule {
            update_type: PathSegment::new("RoundTable").unwrap(),
            file_name: FileName::new("RoundTable.nbt").unwrap(),
            version: v(running),
            timestamp: None,
        }],
        user: None,
    }
    .encode()
}

fn image(tag: &str) -> Vec<(FileName, Vec<u8>)> {
    vec![(
        FileName::new("RoundTable.nbt").unwrap(),
        format!("rt image {tag}").into_bytes(),
    )]
}

/// The offer's files as (name, kind), and the URL of the RTConfig.xml.
async fn offer(c: &mut Conn) -> (Vec<(String, FileKind)>, String) {
    let r = c
        .post(
            ucupdate_protocol::wire::INTERNAL_HANDLER_PATH,
            rt_check("1.0.0.0"),
        )
        .await;
    let CheckResponse::Update(offer) = r.check() else {
        panic!("no offer: {}", r.text())
    };
    let files = offer
        .files
        .iter()
        .map(|f| (f.file_name.to_string(), f.kind))
        .collect();
    (files, path_of(&format!("{}/RTConfig.xml", offer.base_url)))
}

#[tokio::test]
async fn an_imported_roundtable_update_without_rtconfig_gets_the_generic_one() {
    let t = app_with(tempfile::tempdir().unwrap(), |c| {
        c.deploy_roundtable_on_import = true
    });
    let pkg = tempfile::tempdir().unwrap();
    ucupdate_server_stub::package::write_cab(
        &pkg.path().join("UCUpdates.cab"),
        &[
            PackageEntry {
                key: rt_key(),
                version: v("2.0.0.0"),
                files: image("cab"),
            },
            PackageEntry {
                key: key(),
                version: v("2.0.0.0"),
                files: files("cab"),
            },
        ],
    )
    .unwrap();
    let imported = t
        .control()
        .import(pkg.path().join("UCUpdates.cab"))
        .await
        .unwrap();
    assert_eq!(
        imported[0].files, 2,
        "the image and the generic RTConfig.xml"
    );
    assert_eq!(imported[1].files, 3, "a UCPhone update gets none");

    let mut c = t.conn(Site::Internal);
    let (files, url) = offer(&mut c).await;
    assert_eq!(
        files,
        [
            ("RoundTable.nbt".to_owned(), FileKind::Image),
            ("RTConfig.xml".to_owned(), FileKind::RoundTableConfig)
        ]
    );
    let got = c.get(&url, &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(&got.body[..], GENERIC_RTCONFIG);
    assert_eq!(got.header("content-type").as_deref(), Some("text/xml"));
    // It is XML a device can read.
    assert!(std::str::from_utf8(&got.body)
        .unwrap()
        .contains("<RTConfig"));
}

#[tokio::test]
async fn a_packages_own_rtconfig_is_kept_and_publishes_get_one_too() {
    let t = app();
    let control = t.control();
    let mut own = image("own");
    own.push((
        FileName::new("rtconfig.xml").unwrap(),
        b"<RTConfig vendor=\"1\"/>".to_vec(),
    ));
    control.publish(&rt_key(), v("2.0.0.0"), own).await.unwrap();
    control.approve(&rt_key()).await.unwrap();
    let mut c = t.conn(Site::Internal);
    let (files, _) = offer(&mut c).await;
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.contains(&("rtconfig.xml".to_owned(), FileKind::RoundTableConfig)));

    // Control::publish without one: added.
    control
        .publish(&rt_key(), v("3.0.0.0"), image("3"))
        .await
        .unwrap();
    control.approve(&rt_key()).await.unwrap();
    let (files, _) = offer(&mut c).await;
    assert!(
        files.contains(&("RTConfig.xml".to_owned(), FileKind::RoundTableConfig)),
        "{files:?}"
    );

    // The admin publish of an image: added; publishing an RTConfig.xml then replaces it.
    let mut a = t.admin();
    let base = format!("/admin/files/{RT_KEY}/4.0.0.0");
    let put = a
        .send(
            Method::PUT,
            &format!("{base}/RoundTable.nbt"),
            &[],
            "image 4",
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    let dir = t
        .dir
        .path()
        .join("store/RoundTable/Microsoft/RoundTable/A/ENU/4.0.0.0/RoundTable");
    assert_eq!(
        std::fs::read(dir.join("RTConfig.xml")).unwrap(),
        GENERIC_RTCONFIG
    );
    let put = a
        .send(
            Method::PUT,
            &format!("{base}/RTConfig.xml"),
            &[],
            "<RTConfig mine=\"1\"/>",
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    assert_eq!(
        std::fs::read(dir.join("RTConfig.xml")).unwrap(),
        b"<RTConfig mine=\"1\"/>"
    );
    let versions = a.get("/admin/versions", &[]).await.text();
    assert_eq!(
        versions.matches("RTConfig.xml").count(),
        2,
        "3.0 and 4.0: {versions}"
    );
}
