//! What an install takes over: tool ids other plugins provide, and tasks it would now win.
//!
//! A tool id belongs to one plugin. Before a new or updated library is committed to the store,
//! its manifest is compared with what is installed and bundled: a *different* plugin that
//! declares a tool id another plugin provides is refused, unless the user passed `--replace`;
//! then the newcomer is recorded as the tool's provider, and the settings configured for the
//! replaced tool stay bound to the plugin they were set for (see [`crate::owners`]). The same
//! plugin name (a registry copy of a bundled plugin, an update) simply supersedes the old copy.
//! After the install, every task whose `launcher run <task>` would now pick one of the new
//! plugin's tools is announced, so a plugin never becomes a default unnoticed.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use anyhow::Result;
use launcher_sdk::Manifest;

use crate::catalog::{Catalog, Origin, Tool};
use crate::commands::Globals;
use crate::failure::{Class, Failure};
use crate::home::{Config, Home};
use crate::loader;
use crate::owners::{PluginId, has_configured_settings};
use crate::route;

/// One tool id a validated library declares that another plugin provides.
#[derive(Debug, Clone)]
struct Taken {
    /// The tool as another plugin provides it now.
    from: Tool,
}

/// The install-time check of one command, across the plugins it installs.
pub(crate) struct Claims {
    home: Home,
    replace: bool,
    config: RefCell<Config>,
    /// What is installed and bundled before the current plugin is committed.
    before: RefCell<Catalog>,
    /// What the last validated library takes from other plugins, with `--replace`.
    taken: RefCell<Vec<Taken>>,
    /// The plugins refused for taking tool ids: name, message, hint.
    refused: RefCell<Vec<(String, String, String)>>,
}

impl Claims {
    /// Takes stock of what is installed now; `replace` is the user's `--replace`. Shared
    /// (`Rc`) because the store's validator must not borrow.
    pub(crate) fn new(globals: &Globals, home: &Home, replace: bool) -> Result<Rc<Claims>> {
        // A config file with a mistake must not stop an install; it is only warned about.
        let config = Config::load_or_warn(home, &|w| globals.warn(w));
        let before = Catalog::discover(home, &config).unguarded();
        Ok(Rc::new(Claims {
            home: home.clone(),
            replace,
            config: RefCell::new(config),
            before: RefCell::new(before),
            taken: RefCell::new(Vec::new()),
            refused: RefCell::new(Vec::new()),
        }))
    }

