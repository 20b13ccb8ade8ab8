//! Search: what the registries offer, from their catalog files alone.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use semver::{Version, VersionReq};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::atomic;
use crate::error::Result;
use crate::freshness::Statement;
use crate::index::{CATALOG_FILE, INDEX_SCHEMA, first_schema};
use crate::report::Reporter;
use crate::resolve::HostInfo;
use crate::source::Registry;

/// What to look for. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Words that must each appear in the name, description or tasks (case-insensitive).
    pub text: Option<String>,
    /// A content kind the plugin's tools produce.
    pub category: Option<String>,
    /// A task one of its tools performs.
    pub task: Option<String>,
}

/// One plugin found, described by its newest version that works with this launcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// The plugin's name.
    pub name: String,
    /// The registry it is in (the first that has it, in configuration order).
    pub registry: String,
    /// Its newest version that works with this launcher.
    pub version: Version,
    /// Its description.
    pub description: String,
    /// The content kinds its tools produce.
    pub categories: Vec<String>,
    /// The tasks its tools perform.
    pub tasks: Vec<String>,
}

/// Searches `registries`, best matches first: the exact name, then names containing the text,
/// then the rest, each alphabetically. Plugins with no version for this host are left out, and
/// so are catalog lines whose name is not a valid plugin name (one warning per registry says
/// how many).
pub fn search(
    registries: &[Registry],
    query: &SearchQuery,
    host: &HostInfo,
    reporter: &dyn Reporter,
) -> Result<Vec<SearchHit>> {
    let words: Vec<String> = query
        .text
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    let mut hits: Vec<(u8, SearchHit)> = Vec::new();
    // Names found in earlier registries: the first registry that has a plugin answers for it.
    // Each listing holds a name once, so the first registry needs no check.
    let mut earlier: HashSet<String> = HashSet::new();
    for (i, registry) in registries.iter().enumerate() {
        let listing = listing(registry, host);
        for warning in registry.take_warnings() {
            reporter.warning(&warning);
        }
        let listing = listing?;
        let invalid = listing
            .split_once('\n')
            .and_then(|(head, _)| head.rsplit_once("\tinvalid "))
            .and_then(|(_, n)| n.parse::<usize>().ok())
            .unwrap_or(0);
        if invalid > 0 {
            reporter.warning(&format!(
                "registry `{}`: skipped {invalid} catalog line{} whose name is not a valid \
                 plugin name",
                registry.name(),
                if invalid == 1 { "" } else { "s" }
            ));
        }
        let first_new = hits.len();
        for row in listing.lines().skip(1) {
            // A damaged row is as good as a missing one; the next catalog change rebuilds.
            let Some(row) = Row::parse(row) else { continue };
            if i > 0 && earlier.contains(row.name.as_ref()) {
                continue;
            }
            let Some(rank) = rank(&row, &words, query) else {
                continue;
            };
            let Ok(version) = Version::parse(row.version) else {
                continue;
            };
            let hit = SearchHit {
                name: row.name.into_owned(),
                registry: registry.name().to_string(),
                version,
                description: row.desc.into_owned(),
                categories: row.categories.iter().map(|c| c.to_string()).collect(),
                tasks: row.tasks.iter().map(|t| t.to_string()).collect(),
            };
            hits.push((rank, hit));
        }
        if i + 1 < registries.len() {
            earlier.extend(hits[first_new..].iter().map(|(_, h)| h.name.clone()));
        }
    }
    // Listings are in name order, so this is mostly merging runs.
    hits.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    Ok(hits.into_iter().map(|(_, hit)| hit).collect())
}

/// The name of the file, in a registry's cache directory, holding its search listing.
const LISTING_FILE: &str = "search-listing.tsv";

/// The first line of a listing starts with this; a change of the row format changes it.
const LISTING_FORMAT: &str = "launcher search listing 3";

