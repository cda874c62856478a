//! kctl: the kcore operator CLI.
//!
//! `kctl [--endpoint URL] [-o table|json|yaml] <noun> <verb> ...` with the nouns vm, events,
//! node, pool, image, volume, network; see `kctl --help`.
//! Errors print as `Error: <message> (<gRPC code>)` on stderr and exit 1.

mod cert;
mod cli;
mod cloud_init;
mod console;
mod events;
mod image;
mod migrate;
mod network;
mod node;
mod output;
mod parse;
#[cfg(test)]
mod parse_props;
mod progress;
mod qmp;
mod storage;
mod template;
mod vm;

use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser};
use kcore_client::endpoint;

use cli::{
    CertCommand, Cli, Command, ImageCommand, NodeCommand, PoolCommand, TemplateCommand, VmCommand,
    VolumeCommand,
};
use network::NetworkCommand;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Do not wait for a blocking stdin read (the QMP shell's) still in flight.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<output::BrokenPipe>().is_some() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Validates what can be checked locally, connects, and runs the command.
async fn run(cli: Cli) -> Result<()> {
    let format = cli.output;
    if let Command::Completion { shell } = cli.command {
        let mut command = Cli::command();
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut command, "kctl", &mut out);
        return output::write_stdout(&out);
    }

    // Local checks first, so mistakes are reported without a round trip.
    let create_request = match &cli.command {
        Command::Vm(VmCommand::Create(args)) => Some(vm::create_request(args)?),
        _ => None,
    };
    let import_request = match &cli.command {
        Command::Image(ImageCommand::Import(args)) => Some(image::import_request(args)?),
        _ => None,
    };
    let qmp_command = match &cli.command {
        Command::Vm(VmCommand::Qmp(args)) => args
            .json
            .as_deref()
            .map(qmp::validate_command)
            .transpose()?,
        _ => None,
    };

    let config_path = endpoint::default_config_path(&endpoint::process_env);
    let resolved = endpoint::resolve(
        cli.endpoint.as_deref(),
        &endpoint::process_env,
        &endpoint::local_socket(&endpoint::process_env),
        config_path.as_deref(),
    )?;
    let client = endpoint::connect(resolved).await?;

    match cli.command {
        Command::Completion { .. } => Ok(()),
        Command::Vm(command) => match command {
            VmCommand::Create(_) => match create_request {
                Some(request) => vm::create(&client, format, request).await,
                None => Ok(()),
            },
            VmCommand::List { node } => vm::list(&client, format, node).await,
            VmCommand::Get { name } => vm::get(&client, format, name).await,
            VmCommand::Start { name, no_wait } => vm::start(&client, format, name, no_wait).await,
            VmCommand::Stop {
                name,
                force,
                timeout,
                no_wait,
            } => vm::stop(&client, format, name, force, timeout, no_wait).await,
            VmCommand::Reboot { name } => {
                vm::simple(&client, format, vm::Simple::Reboot, name).await
            }
            VmCommand::Pause { name } => vm::simple(&client, format, vm::Simple::Pause, name).await,
            VmCommand::Resume { name } => {
                vm::simple(&client, format, vm::Simple::Resume, name).await
            }
            VmCommand::Delete {
                name,
                force,
                keep_disks,
            } => vm::delete(&client, format, name, force, keep_disks).await,
            VmCommand::Console(args) => console::run(&client, format, args).await,
            VmCommand::Qmp(args) => match qmp_command {
                Some(command) => qmp::one(&client, format, &args.name, command).await,
                None => qmp::shell(&client, format, &args.name).await,
            },
            VmCommand::Timeline { name } => vm::timeline(&client, format, name).await,
            VmCommand::Migrate {
                name,
                to,
                timeout,
                max_downtime,
                bandwidth,
            } => {
                let a = migrate::MigrateArgs {
                    name,
                    to,
                    timeout,
                    max_downtime,
                    bandwidth,
                };
                migrate::migrate(&client, format, a).await
            }
            VmCommand::Set(args) => vm::set(&client, format, args).await,
            VmCommand::Disk(command) => vm::disk(&client, format, command).await,
            VmCommand::Nic(command) => network::nic(&client, format, command).await,
        },
        Command::Events(args) => events::run(&client, format, args).await,
        Command::Node(command) => match command {
            NodeCommand::List => node::list(&client, format).await,
            NodeCommand::Get { node } => node::get(&client, format, node).await,
            NodeCommand::JoinToken { ttl } => node::join_token(&client, format, ttl).await,
            NodeCommand::Cordon { node } => node::cordon(&client, format, node, true).await,
            NodeCommand::Drain {
                node,
                timeout,
                force,
                stop,
            } => node::drain(&client, format, node, timeout, force, stop).await,
            NodeCommand::Uncordon { node } => node::cordon(&client, format, node, false).await,
            NodeCommand::Remove { node } => node::remove(&client, format, node).await,
        },
        Command::Pool(PoolCommand::List { node }) => {
            storage::list_pools(&client, format, node).await
        }
        Command::Image(command) => match command {
            ImageCommand::Import(_) => match import_request {
                Some(request) => image::import(&client, format, request).await,
                None => Ok(()),
            },
            ImageCommand::List { node } => image::list(&client, format, node).await,
            ImageCommand::Delete { name, node, pool } => {
                image::delete(&client, format, name, node, pool).await
            }
        },
        Command::Volume(VolumeCommand::List { node }) => {
            storage::list_volumes(&client, format, node).await
        }
        Command::Volume(VolumeCommand::Create {
            name,
            size,
            pool,
            node,
        }) => storage::create_volume(&client, format, name, size, pool, node).await,
        Command::Volume(VolumeCommand::Delete { name, pool, node }) => {
            storage::delete_volume(&client, name, pool, node).await
        }
        Command::Template(command) => match command {
            TemplateCommand::Create {
                name,
                from_vm,
                stop_source,
            } => template::create(&client, format, name, from_vm, stop_source).await,
            TemplateCommand::List { node } => template::list(&client, format, node).await,
            TemplateCommand::Get { name } => template::get(&client, format, name).await,
            TemplateCommand::Delete { name } => template::delete(&client, name).await,
        },
        Command::Network(command) => match command {
            NetworkCommand::Create(args) => network::create(&client, format, args).await,
            NetworkCommand::List => network::list(&client, format).await,
            NetworkCommand::Get { name } => network::get(&client, format, name).await,
            NetworkCommand::Delete { name } => network::delete(&client, format, name).await,
        },
        Command::Cert(CertCommand::Issue { name, role, out }) => {
            cert::issue(&client, format, name, role, out).await
        }
        Command::Cert(CertCommand::List) => cert::list(&client, format).await,
        Command::Cert(CertCommand::Revoke { name, serial }) => {
            cert::revoke(&client, format, name, serial).await
        }
    }
}
