//! `ucupdate-server catalog create`: the catalogs it writes, checked by the codec here and by
//! the independent peer, `osslsigncode verify -CAfile` (`#[ignore]`: the CI's interop stage
//! installs osslsigncode and runs the ignored tests).

use std::path::Path;
use std::process::Command;

use ucupdate_protocol::catalog;
use ucupdate_server_stub::catalog::{throwaway_signer, LeafOptions};

fn create(dir: &Path, cert: &str, key: &str) -> std::process::Output {
    let t = throwaway_signer(LeafOptions::default()).unwrap();
    std::fs::write(dir.join("ca.pem"), &t.ca_pem).unwrap();
    std::fs::write(dir.join("leaf.pem"), cert.replace("{leaf}", &t.cert_pem)).unwrap();
    std::fs::write(dir.join("leaf.key"), key.replace("{key}", &t.key_pem)).unwrap();
    std::fs::write(dir.join("ucupdate.bin"), b"image").unwrap();
    std::fs::write(dir.join("ucupdate.ver"), b"1.0.0.1").unwrap();
    Command::new(env!("CARGO_BIN_EXE_ucupdate-server"))
        .current_dir(dir)
        .args([
            "catalog", "create", "--cert", "leaf.pem", "--key", "leaf.key",
        ])
        .args(["ucupdate.bin", "ucupdate.ver", "-o", "x.cat"])
        .output()
        .unwrap()
}

#[test]
fn catalog_create_lists_every_file_under_its_base_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = create(dir.path(), "{leaf}", "{key}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cat = catalog::decode(&std::fs::read(dir.path().join("x.cat")).unwrap()).unwrap();
    let names: Vec<_> = cat
        .trust_list
        .members
        .iter()
        .filter_map(|m| m.file_name.clone())
        .collect();
    assert_eq!(names, ["ucupdate.bin", "ucupdate.ver"]);
    assert_eq!(cat.signers.len(), 1);
}

#[test]
fn catalog_create_refuses_a_key_that_is_not_the_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let other = throwaway_signer(LeafOptions::default()).unwrap();
    let out = create(dir.path(), "{leaf}", &other.key_pem);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match"), "{err}");
    assert!(!dir.path().join("x.cat").exists());
}

fn osslsigncode_verify(dir: &Path, ca: &str) -> std::process::Output {
    Command::new("osslsigncode")
        .current_dir(dir)
        .args(["verify", "-CAfile", ca, "-in", "x.cat"])
        .output()
        .expect("run osslsigncode (is it installed?)")
}

#[test]
#[ignore = "needs osslsigncode (CI interop stage)"]
fn osslsigncode_verifies_a_catalog_from_catalog_create() {
    let dir = tempfile::tempdir().unwrap();
    assert!(create(dir.path(), "{leaf}", "{key}").status.success());
    let out = osslsigncode_verify(dir.path(), "ca.pem");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Signature verification: ok"), "{text}");

    // The same catalog against another CA fails: the check above can fail.
    let other = throwaway_signer(LeafOptions::default()).unwrap();
    std::fs::write(dir.path().join("other.pem"), &other.ca_pem).unwrap();
    assert!(!osslsigncode_verify(dir.path(), "other.pem")
        .status
        .success());

    // And one byte of the CTL changed (a member digest) fails too.
    let path = dir.path().join("x.cat");
    let mut bytes = std::fs::read(&path).unwrap();
    let digest = sha256(b"image");
    let at = bytes.windows(32).position(|w| w == digest).unwrap();
    bytes[at] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    assert!(!osslsigncode_verify(dir.path(), "ca.pem").status.success());
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).to_vec()
}
