use crate::support::{kiln, output};

#[test]
fn bash_completions_name_the_commands() {
    let root = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = output(kiln(root.path()).args(["completions", "bash"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("_kiln()"), "{stdout}");
    assert!(stdout.contains("completions"), "{stdout}");
}

#[test]
fn unknown_shell_is_a_usage_error() {
    let root = tempfile::tempdir().unwrap();
    let (out, _, stderr) = output(kiln(root.path()).args(["completions", "tcsh"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid value 'tcsh'"), "{stderr}");
}

#[test]
fn version_names_the_binary() {
    let root = tempfile::tempdir().unwrap();
    let (out, stdout, _) = output(kiln(root.path()).arg("--version"));
    assert!(out.status.success());
    assert!(stdout.starts_with("kiln "), "{stdout}");
}
