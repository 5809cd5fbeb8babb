//! The configuration file (`coreshard --config FILE`): Redis's format, one `name value...`
//! directive a line, `#` comments, values quoted as redis.conf quotes them. Each directive
//! is the command-line option of the same name (`maxmemory-policy allkeys-lru` is
//! `--maxmemory-policy allkeys-lru`), so the file accepts exactly what the command line
//! does and is checked by the same parsers; options given on the command line win.
//! CONFIG REWRITE writes the runtime values back ([`rewrite`]).

use std::ffi::OsString;
use std::path::Path;

use clap::{ArgAction, CommandFactory, Parser};

use crate::config::Args;

/// One directive of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// 1-based line number.
    pub line: usize,
    /// The line as written.
    pub text: String,
    /// Lower-case name.
    pub name: String,
    /// Its values, unquoted.
    pub values: Vec<String>,
}

/// A line the server cannot accept, reported as Redis does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// 1-based line number (0: the file itself).
    pub line: usize,
    /// The line as written.
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "\n*** FATAL CONFIG FILE ERROR (coreshard {}) ***",
            env!("CARGO_PKG_VERSION")
        )?;
        if self.line > 0 {
            writeln!(f, "Reading the configuration file, at line {}", self.line)?;
            writeln!(f, ">>> '{}'", self.text)?;
        }
        write!(f, "{}", self.reason)
    }
}

/// Split a line into words as Redis's `sdssplitargs` does: blanks separate words; `"..."`
/// takes `\n \r \t \b \a \\ \" \xHH` escapes; `'...'` takes `\'`; a closing quote must be
/// followed by a blank or the end.
pub fn split_args(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    let unbalanced = || "Unbalanced quotes in configuration line".to_string();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return Ok(out);
        }
        let mut word: Vec<u8> = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            if in_double {
                let Some(&c) = b.get(i) else {
                    return Err(unbalanced());
                };
                if c == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).ok();
                    if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        word.push(v);
                        i += 4;
                        continue;
                    }
                }
                if c == b'\\' && i + 1 < b.len() {
                    word.push(match b[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                    i += 2;
                } else if c == b'"' {
                    if b.get(i + 1).is_some_and(|n| !n.is_ascii_whitespace()) {
                        return Err(unbalanced());
                    }
                    i += 1;
                    break;
                } else {
                    word.push(c);
                    i += 1;
                }
            } else if in_single {
                let Some(&c) = b.get(i) else {
                    return Err(unbalanced());
                };
                if c == b'\\' && b.get(i + 1) == Some(&b'\'') {
                    word.push(b'\'');
                    i += 2;
                } else if c == b'\'' {
                    if b.get(i + 1).is_some_and(|n| !n.is_ascii_whitespace()) {
                        return Err(unbalanced());
                    }
                    i += 1;
                    break;
                } else {
                    word.push(c);
                    i += 1;
                }
            } else {
                match b.get(i) {
                    None => break,
                    Some(c) if c.is_ascii_whitespace() => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(&c) => word.push(c),
                }
                i += 1;
            }
        }
        out.push(String::from_utf8_lossy(&word).into_owned());
    }
}

/// Quote a value for the file when it needs it (empty, blanks, quotes, control bytes).
pub fn quote(v: &str) -> String {
    let plain = !v.is_empty()
        && v.bytes()
            .all(|c| c.is_ascii_graphic() && c != b'"' && c != b'\'' && c != b'\\');
    if plain {
        return v.to_string();
    }
    let mut out = String::from("\"");
    for c in v.bytes() {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c.is_ascii_graphic() || c == b' ' => out.push(c as char),
            c => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push('"');
    out
}

/// The file's directives (comments and blank lines skipped).
pub fn parse(text: &str) -> Result<Vec<Directive>, FileError> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let err = |reason: String| FileError {
            line: n + 1,
            text: trimmed.to_string(),
            reason,
        };
        let words = split_args(trimmed).map_err(err)?;
        let Some((name, values)) = words.split_first() else {
            continue;
        };
        out.push(Directive {
            line: n + 1,
            text: trimmed.to_string(),
            name: name.to_ascii_lowercase(),
            values: values.to_vec(),
        });
    }
    Ok(out)
}

/// Redis's names that differ from the option's.
fn option_name(directive: &str) -> &str {
    match directive {
        "loglevel" => "log-level",
        other => other,
    }
}

/// How an option takes its value.
enum Kind {
    /// `--name VALUE` once (the last one counts).
    Value,
    /// `--name VALUE` any number of times, collected.
    Many,
    /// `--name` alone: `yes` sets it, `no` leaves it off.
    Flag,
}

/// The option a directive names, by long name or alias, and how it takes values.
fn find_option(name: &str) -> Option<(String, Kind)> {
    let cmd = Args::command();
    let arg = cmd.get_arguments().find(|a| {
        a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|al| al.contains(&name))
    })?;
    let long = arg.get_long()?.to_string();
    if matches!(
        long.as_str(),
        "config" | "check-config" | "help" | "version"
    ) {
        return None;
    }
    let kind = match arg.get_action() {
        ArgAction::SetTrue => Kind::Flag,
        ArgAction::Append => Kind::Many,
        _ => Kind::Value,
    };
    Some((long, kind))
}

