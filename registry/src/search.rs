//! Search: what the registries offer, from their catalog files alone.

use std::collections::BTreeMap;

use semver::Version;

use crate::error::Result;
use crate::index::IndexLine;
use crate::resolve::{HostInfo, Request, resolve};
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
/// then the rest, each alphabetically. Plugins with no version for this host are left out.
pub fn search(
    registries: &[Registry],
    query: &SearchQuery,
    host: &HostInfo,
) -> Result<Vec<SearchHit>> {
    let words: Vec<String> = query
        .text
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    let mut hits: BTreeMap<String, (u8, SearchHit)> = BTreeMap::new();
    for registry in registries {
        let catalog = registry.catalog()?;
        let mut by_name: BTreeMap<String, Vec<IndexLine>> = BTreeMap::new();
        for line in catalog.lines {
            by_name.entry(line.name.clone()).or_default().push(line);
        }
        for (name, lines) in by_name {
            if hits.contains_key(&name) {
                continue;
            }
            let request = Request {
                name: &name,
                requirement: None,
                allow_yanked: false,
                pinned: None,
            };
            let Ok(line) = resolve(&lines, &request, host) else {
                continue;
            };
            let Some(rank) = rank(line, &words, query) else {
                continue;
            };
            let hit = SearchHit {
                name: name.clone(),
                registry: registry.name().to_string(),
                version: line.vers.clone(),
                description: line.desc.clone(),
                categories: line.categories.clone(),
                tasks: line.tasks.clone(),
            };
            hits.insert(name, (rank, hit));
        }
    }
    let mut hits: Vec<(u8, SearchHit)> = hits.into_values().collect();
    hits.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    Ok(hits.into_iter().map(|(_, hit)| hit).collect())
}

/// Returns how well `line` matches (lower is better), or `None` if it does not.
fn rank(line: &IndexLine, words: &[String], query: &SearchQuery) -> Option<u8> {
    let has = |list: &[String], wanted: &Option<String>| {
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