/// Returns `registry`'s search listing for `host`: a header line (see [`Header`]), then one
/// row per plugin with the newest version a bare install would pick (see [`Row`]).
///
/// Parsing the catalog's JSON (and hashing it against the freshness statement) is nearly all
/// the time a search takes (10,000 plugins: ~50 ms), and the answer only changes with the
/// catalog or the launcher, so the listing is kept in the registry's cache directory and made
/// again when either changes. A listing is only ever made from a catalog that matched the
/// registry's verified statement, so while the catalog file is the same one and the statement
/// still names the same digest for it, the listing stands for a verified catalog without
/// hashing it again. The statement itself is verified on every search (signature, expiry, no
/// rollback), except for a local registry whose statement files are the very ones verified
/// when the listing was checked: then only its expiry and the newest statement seen since are
/// checked again, from the header.
fn listing(registry: &Registry, host: &HostInfo) -> Result<String> {
    let (stamp, catalog) = registry.catalog_stamp()?;
    let base = format!(
        "{LISTING_FORMAT}\tschema {INDEX_SCHEMA}\tabi {}\thost {}\ttarget {}\tcatalog {stamp}",
        host.abi, host.version, host.target
    );
    let path = registry.cache_dir().join(LISTING_FILE);
    let cached = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| Header::parse(&text, &base).map(|h| (h, text)));
    let files = registry.statement_files_stamp();
    if let (Some((header, text)), Some(files)) = (&cached, &files)
        && header.files == *files
        && header
            .issued
            .is_some_and(|issued| registry.still_fresh(issued, header.expires))
    {
        return Ok(text.clone());
    }
    let statement = registry.statement()?;
    let now = Header::of(statement.as_deref(), files, 0);
    if let Some((header, text)) = cached
        && header.digest == now.digest
    {
        if header.files != now.files {
            // Re-signed without a change to the catalog: the rows stand, the header is renewed
            // so the next search takes the short way again.
            let rows = text.split_once('\n').map_or("", |(_, rows)| rows);
            let renewed = format!("{}\n{rows}", now.with_invalid(header.invalid).line(&base));
            let _ = atomic::write_file(&path, renewed.as_bytes());
            return Ok(renewed);
        }
        return Ok(text);
    }
    let catalog = match catalog {
        Some(text) => text,
        None => registry.catalog_text()?,
    };
    // Asked again: reading the catalog may have fetched a newer statement, the one it matched.
    let statement = registry.statement()?;
    let files = registry.statement_files_stamp();
    let (newest, invalid) = newest_installable(&catalog, host);
    let mut newest: Vec<_> = newest.into_iter().collect();
    newest.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut text = String::with_capacity(catalog.len() / 4);
    text.push_str(&Header::of(statement.as_deref(), files, invalid).line(&base));
    text.push('\n');
    for (_, line) in &newest {
        Row::write(line, &mut text);
    }
    // A cache that cannot be written (a read-only cache directory) only costs the next search
    // the parse again.
    let _ = std::fs::create_dir_all(registry.cache_dir())
        .map_err(|_| ())
        .and_then(|()| atomic::write_file(&path, text.as_bytes()).map_err(|_| ()));
    Ok(text)
}

/// What a listing's first line records beyond its key (format, host and catalog identity):
/// the statement it was checked against and how many catalog lines had invalid names.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    /// The identity of a local registry's statement files, or `none`.
    files: String,
    /// The statement's issue time; `None` when the registry has no statement.
    issued: Option<u64>,
    /// The statement's expiry; `None` for never.
    expires: Option<u64>,
    /// The catalog's digest in the statement, or `none`.
    digest: String,
    /// Catalog lines skipped for an invalid name.
    invalid: usize,
}

impl Header {
    fn of(statement: Option<&Statement>, files: Option<String>, invalid: usize) -> Header {
        Header {
            files: files.unwrap_or_else(|| "none".to_string()),
            issued: statement.map(|s| s.issued),
            expires: statement.and_then(|s| s.expires),
            digest: statement
                .and_then(|s| s.digest(CATALOG_FILE))
                .unwrap_or("none")
                .to_string(),
            invalid,
        }
    }