/// The command-line arguments one directive stands for.
fn directive_args(d: &Directive) -> Result<(String, Vec<String>), FileError> {
    let err = |reason: &str| FileError {
        line: d.line,
        text: d.text.clone(),
        reason: reason.to_string(),
    };
    let Some((long, kind)) = find_option(option_name(&d.name)) else {
        return Err(err("Bad directive or wrong number of arguments"));
    };
    if d.values.is_empty() {
        return Err(err("Bad directive or wrong number of arguments"));
    }
    let value = match long.as_str() {
        // `bind 127.0.0.1 -::1`: the first address ("-" marks an optional one in Redis).
        // `*` is every IPv4 address, `::*` every IPv6 one.
        "bind" => match d.values[0].trim_start_matches('-') {
            "*" => "0.0.0.0".to_string(),
            "::*" => "::".to_string(),
            other => other.to_string(),
        },
        _ => d.values.join(" "),
    };
    let args = match kind {
        Kind::Flag => match value.to_ascii_lowercase().as_str() {
            "yes" => vec![format!("--{long}")],
            "no" => Vec::new(),
            _ => return Err(err("argument must be 'yes' or 'no'")),
        },
        Kind::Value | Kind::Many => vec![format!("--{long}={value}")],
    };
    // Checked alone, so that an error names its line.
    let mut alone = vec!["coreshard".to_string()];
    alone.extend(args.iter().cloned());
    if let Err(e) = Args::try_parse_from(&alone) {
        let text = e.to_string();
        let first = text
            .lines()
            .next()
            .unwrap_or("invalid value")
            .trim_start_matches("error: ");
        return Err(err(first));
    }
    Ok((long, args))
}

/// The command-line arguments the file stands for, to be placed before the real ones
/// (which therefore win): `cli` are the real ones, so that options collected from
/// several occurrences (`--cores`) given there replace the file's instead of adding to
/// them (output limits, per class, add up: the command line's come later and win per
/// class). `save` lines are joined, as Redis 7 does.
pub fn file_args(directives: &[Directive], cli: &[OsString]) -> Result<Vec<String>, FileError> {
    let mut out = Vec::new();
    let mut save: Option<(Vec<String>, Directive)> = None;
    for d in directives {
        if d.name == "save" {
            let entry = save.get_or_insert_with(|| (Vec::new(), d.clone()));
            entry
                .0
                .extend(d.values.iter().filter(|v| !v.is_empty()).cloned());
            entry.1 = d.clone();
            continue;
        }
        let (long, args) = directive_args(d)?;
        let on_cli = cli.iter().any(|a| {
            let a = a.to_string_lossy();
            a == format!("--{long}") || a.starts_with(&format!("--{long}="))
        });
        // Output limits are per class: the file's classes stay unless the command line
        // sets them again (later groups win), as in Redis.
        let many = matches!(find_option(&long), Some((_, Kind::Many)))
            && long != "client-output-buffer-limit";
        if !(many && on_cli) {
            out.extend(args);
        }
    }
    if let Some((words, last)) = save {
        let d = Directive {
            values: vec![words.join(" ")],
            ..last
        };
        let (_, args) = directive_args(&d)?;
        out.extend(args);
    }
    Ok(out)
}

/// Read `path` and check every directive (`--check-config`, and before starting).
pub fn load(path: &Path, cli: &[OsString]) -> Result<Vec<String>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        line: 0,
        text: String::new(),
        reason: format!(
            "Fatal error, can't open config file '{}': {e}",
            path.display()
        ),
    })?;
    file_args(&parse(&text)?, cli)
}

