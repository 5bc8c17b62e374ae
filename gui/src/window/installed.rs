//! Installed: every app and runtime on this machine, with Open for apps;
//! a row opens the app's details.

use std::rc::Rc;

use adw::prelude::*;
use gtk4 as gtk;
use libadwaita as adw;

use appbox::store::catalog::EntryKind;
use appbox_gui::model::catalog::human_size;

use super::{boxed_list, clear, details, icon, kind_label, launch, plain_row, scrolled_page, Ui};

pub(crate) fn page() -> (gtk::ScrolledWindow, gtk::ListBox) {
    let list = boxed_list("Installed apps and runtimes");
    (scrolled_page(&list), list)
}

pub(crate) fn connect(ui: &Rc<Ui>) {
    let ui_rows = ui.clone();
    ui.installed.connect_row_activated(move |_, row| {
        let id = ui_rows
            .state
            .borrow()
            .snapshot
            .installed
            .get(row.index() as usize)
            .map(|i| i.installed.id.clone());
        if let Some(item) = id.and_then(|id| ui_rows.item_for(&id)) {
            details::show(&ui_rows, &item);
        }
    });
}

pub(crate) fn fill(ui: &Rc<Ui>) {
    clear(&ui.installed);
    let installed = ui.state.borrow().snapshot.installed.clone();
    if installed.is_empty() {
        ui.installed.append(
            &adw::ActionRow::builder()
                .title("Nothing is installed yet")
                .activatable(false)
                .build(),
        );
        return;
    }
    for item in installed {
        let app = &item.installed;
        let kind = kind_label(app.kind);
        let row = plain_row(
            &app.entry.name,
            &format!(
                "{kind} · {} · {}",
                app.entry.version,
                human_size(item.bytes)
            ),
        );
        row.set_activatable(true);
        if let Some(catalog_item) = ui.item_for(&app.id) {
            row.add_prefix(&icon(&catalog_item, 32));
        }
        if app.kind == EntryKind::App {
            let open = gtk::Button::builder()
                .label("_Open")
                .use_underline(true)
                .valign(gtk::Align::Center)
                .build();
            let (ui, id) = (ui.clone(), app.id.clone());
            open.connect_clicked(move |_| launch(&ui, &id));
            row.add_suffix(&open);
        }
        ui.installed.append(&row);
    }
}
