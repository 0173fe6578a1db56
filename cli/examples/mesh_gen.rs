//! `cargo run --release -p peerauth-cli --example mesh_gen -- WORKLOADS > mesh.yaml`:
//! print issue 18's generated cluster of `WORKLOADS` workloads (a multiple of
//! 10) as multi-document YAML; the shape is described in
//! `peerauth_cli::generate`.
use std::io::{self, BufWriter};
use std::process::ExitCode;

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    let Some(workloads) = arg
        .as_deref()
        .and_then(|a| a.replace('_', "").parse::<usize>().ok())
        .filter(|w| *w >= 10 && w % 10 == 0)
    else {
        eprintln!("usage: mesh_gen WORKLOADS   (a multiple of 10, e.g. 50000)");
        return ExitCode::from(2);
    };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match peerauth_cli::generate::mesh(&mut out, workloads) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh_gen: cannot write: {e}");
            ExitCode::FAILURE
        }
    }
}
