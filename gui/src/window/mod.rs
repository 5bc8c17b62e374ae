//! The store window: Explore, Installed, Updates, Remotes and Storage in a
//! view switcher, and an app's details over them. Every text from a remote or
//! a manifest is shown with markup off, after [`text::plain`] or
//! [`text::one_line`]; toasts, whose titles are markup, are escaped.

mod details;
mod explore;
mod installed;
mod permissions;
mod remotes;
mod storage;
mod timing;
mod updates;

use std::cell::RefCell;
use std::rc::Rc;

use adw::prelude::*;
use gtk::{gdk, glib};
use gtk4 as gtk;
use libadwaita as adw;

use appbox::hostfacts::HostFacts;
use appbox::overrides::OverrideStore;
use appbox::store::catalog::EntryKind;
use appbox::store::repo::PullProgress;
use appbox_gui::model::catalog::{human_size, CatalogItem};
use appbox_gui::model::text;
use appbox_gui::worker::{Outcome, Reply, Request, Snapshot, Worker};

const APP_NAME: &str = "appbox Store";

/// What the window shows, shared by its callbacks on the main thread.
#[derive(Default)]
struct State {
    snapshot: Snapshot,
    /// Rank of each visible catalog item, by index into `snapshot.catalog`.
    visible: Vec<Option<usize>>,
    /// The app on the details page: (remote, id).
    shown: Option<(String, String)>,
    /// Requests sent and not finished yet.
    pending: usize,
}

/// The window's parts, shared by the pages.
pub(crate) struct Ui {
    worker: Worker,
    /// The user's permission overrides, if the host's directories are known.
    overrides: Option<OverrideStore>,
    facts: Option<HostFacts>,
    window: adw::ApplicationWindow,
    toasts: adw::ToastOverlay,
    pages: gtk::Stack,
    operation: gtk::Box,
    progress: gtk::ProgressBar,
    explore: explore::Explore,
    details: details::Details,
    installed: gtk::ListBox,
    updates: updates::Updates,
    remotes: remotes::Remotes,
    storage: storage::Storage,
    state: RefCell<State>,
}

