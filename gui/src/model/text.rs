//! Text from remotes and manifests is shown as it is, never interpreted:
//! widgets get it with markup off, and control characters (terminal escapes,
//! bidirectional overrides) become U+FFFD first (CVE-2023-28101).

/// `s` with every control character except newline and tab, and every
/// bidirectional formatting character, replaced by U+FFFD.
pub fn plain(s: &str) -> String {
    s.chars()
        .map(|c| if is_hidden_control(c) { '\u{FFFD}' } else { c })
        .collect()
}

/// One line of `s`: as [`plain`], with line breaks as spaces.
pub fn one_line(s: &str) -> String {
    plain(s).replace(['\n', '\t'], " ")
}

fn is_hidden_control(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_overrides_are_shown_not_obeyed() {
        assert_eq!(plain("Notes"), "Notes");
        assert_eq!(plain("a\u{1b}[2Jb"), "a\u{FFFD}[2Jb");
        assert_eq!(plain("x\u{9b}31m"), "x\u{FFFD}31m");
        assert_eq!(plain("evil\u{202E}txt.exe"), "evil\u{FFFD}txt.exe");
        assert_eq!(plain("line\nnext\ttab\r"), "line\nnext\ttab\u{FFFD}");
        assert_eq!(one_line("a\nb\tc"), "a b c");
        // Markup characters are kept: widgets show them with markup off.
        assert_eq!(plain("<b>&amp;</b>"), "<b>&amp;</b>");
    }
}
