//! Fuzzes the server stub's state file (`DATA/state.json`) loader: `State::open` on hostile
//! bytes must refuse or load, never panic, and a state it loads must be written back and
//! loaded again to the same rules and test devices (a loaded file can never become one the next
//! start refuses). One data directory is reused per process; each input overwrites its file.
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