/// Builds and shows the window; `facts` is `None` when the host's
/// directories are not known (the worker then reports why).
pub fn build(
    app: &adw::Application,
    worker: Worker,
    replies: async_channel::Receiver<Reply>,
    facts: Option<HostFacts>,
) {
    let views = adw::ViewStack::new();
    let explore = explore::Explore::new();
    views.add_titled_with_icon(
        &explore.page,
        Some("explore"),
        "Explore",
        "system-search-symbolic",
    );
    let (installed_page, installed) = installed::page();
    views.add_titled_with_icon(
        &installed_page,
        Some("installed"),
        "Installed",
        "emblem-ok-symbolic",
    );
    let updates = updates::Updates::new();
    views.add_titled_with_icon(
        &updates.page,
        Some("updates"),
        "Updates",
        "software-update-available-symbolic",
    );
    let remotes = remotes::Remotes::new();
    views.add_titled_with_icon(
        &remotes.page,
        Some("remotes"),
        "Remotes",
        "network-server-symbolic",
    );
    let storage = storage::Storage::new();
    views.add_titled_with_icon(
        &storage.page,
        Some("storage"),
        "Storage",
        "drive-harddisk-symbolic",
    );

    let switcher = adw::ViewSwitcherTitle::builder()
        .stack(&views)
        .title(APP_NAME)
        .build();
    let switcher_bar = adw::ViewSwitcherBar::builder().stack(&views).build();
    switcher
        .bind_property("title-visible", &switcher_bar, "reveal")
        .sync_create()
        .build();
    let header = adw::HeaderBar::builder().title_widget(&switcher).build();
    let main_page = gtk::Box::new(gtk::Orientation::Vertical, 0);
    main_page.append(&header);
    main_page.append(&views);
    main_page.append(&switcher_bar);

    let details = details::Details::new();
    let pages = gtk::Stack::builder()
        .transition_type(gtk::StackTransitionType::SlideLeftRight)
        .vexpand(true)
        .build();
    pages.add_named(&main_page, Some("main"));
    pages.add_named(&details.page, Some("details"));
    pages.set_visible_child_name("main");

    // Long work shows here, whichever page is open.
    let progress: gtk::ProgressBar = labelled("GtkProgressBar", "Progress");
    progress.set_show_text(true);
    progress.set_hexpand(true);
    progress.set_valign(gtk::Align::Center);
    let cancel = gtk::Button::builder()
        .label("_Cancel")
        .use_underline(true)
        .build();
    let operation = gtk::Box::builder()
        .orientation(gtk::Orientation::Horizontal)
        .spacing(12)
        .margin_top(6)
        .margin_bottom(6)
        .margin_start(12)
        .margin_end(12)
        .visible(false)
        .build();
    operation.append(&progress);
    operation.append(&cancel);

    let content = gtk::Box::new(gtk::Orientation::Vertical, 0);
    content.append(&pages);
    content.append(&operation);
    let toasts = adw::ToastOverlay::new();
    toasts.set_child(Some(&content));

    let window = adw::ApplicationWindow::builder()
        .application(app)
        .title(APP_NAME)
        .default_width(900)
        .default_height(680)
        .content(&toasts)
        .build();

    let ui = Rc::new(Ui {
        overrides: facts
            .as_ref()
            .map(|facts| OverrideStore::new(&facts.config_home())),
        facts,
        worker,
        window: window.clone(),
        toasts,
        pages,
        operation,
        progress,
        explore,
        details,
        installed,
        updates,
        remotes,
        storage,
        state: RefCell::default(),
    });
    {
        let ui = ui.clone();
        cancel.connect_clicked(move |button| {
            button.set_sensitive(false);
            ui.progress.set_text(Some("Cancelling…"));
            ui.worker.cancel();
        });
    }
    explore::connect(&ui);
    details::connect(&ui);
    installed::connect(&ui);
    updates::connect(&ui);
    remotes::connect(&ui);
    storage::connect(&ui);

    // Replies from the worker come back here, on the main loop.
    {
        let ui = ui.clone();
        let cancel = cancel.clone();
        glib::spawn_future_local(async move {
            while let Ok(reply) = replies.recv().await {
                match reply {
                    Reply::Snapshot(snapshot) => ui.show_snapshot(*snapshot),
                    Reply::Progress { id, progress } => ui.show_progress(&id, &progress),
                    Reply::Finished { request, outcome } => {
                        let idle = {
                            let mut state = ui.state.borrow_mut();
                            state.pending = state.pending.saturating_sub(1);
                            state.pending == 0
                        };
                        if idle {
                            ui.operation.set_visible(false);
                            cancel.set_sensitive(true);
                        }
                        ui.toast(&finished_message(&request, &outcome));
                    }
                    Reply::Failed(error) => ui.explore.show_failure(&error),
                }
            }
        });
    }
    ui.worker.send(Request::Refresh);
    window.present();
    timing::watch(&window);
    // Typing starts a search, as in GNOME Software.
    ui.explore.focus_search();
}

impl Ui {
    /// Sends a request and shows that work is under way.
    fn send(&self, request: Request) {
        if request != Request::Refresh {
            self.state.borrow_mut().pending += 1;
            self.progress.set_fraction(0.0);
            self.progress.set_text(Some("Starting…"));
            self.operation.set_visible(true);
        }
        self.worker.send(request);
    }

    fn show_progress(&self, id: &str, progress: &PullProgress) {
        // What the catalog says the pull downloads, to follow it by bytes.
        let expected = self
            .state
            .borrow()
            .snapshot
            .catalog
            .iter()
            .find(|item| item.entry.id == id)
            .and_then(|item| item.entry.published.as_ref())
            .map(|published| published.download_size);
        match progress.fraction(expected) {
            Some(fraction) => self.progress.set_fraction(fraction),
            None => self.progress.pulse(),
        }
        let text = if progress.delta_bytes > 0 {
            format!(
                "{}: {} of {}",
                text::one_line(id),
                human_size(progress.bytes),
                human_size(progress.delta_bytes)
            )
        } else {
            format!(
                "{}: {} of {} objects, {}",
                text::one_line(id),
                progress.fetched,
                progress.requested,
                human_size(progress.bytes)
            )
        };
        self.progress.set_text(Some(&text));
        // GTK 4.8 gives screen readers the bar's fraction, not its text.
        set_accessible(&self.progress, Accessible::Description, &text);
    }

    fn toast(&self, message: &str) {
        // A toast's title is Pango markup in libadwaita 1.2.
        let escaped = glib::markup_escape_text(&text::one_line(message));
        // Ten seconds rather than five: the messages name apps by their
        // ids, which take a while to read.
        let toast = adw::Toast::builder()
            .title(escaped.as_str())
            .timeout(10)
            .build();
        self.toasts.add_toast(toast);
    }

