//! Explore: every enabled remote's apps, with search that filters as you
//! type. The list is a GtkListView over the catalog: only the rows on screen
//! exist, and a keystroke re-ranks the items and tells the filter and sorter
//! models they changed, with no rows rebuilt. Icons are decoded when a row
//! first shows them, and kept.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use adw::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;
use libadwaita as adw;

use appbox_gui::model::catalog::search;
use appbox_gui::model::text;

use super::{
    details, icon_texture, labelled, scrolled_page, set_accessible, timing, Accessible, Ui,
};

/// How many catalog items the list gets before its first frame.
const FIRST_SCREENFUL: usize = 30;

pub(crate) struct Explore {
    pub page: gtk::Box,
    search: gtk::SearchEntry,
    list: gtk::ListView,
    /// One object per catalog item, holding its index in the snapshot.
    items: gio::ListStore,
    filter: gtk::CustomFilter,
    sorter: gtk::CustomSorter,
    stack: gtk::Stack,
    status: adw::StatusPage,
    /// Decoded icons, by catalog index; emptied with each new catalog.
    icons: RefCell<HashMap<usize, Option<gtk::gdk::Texture>>>,
    /// Counts the catalogs shown, so that late work for an old one stops.
    generation: Cell<u64>,
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
        let items = gio::ListStore::new::<glib::BoxedAnyObject>();
        // The filter and sorter read the ranks `apply_search` keeps; they
        // are set in `connect`, once the window's state exists.
        let filter = gtk::CustomFilter::new(|_| true);
        let sorter = gtk::CustomSorter::new(|_, _| gtk::Ordering::Equal);
        let filtered = gtk::FilterListModel::new(Some(items.clone()), Some(filter.clone()));
        let sorted = gtk::SortListModel::new(Some(filtered), Some(sorter.clone()));
        let list: gtk::ListView = labelled("GtkListView", "Apps");
        list.set_model(Some(&gtk::NoSelection::new(Some(sorted))));
        list.set_single_click_activate(true);
        list.add_css_class("boxed-list");
        list.set_valign(gtk::Align::Start);
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
            items,
            filter,
            sorter,
            stack,
            status,
            icons: RefCell::default(),
            generation: Cell::default(),
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

/// The catalog index an item of the list's model holds.
fn index_of(object: &glib::Object) -> Option<usize> {
    let boxed = object.downcast_ref::<glib::BoxedAnyObject>()?;
    let index = *boxed.borrow::<usize>();
    Some(index)
}

/// The rank of a catalog index in the current search; `None` is hidden.
fn rank(ui: &Ui, object: &glib::Object) -> Option<usize> {
    let index = index_of(object)?;
    ui.state.borrow().visible.get(index).copied().flatten()
}

pub(crate) fn connect(ui: &Rc<Ui>) {
    let explore = &ui.explore;
    {
        let ui_weak = Rc::downgrade(ui);
        explore.filter.set_filter_func(move |object| {
            ui_weak
                .upgrade()
                .is_some_and(|ui| rank(&ui, object).is_some())
        });
    }
    {
        let ui_weak = Rc::downgrade(ui);
        explore.sorter.set_sort_func(move |a, b| {
            let Some(ui) = ui_weak.upgrade() else {
                return gtk::Ordering::Equal;
            };
            let (a, b) = (rank(&ui, a), rank(&ui, b));
            a.unwrap_or(usize::MAX).cmp(&b.unwrap_or(usize::MAX)).into()
        });
    }
    explore.list.set_factory(Some(&row_factory(ui)));
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
        explore.list.connect_activate(move |list, position| {
            let Some(ui) = ui_weak.upgrade() else {
                return;
            };
            let item = list
                .model()
                .and_then(|model| model.item(position))
                .and_then(|object| index_of(&object))
                .and_then(|index| ui.state.borrow().snapshot.catalog.get(index).cloned());
            if let Some(item) = item {
                details::show(&ui, &item);
            }
        });
    }
}

/// The widgets of one row, made once by the factory and filled for each
/// item it shows: the icon, the name and summary, and the Installed label.
struct RowWidgets {
    icon: gtk::Image,
    name: gtk::Label,
    summary: gtk::Label,
    installed: gtk::Label,
}

impl RowWidgets {
    /// Finds them again in a row the factory made.
    fn of(row: &gtk::Widget) -> Option<Self> {
        let icon = row.first_child()?;
        let names = icon.next_sibling()?;
        let installed = names.next_sibling()?;
        let name = names.first_child()?;
        let summary = name.next_sibling()?;
        Some(RowWidgets {
            icon: icon.downcast().ok()?,
            name: name.downcast().ok()?,
            summary: summary.downcast().ok()?,
            installed: installed.downcast().ok()?,
        })
    }
}

