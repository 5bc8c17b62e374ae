//! The store window: Explore (the catalogs, with search that filters as
//! you type) and an app's details, one page at a time. Every text from a remote is shown with markup off, after
//! [`text::plain`].

use std::cell::RefCell;
use std::rc::Rc;

use adw::prelude::*;
use gtk::{gdk, glib};
use gtk4 as gtk;
use libadwaita as adw;

use appbox::appid::AppId;
use appbox::hostfacts::HostFacts;
use appbox::overrides::OverrideStore;
use appbox_gui::model::catalog::{human_size, search, CatalogItem};
use appbox_gui::model::permissions::{describe_all, Strength};
use appbox_gui::model::text;
use appbox_gui::model::toggles::{self, TOGGLES};
use appbox_gui::worker::{Reply, Request, Worker};

const APP_NAME: &str = "appbox Store";

/// What the window shows, shared by its callbacks on the main thread.
struct State {
    items: Vec<CatalogItem>,
    /// Rank of each visible item, by index into `items`.
    visible: Vec<Option<usize>>,
    /// The app on the details page: (remote, id).
    shown: Option<(String, String)>,
    /// The app being installed or removed; one at a time.
    busy: Option<String>,
}

struct Widgets {
    worker: Worker,
    /// The user's permission overrides, if the host's directories are known.
    overrides: Option<OverrideStore>,
    toasts: adw::ToastOverlay,
    progress: gtk::ProgressBar,
    pages: gtk::Stack,
    stack: gtk::Stack,
    status: adw::StatusPage,
    list: gtk::ListBox,
    search: gtk::SearchEntry,
    details: gtk::Box,
    details_title: adw::WindowTitle,
}