    fn show_snapshot(self: &Rc<Self>, snapshot: Snapshot) {
        self.state.borrow_mut().snapshot = snapshot;
        explore::fill(self);
        installed::fill(self);
        updates::fill(self);
        remotes::fill(self);
        storage::fill(self);
        details::refresh(self);
    }

    /// The catalog item of `id`: from the remote it was installed from, else
    /// any remote, else made from what is installed (a bundle, or a remote
    /// that is gone).
    fn item_for(&self, id: &str) -> Option<CatalogItem> {
        let state = self.state.borrow();
        let snapshot = &state.snapshot;
        let installed = snapshot
            .installed
            .iter()
            .find(|i| i.installed.id == id)
            .map(|i| &i.installed);
        let origin = installed.and_then(|i| i.origin.as_ref().map(|o| o.remote.as_str()));
        let offered = |item: &&CatalogItem| item.entry.id == id;
        snapshot
            .catalog
            .iter()
            .filter(offered)
            .find(|item| Some(item.remote.as_str()) == origin)
            .or_else(|| snapshot.catalog.iter().find(offered))
            .cloned()
            .or_else(|| {
                installed.map(|i| CatalogItem {
                    remote: origin.unwrap_or_default().to_owned(),
                    installed: Some(i.entry.version.clone()),
                    entry: i.entry.clone(),
                })
            })
    }

    /// Asks before `action`, shown in `appearance`: destructive for what
    /// cannot be undone; `then` runs on yes.
    fn confirm(
        &self,
        heading: &str,
        body: &str,
        action: &str,
        appearance: adw::ResponseAppearance,
        then: impl Fn() + 'static,
    ) {
        let dialog = adw::MessageDialog::new(Some(&self.window), Some(heading), Some(body));
        dialog.add_response("cancel", "_Cancel");
        dialog.add_response("yes", action);
        dialog.set_response_appearance("yes", appearance);
        dialog.set_default_response(Some("cancel"));
        dialog.set_close_response("cancel");
        dialog.connect_response(None, move |_, response| {
            if response == "yes" {
                then();
            }
        });
        dialog.present();
    }

    /// Asks before something that cannot be undone; `request` is sent on yes.
    fn confirm_send(self: &Rc<Self>, heading: &str, body: &str, action: &str, request: Request) {
        let ui = self.clone();
        self.confirm(
            heading,
            body,
            action,
            adw::ResponseAppearance::Destructive,
            move || ui.send(request.clone()),
        );
    }
}

fn finished_message(request: &Request, outcome: &Outcome) -> String {
    let what = match request {
        // The worker answers Refresh with a snapshot alone; nothing to say.
        Request::Refresh => return String::new(),
        Request::Install { id, .. } => format!("Installed {id}"),
        Request::Update { plans } => match plans.as_slice() {
            [one] => format!("Updated {}", one.id),
            all => format!("Updated {} apps", all.len()),
        },
        Request::Uninstall { id } => format!("Removed {id}"),
        Request::AddRemote { name, .. } => format!("Added the remote {name}"),
        Request::SetRemoteEnabled {
            name,
            enabled: true,
        } => format!("Enabled the remote {name}"),
        Request::SetRemoteEnabled { name, .. } => format!("Disabled the remote {name}"),
        Request::DeleteRemote { name } => format!("Removed the remote {name}"),
        Request::RemoveUnusedRuntimes => "Removed the unused runtimes".to_owned(),
        Request::DeleteData { id } => format!("Deleted the data of {id}"),
    };
    match outcome {
        Outcome::Done => what,
        Outcome::Cancelled => "Cancelled".to_owned(),
        Outcome::Failed(error) => format!("Failed: {error}"),
    }
}

/// The app's icon from the catalog, decoded; `None` when it has none or it
/// does not decode.
fn icon_texture(item: &CatalogItem) -> Option<gdk::Texture> {
    use base64::Engine;
    let icon = item.entry.icon.as_ref()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&icon.data)
        .ok()?;
    gdk::Texture::from_bytes(&glib::Bytes::from_owned(bytes)).ok()
}

/// The app's icon from the catalog, or a generic one.
fn icon(item: &CatalogItem, size: i32) -> gtk::Image {
    // Decoration: the row or page already names the app.
    let image = gtk::Image::builder()
        .accessible_role(gtk::AccessibleRole::Presentation)
        .pixel_size(size)
        .build();
    match icon_texture(item) {
        Some(texture) => image.set_paintable(Some(&texture)),
        None => image.set_icon_name(Some(match item.entry.kind {
            EntryKind::App => "application-x-executable",
            EntryKind::Runtime => "application-x-addon",
        })),
    }
    image
}

