//! An app's details: what it is, what it may do, and Install, Open, Update
//! and Remove; for an installed app also the user's permission choices and
//! the portal's grants.

use std::rc::Rc;

use adw::prelude::*;
use gtk4 as gtk;
use libadwaita as adw;

use appbox_gui::model::catalog::{human_size, CatalogItem};
use appbox_gui::model::permissions::{describe_all, Strength};
use appbox_gui::model::text;
use appbox_gui::worker::Request;

use super::{icon, labelled, launch, permissions, plain_row, scrolled_page, updates, Ui};

pub(crate) struct Details {
    pub page: gtk::Box,
    title: adw::WindowTitle,
    back: gtk::Button,
    content: gtk::Box,
}

impl Details {
    pub fn new() -> Self {
        let title = adw::WindowTitle::new("", "");
        let back: gtk::Button = labelled("GtkButton", "Back");
        back.set_icon_name("go-previous-symbolic");
        back.set_tooltip_text(Some("Back"));
        let header = adw::HeaderBar::builder().title_widget(&title).build();
        header.pack_start(&back);
        let content = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(18)
            .build();
        let page = gtk::Box::new(gtk::Orientation::Vertical, 0);
        page.append(&header);
        page.append(&scrolled_page(&content));
        Details {
            page,
            title,
            back,
            content,
        }
    }
}

pub(crate) fn connect(ui: &Rc<Ui>) {
    let ui_back = ui.clone();
    ui.details.back.connect_clicked(move |_| {
        ui_back.state.borrow_mut().shown = None;
        ui_back.pages.set_visible_child_name("main");
    });
}

/// Shows the app on the details page again, as the snapshot now has it.
pub(crate) fn refresh(ui: &Rc<Ui>) {
    let shown = ui.state.borrow().shown.clone();
    let Some((remote, id)) = shown else {
        return;
    };
    let item = {
        let state = ui.state.borrow();
        state
            .snapshot
            .catalog
            .iter()
            .find(|i| i.remote == remote && i.entry.id == id)
            .cloned()
    };
    if let Some(item) = item.or_else(|| ui.item_for(&id)) {
        show(ui, &item);
    }
}

pub(crate) fn show(ui: &Rc<Ui>, item: &CatalogItem) {
    let entry = &item.entry;
    ui.state.borrow_mut().shown = Some((item.remote.clone(), entry.id.clone()));
    let content = &ui.details.content;
    while let Some(child) = content.first_child() {
        content.remove(&child);
    }
    ui.details.title.set_title(&text::one_line(&entry.name));

    let top = gtk::Box::new(gtk::Orientation::Horizontal, 18);
    top.append(&icon(item, 96));
    let names = gtk::Box::new(gtk::Orientation::Vertical, 6);
    names.set_valign(gtk::Align::Center);
    for (line, class) in [(&entry.name, "title-1"), (&entry.summary, "body")] {
        names.append(
            &gtk::Label::builder()
                .label(text::one_line(line))
                .css_classes([class])
                .xalign(0.0)
                .wrap(true)
                .build(),
        );
    }
    top.append(&names);
    content.append(&top);

    let buttons = gtk::Box::new(gtk::Orientation::Horizontal, 12);
    let pill = |label: &str, style: &str| {
        let button = gtk::Button::builder()
            .label(label)
            .use_underline(true)
            .css_classes(["pill"])
            .build();
        if !style.is_empty() {
            button.add_css_class(style);
        }
        buttons.append(&button);
        button
    };
    let send = |button: &gtk::Button, request: Request| {
        let ui = ui.clone();
        button.connect_clicked(move |button| {
            button.set_sensitive(false);
            ui.send(request.clone());
        });
    };
    let update = ui
        .state
        .borrow()
        .snapshot
        .updates
        .iter()
        .find(|plan| plan.id == entry.id)
        .cloned();
    let primary = match &item.installed {
        Some(_) => {
            let open = pill("_Open", "suggested-action");
            let (ui_open, id) = (ui.clone(), entry.id.clone());
            open.connect_clicked(move |_| launch(&ui_open, &id));
            if let Some(plan) = update {
                let button = pill("_Update", "");
                let ui = ui.clone();
                button.connect_clicked(move |_| updates::request(&ui, vec![plan.clone()]));
            }
            let remove = pill("_Remove", "destructive-action");
            send(
                &remove,
                Request::Uninstall {
                    id: entry.id.clone(),
                },
            );
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
            install
        }
    };
    content.append(&buttons);

    content.append(
        &gtk::Label::builder()
            .label(text::plain(&entry.description))
            .wrap(true)
            .xalign(0.0)
            .selectable(true)
            .build(),
    );

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
        let row = plain_row(title, &value);
        row.add_css_class("property");
        facts.add(&row);
    }
    content.append(&facts);

    let asked = adw::PreferencesGroup::builder()
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
        asked.add(&row);
    }
    content.append(&asked);
    if item.installed.is_some() {
        for group in permissions::groups(ui, item) {
            content.append(&group);
        }
    }
    ui.pages.set_visible_child_name("details");
    // The keyboard starts on the page's main action.
    primary.grab_focus();
}
