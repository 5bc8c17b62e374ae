//! An installed app's permissions as the user decides them, in the style of
//! Flatseal: switches stored as the user's overrides, and a reset to the
//! app's own choices.

use std::rc::Rc;

use adw::prelude::*;
use gtk4 as gtk;
use libadwaita as adw;

use appbox::appid::AppId;
use appbox_gui::model::catalog::CatalogItem;
use appbox_gui::model::toggles::{self, TOGGLES};

use super::{details, plain_row, Ui};

/// The groups of an installed app's permission page.
pub(crate) fn groups(ui: &Rc<Ui>, item: &CatalogItem) -> Vec<adw::PreferencesGroup> {
    choices_group(ui, item).into_iter().collect()
}

/// The switches of an installed app's permissions, stored as the user's
/// overrides, and a reset to the app's own.
fn choices_group(ui: &Rc<Ui>, item: &CatalogItem) -> Option<adw::PreferencesGroup> {
    let store = ui.overrides.as_ref()?;
    let id = AppId::parse(&item.entry.id).ok()?;
    let group = adw::PreferencesGroup::builder()
        .title("Your choices")
        .description("Override what the app asked for; it applies from the next start")
        .build();
    let current = match store.load(&id) {
        Ok(current) => current,
        Err(e) => {
            group.add(&plain_row(&e.to_string(), ""));
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
        let (ui, app_args, id) = (ui.clone(), item.entry.permissions.clone(), id.clone());
        switch.connect_active_notify(move |switch| {
            let Some(store) = ui.overrides.as_ref() else {
                return;
            };
            let changed = store.load(&id).and_then(|now| {
                store.set(
                    &id,
                    &toggles::set(&app_args, &now, toggle, switch.is_active()),
                )
            });
            if let Err(e) = changed {
                ui.toast(&e.to_string());
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
        let (ui, id) = (ui.clone(), id.clone());
        reset.connect_clicked(move |_| {
            if let Some(store) = ui.overrides.as_ref() {
                if let Err(e) = store.reset(&id) {
                    ui.toast(&e.to_string());
                }
            }
            details::refresh(&ui);
        });
    }
    group.add(&reset);
    Some(group)
}
