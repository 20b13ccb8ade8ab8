//! Version resolution: which published version of a plugin to install, and if none, why.
//!
//! A version is a candidate when it matches the requested semver requirement (a bare name means
//! `*`, which takes only stable versions), its ABI is the host's, its `host` requirement admits
//! the running launcher, it has a build for the host's target, and it is not yanked (unless the
//! lockfile pins exactly it or yanked versions are allowed). The highest candidate wins. The
//! filters apply in that order, so an error names the last obstacle a user could act on.

use std::fmt;
use std::str::FromStr;

use semver::{Version, VersionReq};

use crate::index::IndexLine;

/// What the running launcher offers a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// The plugin ABI major version the host speaks.
    pub abi: u32,
    /// The launcher's own version, matched against each line's `host` requirement.
    pub version: Version,
    /// The host's target triple.
    pub target: String,
}

impl HostInfo {
    /// Returns the host as compiled: the SDK's ABI, [`crate::host_target`], and the given
    /// launcher version (the host passes its own `CARGO_PKG_VERSION`).
    pub fn current(launcher_version: Version) -> HostInfo {
        HostInfo {
            abi: launcher_sdk::abi::ABI_MAJOR,
            version: launcher_version,
            target: crate::host_target(),
        }
    }

    /// Returns why `line` cannot run on this host, or `None` if it can (target aside).
    fn incompatibility(&self, line: &IndexLine) -> Option<String> {
        if line.abi != self.abi {
            Some(format!(
                "{} needs plugin ABI {} (this launcher speaks ABI {})",
                line.vers, line.abi, self.abi
            ))
        } else if !line.host.matches(&self.version) {
            Some(format!(
                "{} needs launcher {} (this is {})",
                line.vers, line.host, self.version
            ))
        } else {
            None
        }
    }
}

/// A plugin name with an optional semver requirement, as typed: `azure-tts` or `azure-tts@^1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// The plugin's name.
    pub name: String,
    /// The requirement; `None` for a bare name (newest stable).
    pub requirement: Option<VersionReq>,
}

impl PluginSpec {
    /// Returns the requirement as the lockfile records it: `*` for a bare name.
    pub fn requirement_text(&self) -> String {
        self.requirement
            .as_ref()
            .map_or_else(|| "*".to_string(), ToString::to_string)
    }
}

impl FromStr for PluginSpec {
    type Err = crate::Error;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let invalid = |message: String| {
            crate::ErrorKind::InvalidSpec {
                spec: spec.to_string(),
                message,
            }
            .into()
        };
        let (name, requirement) = match spec.split_once('@') {
            Some((name, req)) => {
                let req = VersionReq::parse(req.trim())
                    .map_err(|e| invalid(format!("`{req}` is not a semver requirement: {e}")))?;
                (name, Some(req))
            }
            None => (spec, None),
        };
        if !launcher_sdk::is_identifier(name) {
            return Err(invalid(format!(
                "`{name}` is not a plugin name (lowercase letters, digits and dashes)"
            )));
        }
        Ok(PluginSpec {
            name: name.to_string(),
            requirement,
        })
    }
}

