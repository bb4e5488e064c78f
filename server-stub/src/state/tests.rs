//! The state's persistence, the JSON migration and the cost of a flush.

use super::*;

fn key() -> UpdateKey {
    "UCPhone/Polycom/CX700/A/ENU/CPE".parse().unwrap()
}

#[test]
fn committed_changes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path(), StateOptions::default()).unwrap();
    let name = FileName::new("CPE.nbt").unwrap();
    state
        .publish_bytes(&key(), "2.0.0.0".parse().unwrap(), name, b"image")
        .unwrap();
    state.approve(&key()).unwrap();
    state
        .add_test_device("serial:PCX-9".parse().unwrap())
        .unwrap();
    drop(state);
    let again = State::open(dir.path(), StateOptions::default()).unwrap();
    let rules = again.rules();
    assert_eq!(rules[0].rule.approved, Some("2.0.0.0".parse().unwrap()));
    assert_eq!(again.test_devices(), vec!["serial:PCX-9".parse().unwrap()]);
    again.read(|m| assert_eq!(m.catalog.values().next().unwrap()[0].size, 5));
}

#[test]
fn recorded_changes_wait_for_flush() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path(), StateOptions::default()).unwrap();
    state.record(|m| {
        m.add_test_device("serial:A1".parse().unwrap());
    });
    let reopen = || State::open(dir.path(), StateOptions::default()).unwrap();
    assert!(reopen().test_devices().is_empty(), "record must not write");
    state.flush().unwrap();
    assert_eq!(reopen().test_devices().len(), 1);
}

#[test]
fn corrupt_state_is_refused_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(STATE_FILE), b"{ half").unwrap();
    assert!(matches!(
        State::open(dir.path(), StateOptions::default()),
        Err(StateError::Corrupt { .. })
    ));
}

#[test]
fn roundtable_deploys_on_import_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(
        dir.path(),
        StateOptions {
            deploy_roundtable_on_import: true,
        },
    )
    .unwrap();
    let rt: UpdateKey = "RoundTable/Microsoft/RoundTable/A/ENU/RoundTable"
        .parse()
        .unwrap();
    let rule = state
        .import_version(rt, "1.0.0.1".parse().unwrap(), Vec::new())
        .unwrap();
    assert_eq!(
        (rule.pending, rule.approved),
        (None, Some("1.0.0.1".parse().unwrap()))
    );
    let rule = state
        .import_version(key(), "1.0.0.1".parse().unwrap(), Vec::new())
        .unwrap();
    assert_eq!(rule.approved, None, "only RoundTable deploys on import");
}

/// A state file written by an earlier build reads back and re-encodes to the same bytes:
/// the on-disk format does not move when the serde plumbing does.
#[test]
fn an_old_state_file_re_encodes_to_the_same_bytes() {
    let old = include_bytes!("../../tests/fixtures/state-v1.json");
    let model = decode(old).unwrap();
    assert_eq!(model.rules.len(), 2);
    assert_eq!(model.catalog.len(), 2);
    assert_eq!(model.test_devices.len(), 2);
    assert_eq!(model.inventory.len(), 1);
    assert_eq!(
        String::from_utf8(encode(&model)).unwrap(),
        std::str::from_utf8(old).unwrap()
    );
}

fn check(mac: &str) -> CheckRequest {
    CheckRequest::decode(
        format!(
            "<DeviceUpdateRequest><DeviceType>UCPhone</DeviceType><Brand>Polycom</Brand>\
             <Model>CX700</Model><Revision>A</Revision><Locale>ENU</Locale>\
             <MacAddress>{mac}</MacAddress><Modules><Module FileName=\"CPE.nbt\" \
             Version=\"1.0.0.0\"/></Modules></DeviceUpdateRequest>"
        )
        .as_bytes(),
    )
    .unwrap()
}

fn mac(i: u32) -> String {
    let b = i.to_be_bytes();
    format!("02-00-{:02X}-{:02X}-{:02X}-{:02X}", b[0], b[1], b[2], b[3])
}

/// A flush writes the devices that changed since the last one, one row each, however
/// many are stored; a device forgotten at the cap is deleted.
#[test]
fn a_flush_costs_what_changed_not_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path(), StateOptions::default()).unwrap();
    for i in 0..2000 {
        state.record_check(&check(&mac(i)), "c", "none", u64::from(i), 2000);
    }
    state.flush().unwrap();
    let before = state.rows_written();
    state.record_check(&check(&mac(7)), "c", "none", 5000, 2000);
    state.flush().unwrap();
    assert_eq!(state.rows_written() - before, 1);
    state.flush().unwrap();
    assert_eq!(
        state.rows_written() - before,
        1,
        "nothing changed: nothing written"
    );
    // A new device at the cap: its row, and the oldest-seen device's deletion.
    state.record_check(&check(&mac(9999)), "c", "none", 5001, 2000);
    state.flush().unwrap();
    assert_eq!(state.rows_written() - before, 3);
    drop(state);
    let again = State::open(dir.path(), StateOptions::default()).unwrap();
    let inventory = again.inventory();
    assert_eq!(inventory.len(), 2000);
    assert!(
        !inventory.iter().any(|e| e.device == mac(0)),
        "mac 0 was oldest"
    );
    assert!(inventory.iter().any(|e| e.device == mac(9999)));
}

