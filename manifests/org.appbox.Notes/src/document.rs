//! What the window knows about the text it edits, as pure rules that need no display.
//!
//! The window owns a `Document<gio::File>`; the tests use `Document<&str>`.

use std::fmt;

/// The application's name, as shown in window titles.
pub const APP_NAME: &str = "Notes";

/// Shown for a document that has no file yet.
pub const UNTITLED: &str = "Untitled";

/// The mark that a title carries while the text has unsaved changes.
pub const MODIFIED_MARK: &str = "•";

/// The file being edited (if any) and whether the text differs from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document<F> {
    file: Option<(F, String)>,
    modified: bool,
    /// Counts edits, so that a save which finishes after further edits
    /// leaves the document modified.
    generation: u64,
}

impl<F> Default for Document<F> {
    fn default() -> Self {
        Document {
            file: None,
            modified: false,
            generation: 0,
        }
    }
}

/// Where Save writes to.
#[derive(Debug, PartialEq, Eq)]
pub enum SaveTarget<'a, F> {
    /// The document's own file.
    File(&'a F),
    /// The document has no file: ask the user for one, as Save As does.
    Choose,
}

impl<F> Document<F> {
    pub fn file(&self) -> Option<&F> {
        self.file.as_ref().map(|(file, _)| file)
    }

    /// The file's name for people, or "Untitled".
    pub fn name(&self) -> &str {
        self.file.as_ref().map_or(UNTITLED, |(_, name)| name)
    }

    /// No file and no text typed: a window that a newly opened file may reuse.
    pub fn is_pristine(&self) -> bool {
        self.file.is_none() && !self.modified
    }

    /// Whether replacing or closing the text must first ask to discard changes.
    pub fn needs_discard_confirmation(&self) -> bool {
        self.modified
    }

    pub fn save_target(&self) -> SaveTarget<'_, F> {
        match &self.file {
            Some((file, _)) => SaveTarget::File(file),
            None => SaveTarget::Choose,
        }
    }

    /// The text was edited. Returns the generation a save should remember.
    pub fn edited(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// The edit history itself says whether the text matches the file (undo back
    /// to the saved text clears it; any other change sets it).
    pub fn set_modified(&mut self, modified: bool) {
        self.modified = modified;
    }

    /// The generation of the text as it is now; a save takes a snapshot of it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A file was loaded (or a missing file was opened as new, empty text).
    pub fn loaded(&mut self, file: F, name: String) {
        self.file = Some((file, name));
        self.modified = false;
    }

    /// The text of generation `saved` was written to `file`, which is now the
    /// document's file. Returns whether the text is still modified: true when it
    /// was edited while the save was under way.
    pub fn saved(&mut self, file: F, name: String, saved: u64) -> bool {
        self.file = Some((file, name));
        self.modified = saved != self.generation;
        self.modified
    }

    /// The window title: "• notes.txt — Notes" while modified, "notes.txt — Notes" otherwise.
    pub fn window_title(&self) -> String {
        format!("{} — {APP_NAME}", self.heading())
    }

    /// The header bar's title: the name, marked while modified.
    pub fn heading(&self) -> String {
        if self.modified {
            format!("{MODIFIED_MARK} {}", self.name())
        } else {
            self.name().to_owned()
        }
    }
}

/// Why a file's bytes are not text that the editor can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotText {
    /// Not valid UTF-8, from this byte offset.
    InvalidUtf8 { offset: usize },
    /// A NUL byte at this offset: a binary file.
    Nul { offset: usize },
}

impl fmt::Display for NotText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotText::InvalidUtf8 { offset } => {
                write!(f, "it is not UTF-8 text (invalid byte at offset {offset})")
            }
            NotText::Nul { offset } => {
                write!(f, "it is a binary file (NUL byte at offset {offset})")
            }
        }
    }
}

