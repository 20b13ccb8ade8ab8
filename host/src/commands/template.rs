//! `launcher plugin new`: writes a new plugin crate that builds, tests and installs as it is.
//!
//! The files are templates under `host/templates/plugin/`, compiled into the binary, with
//! `{{placeholders}}` filled in here. The crate depends on the SDK by path (it is not on a crate
//! registry yet): by default the `sdk/` directory of the checkout this launcher was built from,
//! else the one `--sdk` names. Its one tool performs a standard task of the kind asked for, with
//! a result simple enough to need no dependency, so the crate is a starting point to edit.
//!
//! The plan (names, paths, every file's contents) is computed before anything is written, so a
//! refused name or an existing directory leaves nothing behind.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::commands::Globals;
use crate::failure::{Class, Failure, fail};

/// Arguments of `launcher plugin new`.
#[derive(clap::Args, Debug)]
pub(crate) struct PluginNewArgs {
    /// The plugin's name, also its tool's id: lowercase letters, digits and dashes.
    pub(crate) name: String,
    /// What the tool makes: text (a `chat` tool), image (`txt2img`), audio (`tts`) or video
    /// (`txt2vid`).
    #[arg(long, value_enum, default_value_t = TemplateKind::Text)]
    pub(crate) kind: TemplateKind,
    /// The launcher SDK to depend on, a checkout's `sdk/` directory [default: the one this
    /// launcher was built from].
    #[arg(long, value_name = "DIR")]
    pub(crate) sdk: Option<PathBuf>,
    /// Where to create the crate's directory, named after the plugin [default: the current
    /// directory].
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
}

/// The kinds of plugin there is a template for.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TemplateKind {
    Text,
    Image,
    Audio,
    Video,
}

/// One kind's task, source files and example command line.
struct KindTemplate {
    task: &'static str,
    summary: &'static str,
    example: &'static str,
    lib: &'static str,
    test: &'static str,
}

impl TemplateKind {
    fn template(self) -> KindTemplate {
        match self {
            TemplateKind::Text => KindTemplate {
                task: "chat",
                summary: "answers a prompt with the prompt reversed",
                example: "\"hello\"",
                lib: include_str!("../../templates/plugin/text/lib.rs.in"),
                test: include_str!("../../templates/plugin/text/test.rs.in"),
            },
            TemplateKind::Image => KindTemplate {
                task: "txt2img",
                summary: "draws a prompt as a PNG gradient",
                example: "\"a red fox\" -o fox.png",
                lib: include_str!("../../templates/plugin/image/lib.rs.in"),
                test: include_str!("../../templates/plugin/image/test.rs.in"),
            },
            TemplateKind::Audio => KindTemplate {
                task: "tts",
                summary: "speaks text as a sine tone in a WAV file",
                example: "\"hello there\" -o hello.wav",
                lib: include_str!("../../templates/plugin/audio/lib.rs.in"),
                test: include_str!("../../templates/plugin/audio/test.rs.in"),
            },
            TemplateKind::Video => KindTemplate {
                task: "txt2vid",
                summary: "films a prompt as a sweeping bar in a Y4M video",
                example: "\"a fox\" -o fox.y4m",
                lib: include_str!("../../templates/plugin/video/lib.rs.in"),
                test: include_str!("../../templates/plugin/video/test.rs.in"),
            },
        }
    }
}

const CARGO_TOML: &str = include_str!("../../templates/plugin/Cargo.toml.in");
const README: &str = include_str!("../../templates/plugin/README.md.in");
const GITIGNORE: &str = include_str!("../../templates/plugin/gitignore.in");

/// What `plugin new` will write.
#[derive(Debug)]
struct Plan {
    /// The crate's directory, which must not exist yet.
    root: PathBuf,
    /// The library `cargo build` makes, relative to `root`.
    library: PathBuf,
    /// Files relative to `root`, with their contents.
    files: Vec<(PathBuf, String)>,
}

/// Runs `launcher plugin new`.
pub(crate) fn run(globals: &Globals, args: &PluginNewArgs) -> anyhow::Result<()> {
    let PluginNewArgs {
        name,
        kind,
        sdk,
        dir,
    } = args;
    let sdk = match sdk {
        Some(sdk) => checked_sdk(sdk)?,
        None => built_from_sdk()?,
    };
    let parent = match dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().context("failed to read the current directory")?,
    };
    let plan = plan(name, *kind, &sdk, &parent)?;
    write(&plan)?;
    globals.status(&format!(
        "Created plugin `{name}` in {}. Build it with `cargo build` there, then install it with \
         `launcher install --path {}`.",
        plan.root.display(),
        plan.root.join(&plan.library).display()
    ));
    Ok(())
}