/// Whatever today's encoder wrote migrates whole: rules, test devices, catalog,
/// inventory; the JSON file is set aside, and a failed migration leaves it in place.
#[test]
fn a_json_state_migrates_into_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let meta = FileMeta {
        name: FileName::new("CPE.nbt").unwrap(),
        size: 5,
        sha256: ucupdate_protocol::Sha256Digest([3; 32]),
    };
    model.import(key(), "2.0.0.0".parse().unwrap(), vec![meta], false);
    model.approve(&key()).unwrap();
    model.add_test_device("serial:PCX-9".parse().unwrap());
    model.record_check(&check(MAC_A), "10.0.0.5", "none", 77, 10);
    std::fs::write(dir.path().join(STATE_FILE), encode(&model)).unwrap();
    let state = State::open(dir.path(), StateOptions::default()).unwrap();
    state.read(|m| assert_eq!(m, &model));
    assert!(!dir.path().join(STATE_FILE).exists());
    assert_eq!(
        std::fs::read(dir.path().join(MIGRATED_STATE_FILE)).unwrap(),
        encode(&model)
    );
    drop(state);
    let again = State::open(dir.path(), StateOptions::default()).unwrap();
    again.read(|m| assert_eq!(m, &model));
}

const MAC_A: &str = "00-04-F2-00-01-76";

#[test]
fn a_corrupt_state_json_is_not_migrated_and_stays() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(STATE_FILE), b"{ half").unwrap();
    for _ in 0..2 {
        let err = State::open(dir.path(), StateOptions::default()).unwrap_err();
        assert!(
            matches!(err, StateError::Corrupt { ref path, .. } if path.ends_with(STATE_FILE)),
            "{err}"
        );
    }
    assert!(dir.path().join(STATE_FILE).exists());
}

#[test]
fn a_database_that_is_not_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DB_FILE), vec![b'x'; 8192]).unwrap();
    assert!(State::open(dir.path(), StateOptions::default()).is_err());
}

/// `docs/BENCHMARKS.md` "State writes": the flush with 100k devices in the inventory, the
/// previous version's (the whole JSON file, encoded under the model lock and written
/// atomically) against this one's (the changed rows). Run by hand:
/// `cargo test -p ucupdate-server-stub --lib -- --ignored --nocapture flush_cost`.
#[test]
#[ignore = "a benchmark: prints timings"]
fn flush_cost_with_100k_inventory_entries() {
    let n = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path(), StateOptions::default()).unwrap();
    for i in 0..n {
        state.record_check(&check(&mac(i)), "10.0.0.1", "none", u64::from(i), 1 << 20);
    }
    let time = |f: &mut dyn FnMut()| {
        let t0 = crate::clock::monotonic();
        f();
        t0.elapsed().as_secs_f64() * 1000.0
    };
    let first = time(&mut || state.flush().unwrap());
    let mut old = Vec::new();
    let legacy = dir.path().join("legacy-state.json");
    for _ in 0..3 {
        old.push(time(&mut || {
            let bytes = state.read(encode);
            store::write_atomic(&legacy, &bytes).unwrap();
        }));
    }
    let mut one = Vec::new();
    let mut thousand = Vec::new();
    for round in 0..3u32 {
        state.record_check(
            &check(&mac(round)),
            "c",
            "none",
            u64::from(n + round),
            1 << 20,
        );
        one.push(time(&mut || state.flush().unwrap()));
        for i in 0..1000 {
            state.record_check(
                &check(&mac(i * 97)),
                "c",
                "none",
                u64::from(n + 10 + round),
                1 << 20,
            );
        }
        thousand.push(time(&mut || state.flush().unwrap()));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let json = std::fs::metadata(&legacy).unwrap().len();
    let db: u64 = ["state.sqlite", "state.sqlite-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
        .map(|m| m.len())
        .sum();
    println!("inventory entries: {n}");
    println!(
        "previous flush (whole state.json, {json} bytes): {:.1} ms",
        median(&mut old)
    );
    println!("first flush (all {n} rows, one transaction): {first:.1} ms");
    println!("flush, 1 device changed: {:.2} ms", median(&mut one));
    println!(
        "flush, 1000 devices changed: {:.1} ms",
        median(&mut thousand)
    );
    println!("database + WAL: {db} bytes");
}
