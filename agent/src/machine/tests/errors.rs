//! Errors, traces, size: illegal events change nothing, one-line traces, a small idle machine.

use super::*;

#[test]
fn illegal_events_are_errors_that_change_nothing() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    let table: Vec<(Event, &str)> = vec![
        (no_update(), "check-done"),
        (ip(), "resolved"),
        (got("CPE.nbt", 1), "download-done"),
        (Event::InstallDone(Ok(())), "install-done"),
        (Event::LogUploaded(Ok(())), "log-uploaded"),
    ];
    for (event, name) in table {
        let before = (r.m.phase(), r.m.poll_timeout(), r.m.persisted().clone());
        assert_eq!(
            r.m.handle(event, r.now),
            Err(MachineError::Unexpected {
                event: name,
                phase: Phase::Idle
            })
        );
        assert_eq!(
            before,
            (r.m.phase(), r.m.poll_timeout(), r.m.persisted().clone())
        );
        assert!(r.actions().is_empty());
    }
    r.tick_at(0);
    assert!(matches!(
        r.m.handle(got("CPE.nbt", 1), r.now),
        Err(MachineError::Unexpected {
            phase: Phase::Checking,
            ..
        })
    ));
    r.send(update(new_version()));
    assert_eq!(
        r.m.handle(got("CPE.nbt", 5000), r.now),
        Err(MachineError::WrongFile {
            expected: FileName::new("CPE.cat").unwrap(),
            got: FileName::new("CPE.nbt").unwrap()
        })
    );
    assert_eq!(r.m.phase(), Phase::Downloading);
    assert!(r.m.handle(no_update(), r.now).is_err());
    assert!(r.m.handle(Event::InstallDone(Ok(())), r.now).is_err());
}

#[test]
fn traces_are_one_line_each() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    let mut lines = Vec::new();
    let mut disk = Disk::default();
    let log = r.serve(DAY, |_, a| cooperate(&mut disk, a));
    for (t, a) in &log {
        lines.push(format!("{t} {a}"));
    }
    lines.push(update(new_version()).to_string());
    lines.push(cut(FailureClass::Connect, 5).to_string());
    lines.push(
        Event::SignedIn {
            user: "alice".into(),
            provisioning: Some(provisioning(None, None)),
        }
        .to_string(),
    );
    lines.push(r.m.phase().to_string());
    assert!(lines.iter().all(|l| !l.contains('\n')), "{lines:#?}");
    assert_eq!(
        lines[0],
        format!(
            "0d00:00:00.000 check internal {} v1.0.522.101 user=-",
            canon(INTERNAL)
        )
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("0d00:00:00.000 download internal http://pool.contoso.com:80/")));
    assert!(lines.contains(&"check-done update 3.5.6907.35 (2 files)".to_owned()));
    assert!(lines.contains(&"download-done failed: connect (5 bytes kept)".to_owned()));
    assert!(r
        .m
        .status()
        .to_string()
        .contains("current version: 3.5.6907.35"));
}

#[test]
fn an_idle_machine_is_small() {
    let size = std::mem::size_of::<Machine>();
    println!("size_of::<Machine>() = {size} bytes");
    // 272 bytes before the update moved into its states; it must not grow past that.
    assert!(size <= 272, "Machine grew to {size} bytes");
    // An idle machine owns no heap beyond its persisted strings: the outbox is released.
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(no_update());
    assert_eq!(r.m.outbox.capacity(), 0);
    // The update lives only in the states that need it; an idle machine holds none.
    assert!(matches!(r.m.state, State::Idle { .. }));
}