impl fmt::Display for PluginSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.requirement {
            Some(req) => write!(f, "{}@{req}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What to resolve.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The plugin's name.
    pub name: &'a str,
    /// The requirement; `None` takes the newest stable version.
    pub requirement: Option<&'a VersionReq>,
    /// Whether yanked versions may be chosen.
    pub allow_yanked: bool,
    /// A version the lockfile pins, which may be chosen even if yanked.
    pub pinned: Option<&'a Version>,
}

/// Why no version fits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResolveError {
    /// No registry has a plugin of that name.
    NoSuchPlugin {
        /// The name asked for.
        name: String,
        /// The registries searched.
        registries: Vec<String>,
        /// Names that are close, best first.
        suggestions: Vec<String>,
    },
    /// No version matches the requirement.
    NoMatchingVersion {
        /// The plugin.
        name: String,
        /// The requirement.
        requirement: String,
        /// Every version published, newest first.
        available: Vec<Version>,
    },
    /// Versions match, but none works with this launcher (ABI or launcher version).
    Incompatible {
        /// The plugin.
        name: String,
        /// The requirement.
        requirement: String,
        /// Why each matching version does not fit, newest first.
        reasons: Vec<String>,
        /// The newest version that would work, outside the requirement, if any.
        newest_compatible: Option<Version>,
    },
    /// Compatible versions match, but none has a build for this target.
    NoBuildForTarget {
        /// The plugin.
        name: String,
        /// The newest compatible matching version.
        version: Version,
        /// The host's target.
        target: String,
        /// The targets that version was built for.
        available: Vec<String>,
    },
    /// Only yanked versions fit.
    OnlyYanked {
        /// The plugin.
        name: String,
        /// The requirement.
        requirement: String,
        /// The yanked versions that would fit, newest first.
        yanked: Vec<Version>,
    },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NoSuchPlugin {
                name,
                registries,
                suggestions,
            } => {
                let plural = if registries.len() == 1 { "y" } else { "ies" };
                write!(
                    f,
                    "no plugin named `{name}` in registr{plural} {}",
                    quoted(registries)
                )?;
                if !suggestions.is_empty() {
                    write!(f, "; did you mean {}?", quoted_or(suggestions))?;
                }
                Ok(())
            }
            ResolveError::NoMatchingVersion {
                name,
                requirement,
                available,
            } => {
                write!(
                    f,
                    "no version of `{name}` matches `{requirement}` (available: {})",
                    listed(available)
                )?;
                if !available.is_empty() && available.iter().all(|v| !v.pre.is_empty()) {
                    write!(
                        f,
                        "; pre-releases are chosen only when asked for, e.g. `{name}@={}`",
                        available[0]
                    )?;
                }
                Ok(())
            }
            ResolveError::Incompatible {
                name,
                requirement,
                reasons,
                newest_compatible,
            } => {
                write!(
                    f,
                    "no version of `{name}` matching `{requirement}` works with this launcher: "
                )?;
                const SHOWN: usize = 3;
                f.write_str(&reasons[..reasons.len().min(SHOWN)].join("; "))?;
                if reasons.len() > SHOWN {
                    write!(f, "; and {} more", reasons.len() - SHOWN)?;
                }
                if let Some(version) = newest_compatible {
                    write!(f, "; the newest version that works is {version}")?;
                }
                Ok(())
            }
            ResolveError::NoBuildForTarget {
                name,
                version,
                target,
                available,
            } => write!(
                f,
                "`{name}` {version} has no build for {target} (available: {})",
                if available.is_empty() {
                    "none".to_string()
                } else {
                    available.join(", ")
                }
            ),
            ResolveError::OnlyYanked {
                name,
                requirement,
                yanked,
            } => write!(
                f,
                "every version of `{name}` matching `{requirement}` was yanked ({}); \
                 pass --allow-yanked to install one anyway",
                listed(yanked)
            ),
        }
    }
}

impl std::error::Error for ResolveError {}

/// Picks the version of `request.name` to install from `lines`.
pub fn resolve<'a>(
    lines: &'a [IndexLine],
    request: &Request<'_>,
    host: &HostInfo,
) -> Result<&'a IndexLine, ResolveError> {
    let name = request.name.to_string();
    let star = VersionReq::STAR;
    let requirement = request.requirement.unwrap_or(&star);
    let requirement_text = requirement.to_string();

    let mut lines: Vec<&IndexLine> = lines.iter().filter(|l| l.name == request.name).collect();
    if lines.is_empty() {
        return Err(ResolveError::NoSuchPlugin {
            name,
            registries: Vec::new(),
            suggestions: Vec::new(),
        });
    }
    lines.sort_by(|a, b| b.vers.cmp(&a.vers));

    let matching: Vec<&IndexLine> = lines
        .iter()
        .copied()
        .filter(|l| requirement.matches(&l.vers))
        .collect();
    if matching.is_empty() {
        let mut available: Vec<Version> = lines.iter().map(|l| l.vers.clone()).collect();
        available.dedup();
        return Err(ResolveError::NoMatchingVersion {
            name,
            requirement: requirement_text,
            available,
        });
    }

    let compatible: Vec<&IndexLine> = matching
        .iter()
        .copied()
        .filter(|l| host.incompatibility(l).is_none())
        .collect();
    if compatible.is_empty() {
        let newest_compatible = lines
            .iter()
            .find(|l| {
                host.incompatibility(l).is_none()
                    && l.targets.contains_key(&host.target)
                    && !l.yanked
                    && l.vers.pre.is_empty()
            })
            .map(|l| l.vers.clone());
        return Err(ResolveError::Incompatible {
            name,
            requirement: requirement_text,
            reasons: matching
                .iter()
                .filter_map(|l| host.incompatibility(l))
                .collect(),
            newest_compatible,
        });
    }

    let built: Vec<&IndexLine> = compatible
        .iter()
        .copied()
        .filter(|l| l.targets.contains_key(&host.target))
        .collect();
    if built.is_empty() {
        let newest = compatible[0];
        return Err(ResolveError::NoBuildForTarget {
            name,
            version: newest.vers.clone(),
            target: host.target.clone(),
            available: newest.targets.keys().cloned().collect(),
        });
    }

    let allowed =
        |l: &&&IndexLine| !l.yanked || request.allow_yanked || request.pinned == Some(&l.vers);
    match built.iter().find(allowed) {
        Some(line) => Ok(line),
        None => Err(ResolveError::OnlyYanked {
            name,
            requirement: requirement_text,
            yanked: built.iter().map(|l| l.vers.clone()).collect(),
        }),
    }
}