fn row_factory(ui: &Rc<Ui>) -> gtk::SignalListItemFactory {
    let factory = gtk::SignalListItemFactory::new();
    factory.connect_setup(|_, item| {
        let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
            return;
        };
        let icon = gtk::Image::builder()
            .accessible_role(gtk::AccessibleRole::Presentation)
            .pixel_size(48)
            .build();
        let name = gtk::Label::builder()
            .xalign(0.0)
            .css_classes(["heading"])
            .build();
        let summary = gtk::Label::builder()
            .xalign(0.0)
            .css_classes(["dim-label"])
            .ellipsize(gtk::pango::EllipsizeMode::End)
            .build();
        let names = gtk::Box::new(gtk::Orientation::Vertical, 3);
        names.set_hexpand(true);
        names.set_valign(gtk::Align::Center);
        names.append(&name);
        names.append(&summary);
        let installed = gtk::Label::builder()
            .label("Installed")
            .css_classes(["dim-label"])
            .build();
        let row = gtk::Box::builder()
            .orientation(gtk::Orientation::Horizontal)
            .spacing(12)
            .margin_top(9)
            .margin_bottom(9)
            .margin_start(12)
            .margin_end(12)
            .build();
        row.append(&icon);
        row.append(&names);
        row.append(&installed);
        row.append(&gtk::Image::from_icon_name("go-next-symbolic"));
        item.set_child(Some(&row));
    });
    let ui_weak = Rc::downgrade(ui);
    factory.connect_bind(move |_, item| {
        let (Some(ui), Some(item)) = (ui_weak.upgrade(), item.downcast_ref::<gtk::ListItem>())
        else {
            return;
        };
        let (Some(row), Some(index)) = (item.child(), item.item().and_then(|o| index_of(&o)))
        else {
            return;
        };
        let Some(widgets) = RowWidgets::of(&row) else {
            return;
        };
        let name = {
            let state = ui.state.borrow();
            let Some(shown) = state.snapshot.catalog.get(index) else {
                return;
            };
            widgets
                .summary
                .set_text(&text::one_line(&shown.entry.summary));
            widgets.installed.set_visible(shown.installed.is_some());
            text::one_line(&shown.entry.name)
        };
        widgets.name.set_text(&name);
        let cached = ui.explore.icons.borrow().get(&index).cloned();
        match cached {
            Some(texture) => show_icon(&widgets.icon, texture.as_ref()),
            None => {
                show_icon(&widgets.icon, None);
                decode_icon_later(&ui, item.clone(), index, widgets.icon);
            }
        }
        // The row reads as the app's name to a screen reader: the list item
        // around it is what AT-SPI presents (GTK 4.8 has no
        // GtkListItem:accessible-label; that came in 4.12).
        set_accessible(&row, Accessible::Label, &name);
        if let Some(list_item_widget) = row.parent() {
            set_accessible(&list_item_widget, Accessible::Label, &name);
        }
    });
    factory
}

fn show_icon(image: &gtk::Image, texture: Option<&gtk::gdk::Texture>) {
    match texture {
        Some(texture) => image.set_paintable(Some(texture)),
        None => image.set_icon_name(Some("application-x-executable")),
    }
}

/// Decodes a row's icon once the main loop is idle, after the frames it
/// owes: a new catalog shows its names at once and its icons right after,
/// instead of waiting for every row GTK prepares to decode its icon.
fn decode_icon_later(ui: &Rc<Ui>, list_item: gtk::ListItem, index: usize, image: gtk::Image) {
    let ui_weak = Rc::downgrade(ui);
    glib::idle_add_local_once(move || {
        let Some(ui) = ui_weak.upgrade() else {
            return;
        };
        // The row may show another app by now, or the catalog be new.
        if list_item.item().and_then(|object| index_of(&object)) != Some(index) {
            return;
        }
        let cached = ui.explore.icons.borrow().get(&index).cloned();
        let texture = match cached {
            Some(texture) => texture,
            None => {
                let decoded = ui
                    .state
                    .borrow()
                    .snapshot
                    .catalog
                    .get(index)
                    .and_then(icon_texture);
                ui.explore.icons.borrow_mut().insert(index, decoded.clone());
                decoded
            }
        };
        show_icon(&image, texture.as_ref());
    });
}

/// Shows the snapshot's catalog, with the search as typed.
pub(crate) fn fill(ui: &Rc<Ui>) {
    let explore = &ui.explore;
    let (count, total, failures) = {
        let state = ui.state.borrow();
        let catalog = &state.snapshot.catalog;
        (
            catalog.iter().filter(|i| i.is_app()).count(),
            catalog.len(),
            state.snapshot.failures.clone(),
        )
    };
    explore.icons.borrow_mut().clear();
    // Ranks first, so that the new items are filtered as they arrive.
    rank_all(ui, &explore.search.text());
    // The best-ranked items first, the rest once the first frame is out:
    // GTK 4.8's list view makes a row for up to 200 items at once, and the
    // window needs only a screenful to show the catalog.
    let mut order: Vec<usize> = (0..total).collect();
    {
        let state = ui.state.borrow();
        order.sort_by_key(|&index| {
            state
                .visible
                .get(index)
                .copied()
                .flatten()
                .unwrap_or(usize::MAX)
        });
    }
    let objects: Vec<glib::BoxedAnyObject> =
        order.into_iter().map(glib::BoxedAnyObject::new).collect();
    let (first, rest) = objects.split_at(objects.len().min(FIRST_SCREENFUL));
    explore.items.splice(0, explore.items.n_items(), first);
    let generation = explore.generation.get() + 1;
    explore.generation.set(generation);
    if !rest.is_empty() {
        let (ui_weak, rest) = (Rc::downgrade(ui), rest.to_vec());
        glib::idle_add_local_once(move || {
            // Unless a newer catalog has replaced this one meanwhile.
            if let Some(ui) = ui_weak.upgrade() {
                if ui.explore.generation.get() == generation {
                    ui.explore.items.extend_from_slice(&rest);
                }
            }
        });
    }
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
        timing::catalog_shown(&explore.list, count);
    }
}

/// Ranks every catalog item for `query`.
fn rank_all(ui: &Ui, query: &str) {
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

fn apply_search(ui: &Ui, query: &str) {
    rank_all(ui, query);
    ui.explore.filter.changed(gtk::FilterChange::Different);
    ui.explore.sorter.changed(gtk::SorterChange::Different);
    timing::results_shown(&ui.explore.list);
}
