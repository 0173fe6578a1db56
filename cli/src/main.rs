//! The `peerauth` binary: parse arguments, run, exit with the command's code.

use clap::Parser;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    // clap exits 2 on usage errors and 0 for --help/--version, matching our codes.
    let mut cli = peerauth_cli::cli::Cli::parse();
    // The matrix's table must fit the terminal: $COLUMNS when the shell
    // exports it, else 80 on a terminal; a pipe or file has no limit.
    if let peerauth_cli::cli::Command::Matrix(m) = &mut cli.command {
        if m.width.is_none() {
            m.width = std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.trim().parse().ok())
                .or_else(|| io::stdout().is_terminal().then_some(80));
        }
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = peerauth_cli::run(
        &cli,
        &mut io::stdin().lock(),
        &mut out,
        &mut io::stderr().lock(),
    )
    .and_then(|code| out.flush().map(|()| code));
    match result {
        Ok(code) => ExitCode::from(code),
        // `peerauth matrix … | head` closing the pipe is not an error worth a message.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(peerauth_cli::EXIT_OK),
        Err(e) => {
            let _ = writeln!(io::stderr(), "peerauth: cannot write output: {e}");
            ExitCode::from(peerauth_cli::EXIT_INPUT)
        }
    }
}