/// Returns up to three of `candidates` that look like a misspelling of `name`, best first.
pub fn suggestions<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = candidates
        .into_iter()
        .filter(|c| *c != name)
        .filter_map(|c| {
            let score = strsim::jaro_winkler(name, c);
            let related = c.contains(name) || name.contains(c);
            (score >= 0.8 || related).then_some((score, c))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_string())
        .collect()
}

fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn quoted_or(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}

fn listed(versions: &[Version]) -> String {
    if versions.is_empty() {
        return "none".to_string();
    }
    versions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::index::{Artifact, INDEX_SCHEMA};

    const HERE: &str = "x86_64-unknown-linux-gnu";

    fn host() -> HostInfo {
        HostInfo {
            abi: 1,
            version: Version::new(0, 4, 2),
            target: HERE.to_string(),
        }
    }

    fn line(vers: &str) -> IndexLine {
        let mut targets = BTreeMap::new();
        targets.insert(
            HERE.to_string(),
            Artifact {
                sha256: String::new(),
                size: 0,
                sig: String::new(),
            },
        );
        IndexLine {
            v: INDEX_SCHEMA,
            name: "sdxl-local".to_string(),
            vers: Version::parse(vers).unwrap(),
            abi: 1,
            host: VersionReq::STAR,
            desc: String::new(),
            categories: Vec::new(),
            tasks: Vec::new(),
            targets,
            yanked: false,
        }
    }

    fn pick(lines: &[IndexLine], req: Option<&str>) -> Result<String, ResolveError> {
        let req = req.map(|r| VersionReq::parse(r).unwrap());
        let request = Request {
            name: "sdxl-local",
            requirement: req.as_ref(),
            allow_yanked: false,
            pinned: None,
        };
        resolve(lines, &request, &host()).map(|l| l.vers.to_string())
    }

    #[test]
    fn bare_name_takes_newest_stable() {
        let lines = [
            line("1.0.0"),
            line("1.3.0-beta.1"),
            line("1.2.0"),
            line("0.9.0"),
        ];
        assert_eq!(pick(&lines, None).unwrap(), "1.2.0");
        assert_eq!(pick(&lines, Some("^1.2")).unwrap(), "1.2.0");
        assert_eq!(pick(&lines, Some(">=1.3.0-alpha")).unwrap(), "1.3.0-beta.1");
        assert_eq!(pick(&lines, Some("<1")).unwrap(), "0.9.0");
    }

    #[test]
    fn no_matching_version_lists_what_exists() {
        let lines = [line("1.0.0"), line("1.2.0")];
        let err = pick(&lines, Some("^2")).unwrap_err();
        assert!(matches!(err, ResolveError::NoMatchingVersion { .. }));
        assert_eq!(
            err.to_string(),
            "no version of `sdxl-local` matches `^2` (available: 1.2.0, 1.0.0)"
        );
    }

    #[test]
    fn only_prereleases_say_how_to_ask_for_one() {
        let err = pick(&[line("1.0.0-rc.1")], None).unwrap_err();
        assert!(
            err.to_string().contains("`sdxl-local@=1.0.0-rc.1`"),
            "{err}"
        );
    }

    #[test]
    fn other_abi_and_host_versions_are_explained() {
        let mut abi2 = line("3.0.0");
        abi2.abi = 2;
        let mut newer_host = line("2.0.0");
        newer_host.host = VersionReq::parse(">=0.6").unwrap();
        let lines = [abi2, newer_host, line("1.2.0")];
        assert_eq!(pick(&lines, None).unwrap(), "1.2.0");
        let err = pick(&lines, Some(">=2")).unwrap_err();
        assert!(matches!(err, ResolveError::Incompatible { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "no version of `sdxl-local` matching `>=2` works with this launcher: 3.0.0 needs \
             plugin ABI 2 (this launcher speaks ABI 1); 2.0.0 needs launcher >=0.6 (this is \
             0.4.2); the newest version that works is 1.2.0"
        );
    }

    #[test]
    fn no_build_for_this_target_names_the_ones_that_exist() {
        let mut other = line("1.0.0");
        let artifact = other.targets.remove(HERE).unwrap();
        other
            .targets
            .insert("aarch64-apple-darwin".to_string(), artifact);
        let err = pick(&[other.clone()], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("`sdxl-local` 1.0.0 has no build for {HERE} (available: aarch64-apple-darwin)")
        );
        // An older version that has a build is still found.
        assert_eq!(pick(&[other, line("0.9.0")], None).unwrap(), "0.9.0");
    }

    #[test]
    fn yanked_only_when_pinned_or_allowed() {
        let mut yanked = line("1.1.0");
        yanked.yanked = true;
        let lines = [yanked, line("1.0.0")];
        assert_eq!(pick(&lines, None).unwrap(), "1.0.0");
        let err = pick(&lines, Some("=1.1.0")).unwrap_err();
        assert!(matches!(err, ResolveError::OnlyYanked { .. }));
        assert!(err.to_string().contains("--allow-yanked"), "{err}");

        let req = VersionReq::parse("=1.1.0").unwrap();
        let pinned = Version::new(1, 1, 0);
        let mut request = Request {
            name: "sdxl-local",
            requirement: Some(&req),
            allow_yanked: false,
            pinned: Some(&pinned),
        };
        assert_eq!(resolve(&lines, &request, &host()).unwrap().vers, pinned);
        request.pinned = None;
        request.allow_yanked = true;
        assert_eq!(resolve(&lines, &request, &host()).unwrap().vers, pinned);
        // A pin on another version does not unlock a yanked one.
        let other = Version::new(1, 0, 0);
        request.allow_yanked = false;
        request.pinned = Some(&other);
        assert!(resolve(&lines, &request, &host()).is_err());
    }

    #[test]
    fn specs_parse_with_and_without_requirement() {
        let bare: PluginSpec = "azure-tts".parse().unwrap();
        assert_eq!(bare.requirement, None);
        assert_eq!(bare.requirement_text(), "*");
        let pinned: PluginSpec = "azure-tts@^1".parse().unwrap();
        assert_eq!(pinned.requirement_text(), "^1");
        assert_eq!(pinned.to_string(), "azure-tts@^1");
        assert!("Azure".parse::<PluginSpec>().is_err());
        assert!("azure-tts@banana".parse::<PluginSpec>().is_err());
    }

    #[test]
    fn suggests_close_names() {
        let names = ["sdxl-local", "sd-webui", "azure-tts", "openai"];
        assert_eq!(suggestions("sdxl-locl", names), ["sdxl-local"]);
        assert_eq!(suggestions("azure", names), ["azure-tts"]);
        assert!(suggestions("zzzz", names).is_empty());
        let err = ResolveError::NoSuchPlugin {
            name: "sdxl-locl".to_string(),
            registries: vec!["default".to_string()],
            suggestions: suggestions("sdxl-locl", names),
        };
        assert_eq!(
            err.to_string(),
            "no plugin named `sdxl-locl` in registry `default`; did you mean `sdxl-local`?"
        );
    }
}
