//! `appbox-gui --portal-dialog`: one dialog for `appbox-portal` on a host
//! without a portal backend. It reads one request from stdin, shows a file
//! chooser or a consent dialog, prints one answer on stdout and exits
//! ([`appbox::portal_dialog`] has the protocol). Errors go to stderr with
//! a failing exit status, and no answer.
//!
//! It runs without a GApplication: a second store window, or the store's
//! unique name on the bus, must not be involved in a portal question.

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

use adw::prelude::*;
use gtk4::{gio, glib};
use libadwaita as adw;

use appbox::portal_dialog::{
    read_bounded, ConsentAnswer, ConsentRequest, FileChooserAnswer, FileChooserRequest, Request,
    DIALOG_FLAG, MAX_REQUEST_BYTES,
};
use appbox::sandbox::chain;
use appbox_gui::model::portal_dialog::{self as view, ChooserMode, DENY};

/// The id of the chooser's read-only check box.
const READ_ONLY: &str = "read-only";

/// Whether this process was started as a portal dialog.
pub fn asked() -> bool {
    std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == DIALOG_FLAG)
}

pub fn main() -> glib::ExitCode {
    match run() {
        Ok(()) => glib::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("appbox-gui: error: {message}");
            glib::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    if std::env::args_os().count() != 2 {
        return Err(format!(
            "{DIALOG_FLAG} takes no other arguments; the request comes on stdin"
        ));
    }
    let bytes = read_bounded(std::io::stdin().lock(), MAX_REQUEST_BYTES, "dialog request")
        .map_err(|e| chain(&e))?;
    let request = Request::parse(&bytes).map_err(|e| chain(&e))?;
    // The window class names the program to the window manager (and tests).
    glib::set_prgname(Some("appbox-gui"));
    glib::set_application_name("appbox");
    gtk4::init().map_err(|e| format!("cannot open the display: {e}"))?;
    adw::init().map_err(|e| format!("cannot start libadwaita: {e}"))?;
    let answer = match &request {
        Request::FileChooser(request) => choose_files(request)?.to_json(),
        Request::Consent(request) => ask_consent(request).to_json(),
    }
    .map_err(|e| chain(&e))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&answer)
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write the answer: {e}"))
}

/// Runs the main loop until `answer` holds something.
fn wait_for<T>(answer: &Rc<RefCell<Option<T>>>, main_loop: &glib::MainLoop) -> Option<T> {
    main_loop.run();
    answer.borrow_mut().take()
}

fn choose_files(request: &FileChooserRequest) -> Result<FileChooserAnswer, String> {
    let shown = view::chooser_view(request);
    let action = match shown.mode {
        ChooserMode::Open => gtk4::FileChooserAction::Open,
        ChooserMode::SelectFolder => gtk4::FileChooserAction::SelectFolder,
        ChooserMode::Save => gtk4::FileChooserAction::Save,
    };
    // GTK 4.8 has no GtkFileDialog; the header bar carries the buttons.
    let dialog = gtk4::FileChooserDialog::builder()
        .title(shown.title.as_str())
        .action(action)
        .use_header_bar(1)
        .modal(true)
        .build();
    dialog.add_button("_Cancel", gtk4::ResponseType::Cancel);
    let accept = dialog.add_button(&shown.accept_label, gtk4::ResponseType::Accept);
    accept.add_css_class("suggested-action");
    dialog.set_default_response(gtk4::ResponseType::Accept);
    // appbox's own line naming the app, above the files: the header bar
    // belongs to the chooser (its title, or the name entry when saving).
    let asking = gtk4::Label::builder()
        .label(shown.asking.as_str())
        .use_markup(false)
        .use_underline(false)
        .wrap(true)
        .xalign(0.0)
        .margin_top(6)
        .margin_bottom(6)
        .margin_start(12)
        .margin_end(12)
        .build();
    asking.add_css_class("heading");
    dialog.content_area().prepend(&asking);
    if shown.multiple {
        dialog.set_select_multiple(true);
    }
    if let Some(name) = &shown.current_name {
        dialog.set_current_name(name);
    }
    for filter in &shown.filters {
        let gtk_filter = gtk4::FileFilter::new();
        gtk_filter.set_name(Some(&filter.name));
        for glob in &filter.globs {
            gtk_filter.add_pattern(glob);
        }
        for mime in &filter.mime_types {
            gtk_filter.add_mime_type(mime);
        }
        dialog.add_filter(&gtk_filter);
    }
    if shown.read_only_choice {
        dialog.add_choice(READ_ONLY, "Open read-only", &[]);
    }

    let answer: Rc<RefCell<Option<Result<FileChooserAnswer, String>>>> = Rc::default();
    let main_loop = glib::MainLoop::new(None, false);
    let action = request.action.clone();
    dialog.connect_response({
        let (answer, main_loop) = (answer.clone(), main_loop.clone());
        move |dialog, response| {
            if answer.borrow().is_some() {
                return;
            }
            let result = if response == gtk4::ResponseType::Accept {
                let read_only = dialog.choice(READ_ONLY).is_some_and(|c| c == "true");
                view::file_answer(&action, picked_paths(dialog), read_only)
                    .map_err(|e| e.to_string())
            } else {
                Ok(FileChooserAnswer::Cancelled {})
            };
            *answer.borrow_mut() = Some(result);
            dialog.set_visible(false);
            main_loop.quit();
        }
    });
    dialog.present();
    wait_for(&answer, &main_loop).unwrap_or(Ok(FileChooserAnswer::Cancelled {}))
}

/// The local paths of what the chooser has selected; `None` for a file
/// with no local path.
fn picked_paths(dialog: &gtk4::FileChooserDialog) -> Vec<Option<std::path::PathBuf>> {
    let files = dialog.files();
    (0..files.n_items())
        .filter_map(|i| files.item(i).and_downcast::<gio::File>())
        .map(|file| file.path())
        .collect()
}

fn ask_consent(request: &ConsentRequest) -> ConsentAnswer {
    let shown = view::consent_view(request);
    // Heading and body are plain text: markup stays off.
    let dialog = adw::MessageDialog::builder()
        .title(shown.heading.as_str())
        .heading(shown.heading.as_str())
        .heading_use_markup(false)
        .body(shown.body.as_str())
        .body_use_markup(false)
        .build();
    dialog.add_response(DENY, shown.deny_label);
    dialog.add_response(view::ALLOW, shown.allow_label);
    dialog.set_response_appearance(view::ALLOW, adw::ResponseAppearance::Suggested);
    // Enter or Escape alone never grants anything.
    dialog.set_default_response(Some(DENY));
    dialog.set_close_response(DENY);
    let remember = gtk4::CheckButton::with_mnemonic(shown.remember_label);
    remember.set_halign(gtk4::Align::Center);
    dialog.set_extra_child(Some(&remember));

    let answer: Rc<RefCell<Option<ConsentAnswer>>> = Rc::default();
    let main_loop = glib::MainLoop::new(None, false);
    dialog.connect_response(None, {
        let (answer, main_loop) = (answer.clone(), main_loop.clone());
        move |dialog, response| {
            if answer.borrow().is_some() {
                return;
            }
            *answer.borrow_mut() = Some(view::consent_answer(response, remember.is_active()));
            dialog.set_visible(false);
            main_loop.quit();
        }
    });
    dialog.present();
    wait_for(&answer, &main_loop).unwrap_or(view::consent_answer(DENY, false))
}