    /// Returns the validator for the store: [`Claims::validate`], owning a share of `self`.
    pub(crate) fn validator(
        self: &Rc<Self>,
    ) -> impl Fn(&Path) -> Result<Manifest, String> + 'static {
        let claims = Rc::clone(self);
        move |path| claims.validate(path)
    }

    /// Validates `library` in a child process, as every install does, then checks which tool
    /// ids of its manifest other plugins provide; refuses it unless `--replace` was given.
    pub(crate) fn validate(&self, library: &Path) -> Result<Manifest, String> {
        let manifest = loader::probe(library)?;
        let before = self.before.borrow();
        let taken: Vec<Taken> = manifest
            .tools
            .iter()
            .filter_map(|spec| before.tool(&spec.id))
            .filter(|tool| tool.plugin != manifest.name)
            .map(|tool| Taken { from: tool.clone() })
            .collect();
        if !taken.is_empty() && !self.replace {
            let message = format!(
                "plugin `{}` was not installed: a tool id belongs to one plugin, and it declares {}",
                manifest.name,
                describe(&taken)
            );
            let hint = format!(
                "`launcher install {} --replace` installs it in place of {}; the settings configured for those tools stay with the plugin they were set for until `launcher keys bind <tool>`",
                manifest.name,
                plugins_of(&taken)
            );
            self.refused
                .borrow_mut()
                .push((manifest.name.clone(), message.clone(), hint));
            self.taken.borrow_mut().clear();
            // The host reports the refusal itself (see `refusal`); this is for the record.
            return Err(message);
        }
        *self.taken.borrow_mut() = taken;
        Ok(manifest)
    }

    /// Returns the conflict to report instead of the store's error when plugin `name` (or,
    /// with `None`, the last library validated) was refused for taking tool ids.
    pub(crate) fn refusal(&self, name: Option<&str>) -> Option<anyhow::Error> {
        let refused = self.refused.borrow();
        let (_, message, hint) = match name {
            Some(name) => refused.iter().rev().find(|(n, _, _)| n == name)?,
            None => refused.last()?,
        };
        Some(
            Failure::new(Class::Conflict, message.clone())
                .hint(hint.clone())
                .into(),
        )
    }

    /// After plugin `name` was committed: records it as the provider of the tools it
    /// replaced, keeps their settings bound to the replaced plugin, and says what changed.
    pub(crate) fn installed(&self, globals: &Globals, name: &str) -> Result<()> {
        let taken = std::mem::take(&mut *self.taken.borrow_mut());
        {
            let config = self.config.borrow();
            for t in &taken {
                let id = t.from.spec.id.as_str();
                let keep = has_configured_settings(&t.from, &config).then(|| PluginId::of(&t.from));
                config.owners.update(id, |record| {
                    record.provider = Some(name.to_string());
                    if record.settings.is_none() {
                        record.settings.clone_from(&keep);
                    }
                })?;
                let mut message = format!(
                    "tool `{id}` of plugin `{}` ({}) is replaced by plugin `{name}`'s",
                    t.from.plugin,
                    t.from.origin.describe()
                );
                let bound = config.owners.settings_owner(id).cloned().or(keep);
                if let Some(bound) = bound.filter(|b| b.plugin != name) {
                    message.push_str(&format!(
                        "; the settings configured for `{id}` stay with {bound}, and `launcher keys bind {id}` hands them to `{name}`"
                    ));
                }
                globals.warn(&message);
            }
        }
        let config = Config::load_or_warn(&self.home, &|_| {});
        let after = Catalog::discover(&self.home, &config).unguarded();
        {
            let before = self.before.borrow();
            if let Some(old) = before.plugins.iter().find(|p| p.manifest.name == name)
                && old.origin != Origin::Store
            {
                globals.status(&format!(
                    "plugin `{name}` now supersedes its {} copy; the settings of its tools stay with it",
                    old.origin.describe()
                ));
            }
            announce_tasks(
                globals,
                &before,
                &after,
                &config,
                &self.home.config_file(),
                name,
            );
        }
        *self.before.borrow_mut() = after;
        *self.config.borrow_mut() = config;
        Ok(())
    }
}

/// Says which tool ids `taken` holds and which plugins provide them now.
fn describe(taken: &[Taken]) -> String {
    taken
        .iter()
        .map(|t| {
            format!(
                "`{}`, which plugin `{}` ({}) provides",
                t.from.spec.id,
                t.from.plugin,
                t.from.origin.describe()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Returns the plugins the tools in `taken` come from, for a hint.
fn plugins_of(taken: &[Taken]) -> String {
    let mut names: Vec<String> = taken
        .iter()
        .map(|t| format!("`{}`", t.from.plugin))
        .collect();
    names.dedup();
    names.join(", ")
}

/// Says which tasks `launcher run <task>` would now give to a tool of plugin `name`.
fn announce_tasks(
    globals: &Globals,
    before: &Catalog,
    after: &Catalog,
    config: &Config,
    config_path: &Path,
    name: &str,
) {
    let mut tasks: Vec<&str> = after
        .tools
        .iter()
        .filter(|t| t.plugin == name)
        .flat_map(|t| t.spec.tasks.iter().map(String::as_str))
        .collect();
    tasks.sort_unstable();
    tasks.dedup();
    for task in tasks {
        let Some(now) = chosen_for(after, config, config_path, task) else {
            continue;
        };
        if now.plugin != name {
            continue;
        }
        match chosen_for(before, config, config_path, task) {
            Some(was) if was.spec.id == now.spec.id && was.plugin == now.plugin => {}
            Some(was) => globals.warn(&format!(
                "`launcher run {task}` now picks tool `{}` of plugin `{name}` instead of `{}`; `launcher default {task} {}` keeps `{}`",
                now.spec.id, was.spec.id, was.spec.id, was.spec.id
            )),
            None => globals.status(&format!(
                "`launcher run {task}` now picks tool `{}` of plugin `{name}`",
                now.spec.id
            )),
        }
    }
}

/// Returns the tool `launcher run <task>` would pick, with no other flags.
fn chosen_for<'c>(
    catalog: &'c Catalog,
    config: &Config,
    config_path: &Path,
    task: &str,
) -> Option<&'c Tool> {
    let request = route::Request {
        target: Some(task),
        tool: None,
        task: None,
        to: None,
        inputs: Vec::new(),
        cli_settings: &[],
        for_help: false,
    };
    route::resolve(catalog, config, config_path, &request)
        .ok()
        .map(|r| r.tool)
}
