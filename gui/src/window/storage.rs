//! Storage: the disk space of each installed app and runtime and of the
//! apps' data, runtimes nothing needs any more, and the data that removed
//! apps left behind.

use std::cell::RefCell;
use std::rc::Rc;

use adw::prelude::*;
use gtk4 as gtk;
use libadwaita as adw;

use appbox_gui::model::catalog::human_size;
use appbox_gui::model::text;
use appbox_gui::worker::Request;

use super::{icon_button, kind_label, plain_row, scrolled_page, Ui};

pub(crate) struct Storage {
    pub page: gtk::ScrolledWindow,
    used: adw::PreferencesGroup,
    unused: adw::PreferencesGroup,
    leftovers: adw::PreferencesGroup,
    remove_unused: gtk::Button,
    /// The rows `fill` added, by group, to remove on the next snapshot.
    rows: RefCell<Vec<(adw::PreferencesGroup, adw::ActionRow)>>,
}

impl Storage {
    pub fn new() -> Self {
        let used = adw::PreferencesGroup::builder()
            .title("Apps and Runtimes")
            .description("Disk space of each installation, and of each app's data")
            .build();
        let remove_unused = gtk::Button::builder()
            .label("Remove _Unused Runtimes")
            .use_underline(true)
            .css_classes(["destructive-action"])
            .build();
        let unused = adw::PreferencesGroup::builder()
            .title("Unused Runtimes")
            .description("No installed app needs these")
            .header_suffix(&remove_unused)
            .build();
        let leftovers = adw::PreferencesGroup::builder()
            .title("Data of Removed Apps")
            .description("Files that apps kept in ~/.var/app and left behind")
            .build();
        let body = gtk::Box::new(gtk::Orientation::Vertical, 24);
        body.append(&used);
        body.append(&unused);
        body.append(&leftovers);
        Storage {
            page: scrolled_page(&body),
            used,
            unused,
            leftovers,
            remove_unused,
            rows: RefCell::default(),
        }
    }
}

pub(crate) fn connect(ui: &Rc<Ui>) {
    let ui_unused = ui.clone();
    ui.storage.remove_unused.connect_clicked(move |_| {
        ui_unused.confirm_send(
            "Remove the Unused Runtimes?",
            "Apps installed later download them again when they need them",
            "_Remove",
            Request::RemoveUnusedRuntimes,
        );
    });
}

pub(crate) fn fill(ui: &Rc<Ui>) {
    let storage = &ui.storage;
    for (group, row) in storage.rows.take() {
        group.remove(&row);
    }
    // Borrowed while the rows are made: nothing here changes the state
    // (the buttons' requests are sent later, on click).
    let state = ui.state.borrow();
    let snapshot = &state.snapshot;
    let mut rows = Vec::new();
    let mut add = |group: &adw::PreferencesGroup, row: adw::ActionRow| {
        group.add(&row);
        rows.push((group.clone(), row));
    };
    for item in &snapshot.installed {
        let app = &item.installed;
        let mut subtitle = format!("{} · {}", kind_label(app.kind), human_size(item.bytes));
        if let Some(data) = item.data_bytes {
            subtitle.push_str(&format!(" · data {}", human_size(data)));
        }
        add(&storage.used, plain_row(&app.entry.name, &subtitle));
    }
    if snapshot.installed.is_empty() {
        add(&storage.used, plain_row("Nothing is installed", ""));
    }
    storage
        .remove_unused
        .set_sensitive(!snapshot.unused_runtimes.is_empty());
    for id in &snapshot.unused_runtimes {
        add(&storage.unused, plain_row(id, ""));
    }
    if snapshot.unused_runtimes.is_empty() {
        add(&storage.unused, plain_row("None", ""));
    }
    for data in &snapshot.leftover_data {
        let row = plain_row(&data.id, &human_size(data.bytes));
        let delete = icon_button(
            "user-trash-symbolic",
            &format!("Delete the data of {}", data.id),
        );
        let (ui_delete, id) = (ui.clone(), data.id.clone());
        delete.connect_clicked(move |_| {
            ui_delete.confirm_send(
                &format!("Delete the Data of {}?", text::one_line(&id)),
                "Its settings and files in ~/.var/app are deleted for good",
                "_Delete",
                Request::DeleteData { id: id.clone() },
            );
        });
        row.add_suffix(&delete);
        add(&storage.leftovers, row);
    }
    if snapshot.leftover_data.is_empty() {
        add(&storage.leftovers, plain_row("None", ""));
    }
    *storage.rows.borrow_mut() = rows;
}
