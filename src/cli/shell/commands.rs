//! The shell's commands: one table that the parser, the usage lines, `help`, completion and
//! "did you mean" all read, so they cannot disagree.

use std::fmt;

use super::words::quote;

/// One command as the user sees it.
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    /// The arguments, as in the usage line: `NAME`, `[OUT]` (optional), `[--force]` (a flag).
    pub args: &'static str,
    pub about: &'static str,
}

impl Spec {
    pub fn usage(&self) -> String {
        if self.args.is_empty() {
            self.name.to_string()
        } else {
            format!("{} {}", self.name, self.args)
        }
    }

    fn positionals(&self) -> impl Iterator<Item = &'static str> {
        self.args
            .split_whitespace()
            .filter(|a| !a.starts_with("[-"))
    }

    /// The flags the command takes (`--force`).
    pub fn flags(&self) -> impl Iterator<Item = &'static str> {
        self.args
            .split_whitespace()
            .filter_map(|a| a.strip_prefix("[-"))
            .map(|a| &a[..a.len() - 1])
            .map(|a| a.trim_start_matches('-'))
    }

    /// Which argument positions are local paths, for completion.
    pub fn local_path_at(&self, index: usize) -> bool {
        matches!(
            self.positionals().nth(index),
            Some("FILE" | "[OUT]" | "[FILE]")
        )
    }

    /// The argument at `index` names a command (`help COMMAND`).
    pub fn command_at(&self, index: usize) -> bool {
        matches!(self.positionals().nth(index), Some("[COMMAND]"))
    }
}

/// Every command, in the order `help` lists them.
pub const COMMANDS: &[Spec] = &[
    Spec {
        name: "join",
        args: "ADDR",
        about: "join the ring of ADDR (multiaddr, IP:PORT or host:PORT)",
    },
    Spec {
        name: "leave",
        args: "",
        about: "leave the ring (informed) and stop this node",
    },
    Spec {
        name: "lookup",
        args: "NAME",
        about: "find the node responsible for NAME",
    },
    Spec {
        name: "status",
        args: "",
        about: "predecessor, successors and fingers of this node",
    },
    Spec {
        name: "successors",
        args: "",
        about: "this node's successor list",
    },
    Spec {
        name: "fingers",
        args: "",
        about: "this node's finger table",
    },
    Spec {
        name: "put",
        args: "FILE [NAME]",
        about: "put a local file on the ring (NAME: the file's name unless given)",
    },
    Spec {
        name: "get",
        args: "NAME [OUT] [--force]",
        about: "get a file from the ring into OUT, a file or a folder (default: the\n\
                name's last part, here); --force replaces an existing file",
    },
    Spec {
        name: "files",
        args: "",
        about: "the files this node holds",
    },
    Spec {
        name: "rm",
        args: "NAME",
        about: "remove every copy of a file you put",
    },
    Spec {
        name: "help",
        args: "[COMMAND]",
        about: "the commands, or one command's usage",
    },
    Spec {
        name: "quit",
        args: "",
        about: "leave the ring and exit (also: exit, Ctrl-D)",
    },
];

/// Names that run a command of the table under another name.
const ALIASES: &[(&str, &str)] = &[("exit", "quit")];

/// Words people try from other tools, and the command that does it here.
const HABITS: &[(&str, &str)] = &[
    ("ls", "files"),
    ("dir", "files"),
    ("list", "files"),
    ("del", "rm"),
    ("delete", "rm"),
    ("remove", "rm"),
    ("find", "lookup"),
    ("locate", "lookup"),
    ("upload", "put"),
    ("download", "get"),
    ("fetch", "get"),
    ("info", "status"),
    ("connect", "join"),
    ("q", "quit"),
    ("bye", "quit"),
    ("?", "help"),
];

pub fn spec(name: &str) -> Option<&'static Spec> {
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, real)| real);
    COMMANDS.iter().find(|s| s.name == name)
}

/// Every name the shell answers to, for completion.
pub fn names() -> impl Iterator<Item = &'static str> {
    COMMANDS
        .iter()
        .map(|s| s.name)
        .chain(ALIASES.iter().map(|(a, _)| *a))
}

/// A command ready to run.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Join(String),
    Leave,
    Lookup(String),
    Status,
    Successors,
    Fingers,
    Put {
        file: String,
        name: Option<String>,
    },
    Get {
        name: String,
        out: Option<String>,
        force: bool,
    },
    Files,
    Rm(String),
    Help(Option<String>),
    Quit,
}

/// What was wrong with a line; shown as one error line, then the usage line when it helps.
#[derive(Debug, PartialEq, Eq)]
pub enum Mistake {
    Unknown {
        word: String,
        suggestion: Option<&'static str>,
    },
    Missing {
        spec: &'static Spec,
        what: &'static str,
    },
    TooMany {
        spec: &'static Spec,
        words: Vec<String>,
        extra: usize,
    },
    Flag {
        spec: &'static Spec,
        flag: String,
    },
}

