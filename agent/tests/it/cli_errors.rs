//! Error messages as a user sees them from the `ucupdate-agent` binary: each cause printed
//! once, the file named, a bad flag reported as a flag (issue 18).

use std::process::Command;

const CONFIG: &str = "[device]\nbrand = \"Polycom\"\nmodel = \"CX700\"\n\
                      mac = \"00-04-F2-00-01-76\"\ninitial_version = \"1.0.0.0\"\n";

/// Runs the binary; (exit code, standard error).
fn agent(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ucupdate-agent"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_missing_config_file_is_named_once_with_its_reason_once() {
    let (code, err) = agent(&["run", "--config", "nope.toml"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.trim_end(),
        "ucupdate-agent: nope.toml: No such file or directory (os error 2)"
    );
}

#[test]
fn a_toml_error_names_the_file_and_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!("{CONFIG}[machine]\npoll_intervall = \"1h\"\n"),
    );
    let (code, err) = agent(&["run", "--config", &path]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with(&format!("ucupdate-agent: {path}: ")),
        "{err}"
    );
    assert_eq!(err.matches("unknown field").count(), 1, "{err}");
}

#[test]
fn a_machine_config_error_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!(
            "state_dir = {:?}\n{CONFIG}[machine]\nidle_before_restart = \"0s\"\n",
            dir.path()
        ),
    );
    let (code, err) = agent(&["run", "--config", &path]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.trim_end(),
        "ucupdate-agent: [machine]: `idle_before_restart` must be greater than zero"
    );
}

#[test]
fn a_bad_server_flag_is_a_usage_error_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), CONFIG);
    let (code, err) = agent(&["run", "--config", &path, "--server", "ftp://pool"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid value for --server"), "{err}");
    assert!(!err.contains("[machine]"), "{err}");
}
