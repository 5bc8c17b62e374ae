//! The `appbox` command line. It parses arguments and reports errors; the work
//! happens in the library.

mod cli;
mod grants_cli;

fn main() {
    std::process::exit(cli::main());
}
