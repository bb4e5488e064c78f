//! Download, install, reboot: whole updates at exact instants, resume, hash mismatches, power cuts.

use super::*;

#[test]
fn a_whole_update_with_exact_instants_and_persist_before_each_dependent_action() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.send(Event::WallClock {
        unix_ms: 1_700_000_000_000,
    });
    r.tick_at(0);
    r.wait(2 * SEC);
    let a = r.send(update(new_version()));
    assert_eq!(names(&a), ["persist", "download"]);
    let Action::Persist(s) = &a[0] else {
        unreachable!()
    };
    let partial = s.download.as_deref().unwrap();
    assert_eq!(
        (
            partial.version,
            partial.file.as_str(),
            partial.completed,
            partial.bytes
        ),
        (new_version(), "CPE.cat", 0, 0)
    );
    // The catalog first: the image is then held to the digest it lists.
    let (url, name, from, ext) = download_of(&a[1]);
    assert_eq!(url, "http://pool.contoso.com:80/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/3.5.6907.35/CPE/CPE.cat");
    assert_eq!((name.as_str(), from, ext), ("CPE.cat", 0, false));
    assert_eq!(r.m.phase(), Phase::Downloading);
    assert_eq!(
        r.m.poll_timeout(),
        Some(Instant(2 * SEC + 4 * HOUR)),
        "download watchdog"
    );

    r.wait(SEC);
    let a = r.send(got("CPE.cat", 100));
    assert_eq!(names(&a), ["persist", "download"]);
    let Action::Download { file, .. } = &a[1] else {
        unreachable!()
    };
    assert_eq!(
        (file.file_name.as_str(), file.sha256),
        ("CPE.nbt", Some(Sha256Digest([5000u64 as u8; 32]))),
        "the image is held to the catalog's digest"
    );
    r.wait(60 * SEC);
    let a = r.send(got("CPE.nbt", 5000));
    let [Action::Persist(s)] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(s.download, None);
    assert_eq!(s.install.as_ref().unwrap().version, new_version());
    assert_eq!(r.m.phase(), Phase::WaitingIdle);
    let staged_at = 63 * SEC;
    assert_eq!(r.m.status().target_version, Some(new_version()));

    let a = r.tick_at(staged_at + 5 * MIN);
    let [Action::Install { version, files }] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(*version, new_version());
    assert_eq!(files.len(), 2);
    assert!(
        files.iter().all(|f| f.sha256.is_some()),
        "the driver can re-verify"
    );
    assert_eq!(r.m.phase(), Phase::Installing);

    r.wait(30 * SEC);
    let a = r.send(Event::InstallDone(Ok(())));
    assert_eq!(names(&a), ["persist", "reboot"]);
    let Action::Persist(after) = &a[0] else {
        unreachable!()
    };
    assert_eq!(after.current_version, new_version());
    assert_eq!(after.fallback_version, Some(old()));
    assert_eq!(
        after.last_update_unix_ms,
        Some(1_700_000_000_000 + staged_at + 5 * MIN + 30 * SEC)
    );
    assert_eq!(
        (after.install.as_ref(), after.download.as_ref()),
        (None, None)
    );
    assert_eq!(r.m.phase(), Phase::Rebooting);
    // A reboot hook that did not reboot: after install_timeout the device carries on with
    // the new version current and checks as at power-on.
    // (power_on_jitter is zero here, so the check goes out at that instant.)
    let missed = staged_at + 5 * MIN + 30 * SEC + HOUR;
    assert!(
        matches!(&r.tick_at(missed)[..], [Action::Check { current_version, .. }] if *current_version == new_version())
    );

    // After the reboot: the new version is current and the old one the fallback.
    let mut booted = Rig::new(config(|_| {}), after.clone());
    let s = booted.m.status();
    assert_eq!(
        (s.current_version, s.fallback_version),
        (new_version(), Some(old()))
    );
    assert!(
        matches!(&booted.tick_at(0)[0], Action::Check { current_version, .. } if *current_version == new_version())
    );
    booted.send(update(new_version()));
    assert_eq!(
        booted.m.phase(),
        Phase::Idle,
        "the running version is not downloaded again"
    );
}

#[test]
fn a_differing_older_version_is_installed_too() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(new_version()));
    r.tick_at(0);
    let a = r.send(update(old()));
    assert_eq!(names(&a), ["persist", "download"]);
    assert_eq!(
        r.m.status().last_outcome,
        Some(CheckOutcome::Offered(old()))
    );
}