pub fn build(app: &adw::Application, worker: Worker, replies: async_channel::Receiver<Reply>) {
    let state = Rc::new(RefCell::new(State {
        items: Vec::new(),
        visible: Vec::new(),
        shown: None,
        busy: None,
    }));

    // The list page.
    let search: gtk::SearchEntry = labelled("GtkSearchEntry", "Search apps");
    search.set_placeholder_text(Some("Search apps"));
    search.set_hexpand(true);
    let header = adw::HeaderBar::builder().title_widget(&search).build();
    let list: gtk::ListBox = labelled("GtkListBox", "Apps");
    list.set_selection_mode(gtk::SelectionMode::None);
    list.add_css_class("boxed-list");
    list.set_valign(gtk::Align::Start);
    let clamp = adw::Clamp::builder()
        .child(&list)
        .margin_top(24)
        .margin_bottom(24)
        .margin_start(12)
        .margin_end(12)
        .build();
    let scrolled = gtk::ScrolledWindow::builder()
        .child(&clamp)
        .vexpand(true)
        .hscrollbar_policy(gtk::PolicyType::Never)
        .build();
    let status = adw::StatusPage::builder()
        .icon_name("system-software-install-symbolic")
        .title("Loading the catalog…")
        .build();
    let stack = gtk::Stack::new();
    stack.add_named(&status, Some("status"));
    stack.add_named(&scrolled, Some("list"));
    stack.set_visible_child_name("status");
    let list_page = gtk::Box::new(gtk::Orientation::Vertical, 0);
    list_page.append(&header);
    list_page.append(&stack);

    // The details page.
    let details_title = adw::WindowTitle::new("", "");
    let back: gtk::Button = labelled("GtkButton", "Back");
    back.set_icon_name("go-previous-symbolic");
    back.set_tooltip_text(Some("Back"));
    let details_header = adw::HeaderBar::builder()
        .title_widget(&details_title)
        .build();
    details_header.pack_start(&back);
    let details = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .spacing(18)
        .margin_top(24)
        .margin_bottom(24)
        .margin_start(12)
        .margin_end(12)
        .build();
    let details_scrolled = gtk::ScrolledWindow::builder()
        .child(&adw::Clamp::builder().child(&details).build())
        .vexpand(true)
        .hscrollbar_policy(gtk::PolicyType::Never)
        .build();
    let details_page = gtk::Box::new(gtk::Orientation::Vertical, 0);
    details_page.append(&details_header);
    details_page.append(&details_scrolled);

    let pages = gtk::Stack::builder()
        .transition_type(gtk::StackTransitionType::SlideLeftRight)
        .build();
    pages.add_named(&list_page, Some("explore"));
    pages.add_named(&details_page, Some("details"));
    pages.set_visible_child_name("explore");
    let toasts = adw::ToastOverlay::new();
    toasts.set_child(Some(&pages));
    let progress = gtk::ProgressBar::builder().show_text(true).build();

    let window = adw::ApplicationWindow::builder()
        .application(app)
        .title(APP_NAME)
        .default_width(900)
        .default_height(640)
        .content(&toasts)
        .build();

    let overrides = HostFacts::gather()
        .ok()
        .map(|facts| OverrideStore::new(&facts.config_home()));
    let widgets = Rc::new(Widgets {
        worker,
        overrides,
        toasts,
        progress,
        pages,
        stack,
        status,
        list,
        search,
        details,
        details_title,
    });

    // Filtering is the list box's own: a keystroke ranks the items and lets
    // GTK hide and reorder the rows, with no rows rebuilt.
    {
        let state = state.clone();
        widgets.list.set_filter_func(move |row| {
            let index = row.index() as usize;
            state
                .borrow()
                .visible
                .get(index)
                .is_some_and(Option::is_some)
        });
    }
    {
        let state = state.clone();
        widgets.list.set_sort_func(move |a, b| {
            let state = state.borrow();
            let rank = |row: &gtk::ListBoxRow| {
                state
                    .visible
                    .get(row.index() as usize)
                    .copied()
                    .flatten()
                    .unwrap_or(usize::MAX)
            };
            rank(a).cmp(&rank(b)).into()
        });
    }
    {
        let state = state.clone();
        let widgets_for_search = widgets.clone();
        widgets.search.connect_search_changed(move |entry| {
            apply_search(&state, &widgets_for_search, &entry.text());
        });
    }
    // Enter in the search opens the best match.
    {
        let state = state.clone();
        let widgets_for_enter = widgets.clone();
        widgets.search.connect_activate(move |_| {
            let best = {
                let state = state.borrow();
                state
                    .visible
                    .iter()
                    .enumerate()
                    .filter_map(|(index, rank)| rank.map(|rank| (rank, index)))
                    .min()
                    .map(|(_, index)| state.items[index].clone())
            };
            if let Some(item) = best {
                show_details(&widgets_for_enter, &state, &item);
            }
        });
    }
    {
        let state = state.clone();
        let widgets_for_rows = widgets.clone();
        widgets.list.connect_row_activated(move |_, row| {
            let index = row.index() as usize;
            let item = state.borrow().items.get(index).cloned();
            if let Some(item) = item {
                show_details(&widgets_for_rows, &state, &item);
            }
        });
    }
    {
        let state = state.clone();
        let pages = widgets.pages.clone();
        back.connect_clicked(move |_| {
            state.borrow_mut().shown = None;
            pages.set_visible_child_name("explore");
        });
    }

    // Replies from the worker come back here, on the main loop.
    {
        let widgets = widgets.clone();
        let state = state.clone();
        glib::spawn_future_local(async move {
            while let Ok(reply) = replies.recv().await {
                match reply {
                    Reply::Catalog { items, failures } => {
                        show_catalog(&state, &widgets, items, &failures);
                        refresh_details(&widgets, &state);
                    }
                    Reply::Progress {
                        id,
                        fetched,
                        requested,
                        bytes,
                    } => {
                        if requested > 0 {
                            widgets
                                .progress
                                .set_fraction(f64::from(fetched) / f64::from(requested));
                        }
                        widgets.progress.set_text(Some(&format!(
                            "{}: {fetched} of {requested} objects, {}",
                            text::one_line(&id),
                            human_size(bytes)
                        )));
                    }
                    Reply::Finished { request, error } => {
                        state.borrow_mut().busy = None;
                        let (verb, id) = match &request {
                            Request::Install { id, .. } => ("install", id),
                            Request::Uninstall { id } => ("remove", id),
                            Request::LoadCatalog => ("load", &String::new()),
                        };
                        let message = match &error {
                            None if verb == "install" => format!("Installed {id}"),
                            None => format!("Removed {id}"),
                            Some(error) => format!("Could not {verb} {id}: {error}"),
                        };
                        // A toast's title is Pango markup in libadwaita 1.2.
                        let escaped = glib::markup_escape_text(&text::one_line(&message));
                        widgets.toasts.add_toast(adw::Toast::new(&escaped));
                    }
                    Reply::Failed(error) => {
                        widgets.status.set_icon_name(Some("dialog-error-symbolic"));
                        widgets.status.set_title("The store cannot be read");
                        widgets.status.set_description(Some(&text::plain(&error)));
                        widgets.stack.set_visible_child_name("status");
                    }
                }
            }
        });
    }
    widgets.worker.send(Request::LoadCatalog);
    window.present();
}

