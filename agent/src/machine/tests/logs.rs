//! Log uploads: after checks, without blocking them.

use super::*;

#[test]
fn logs_upload_after_checks_without_blocking_them() {
    let cfg = config(|c| c.log_upload = LogPolicy::AfterCheck);
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    r.tick_at(0);
    let a = r.send(no_update());
    assert_eq!(
        a,
        [Action::UploadLog {
            url: INTERNAL.parse().unwrap(),
            external: false
        }]
    );
    // Still in flight at the next check: not duplicated, and the check is not held up.
    assert_eq!(names(&r.tick_at(DAY)), ["check"]);
    r.send(no_update());
    let a = r.send(Event::LogUploaded(Err(FailureClass::Server5xx)));
    assert!(a.is_empty());
    assert_eq!(r.m.poll_timeout(), Some(Instant(2 * DAY)));
    r.tick();
    assert_eq!(
        names(&r.send(no_update())),
        ["upload-log"],
        "retried at the next check"
    );
    // Daily: one per day even with extra checks in between.
    let cfg = config(|c| c.log_upload = LogPolicy::Daily);
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    r.tick_at(0);
    assert_eq!(names(&r.send(no_update())), ["upload-log"]);
    r.send(Event::LogUploaded(Ok(())));
    r.send(Event::CheckNow);
    r.tick();
    assert!(r.send(no_update()).is_empty());
    // Never is the default.
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    assert!(r.send(no_update()).is_empty());
}
