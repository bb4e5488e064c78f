//! Unit tests of `model` (kept apart so the module itself reads in one sitting).

use super::*;
use ucupdate_protocol::{InstalledModule, PathSegment};

fn v(text: &str) -> FirmwareVersion {
    text.parse().unwrap()
}

fn key() -> UpdateKey {
    "UCPhone/Polycom/CX700/A/ENU/CPE".parse().unwrap()
}

const MAC: &str = "00-04-F2-00-01-76";

fn request(running: &str, mac: &str, serial: Option<&str>) -> CheckRequest {
    CheckRequest {
        identity: DeviceIdentity {
            device_type: "UCPhone".parse().unwrap(),
            brand: PathSegment::new("Polycom").unwrap(),
            model: PathSegment::new("CX700").unwrap(),
            revision: PathSegment::new("A").unwrap(),
            locale: PathSegment::new("ENU").unwrap(),
            mac: Some(mac.parse().unwrap()),
            serial: serial.map(|s| s.parse().unwrap()),
        },
        modules: vec![InstalledModule {
            update_type: PathSegment::new("CPE").unwrap(),
            file_name: FileName::new("CPE.nbt").unwrap(),
            version: v(running),
            timestamp: None,
        }],
        user: None,
    }
}

fn files() -> Vec<FileMeta> {
    vec![FileMeta {
        name: FileName::new("CPE.nbt").unwrap(),
        size: 3,
        sha256: Sha256Digest([7; 32]),
    }]
}

fn bases() -> BaseUrls {
    BaseUrls {
        internal: Some("http://127.0.0.1:8080".parse().unwrap()),
        external: None,
        ..Default::default()
    }
}

/// What a device running `running` is offered: `(status, version)` or `None`.
fn offered(model: &Model, running: &str, mac: &str) -> Option<(OfferStatus, String)> {
    match model
        .decide(&request(running, mac, None), &bases())
        .response
    {
        CheckResponse::NoUpdate => None,
        CheckResponse::Update(o) => Some((o.status, o.version.to_string())),
    }
}