fn show_catalog(
    state: &Rc<RefCell<State>>,
    widgets: &Widgets,
    items: Vec<CatalogItem>,
    failures: &[String],
) {
    while let Some(row) = widgets.list.row_at_index(0) {
        widgets.list.remove(&row);
    }
    for item in &items {
        widgets.list.append(&catalog_row(item));
    }
    state.borrow_mut().items = items;
    apply_search(state, widgets, &widgets.search.text());
    let count = state.borrow().items.iter().filter(|i| i.is_app()).count();
    if count == 0 {
        widgets
            .status
            .set_icon_name(Some("system-software-install-symbolic"));
        widgets.status.set_title("No apps");
        let description = if failures.is_empty() {
            "Add a remote with `appbox remote-add NAME URL --sign-pubkey KEY`.".to_owned()
        } else {
            text::plain(&failures.join("\n"))
        };
        widgets.status.set_description(Some(&description));
        widgets.stack.set_visible_child_name("status");
    } else {
        widgets.stack.set_visible_child_name("list");
    }
}

fn apply_search(state: &Rc<RefCell<State>>, widgets: &Widgets, query: &str) {
    {
        let mut state = state.borrow_mut();
        let mut visible = vec![None; state.items.len()];
        for (rank, index) in search(&state.items, query).into_iter().enumerate() {
            visible[index] = Some(rank);
        }
        state.visible = visible;
    }
    widgets.list.invalidate_filter();
    widgets.list.invalidate_sort();
}

/// The app's icon from the catalog, or a generic one.
fn icon(item: &CatalogItem, size: i32) -> gtk::Image {
    use base64::Engine;
    let texture = item.entry.icon.as_ref().and_then(|icon| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&icon.data)
            .ok()?;
        gdk::Texture::from_bytes(&glib::Bytes::from_owned(bytes)).ok()
    });
    // Decoration: the row or page already names the app.
    let image = gtk::Image::builder()
        .accessible_role(gtk::AccessibleRole::Presentation)
        .pixel_size(size)
        .build();
    match texture {
        Some(texture) => image.set_paintable(Some(&texture)),
        None => image.set_icon_name(Some("application-x-executable")),
    }
    image
}

fn catalog_row(item: &CatalogItem) -> adw::ActionRow {
    let row = adw::ActionRow::builder()
        .title(text::one_line(&item.entry.name))
        .subtitle(text::one_line(&item.entry.summary))
        .use_markup(false)
        .activatable(true)
        .build();
    row.add_prefix(&icon(item, 48));
    if item.installed.is_some() {
        row.add_suffix(
            &gtk::Label::builder()
                .label("Installed")
                .css_classes(["dim-label"])
                .build(),
        );
    }
    row.add_suffix(&gtk::Image::from_icon_name("go-next-symbolic"));
    row
}

/// Shows the app on the details page again, as the catalog now has it.
fn refresh_details(widgets: &Rc<Widgets>, state: &Rc<RefCell<State>>) {
    let item = {
        let state = state.borrow();
        let Some((remote, id)) = &state.shown else {
            return;
        };
        state
            .items
            .iter()
            .find(|i| &i.remote == remote && &i.entry.id == id)
            .cloned()
    };
    if let Some(item) = item {
        show_details(widgets, state, &item);
    }
}