    fn with_invalid(self, invalid: usize) -> Header {
        Header { invalid, ..self }
    }

    fn line(&self, base: &str) -> String {
        let time = |t: Option<u64>| t.map_or_else(|| "none".to_string(), |t| t.to_string());
        format!(
            "{base}\tstatement {}\tissued {}\texpires {}\tsha256 {}\tinvalid {}",
            self.files,
            time(self.issued),
            time(self.expires),
            self.digest,
            self.invalid
        )
    }

    /// Reads the header of `listing` if it was made for `base`.
    fn parse(listing: &str, base: &str) -> Option<Header> {
        let (head, _) = listing.split_once('\n')?;
        let mut fields = head.strip_prefix(base)?.strip_prefix('\t')?.split('\t');
        let mut field = |name: &str| fields.next()?.strip_prefix(name)?.strip_prefix(' ');
        let time = |t: &str| -> Option<Option<u64>> {
            if t == "none" {
                Some(None)
            } else {
                t.parse().ok().map(Some)
            }
        };
        let header = Header {
            files: field("statement")?.to_string(),
            issued: time(field("issued")?)?,
            expires: time(field("expires")?)?,
            digest: field("sha256")?.to_string(),
            invalid: field("invalid")?.parse().ok()?,
        };
        fields.next().is_none().then_some(header)
    }
}

/// One plugin in a search listing: what search shows and matches, as tab-separated fields
/// (name, version, description, categories, tasks; lists separated by U+001F), each escaped
/// with [`escape`] so no field holds a tab, newline or separator of its own.
#[derive(Debug, PartialEq, Eq)]
struct Row<'a> {
    name: Cow<'a, str>,
    version: &'a str,
    desc: Cow<'a, str>,
    categories: Vec<Cow<'a, str>>,
    tasks: Vec<Cow<'a, str>>,
}

/// Separates the items of a list field.
const ITEM: char = '\u{1f}';

impl<'a> Row<'a> {
    fn write(line: &CatalogLine<'_>, out: &mut String) {
        escape(&line.name, out);
        out.push('\t');
        out.push_str(&line.vers.to_string());
        out.push('\t');
        escape(&line.desc, out);
        for list in [&line.categories, &line.tasks] {
            out.push('\t');
            for (i, item) in list.iter().enumerate() {
                if i > 0 {
                    out.push(ITEM);
                }
                escape(item, out);
            }
        }
        out.push('\n');
    }

    fn parse(row: &'a str) -> Option<Row<'a>> {
        let mut fields = row.split('\t');
        let mut next = || fields.next();
        let list = |field: &'a str| -> Vec<Cow<'a, str>> {
            if field.is_empty() {
                Vec::new()
            } else {
                field.split(ITEM).map(unescape).collect()
            }
        };
        let row = Row {
            name: unescape(next()?),
            version: next()?,
            desc: unescape(next()?),
            categories: list(next()?),
            tasks: list(next()?),
        };
        next().is_none().then_some(row)
    }
}

/// Writes `text` with backslashes, tabs, newlines, carriage returns and the item separator
/// escaped.
fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            ITEM => out.push_str("\\u"),
            c => out.push(c),
        }
    }
}

/// Undoes [`escape`], borrowing when there is nothing to undo (nearly always).
fn unescape(field: &str) -> Cow<'_, str> {
    if !field.contains('\\') {
        return Cow::Borrowed(field);
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('u') => out.push(ITEM),
            Some(other) => out.push(other),
            None => {}
        }
    }
    Cow::Owned(out)
}

