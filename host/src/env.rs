//! Every environment variable launcher itself reads, in one place.

/// One directory holding config, data and caches, instead of the platform's directories.
pub(crate) const HOME: &str = "LAUNCHER_HOME";
/// Extra directories to discover plugin libraries in, separated like `PATH`.
pub(crate) const PLUGIN_PATH: &str = "LAUNCHER_PLUGIN_PATH";
/// Any non-empty value turns progress bars off.
pub(crate) const NO_PROGRESS: &str = "LAUNCHER_NO_PROGRESS";
/// The command `--play` runs, the file appended; by default a player found on `PATH`.
pub(crate) const PLAYER: &str = "LAUNCHER_PLAYER";

// Debug builds also honour `LAUNCHER_TEST_KILL_AT` and `LAUNCHER_TEST_PAUSE_AT`, the plugin
// store's test-only failpoints; launcher-registry reads them (see its `failpoint` module).
/// Registry downloads: the largest archive accepted (bytes, or with K, M or G), the slowest
/// transfer accepted (bytes per second, same suffixes) and the seconds every download gets on
/// top, and the size of the archive cache.
pub(crate) const MAX_DOWNLOAD: &str = "LAUNCHER_MAX_DOWNLOAD";
pub(crate) const DOWNLOAD_MIN_RATE: &str = "LAUNCHER_DOWNLOAD_MIN_RATE";
pub(crate) const DOWNLOAD_GRACE: &str = "LAUNCHER_DOWNLOAD_GRACE";
pub(crate) const ARCHIVE_CACHE_SIZE: &str = "LAUNCHER_ARCHIVE_CACHE_SIZE";

/// Debug builds only: the time registry freshness statements are checked and issued at, in
/// seconds since the Unix epoch, so tests can move the clock. Release builds ignore it.
#[cfg(debug_assertions)]
pub(crate) const TEST_NOW: &str = "LAUNCHER_TEST_NOW";

/// The password of an encrypted minisign secret key, for `publish` and `registry keygen`.
pub(crate) const KEY_PASSWORD: &str = "LAUNCHER_KEY_PASSWORD";

/// The editor `launcher config edit` opens: `VISUAL`, else `EDITOR`.
pub(crate) const VISUAL: &str = "VISUAL";
pub(crate) const EDITOR: &str = "EDITOR";

/// The XDG base directories (Linux and other Unix): config, data and cache.
pub(crate) const XDG_CONFIG_HOME: &str = "XDG_CONFIG_HOME";
pub(crate) const XDG_DATA_HOME: &str = "XDG_DATA_HOME";
pub(crate) const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";
/// The user's home directory, under which the platform directories default.
pub(crate) const USER_HOME: &str = "HOME";
/// Windows: the roaming (config and data) and local (cache) application data directories.
pub(crate) const APPDATA: &str = "APPDATA";
pub(crate) const LOCALAPPDATA: &str = "LOCALAPPDATA";

/// Returns the value of `name` when set and not empty.
pub(crate) fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Returns the value of `name` as an OS string when set and not empty.
pub(crate) fn var_os(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}
