//! The catalog the Explore page shows: every remote's entries, with what is
//! installed, and the search that filters them as the user types.

use appbox::store::catalog::{Entry, EntryKind};

/// One app on offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogItem {
    pub remote: String,
    pub entry: Entry,
    /// The installed version, if the app is installed.
    pub installed: Option<String>,
}

impl CatalogItem {
    pub fn is_app(&self) -> bool {
        self.entry.kind == EntryKind::App
    }
}

/// How well an item matches one word: lower is better, `None` is no match.
fn rank_word(item: &CatalogItem, word: &str) -> Option<u8> {
    let e = &item.entry;
    let has = |field: &str| field.to_lowercase().contains(word);
    if e.name.to_lowercase().starts_with(word) {
        Some(0)
    } else if has(&e.name) {
        Some(1)
    } else if has(&e.id) {
        Some(2)
    } else if has(&e.summary) {
        Some(3)
    } else if has(&e.description) {
        Some(4)
    } else {
        None
    }
}

/// The apps matching every word of `query` (ignoring case), best first,
/// then by name; all apps, by name, for an empty query. Runtimes are not
/// listed: they come with the apps that need them.
pub fn search(items: &[CatalogItem], query: &str) -> Vec<usize> {
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let mut found: Vec<(u8, usize)> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.is_app())
        .filter_map(|(index, item)| {
            let mut best = 0;
            for word in &words {
                best = best.max(rank_word(item, word)?);
            }
            Some((best, index))
        })
        .collect();
    found.sort_by(|(rank_a, a), (rank_b, b)| {
        rank_a
            .cmp(rank_b)
            .then_with(|| {
                items[*a]
                    .entry
                    .name
                    .to_lowercase()
                    .cmp(&items[*b].entry.name.to_lowercase())
            })
            .then_with(|| items[*a].remote.cmp(&items[*b].remote))
    });
    found.into_iter().map(|(_, index)| index).collect()
}

/// A size as GNOME shows it: decimal units, one decimal below 100.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return if bytes == 1 {
            "1 byte".into()
        } else {
            format!("{bytes} bytes")
        };
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if value < 100.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn item(id: &str, name: &str, summary: &str) -> CatalogItem {
        CatalogItem {
            remote: "samples".into(),
            entry: Entry {
                id: id.into(),
                kind: EntryKind::App,
                name: name.into(),
                summary: summary.into(),
                description: format!("{name} is an app."),
                version: "1.0".into(),
                license: "MIT".into(),
                runtime: "host".into(),
                permissions: vec!["--share=network".into()],
                icon: None,
                installed_size: 1234,
                published: None,
            },
            installed: None,
        }
    }

    #[test]
    fn search_filters_by_every_word_and_ranks_names_first() {
        let mut items = vec![
            item("org.example.Editor", "Text Editor", "Edit notes"),
            item("org.appbox.Notes", "Notes", "Write notes"),
            item("org.example.Mail", "Mail", "Read mail"),
            item("org.example.Notepad", "Pad", "A notebook"),
        ];
        let mut runtime = item("org.example.Platform", "Notes Platform", "runtime");
        runtime.entry.kind = EntryKind::Runtime;
        items.push(runtime);
        let names = |found: Vec<usize>| -> Vec<String> {
            found.iter().map(|&i| items[i].entry.name.clone()).collect()
        };
        assert_eq!(
            names(search(&items, "")),
            ["Mail", "Notes", "Pad", "Text Editor"]
        );
        assert_eq!(
            names(search(&items, "NOTE")),
            ["Notes", "Pad", "Text Editor"]
        );
        assert_eq!(names(search(&items, "notes write")), ["Notes"]);
        assert_eq!(names(search(&items, "notes zebra")), Vec::<String>::new());
        assert_eq!(names(search(&items, "  mail  ")), ["Mail"]);
    }

    #[test]
    fn sizes_read_like_gnome_s() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1), "1 byte");
        assert_eq!(human_size(999), "999 bytes");
        assert_eq!(human_size(1000), "1.0 kB");
        assert_eq!(human_size(1_234_567), "1.2 MB");
        assert_eq!(human_size(123_456_789), "123 MB");
        assert_eq!(human_size(5_000_000_000), "5.0 GB");
    }
}
