//! Smaller rules: withdrawn offers, reboots that do not happen, status, early timeouts, phase lock.

use super::*;

#[test]
fn a_withdrawn_offer_drops_the_partial_download() {
    let mut state = PersistedState::new(old());
    state.download = Some(Box::new(PartialDownload {
        version: new_version(),
        url: "http://pool.contoso.com/x/CPE.nbt".into(),
        file: FileName::new("CPE.nbt").unwrap(),
        completed: 0,
        bytes: 77,
    }));
    let mut r = Rig::new(config(|_| {}), state.clone());
    r.tick_at(0);
    let a = r.send(no_update());
    let [Action::Persist(s)] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(s.download, None);
    // A record whose position names another file than the offer's (position 0 is the
    // catalog) starts over.
    let mut r = Rig::new(config(|_| {}), state);
    r.tick_at(0);
    let a = r.send(update(new_version()));
    assert_eq!(names(&a), ["persist", "download"]);
    assert_eq!(
        (download_of(&a[1]).1.as_str(), download_of(&a[1]).2),
        ("CPE.cat", 0)
    );
}

/// Issue 18: `check-now` after a reboot hook that returned printed `ok` and did nothing; the
/// agent stayed "rebooting" and re-ran the hook every hour.
#[test]
fn a_reboot_that_does_not_happen_is_taken_as_done_after_install_timeout() {
    let cfg = config(|c| c.power_on_jitter = Duration::from_secs(10 * 60));
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    let mut disk = Disk::default();
    let log = r.serve(HOUR, |_, a| cooperate(&mut disk, a));
    assert!(matches!(log.last(), Some((_, Action::Reboot))));
    let rebooted_at = r.now.0;
    assert_eq!(r.m.phase(), Phase::Rebooting);
    assert!(r.send(Event::UserActivity).is_empty());
    // No second reboot request: idle at install_timeout, the check within power_on_jitter.
    assert!(r.tick_at(rebooted_at + HOUR).is_empty());
    assert_eq!(r.m.phase(), Phase::Idle);
    let at = r.m.poll_timeout().unwrap().0;
    assert!(
        (rebooted_at + HOUR..=rebooted_at + HOUR + 10 * MIN).contains(&at),
        "{at}"
    );
    let a = r.tick();
    assert!(
        matches!(&a[..], [Action::Check { current_version, .. }] if *current_version == new_version()),
        "{a:?}"
    );
}

#[test]
fn check_now_or_sign_in_while_rebooting_checks_at_once() {
    for event in [
        Event::CheckNow,
        Event::SignedIn {
            user: "CONTOSO\\alice".into(),
            provisioning: None,
        },
    ] {
        let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
        let mut disk = Disk::default();
        r.serve(HOUR, |_, a| cooperate(&mut disk, a));
        assert_eq!(r.m.phase(), Phase::Rebooting);
        let what = format!("{event:?}");
        r.wait(MIN);
        r.send(event);
        assert_eq!(r.m.phase(), Phase::Idle, "{what}");
        let a = r.tick_at(r.now.0);
        assert!(
            matches!(&a[..], [Action::Check { current_version, .. }] if *current_version == new_version()),
            "{what}: {a:?}"
        );
    }
}

#[test]
fn status_names_the_server_and_the_step() {
    let cfg = config(|c| {
        c.server_url = None;
        c.sip_domain = Some("contoso.com".into());
    });
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    let s = r.m.status();
    assert_eq!(
        s.server.as_deref(),
        Some("ucupdates-r2.contoso.com (to be resolved)")
    );
    assert_eq!(
        (s.phase, s.next_deadline, s.signed_in),
        (Phase::Idle, Some(Instant(0)), false)
    );
    r.tick_at(0);
    r.send(ip());
    let s = r.m.status();
    assert_eq!(
        s.server.as_deref(),
        Some("http://ucupdates-r2.contoso.com:80/RequestHandler/ucdevice.upx")
    );
    r.send(Event::CheckDone(Err(FailureClass::Server5xx)));
    let text = r.m.status().to_string();
    assert!(text.contains("last outcome: failed: server-5xx"), "{text}");
    assert!(text.contains("consecutive failures: 1"), "{text}");
    // A repeated sign-in with the same provisioning writes nothing new.
    let prov = provisioning(Some(INTERNAL), None);
    let first = r.send(Event::SignedIn {
        user: "a".into(),
        provisioning: Some(prov.clone()),
    });
    assert_eq!(names(&first), ["persist"]);
    let again = r.send(Event::SignedIn {
        user: "a".into(),
        provisioning: Some(prov),
    });
    assert!(again.is_empty());
}