/// Returns the plan for plugin `name` of `kind` in `parent/name`, depending on the SDK at `sdk`
/// (an absolute path).
fn plan(name: &str, kind: TemplateKind, sdk: &Path, parent: &Path) -> anyhow::Result<Plan> {
    if !launcher_sdk::is_identifier(name) {
        return Err(Failure::new(
            Class::Usage,
            format!(
                "`{name}` cannot be a plugin name: a name is 1 to 64 lowercase letters, digits \
                 and dashes, starting with a letter"
            ),
        )
        .hint("try a name such as `my-tool`")
        .into());
    }
    let root = parent.join(name);
    if root.exists() {
        return Err(Failure::new(
            Class::Exists,
            format!("`{}` exists already; nothing was written", root.display()),
        )
        .hint("choose another name, or another directory with --dir")
        .into());
    }
    let sdk_text = sdk.to_str().ok_or_else(|| {
        fail(
            Class::Usage,
            format!(
                "the SDK path `{}` is not valid UTF-8, which Cargo.toml cannot hold",
                sdk.display()
            ),
        )
    })?;

    let snake = name.replace('-', "_");
    let crate_name = format!("launcher_plugin_{snake}");
    let library = PathBuf::from("target").join("debug").join(format!(
        "{}{crate_name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let library_name = library
        .file_name()
        .expect("a file name was just joined")
        .to_string_lossy()
        .into_owned();
    let template = kind.template();
    let type_name = type_name(name);
    let vars: [(&str, &str); 9] = [
        ("name", name),
        ("crate", &snake),
        ("type", &type_name),
        ("task", template.task),
        ("summary", template.summary),
        ("example", template.example),
        ("sdk", &toml_string(sdk_text)),
        ("sdk_display", sdk_text),
        ("library", &library_name),
    ];
    let files = vec![
        (PathBuf::from("Cargo.toml"), render(CARGO_TOML, &vars)),
        (PathBuf::from("README.md"), render(README, &vars)),
        (PathBuf::from(".gitignore"), render(GITIGNORE, &vars)),
        (PathBuf::from("src/lib.rs"), render(template.lib, &vars)),
        (
            PathBuf::from("tests/plugin.rs"),
            render(template.test, &vars),
        ),
    ];
    Ok(Plan {
        root,
        library,
        files,
    })
}

/// Writes the plan's files; removes the crate's directory again when a write fails.
fn write(plan: &Plan) -> anyhow::Result<()> {
    if let Some(parent) = plan.root.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create `{}`", parent.display()))?;
    }
    // create_dir, not create_dir_all: a directory that appeared since the plan is not ours.
    std::fs::create_dir(&plan.root).map_err(|err| {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            fail(
                Class::Exists,
                format!(
                    "`{}` exists already; nothing was written",
                    plan.root.display()
                ),
            )
        } else {
            anyhow::Error::new(err).context(format!("failed to create `{}`", plan.root.display()))
        }
    })?;
    let written = plan.files.iter().try_for_each(|(path, contents)| {
        let path = plan.root.join(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("failed to create `{}`", dir.display()))?;
        }
        std::fs::write(&path, contents)
            .with_context(|| format!("failed to write `{}`", path.display()))
    });
    if written.is_err() {
        // Best effort: the error that matters is the write's.
        let _ = std::fs::remove_dir_all(&plan.root);
    }
    written
}

/// Returns the SDK the launcher was built from, when that checkout is still there.
fn built_from_sdk() -> anyhow::Result<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("sdk");
    if is_sdk(&sdk) {
        return canonical(&sdk);
    }
    Err(Failure::new(
        Class::Usage,
        format!(
            "this launcher was built from a checkout whose SDK is no longer at `{}`; say where \
             the SDK is with --sdk",
            sdk.display()
        ),
    )
    .hint("pass --sdk with the `sdk/` directory of a launcher checkout")
    .into())
}

/// Returns `sdk` made absolute, when it is the SDK's directory.
fn checked_sdk(sdk: &Path) -> anyhow::Result<PathBuf> {
    if is_sdk(sdk) {
        return canonical(sdk);
    }
    Err(Failure::new(
        Class::Usage,
        format!(
            "`{}` is not the launcher SDK: it has no Cargo.toml of the package `launcher-sdk`",
            sdk.display()
        ),
    )
    .hint("pass --sdk with the `sdk/` directory of a launcher checkout")
    .into())
}

/// Returns whether `dir` holds the manifest of the `launcher-sdk` package.
fn is_sdk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|manifest| manifest.contains("name = \"launcher-sdk\""))
}

fn canonical(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(dir).with_context(|| format!("failed to resolve `{}`", dir.display()))
}

/// Returns the Rust type name for plugin `name`: `my-tool` becomes `MyTool`.
fn type_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for part in name.split('-') {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    // The one name that turns into a keyword.
    if out == "Self" {
        out.push_str("Plugin");
    }
    out
}

