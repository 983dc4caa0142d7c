//! Splitting a line into words as a POSIX shell does, so that what people type from habit
//! works: `'…'` keeps everything literally, `"…"` keeps everything but `\"`, `\\`, `\$` and
//! `` \` ``, a backslash outside quotes keeps the next character, and an unquoted `~` or `~/…`
//! at the start of a word is the home folder. No variables, globs or pipes: this shell only
//! passes words to its commands, and a `$` or `*` in a file name should stay what it is.

use std::fmt;

/// A line that cannot be split: a quote left open or a lone backslash at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    OpenQuote(char),
    LoneBackslash,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::OpenQuote(q) => {
                write!(f, "the line ends inside a {q}-quote; close it with {q}")
            }
            SplitError::LoneBackslash => {
                write!(
                    f,
                    "the line ends with a lone \\; write \\\\ for a backslash"
                )
            }
        }
    }
}

/// One word of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The word as the command sees it: quotes and escapes removed, `~` expanded.
    pub text: String,
    /// Where it starts in the line (a byte offset), for completion to replace it.
    pub start: usize,
    /// How many leading bytes of `text` are the home folder a `~` stood for.
    pub home: usize,
}

/// A line read up to some point (the cursor, for completion): its words, and whether the last
/// one is still open.
#[derive(Debug, Default)]
pub struct Scan {
    pub words: Vec<Word>,
    /// The last word continues at the end (no space after it, or a quote still open).
    pub open_word: bool,
    /// The quote the line ends inside, if any.
    pub quote: Option<char>,
    /// The line ends with a backslash that escapes nothing.
    pub lone_backslash: bool,
}

/// The words of a whole line, or why it cannot be split. `home` is what `~` stands for
/// (none: `~` stays as typed).
pub fn split(line: &str, home: Option<&str>) -> Result<Vec<String>, SplitError> {
    let scan = scan(line, home);
    if let Some(q) = scan.quote {
        return Err(SplitError::OpenQuote(q));
    }
    if scan.lone_backslash {
        return Err(SplitError::LoneBackslash);
    }
    Ok(scan.words.into_iter().map(|w| w.text).collect())
}

/// Reads `line` as far as it goes, never failing: completion works on unfinished lines.
pub fn scan(line: &str, home: Option<&str>) -> Scan {
    let mut out = Scan::default();
    let mut word: Option<Word> = None;
    let mut chars = line.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match out.quote {
            Some('\'') => match c {
                '\'' => out.quote = None,
                c => push(&mut word, at, c),
            },
            Some(_) => match c {
                '"' => out.quote = None,
                '\\' => match chars.peek().map(|&(_, n)| n) {
                    Some(n @ ('"' | '\\' | '$' | '`')) => {
                        chars.next();
                        push(&mut word, at, n);
                    }
                    Some('\n') => {
                        chars.next();
                    }
                    _ => push(&mut word, at, '\\'),
                },
                c => push(&mut word, at, c),
            },
            None if c.is_whitespace() => out.words.extend(word.take()),
            None => {
                let w = word.get_or_insert_with(|| Word {
                    text: String::new(),
                    start: at,
                    home: 0,
                });
                match c {
                    '\'' | '"' => out.quote = Some(c),
                    '\\' => match chars.next() {
                        Some((_, '\n')) => {}
                        Some((_, n)) => w.text.push(n),
                        None => out.lone_backslash = true,
                    },
                    '~' if at == w.start => {
                        let ends = chars
                            .peek()
                            .is_none_or(|&(_, n)| n == '/' || n.is_whitespace());
                        match home {
                            Some(home) if ends => {
                                w.text.push_str(home);
                                w.home = home.len();
                            }
                            _ => w.text.push('~'),
                        }
                    }
                    c => w.text.push(c),
                }
            }
        }
    }
    out.open_word = word.is_some();
    out.words.extend(word);
    out
}

/// Adds a quoted character to the current word. Opening a quote already started the word
/// (at the quote, which is where completion replaces from); `at` is a fallback only.
fn push(word: &mut Option<Word>, at: usize, c: char) {
    word.get_or_insert_with(|| Word {
        text: String::new(),
        start: at,
        home: 0,
    })
    .text
    .push(c);
}

/// Characters a POSIX shell would read as more than themselves outside quotes.
fn special(c: char) -> bool {
    c.is_whitespace() || "'\"\\$`&|;<>()*?[]#!{}".contains(c)
}

