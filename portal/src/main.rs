//! `appbox-portal`: started by D-Bus activation (or `appbox run`) on the
//! user's session bus.

use std::process::ExitCode;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("appbox-portal: error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(appbox_portal::service::serve()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("appbox-portal: error: {}", appbox::sandbox::chain(&e));
            ExitCode::FAILURE
        }
    }
}