/// What an installed item is, in a row's subtitle.
fn kind_label(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::App => "App",
        EntryKind::Runtime => "Runtime",
    }
}

/// A list in the style of the HIG's boxed lists, named for accessibility.
fn boxed_list(name: &str) -> gtk::ListBox {
    let list: gtk::ListBox = labelled("GtkListBox", name);
    list.set_selection_mode(gtk::SelectionMode::None);
    list.add_css_class("boxed-list");
    list.set_valign(gtk::Align::Start);
    list
}

fn clear(list: &gtk::ListBox) {
    while let Some(row) = list.row_at_index(0) {
        list.remove(&row);
    }
}

/// A page body that scrolls, at the HIG's reading width.
fn scrolled_page(child: &impl IsA<gtk::Widget>) -> gtk::ScrolledWindow {
    let clamp = adw::Clamp::builder()
        .child(child)
        .margin_top(24)
        .margin_bottom(24)
        .margin_start(12)
        .margin_end(12)
        .build();
    gtk::ScrolledWindow::builder()
        .child(&clamp)
        .vexpand(true)
        .hscrollbar_policy(gtk::PolicyType::Never)
        .build()
}

/// A row of plain text: markup off, for text from remotes and manifests.
fn plain_row(title: &str, subtitle: &str) -> adw::ActionRow {
    adw::ActionRow::builder()
        .title(text::one_line(title))
        .subtitle(text::one_line(subtitle))
        .use_markup(false)
        .build()
}

/// A widget of GTK class `class` with an accessible name. GTK 4.8 sets
/// accessible properties only through GtkBuilder (gtk4-rs wraps
/// `gtk_accessible_update_property` from 4.10 on), so the widget comes from a
/// one-object UI description; the name is escaped for it.
fn labelled<W: IsA<glib::Object>>(class: &str, label: &str) -> W {
    let label = glib::markup_escape_text(&text::one_line(label));
    let xml = format!(
        r#"<interface><object class="{class}" id="widget"><accessibility><property name="label">{label}</property></accessibility></object></interface>"#
    );
    gtk::Builder::from_string(&xml)
        .object("widget")
        .unwrap_or_else(|| panic!("GtkBuilder made no {class}"))
}

extern "C" {
    // Part of GtkAccessible since GTK 4.0; gtk4-rs declares it only with
    // its GTK 4.10 feature.
    fn gtk_accessible_update_property_value(
        accessible: *mut gtk::ffi::GtkWidget,
        n_properties: std::ffi::c_int,
        properties: *mut gtk::ffi::GtkAccessibleProperty,
        values: *const glib::gobject_ffi::GValue,
    );
}

/// What [`set_accessible`] sets.
#[derive(Clone, Copy)]
enum Accessible {
    /// The name a screen reader reads.
    Label,
    /// What it reads after the name.
    Description,
}

/// Sets a widget's accessible label or description.
fn set_accessible(widget: &impl IsA<gtk::Widget>, what: Accessible, text: &str) {
    use glib::translate::ToGlibPtr;
    let value = text.to_value();
    let mut properties = [match what {
        Accessible::Label => gtk::ffi::GTK_ACCESSIBLE_PROPERTY_LABEL,
        Accessible::Description => gtk::ffi::GTK_ACCESSIBLE_PROPERTY_DESCRIPTION,
    }];
    // SAFETY: every widget is a GtkAccessible; one property and one value,
    // a string GValue as GTK wants for LABEL and DESCRIPTION; all outlive
    // the call.
    unsafe {
        gtk_accessible_update_property_value(
            widget.as_ref().to_glib_none().0,
            1,
            properties.as_mut_ptr(),
            value.to_glib_none().0,
        );
    }
}

/// An icon-only button, named and with a tooltip.
fn icon_button(icon: &str, name: &str) -> gtk::Button {
    let button: gtk::Button = labelled("GtkButton", name);
    button.set_icon_name(icon);
    button.set_tooltip_text(Some(name));
    button.set_valign(gtk::Align::Center);
    button.add_css_class("flat");
    button
}

/// Runs an installed app, as its launcher would.
fn launch(ui: &Ui, id: &str) {
    match std::process::Command::new(appbox_gui::worker::appbox_binary())
        .args(["run", id])
        .stdin(std::process::Stdio::null())
        .spawn()
    {
        // Reaped on a thread, so no zombie is left behind.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => ui.toast(&format!("Cannot run {id}: {e}")),
    }
}
