//! The `callprobe` binary: everything lives in the library; see `cli`.

fn main() {
    std::process::exit(callprobe::cli::main());
}
