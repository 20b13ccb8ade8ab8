//! Search: what the registries offer, from their catalog files alone.

use std::borrow::Cow;
use std::collections::HashMap;

use semver::{Version, VersionReq};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::error::Result;
use crate::index::{INDEX_SCHEMA, first_schema};
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
    let mut hits: HashMap<String, (u8, SearchHit)> = HashMap::new();
    for registry in registries {
        let text = registry.catalog_text();
        for warning in registry.take_warnings() {
            reporter.warning(&warning);
        }
        let text = text?;
        let (newest, invalid) = newest_installable(&text, host, &hits);
        if invalid > 0 {
            reporter.warning(&format!(
                "registry `{}`: skipped {invalid} catalog line{} whose name is not a valid \
                 plugin name",
                registry.name(),
                if invalid == 1 { "" } else { "s" }
            ));
        }
        for (name, line) in newest {
            let Some(rank) = rank(&line, &words, query) else {
                continue;
            };
            let hit = SearchHit {
                name: name.clone().into_owned(),
                registry: registry.name().to_string(),
                version: line.vers,
                description: line.desc.into_owned(),
                categories: line.categories.iter().map(|c| c.to_string()).collect(),
                tasks: line.tasks.iter().map(|t| t.to_string()).collect(),
            };
            hits.insert(name.into_owned(), (rank, hit));
        }
    }
    let mut hits: Vec<(u8, SearchHit)> = hits.into_values().collect();
    hits.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    Ok(hits.into_iter().map(|(_, hit)| hit).collect())
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

/// Returns the newest installable line of each plugin in `catalog` not among `found` already,
/// and how many lines were skipped for an invalid name.
///
/// The catalog is cut into one piece per core at line boundaries: parsing is nearly all of
/// search's time, and lines are independent.
fn newest_installable<'a>(
    catalog: &'a str,
    host: &HostInfo,
    found: &HashMap<String, (u8, SearchHit)>,
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
            .map(|chunk| scope.spawn(move || newest_in(chunk, host, found)))
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
    found: &HashMap<String, (u8, SearchHit)>,
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
        if line.installable(host) && !found.contains_key(line.name.as_ref()) {
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
fn rank(line: &CatalogLine<'_>, words: &[String], query: &SearchQuery) -> Option<u8> {
    let has = |list: &[&str], wanted: &Option<String>| {
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
    let haystack = format!(
        "{} {} {}",
        line.name,
        line.desc.to_lowercase(),
        line.tasks.join(" ").to_lowercase()
    );
    if !words.iter().all(|w| haystack.contains(w.as_str())) {
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
        let (newest, invalid) = newest_in(&catalog, &host(), &HashMap::new());
        assert_eq!(invalid, 0);
        assert_eq!(newest.len(), 2);
        assert_eq!(newest["voice"].vers, Version::new(1, 1, 0));
        assert_eq!(newest["other"].vers, Version::new(0, 3, 0));
        // Splitting across threads gives the same answer.
        let (split, _) = newest_installable(&catalog, &host(), &HashMap::new());
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
        let (newest, invalid) = newest_installable(&catalog, &host(), &HashMap::new());
        assert_eq!(invalid, 4);
        assert_eq!(newest.len(), 1);
        assert_eq!(newest["voice"].vers, Version::new(1, 0, 0));
    }

    #[test]
    fn ranks_exact_names_first_and_filters_by_kind_task_and_words() {
        let text = line("tts", "1.0.0", "");
        let parsed: CatalogLine<'_> = serde_json::from_str(&text).unwrap();
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
}
