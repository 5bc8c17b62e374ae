//! The editor window: a header bar with Open, Save and Save As, and a text view.
//!
//! Every operation that shows a dialog or touches a file runs as a future on the
//! main loop and holds a [`Busy`] guard, so two of them never interleave (a second
//! Ctrl+S while the first save is still writing does nothing).

use std::cell::{Cell, RefCell};

use adw::prelude::*;
use adw::subclass::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;
use libadwaita as adw;

use crate::document::{decode_text, short_dir, Document, SaveTarget};

/// The window's actions that start an operation; they are disabled while one runs.
const ACTIONS: [&str; 3] = ["win.open", "win.save", "win.save-as"];

mod imp {
    use super::*;

    #[derive(Default, gtk::CompositeTemplate)]
    #[template(file = "window.ui")]
    pub struct NotesWindow {
        #[template_child]
        pub(super) heading: TemplateChild<adw::WindowTitle>,
        #[template_child]
        pub(super) view: TemplateChild<gtk::TextView>,
        #[template_child]
        pub(super) toasts: TemplateChild<adw::ToastOverlay>,
        pub(super) doc: RefCell<Document<gio::File>>,
        /// An operation (dialog, load or save) is under way.
        pub(super) busy: Cell<bool>,
        /// The user agreed to close the window despite unsaved changes.
        pub(super) close_confirmed: Cell<bool>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for NotesWindow {
        const NAME: &'static str = "AppboxNotesWindow";
        type Type = super::NotesWindow;
        type ParentType = adw::ApplicationWindow;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
            klass.install_action_async("win.open", None, |win, _, _| async move {
                win.open().await;
            });
            klass.install_action_async("win.save", None, |win, _, _| async move {
                win.save().await;
            });
            klass.install_action_async("win.save-as", None, |win, _, _| async move {
                win.save_as().await;
            });
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for NotesWindow {
        fn constructed(&self) {
            self.parent_constructed();
            self.obj().setup();
        }
    }

    impl WidgetImpl for NotesWindow {}

    impl WindowImpl for NotesWindow {
        fn close_request(&self) -> glib::Propagation {
            if self.close_confirmed.get() || !self.doc.borrow().needs_discard_confirmation() {
                return self.parent_close_request();
            }
            let win = self.obj().clone();
            glib::spawn_future_local(async move { win.close_after_confirming().await });
            glib::Propagation::Stop
        }
    }

    impl ApplicationWindowImpl for NotesWindow {}
    impl AdwApplicationWindowImpl for NotesWindow {}
}

glib::wrapper! {
    pub struct NotesWindow(ObjectSubclass<imp::NotesWindow>)
        @extends adw::ApplicationWindow, gtk::ApplicationWindow, gtk::Window, gtk::Widget,
        @implements gio::ActionGroup, gio::ActionMap, gtk::Buildable, gtk::ConstraintTarget, gtk::Native, gtk::Root, gtk::ShortcutManager;
}

/// Marks the window busy and disables its file actions until dropped.
struct Busy(NotesWindow);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.imp().busy.set(false);
        self.0.set_actions_enabled(true);
    }
}

/// What the user answered when asked to discard unsaved changes.
enum Answer {
    Cancel,
    Discard,
    Save,
}

impl NotesWindow {
    pub fn new(app: &adw::Application) -> Self {
        glib::Object::builder().property("application", app).build()
    }

    /// A window with no file and no text, which a newly opened file may take over.
    pub fn is_pristine(&self) -> bool {
        !self.imp().busy.get() && self.imp().doc.borrow().is_pristine()
    }

    /// Loads `file` into this window. The window is claimed at once, so it is no
    /// longer pristine while the file is read.
    pub fn open_file(&self, file: gio::File) {
        let Some(busy) = self.begin() else {
            return;
        };
        let win = self.clone();
        glib::spawn_future_local(async move {
            win.load(file).await;
            drop(busy);
        });
    }