/// `text` written so that [`split`] reads it back as one word: inside the quote `quote`
/// (left open, for completion to go on), or with backslashes when there is none.
pub fn escape(text: &str, quote: Option<char>) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    match quote {
        Some('\'') => {
            out.push('\'');
            out.push_str(&text.replace('\'', "'\\''"));
        }
        Some(q) => {
            out.push(q);
            for c in text.chars() {
                if matches!(c, '"' | '\\' | '$' | '`') {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        None => {
            for (i, c) in text.chars().enumerate() {
                if special(c) || (i == 0 && c == '~') {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    out
}

/// `text` as one word to show in a hint: as it is when it is plain, else in quotes.
pub fn quote(text: &str) -> String {
    if !text.is_empty() && !text.chars().any(special) && !text.starts_with('~') {
        return text.to_string();
    }
    if text.contains('\'') {
        format!("{}\"", escape(text, Some('"')))
    } else {
        format!("'{text}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split(line, Some("/home/u")).expect("splits")
    }

    #[test]
    fn quotes_and_escapes_as_posix() {
        assert_eq!(words("put a b"), ["put", "a", "b"]);
        assert_eq!(words("  put   a  "), ["put", "a"]);
        assert_eq!(
            words("put \"/tmp/my thesis.pdf\""),
            ["put", "/tmp/my thesis.pdf"]
        );
        assert_eq!(
            words("put '/tmp/my thesis.pdf'"),
            ["put", "/tmp/my thesis.pdf"]
        );
        assert_eq!(
            words(r"put /tmp/my\ thesis.pdf"),
            ["put", "/tmp/my thesis.pdf"]
        );
        assert_eq!(
            words(r#"a "x\"y" 'x\y' x\\y"#),
            ["a", "x\"y", r"x\y", r"x\y"]
        );
        assert_eq!(words(r#"a "x\ny""#), ["a", r"x\ny"]);
        assert_eq!(words("a b'c d'e"), ["a", "bc de"]);
        assert_eq!(words("a '' \"\""), ["a", "", ""]);
        assert_eq!(words("lookup a b c"), ["lookup", "a", "b", "c"]);
        assert_eq!(words("a 'it'\\''s'"), ["a", "it's"]);
        assert_eq!(words("a thé 'ü x'"), ["a", "thé", "ü x"]);
    }

    #[test]
    fn tilde_only_unquoted_at_the_start() {
        assert_eq!(words("put ~/x.pdf"), ["put", "/home/u/x.pdf"]);
        assert_eq!(words("cd ~"), ["cd", "/home/u"]);
        assert_eq!(words("a \"~/x\" '~' \\~/x"), ["a", "~/x", "~", "~/x"]);
        assert_eq!(words("a x~/y ~bob ~x"), ["a", "x~/y", "~bob", "~x"]);
        assert_eq!(split("a ~/x", None).expect("splits"), ["a", "~/x"]);
    }

    #[test]
    fn unfinished_lines_are_refused() {
        assert_eq!(split("put \"a b", None), Err(SplitError::OpenQuote('"')));
        assert_eq!(split("put 'a b", None), Err(SplitError::OpenQuote('\'')));
        assert_eq!(split("put a\\", None), Err(SplitError::LoneBackslash));
    }

    #[test]
    fn scan_tells_the_open_word() {
        let s = scan("put \"/tmp/my th", None);
        assert!(s.open_word);
        assert_eq!(s.quote, Some('"'));
        assert_eq!(s.words[1].text, "/tmp/my th");
        assert_eq!(s.words[1].start, 4);
        let s = scan("put ", None);
        assert!(!s.open_word);
        let s = scan("put ~/d", Some("/h"));
        assert_eq!((s.words[1].text.as_str(), s.words[1].home), ("/h/d", 2));
    }

    #[test]
    fn escaped_words_split_back() {
        for text in [
            "plain",
            "my thesis.pdf",
            "it's",
            "a\"b",
            "$x `y` \\z",
            "~x",
            "*?[]",
            "",
        ] {
            for quote in [None, Some('"'), Some('\'')] {
                let mut line = escape(text, quote);
                if let Some(q) = quote {
                    line.push(q);
                }
                let got = split(&line, Some("/home/u")).expect("splits");
                let want: Vec<String> = if line.is_empty() {
                    vec![]
                } else {
                    vec![text.into()]
                };
                assert_eq!(got, want, "{line}");
            }
            let shown = quote(text);
            assert_eq!(
                split(&shown, Some("/h")).expect("splits"),
                [text],
                "{shown}"
            );
        }
    }
}
