//! The update lives in its states; offers refused by origin or declared size.

use super::*;

/// What the machine acts on in each phase of an update is the record that goes to disk, and it
/// is gone (from the state and from disk) once the phase is over.
#[test]
fn the_update_lives_in_the_states_that_act_on_it() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    let State::Downloading { update: u, .. } = &r.m.state else {
        panic!("{}", r.m.phase())
    };
    assert_eq!((u.version, u.next), (new_version(), 0));
    assert_eq!(r.m.status().target_version, Some(new_version()));
    // A failed download backs off holding the same update, resumed where it stopped.
    r.send(cut(FailureClass::Connect, 7));
    let State::Backoff {
        retry: Retry::Download(u),
        ..
    } = &r.m.state
    else {
        panic!("{}", r.m.phase())
    };
    assert_eq!((u.next, u.resume_from, u.attempts), (0, 7, 1));
    assert_eq!(r.m.status().target_version, Some(new_version()));
    r.tick();
    r.send(got("CPE.cat", 100));
    r.send(got("CPE.nbt", 5000));
    let State::WaitingIdle { staged, .. } = &r.m.state else {
        panic!("{}", r.m.phase())
    };
    assert_eq!(Some(staged), r.m.persisted().install.as_ref());
    // A power cut here: the new machine acts on the marker it read back.
    let saved = r.m.persisted().clone();
    let mut r = Rig::new(config(|_| {}), saved.clone());
    let State::WaitingIdle { staged, .. } = &r.m.state else {
        panic!("{}", r.m.phase())
    };
    assert_eq!(Some(staged), saved.install.as_ref());
    let a = r.tick();
    let [Action::Install { version, files }] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!((*version, files), (new_version(), &staged_files(&saved)));
    assert!(matches!(r.m.state, State::Installing { .. }));
    r.send(Event::InstallDone(Ok(())));
    assert!(matches!(r.m.state, State::Rebooting { .. }));
    assert_eq!(r.m.persisted().install, None);
    assert_eq!(r.m.status().target_version, None);
}

#[test]
fn files_on_another_origin_than_the_check_are_refused_once_until_the_next_poll() {
    // The attack of issue 12: a rogue reply names its own file server.
    let mut o = offer(new_version());
    o.base_url = "http://127.0.0.1:18081/evil".into();
    let (mut r, a) = offered(config(|_| {}), PersistedState::new(old()), o.clone());
    assert!(a.is_empty(), "nothing downloaded, nothing persisted: {a:?}");
    let s = r.m.status();
    assert_eq!(
        s.last_outcome,
        Some(CheckOutcome::Refused(OfferRefusal::ForeignOrigin))
    );
    assert_eq!(
        s.last_outcome.unwrap().to_string(),
        "offer refused: file origin not allowed"
    );
    assert_eq!((s.phase, s.consecutive_failures), (Phase::Idle, 0));
    // Not retried in a loop: the next request is the regular check a poll interval later.
    assert_eq!(names(&r.tick_at(DAY)), ["check"]);
    // The same origin listed in `allowed_file_origins` is accepted (anonymously).
    let cfg = config(|c| {
        c.offer_policy.allowed_file_origins =
            vec![Origin::of(&"http://127.0.0.1:18081/".parse().unwrap())];
    });
    let (_, a) = offered(cfg, PersistedState::new(old()), o);
    let (url, _, _, ext) = download_of(&a[1]);
    assert_eq!(
        (url.as_str(), ext),
        ("http://127.0.0.1:18081/evil/CPE.cat", false)
    );
}

#[test]
fn an_external_check_refuses_files_on_the_internal_origin() {
    let cfg = config(|c| {
        c.outside_firewall = Some(true);
        c.external_server_url = Some(EXTERNAL.into());
    });
    let mut o = offer(new_version());
    o.external_base_url = String::new();
    let (r, a) = offered(cfg, PersistedState::new(old()), o);
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(
        r.m.status().last_outcome,
        Some(CheckOutcome::Refused(OfferRefusal::ForeignOrigin))
    );
}

#[test]
fn declared_sizes_over_the_limits_are_refused_and_an_earlier_partial_is_dropped() {
    let limits = |c: &mut MachineConfig| {
        c.offer_policy.max_file_bytes = 4000;
        c.offer_policy.max_offer_bytes = 4500;
    };
    // The image declares 5000 bytes: more than one file may be.
    let (r, a) = offered(
        config(limits),
        PersistedState::new(old()),
        offer(new_version()),
    );
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(
        r.m.status().last_outcome,
        Some(CheckOutcome::Refused(OfferRefusal::FileTooLarge))
    );
    // Two files that each fit but not together.
    let mut o = offer(new_version());
    o.files[1].size = Some(4000);
    o.files[0].size = Some(600);
    let (r, _) = offered(config(limits), PersistedState::new(old()), o.clone());
    assert_eq!(
        r.m.status().last_outcome,
        Some(CheckOutcome::Refused(OfferRefusal::OfferTooLarge))
    );
    // A half download of this offer from before is forgotten, so the driver removes its bytes.
    let mut state = PersistedState::new(old());
    state.download = Some(Box::new(PartialDownload {
        version: new_version(),
        url: "http://pool.contoso.com/x/CPE.nbt".into(),
        file: FileName::new("CPE.nbt").unwrap(),
        completed: 0,
        bytes: 3000,
    }));
    let (_, a) = offered(config(limits), state, o);
    let [Action::Persist(s)] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(s.download, None);
}
