//! Install hooks: the station's own commands, run before an install and before the boot
//! switch, that may refuse it (a charging session in progress, a failed self-test of the new
//! slot).

use std::process::Command;

use super::UpdateError;

/// Which hook ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// Before the download and before the target is opened.
    PreInstall,
    /// After the read-back, before the boot switch.
    PostInstall,
}

impl HookKind {
    /// The configuration key (`pre_install`).
    pub fn name(self) -> &'static str {
        match self {
            HookKind::PreInstall => "pre_install",
            HookKind::PostInstall => "post_install",
        }
    }
}

/// What a hook is told about the install.
pub(crate) struct HookEnv<'a> {
    pub slot: &'a str,
    pub device: &'a std::path::Path,
    pub release: u64,
    pub booted: Option<&'a str>,
}

/// Runs `command` (program and arguments, no shell) and waits for it; a non-zero exit, a
/// signal or a program that cannot start refuses the install.
pub(crate) fn run(
    kind: HookKind,
    command: Option<&[String]>,
    env: &HookEnv<'_>,
) -> Result<(), UpdateError> {
    let Some((program, args)) = command.and_then(<[String]>::split_first) else {
        return Ok(());
    };
    let refused = |why: String| UpdateError::HookRefused {
        hook: kind,
        command: command.map(|c| c.join(" ")).unwrap_or_default(),
        why,
    };
    let output = Command::new(program)
        .args(args)
        .env("ABDELTA_SLOT", env.slot)
        .env("ABDELTA_DEVICE", env.device)
        .env("ABDELTA_RELEASE", env.release.to_string())
        .env("ABDELTA_BOOTED", env.booted.unwrap_or(""))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| refused(format!("could not start: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(refused(
        format!("{} {}", output.status, last.trim())
            .trim()
            .to_owned(),
    ))
}