/// The fields of an index line search reads, borrowed from the catalog's text where JSON
/// allows. Artifacts are skipped: search never downloads, and their signatures are most of a
/// line's bytes, so a catalog of 10,000 plugins is read without allocating them.
#[derive(Deserialize)]
struct CatalogLine<'a> {
    #[serde(default = "first_schema")]
    v: u32,
    #[serde(borrow)]
    name: Cow<'a, str>,
    vers: Version,
    abi: u32,
    host: VersionReq,
    #[serde(default, borrow)]
    desc: Cow<'a, str>,
    // Kinds, task names and target triples never need JSON escapes, so they are borrowed; a
    // line that escapes one anyway is left out of search (install reads index files instead).
    #[serde(default, borrow)]
    categories: Vec<&'a str>,
    #[serde(default, borrow)]
    tasks: Vec<&'a str>,
    #[serde(borrow)]
    targets: HashMap<&'a str, IgnoredAny>,
    #[serde(default)]
    yanked: bool,
}

impl CatalogLine<'_> {
    /// Returns whether a bare `launcher install <name>` could pick this line: a schema this
    /// client reads, a stable version, this ABI and launcher version, a build for this target,
    /// not yanked (the same rules as [`resolve`](crate::resolve()) with no requirement).
    fn installable(&self, host: &HostInfo) -> bool {
        self.v <= INDEX_SCHEMA
            && self.vers.pre.is_empty()
            && !self.yanked
            && self.abi == host.abi
            && self.host.matches(&host.version)
            && self.targets.contains_key(host.target.as_str())
    }
}

/// Returns the newest installable line of each plugin in `catalog`, and how many lines were
/// skipped for an invalid name.
///
/// The catalog is cut into one piece per core at line boundaries: parsing is nearly all of
/// search's time, and lines are independent.
fn newest_installable<'a>(
    catalog: &'a str,
    host: &HostInfo,
) -> (HashMap<Cow<'a, str>, CatalogLine<'a>>, usize) {
    let pieces = std::thread::available_parallelism().map_or(1, usize::from);
    let mut chunks = Vec::with_capacity(pieces);
    let mut rest = catalog;
    while !rest.is_empty() {
        let target = (catalog.len() / pieces).max(1).min(rest.len());
        let cut = rest[target..]
            .find('\n')
            .map_or(rest.len(), |i| target + i + 1);
        let (chunk, tail) = rest.split_at(cut);
        chunks.push(chunk);
        rest = tail;
    }
    let parts: Vec<(HashMap<Cow<'a, str>, CatalogLine<'a>>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(move || newest_in(chunk, host)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut newest = HashMap::new();
    let mut invalid = 0;
    for (part, skipped) in parts {
        invalid += skipped;
        for (name, line) in part {
            keep_newer(&mut newest, name, line);
        }
    }
    (newest, invalid)
}

/// Returns the newest installable line of each plugin among `lines`, and how many lines named
/// no valid plugin name (the same rule as index file names: a name is printed, so it must not
/// carry escape sequences or look-alike characters).
fn newest_in<'a>(
    lines: &'a str,
    host: &HostInfo,
) -> (HashMap<Cow<'a, str>, CatalogLine<'a>>, usize) {
    let mut newest = HashMap::new();
    let mut invalid = 0;
    for line in lines.lines() {
        // Unparsable lines are reported by the install path, which reads index files.
        let Ok(line) = serde_json::from_str::<CatalogLine<'_>>(line.trim()) else {
            continue;
        };
        if !launcher_sdk::is_identifier(&line.name) {
            invalid += 1;
            continue;
        }
        if line.installable(host) {
            keep_newer(&mut newest, line.name.clone(), line);
        }
    }
    (newest, invalid)
}

fn keep_newer<'a>(
    newest: &mut HashMap<Cow<'a, str>, CatalogLine<'a>>,
    name: Cow<'a, str>,
    line: CatalogLine<'a>,
) {
    match newest.get(&name) {
        Some(best) if best.vers >= line.vers => {}
        _ => {
            newest.insert(name, line);
        }
    }
}

