//! Fuzzes the server stub's migration of a JSON state file (`DATA/state.json`) of earlier
//! versions: `State::open` on hostile bytes must refuse or load, never panic, and a state it
//! loads must be written back and loaded again to the same rules and test devices (a migrated
//! file can never become a database the next start refuses). One data directory is reused per
//! process; each input starts from no database, so every input is migrated.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ucupdate_server_stub::{State, StateOptions};

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ucupdate-fuzz-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    for db in ["state.sqlite", "state.sqlite-wal", "state.sqlite-shm"] {
        let _ = std::fs::remove_file(dir.join(db));
    }
    std::fs::write(dir.join("state.json"), data).unwrap();
    let Ok(state) = State::open(dir, StateOptions::default()) else {
        return;
    };
    let (rules, devices) = (state.rules(), state.test_devices());
    state.persist().expect("a loaded state writes back");
    drop(state);
    let again = State::open(dir, StateOptions::default()).expect("a written state loads");
    assert_eq!(again.rules(), rules);
    assert_eq!(again.test_devices(), devices);
});
