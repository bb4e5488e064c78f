//! Downloads over real loopback sockets and TLS: whole files, a cut and its resume, a server
//! that ignores ranges, 416 at the end, bytes that differ from the offer, the discard sink and
//! the rate cap (paused time).

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::net_support::*;
use bytes::Bytes;
use ucupdate_agent::clock;
use ucupdate_agent::net::{self, DownloadSink, ErrorClass, NetError, RequestShaping};
use ucupdate_protocol::{FileKind, FileName, OfferedFile};

const PATH: &str = "/DeviceUpdateFiles_Ext/UCPhone/Polycom/CX700/A/ENU/1.0.522.200/CPE/CPE.nbt";

fn offered(data: &[u8], with_size: bool, with_hash: bool) -> OfferedFile {
    OfferedFile {
        kind: FileKind::Image,
        file_name: FileName::new("CPE.nbt").unwrap(),
        size: with_size.then_some(data.len() as u64),
        sha256: with_hash.then(|| sha256(data)),
    }
}

#[tokio::test]
async fn whole_file_over_tls_is_written_and_verified() {
    let data = file_bytes(300_000);
    let pki = Pki::new();
    let served = data.clone();
    let server = TestServer::tls(&pki, handler(move |req, _| serve_file(req, &served))).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("CPE.nbt");
    let (got, stats) = net::download_to(
        &pki.client(),
        &server.url(PATH),
        &offered(&data, true, true),
        DownloadSink::File(&dest),
        0,
        None,
    )
    .await;
    let got = got.unwrap();
    assert_eq!(
        (got.size, got.sha256, got.resumed_from),
        (300_000, Some(sha256(&data)), 0)
    );
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(stats.bytes_received, 300_000);
    assert!(server.seen()[0].header("range").is_none());
}