#[test]
fn external_check_downloads_from_the_external_base() {
    let cfg = config(|c| {
        c.outside_firewall = Some(true);
        c.external_server_url = Some(EXTERNAL.into());
    });
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    r.send(Event::SignedIn {
        user: "alice".into(),
        provisioning: None,
    });
    r.tick_at(0);
    let a = r.send(update(new_version()));
    let (url, _, _, ext) = download_of(&a[1]);
    assert!(ext);
    assert!(
        url.starts_with("https://ext.contoso.com:443/DeviceUpdateFiles_Ext/"),
        "{url}"
    );
    // A blank base on the check's side falls back to the other one, if its origin is allowed;
    // credentials go with it only because it is the configured external origin.
    let mut r = Rig::new(
        config(|c| {
            c.external_server_url = Some(EXTERNAL.into());
            c.offer_policy.allowed_file_origins = vec![Origin::of(&EXTERNAL.parse().unwrap())];
        }),
        PersistedState::new(old()),
    );
    r.tick_at(0);
    let mut o = offer(new_version());
    o.base_url = String::new();
    let a = r.send(Event::CheckDone(Ok(CheckResponse::Update(o))));
    assert!(download_of(&a[1]).3);
    // Both blank: a protocol failure, backed off.
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    let mut o = offer(new_version());
    o.base_url = String::new();
    o.external_base_url = " ".into();
    assert!(r
        .send(Event::CheckDone(Ok(CheckResponse::Update(o))))
        .is_empty());
    assert_eq!(r.m.status().last_error, Some(FailureClass::Protocol));
    assert_eq!(r.m.phase(), Phase::Backoff);
}

#[test]
fn a_cut_download_resumes_from_the_bytes_kept_also_after_a_power_cut() {
    let cfg = config(|_| {});
    let mut r = Rig::new(cfg.clone(), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    r.send(got("CPE.cat", 100));
    r.wait(10 * SEC);
    let a = r.send(cut(FailureClass::Connect, 1200));
    let [Action::Persist(s)] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(s.download.as_ref().unwrap().bytes, 1200);
    assert_eq!(r.m.phase(), Phase::Backoff);
    let a = r.tick();
    assert_eq!(
        names(&a),
        ["download"],
        "no new check, no redundant persist"
    );
    assert_eq!(download_of(&a[0]).2, 1200);

    // Power cut now; the driver's partial file has grown to 3000 bytes and it says so.
    let mut state = s.clone();
    state.download.as_mut().unwrap().bytes = 3000;
    let mut r = Rig::new(cfg, state.clone());
    assert_eq!(names(&r.tick_at(0)), ["check"]);
    let a = r.send(update(new_version()));
    // The catalog is verified again first, without overwriting the record of the image...
    assert_eq!(names(&a), ["download"]);
    assert_eq!(
        download_of(&a[0]),
        (download_of(&a[0]).0, "CPE.cat".into(), 0, false)
    );
    assert_eq!(r.m.persisted().download, state.download);
    // ...and then the image resumes where it was.
    let a = r.send(got("CPE.cat", 100));
    assert_eq!(names(&a), ["download"]);
    assert_eq!(download_of(&a[0]).1, "CPE.nbt");
    assert_eq!(download_of(&a[0]).2, 3000);
    // The server meanwhile approved something else: the partial is dropped.
    let a = r.send(cut(FailureClass::Timeout, 3500));
    assert_eq!(names(&a), ["persist"]);
    let Action::Persist(s) = &a[0] else {
        unreachable!()
    };
    let other = v("4.0.7577.4066");
    let mut r = Rig::new(config(|_| {}), s.clone());
    r.tick_at(0);
    let a = r.send(update(other));
    let Action::Persist(fresh) = &a[0] else {
        panic!("{a:?}")
    };
    assert_eq!(fresh.download.as_ref().unwrap().version, other);
    assert_eq!(
        download_of(&a[1]),
        (download_of(&a[1]).0, "CPE.cat".into(), 0, false)
    );
}

#[test]
fn a_hash_mismatch_discards_the_bytes_and_counts_until_the_update_is_given_up() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    r.send(got("CPE.cat", 100));
    // The catalog's request counted as the first of the five attempts.
    for attempt in 1..=3 {
        let a = r.send(cut(FailureClass::HashMismatch, 5000));
        if attempt == 1 {
            assert_eq!(
                names(&a),
                Vec::<&str>::new(),
                "bytes were 0 already: nothing to persist"
            );
        }
        assert_eq!(r.m.phase(), Phase::Backoff);
        assert_eq!(r.m.status().consecutive_failures, attempt);
        let a = r.tick();
        assert_eq!(download_of(&a[0]).2, 0, "never resumes unverified bytes");
    }
    // The fifth attempt (the fourth at the image) gives the offer up until the next check.
    let t = r.now.0;
    r.send(cut(FailureClass::HashMismatch, 5000));
    assert_eq!(r.m.phase(), Phase::Idle);
    assert_eq!(r.m.poll_timeout(), Some(Instant(t + DAY)));
    assert_eq!(r.m.status().last_error, Some(FailureClass::HashMismatch));
    // The image was held to the catalog's digest: the status names the catalog's reason.
    assert_eq!(
        r.m.status().last_outcome,
        Some(CheckOutcome::Untrusted(RefusalKind::DigestMismatch))
    );
    assert_eq!(r.m.status().last_outcome.unwrap().code(), 0x5);
    // A resumable cut persists the kept bytes; a later mismatch resets them to 0.
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    r.send(cut(FailureClass::Server5xx, 700));
    r.tick();
    let a = r.send(cut(FailureClass::HashMismatch, 5000));
    let [Action::Persist(s)] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(s.download.as_ref().unwrap().bytes, 0);
    // A completed file whose size differs from the offer is a mismatch too.
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    r.send(got("CPE.cat", 100));
    r.send(got("CPE.nbt", 4999));
    assert_eq!(r.m.status().last_error, Some(FailureClass::HashMismatch));
    assert_eq!(r.m.phase(), Phase::Backoff);
}