/// CONFIG REWRITE: `values` (name, value) replace the values of the directives of the
/// same name in the file (the first one; later duplicates are dropped); those the file
/// lacks are appended when they differ from `defaults`. Comments and other lines stay.
/// Written to a temporary file and renamed over the original.
pub fn rewrite(
    path: &Path,
    values: &[(&str, String)],
    defaults: &[(&str, &str)],
) -> std::io::Result<()> {
    use std::io::Write;
    // One rewrite at a time in the process (CONFIG REWRITE may come from every shard at
    // once): each reads the file, then replaces it whole.
    static REWRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let _one = REWRITING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (text, permissions) = match std::fs::read_to_string(path) {
        Ok(t) => (t, std::fs::metadata(path).ok().map(|m| m.permissions())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), None),
        Err(e) => return Err(e),
    };
    let canonical = |name: &str| -> String {
        match name {
            "busy-reply-threshold" => "lua-time-limit".to_string(),
            other => match other.split_once("-ziplist-") {
                // hash-max-ziplist-entries and the like: Redis's older names.
                Some((kind, rest)) => format!("{kind}-listpack-{rest}"),
                None => other.to_string(),
            },
        }
    };
    let line_for = |name: &str, value: &str| -> String {
        if matches!(name, "save" | "client-output-buffer-limit") && !value.is_empty() {
            format!("{name} {value}")
        } else {
            format!("{name} {}", quote(value))
        }
    };
    let mut written: Vec<String> = Vec::new();
    let mut out = String::new();
    for raw in text.lines() {
        let name = split_args(raw.trim())
            .ok()
            .and_then(|w| w.into_iter().next())
            .filter(|_| !raw.trim_start().starts_with('#'))
            .map(|n| canonical(&n.to_ascii_lowercase()));
        match name.and_then(|n| values.iter().find(|(v, _)| *v == n)) {
            Some((n, value)) => {
                if !written.iter().any(|w| w == n) {
                    written.push(n.to_string());
                    out.push_str(&line_for(n, value));
                    out.push('\n');
                }
            }
            None => {
                out.push_str(raw);
                out.push('\n');
            }
        }
    }
    let mut header = text.contains("# Generated by CONFIG REWRITE");
    for (name, value) in values {
        if written.iter().any(|w| w == name) {
            continue;
        }
        let default = defaults.iter().find(|(d, _)| d == name).map(|(_, v)| *v);
        if default == Some(value.as_str()) {
            continue;
        }
        if !header {
            out.push_str("# Generated by CONFIG REWRITE\n");
            header = true;
        }
        out.push_str(&line_for(name, value));
        out.push('\n');
    }
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("rewrite-tmp.{}.{seq}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        // The file keeps its permissions (it may hold requirepass).
        if let Some(p) = &permissions {
            f.set_permissions(p.clone())?;
        }
        f.write_all(out.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_as_redis_does() {
        assert_eq!(split_args("save 3600 1").unwrap(), ["save", "3600", "1"]);
        assert_eq!(
            split_args(r#"requirepass "a b\x41\"c""#).unwrap(),
            ["requirepass", "a bA\"c"]
        );
        assert_eq!(split_args("save ''").unwrap(), ["save", ""]);
        assert_eq!(split_args(r"x 'it\'s'").unwrap(), ["x", "it's"]);
        assert!(split_args("x \"open").is_err());
        assert!(split_args("x \"a\"b").is_err());
        for v in ["", "a b", "q\"x", "plain", "tab\there"] {
            let line = format!("n {}", quote(v));
            assert_eq!(split_args(&line).unwrap(), ["n", v], "{line}");
        }
    }

    #[test]
    fn directives_become_options_and_bad_lines_name_themselves() {
        let text = "# comment\n\nmaxmemory 10mb\nmaxmemory-policy allkeys-lru\nno-pin yes\nsave 100 1\nsave 60 5\nloglevel warn\nbusy-reply-threshold 200\n";
        let args = file_args(&parse(text).unwrap(), &[]).unwrap();
        assert_eq!(
            args,
            [
                "--maxmemory=10mb",
                "--maxmemory-policy=allkeys-lru",
                "--no-pin",
                "--log-level=warn",
                "--lua-time-limit=200",
                "--save=100 1 60 5",
            ]
        );
        let bad = parse("port 1\nmaxmemory-policy lru\n").unwrap();
        let e = file_args(&bad, &[]).unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.text, "maxmemory-policy lru");
        let e = file_args(&parse("nosuch 1").unwrap(), &[]).unwrap_err();
        assert_eq!(e.reason, "Bad directive or wrong number of arguments");
        let e = file_args(&parse("timeout").unwrap(), &[]).unwrap_err();
        assert_eq!(e.line, 1);
        let e = file_args(&parse("config x").unwrap(), &[]).unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn options_collected_from_several_occurrences_are_replaced_by_the_command_line() {
        let d = parse("cores 0,1\nclient-output-buffer-limit normal 0 0 0\n").unwrap();
        let cli: Vec<OsString> = vec!["--cores".into(), "2".into()];
        assert_eq!(
            file_args(&d, &cli).unwrap(),
            ["--client-output-buffer-limit=normal 0 0 0"]
        );
        // Output limits are per class: the file's stay beside the command line's.
        let cli: Vec<OsString> = vec!["--client-output-buffer-limit=pubsub 7 8 9".into()];
        assert_eq!(
            file_args(&d, &cli).unwrap(),
            ["--cores=0,1", "--client-output-buffer-limit=normal 0 0 0"]
        );
    }

    #[test]
    fn rewrite_replaces_values_keeps_comments_and_appends_changes() {
        let dir = std::env::temp_dir().join(format!("coreshard-rewrite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.conf");
        std::fs::write(
            &path,
            "# keep me\ntimeout 5\nport 7000\ntimeout 6\nhash-max-ziplist-entries 64\n",
        )
        .unwrap();
        let values = [
            ("timeout", "30".to_string()),
            ("maxmemory", "0".to_string()),
            ("requirepass", "p w".to_string()),
            ("hash-max-listpack-entries", "70".to_string()),
        ];
        let defaults = [("maxmemory", "0"), ("requirepass", "")];
        rewrite(&path, &values, &defaults).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        // The old name's line is replaced by the current name's, not duplicated.
        assert_eq!(
            text,
            "# keep me\ntimeout 30\nport 7000\nhash-max-listpack-entries 70\n# Generated by CONFIG REWRITE\nrequirepass \"p w\"\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
