//! Finding the endpoint: flag, environment, local socket, config file.

use super::common::*;

#[test]
fn unreachable_socket_names_the_endpoint() {
    let home = tempfile::tempdir().expect("tempdir");
    let mut command = kctl_command(home.path());
    command.args(["--endpoint", "unix:///nonexistent/kcore.sock", "vm", "list"]);
    let err = failed(&run(command, b""));
    assert!(
        err.starts_with("Error: cannot talk to kcore at unix:///nonexistent/kcore.sock: "),
        "{err}"
    );
    assert!(err.contains("hint: is kcored running"), "{err}");
}

#[test]
fn missing_endpoint_gives_the_clear_error() {
    let home = tempfile::tempdir().expect("tempdir");
    let err = failed(&run(
        {
            let mut c = kctl_command(home.path());
            c.args(["vm", "list"]);
            c
        },
        b"",
    ));
    assert_eq!(
        err,
        format!(
            "Error: no kcore endpoint: pass --endpoint, set KCORE_ENDPOINT, or run kcored \
             locally ({})\n",
            no_local_socket(home.path()).display()
        )
    );
}

#[test]
fn endpoint_from_env_and_config_file() {
    let server = Server::unix();
    let mut command = kctl_command(server.dir.path());
    command
        .env("KCORE_ENDPOINT", &server.endpoint)
        .args(["node", "list"]);
    assert!(ok(&run(command, b"")).starts_with("NAME"));

    let config_dir = server.dir.path().join(".config/kcore");
    std::fs::create_dir_all(&config_dir).expect("mkdir");
    std::fs::write(
        config_dir.join("config.toml"),
        format!("endpoint = \"{}\"\n", server.endpoint),
    )
    .expect("config");
    let mut command = kctl_command(server.dir.path());
    command.args(["node", "list"]);
    assert!(ok(&run(command, b"")).starts_with("NAME"));

    // The local socket comes before the config file: KCORE_SOCKET names it.
    std::fs::write(
        config_dir.join("config.toml"),
        "endpoint = \"unix:///nonexistent/kcore.sock\"\n",
    )
    .expect("config");
    let mut command = kctl_command(server.dir.path());
    command.args(["node", "list"]);
    let err = failed(&run(command, b""));
    assert!(
        err.starts_with("Error: cannot talk to kcore at unix:///nonexistent/kcore.sock: "),
        "{err}"
    );
    let mut command = kctl_command(server.dir.path());
    command
        .env("KCORE_SOCKET", server.dir.path().join("kcore.sock"))
        .args(["node", "list"]);
    assert!(ok(&run(command, b"")).starts_with("NAME"));
}

#[test]
fn completion_needs_no_endpoint() {
    let home = tempfile::tempdir().expect("tempdir");
    for shell in ["bash", "zsh", "fish"] {
        let mut command = kctl_command(home.path());
        command.args(["completion", shell]);
        let out = ok(&run(command, b""));
        assert!(out.contains("kctl"), "{shell}");
    }
}