/// Returns how well `line` matches (lower is better), or `None` if it does not.
fn rank(line: &Row<'_>, words: &[String], query: &SearchQuery) -> Option<u8> {
    let has = |list: &[Cow<'_, str>], wanted: &Option<String>| {
        wanted
            .as_deref()
            .is_none_or(|w| list.iter().any(|item| item.eq_ignore_ascii_case(w)))
    };
    if !has(&line.categories, &query.category) || !has(&line.tasks, &query.task) {
        return None;
    }
    if words.is_empty() {
        return Some(2);
    }
    // Words hold no whitespace, so none can span two fields: each is looked for field by field.
    let found = |word: &str| {
        contains_folded(&line.name, word)
            || contains_folded(&line.desc, word)
            || line.tasks.iter().any(|t| contains_folded(t, word))
    };
    if !words.iter().all(|w| found(w)) {
        return None;
    }
    let phrase = words.join(" ");
    Some(if line.name == phrase {
        0
    } else if line.name.contains(&phrase) {
        1
    } else {
        2
    })
}

/// Returns whether `text` contains `word` (already lowercase), ignoring case: without
/// allocating for ASCII text, which nearly every catalog line is.
fn contains_folded(text: &str, word: &str) -> bool {
    if !text.is_ascii() {
        return text.to_lowercase().contains(word);
    }
    if !word.is_ascii() {
        return false;
    }
    let (text, word) = (text.as_bytes(), word.as_bytes());
    word.is_empty()
        || text
            .windows(word.len())
            .any(|window| window.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostInfo {
        HostInfo {
            abi: 1,
            version: Version::new(0, 1, 0),
            target: "x86_64-unknown-linux-gnu".to_string(),
        }
    }

    fn line(name: &str, vers: &str, extra: &str) -> String {
        let mut fields = format!(
            r#""v":1,"name":"{name}","vers":"{vers}","abi":1,"host":"*","desc":"says {name} aloud","categories":["audio"],"tasks":["tts"],"targets":{{"x86_64-unknown-linux-gnu":{{"sha256":"00","size":1,"sig":"line one\nline two"}}}}"#
        );
        for (key, value) in extra.split(';').filter_map(|kv| kv.split_once('=')) {
            fields = fields.replace(&format!("\"{key}\":"), &format!("\"{key}_replaced\":"));
            fields.push_str(&format!(",\"{key}\":{value}"));
        }
        format!("{{{fields}}}")
    }

    #[test]
    fn picks_the_newest_version_a_bare_install_would_pick() {
        let catalog = [
            line("voice", "1.0.0", ""),
            line("voice", "1.1.0", ""),
            line("voice", "2.0.0-beta.1", ""),
            line("voice", "1.2.0", "yanked=true"),
            line("voice", "1.3.0", "abi=2"),
            line("voice", "1.4.0", r#"host=">=9""#),
            line("voice", "1.5.0", r#"targets={"aarch64-apple-darwin":{}}"#),
            line("voice", "1.6.0", "v=2"),
            "not json at all".to_string(),
            line("other", "0.3.0", ""),
        ]
        .join("\n");
        let (newest, invalid) = newest_in(&catalog, &host());
        assert_eq!(invalid, 0);
        assert_eq!(newest.len(), 2);
        assert_eq!(newest["voice"].vers, Version::new(1, 1, 0));
        assert_eq!(newest["other"].vers, Version::new(0, 3, 0));
        // Splitting across threads gives the same answer.
        let (split, _) = newest_installable(&catalog, &host());
        assert_eq!(split["voice"].vers, Version::new(1, 1, 0));
        assert_eq!(split.len(), 2);
    }

    #[test]
    fn lines_with_invalid_names_are_skipped_and_counted() {
        let catalog = [
            line("voice", "1.0.0", ""),
            line("Voice", "9.0.0", ""),
            line("\\u001b]0;owned\\u0007", "9.0.0", ""),
            line("voice\u{202e}", "9.0.0", ""),
            line("", "9.0.0", ""),
        ]
        .join("\n");
        let (newest, invalid) = newest_installable(&catalog, &host());
        assert_eq!(invalid, 4);
        assert_eq!(newest.len(), 1);
        assert_eq!(newest["voice"].vers, Version::new(1, 0, 0));
    }

    #[test]
    fn ranks_exact_names_first_and_filters_by_kind_task_and_words() {
        let text = line("tts", "1.0.0", "");
        let parsed: CatalogLine<'_> = serde_json::from_str(&text).unwrap();
        let mut row = String::new();
        Row::write(&parsed, &mut row);
        let parsed = Row::parse(row.trim_end_matches('\n')).unwrap();
        let query = |text: &str, category: Option<&str>, task: Option<&str>| SearchQuery {
            text: Some(text.to_string()),
            category: category.map(str::to_string),
            task: task.map(str::to_string),
        };
        let words = |q: &SearchQuery| -> Vec<String> {
            q.text
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_lowercase)
                .collect()
        };
        let exact = query("tts", None, None);
        assert_eq!(rank(&parsed, &words(&exact), &exact), Some(0));
        let described = query("ALOUD", Some("Audio"), Some("tts"));
        assert_eq!(rank(&parsed, &words(&described), &described), Some(2));
        let wrong_kind = query("", Some("video"), None);
        assert_eq!(rank(&parsed, &words(&wrong_kind), &wrong_kind), None);
        let missing_word = query("aloud quietly", None, None);
        assert_eq!(rank(&parsed, &words(&missing_word), &missing_word), None);
    }

    #[test]
    fn rows_keep_every_character_of_their_fields() {
        let text = line(
            "odd",
            "1.0.0-rc.1+build.5",
            r#"desc="tab\there, newline\nthere, back\\slash, unit\u001fsep, 中文";tasks=["tts","a,b"]"#,
        );
        let parsed: CatalogLine<'_> = serde_json::from_str(&text).unwrap();
        let mut out = String::new();
        Row::write(&parsed, &mut out);
        assert_eq!(out.matches('\n').count(), 1, "one line: {out:?}");
        let row = Row::parse(out.trim_end_matches('\n')).unwrap();
        assert_eq!(row.name, "odd");
        assert_eq!(row.version, "1.0.0-rc.1+build.5");
        assert_eq!(
            row.desc,
            "tab\there, newline\nthere, back\\slash, unit\u{1f}sep, 中文"
        );
        assert_eq!(row.categories, ["audio"]);
        assert_eq!(row.tasks, ["tts", "a,b"]);
        // Too few or too many fields is a damaged row, not a misread one.
        assert_eq!(Row::parse("odd\t1.0.0\tdesc\taudio"), None);
        assert_eq!(Row::parse("odd\t1.0.0\tdesc\taudio\ttts\textra"), None);
    }

    #[test]
    fn words_are_found_in_any_case_and_script() {
        assert!(contains_folded("Says SPEECH aloud", "speech"));
        assert!(contains_folded("say-it", "y-i"));
        assert!(!contains_folded("spee", "speech"));
        assert!(contains_folded("Ünïcode Stimme", "stimme"));
        assert!(contains_folded("ÜNÏCODE", "ünï"));
        assert!(!contains_folded("ascii only", "ünï"));
        assert!(contains_folded("中文语音合成", "语音"));
    }

    #[test]
    fn listing_headers_round_trip_and_belong_to_one_key() {
        let header = Header {
            files: "1 2 3 4 5.6;7 8 9 10 11.12;".to_string(),
            issued: Some(1_700_000_000),
            expires: None,
            digest: "ab".repeat(32),
            invalid: 3,
        };
        let listing = format!("{}\nrow\n", header.line("key\tcatalog 1"));
        assert_eq!(Header::parse(&listing, "key\tcatalog 1"), Some(header));
        assert_eq!(Header::parse(&listing, "key\tcatalog 2"), None);
        let unsigned = Header::of(None, None, 0);
        let listing = format!("{}\n", unsigned.line("k"));
        assert_eq!(Header::parse(&listing, "k"), Some(unsigned));
        assert_eq!(Header::parse("k\tstatement none\n", "k"), None);
    }
}
