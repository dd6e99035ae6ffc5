//! The `callprobe` binary: everything lives in the library; see `cli`. The
//! one place where how a run ended becomes the process exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(callprobe::cli::main().code())
}
