//! `appbox-gui`: the appbox store (GNOME Software, Flatseal and Warehouse in
//! one window). Store work runs on a worker thread through the `appbox`
//! library; the window never parses CLI output.

mod model;
mod window;
mod worker;

use adw::prelude::*;
use gtk4::glib;
use libadwaita as adw;

const APP_ID: &str = "org.appbox.Store";

fn main() -> glib::ExitCode {
    glib::set_application_name("appbox Store");
    let app = adw::Application::builder().application_id(APP_ID).build();
    app.connect_activate(|app| {
        if let Some(window) = app.active_window() {
            window.present();
            return;
        }
        let (worker, replies) = worker::start();
        window::build(app, worker, replies);
    });
    app.run()
}