    /// Connects the buffer, which the template cannot do.
    fn setup(&self) {
        let buffer = self.buffer();
        buffer.connect_changed(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |_| {
                win.imp().doc.borrow_mut().edited();
            }
        ));
        buffer.connect_modified_changed(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |buffer| {
                win.imp()
                    .doc
                    .borrow_mut()
                    .set_modified(buffer.is_modified());
                win.update_title();
            }
        ));
        self.imp().view.grab_focus();
        self.update_title();
    }

    fn buffer(&self) -> gtk::TextBuffer {
        self.imp().view.buffer()
    }

    fn update_title(&self) {
        // Read everything first: the setters below may run handlers that borrow `doc`.
        let (title, heading, dir) = {
            let doc = self.imp().doc.borrow();
            let dir = doc
                .file()
                .and_then(|file| file.parent())
                .map(|dir| short_dir(&dir.parse_name(), glib::home_dir().to_str()));
            (doc.window_title(), doc.heading(), dir)
        };
        self.set_title(Some(&title));
        self.imp().heading.set_title(&heading);
        self.imp()
            .heading
            .set_subtitle(dir.as_deref().unwrap_or(""));
    }

    fn set_actions_enabled(&self, enabled: bool) {
        for action in ACTIONS {
            self.action_set_enabled(action, enabled);
        }
    }

    fn begin(&self) -> Option<Busy> {
        if self.imp().busy.replace(true) {
            return None;
        }
        self.set_actions_enabled(false);
        Some(Busy(self.clone()))
    }

    fn toast(&self, message: &str) {
        // A toast's title is Pango markup in libadwaita 1.2 (no use-markup switch
        // until 1.4), and file names and GLib errors may hold '&' or '<'.
        let toast = adw::Toast::new(&glib::markup_escape_text(message));
        toast.set_timeout(8);
        self.imp().toasts.add_toast(toast);
    }

    async fn open(&self) {
        let Some(_busy) = self.begin() else {
            return;
        };
        if !self.confirm_discard().await {
            return;
        }
        if let Some(file) = self.choose_file(gtk::FileChooserAction::Open).await {
            self.load(file).await;
        }
    }

    async fn save(&self) -> bool {
        let Some(_busy) = self.begin() else {
            return false;
        };
        self.save_unguarded().await
    }

    async fn save_as(&self) -> bool {
        let Some(_busy) = self.begin() else {
            return false;
        };
        self.save_as_unguarded().await
    }

    async fn close_after_confirming(&self) {
        let Some(busy) = self.begin() else {
            return;
        };
        if self.confirm_discard().await {
            self.imp().close_confirmed.set(true);
            drop(busy);
            GtkWindowExt::close(self);
        }
    }

    async fn save_unguarded(&self) -> bool {
        // The borrow must end before the await: Save As borrows the document again.
        let file = match self.imp().doc.borrow().save_target() {
            SaveTarget::File(file) => Some(file.clone()),
            SaveTarget::Choose => None,
        };
        match file {
            Some(file) => self.write(file).await,
            None => self.save_as_unguarded().await,
        }
    }

    async fn save_as_unguarded(&self) -> bool {
        match self.choose_file(gtk::FileChooserAction::Save).await {
            Some(file) => self.write(file).await,
            None => false,
        }
    }

    /// Whether the text may be replaced or the window closed: true when nothing
    /// is unsaved, or the user discarded the changes, or saved them.
    async fn confirm_discard(&self) -> bool {
        if !self.imp().doc.borrow().needs_discard_confirmation() {
            return true;
        }
        match self.ask_discard().await {
            Answer::Cancel => false,
            Answer::Discard => true,
            Answer::Save => self.save_unguarded().await,
        }
    }

    async fn ask_discard(&self) -> Answer {
        let name = self.imp().doc.borrow().name().to_owned();
        let dialog = adw::MessageDialog::new(
            Some(self),
            Some("Discard changes?"),
            Some(&format!(
                "“{name}” has unsaved changes. If you discard them, they are lost."
            )),
        );
        dialog.add_responses(&[
            ("cancel", "_Cancel"),
            ("discard", "_Discard"),
            ("save", "_Save"),
        ]);
        dialog.set_response_appearance("discard", adw::ResponseAppearance::Destructive);
        dialog.set_response_appearance("save", adw::ResponseAppearance::Suggested);
        dialog.set_default_response(Some("save"));
        dialog.set_close_response("cancel");
        // adw_message_dialog_choose() is libadwaita 1.3; 1.2 has only the signal.
        let response = gio::GioFuture::new(&dialog, |dialog, _cancellable, result| {
            let result = Cell::new(Some(result));
            dialog.connect_response(None, move |_, response| {
                if let Some(result) = result.take() {
                    result.resolve(response.to_owned());
                }
            });
            dialog.present();
        })
        .await;
        match response.as_str() {
            "discard" => Answer::Discard,
            "save" => Answer::Save,
            _ => Answer::Cancel,
        }
    }

    /// Asks for a file through GTK's native chooser, which goes through the
    /// xdg-desktop-portal FileChooser whenever GTK uses portals (in a sandbox).
    async fn choose_file(&self, action: gtk::FileChooserAction) -> Option<gio::File> {
        let (title, accept) = match action {
            gtk::FileChooserAction::Save => ("Save As", "_Save"),
            _ => ("Open a Text File", "_Open"),
        };
        let chooser =
            gtk::FileChooserNative::new(Some(title), Some(self), action, Some(accept), None);
        chooser.set_modal(true);
        if action == gtk::FileChooserAction::Save {
            let current = self.imp().doc.borrow().file().cloned();
            match current {
                Some(file) => {
                    // Only a preselection: the chooser still works if it fails.
                    let _ = chooser.set_file(&file);
                }
                None => chooser.set_current_name("Untitled.txt"),
            }
        } else {
            let text = gtk::FileFilter::new();
            text.set_name(Some("Text files"));
            text.add_mime_type("text/plain");
            chooser.add_filter(&text);
            let all = gtk::FileFilter::new();
            all.set_name(Some("All files"));
            all.add_pattern("*");
            chooser.add_filter(&all);
        }
        let response = chooser.run_future().await;
        let file = match response {
            gtk::ResponseType::Accept => chooser.file(),
            _ => None,
        };
        chooser.destroy();
        file
    }

    /// Reads `file` into the window. A file that does not exist yet opens as
    /// empty text that Save creates, so `appbox-notes new.txt` works.
    async fn load(&self, file: gio::File) {
        let name = display_name(&file);
        match file.load_contents_future().await {
            Ok((bytes, _etag)) => match decode_text(&bytes) {
                Ok(text) => self.show_text(text, file, name),
                Err(e) => self.toast(&format!("Could not open “{name}”: {e}")),
            },
            Err(e) if e.matches(gio::IOErrorEnum::NotFound) => self.show_text("", file, name),
            Err(e) => self.toast(&format!("Could not open “{name}”: {}", e.message())),
        }
    }

    fn show_text(&self, text: &str, file: gio::File, name: String) {
        let buffer = self.buffer();
        // Loading a file is not an edit that Undo could take back.
        buffer.begin_irreversible_action();
        buffer.set_text(text);
        buffer.end_irreversible_action();
        buffer.place_cursor(&buffer.start_iter());
        self.imp().doc.borrow_mut().loaded(file, name);
        buffer.set_modified(false);
        self.update_title();
        self.imp().view.grab_focus();
    }

    /// Writes the text to `file` with GIO, which also works for the paths a
    /// portal hands out. Returns whether it was saved.
    async fn write(&self, file: gio::File) -> bool {
        let name = display_name(&file);
        let buffer = self.buffer();
        let (start, end) = buffer.bounds();
        let bytes = buffer.text(&start, &end, false).as_bytes().to_vec();
        let generation = self.imp().doc.borrow().generation();
        let result = file
            .replace_contents_future(bytes, None, false, gio::FileCreateFlags::NONE)
            .await;
        match result {
            Ok(_) => {
                let still_modified = self.imp().doc.borrow_mut().saved(file, name, generation);
                if !still_modified {
                    buffer.set_modified(false);
                }
                self.update_title();
                true
            }
            Err((_, e)) => {
                self.toast(&format!("Could not save “{name}”: {}", e.message()));
                false
            }
        }
    }
}

/// The file's name as people read it.
fn display_name(file: &gio::File) -> String {
    match file.basename() {
        Some(name) if name.as_os_str() != "/" => name.to_string_lossy().into_owned(),
        _ => file.parse_name().to_string(),
    }
}
