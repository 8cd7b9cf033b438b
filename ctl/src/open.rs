//! `vxctl open`: the search page's address, and a browser on it.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use vx_ctl_protocol::{PAGE_URL_FILE, Status};

/// Prints the page's address from the file vxd keeps beside its socket,
/// then opens it in a browser unless `no_browser` or there is none.
/// `status` is vxd's, which says why there is no page when there is none.
pub fn open(socket: &Path, status: &Status, no_browser: bool) -> anyhow::Result<()> {
    let file = socket.with_file_name(PAGE_URL_FILE);
    let url = match std::fs::read_to_string(&file) {
        Ok(url) => url.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match status
                .warnings
                .iter()
                .find(|w| w.starts_with("no search page"))
            {
                Some(why) => bail!("vxd serves no search page: {why}"),
                None => bail!(
                    "vxd serves no search page: `page_port = 0` in its config; \
                     set a port (the default is {}) and restart vxd",
                    vx_config::DEFAULT_PAGE_PORT
                ),
            }
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    println!("{url}");
    if no_browser {
        return Ok(());
    }
    match browser() {
        Some(cmd) => {
            Command::new(&cmd)
                .arg(&url)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("cannot start {cmd}"))?;
            eprintln!("opened with {cmd}");
        }
        None => eprintln!(
            "no browser here (no display, no $BROWSER): open the address above in a browser \
             on this machine"
        ),
    }
    Ok(())
}

/// `$BROWSER` (its first entry), else `xdg-open` when there is a display
/// and it is installed.
fn browser() -> Option<String> {
    let from_env = std::env::var("BROWSER").unwrap_or_default();
    let first = from_env.split(':').next().unwrap_or_default().trim();
    if !first.is_empty() {
        return Some(first.to_owned());
    }
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
    let installed = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("xdg-open").is_file())
    });
    (display && installed).then(|| "xdg-open".to_owned())
}