#[test]
fn download_failures_are_capped_per_hour_too() {
    let cfg = Arc::new(MachineConfig {
        server_url: Some(INTERNAL.into()),
        ..MachineConfig::default()
    });
    let classes = [
        FailureClass::HashMismatch,
        FailureClass::Connect,
        FailureClass::Timeout,
        FailureClass::Server5xx,
        FailureClass::Unauthorized,
        FailureClass::Io,
    ];
    for (class, seed) in classes
        .into_iter()
        .flat_map(|c| (0..10).map(move |s| (c, s)))
    {
        let mut r = Rig::at(cfg.clone(), PersistedState::new(old()), seed, Instant(0));
        r.send(Event::SignedIn {
            user: "alice".into(),
            provisioning: None,
        });
        let log = r.serve(3 * DAY, |_, a| match a {
            Action::Check { .. } => Some(update(new_version())),
            Action::Download { .. } => Some(cut(class, 0)),
            _ => None,
        });
        let times = requests(&log);
        let most = max_per_hour(&times);
        assert!(most <= 6, "{class} seed {seed}: {most} per hour");
        let checks = log
            .iter()
            .filter(|(_, a)| matches!(a, Action::Check { .. }))
            .count();
        assert!(
            (3..=4).contains(&checks),
            "one give-up per day, then a fresh check: {checks}"
        );
    }
}

#[test]
fn idle_wait_is_restarted_by_activity_and_calls() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    r.send(got("CPE.cat", 100));
    r.send(got("CPE.nbt", 5000));
    assert_eq!(r.m.poll_timeout(), Some(Instant(5 * MIN)));
    r.wait(4 * MIN);
    r.send(Event::UserActivity);
    assert_eq!(r.m.poll_timeout(), Some(Instant(9 * MIN)));
    r.wait(MIN);
    r.send(Event::CallStarted);
    assert_eq!(r.m.poll_timeout(), None, "never installs during a call");
    r.wait(HOUR);
    r.m.handle_timeout(r.now);
    assert!(r.actions().is_empty());
    r.send(Event::CallEnded);
    let ended = r.now.0;
    assert_eq!(r.m.poll_timeout(), Some(Instant(ended + 5 * MIN)));
    // A check-now while an update waits does not start a second request.
    assert!(r.send(Event::CheckNow).is_empty());
    assert_eq!(names(&r.tick_at(ended + 5 * MIN)), ["install"]);
}