#[test]
fn early_timeouts_do_nothing_and_wall_time_only_dates_the_install() {
    let mut r = Rig::new(
        config(|c| c.power_on_jitter = Duration::from_secs(600)),
        PersistedState::new(old()),
    );
    let first = r.m.poll_timeout().unwrap();
    assert!(first.0 > 1);
    r.m.handle_timeout(Instant(first.0 - 1));
    assert!(r.actions().is_empty());
    assert_eq!(
        (r.m.phase(), r.m.poll_timeout()),
        (Phase::Idle, Some(first))
    );
    // No WallClock: the update still happens, its date is unknown.
    let mut disk = Disk::default();
    let log = r.serve(DAY, |_, a| cooperate(&mut disk, a));
    let confirmed = log.iter().rev().find_map(|(_, a)| match a {
        Action::Persist(s) => Some(s.clone()),
        _ => None,
    });
    let confirmed = confirmed.unwrap();
    assert_eq!(confirmed.current_version, new_version());
    assert_eq!(confirmed.last_update_unix_ms, None);
    // A WallClock sent later (after an NTP step) dates by the offset at that time.
    let cfg = config(|c| c.power_on_jitter = Duration::from_secs(3600));
    let mut r = Rig::at(cfg, PersistedState::new(old()), 1, Instant(10 * SEC));
    assert!(r.m.poll_timeout().unwrap().0 > 15 * SEC);
    r.send(Event::WallClock { unix_ms: 1_000_000 });
    r.wait(5 * SEC);
    r.send(Event::WallClock { unix_ms: 2_000_000 });
    let mut disk = Disk::default();
    let log = r.serve(DAY, |_, a| cooperate(&mut disk, a));
    let (at, _) = log
        .iter()
        .find(|(_, a)| matches!(a, Action::Reboot))
        .unwrap();
    let Some((_, Action::Persist(s))) = log
        .iter()
        .rev()
        .find(|(_, a)| matches!(a, Action::Persist(_)))
    else {
        unreachable!()
    };
    assert_eq!(s.last_update_unix_ms, Some(2_000_000 + (at.0 - 15 * SEC)));
}

#[test]
fn a_fleet_does_not_phase_lock_over_ten_days() {
    let cfg = Arc::new(MachineConfig {
        server_url: Some(INTERNAL.into()),
        ..MachineConfig::default()
    });
    let mut checks_on_day_ten = Vec::new();
    for seed in 0..1000u64 {
        let mut r = Rig::at(cfg.clone(), PersistedState::new(old()), seed, Instant(0));
        let log = r.serve(11 * DAY, |_, a| {
            matches!(a, Action::Check { .. }).then(no_update)
        });
        checks_on_day_ten.extend(
            requests(&log)
                .into_iter()
                .filter(|t| (10 * DAY..11 * DAY).contains(&t.0)),
        );
    }
    checks_on_day_ten.sort();
    let spread = checks_on_day_ten.last().unwrap().0 - checks_on_day_ten[0].0;
    assert!(
        spread > 3 * HOUR,
        "day-ten checks spread over only {spread} ms"
    );
    // The busiest minute holds a small share of the fleet (all at once would be 1000).
    let mut per_minute = std::collections::HashMap::<u64, usize>::new();
    for t in &checks_on_day_ten {
        *per_minute.entry(t.0 / MIN).or_default() += 1;
    }
    let busiest = per_minute.values().max().copied().unwrap_or(0);
    assert!(busiest < 40, "{busiest} checks in one minute");
}
