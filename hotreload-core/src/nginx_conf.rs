//! nginx's command line and configuration, as far as hotreload reads them: the options
//! that decide which configuration a master reads (`-p`, `-c`, `-g`), the tokens and
//! main-level directives of a configuration text, and the sections of an `nginx -T`
//! dump. Used by the preflight (`daemon`) and by discovery (`pid`).

/// One `nginx -T` dump, split into its files: (file, text) for each
/// `# configuration file X:` section; empty when the text is no dump.
pub(crate) fn dump_sections(dump: &str) -> Vec<(String, String)> {
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in dump.lines() {
        if let Some(file) = line.strip_prefix("# configuration file ") {
            sections.push((file.trim_end_matches(':').to_string(), String::new()));
        } else if let Some((_, text)) = sections.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    sections
}

/// The first argument of the main-level directive `name` in a dump, and the file it is
/// in: main-level-only directives (`daemon`, `pid`) can be at a section's main level.
pub(crate) fn main_directive_in_dump(dump: &str, name: &str) -> Option<(String, String)> {
    dump_sections(dump).iter().find_map(|(file, text)| {
        main_level(text)
            .into_iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, args)| args.first().cloned())
            .map(|v| (v, file.clone()))
    })
}

/// The options of an nginx command line that decide which configuration it reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct NginxOptions {
    pub(crate) prefix: Option<String>,
    pub(crate) conf: Option<String>,
    pub(crate) globals: Option<String>,
}

impl NginxOptions {
    /// The options as arguments again (`-p P -c C -g G`).
    pub(crate) fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, value) in [
            ("-p", &self.prefix),
            ("-c", &self.conf),
            ("-g", &self.globals),
        ] {
            if let Some(value) = value {
                args.extend([flag.to_string(), value.clone()]);
            }
        }
        args
    }
}

/// Puts back the argument boundaries nginx's title lost (`master process ` + argv joined
/// with spaces): `-g`'s value runs to the `;` that ends its last directive, the value of
/// `-p`, `-c` and `-e` (a path) to the next word that starts an option. `words` are the
/// title's words after the master marker, `argv[0]` first; the result is the argv.
pub(crate) fn rejoin_title_args(words: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    // nginx takes no operands: every word before the first option is argv[0]'s.
    if let Some(first) = words.first() {
        let mut argv0 = first.clone();
        i = 1;
        while i < words.len() && !words[i].starts_with('-') {
            argv0.push(' ');
            argv0.push_str(&words[i]);
            i += 1;
        }
        argv.push(argv0);
    }
    while i < words.len() {
        let word = &words[i];
        argv.push(word.clone());
        i += 1;
        let flag = match word.strip_prefix('-') {
            Some(flags) => flags
                .char_indices()
                .find(|(_, c)| matches!(c, 'p' | 'c' | 'g' | 'e' | 's'))
                .map(|(pos, c)| (c, flags[pos + c.len_utf8()..].is_empty())),
            _ => None,
        };
        let Some((flag, separate)) = flag else {
            continue;
        };
        // The value: the next word when the flag stands alone, else the rest of this one.
        if separate {
            match words.get(i) {
                Some(v) => {
                    argv.push(v.clone());
                    i += 1;
                }
                None => continue,
            }
        }
        if flag == 's' {
            continue;
        }
        let ends = |v: &str, next: Option<&String>| match flag {
            'g' => v.trim_end().ends_with(';') && next.map_or(true, |n| n.starts_with('-')),
            _ => next.map_or(true, |n| n.starts_with('-')),
        };
        while i < words.len() && !ends(argv.last().map_or("", String::as_str), words.get(i)) {
            let last = argv.last_mut().expect("a value was pushed");
            last.push(' ');
            last.push_str(&words[i]);
            i += 1;
        }
    }
    argv
}

