//! An installed app's permissions as the user decides them, in the style of
//! Flatseal: switches and lists stored as the user's overrides, a reset to
//! the app's own choices, and the files and device answers the portal
//! granted, each to revoke.

use std::rc::Rc;

use adw::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;
use libadwaita as adw;

use appbox::appid::AppId;
use appbox::consent::DEVICE_TABLE;
use appbox::documents::DocId;
use appbox::grants::Grants;
use appbox::permissions::Change;
use appbox_gui::model::catalog::CatalogItem;
use appbox_gui::model::lists::{self, List, LISTS};
use appbox_gui::model::text;
use appbox_gui::model::toggles::{self, TOGGLES};

use super::{details, icon_button, labelled, plain_row, Ui};

/// The app the page is about.
struct App {
    id: AppId,
    /// Its own permissions, as finish-args.
    args: Vec<String>,
}

/// The groups of an installed app's permission page.
pub(crate) fn groups(ui: &Rc<Ui>, item: &CatalogItem) -> Vec<adw::PreferencesGroup> {
    let Ok(id) = AppId::parse(&item.entry.id) else {
        return Vec::new();
    };
    let app = Rc::new(App {
        id,
        args: item.entry.permissions.clone(),
    });
    let mut groups = Vec::new();
    if let Some(store) = ui.overrides.as_ref() {
        let (current, problem) = match store.load(&app.id) {
            Ok(current) => (current, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        groups.push(choices_group(ui, &app, &current, problem.as_deref()));
        groups.extend(
            LISTS
                .iter()
                .map(|list| list_group(ui, &app, &current, *list)),
        );
    }
    if let Some(grants) = portal_grants(ui) {
        groups.push(documents_group(ui, &grants, &app));
        groups.push(devices_group(ui, &grants, &app));
    }
    groups
}

/// The switches of an installed app's permissions, stored as the user's
/// overrides, and a reset to the app's own.
fn choices_group(
    ui: &Rc<Ui>,
    app: &Rc<App>,
    current: &[Change],
    problem: Option<&str>,
) -> adw::PreferencesGroup {
    let group = adw::PreferencesGroup::builder()
        .title("Your choices")
        .description("Override what the app asked for; it applies from the next start")
        .build();
    if let Some(problem) = problem {
        group.add(&plain_row(problem, ""));
    }
    for (index, toggle) in TOGGLES.iter().enumerate() {
        let name = format!("toggle-{index}");
        let switch = gtk::Switch::builder()
            .active(toggles::is_on(&app.args, current, toggle))
            .valign(gtk::Align::Center)
            .name(name.as_str())
            .build();
        let row = adw::ActionRow::builder()
            .title(toggle.label)
            .use_markup(false)
            .activatable_widget(&switch)
            .build();
        row.add_suffix(&switch);
        let (ui, app) = (ui.clone(), app.clone());
        switch.connect_active_notify(move |switch| {
            let on = switch.is_active();
            store_overrides(&ui, &app, |now| {
                Ok(toggles::set(&app.args, now, toggle, on))
            });
            // The lists show what the switch changed, such as the home
            // folder taking the locations in it along.
            redraw(&ui, &name);
        });
        group.add(&row);
    }
    let reset = gtk::Button::builder()
        .label("_Reset to the App's Choices")
        .use_underline(true)
        .halign(gtk::Align::Start)
        .margin_top(12)
        .name("reset-choices")
        .build();
    {
        let (ui, app) = (ui.clone(), app.clone());
        reset.connect_clicked(move |_| {
            if let Some(store) = ui.overrides.as_ref() {
                if let Err(e) = store.reset(&app.id) {
                    ui.toast(&e.to_string());
                }
            }
            redraw(&ui, "reset-choices");
        });
    }
    group.add(&reset);
    group
}

/// One list of the app's permissions: each entry in force or blocked, with
/// a button to remove it, and a row to add one.
fn list_group(ui: &Rc<Ui>, app: &Rc<App>, current: &[Change], list: List) -> adw::PreferencesGroup {
    let group = adw::PreferencesGroup::builder()
        .title(list.title())
        .description(list.description())
        .build();
    // The focus stays in the list after a change, on its add row.
    let add_name = format!("add-{}", list.id());
    for entry in lists::entries(&app.args, current, list) {
        let row = plain_row(&entry.title, &entry.subtitle());
        if entry.removable {
            let remove = icon_button(
                "list-remove-symbolic",
                &format!("Remove {}", text::one_line(&entry.title)),
            );
            let (ui, app, add_name) = (ui.clone(), app.clone(), add_name.clone());
            remove.connect_clicked(move |_| {
                store_overrides(&ui, &app, |now| {
                    lists::remove(&app.args, now, &entry.key).map_err(|e| e.to_string())
                });
                redraw(&ui, &add_name);
            });
            row.add_suffix(&remove);
        }
        group.add(&row);
    }

    let add_row = adw::EntryRow::builder()
        .title(list.add_title())
        .use_markup(false)
        .name(add_name.as_str())
        .build();
    let add = icon_button("list-add-symbolic", &format!("Add to {}", list.title()));
    add_row.add_suffix(&add);
    let submit = {
        let (ui, app) = (ui.clone(), app.clone());
        Rc::new(move |row: &adw::EntryRow| {
            let typed = row.text();
            let added = store_overrides(&ui, &app, |now| {
                lists::add(&app.args, now, list, &typed).map_err(|e| format!("Not added: {e}"))
            });
            // Refused, the text stays for the user to correct.
            if added {
                redraw(&ui, &add_name);
            }
        })
    };
    {
        let submit = submit.clone();
        add_row.connect_entry_activated(move |row| submit(row));
    }
    let row = add_row.downgrade();
    add.connect_clicked(move |_| {
        if let Some(row) = row.upgrade() {
            submit(&row);
        }
    });
    group.add(&add_row);
    group
}

/// The files the portal's file chooser gave the app, each to revoke.
fn documents_group(ui: &Rc<Ui>, grants: &Grants, app: &Rc<App>) -> adw::PreferencesGroup {
    const NAME: &str = "grants-documents";
    let group = adw::PreferencesGroup::builder()
        .title("Files the app was given")
        .description("Files you chose in the app's file dialogs; revoking one also takes it from the running app")
        .name(NAME)
        .build();
    let docs = match grants.documents().load() {
        Ok(docs) => docs,
        Err(e) => {
            group.add(&plain_row("Cannot read the files given", &e.to_string()));
            return group;
        }
    };
    let rows = lists::documents(&docs, &app.id);
    if rows.is_empty() {
        group.add(&plain_row("None", ""));
    }
    for doc in rows {
        let row = plain_row(&doc.path, doc.access);
        let revoke = revoke_button(&doc.path);
        let (ui, app) = (ui.clone(), app.clone());
        revoke.connect_clicked(move |_| {
            revoke_document(&ui, &app, &doc.id);
            redraw(&ui, NAME);
        });
        row.add_suffix(&revoke);
        group.add(&row);
    }
    group
}

/// Takes document `id` away from the app now, and out of its running
/// instances on a worker thread: that runs a helper process per instance.
fn revoke_document(ui: &Rc<Ui>, app: &App, id: &DocId) {
    let Some(grants) = portal_grants(ui) else {
        return;
    };
    let unmount = match grants.revoke_document(id, Some(&app.id)) {
        Ok(unmount) => unmount,
        Err(e) => {
            ui.toast(&e.to_string());
            return;
        }
    };
    let appbox = appbox_gui::worker::appbox_binary();
    let ui = ui.clone();
    glib::spawn_future_local(async move {
        match gio::spawn_blocking(move || unmount.run(&appbox)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => ui.toast(&e.to_string()),
            Err(_) => ui.toast("The file may still show in the running app until it restarts"),
        }
    });
}

/// The answers the user gave when the app asked for a device, each to
/// revoke, so that the portal asks again.
fn devices_group(ui: &Rc<Ui>, grants: &Grants, app: &Rc<App>) -> adw::PreferencesGroup {
    const NAME: &str = "grants-devices";
    let group = adw::PreferencesGroup::builder()
        .title("Devices")
        .description(
            "Your answers when the app asked for a device; revoking one makes it ask again",
        )
        .name(NAME)
        .build();
    let answers = match grants.answers().load() {
        Ok(answers) => answers,
        Err(e) => {
            group.add(&plain_row("Cannot read the answers", &e.to_string()));
            return group;
        }
    };
    let rows = lists::devices(&answers, &app.id);
    if rows.is_empty() {
        group.add(&plain_row("None", ""));
    }
    for device in rows {
        let row = plain_row(device.name, device.answer);
        let revoke = revoke_button(device.name);
        let (ui, app) = (ui.clone(), app.clone());
        revoke.connect_clicked(move |_| {
            if let Some(grants) = portal_grants(&ui) {
                if let Err(e) = grants.remove_answer(DEVICE_TABLE, device.id, Some(&app.id)) {
                    ui.toast(&e.to_string());
                }
            }
            redraw(&ui, NAME);
        });
        row.add_suffix(&revoke);
        group.add(&row);
    }
    group
}

/// A Revoke button, named for what it revokes.
fn revoke_button(what: &str) -> gtk::Button {
    let button: gtk::Button = labelled("GtkButton", &format!("Revoke {what}"));
    // A child label, not set_label(), which would replace the accessible name.
    button.set_child(Some(&gtk::Label::new(Some("Revoke"))));
    button.add_css_class("text-button");
    button.set_valign(gtk::Align::Center);
    button
}

/// The portal's stores, if the host's directories are known.
fn portal_grants(ui: &Ui) -> Option<Grants> {
    let facts = ui.facts.as_ref()?;
    Some(Grants::new(&facts.data_home(), &facts.runtime_dir))
}

/// Stores the app's overrides as `change` makes them from the stored ones.
/// Whether they were stored; if not, a toast tells why.
fn store_overrides(
    ui: &Ui,
    app: &App,
    change: impl FnOnce(&[Change]) -> Result<Vec<Change>, String>,
) -> bool {
    let Some(store) = ui.overrides.as_ref() else {
        return false;
    };
    let stored = store
        .load(&app.id)
        .map_err(|e| e.to_string())
        .and_then(|now| change(&now))
        .and_then(|new| store.set(&app.id, &new).map_err(|e| e.to_string()));
    match stored {
        Ok(_) => true,
        Err(e) => {
            ui.toast(&e);
            false
        }
    }
}

/// Redraws the details page once the current signal is handled (its widget
/// goes with the old page), keeping the page where it was scrolled to, and
/// puts the keyboard focus on, or into, the widget named `focus`, so that it
/// stays where the user was.
fn redraw(ui: &Rc<Ui>, focus: &str) {
    let (ui, focus) = (ui.clone(), focus.to_owned());
    glib::idle_add_local_once(move || {
        let page: &gtk::Widget = ui.details.page.upcast_ref();
        let scrolled = find(page, &|w| w.is::<gtk::ScrolledWindow>())
            .and_then(|w| w.downcast::<gtk::ScrolledWindow>().ok());
        let scrolled_to = scrolled.as_ref().map(|s| s.vadjustment().value());
        details::refresh(&ui);
        let Some(widget) = find(page, &|w| w.widget_name() == focus) else {
            return;
        };
        if widget.is_focusable() {
            widget.grab_focus();
        } else {
            widget.child_focus(gtk::DirectionType::TabForward);
        }
        let (Some(scrolled), Some(scrolled_to)) = (scrolled, scrolled_to) else {
            return;
        };
        // The new page is laid out in the frame after this one: only then
        // can it scroll, first back to where it was, then to the focus.
        let frames = std::cell::Cell::new(0);
        scrolled.add_tick_callback(move |scrolled, _| {
            frames.set(frames.get() + 1);
            if frames.get() < 2 {
                return glib::ControlFlow::Continue;
            }
            // Where the focus is on the page, in the page's own coordinates,
            // which the scroll position is in too.
            let focus_span = scrolled
                .root()
                .and_then(|root| root.focus())
                .zip(
                    scrolled
                        .child()
                        .and_downcast::<gtk::Viewport>()
                        .and_then(|viewport| viewport.child()),
                )
                .and_then(|(focused, page)| focused.compute_bounds(&page))
                .map(|bounds| {
                    let top = f64::from(bounds.y());
                    (top, top + f64::from(bounds.height()))
                });
            let adjustment = scrolled.vadjustment();
            adjustment.set_value(scrolled_to);
            if let Some((top, bottom)) = focus_span {
                adjustment.clamp_page(top, bottom);
            }
            glib::ControlFlow::Break
        });
    });
}

/// The first widget at or under `root`, in tree order, that `wanted` accepts.
fn find(root: &gtk::Widget, wanted: &dyn Fn(&gtk::Widget) -> bool) -> Option<gtk::Widget> {
    if wanted(root) {
        return Some(root.clone());
    }
    let mut child = root.first_child();
    while let Some(widget) = child {
        if let Some(found) = find(&widget, wanted) {
            return Some(found);
        }
        child = widget.next_sibling();
    }
    None
}
