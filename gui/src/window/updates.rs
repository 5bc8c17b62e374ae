//! Updates: what the remotes offer for what is installed, one at a time or
//! all at once. An update that asks for more than the installed version
//! waits for the user's yes, with the new permissions in plain words.

use std::rc::Rc;

use adw::prelude::*;
use gtk4 as gtk;
use libadwaita as adw;

use appbox::store::install::UpdatePlan;
use appbox_gui::model::permissions::describe_all;
use appbox_gui::model::text;
use appbox_gui::worker::Request;

use super::{boxed_list, clear, plain_row, scrolled_page, Ui};

pub(crate) struct Updates {
    pub page: gtk::ScrolledWindow,
    list: gtk::ListBox,
    check: gtk::Button,
    update_all: gtk::Button,
}

impl Updates {
    pub fn new() -> Self {
        let check = gtk::Button::builder()
            .label("_Check for Updates")
            .use_underline(true)
            .build();
        let update_all = gtk::Button::builder()
            .label("Update _All")
            .use_underline(true)
            .css_classes(["suggested-action"])
            .sensitive(false)
            .build();
        let buttons = gtk::Box::new(gtk::Orientation::Horizontal, 12);
        buttons.set_halign(gtk::Align::End);
        buttons.append(&check);
        buttons.append(&update_all);
        let list = boxed_list("Updates");
        let body = gtk::Box::new(gtk::Orientation::Vertical, 12);
        body.append(&buttons);
        body.append(&list);
        Updates {
            page: scrolled_page(&body),
            list,
            check,
            update_all,
        }
    }
}

pub(crate) fn connect(ui: &Rc<Ui>) {
    {
        let ui_check = ui.clone();
        ui.updates.check.connect_clicked(move |button| {
            button.set_sensitive(false);
            ui_check.send(Request::Refresh);
        });
    }
    let ui_all = ui.clone();
    ui.updates.update_all.connect_clicked(move |_| {
        let plans = ui_all.state.borrow().snapshot.updates.clone();
        request(&ui_all, plans);
    });
}

pub(crate) fn fill(ui: &Rc<Ui>) {
    let updates = &ui.updates;
    updates.check.set_sensitive(true);
    clear(&updates.list);
    let plans = ui.state.borrow().snapshot.updates.clone();
    updates.update_all.set_sensitive(!plans.is_empty());
    if plans.is_empty() {
        updates.list.append(
            &adw::ActionRow::builder()
                .title("Everything is up to date")
                .activatable(false)
                .build(),
        );
    }
    for plan in plans {
        let name = ui
            .item_for(&plan.id)
            .map_or_else(|| plan.id.clone(), |item| item.entry.name);
        let row = plain_row(
            &name,
            &format!("{} → {}", plan.from_version, plan.to_version),
        );
        if !plan.added_permissions.is_empty() {
            let more = gtk::Label::builder()
                .label("New permissions")
                .css_classes(["warning"])
                .build();
            row.add_suffix(&more);
        }
        let button = gtk::Button::builder()
            .label("_Update")
            .use_underline(true)
            .valign(gtk::Align::Center)
            .build();
        let ui = ui.clone();
        button.connect_clicked(move |_| request(&ui, vec![plan.clone()]));
        row.add_suffix(&button);
        updates.list.append(&row);
    }
}

/// Updates `plans`, first asking when any of them adds permissions.
pub(crate) fn request(ui: &Rc<Ui>, plans: Vec<UpdatePlan>) {
    if plans.is_empty() {
        return;
    }
    let asking: Vec<String> = plans
        .iter()
        .filter(|plan| !plan.added_permissions.is_empty())
        .map(|plan| {
            let added: Vec<String> = describe_all(&plan.added_permissions)
                .into_iter()
                .map(|d| format!("  • {}", d.text))
                .collect();
            format!("{}:\n{}", text::one_line(&plan.id), added.join("\n"))
        })
        .collect();
    if asking.is_empty() {
        ui.send(Request::Update { plans });
        return;
    }
    let body = format!(
        "The new versions ask for more than the installed ones:\n\n{}",
        asking.join("\n\n")
    );
    let ui_yes = ui.clone();
    ui.confirm(
        "Allow New Permissions?",
        &body,
        "_Update",
        adw::ResponseAppearance::Suggested,
        move || {
            ui_yes.send(Request::Update {
                plans: plans.clone(),
            })
        },
    );
}