/// Why nginx's title (`master process ` + argv joined with spaces, the part after the
/// marker given as `rest`) cannot be turned back into the argv for sure, if it cannot:
/// a run of white space (single spaces are all the split can put back), a word that
/// looks like an option a master does not take (so it belongs to an argument with
/// spaces, and the title cannot say which), or an option given twice (one of them may
/// be a word of a value). A master takes `-p`, `-c`, `-e`, `-g` and `-q`; `-t`, `-T`,
/// `-s`, `-v`, `-V`, `-h` and `-?` never start one.
pub(crate) fn title_ambiguity(rest: &str) -> Option<String> {
    if rest.contains("  ") || rest.contains(['\t', '\n']) || rest.ends_with(' ') {
        return Some(
            "the title holds a run of white space: an argument with several spaces or a tab \
             cannot be put back from it"
                .to_string(),
        );
    }
    let mut seen = Vec::new();
    let mut words = rest.split(' ').skip(1).peekable();
    while let Some(word) = words.next() {
        let Some(flags) = word.strip_prefix('-') else {
            continue;
        };
        let flag = flags.trim_start_matches('q').chars().next();
        match flag {
            None => continue,
            Some(flag @ ('p' | 'c' | 'e' | 'g')) => {
                if seen.contains(&flag) {
                    return Some(format!(
                        "`-{flag}` appears twice in the title: one of them may be a word of an \
                         argument with spaces"
                    ));
                }
                seen.push(flag);
                if flags.trim_start_matches('q').len() == 1 {
                    // Its value follows: a word starting with `-` there is a value's too.
                    words.next();
                }
            }
            Some(_) => {
                return Some(format!(
                    "`{word}` is not an option an nginx master takes: it is a word of an \
                     argument with spaces (argv[0], or a value of -p, -c, -e or -g), and the \
                     title cannot say which"
                ))
            }
        }
    }
    None
}

/// Reads `-p`, `-c` and `-g` from a master's command line: the real argv when it has
/// one, else nginx's title, whose argument boundaries [`rejoin_title_args`] puts back.
pub(crate) fn nginx_options(cmdline: &[String]) -> NginxOptions {
    let title = cmdline
        .first()
        .filter(|t| cmdline.len() == 1 && t.contains("master process "));
    let argv: Vec<String> = match title {
        Some(t) => {
            let words: Vec<String> = t
                .split_once("master process ")
                .map_or("", |(_, rest)| rest)
                .split(' ')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            rejoin_title_args(&words)
        }
        None => cmdline.to_vec(),
    };
    let mut opts = NginxOptions::default();
    let mut i = 1;
    while i < argv.len() {
        let Some(flags) = argv[i].strip_prefix('-') else {
            i += 1;
            continue;
        };
        let Some((pos, flag)) = flags
            .char_indices()
            .find(|(_, c)| matches!(c, 'p' | 'c' | 'g' | 'e' | 's'))
        else {
            i += 1;
            continue;
        };
        let attached = &flags[pos + flag.len_utf8()..];
        let value = if attached.is_empty() {
            i += 1;
            argv.get(i).cloned().unwrap_or_default()
        } else {
            attached.to_string()
        };
        match flag {
            'p' => opts.prefix = Some(value),
            'c' => opts.conf = Some(value),
            'g' => opts.globals = Some(value),
            _ => {}
        }
        i += 1;
    }
    opts
}

/// nginx configuration tokens: words, quoted strings, `;`, `{`, `}`; `#` comments out
/// the rest of a line.
pub(crate) fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            out.push(std::mem::take(word));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' if word.is_empty() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' if word.is_empty() => {
                let mut quoted = String::new();
                while let Some(q) = chars.next() {
                    match q {
                        '\\' => quoted.extend(chars.next()),
                        q if q == c => break,
                        q => quoted.push(q),
                    }
                }
                out.push(quoted);
            }
            ';' | '{' | '}' => {
                flush(&mut word, &mut out);
                out.push(c.to_string());
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The main-level directives of one file's text: (name, arguments).
pub(crate) fn main_level(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut statement: Vec<String> = Vec::new();
    for token in tokens(text) {
        match token.as_str() {
            ";" => {
                if depth == 0 && !statement.is_empty() {
                    let name = statement.remove(0);
                    out.push((name, std::mem::take(&mut statement)));
                }
                statement.clear();
            }
            "{" => {
                depth += 1;
                statement.clear();
            }
            "}" => {
                depth = depth.saturating_sub(1);
                statement.clear();
            }
            _ => statement.push(token),
        }
    }
    out
}
