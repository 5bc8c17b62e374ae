//! Notes: a small GTK4 + libadwaita plain-text editor, one of appbox's sample apps.
//!
//! It opens and saves through `gtk::FileChooserNative` and GIO, so inside an appbox
//! sandbox its file dialogs reach the FileChooser portal and it saves to the paths
//! the portal hands out.

mod document;
mod window;

use adw::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;
use libadwaita as adw;

use window::NotesWindow;

const APP_ID: &str = "org.appbox.Notes";

fn main() -> glib::ExitCode {
    glib::set_application_name(document::APP_NAME);
    let app = adw::Application::builder()
        .application_id(APP_ID)
        .flags(gio::ApplicationFlags::HANDLES_OPEN)
        .build();
    app.connect_startup(startup);
    app.connect_activate(|app| {
        match app.active_window() {
            Some(window) => window.present(),
            None => NotesWindow::new(app).present(),
        };
    });
    app.connect_open(open);
    app.run()
}

fn startup(app: &adw::Application) {
    gtk::Window::set_default_icon_name(APP_ID);

    let quit = gio::ActionEntry::builder("quit")
        .activate(|app: &adw::Application, _, _| {
            // Closing each window asks about its unsaved changes; the application
            // exits once the last one is gone.
            for window in app.windows() {
                window.close();
            }
        })
        .build();
    app.add_action_entries([quit]);

    for (action, accels) in [
        ("win.open", ["<Control>o"]),
        ("win.save", ["<Control>s"]),
        ("win.save-as", ["<Control><Shift>s"]),
        ("window.close", ["<Control>w"]),
        ("app.quit", ["<Control>q"]),
    ] {
        app.set_accels_for_action(action, &accels);
    }
}

/// Files from the command line, or from a second `appbox-notes FILE`: each gets a
/// window of its own, except that an untouched empty window is reused.
fn open(app: &adw::Application, files: &[gio::File], _hint: &str) {
    for file in files {
        let window = app
            .windows()
            .into_iter()
            .filter_map(|window| window.downcast::<NotesWindow>().ok())
            .find(NotesWindow::is_pristine)
            .unwrap_or_else(|| NotesWindow::new(app));
        window.open_file(file.clone());
        window.present();
    }
}
