//! The launcher plugin store and registry.
//!
//! This crate installs adapter plugins into a launcher home and publishes them into registries.
//! A registry is a directory of static files ([`index`]) served from a path, `file://` or any
//! HTTP server ([`Registry`]). Installing resolves a version ([`resolve()`]), downloads the
//! archive while hashing it, checks its sha256 and minisign signature against keys configured
//! on the client ([`verify`]), extracts it safely ([`extract()`]), has the host validate the
//! library, and commits it to the [`Store`] atomically, recording it in the [`Lockfile`].
//! Publishing ([`publish()`]) packs, signs and appends to an index directory.
//!
//! The `launcher` binary is the main user; the crate never prints, and reports progress
//! through a [`Reporter`].
//!
//! # Example
//!
//! ```no_run
//! use launcher_registry::{
//!     HostInfo, InstallContext, InstallOptions, NoReporter, Registry, RegistryConfig, Store,
//! };
//!
//! # fn probe(_: &std::path::Path) -> Result<launcher_sdk::Manifest, String> { unimplemented!() }
//! let store = Store::open("/home/me/.local/share/launcher")?;
//! let config = RegistryConfig {
//!     index: "https://plugins.example.org/index/".to_string(),
//!     trust: vec!["RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3".to_string()],
//! };
//! let registries = [Registry::open("default", &config, &store, false)?];
//! let host = HostInfo::current(semver::Version::new(0, 1, 0));
//! let cx = InstallContext {
//!     registries: &registries,
//!     host: &host,
//!     validate: &probe,
//!     reporter: &NoReporter,
//! };
//! let mut lock = store.lock(&NoReporter)?;
//! let outcome = lock.install(&cx, &"azure-tts@^1".parse()?, &InstallOptions::default())?;
//! assert_eq!(outcome.entry.name, "azure-tts");
//! # Ok::<(), launcher_registry::Error>(())
//! ```

#![warn(missing_docs)]

mod atomic;
pub mod error;
pub mod extract;
mod failpoint;
pub mod freshness;
pub mod index;
mod install;
pub mod lockfile;
pub mod plugin_toml;
pub mod publish;
mod report;
pub mod resolve;
mod search;
mod source;
mod store;
pub mod verify;

pub use error::{ArchiveError, Error, ErrorKind, Result, SignatureError};
pub use extract::{Limits, extract};
pub use index::{Artifact, IndexConfig, IndexFile, IndexLine, index_path};
pub use install::{
    InstallContext, InstallOptions, InstallOutcome, Outdated, check_sync_needs, outdated,
    yanked_installed,
};
pub use lockfile::{LockEntry, Lockfile, Source};
pub use plugin_toml::PluginToml;
pub use publish::{
    KeyPair, PublishRequest, Published, Signing, find_docs, publish, refresh_signature, yank,
};
pub use report::{NoReporter, Reporter, Stage};
pub use resolve::{HostInfo, PluginSpec, Request, ResolveError, resolve};
pub use search::{SearchHit, SearchQuery, search};
pub use source::{DownloadLimits, Registry, RegistryConfig};
pub use store::{InstalledPlugin, ReadGuard, Store, StoreLock, StoreRead, Validate};
pub use verify::TrustedKeys;

/// Returns the target triple this launcher was built for, e.g. `x86_64-unknown-linux-gnu`:
/// the key of the archive to install from an index line, and the `target` of local installs.
pub fn host_target() -> String {
    env!("LAUNCHER_REGISTRY_TARGET").to_string()
}
