//! `launcher install --path` and `launcher uninstall`: the local side of the plugin store.

use std::path::Path;

use anyhow::Result;
use launcher_registry::Reporter;
use launcher_registry::Store;
use launcher_sdk::serde_json::json;

use crate::commands::Globals;
use crate::commands::claims::Claims;
use crate::failure::{Class, Failure, fail};
use crate::home::Home;

/// Installs a locally built plugin library after validating it in a child process.
pub(crate) fn install_path(
    globals: &Globals,
    library: &Path,
    replace: bool,
    as_json: bool,
) -> Result<()> {
    let home = Home::locate()?;
    let meta = std::fs::metadata(library).map_err(|e| {
        fail(
            Class::NotFound,
            format!("cannot read {}: {e}", library.display()),
        )
    })?;
    if !meta.is_file() {
        return Err(fail(
            Class::InvalidInput,
            format!("{} is not a file", library.display()),
        ));
    }
    let library = library.canonicalize()?;
    globals.info(&format!(
        "validating {} in a child process",
        library.display()
    ));
    let claims = Claims::new(globals, &home, replace)?;
    let store = Store::open(home.data_dir())?;
    let reporter = Quiet(*globals);
    let mut lock = store.lock(&reporter)?;
    let entry = lock
        .install_local(&library, &claims.validator(), &reporter)
        .map_err(|e| match claims.refusal(None) {
            Some(refusal) => refusal,
            None => Failure::new(
                Class::InvalidInput,
                format!("{} was not installed: {e}", library.display()),
            )
            .into(),
        })?;
    for warning in lock.warnings() {
        globals.warn(warning);
    }
    drop(lock);
    globals.status(&format!(
        "installed {} {} from {}",
        entry.name,
        entry.version,
        library.display()
    ));
    claims.installed(globals, &entry.name)?;
    if as_json {
        crate::commands::print_json(json!({
            "plugins": [{
                "name": entry.name,
                "version": entry.version.to_string(),
                "action": "installed",
                "path": library,
            }]
        }))?;
    }
    Ok(())
}

/// Removes an installed plugin.
pub(crate) fn uninstall(globals: &Globals, name: &str, as_json: bool) -> Result<()> {
    let home = Home::locate()?;
    let store = Store::open(home.data_dir())?;
    let reporter = Quiet(*globals);
    let mut lock = store.lock(&reporter)?;
    let result = lock.uninstall(name);
    for warning in lock.warnings() {
        globals.warn(warning);
    }
    match result {
        Ok(entry) => {
            globals.status(&format!("uninstalled {} {}", entry.name, entry.version));
            if as_json {
                crate::commands::print_json(json!({
                    "plugins": [{
                        "name": entry.name,
                        "version": entry.version.to_string(),
                        "action": "uninstalled",
                    }]
                }))?;
            }
            Ok(())
        }
        Err(e) => Err(Failure::new(Class::NotFound, e.to_string())
            .hint("`launcher list` shows installed tools; plugins built beside launcher or on LAUNCHER_PLUGIN_PATH are not in the store")
            .into()),
    }
}

/// Reports store events as plain lines: local installs have no download to draw.
struct Quiet(Globals);

impl Reporter for Quiet {
    fn waiting_for_lock(&self, lock_file: &Path) {
        self.0.status(&format!(
            "waiting for another launcher to release {}",
            lock_file.display()
        ));
    }

    fn warning(&self, message: &str) {
        self.0.warn(message);
    }
}
