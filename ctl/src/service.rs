//! `vxctl install-service`: vxd as a systemd user service.

use std::path::PathBuf;

use anyhow::Context;

/// The hardened user unit, with `%h/.local/bin/vxd` as the placeholder binary.
const UNIT_TEMPLATE: &str = include_str!("../../systemd/vxd.service");

/// Writes the unit running `vxd` (default: the vxd beside this vxctl), or
/// prints it with `print`.
pub fn install(vxd: Option<PathBuf>, print: bool) -> anyhow::Result<()> {
    let vxd = match vxd {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("vxd"),
    };
    let vxd = vxd
        .canonicalize()
        .with_context(|| format!("no vxd at {}", vxd.display()))?;
    let unit = UNIT_TEMPLATE.replace(
        "ExecStart=%h/.local/bin/vxd",
        &format!("ExecStart={}", vxd.display()),
    );
    if print {
        print!("{unit}");
        return Ok(());
    }
    let config_home = match std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    let dir = config_home.join("systemd/user");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("vxd.service");
    std::fs::write(&path, unit).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    if !config_home.join("vx/vxd.toml").exists() {
        println!(
            "next, say what to index: {} --print-config > {} and set `watch`",
            vxd.display(),
            config_home.join("vx/vxd.toml").display()
        );
    }
    println!("then: systemctl --user daemon-reload && systemctl --user enable --now vxd");
    Ok(())
}
