//! terraform-provider-kcore: the Terraform provider for kcore, speaking plugin protocol 6
//! (the `tf-provider` crate) and calling kcore's public gRPC API like kctl does
//! (`kcore-client`: the same endpoint, environment variables and config file).
//!
//! Terraform starts this binary and reads the plugin handshake from its stdout, so nothing
//! else may be printed there: logs go to stderr (Terraform shows them with `TF_LOG`), or
//! to `$PLUGIN_LOG_FILE` when Terraform sets it.
//!
//! Resources: `kcore_vm`, `kcore_network`, `kcore_image`, `kcore_volume`,
//! `kcore_template`; data sources:
//! `kcore_nodes`, `kcore_vm`, `kcore_images`, `kcore_template`. See docs/terraform.md.

mod data;
mod diag;
mod duration;
mod image;
mod network;
mod provider;
mod schema;
mod template;
mod vm;
mod volume;

use std::process::ExitCode;

fn main() -> ExitCode {
    // tf-provider attaches a captured backtrace to every diagnostic when backtraces are
    // on (RUST_BACKTRACE=1), and Terraform takes a diagnostic line that starts with
    // "panic" for a plugin crash. Library backtraces off; panics keep theirs.
    // SAFETY: nothing else runs yet (no runtime, no other thread) to read the environment.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    // tf-provider sets up its own subscriber (to the file) when PLUGIN_LOG_FILE is set;
    // a second global subscriber would make it panic.
    if std::env::var_os("PLUGIN_LOG_FILE").is_none() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("KCORE_PROVIDER_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("terraform-provider-kcore: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tf_provider::serve(
        "kcore",
        provider::KcoreProvider::default(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("terraform-provider-kcore: {e:#}");
            ExitCode::FAILURE
        }
    }
}
