//! Tab completion: command names in the first word, local paths where a command takes one
//! (`put FILE`, `get NAME OUT`), flags after `-`. The word under the cursor is read with the
//! shell's own splitting, so a path completed inside `"…"` stays quoted and one completed
//! bare gets backslashes: what is inserted always splits back to the path on disk.

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use super::commands;
use super::words::{self, escape, Word};

/// The line editor's helper: completion only (no hints, colours or multi-line input).
pub struct ShellHelper {
    home: Option<String>,
}

impl ShellHelper {
    pub fn new(home: Option<String>) -> Self {
        ShellHelper { home }
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(complete(line, pos, self.home.as_deref()))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

/// Where the word under the cursor starts, and what may replace it.
pub fn complete(line: &str, pos: usize, home: Option<&str>) -> (usize, Vec<Pair>) {
    let head = line.get(..pos).unwrap_or(line);
    let mut scan = words::scan(head, home);
    let current = if scan.open_word {
        scan.words.pop()
    } else {
        None
    };
    let start = current.as_ref().map_or(pos, |w| w.start);
    let typed = current.as_ref().map_or("", |w| w.text.as_str());
    let Some((command, args)) = scan.words.split_first() else {
        return (start, choices(commands::names(), typed, scan.quote));
    };
    let Some(spec) = commands::spec(&command.text) else {
        return (start, Vec::new());
    };
    let takes_flags = spec.flags().next().is_some();
    if takes_flags && typed.starts_with('-') {
        let flags = spec.flags().map(|f| format!("--{f}"));
        let flags: Vec<String> = flags.collect();
        return (
            start,
            choices(flags.iter().map(String::as_str), typed, None),
        );
    }
    let index = args
        .iter()
        .filter(|w| !(takes_flags && w.text.starts_with('-') && w.text != "-"))
        .count();
    let found = if spec.command_at(index) {
        choices(commands::names(), typed, scan.quote)
    } else if spec.local_path_at(index) {
        paths(current.as_ref(), scan.quote, home)
    } else {
        Vec::new()
    };
    (start, found)
}

/// The words of `all` that start with `typed`; a single one is finished with a space.
fn choices<'a>(all: impl Iterator<Item = &'a str>, typed: &str, quote: Option<char>) -> Vec<Pair> {
    if quote.is_some() {
        return Vec::new();
    }
    let found: Vec<&str> = all.filter(|c| c.starts_with(typed)).collect();
    let unique = found.len() == 1;
    found
        .into_iter()
        .map(|c| Pair {
            display: c.to_string(),
            replacement: if unique {
                format!("{c} ")
            } else {
                c.to_string()
            },
        })
        .collect()
}

/// Local files and folders that the word being typed could name. A folder is offered with
/// its `/` (Tab again goes inside); a single file closes the quote and adds a space.
fn paths(word: Option<&Word>, quote: Option<char>, home: Option<&str>) -> Vec<Pair> {
    let text = word.map_or("", |w| w.text.as_str());
    let home_len = word.map_or(0, |w| w.home);
    if home_len > 0 && text.len() == home_len {
        // A bare `~`: go into the home folder, as bash does.
        return vec![Pair {
            display: "~/".into(),
            replacement: "~/".into(),
        }];
    }
    let (dir, prefix) = match text.rfind('/') {
        Some(at) => text.split_at(at + 1),
        None => ("", text),
    };
    let Ok(entries) = std::fs::read_dir(if dir.is_empty() { "." } else { dir }) else {
        return Vec::new();
    };
    let mut found: Vec<(String, bool)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let shown =
                name.starts_with(prefix) && (prefix.starts_with('.') || !name.starts_with('.'));
            // Follows links: a link to a folder is a folder here.
            let is_dir = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir());
            shown.then_some((name, is_dir))
        })
        .collect();
    found.sort();
    let unique = found.len() == 1;
    found
        .into_iter()
        .map(|(name, is_dir)| {
            let slash = if is_dir { "/" } else { "" };
            let full = format!("{dir}{name}{slash}");
            // Keep a `~` the user typed rather than spelling out the home folder.
            let rest = home
                .filter(|_| home_len > 0)
                .and_then(|h| full.strip_prefix(h))
                .and_then(|r| r.strip_prefix('/'));
            let mut replacement = match rest {
                Some(rest) => format!("~/{}", escape(rest, quote)),
                None => escape(&full, quote),
            };
            if unique && !is_dir {
                replacement.extend(quote);
                replacement.push(' ');
            }
            Pair {
                display: format!("{name}{slash}"),
                replacement,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replacements(line: &str, home: Option<&str>) -> (usize, Vec<String>) {
        let (start, pairs) = complete(line, line.len(), home);
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn commands_complete_in_the_first_word() {
        assert_eq!(replacements("loo", None), (0, vec!["lookup ".into()]));
        let (_, all) = replacements("s", None);
        assert_eq!(all, ["status", "successors"]);
        assert_eq!(replacements("help pu", None), (5, vec!["put ".into()]));
        assert_eq!(
            replacements("get x --f", None),
            (6, vec!["--force ".into()])
        );
        assert_eq!(replacements("lookup a", None), (7, vec![]));
    }

    #[test]
    fn paths_complete_quoted_escaped_and_from_home() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_str().expect("utf-8");
        std::fs::write(dir.path().join("my thesis.pdf"), b"x").expect("write");
        std::fs::write(dir.path().join("notes.txt"), b"x").expect("write");
        std::fs::write(dir.path().join(".hidden"), b"x").expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");

        let line = format!("put {d}/my");
        let want = format!("{d}/my\\ thesis.pdf ");
        assert_eq!(replacements(&line, None), (4, vec![want]));
        let line = format!("put \"{d}/my");
        let want = format!("\"{d}/my thesis.pdf\" ");
        assert_eq!(replacements(&line, None), (4, vec![want]));
        let line = format!("put '{d}/my");
        let want = format!("'{d}/my thesis.pdf' ");
        assert_eq!(replacements(&line, None), (4, vec![want]));
        let line = format!("put {d}/s");
        assert_eq!(replacements(&line, None), (4, vec![format!("{d}/sub/")]));
        let line = format!("put {d}/");
        let (_, all) = replacements(&line, None);
        assert_eq!(all.len(), 3, "{all:?}: no hidden files unless asked");
        let line = format!("get n {d}/no");
        assert_eq!(replacements(&line, None).1, [format!("{d}/notes.txt ")]);
        assert!(replacements(&format!("get {d}/no"), None).1.is_empty());

        assert_eq!(
            replacements("put ~/my", Some(d)),
            (4, vec!["~/my\\ thesis.pdf ".into()])
        );
        assert_eq!(
            replacements("put ~/\"my", Some(d)).1,
            ["~/\"my thesis.pdf\" "]
        );
        assert_eq!(replacements("put ~", Some(d)).1, ["~/"]);
        for (line, _) in [
            ("put ~/my\\ thesis.pdf ", ()),
            ("put ~/\"my thesis.pdf\" ", ()),
        ] {
            let words = words::split(line, Some(d)).expect("splits");
            assert_eq!(words[1], format!("{d}/my thesis.pdf"));
        }
    }
}
