//! `kprox completion SHELL` and `kprox man`: shell completion scripts and the man page,
//! generated from the same clap definitions that parse the command line, so they never
//! disagree with it. Where to put them is in the README ("Shell completion and man page").

use std::io::Write;

use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionShell};

/// Writes the completion script for `shell` to stdout.
pub fn completion(shell: CompletionShell) -> anyhow::Result<()> {
    let generator = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(generator, &mut command, "kprox", &mut out);
    out.flush()?;
    Ok(())
}

/// Writes the man page, kprox(1), to stdout.
pub fn man() -> anyhow::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&page)?;
    out.flush()?;
    Ok(())
}
