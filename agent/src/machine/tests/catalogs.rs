//! Catalogs and the anti-rollback floor (issue 12, rules 1-2).

use super::*;

fn catalog_says(verdict: CatalogVerdict) -> Event {
    Event::DownloadDone(Ok(DownloadedFile {
        file_name: FileName::new("CPE.cat").unwrap(),
        size: 100,
        sha256: None,
        catalog: verdict,
    }))
}

/// The offer is refused with `kind`, nothing more is fetched, and the next request is the
/// regular check a poll interval later (counted once, never a tight loop).
fn assert_untrusted(r: &mut Rig, a: &[Action], kind: RefusalKind) {
    assert!(
        a.iter().all(|a| !matches!(a, Action::Download { .. })),
        "{a:?}"
    );
    let s = r.m.status();
    assert_eq!(s.last_outcome, Some(CheckOutcome::Untrusted(kind)));
    assert_eq!(r.m.phase(), Phase::Idle);
    assert_eq!(r.m.persisted().download, None);
    assert_eq!(r.m.persisted().install, None);
    let at = r.now.0 + DAY;
    assert_eq!(names(&r.tick_at(at)), ["check"]);
}

#[test]
fn an_offer_without_a_catalog_is_refused_before_any_download() {
    let mut o = offer(new_version());
    o.files.retain(|f| f.kind != FileKind::Catalog);
    let (mut r, a) = offered(config(|_| {}), PersistedState::new(old()), o);
    assert_untrusted(&mut r, &a, RefusalKind::Unsigned);
    assert_eq!(r.m.status().last_outcome.unwrap().code(), 0x3);
}

#[test]
fn an_offer_with_a_catalog_but_no_image_is_a_protocol_failure_not_a_trust_one() {
    // Nothing to install and nothing for the catalog to vouch for: it used to be fetched,
    // left unverified and refused as "no catalog trust anchors", which sent the reader to
    // the device's `[trust]` settings for a fault of the server's.
    let mut o = offer(new_version());
    o.files.retain(|f| f.kind != FileKind::Image);
    assert!(o.files.iter().any(|f| f.kind == FileKind::Catalog));
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    let a = r.send(Event::CheckDone(Ok(CheckResponse::Update(o))));
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(r.m.status().last_error, Some(FailureClass::Protocol));
    assert_eq!(r.m.phase(), Phase::Backoff);
    assert_eq!(r.m.persisted().download, None);
}

#[test]
fn a_catalog_that_does_not_verify_stops_the_update_before_the_image() {
    use crate::trust::Refusal;
    for (refusal, code) in [
        (Refusal::BadSignature("tampered"), 0x3),
        (Refusal::UnknownSigner("another CA".into()), 0x2),
        (Refusal::NotCodeSigning, 0x2),
        (Refusal::Expired("2019".into()), 0x2),
        (Refusal::NotInCatalog("CPE.nbt".into()), 0x4),
        (Refusal::NoAnchors, 0x2),
    ] {
        let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
        r.tick_at(0);
        r.send(update(new_version()));
        let kind = refusal.kind();
        let a = r.send(catalog_says(CatalogVerdict::Refused(refusal)));
        assert_untrusted(&mut r, &a, kind);
        let text = r.m.status().last_outcome.unwrap().to_string();
        assert!(
            text.starts_with(&format!("update refused (0x{code:x})")),
            "{text}"
        );
    }
    // A device that was not asked to skip verification refuses an unchecked catalog.
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    let a = r.send(catalog_says(CatalogVerdict::NotChecked));
    assert_untrusted(&mut r, &a, RefusalKind::NoAnchors);
}

#[test]
fn the_catalog_digest_must_agree_with_the_reply_and_sha1_listings_reach_the_download() {
    use crate::trust::ListedDigest;
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    let a = r.send(catalog_says(CatalogVerdict::Listed(ListedDigest::Sha256(
        [9; 32],
    ))));
    assert_untrusted(&mut r, &a, RefusalKind::DigestMismatch);
    // A legacy catalog's SHA-1 listing goes with the image download.
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    let a = r.send(catalog_says(CatalogVerdict::Listed(ListedDigest::Sha1(
        [7; 20],
    ))));
    let Some(Action::Download {
        file, expect_sha1, ..
    }) = a.last()
    else {
        panic!("{a:?}")
    };
    assert_eq!(
        (file.file_name.as_str(), *expect_sha1),
        ("CPE.nbt", Some([7; 20]))
    );
    // With verification off (the simulator's `--trust none`) an unchecked catalog passes.
    let cfg = config(|c| c.offer_policy.require_catalog = false);
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    let a = r.send(catalog_says(CatalogVerdict::NotChecked));
    assert_eq!(download_of(a.last().unwrap()).1, "CPE.nbt");
}

#[test]
fn the_floor_refuses_older_offers_below_it_but_allows_a_restore_above_it() {
    let floor = v("2.0.0.0");
    let cfg = config(|c| c.offer_policy.min_version = Some(floor));
    let current = v("3.0.0.0");
    // A restore to an older version above the floor is legitimate.
    let (_, a) = offered(
        cfg.clone(),
        PersistedState::new(current),
        offer(v("2.5.0.0")),
    );
    assert_eq!(names(&a), ["persist", "download"]);
    // Below the floor: refused, nothing fetched.
    let (mut r, a) = offered(cfg, PersistedState::new(current), offer(v("1.9.9.9")));
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(
        r.m.status().last_outcome,
        Some(CheckOutcome::Refused(OfferRefusal::BelowFloor))
    );
    assert_eq!(names(&r.tick_at(DAY)), ["check"]);
}
