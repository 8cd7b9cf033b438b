//! `vxctl`: asks a running `vxd` what it is doing, and searches its index.
//!
//! It talks to vxd only through the control socket, with `vx-ctl-client`; it
//! never opens the index itself. Every command has a `--json` form whose
//! fields are only ever added to, so scripts can rely on it.
//!
//! `cli` holds the command line, `render` what is printed (file names quoted
//! by `vx-shell`), `service` the systemd unit, `open` the search page; this file dispatches.

mod cli;
mod open;
mod render;
mod service;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::Parser;
use vx_ctl_client::Client;
use vx_ctl_protocol::{RetryRequest, SearchRequest};
use vx_shell as shell;

use cli::{Args, Command, SearchArgs};

/// Exit status of `vxctl wait` when the timeout passes first.
const EXIT_TIMEOUT: u8 = 3;

fn main() -> ExitCode {
    // `vxctl search … | head` ends quietly when head is done, as CLI tools
    // do, instead of panicking on the closed pipe.
    // SAFETY: setting a signal's disposition to the default has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vxctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Command::InstallService { vxd, print } = args.command {
        service::install(vxd, print)?;
        return Ok(ExitCode::SUCCESS);
    }
    let socket = match args.socket {
        Some(s) => s,
        None => vx_config::Settings::load(args.config.as_deref())?.socket,
    };
    let connect = || Client::connect(&socket);
    match args.command {
        Command::Status {
            path: Some(path),
            json,
            ..
        } => {
            let path = std::env::current_dir()?.join(path);
            let report = connect()?.file(path)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render::file(&report));
            }
        }
        Command::Open { no_browser } => {
            let status = connect()?.status()?;
            open::open(&socket, &status, no_browser)?;
        }
        Command::Status { watch: true, .. } => {
            let mut client = connect()?;
            render::watch_progress(|| Ok(client.status()?))?;
        }
        Command::Status { json, .. } => {
            let status = connect()?.status()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render::status(&status));
            }
        }
        Command::InstallService { .. } => unreachable!("handled before connecting"),
        Command::Pause { json } | Command::Resume { json } => {
            let pause = matches!(args.command, Command::Pause { .. });
            let mut client = connect()?;
            let status = if pause {
                client.pause()?
            } else {
                client.resume()?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(ExitCode::SUCCESS);
            }
            match (pause, status.files.in_progress) {
                (true, 0) => println!("paused"),
                (true, n) => println!("paused; {n} file(s) in progress will finish"),
                (false, _) => println!("resumed: {} file(s) queued", status.files.queued),
            }
        }
        Command::Wait { timeout } => {
            let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
            let mut client = connect()?;
            while !client.status()?.idle {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    eprintln!(
                        "vxctl: vxd is still busy after {:.1} s",
                        timeout.unwrap_or_default().as_secs_f64()
                    );
                    return Ok(ExitCode::from(EXIT_TIMEOUT));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Command::Search(s) => {
            let req = s
                .request(&std::env::current_dir()?)
                .map_err(|e| anyhow!(e))?;
            search(req, &s, &mut connect()?)?;
        }
        Command::Retry { paths, all, json } => {
            let cwd = std::env::current_dir()?;
            let paths = paths.into_iter().map(|p| cwd.join(p)).collect();
            let reply = connect()?.retry(RetryRequest {
                paths,
                all_failed: all,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                println!("queued {} file(s) for indexing", reply.queued.len());
                for (p, why) in &reply.refused {
                    eprintln!(
                        "vxctl: not queued: {}: {}",
                        shell::display(p),
                        shell::printable(why)
                    );
                }
            }
            if !reply.refused.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn search(req: SearchRequest, args: &SearchArgs, client: &mut Client) -> anyhow::Result<()> {
    let asked = req.mode;
    let reply = client.search(req)?;
    for note in render::search_notes(&reply, asked) {
        eprintln!("vxctl: {note}");
    }
    if args.json {
        let json = if args.segments {
            serde_json::to_string_pretty(&render::json_flat(&reply))?
        } else {
            serde_json::to_string_pretty(&render::json_grouped(&reply))?
        };
        println!("{json}");
    } else {
        let style = std::io::stdout().is_terminal();
        if args.segments {
            print!("{}", render::hits_flat(&reply, style));
        } else {
            print!("{}", render::hits_grouped(&reply, style));
        }
    }
    Ok(())
}
