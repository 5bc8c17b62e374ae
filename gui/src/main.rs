//! `appbox-gui`: the appbox store (GNOME Software, Flatseal and Warehouse in
//! one window). Store work runs on a worker thread through the `appbox`
//! library; the window never parses CLI output.

mod portal_dialog;
mod window;

use appbox::hostfacts::HostFacts;
use appbox_gui::worker;

use std::cell::RefCell;
use std::rc::Rc;

use adw::prelude::*;
use gtk4::glib;
use libadwaita as adw;

const APP_ID: &str = "org.appbox.Store";

fn main() -> glib::ExitCode {
    // `appbox-portal` shows its dialogs through this binary.
    if portal_dialog::asked() {
        return portal_dialog::main();
    }
    glib::set_application_name("appbox Store");
    let app = adw::Application::builder().application_id(APP_ID).build();
    let thread: Rc<RefCell<Option<worker::WorkerThread>>> = Rc::default();
    {
        let thread = thread.clone();
        app.connect_activate(move |app| {
            if let Some(window) = app.active_window() {
                window.present();
                return;
            }
            // Gathered once, for the window and the worker both.
            let facts = HostFacts::gather().map_err(|e| appbox::sandbox::chain(&e));
            let (worker, replies, started) = worker::start(facts.clone());
            *thread.borrow_mut() = Some(started);
            window::build(app, worker, replies, facts.ok());
        });
    }
    let code = app.run();
    // The window and its handles on the worker are gone: let the thread end
    // before the process does, so it never runs during exit.
    drop(app);
    if let Some(thread) = thread.take() {
        thread.finish(std::time::Duration::from_secs(2));
    }
    code
}