enum Step {
    Import(&'static str),
    Approve,
    Restore,
    Reset,
    AddTest,
}

/// Every rule transition, as (steps, running version, device is test?, expected offer,
/// expected rule afterwards as (pending, approved, restore)).
#[test]
fn rule_transitions_table() {
    use OfferStatus::{Approved, Pending};
    use Step::*;
    const ROLLBACK: OfferStatus = OfferStatus::Restore;
    type Expect = Option<(OfferStatus, &'static str)>;
    type Row = (
        &'static str,
        Vec<Step>,
        &'static str,
        bool,
        Expect,
        [Option<&'static str>; 3],
    );
    let table: Vec<Row> = vec![
        (
            "import is pending: normal device gets nothing",
            vec![Import("2.0.0.0")],
            "1.0.0.0",
            false,
            None,
            [Some("2.0.0.0"), None, None],
        ),
        (
            "import is pending: test device gets it",
            vec![Import("2.0.0.0"), AddTest],
            "1.0.0.0",
            true,
            Some((Pending, "2.0.0.0")),
            [Some("2.0.0.0"), None, None],
        ),
        (
            "test device already on pending: nothing",
            vec![Import("2.0.0.0"), AddTest],
            "2.0.0.0",
            true,
            None,
            [Some("2.0.0.0"), None, None],
        ),
        (
            "approve: everyone gets it",
            vec![Import("2.0.0.0"), Approve],
            "1.0.0.0",
            false,
            Some((Approved, "2.0.0.0")),
            [None, Some("2.0.0.0"), None],
        ),
        (
            "approved equals running: nothing",
            vec![Import("2.0.0.0"), Approve],
            "2.0.0.0",
            false,
            None,
            [None, Some("2.0.0.0"), None],
        ),
        (
            "approved older than running is still offered",
            vec![Import("2.0.0.0"), Approve],
            "3.0.0.0",
            false,
            Some((Approved, "2.0.0.0")),
            [None, Some("2.0.0.0"), None],
        ),
        (
            "second approve keeps a restore point",
            vec![Import("2.0.0.0"), Approve, Import("3.0.0.0"), Approve],
            "2.0.0.0",
            false,
            Some((Approved, "3.0.0.0")),
            [None, Some("3.0.0.0"), Some("2.0.0.0")],
        ),
        (
            "pending over approved: normal device stays on approved",
            vec![Import("2.0.0.0"), Approve, Import("3.0.0.0")],
            "2.0.0.0",
            false,
            None,
            [Some("3.0.0.0"), Some("2.0.0.0"), None],
        ),
        (
            "pending over approved: test device gets pending",
            vec![Import("2.0.0.0"), Approve, Import("3.0.0.0"), AddTest],
            "2.0.0.0",
            true,
            Some((Pending, "3.0.0.0")),
            [Some("3.0.0.0"), Some("2.0.0.0"), None],
        ),
        (
            "restore: back to the restore version",
            vec![
                Import("2.0.0.0"),
                Approve,
                Import("3.0.0.0"),
                Approve,
                Restore,
            ],
            "3.0.0.0",
            false,
            Some((ROLLBACK, "2.0.0.0")),
            [None, Some("2.0.0.0"), None],
        ),
        (
            "after restore a device on it gets nothing",
            vec![
                Import("2.0.0.0"),
                Approve,
                Import("3.0.0.0"),
                Approve,
                Restore,
            ],
            "2.0.0.0",
            false,
            None,
            [None, Some("2.0.0.0"), None],
        ),
        (
            "reset cancels pending for test devices",
            vec![
                Import("2.0.0.0"),
                Approve,
                Import("3.0.0.0"),
                AddTest,
                Reset,
            ],
            "3.0.0.0",
            true,
            Some((Approved, "2.0.0.0")),
            [None, Some("2.0.0.0"), None],
        ),
        (
            "reset with nothing approved: nothing",
            vec![Import("2.0.0.0"), AddTest, Reset],
            "1.0.0.0",
            true,
            None,
            [None, None, None],
        ),
        (
            "approve after restore offers approved again",
            vec![
                Import("2.0.0.0"),
                Approve,
                Import("3.0.0.0"),
                Approve,
                Restore,
                Import("4.0.0.0"),
                Approve,
            ],
            "2.0.0.0",
            false,
            Some((Approved, "4.0.0.0")),
            [None, Some("4.0.0.0"), Some("2.0.0.0")],
        ),
    ];
    for (name, steps, running, test, expect, rule) in table {
        let mut model = Model::default();
        for step in steps {
            match step {
                Import(ver) => model.import(key(), v(ver), files(), false),
                Approve => {
                    model.approve(&key()).unwrap();
                }
                Restore => {
                    model.restore(&key()).unwrap();
                }
                Reset => {
                    model.reset(&key()).unwrap();
                }
                AddTest => {
                    model.add_test_device(MAC.parse().unwrap());
                }
            }
        }
        assert_eq!(
            model.is_test_device(&request(running, MAC, None).identity),
            test,
            "{name}"
        );
        let got = offered(&model, running, MAC);
        assert_eq!(got, expect.map(|(s, ver)| (s, ver.to_owned())), "{name}");
        let r = &model.rules[&key()];
        let show = |o: Option<FirmwareVersion>| o.map(|x| x.to_string());
        assert_eq!(
            [show(r.pending), show(r.approved), show(r.restore)],
            rule.map(|o| o.map(str::to_owned)),
            "{name}"
        );
    }
}

#[test]
fn refused_transitions() {
    let mut model = Model::default();
    assert_eq!(
        model.approve(&key()),
        Err(RuleError::UnknownRule(Box::new(key())))
    );
    model.import(key(), v("2.0.0.0"), files(), false);
    assert_eq!(
        model.restore(&key()),
        Err(RuleError::NothingToRestore(Box::new(key())))
    );
    model.approve(&key()).unwrap();
    assert_eq!(
        model.approve(&key()),
        Err(RuleError::NothingPending(Box::new(key())))
    );
    assert_eq!(
        model.reset(&key()),
        Err(RuleError::NothingPending(Box::new(key())))
    );
}

#[test]
fn deploy_on_import_approves_at_once() {
    let mut model = Model::default();
    model.import(key(), v("2.0.0.0"), files(), true);
    assert_eq!(
        offered(&model, "1.0.0.0", MAC),
        Some((OfferStatus::Approved, "2.0.0.0".into()))
    );
}

#[test]
fn test_devices_by_serial_and_any_mac_spelling() {
    let mut model = Model::default();
    model.import(key(), v("2.0.0.0"), files(), false);
    model.add_test_device("serial:PCX-1".parse().unwrap());
    let req = request("1.0.0.0", MAC, Some("PCX-1"));
    assert!(matches!(
        model.decide(&req, &bases()).response,
        CheckResponse::Update(_)
    ));
    model.test_devices.clear();
    model.add_test_device("0004f2000176".parse().unwrap());
    assert!(model.is_test_device(&req.identity));
    assert_eq!(
        "PCX-1".parse::<TestDevice>().unwrap().to_string(),
        "serial:PCX-1"
    );
}

/// `zz-zz` and the five-pair `00-04-F2-00-01` used to be stored as serial numbers that no
/// device ever matches; they are refused as bad MACs now.
#[test]
fn mac_lookalikes_are_refused_not_stored_as_serials() {
    for text in [
        "zz-zz",
        "00-04-F2-00-01",
        "00:04:f2:00:01",
        "00-04-F2-00-01-76-00",
        "mac:PCX-1",
        "0004f20001",
    ] {
        if text == "0004f20001" {
            // Ten hex digits and no separator is a plausible serial number.
            assert!(matches!(
                text.parse::<TestDevice>(),
                Ok(TestDevice::Serial(_))
            ));
            continue;
        }
        assert!(
            matches!(
                text.parse::<TestDevice>(),
                Err(ucupdate_protocol::ProtocolError::BadMac(_))
            ),
            "{text}"
        );
    }
    for text in [
        "010203040506",
        "01-02-03-04-05-06",
        "01:02:03:04:05:06",
        "mac:010203040506",
    ] {
        assert_eq!(
            text.parse::<TestDevice>().unwrap().to_string(),
            "01-02-03-04-05-06"
        );
    }
    assert_eq!(
        "serial:zz-zz".parse::<TestDevice>().unwrap().to_string(),
        "serial:zz-zz"
    );
}

#[test]
fn offer_carries_urls_hashes_and_sizes() {
    let mut model = Model::default();
    model.import(key(), v("2.0.0.0"), files(), true);
    let bases = BaseUrls {
        internal: Some("http://pool01.contoso.com".parse().unwrap()),
        external: Some("https://ext.contoso.com:4443/".parse().unwrap()),
        ..Default::default()
    };
    let CheckResponse::Update(offer) = model
        .decide(&request("1.0.0.0", MAC, None), &bases)
        .response
    else {
        panic!("no offer")
    };
    assert_eq!(offer.base_url, "http://pool01.contoso.com:80/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/2.0.0.0/CPE");
    assert_eq!(offer.external_base_url, "https://ext.contoso.com:4443/DeviceUpdateFiles_Ext/UCPhone/Polycom/CX700/A/ENU/2.0.0.0/CPE");
    assert_eq!(offer.files[0].size, Some(3));
    assert_eq!(offer.files[0].sha256, Some(Sha256Digest([7; 32])));
}

#[test]
fn version_without_files_is_not_offered() {
    let mut model = Model::default();
    model.import(key(), v("2.0.0.0"), Vec::new(), true);
    assert_eq!(offered(&model, "1.0.0.0", MAC), None);
}

#[test]
fn inventory_keeps_last_user() {
    let mut model = Model::default();
    let mut req = request("1.0.0.0", MAC, None);
    req.user = Some("CONTOSO\\alice".into());
    model.record_check(&req, "127.0.0.1", "none", 10, 10);
    req.user = None;
    model.record_check(&req, "127.0.0.1", "none", 20, 10);
    let e = &model.inventory[MAC];
    assert_eq!(
        (e.last_user.as_deref(), e.last_check_unix),
        (Some("CONTOSO\\alice"), 20)
    );
    assert_eq!(e.versions["CPE"], "1.0.0.0");
}

#[test]
fn inventory_at_its_cap_forgets_the_device_seen_longest_ago() {
    let mut model = Model::default();
    let macs = [
        "00-04-F2-00-00-01",
        "00-04-F2-00-00-02",
        "00-04-F2-00-00-03",
    ];
    for (i, mac) in macs.iter().enumerate() {
        let gone = model.record_check(&request("1.0.0.0", mac, None), "c", "none", i as u64, 3);
        assert!(gone.is_empty());
    }
    // The first device checks again: it is now the most recent, the second the oldest.
    model.record_check(&request("1.0.0.0", macs[0], None), "c", "none", 10, 3);
    let gone = model.record_check(
        &request("1.0.0.0", "00-04-F2-00-00-04", None),
        "c",
        "none",
        11,
        3,
    );
    assert_eq!(gone, vec![macs[1].to_owned()]);
    assert_eq!(model.inventory.len(), 3);
    assert!(model.inventory.contains_key(macs[0]));
    assert_eq!(model.seen.len(), 3, "the age index follows the inventory");
    // A smaller cap (a restart with a new setting) shrinks it on the next check.
    let gone = model.record_check(&request("1.0.0.0", macs[0], None), "c", "none", 12, 1);
    assert_eq!(gone.len(), 2);
    assert_eq!(model.inventory.keys().collect::<Vec<_>>(), vec![macs[0]]);
}

#[test]
fn inventory_keeps_a_bounded_user_name() {
    let mut model = Model::default();
    let mut req = request("1.0.0.0", MAC, None);
    req.user = Some("é".repeat(1000));
    model.record_check(&req, "c", "none", 1, 10);
    let user = model.inventory[MAC].last_user.clone().unwrap();
    assert!(user.len() <= MAX_INVENTORY_USER_BYTES && user.len() >= MAX_INVENTORY_USER_BYTES - 1);
    assert!(user.chars().all(|c| c == 'é'));
}

/// A device checking again has its entry written over in place: for every pair of checks
/// (brand, modules added, dropped, repeated or reordered, versions, users, the same second),
/// the entry is the one a first check of the second request makes, with the user kept when
/// the second names none, and the age index follows.
#[test]
fn a_repeat_check_leaves_the_entry_a_first_check_would_make() {
    let module = |ut: &str, version: &str| InstalledModule {
        update_type: PathSegment::new(ut).unwrap(),
        file_name: FileName::new(&format!("{ut}.nbt")).unwrap(),
        version: v(version),
        timestamp: None,
    };
    let base = request("1.0.0.0", MAC, None);
    let mut variants = vec![base.clone()];
    let mut with = |f: &dyn Fn(&mut CheckRequest)| {
        let mut r = base.clone();
        f(&mut r);
        variants.push(r);
    };
    with(&|r| r.modules[0].version = v("1.0.0.2"));
    with(&|r| r.identity.brand = PathSegment::new("Aastra").unwrap());
    with(&|r| r.identity.locale = PathSegment::new("DEU").unwrap());
    with(&|r| r.modules.push(module("Cert", "2.0.0.0")));
    with(&|r| r.modules.insert(0, module("Cert", "2.0.0.1")));
    with(&|r| r.modules = vec![module("Cert", "3.0.0.0")]);
    with(&|r| r.modules = vec![module("CPE", "1.0.0.1"), module("CPE", "1.0.0.9")]);
    with(&|r| r.user = Some("CONTOSO\\bob".into()));
    with(&|r| r.user = Some("é".repeat(300)));
    let outcomes = ["none", "approved CPE 1.0.0.2"];
    for (i, first) in variants.iter().enumerate() {
        for (j, second) in variants.iter().enumerate() {
            for now in [5, 6] {
                let mut model = Model::default();
                model.record_check(first, "10.0.0.1", outcomes[0], 5, 10);
                model.record_check(second, "10.0.0.2", outcomes[j % 2], now, 10);
                let mut fresh = Model::default();
                fresh.record_check(second, "10.0.0.2", outcomes[j % 2], now, 10);
                let mut expected = fresh.inventory[MAC].clone();
                if second.user.is_none() {
                    expected.last_user = model_user(first);
                }
                assert_eq!(
                    model.inventory[MAC], expected,
                    "check {i} then {j} at {now}"
                );
                assert_eq!(
                    model.seen.iter().collect::<Vec<_>>(),
                    [&(now, MAC.to_owned())],
                    "check {i} then {j} at {now}"
                );
            }
        }
    }
}

/// The user a first check of `r` leaves in the inventory.
fn model_user(r: &CheckRequest) -> Option<String> {
    let mut model = Model::default();
    model.record_check(r, "c", "none", 1, 10);
    model.inventory[MAC].last_user.clone()
}
