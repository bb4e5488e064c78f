//! Update file downloads: single ranges (206, 416), HEAD, `Accept-Ranges`, `Content-Length`,
//! the content type per kind (the missing `.nbt` mapping was a real field failure), and each
//! share served only by its own site. In memory, except the internal HTTPS listener.

use http::{Method, StatusCode};
use ucupdate_server_stub::Site;

use crate::common::*;

const DIR: &str = "/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/2.0.0.0/CPE";

async fn published() -> (TestApp, Vec<u8>) {
    let t = app();
    let f = files("v2");
    let image = f[0].1.clone();
    t.control().publish(&key(), v("2.0.0.0"), f).await.unwrap();
    (t, image)
}

#[tokio::test]
async fn ranges_and_heads() {
    let (t, image) = published().await;
    let len = image.len();
    let mut c = t.conn(Site::Internal);
    let path = format!("{DIR}/CPE.nbt");

    let full = c.get(&path, &[]).await;
    assert_eq!(full.status, StatusCode::OK);
    assert_eq!(full.body, image);
    assert_eq!(full.header("accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(full.header("content-length"), Some(len.to_string()));

    let part = c.get(&path, &[("range", "bytes=10-19")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&part.body[..], &image[10..20]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 10-19/{len}"))
    );
    assert_eq!(part.header("content-length").as_deref(), Some("10"));

    let resume = c
        .get(&path, &[("range", &format!("bytes={}-", len - 5))])
        .await;
    assert_eq!(
        (resume.status, &resume.body[..]),
        (StatusCode::PARTIAL_CONTENT, &image[len - 5..])
    );

    let suffix = c.get(&path, &[("range", "bytes=-7")]).await;
    assert_eq!(&suffix.body[..], &image[len - 7..]);

    let beyond = c.get(&path, &[("range", &format!("bytes={len}-"))]).await;
    assert_eq!(beyond.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        beyond.header("content-range"),
        Some(format!("bytes */{len}"))
    );

    let multi = c.get(&path, &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(
        (multi.status, multi.body.len()),
        (StatusCode::OK, len),
        "multiple ranges get the whole file"
    );

    let head = c.send(Method::HEAD, &path, &[], "").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some(len.to_string()));
    assert!(head.body.is_empty());

    // The connection survived all of that.
    assert_eq!(c.get(&path, &[("range", "bytes=0-0")]).await.body.len(), 1);
    let served = t.control().metrics().bytes_served;
    assert_eq!(served, (len + 10 + 5 + 7 + len + 1) as u64);
}

#[tokio::test]
async fn content_type_per_kind() {
    let (t, _) = published().await;
    let mut c = t.conn(Site::Internal);
    for (name, expected) in [
        ("CPE.nbt", "application/octet-stream"),
        ("CPE.cat", "application/vnd.ms-pki.seccat"),
        ("CPE.xml", "text/xml"),
    ] {
        let r = c.get(&format!("{DIR}/{name}"), &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{name}");
        assert!(!r.body.is_empty(), "{name} came back empty");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some(expected),
            "{name}"
        );
    }
}

#[tokio::test]
async fn each_share_only_on_its_site_and_missing_files() {
    let (t, _) = published().await;
    let mut internal = t.conn(Site::Internal);
    let ext_path = DIR.replace("_Int", "_Ext") + "/CPE.nbt";
    assert_eq!(
        internal.get(&ext_path, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        internal
            .get(&format!("{DIR}/Missing.nbt"), &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let other_version = DIR.replace("2.0.0.0", "9.9.9.9") + "/CPE.nbt";
    assert_eq!(
        internal.get(&other_version, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let post = internal
        .send(Method::POST, &format!("{DIR}/CPE.nbt"), &[], "")
        .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header("allow").as_deref(), Some("GET, HEAD"));
}

/// The internal HTTPS listener serves the same share as the plain one, over real TLS.
#[tokio::test]
async fn the_internal_tls_listener_serves_the_internal_share() {
    let t = start().await;
    let published = files("v2");
    let catalog = published[1].1.clone();
    t.server
        .control()
        .publish(&key(), v("2.0.0.0"), published)
        .await
        .unwrap();
    let mut tls = Conn::tls(t.server.internal_tls_addr().unwrap(), t.server.ca_pem()).await;
    assert_eq!(
        tls.get(&format!("{DIR}/CPE.cat"), &[]).await.body,
        &catalog[..]
    );
    let ext_path = DIR.replace("_Int", "_Ext") + "/CPE.cat";
    assert_eq!(tls.get(&ext_path, &[]).await.status, StatusCode::NOT_FOUND);
}

/// Lync's store roots (`/RequestHandler/Files`, `/RequestHandlerExt/Files`) next to R2's:
/// both served whatever `--store-layout` says; the layout picks what the offers name.
#[tokio::test]
async fn both_store_layouts_are_served_and_the_offer_names_the_chosen_one() {
    use ucupdate_protocol::CheckResponse;
    use ucupdate_server_stub::layout::StoreLayout;
    for layout in [StoreLayout::R2, StoreLayout::Lync] {
        let t = app_with(tempfile::tempdir().unwrap(), |c| c.store_layout = layout);
        let f = files("v2");
        let image = f[0].1.clone();
        t.control().publish(&key(), v("2.0.0.0"), f).await.unwrap();
        t.control().approve(&key()).await.unwrap();
        let mut c = t.conn(Site::Internal);
        let CheckResponse::Update(offer) = c.check("1.0.0.0", MAC).await else {
            panic!("no offer")
        };
        let (int, ext) = match layout {
            StoreLayout::R2 => ("DeviceUpdateFiles_Int/", "DeviceUpdateFiles_Ext/"),
            StoreLayout::Lync => ("RequestHandler/Files/", "RequestHandlerExt/Files/"),
        };
        let rest = "UCPhone/Polycom/CX700/A/ENU/2.0.0.0/CPE";
        assert_eq!(
            offer.base_url,
            format!("{INTERNAL_BASE}{int}{rest}"),
            "{layout}"
        );
        assert_eq!(
            offer.external_base_url,
            format!("{EXTERNAL_BASE}{ext}{rest}"),
            "{layout}"
        );
        // The offered URL downloads, and so does the other layout's.
        for root in [
            "/DeviceUpdateFiles_Int",
            "/RequestHandler/Files",
            "/requesthandler/files",
        ] {
            let r = c.get(&format!("{root}/{rest}/CPE.nbt"), &[]).await;
            assert_eq!(r.status, StatusCode::OK, "{layout} {root}");
            assert_eq!(r.body, image);
        }
        assert_eq!(
            c.get(&path_of(&format!("{}/CPE.nbt", offer.base_url)), &[])
                .await
                .status,
            StatusCode::OK
        );
        // Each share on its own site, in both layouts; traversal refused under Lync's too.
        let ext_on_int = c
            .get(&format!("/RequestHandlerExt/Files/{rest}/CPE.nbt"), &[])
            .await;
        assert_eq!(ext_on_int.status, StatusCode::NOT_FOUND);
        for bad in [
            "/RequestHandler/Files/UCPhone/%2e%2e/%2e%2e/state.sqlite",
            "/RequestHandler/Files/UCPhone/Polycom/CX700/A/ENU/2.0.0.0/%2e%2e/state.sqlite",
        ] {
            let up = c.get(bad, &[]).await;
            assert!(up.status.is_client_error(), "{bad}: {}", up.status);
        }
    }
}