/// Returns `s` as a TOML basic string, quotes included.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Fills `{{key}}` placeholders with their values.
fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (key, value) in vars {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdk() -> PathBuf {
        built_from_sdk().expect("the tests run in a checkout")
    }

    fn class_of(err: &anyhow::Error) -> Class {
        err.downcast_ref::<Failure>().expect("a Failure").class
    }

    #[test]
    fn every_placeholder_is_filled_for_every_kind() {
        let parent = tempfile::tempdir().unwrap();
        for kind in [
            TemplateKind::Text,
            TemplateKind::Image,
            TemplateKind::Audio,
            TemplateKind::Video,
        ] {
            let plan = plan("my-tool2", kind, &sdk(), parent.path()).unwrap();
            for (path, contents) in &plan.files {
                assert!(
                    !contents.contains("{{") && !contents.contains("}}"),
                    "{kind:?} {}: {contents}",
                    path.display()
                );
            }
            let files: std::collections::BTreeMap<_, _> = plan.files.into_iter().collect();
            let cargo = &files[Path::new("Cargo.toml")];
            assert!(
                cargo.contains("name = \"launcher-plugin-my-tool2\""),
                "{cargo}"
            );
            assert!(cargo.contains("crate-type = [\"cdylib\", \"rlib\"]"));
            assert!(!cargo.contains("http"), "{cargo}");
            let lib = &files[Path::new("src/lib.rs")];
            assert!(lib.contains("Manifest::new(\"my-tool2\""), "{lib}");
            assert!(lib.contains("export_plugin!(MyTool2);"), "{lib}");
            let test = &files[Path::new("tests/plugin.rs")];
            assert!(test.contains("use launcher_plugin_my_tool2::"), "{test}");
        }
    }

    #[test]
    fn the_library_name_gives_back_the_plugin_name() {
        let parent = tempfile::tempdir().unwrap();
        let plan = plan("my-tool", TemplateKind::Text, &sdk(), parent.path()).unwrap();
        let file = plan.library.file_name().unwrap().to_str().unwrap();
        // What the host's discovery does with a library file name.
        let stem = file
            .strip_prefix(std::env::consts::DLL_PREFIX)
            .and_then(|f| f.strip_suffix(std::env::consts::DLL_SUFFIX))
            .and_then(|f| f.strip_prefix("launcher_plugin_"))
            .unwrap();
        assert_eq!(stem.replace('_', "-"), "my-tool");
        assert_eq!(plan.root, parent.path().join("my-tool"));
    }

    #[test]
    fn the_sdk_path_is_written_as_a_toml_string() {
        let parent = tempfile::tempdir().unwrap();
        let odd = Path::new("/opt/a \"quoted\" dir\\sdk");
        let plan = plan("demo", TemplateKind::Text, odd, parent.path()).unwrap();
        let cargo: toml::Table = toml::from_str(&plan.files[0].1).unwrap();
        let path = &cargo["dependencies"]["launcher-sdk"]["path"];
        assert_eq!(path.as_str(), odd.to_str());
        let dev = &cargo["dev-dependencies"]["launcher-sdk"];
        assert_eq!(dev["features"].as_array().unwrap().len(), 1);
        assert_eq!(dev["features"][0].as_str(), Some("testing"));
        assert!(cargo.contains_key("workspace"));
    }

    #[test]
    fn names_that_are_not_identifiers_are_refused() {
        let parent = tempfile::tempdir().unwrap();
        for bad in ["", "Demo", "my_tool", "1tool", "-tool", "tool!", "../tool"] {
            let err = plan(bad, TemplateKind::Text, &sdk(), parent.path()).unwrap_err();
            assert_eq!(class_of(&err), Class::Usage, "{bad}");
            assert!(err.to_string().contains("cannot be a plugin name"), "{err}");
        }
        assert!(launcher_sdk::is_identifier("tool-2"));
    }

    #[test]
    fn an_existing_directory_is_refused_and_left_alone() {
        let parent = tempfile::tempdir().unwrap();
        let existing = parent.path().join("demo");
        std::fs::create_dir(&existing).unwrap();
        std::fs::write(existing.join("keep"), "mine").unwrap();
        let err = plan("demo", TemplateKind::Text, &sdk(), parent.path()).unwrap_err();
        assert_eq!(class_of(&err), Class::Exists);
        assert!(err.to_string().contains("exists already"), "{err}");
        assert_eq!(
            std::fs::read_to_string(existing.join("keep")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn written_files_land_under_the_new_directory() {
        let parent = tempfile::tempdir().unwrap();
        let plan = plan(
            "demo",
            TemplateKind::Audio,
            &sdk(),
            &parent.path().join("new"),
        )
        .unwrap();
        write(&plan).unwrap();
        for (path, contents) in &plan.files {
            assert_eq!(
                &std::fs::read_to_string(plan.root.join(path)).unwrap(),
                contents
            );
        }
        // A second run finds the directory and refuses.
        let err = write(&plan).unwrap_err();
        assert_eq!(class_of(&err), Class::Exists);
    }

    #[test]
    fn a_directory_that_is_not_the_sdk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = checked_sdk(dir.path()).unwrap_err();
        assert_eq!(class_of(&err), Class::Usage);
        assert!(err.to_string().contains("is not the launcher SDK"), "{err}");
        assert_eq!(checked_sdk(&sdk()).unwrap(), sdk());
    }

    #[test]
    fn type_names_are_camel_case() {
        assert_eq!(type_name("demo"), "Demo");
        assert_eq!(type_name("my-tool-2"), "MyTool2");
        assert_eq!(type_name("a1-b"), "A1B");
        assert_eq!(type_name("self"), "SelfPlugin");
    }
}