impl PartialEq for Spec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Spec {}

impl Mistake {
    /// The usage line to show under the error, if the command is known.
    pub fn usage(&self) -> Option<String> {
        match self {
            Mistake::Unknown { .. } => None,
            Mistake::Missing { spec, .. }
            | Mistake::TooMany { spec, .. }
            | Mistake::Flag { spec, .. } => Some(spec.usage()),
        }
    }
}

impl fmt::Display for Mistake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mistake::Unknown {
                word,
                suggestion: Some(s),
            } => write!(
                f,
                "unknown command {}; did you mean '{s}'?",
                quote_name(word)
            ),
            Mistake::Unknown { word, .. } => write!(
                f,
                "unknown command {}; type 'help' for the commands",
                quote_name(word)
            ),
            Mistake::Missing { spec, what } => {
                let article = if what.starts_with(['A', 'E', 'I', 'O', 'U']) {
                    "an"
                } else {
                    "a"
                };
                write!(f, "{} needs {article} {what}", spec.name)
            }
            Mistake::TooMany { spec, words, extra } => {
                let noun = if *extra == 1 { "argument" } else { "arguments" };
                write!(f, "{} takes ", spec.name)?;
                match spec.positionals().count() {
                    0 => write!(f, "no arguments")?,
                    1 => write!(f, "one argument")?,
                    n => write!(f, "at most {n} arguments")?,
                }
                write!(f, "; {extra} {noun} too many")?;
                // The likely cause: a name or path with spaces, unquoted.
                match spec.positionals().collect::<Vec<_>>().as_slice() {
                    ["NAME"] => write!(
                        f,
                        " (a name with spaces goes in quotes: {} {})",
                        spec.name,
                        quote(&words.join(" "))
                    ),
                    [] => Ok(()),
                    _ => write!(f, " (quote a name or path with spaces: \"my file.pdf\")"),
                }
            }
            Mistake::Flag { spec, flag } => {
                let flags: Vec<String> = spec.flags().map(|f| format!("--{f}")).collect();
                write!(f, "{} has no option {}", spec.name, quote_name(flag))?;
                if !flags.is_empty() {
                    write!(f, " (it takes {})", flags.join(", "))?;
                }
                write!(f, "; put -- before a name that starts with -")
            }
        }
    }
}

fn quote_name(word: &str) -> String {
    format!("'{word}'")
}

/// The command a line's words ask for.
pub fn parse(words: &[String]) -> Result<Option<Command>, Mistake> {
    let Some((first, rest)) = words.split_first() else {
        return Ok(None);
    };
    let spec = spec(first).ok_or_else(|| Mistake::Unknown {
        word: first.clone(),
        suggestion: suggest(first),
    })?;
    // Flags only for commands that take some, so a name may start with '-' elsewhere.
    let mut args = Vec::new();
    let mut force = false;
    let mut flags_over = spec.flags().next().is_none();
    for word in rest {
        if flags_over || !word.starts_with('-') || word == "-" {
            args.push(word.clone());
        } else if word == "--" {
            flags_over = true;
        } else if matches!(word.as_str(), "--force" | "-f") && spec.flags().any(|f| f == "force") {
            force = true;
        } else {
            return Err(Mistake::Flag {
                spec,
                flag: word.clone(),
            });
        }
    }
    let positionals: Vec<&str> = spec.positionals().collect();
    let required = positionals.iter().filter(|p| !p.starts_with('[')).count();
    if args.len() < required {
        return Err(Mistake::Missing {
            spec,
            what: positionals[args.len()],
        });
    }
    if args.len() > positionals.len() {
        return Err(Mistake::TooMany {
            spec,
            extra: args.len() - positionals.len(),
            words: args,
        });
    }
    let given = args.len();
    let mut args = args.into_iter();
    // Present whenever the command requires it: counted above.
    let one = args.next().unwrap_or_default();
    let two = args.next();
    let command = match spec.name {
        "join" => Command::Join(one),
        "leave" => Command::Leave,
        "lookup" => Command::Lookup(one),
        "status" => Command::Status,
        "successors" => Command::Successors,
        "fingers" => Command::Fingers,
        "put" => Command::Put {
            file: one,
            name: two,
        },
        "get" => Command::Get {
            name: one,
            out: two,
            force,
        },
        "files" => Command::Files,
        "rm" => Command::Rm(one),
        "help" => Command::Help((given > 0).then_some(one)),
        _ => Command::Quit,
    };
    Ok(Some(command))
}