fn show_details(widgets: &Rc<Widgets>, state: &Rc<RefCell<State>>, item: &CatalogItem) {
    let entry = &item.entry;
    state.borrow_mut().shown = Some((item.remote.clone(), entry.id.clone()));
    let busy = state.borrow().busy.clone();
    let details = &widgets.details;
    while let Some(child) = details.first_child() {
        details.remove(&child);
    }
    widgets
        .details_title
        .set_title(&text::one_line(&entry.name));

    let top = gtk::Box::new(gtk::Orientation::Horizontal, 18);
    top.append(&icon(item, 96));
    let names = gtk::Box::new(gtk::Orientation::Vertical, 6);
    names.set_valign(gtk::Align::Center);
    let name = gtk::Label::builder()
        .label(text::one_line(&entry.name))
        .css_classes(["title-1"])
        .xalign(0.0)
        .wrap(true)
        .build();
    let summary = gtk::Label::builder()
        .label(text::one_line(&entry.summary))
        .xalign(0.0)
        .wrap(true)
        .build();
    names.append(&name);
    names.append(&summary);
    top.append(&names);
    details.append(&top);

    let buttons = gtk::Box::new(gtk::Orientation::Horizontal, 12);
    let pill = |label: &str, style: &str| {
        gtk::Button::builder()
            .label(label)
            .use_underline(true)
            .css_classes([style, "pill"])
            .sensitive(busy.is_none())
            .build()
    };
    let send = |button: &gtk::Button, request: Request| {
        let widgets = widgets.clone();
        let state = state.clone();
        let id = entry.id.clone();
        button.connect_clicked(move |button| {
            state.borrow_mut().busy = Some(id.clone());
            button.set_sensitive(false);
            widgets.progress.set_fraction(0.0);
            widgets.progress.set_text(Some("Starting…"));
            widgets.progress.set_visible(true);
            widgets.worker.send(request.clone());
        });
    };
    let primary = match &item.installed {
        Some(_) => {
            let open = pill("_Open", "suggested-action");
            let id = entry.id.clone();
            open.connect_clicked(move |_| launch(&id));
            let remove = pill("_Remove", "destructive-action");
            send(
                &remove,
                Request::Uninstall {
                    id: entry.id.clone(),
                },
            );
            buttons.append(&open);
            buttons.append(&remove);
            open
        }
        None => {
            let install = pill("_Install", "suggested-action");
            send(
                &install,
                Request::Install {
                    remote: item.remote.clone(),
                    id: entry.id.clone(),
                },
            );
            buttons.append(&install);
            install
        }
    };
    details.append(&buttons);
    widgets.progress.set_visible(busy.is_some());
    details.append(&widgets.progress);

    let description = gtk::Label::builder()
        .label(text::plain(&entry.description))
        .wrap(true)
        .xalign(0.0)
        .selectable(true)
        .build();
    details.append(&description);

    let facts = adw::PreferencesGroup::builder().title("Details").build();
    let download = entry
        .published
        .as_ref()
        .map_or_else(|| "unknown".to_owned(), |p| human_size(p.download_size));
    for (title, value) in [
        ("Version", text::one_line(&entry.version)),
        ("Download size", download),
        ("Installed size", human_size(entry.installed_size)),
        ("License", text::one_line(&entry.license)),
        ("Source", text::one_line(&item.remote)),
    ] {
        let row = adw::ActionRow::builder()
            .title(title)
            .subtitle(value)
            .use_markup(false)
            .build();
        row.add_css_class("property");
        facts.add(&row);
    }
    details.append(&facts);

    let permissions = adw::PreferencesGroup::builder()
        .title("Permissions")
        .build();
    for described in describe_all(&entry.permissions) {
        let row = adw::ActionRow::builder()
            .title(&described.text)
            .use_markup(false)
            .build();
        if described.strength == Strength::Strong {
            let warning: gtk::Image = labelled("GtkImage", "Warning");
            warning.set_icon_name(Some("dialog-warning-symbolic"));
            warning.add_css_class("warning");
            row.add_prefix(&warning);
        }
        permissions.add(&row);
    }
    details.append(&permissions);
    if item.installed.is_some() {
        if let Some(group) = choices_group(widgets, state, item) {
            details.append(&group);
        }
    }
    widgets.pages.set_visible_child_name("details");
    // The keyboard starts on the page's main action.
    primary.grab_focus();
}