#[tokio::test]
async fn a_cut_keeps_the_prefix_and_the_resume_completes_it() {
    let data = file_bytes(200_000);
    let pki = Pki::new();
    let served = data.clone();
    let first = Arc::new(AtomicUsize::new(0));
    let server = TestServer::tls(
        &pki,
        handler(move |req, _| {
            if first.fetch_add(1, Ordering::SeqCst) == 0 {
                // Promise the whole file, send 70 000 bytes, drop the connection.
                let mut r = http::Response::new(TestBody::Cut(Some(served.slice(..70_000))));
                r.headers_mut()
                    .insert("content-length", served.len().into());
                return r;
            }
            serve_file(req, &served)
        }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("CPE.nbt");
    let client = pki.client();
    let expected = offered(&data, true, true);
    let err = net::download(&client, &server.url(PATH), &expected, &dest, 0, None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transport, "{err}");
    let on_disk = err.bytes_on_disk().unwrap();
    assert_eq!(on_disk, std::fs::metadata(&dest).unwrap().len());
    assert!(on_disk > 0 && on_disk <= 70_000, "{on_disk}");

    let got = net::download(&client, &server.url(PATH), &expected, &dest, on_disk, None)
        .await
        .unwrap();
    assert_eq!(got.resumed_from, on_disk);
    assert_eq!(got.sha256, Some(sha256(&data)));
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(
        server.seen()[1].header("range"),
        Some(format!("bytes={on_disk}-").as_str())
    );
}

#[tokio::test]
async fn a_server_ignoring_the_range_restarts_the_file() {
    let data = file_bytes(50_000);
    let served = data.clone();
    let server = TestServer::plain(handler(move |_, _| respond(200, served.clone()))).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("CPE.nbt");
    // A stale prefix that is NOT the start of this file: only a restart can produce the hash.
    std::fs::write(&dest, vec![0xEEu8; 10_000]).unwrap();
    let got = net::download(
        &Pki::new().client(),
        &server.url(PATH),
        &offered(&data, true, true),
        &dest,
        10_000,
        None,
    )
    .await
    .unwrap();
    assert_eq!(got.resumed_from, 0);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(server.seen()[0].header("range"), Some("bytes=10000-"));
}

#[tokio::test]
async fn range_not_satisfiable_at_the_end_verifies_what_is_there() {
    let data = file_bytes(4096);
    let served = data.clone();
    let server = TestServer::plain(handler(move |req, _| serve_file(req, &served))).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("CPE.nbt");
    std::fs::write(&dest, &data).unwrap();
    // No size in the offer: the client must ask, and the 416 says the file is complete.
    let got = net::download(
        &Pki::new().client(),
        &server.url(PATH),
        &offered(&data, false, true),
        &dest,
        4096,
        None,
    )
    .await
    .unwrap();
    assert_eq!((got.size, got.resumed_from), (4096, 4096));
    assert_eq!(server.seen().len(), 1);

    // With the size known, a complete file needs no request at all.
    let got = net::download(
        &Pki::new().client(),
        &server.url(PATH),
        &offered(&data, true, true),
        &dest,
        4096,
        None,
    )
    .await
    .unwrap();
    assert_eq!(got.size, 4096);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_416_for_a_changed_file_starts_over() {
    let data = file_bytes(4096);
    let served = data.clone();
    let server = TestServer::plain(handler(move |req, _| serve_file(req, &served))).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("CPE.nbt");
    std::fs::write(&dest, vec![1u8; 5000]).unwrap();
    let got = net::download(
        &Pki::new().client(),
        &server.url(PATH),
        &offered(&data, false, true),
        &dest,
        5000,
        None,
    )
    .await
    .unwrap();
    assert_eq!(got.resumed_from, 0);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let seen = server.seen();
    assert_eq!((seen.len(), seen[1].header("range")), (2, None));
}

#[tokio::test]
async fn different_bytes_than_advertised_are_a_hash_mismatch_and_removed() {
    let advertised = file_bytes(64_000);
    let mut tampered = advertised.to_vec();
    tampered[40_000] ^= 0xFF;
    let tampered = Bytes::from(tampered);
    let pki = Pki::new();
    let server = TestServer::tls(&pki, handler(move |req, _| serve_file(req, &tampered))).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("CPE.nbt");
    let err = net::download(
        &pki.client(),
        &server.url(PATH),
        &offered(&advertised, true, true),
        &dest,
        0,
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, NetError::HashMismatch { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::HashMismatch);
    assert!(!dest.exists(), "a file that fails verification is removed");
}

#[tokio::test]
async fn a_different_size_is_refused_before_and_while_streaming() {
    let advertised = file_bytes(10_000);
    let longer = file_bytes(12_000);
    let served = longer.clone();
    let server = TestServer::plain(handler(move |req, _| match req.path.as_str() {
        "/chunked" => {
            // No Content-Length: the size check has to happen while streaming.
            let mut r = http::Response::new(TestBody::Full(Some(served.clone())));
            r.headers_mut()
                .insert("transfer-encoding", "chunked".parse().unwrap());
            r
        }
        _ => serve_file(req, &served),
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = Pki::new().client();
    for path in ["/file", "/chunked"] {
        let dest = dir.path().join("CPE.nbt");
        let err = net::download(
            &client,
            &server.url(path),
            &offered(&advertised, true, false),
            &dest,
            0,
            None,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                NetError::SizeMismatch {
                    expected: 10_000,
                    ..
                }
            ),
            "{path}: {err}"
        );
        assert!(!dest.exists());
    }
}

#[tokio::test]
async fn a_missing_file_is_a_4xx_and_keeps_the_partial() {
    let server = TestServer::plain(handler(|_, _| respond(404, "gone"))).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("CPE.nbt");
    std::fs::write(&dest, b"prefix").unwrap();
    let data = file_bytes(100);
    let err = net::download(
        &Pki::new().client(),
        &server.url(PATH),
        &offered(&data, true, true),
        &dest,
        6,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.class(), err.status(), err.bytes_on_disk()),
        (ErrorClass::Http4xx, Some(404), Some(6))
    );
    assert_eq!(std::fs::read(&dest).unwrap(), b"prefix");
}

#[tokio::test]
async fn discard_sink_counts_and_hashes_without_a_file() {
    let data = file_bytes(123_457);
    let served = data.clone();
    let server = TestServer::plain(handler(move |req, _| serve_file(req, &served))).await;
    let client = Pki::new().client();
    let (got, stats) = net::download_to(
        &client,
        &server.url(PATH),
        &offered(&data, true, true),
        DownloadSink::Discard,
        0,
        None,
    )
    .await;
    assert_eq!(got.unwrap().sha256, Some(sha256(&data)));
    assert_eq!(stats.bytes_received, 123_457);
    // Resumed into nothing: size is still checked, the hash cannot be.
    let (got, stats) = net::download_to(
        &client,
        &server.url(PATH),
        &offered(&data, true, true),
        DownloadSink::Discard,
        100_000,
        None,
    )
    .await;
    let got = got.unwrap();
    assert_eq!(
        (got.size, got.sha256, got.resumed_from),
        (123_457, None, 100_000)
    );
    assert_eq!(stats.bytes_received, 23_457);
}

#[tokio::test(start_paused = true)]
async fn the_rate_cap_paces_the_body() {
    let data = file_bytes(20_000);
    let served = data.clone();
    let server = TestServer::plain(handler(move |req, _| serve_file(req, &served))).await;
    let client = Pki::new().client().shaped(RequestShaping {
        bytes_per_sec: NonZeroU64::new(10_000),
        added_latency: Duration::ZERO,
    });
    let start = clock::monotonic();
    let (got, _) = net::download_to(
        &client,
        &server.url(PATH),
        &offered(&data, true, true),
        DownloadSink::Discard,
        0,
        None,
    )
    .await;
    assert!(got.is_ok());
    assert_eq!(clock::elapsed(start), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_stalled_download_is_a_cut_with_its_bytes() {
    let data = file_bytes(10_000);
    let served = data.clone();
    let server = TestServer::plain(handler(move |_, _| {
        let mut r = http::Response::new(TestBody::Stall(Some(served.slice(..3000))));
        r.headers_mut()
            .insert("content-length", "10000".parse().unwrap());
        r
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("CPE.nbt");
    let err = net::download(
        &Pki::new().client(),
        &server.url(PATH),
        &offered(&data, true, true),
        &dest,
        0,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.class(), err.bytes_on_disk()),
        (ErrorClass::Timeout, Some(3000))
    );
    assert_eq!(std::fs::read(&dest).unwrap(), &data[..3000]);
}

#[tokio::test]
async fn a_wrong_content_range_drops_the_prefix_so_the_next_attempt_is_whole() {
    let data = file_bytes(8000);
    let served = data.clone();
    let server = TestServer::plain(handler(move |req, _| {
        if req.header("range").is_some() {
            // Claims to resume from the wrong place.
            let mut r = respond(206, served.slice(100..));
            r.headers_mut()
                .insert("content-range", "bytes 100-7999/8000".parse().unwrap());
            return r;
        }
        serve_file(req, &served)
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("CPE.nbt");
    std::fs::write(&dest, &data[..5000]).unwrap();
    let client = Pki::new().client();
    let expected = offered(&data, true, true);
    let err = net::download(&client, &server.url(PATH), &expected, &dest, 5000, None)
        .await
        .unwrap_err();
    assert_eq!(
        (err.class(), err.bytes_on_disk()),
        (ErrorClass::Protocol, Some(0))
    );
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), 0);
    let got = net::download(&client, &server.url(PATH), &expected, &dest, 0, None)
        .await
        .unwrap();
    assert_eq!(got.sha256, Some(sha256(&data)));
}

/// A cut several megabytes in, past many of the File sink's hand-offs to its writer thread and
/// past a write-back window: what is on disk is exactly the bytes received (nothing queued is
/// lost), and the resume completes the file.
#[tokio::test]
async fn a_cut_megabytes_in_keeps_every_byte_received_and_the_resume_completes_it() {
    let data = file_bytes(9_000_000);
    let cut = 6_543_211;
    let served = data.clone();
    let first = Arc::new(AtomicUsize::new(0));
    let server = TestServer::plain(handler(move |req, _| {
        if first.fetch_add(1, Ordering::SeqCst) == 0 {
            let mut r = http::Response::new(TestBody::Cut(Some(served.slice(..cut))));
            r.headers_mut()
                .insert("content-length", served.len().into());
            return r;
        }
        serve_file(req, &served)
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("CPE.nbt");
    let client = Pki::new().client();
    let expected = offered(&data, true, true);
    let err = net::download(&client, &server.url(PATH), &expected, &dest, 0, None)
        .await
        .unwrap_err();
    let on_disk = err.bytes_on_disk().unwrap();
    assert!(on_disk > 4 << 20 && on_disk <= cut as u64, "{on_disk}");
    assert_eq!(std::fs::read(&dest).unwrap(), &data[..on_disk as usize]);

    let got = net::download(&client, &server.url(PATH), &expected, &dest, on_disk, None)
        .await
        .unwrap();
    assert_eq!(
        (got.resumed_from, got.sha256),
        (on_disk, Some(sha256(&data)))
    );
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

/// Downloads `len` bytes into /dev/full, where every write fails with ENOSPC.
async fn download_into_a_full_disk(len: usize) -> (Result<net::DownloadedFile, NetError>, u64) {
    let data = file_bytes(len);
    let served = data.clone();
    let server = TestServer::plain(handler(move |req, _| serve_file(req, &served))).await;
    let full = std::path::Path::new("/dev/full");
    let (got, stats) = net::download_to(
        &Pki::new().client(),
        &server.url(PATH),
        &offered(&data, true, true),
        DownloadSink::File(full),
        0,
        None,
    )
    .await;
    assert!(full.exists(), "a failed write must never remove the file");
    (got, stats.bytes_received)
}

fn assert_write_error(got: Result<net::DownloadedFile, NetError>) {
    match got {
        Err(NetError::Io { op, path, error }) => assert_eq!(
            (op, path.as_str(), error.kind()),
            ("write", "/dev/full", std::io::ErrorKind::StorageFull)
        ),
        other => panic!("expected the write's error, got {other:?}"),
    }
}

/// A disk that refuses writes in the middle of a download: the writer thread's error comes
/// back as an I/O error naming the write and the file, and the download stops reading soon
/// after (within the writer's bounded queue), not at the end of the body.
#[tokio::test]
async fn a_write_error_mid_download_is_an_io_error_and_stops_the_download() {
    let len = 8_000_000;
    let (got, received) = download_into_a_full_disk(len).await;
    assert_write_error(got);
    assert!(received < len as u64 / 4, "read {received} of {len} bytes");
}

/// Bytes still queued when the body ends are written before anything is verified: a write that
/// fails then is the download's error, never a verified file.
#[tokio::test]
async fn a_write_error_on_the_last_bytes_is_an_error_not_a_verified_file() {
    // Smaller than one hand-off: nothing reaches the disk before the final sync.
    let (got, received) = download_into_a_full_disk(10_000).await;
    assert_write_error(got);
    assert_eq!(received, 10_000);
}
