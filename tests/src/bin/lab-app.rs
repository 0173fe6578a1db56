//! The lab's stand-in application as its own binary, for the demo and the tests:
//! `lab-app --port 80 [--port N]… [--banner TEXT]` ([`peerauth_lab::app`]).

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(peerauth_lab::app::run(std::env::args().skip(1)))
}