/// The switches of an installed app's permissions, stored as the user's
/// overrides, and a reset to the app's own.
fn choices_group(
    widgets: &Rc<Widgets>,
    state: &Rc<RefCell<State>>,
    item: &CatalogItem,
) -> Option<adw::PreferencesGroup> {
    let store = widgets.overrides.as_ref()?;
    let id = AppId::parse(&item.entry.id).ok()?;
    let group = adw::PreferencesGroup::builder()
        .title("Your choices")
        .description("Override what the app asked for; it applies from the next start")
        .build();
    let current = match store.load(&id) {
        Ok(current) => current,
        Err(e) => {
            let row = adw::ActionRow::builder()
                .title(text::one_line(&e.to_string()))
                .use_markup(false)
                .build();
            group.add(&row);
            Vec::new()
        }
    };
    for toggle in TOGGLES {
        let switch = gtk::Switch::builder()
            .active(toggles::is_on(&item.entry.permissions, &current, toggle))
            .valign(gtk::Align::Center)
            .build();
        let row = adw::ActionRow::builder()
            .title(toggle.label)
            .use_markup(false)
            .activatable_widget(&switch)
            .build();
        row.add_suffix(&switch);
        let (widgets, app_args, id) = (widgets.clone(), item.entry.permissions.clone(), id.clone());
        switch.connect_active_notify(move |switch| {
            let Some(store) = widgets.overrides.as_ref() else {
                return;
            };
            let changed = store.load(&id).and_then(|now| {
                store.set(
                    &id,
                    &toggles::set(&app_args, &now, toggle, switch.is_active()),
                )
            });
            if let Err(e) = changed {
                let message = glib::markup_escape_text(&text::one_line(&e.to_string()));
                widgets.toasts.add_toast(adw::Toast::new(&message));
            }
        });
        group.add(&row);
    }
    let reset = gtk::Button::builder()
        .label("_Reset to the App's Choices")
        .use_underline(true)
        .halign(gtk::Align::Start)
        .margin_top(12)
        .build();
    {
        let (widgets, state, id) = (widgets.clone(), state.clone(), id.clone());
        reset.connect_clicked(move |_| {
            if let Some(store) = widgets.overrides.as_ref() {
                if let Err(e) = store.reset(&id) {
                    let message = glib::markup_escape_text(&text::one_line(&e.to_string()));
                    widgets.toasts.add_toast(adw::Toast::new(&message));
                }
            }
            refresh_details(&widgets, &state);
        });
    }
    group.add(&reset);
    Some(group)
}

/// A widget of GTK class `class` with an accessible name. GTK 4.8 sets
/// accessible properties only through GtkBuilder (gtk4-rs wraps
/// `gtk_accessible_update_property` from 4.10 on), so the widget comes from a
/// one-object UI description. `label` is a constant of this file.
fn labelled<W: IsA<glib::Object>>(class: &str, label: &str) -> W {
    let xml = format!(
        r#"<interface><object class="{class}" id="widget"><accessibility><property name="label">{label}</property></accessibility></object></interface>"#
    );
    gtk::Builder::from_string(&xml)
        .object("widget")
        .unwrap_or_else(|| panic!("GtkBuilder made no {class}"))
}

/// Runs an installed app, as its launcher would.
fn launch(id: &str) {
    let appbox = std::env::current_exe()
        .map(|exe| exe.with_file_name("appbox"))
        .unwrap_or_else(|_| "appbox".into());
    match std::process::Command::new(appbox)
        .args(["run", id])
        .stdin(std::process::Stdio::null())
        .spawn()
    {
        // Reaped on a thread, so no zombie is left behind.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => eprintln!("appbox-gui: cannot run {id}: {e}"),
    }
}
