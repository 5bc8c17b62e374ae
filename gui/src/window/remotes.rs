//! Remotes: where apps come from. Each can be turned off or removed, and a
//! new one is added with the public key its summaries and commits must be
//! signed with; the store adds no remote it cannot verify.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use adw::prelude::*;
use gtk4 as gtk;
use libadwaita as adw;

use appbox_gui::model::text;
use appbox_gui::worker::Request;

use super::{icon_button, plain_row, scrolled_page, Ui};

pub(crate) struct Remotes {
    pub page: gtk::ScrolledWindow,
    list: adw::PreferencesGroup,
    /// The rows `fill` added, to remove on the next snapshot.
    rows: RefCell<Vec<adw::ActionRow>>,
    name: adw::EntryRow,
    url: adw::EntryRow,
    key_row: adw::ActionRow,
    choose_key: gtk::Button,
    key_file: RefCell<Option<PathBuf>>,
    add: gtk::Button,
}

impl Remotes {
    pub fn new() -> Self {
        let list = adw::PreferencesGroup::builder().title("Remotes").build();
        let name = adw::EntryRow::builder().title("Name").build();
        let url = adw::EntryRow::builder().title("URL").build();
        let choose_key = gtk::Button::builder()
            .label("_Choose…")
            .use_underline(true)
            .valign(gtk::Align::Center)
            .build();
        let key_row = adw::ActionRow::builder()
            .title("Public key file")
            .subtitle("None chosen")
            .activatable_widget(&choose_key)
            .build();
        key_row.add_suffix(&choose_key);
        let add = gtk::Button::builder()
            .label("_Add Remote")
            .use_underline(true)
            .halign(gtk::Align::End)
            .css_classes(["suggested-action"])
            .margin_top(12)
            .build();
        let new_remote = adw::PreferencesGroup::builder()
            .title("Add a Remote")
            .description("An OSTree repository over http(s) or file, or an oci:// registry, and the ed25519 key it signs with")
            .build();
        new_remote.add(&name);
        new_remote.add(&url);
        new_remote.add(&key_row);
        new_remote.add(&add);
        let body = gtk::Box::new(gtk::Orientation::Vertical, 24);
        body.append(&list);
        body.append(&new_remote);
        Remotes {
            page: scrolled_page(&body),
            list,
            rows: RefCell::default(),
            name,
            url,
            key_row,
            choose_key,
            key_file: RefCell::default(),
            add,
        }
    }
}

pub(crate) fn connect(ui: &Rc<Ui>) {
    let remotes = &ui.remotes;
    {
        let ui = ui.clone();
        remotes.choose_key.connect_clicked(move |_| {
            let chooser = gtk::FileChooserNative::new(
                Some("Choose the Remote's Public Key"),
                Some(&ui.window),
                gtk::FileChooserAction::Open,
                Some("_Choose"),
                Some("_Cancel"),
            );
            let ui = ui.clone();
            // The chooser keeps itself alive through this handler until it answers.
            let keep = RefCell::new(Some(chooser.clone()));
            chooser.connect_response(move |chooser, response| {
                if response == gtk::ResponseType::Accept {
                    if let Some(path) = chooser.file().and_then(|f| f.path()) {
                        ui.remotes
                            .key_row
                            .set_subtitle(&text::one_line(&path.to_string_lossy()));
                        *ui.remotes.key_file.borrow_mut() = Some(path);
                    }
                }
                keep.borrow_mut().take();
            });
            chooser.show();
        });
    }
    let ui_add = ui.clone();
    remotes.add.connect_clicked(move |_| {
        let remotes = &ui_add.remotes;
        let (name, url) = (remotes.name.text(), remotes.url.text());
        let Some(key_file) = remotes.key_file.borrow().clone() else {
            ui_add.toast("Choose the public key file the remote signs with");
            return;
        };
        if name.is_empty() || url.is_empty() {
            ui_add.toast("Give the remote a name and a URL");
            return;
        }
        ui_add.send(Request::AddRemote {
            name: name.to_string(),
            url: url.to_string(),
            key_file,
        });
    });
}

pub(crate) fn fill(ui: &Rc<Ui>) {
    let remotes = &ui.remotes;
    for row in remotes.rows.take() {
        remotes.list.remove(&row);
    }
    let items = ui.state.borrow().snapshot.remotes.clone();
    let mut rows = Vec::new();
    if items.is_empty() {
        let row = adw::ActionRow::builder().title("No remotes yet").build();
        remotes.list.add(&row);
        rows.push(row);
    }
    for item in items {
        let subtitle = if item.verify {
            item.url.clone()
        } else {
            format!("{} · not verified", item.url)
        };
        let row = plain_row(&item.name, &subtitle);
        let enabled = gtk::Switch::builder()
            .active(item.enabled)
            .valign(gtk::Align::Center)
            .tooltip_text("Use this remote")
            .build();
        row.set_activatable_widget(Some(&enabled));
        {
            let (ui, name) = (ui.clone(), item.name.clone());
            enabled.connect_state_set(move |_, on| {
                ui.send(Request::SetRemoteEnabled {
                    name: name.clone(),
                    enabled: on,
                });
                glib::Propagation::Proceed
            });
        }
        let remove = icon_button("user-trash-symbolic", &format!("Remove {}", item.name));
        {
            let (ui, name) = (ui.clone(), item.name.clone());
            remove.connect_clicked(move |_| {
                ui.confirm_send(
                    &format!("Remove the Remote {}?", text::one_line(&name)),
                    "Installed apps stay, but get no updates from it",
                    "_Remove",
                    Request::DeleteRemote { name: name.clone() },
                );
            });
        }
        row.add_suffix(&enabled);
        row.add_suffix(&remove);
        remotes.list.add(&row);
        rows.push(row);
    }
    *remotes.rows.borrow_mut() = rows;
}

use gtk::glib;