#[test]
fn a_failed_install_drops_the_marker_and_polls_again() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    r.send(got("CPE.cat", 100));
    r.send(got("CPE.nbt", 5000));
    r.tick_at(5 * MIN);
    let a = r.send(Event::InstallDone(Err(FailureClass::HashMismatch)));
    let [Action::Persist(s)] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!((s.install.as_ref(), s.current_version), (None, old()));
    assert_eq!(r.m.phase(), Phase::Idle);
    assert_eq!(r.m.poll_timeout(), Some(Instant(5 * MIN + DAY)));
    // A hung install hook hits the watchdog the same way.
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    r.send(got("CPE.cat", 100));
    r.send(got("CPE.nbt", 5000));
    r.tick_at(5 * MIN);
    assert_eq!(names(&r.tick_at(5 * MIN + HOUR)), ["persist"]);
    assert_eq!(r.m.status().last_error, Some(FailureClass::Timeout));
}

#[test]
fn power_on_with_a_marker_installs_after_idle_and_stale_records_are_dropped() {
    let mut state = PersistedState::new(old());
    state.install = Some(Box::new(InstallMarker {
        version: new_version(),
        files: offer(new_version()).files,
    }));
    let mut r = Rig::at(config(|_| {}), state.clone(), 1, Instant(100));
    assert_eq!(r.m.phase(), Phase::WaitingIdle);
    assert_eq!(names(&r.tick_at(100 + 5 * MIN)), ["install"]);
    // A marker for the version already running (cut after the confirming write) is dropped.
    let mut state = PersistedState::new(new_version());
    state.install = Some(Box::new(InstallMarker {
        version: new_version(),
        files: vec![],
    }));
    let mut r = Rig::new(config(|_| {}), state);
    let a = r.actions();
    let [Action::Persist(s)] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(s.install, None);
    assert_eq!(r.m.phase(), Phase::Idle);
}

#[test]
fn a_power_cut_after_any_action_ends_on_the_target_and_never_installs_unverified_bytes() {
    let cfg = config(|_| {});
    // The uninterrupted run, for its length.
    let mut disk = Disk::default();
    let mut r = Rig::new(cfg.clone(), PersistedState::new(old()));
    let full = r.serve(DAY, |_, a| cooperate(&mut disk, a));
    assert!(full.iter().any(|(_, a)| matches!(a, Action::Reboot)));
    for cut_after in 0..full.len() {
        let mut disk = Disk::default();
        let mut r = Rig::new(cfg.clone(), PersistedState::new(old()));
        let mut seen = 0;
        let mut last = PersistedState::new(old());
        let mut done = false;
        // Run until `cut_after` actions were performed, remembering the last state written.
        r.serve(DAY, |_, a| {
            if done {
                return None;
            }
            seen += 1;
            if seen > cut_after {
                done = true;
                return None;
            }
            if let Action::Persist(s) = a {
                last = s.clone();
            }
            cooperate(&mut disk, a)
        });
        // Power comes back: a new machine from what was on disk.
        let mut r = Rig::at(cfg.clone(), last.clone(), 9, Instant(0));
        let mut final_state = last;
        let mut rebooted = false;
        r.serve(2 * DAY, |_, a| {
            if rebooted {
                return None;
            }
            if let Action::Persist(s) = a {
                final_state = s.clone();
            }
            if matches!(a, Action::Reboot) {
                rebooted = true;
            }
            cooperate(&mut disk, a)
        });
        if final_state.current_version != new_version() {
            // The cut came after the confirming write: that state already names the target.
            panic!(
                "cut after action {cut_after}: ended on {}",
                final_state.current_version
            );
        }
        assert_eq!(
            final_state.fallback_version,
            Some(old()),
            "cut after {cut_after}"
        );
        assert_eq!(
            (final_state.install.as_ref(), final_state.download.as_ref()),
            (None, None)
        );
    }
}

#[test]
fn install_is_only_emitted_after_its_marker_was_persisted() {
    let mut disk = Disk::default();
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    let mut marker_written = false;
    r.serve(DAY, |_, a| {
        match a {
            Action::Persist(s) => marker_written |= s.install.is_some(),
            Action::Install { .. } => assert!(marker_written, "install before its marker"),
            Action::Reboot => return None,
            _ => {}
        }
        cooperate(&mut disk, a)
    });
    assert!(marker_written);
}
