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

/// The leaf's DER (what a catalog the server signed carries first).
fn leaf_der(pem: &str) -> Vec<u8> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

fn stored(data: &Path, key: &str, version: &str, name: &str) -> Option<Vec<u8>> {
    let dir = ucupdate_server_stub::store::version_dir(
        data,
        &key.parse().unwrap(),
        version.parse().unwrap(),
    );
    std::fs::read(dir.join(name)).ok()
}

/// `import --sign-cert --sign-key`: the update without a catalog gets `CPE.cat` listing every
/// file with its SHA-256, signed by the configured leaf; the update that carries one keeps the
/// vendor's bytes.
#[test]
fn import_signs_updates_without_a_catalog_and_keeps_the_vendors() {
    use ucupdate_protocol::FileName;
    use ucupdate_server_stub::package::{write_dir, PackageEntry};
    let dir = tempfile::tempdir().unwrap();
    let t = throwaway_signer(LeafOptions::default()).unwrap();
    std::fs::write(dir.path().join("leaf.pem"), &t.cert_pem).unwrap();
    std::fs::write(dir.path().join("leaf.key"), &t.key_pem).unwrap();
    let key = "UCPhone/Polycom/CX700/A/ENU/CPE";
    let entry = |version: &str, files: &[(&str, &[u8])]| PackageEntry {
        key: key.parse().unwrap(),
        version: version.parse().unwrap(),
        files: files
            .iter()
            .map(|(n, b)| (FileName::new(n).unwrap(), b.to_vec()))
            .collect(),
    };
    let unsigned = [
        ("CPE.nbt", b"image one".as_slice()),
        ("CPE.xml", b"<D/>".as_slice()),
    ];
    let vendor = [
        ("CPE.nbt", b"image two".as_slice()),
        ("CPE.cat", b"vendor catalog".as_slice()),
    ];
    let pkg = dir.path().join("pkg");
    write_dir(
        &pkg,
        &[entry("1.0.0.1", &unsigned), entry("1.0.0.2", &vendor)],
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_ucupdate-server"))
        .current_dir(dir.path())
        .args(["import", "--data"])
        .arg(&data)
        .args(["--sign-cert", "leaf.pem", "--sign-key", "leaf.key"])
        .arg(&pkg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = stored(&data, key, "1.0.0.1", "CPE.cat").expect("a signed CPE.cat");
    let cat = catalog::decode(&signed).unwrap();
    assert_eq!(cat.certificates[0], leaf_der(&t.cert_pem));
    let listed: Vec<_> = cat
        .trust_list
        .members
        .iter()
        .map(|m| {
            let digest = m.digest.as_ref().unwrap().value().to_vec();
            (m.file_name.clone().unwrap(), digest)
        })
        .collect();
    let sha = |b: &[u8]| {
        ring::digest::digest(&ring::digest::SHA256, b)
            .as_ref()
            .to_vec()
    };
    assert_eq!(
        listed,
        [
            ("CPE.nbt".to_owned(), sha(b"image one")),
            ("CPE.xml".to_owned(), sha(b"<D/>")),
        ]
    );
    assert_eq!(
        stored(&data, key, "1.0.0.2", "CPE.cat").as_deref(),
        Some(b"vendor catalog".as_slice())
    );
}

/// `--sign-cert` without `--sign-key` is a usage error, not an unsigned import.
#[test]
fn import_refuses_a_signing_certificate_without_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ucupdate-server"))
        .args(["import", "--data"])
        .arg(dir.path().join("data"))
        .args(["--sign-cert", "leaf.pem"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The scripting path (`Control::publish`, what the simulator's embedded server uses): with a
/// signer and no `.cat` among the files, the version gets a signed one; republishing with a
/// vendor catalog keeps that one.
#[tokio::test]
async fn control_publish_signs_when_no_catalog_is_given() {
    use crate::common::{app_with, key, v};
    use ucupdate_protocol::FileName;
    let t = throwaway_signer(LeafOptions::default()).unwrap();
    let leaf = leaf_der(&t.cert_pem);
    let test = app_with(tempfile::tempdir().unwrap(), |c| {
        c.catalog_signer = Some(std::sync::Arc::new(t.signer));
    });
    let image = (FileName::new("CPE.nbt").unwrap(), b"image".to_vec());
    test.control()
        .publish(&key(), v("1.0.0.1"), vec![image.clone()])
        .await
        .unwrap();
    let data = test.dir.path();
    let key_text = key().to_string();
    let cat = stored(data, &key_text, "1.0.0.1", "CPE.cat").expect("a signed CPE.cat");
    assert_eq!(catalog::decode(&cat).unwrap().certificates[0], leaf);
    let vendor = (FileName::new("CPE.cat").unwrap(), b"vendor".to_vec());
    test.control()
        .publish(&key(), v("1.0.0.2"), vec![image, vendor])
        .await
        .unwrap();
    assert_eq!(
        stored(data, &key_text, "1.0.0.2", "CPE.cat").as_deref(),
        Some(b"vendor".as_slice())
    );
}

/// Every throwaway signer's certificates, and so every catalog signed over the same files, have
/// the same size: the simulator's shard processes each make their own signer and must agree
/// on the bytes their devices download (a serial one byte shorter once broke that).
#[test]
fn throwaway_certificates_always_have_the_same_size() {
    let sizes = |t: &ucupdate_server_stub::catalog::ThrowawaySigner| {
        // Base64 of a fixed-size DER has a fixed length.
        let catalog = t
            .signer
            .sign_files(&[("CPE.nbt", b"image")], 1_735_689_600)
            .unwrap();
        (t.ca_pem.len(), t.cert_pem.len(), catalog.len())
    };
    let first = sizes(&throwaway_signer(LeafOptions::default()).unwrap());
    for _ in 0..300 {
        assert_eq!(
            sizes(&throwaway_signer(LeafOptions::default()).unwrap()),
            first
        );
    }
}