/// The command a mistyped word most likely meant: a habit from another tool, a unique
/// prefix, or a name one or two edits away.
pub fn suggest(word: &str) -> Option<&'static str> {
    let word = word.to_lowercase();
    if let Some((_, real)) = HABITS.iter().find(|(habit, _)| *habit == word) {
        return Some(real);
    }
    let mut prefixed = names().filter(|n| word.len() >= 2 && n.starts_with(&word));
    if let (Some(only), None) = (prefixed.next(), prefixed.next()) {
        return Some(only);
    }
    let allowed = if word.chars().count() <= 4 { 1 } else { 2 };
    names()
        .map(|n| (strsim::damerau_levenshtein(&word, n), n))
        .filter(|&(d, _)| d <= allowed)
        .min_by_key(|&(d, _)| d)
        .map(|(_, n)| n)
}

/// All commands, for `help`.
pub fn help() -> String {
    let width = COMMANDS.iter().map(|s| s.usage().len()).max().unwrap_or(0);
    let mut text = String::from("commands:\n");
    for spec in COMMANDS {
        let about = spec.about.replace('\n', &format!("\n  {:width$}  ", ""));
        text.push_str(&format!("  {:width$}  {about}\n", spec.usage()));
    }
    text.push_str(
        "Words split as in a POSIX shell: quote \"my file.pdf\" or 'my file.pdf', or escape \
         my\\ file.pdf;\n~ is your home folder. Tab completes commands and local paths. Ctrl-C \
         cancels a running command.",
    );
    text
}

/// One command's usage and what it does, for `help COMMAND`.
pub fn help_for(name: &str) -> Result<String, Mistake> {
    let spec = spec(name).ok_or_else(|| Mistake::Unknown {
        word: name.to_string(),
        suggestion: suggest(name),
    })?;
    Ok(format!(
        "usage: {}\n  {}",
        spec.usage(),
        spec.about.replace('\n', "\n  ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Option<Command>, Mistake> {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&words)
    }

    fn mistake(line: &str) -> String {
        let m = parse_line(line).expect_err("a mistake");
        match m.usage() {
            Some(u) => format!("{m} | usage: {u}"),
            None => m.to_string(),
        }
    }

    #[test]
    fn commands_and_arguments() {
        assert_eq!(parse_line(""), Ok(None));
        assert_eq!(
            parse_line("lookup x"),
            Ok(Some(Command::Lookup("x".into())))
        );
        assert_eq!(
            parse_line("put f"),
            Ok(Some(Command::Put {
                file: "f".into(),
                name: None
            }))
        );
        assert_eq!(
            parse_line("put f n"),
            Ok(Some(Command::Put {
                file: "f".into(),
                name: Some("n".into())
            }))
        );
        assert_eq!(
            parse_line("get n --force"),
            Ok(Some(Command::Get {
                name: "n".into(),
                out: None,
                force: true
            }))
        );
        assert_eq!(
            parse_line("get -f -- -n o"),
            Ok(Some(Command::Get {
                name: "-n".into(),
                out: Some("o".into()),
                force: true
            }))
        );
        assert_eq!(
            parse_line("lookup -x"),
            Ok(Some(Command::Lookup("-x".into())))
        );
        assert_eq!(parse_line("exit"), Ok(Some(Command::Quit)));
        assert_eq!(
            parse_line("help put"),
            Ok(Some(Command::Help(Some("put".into()))))
        );
        assert_eq!(parse_line("help"), Ok(Some(Command::Help(None))));
    }

    #[test]
    fn mistakes_say_what_is_wrong_and_how_to_write_it() {
        assert_eq!(
            mistake("lookup"),
            "lookup needs a NAME | usage: lookup NAME"
        );
        assert_eq!(mistake("put"), "put needs a FILE | usage: put FILE [NAME]");
        assert_eq!(mistake("join"), "join needs an ADDR | usage: join ADDR");
        assert!(mistake("lookup a b c").contains("2 arguments too many"));
        assert!(mistake("lookup a b c").contains("lookup 'a b c'"));
        assert!(mistake("status x").starts_with("status takes no arguments"));
        assert!(mistake("get a b c").contains("usage: get NAME [OUT] [--force]"));
        assert!(mistake("get a --frce").contains("get has no option '--frce'"));
        assert_eq!(
            mistake("lokup x"),
            "unknown command 'lokup'; did you mean 'lookup'?"
        );
        assert!(mistake("frobnicate").contains("type 'help'"));
    }

    #[test]
    fn did_you_mean() {
        assert_eq!(suggest("lokup"), Some("lookup"));
        assert_eq!(suggest("stauts"), Some("status"));
        assert_eq!(suggest("succ"), Some("successors"));
        assert_eq!(suggest("LOOKUP"), Some("lookup"));
        assert_eq!(suggest("ls"), Some("files"));
        assert_eq!(suggest("exti"), Some("exit"));
        assert_eq!(suggest("xyzzy"), None);
    }

    #[test]
    fn flags_and_paths_from_the_table() {
        let get = spec("get").expect("get");
        assert_eq!(get.flags().collect::<Vec<_>>(), ["force"]);
        assert!(get.local_path_at(1) && !get.local_path_at(0));
        assert!(spec("put").expect("put").local_path_at(0));
        assert!(spec("help").expect("help").command_at(0));
    }
}
