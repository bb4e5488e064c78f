//! Scheduling: exact check instants, jitter, fleets that spread, no duplicate checks.

use super::*;

#[test]
fn a_simulated_week_checks_once_a_day() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    let log = r.serve(7 * DAY, |_, a| {
        matches!(a, Action::Check { .. }).then(no_update)
    });
    let times = requests(&log);
    let expected: Vec<Instant> = (0..=7).map(|d| Instant(d * DAY)).collect();
    assert_eq!(times, expected);
}

#[test]
fn poll_jitter_stays_in_its_window_and_follows_the_seed() {
    let cfg = config(|c| c.poll_jitter = Duration::from_secs(24 * 360));
    let run = |seed| {
        let mut r = Rig::at(cfg.clone(), PersistedState::new(old()), seed, Instant(0));
        let log = r.serve(30 * DAY, |_, a| {
            matches!(a, Action::Check { .. }).then(no_update)
        });
        requests(&log)
    };
    let a = run(1);
    assert_eq!(a, run(1), "same seed, same instants");
    assert_ne!(a, run(2), "another seed, other instants");
    for pair in a.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            (DAY - DAY / 20..=DAY + DAY / 20).contains(&gap),
            "gap {gap}"
        );
    }
    assert!(
        a.windows(2).any(|p| p[1].0 - p[0].0 != DAY),
        "jitter applied"
    );
}

#[test]
fn a_fleet_powered_on_at_once_spreads_its_checks() {
    let cfg = Arc::new(MachineConfig {
        server_url: Some(INTERNAL.into()),
        ..MachineConfig::default()
    });
    let start = Instant(5 * HOUR);
    let first: Vec<Instant> = (0..1000u64)
        .map(|seed| {
            Machine::new(cfg.clone(), PersistedState::new(old()), seed, start)
                .poll_timeout()
                .unwrap()
        })
        .collect();
    let window = start.0..=start.0 + 10 * MIN;
    assert!(first.iter().all(|t| window.contains(&t.0)));
    let distinct: HashSet<Instant> = first.iter().copied().collect();
    assert!(distinct.len() > 990, "{} distinct instants", distinct.len());
    // No minute of the window holds more than 3x its fair share.
    let mut per_minute = [0usize; 11];
    for t in &first {
        per_minute[((t.0 - start.0) / MIN) as usize] += 1;
    }
    assert!(per_minute[..10].iter().all(|&n| n < 300), "{per_minute:?}");
    // Reproducible from the seed.
    let again = Machine::new(cfg.clone(), PersistedState::new(old()), 42, start).poll_timeout();
    assert_eq!(again, Some(first[42]));
}

#[test]
fn a_check_in_flight_is_never_duplicated() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    assert_eq!(r.tick_at(0).len(), 1);
    for step in 1..=5 {
        r.wait(10 * SEC);
        assert!(r.send(Event::CheckNow).is_empty(), "step {step}");
        r.m.handle_timeout(r.now);
        assert!(r.actions().is_empty());
    }
    let a = r.send(Event::SignedIn {
        user: "alice".into(),
        provisioning: None,
    });
    assert_eq!(names(&a), ["persist"], "ever_signed_in recorded, no check");
    assert_eq!(r.m.phase(), Phase::Checking);
    // The answer arrives; exactly one more check is due, at once (jitter 0), with the user.
    r.send(no_update());
    let a = r.tick_at(50 * SEC);
    assert_eq!(a.len(), 1);
    assert_eq!(check_url(&a[0]).2.as_deref(), Some("alice"));
    r.send(no_update());
    assert_eq!(
        r.m.poll_timeout(),
        Some(Instant(50 * SEC + DAY)),
        "no further due check"
    );
}

#[test]
fn sign_in_during_a_check_uses_the_new_provisioning_afterwards() {
    let cfg = config(|c| {
        c.server_url = None;
        c.dhcp_domain = Some("contoso.com".into());
        c.sign_in_jitter = Duration::from_secs(30);
    });
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    r.tick_at(0);
    r.send(ip());
    assert_eq!(r.m.phase(), Phase::Checking);
    r.wait(100);
    let prov = provisioning(
        Some("https://pool.contoso.com/RequestHandler/ucdevice.upx"),
        None,
    );
    let a = r.send(Event::SignedIn {
        user: "alice".into(),
        provisioning: Some(prov),
    });
    assert_eq!(names(&a), ["persist"]);
    r.wait(100);
    r.send(no_update());
    let next = r.m.poll_timeout().unwrap();
    assert!((200..=200 + 30 * SEC).contains(&next.0), "{next}");
    let a = r.tick();
    assert_eq!(
        check_url(&a[0]),
        (
            "https://pool.contoso.com:443/RequestHandler/ucdevice.upx".into(),
            false,
            Some("alice".into())
        )
    );
}

#[test]
fn check_now_in_idle_and_in_backoff_pulls_the_check_forward() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(no_update());
    r.wait(HOUR);
    r.send(Event::CheckNow);
    assert_eq!(r.tick_at(HOUR).len(), 1);
    r.send(Event::CheckDone(Err(FailureClass::Server5xx)));
    assert_eq!(r.m.phase(), Phase::Backoff);
    r.wait(5 * SEC);
    r.send(Event::CheckNow);
    assert_eq!(r.tick_at(HOUR + 5 * SEC).len(), 1);
}
