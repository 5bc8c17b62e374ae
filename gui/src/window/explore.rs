//! Explore: every enabled remote's apps, with search that filters as you
//! type. Filtering is the list box's own: a keystroke ranks the items and
//! lets GTK hide and reorder the rows, with no rows rebuilt.

use std::rc::Rc;

use adw::prelude::*;
use gtk4 as gtk;
use libadwaita as adw;

use appbox_gui::model::catalog::{search, CatalogItem};
use appbox_gui::model::text;

use super::{boxed_list, clear, details, icon, labelled, scrolled_page, Ui};

pub(crate) struct Explore {
    pub page: gtk::Box,
    search: gtk::SearchEntry,
    list: gtk::ListBox,
    stack: gtk::Stack,
    status: adw::StatusPage,
}

impl Explore {
    pub fn new() -> Self {
        let search: gtk::SearchEntry = labelled("GtkSearchEntry", "Search apps");
        search.set_placeholder_text(Some("Search apps"));
        // Results follow each keystroke; the list is filtered, not rebuilt,
        // so there is nothing to wait for.
        search.set_search_delay(0);
        let search_bar = adw::Clamp::builder()
            .child(&search)
            .margin_top(12)
            .margin_start(12)
            .margin_end(12)
            .build();
        let list = boxed_list("Apps");
        let status = adw::StatusPage::builder()
            .icon_name("system-software-install-symbolic")
            .title("Loading the catalog…")
            .vexpand(true)
            .build();
        let stack = gtk::Stack::new();
        stack.add_named(&status, Some("status"));
        stack.add_named(&scrolled_page(&list), Some("list"));
        stack.set_visible_child_name("status");
        let page = gtk::Box::new(gtk::Orientation::Vertical, 0);
        page.append(&search_bar);
        page.append(&stack);
        Explore {
            page,
            search,
            list,
            stack,
            status,
        }
    }

    pub fn focus_search(&self) {
        self.search.grab_focus();
    }

    /// The store cannot be used at all: say why instead of the list.
    pub fn show_failure(&self, error: &str) {
        self.status.set_icon_name(Some("dialog-error-symbolic"));
        self.status.set_title("The store cannot be read");
        self.status.set_description(Some(&text::plain(error)));
        self.stack.set_visible_child_name("status");
    }
}

pub(crate) fn connect(ui: &Rc<Ui>) {
    let explore = &ui.explore;
    {
        let ui_weak = Rc::downgrade(ui);
        explore.list.set_filter_func(move |row| {
            ui_weak.upgrade().is_some_and(|ui| {
                ui.state
                    .borrow()
                    .visible
                    .get(row.index() as usize)
                    .is_some_and(Option::is_some)
            })
        });
    }
    {
        let ui_weak = Rc::downgrade(ui);
        explore.list.set_sort_func(move |a, b| {
            let Some(ui) = ui_weak.upgrade() else {
                return gtk::Ordering::Equal;
            };
            let state = ui.state.borrow();
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
        let ui_weak = Rc::downgrade(ui);
        explore.search.connect_search_changed(move |entry| {
            if let Some(ui) = ui_weak.upgrade() {
                apply_search(&ui, &entry.text());
            }
        });
    }
    // Enter in the search opens the best match.
    {
        let ui_weak = Rc::downgrade(ui);
        explore.search.connect_activate(move |_| {
            let Some(ui) = ui_weak.upgrade() else {
                return;
            };
            let best = {
                let state = ui.state.borrow();
                state
                    .visible
                    .iter()
                    .enumerate()
                    .filter_map(|(index, rank)| rank.map(|rank| (rank, index)))
                    .min()
                    .and_then(|(_, index)| state.snapshot.catalog.get(index).cloned())
            };
            if let Some(item) = best {
                details::show(&ui, &item);
            }
        });
    }
    {
        let ui_weak = Rc::downgrade(ui);
        explore.list.connect_row_activated(move |_, row| {
            let Some(ui) = ui_weak.upgrade() else {
                return;
            };
            let item = ui
                .state
                .borrow()
                .snapshot
                .catalog
                .get(row.index() as usize)
                .cloned();
            if let Some(item) = item {
                details::show(&ui, &item);
            }
        });
    }
}

/// Shows the snapshot's catalog, with the search as typed.
pub(crate) fn fill(ui: &Rc<Ui>) {
    let explore = &ui.explore;
    clear(&explore.list);
    let (count, failures) = {
        let state = ui.state.borrow();
        for item in &state.snapshot.catalog {
            explore.list.append(&catalog_row(item));
        }
        (
            state.snapshot.catalog.iter().filter(|i| i.is_app()).count(),
            state.snapshot.failures.clone(),
        )
    };
    apply_search(ui, &explore.search.text());
    if count == 0 {
        explore
            .status
            .set_icon_name(Some("system-software-install-symbolic"));
        explore.status.set_title("No apps");
        let description = if failures.is_empty() {
            "Add a remote on the Remotes page.".to_owned()
        } else {
            text::plain(&failures.join("\n"))
        };
        explore.status.set_description(Some(&description));
        explore.stack.set_visible_child_name("status");
    } else {
        explore.stack.set_visible_child_name("list");
    }
}

fn apply_search(ui: &Ui, query: &str) {
    {
        let mut state = ui.state.borrow_mut();
        let mut visible = vec![None; state.snapshot.catalog.len()];
        for (rank, index) in search(&state.snapshot.catalog, query)
            .into_iter()
            .enumerate()
        {
            visible[index] = Some(rank);
        }
        state.visible = visible;
    }
    ui.explore.list.invalidate_filter();
    ui.explore.list.invalidate_sort();
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