/// The text of a plain-text file. The bytes are taken as they are, a byte-order
/// mark and line endings included, so that saving writes back what was read.
pub fn decode_text(bytes: &[u8]) -> Result<&str, NotText> {
    let text = std::str::from_utf8(bytes).map_err(|e| NotText::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    match text.find('\0') {
        Some(offset) => Err(NotText::Nul { offset }),
        None => Ok(text),
    }
}

/// A directory for the header bar's subtitle, with the home directory shown as `~`.
pub fn short_dir(dir: &str, home: Option<&str>) -> String {
    let home = home
        .map(|h| h.trim_end_matches('/'))
        .filter(|h| !h.is_empty());
    match home.and_then(|home| dir.strip_prefix(home)) {
        Some("") => "~".to_owned(),
        Some(rest) if rest.starts_with('/') => format!("~{rest}"),
        _ => dir.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_document_is_untitled_and_clean() {
        let doc = Document::<&str>::default();
        assert_eq!(doc.window_title(), "Untitled — Notes");
        assert_eq!(doc.heading(), "Untitled");
        assert!(doc.is_pristine());
        assert!(!doc.needs_discard_confirmation());
        assert_eq!(doc.save_target(), SaveTarget::Choose);
    }

    #[test]
    fn the_title_shows_the_name_and_a_mark_while_modified() {
        let mut doc = Document::default();
        doc.loaded("/tmp/a.txt", "a.txt".into());
        assert_eq!(doc.window_title(), "a.txt — Notes");
        doc.edited();
        doc.set_modified(true);
        assert_eq!(doc.window_title(), "• a.txt — Notes");
        assert_eq!(doc.heading(), "• a.txt");
        doc.set_modified(false);
        assert_eq!(doc.window_title(), "a.txt — Notes");
    }

    #[test]
    fn typed_text_is_not_pristine_and_asks_before_discarding() {
        let mut doc = Document::<&str>::default();
        doc.edited();
        doc.set_modified(true);
        assert!(!doc.is_pristine());
        assert!(doc.needs_discard_confirmation());
        assert_eq!(doc.window_title(), "• Untitled — Notes");
    }

    #[test]
    fn a_document_with_a_file_is_not_pristine() {
        let mut doc = Document::default();
        doc.loaded("/tmp/a.txt", "a.txt".into());
        assert!(!doc.is_pristine());
        assert!(!doc.needs_discard_confirmation());
        assert_eq!(doc.save_target(), SaveTarget::File(&"/tmp/a.txt"));
    }

    #[test]
    fn loading_clears_the_modified_state() {
        let mut doc = Document::default();
        doc.edited();
        doc.set_modified(true);
        doc.loaded("/tmp/b.txt", "b.txt".into());
        assert!(!doc.needs_discard_confirmation());
        assert_eq!(doc.name(), "b.txt");
    }

    #[test]
    fn saving_binds_the_file_and_clears_the_modified_state() {
        let mut doc = Document::default();
        let generation = doc.edited();
        doc.set_modified(true);
        assert!(!doc.saved("/tmp/new.txt", "new.txt".into(), generation));
        assert!(!doc.needs_discard_confirmation());
        assert_eq!(doc.file(), Some(&"/tmp/new.txt"));
        assert_eq!(doc.window_title(), "new.txt — Notes");
    }

    #[test]
    fn an_edit_during_a_save_keeps_the_document_modified() {
        let mut doc = Document::default();
        doc.loaded("/tmp/a.txt", "a.txt".into());
        let snapshot = doc.edited();
        doc.set_modified(true);
        doc.edited();
        assert!(doc.saved("/tmp/a.txt", "a.txt".into(), snapshot));
        assert!(doc.needs_discard_confirmation());
        assert_eq!(doc.window_title(), "• a.txt — Notes");
    }

    #[test]
    fn save_as_moves_the_document_to_the_new_file() {
        let mut doc = Document::default();
        doc.loaded("/tmp/a.txt", "a.txt".into());
        let generation = doc.generation();
        doc.saved("/tmp/b.txt", "b.txt".into(), generation);
        assert_eq!(doc.save_target(), SaveTarget::File(&"/tmp/b.txt"));
    }

    #[test]
    fn the_home_directory_is_shortened() {
        let home = Some("/home/ann");
        assert_eq!(short_dir("/home/ann", home), "~");
        assert_eq!(short_dir("/home/ann/Notes", home), "~/Notes");
        assert_eq!(short_dir("/home/anna/Notes", home), "/home/anna/Notes");
        assert_eq!(short_dir("/tmp", home), "/tmp");
        assert_eq!(short_dir("/home/ann/x", Some("/home/ann/")), "~/x");
        assert_eq!(short_dir("/tmp", Some("/")), "/tmp");
        assert_eq!(short_dir("/tmp", None), "/tmp");
    }

    #[test]
    fn text_is_taken_as_it_is() {
        assert_eq!(decode_text(b""), Ok(""));
        assert_eq!(decode_text(b"a\r\nb\n"), Ok("a\r\nb\n"));
        assert_eq!(
            decode_text("\u{feff}caf\u{e9}".as_bytes()),
            Ok("\u{feff}caf\u{e9}")
        );
    }

    #[test]
    fn binary_and_non_utf8_files_are_refused() {
        assert_eq!(
            decode_text(b"ab\xffcd"),
            Err(NotText::InvalidUtf8 { offset: 2 })
        );
        assert_eq!(decode_text(b"abc\0d"), Err(NotText::Nul { offset: 3 }));
        assert_eq!(
            NotText::Nul { offset: 3 }.to_string(),
            "it is a binary file (NUL byte at offset 3)"
        );
    }
}
