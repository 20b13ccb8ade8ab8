//! Trust end to end: a tool id belongs to one plugin, settings stay with the plugin they were
//! configured for, a plugin never takes a task unannounced, and text from registries and
//! plugins reaches the terminal escaped. The plugins are the `impostor` fixture, published
//! under the name, tool id, priority and description each test gives it.

use std::path::PathBuf;

use launcher_testkit::cli::TestContext;
use launcher_testkit::test_context;

/// A local registry directory with a signing key, added to the context.
struct LocalRegistry {
    dir: tempfile::TempDir,
}

impl LocalRegistry {
    /// Makes a registry and adds it as `test`.
    fn new(ctx: &TestContext) -> LocalRegistry {
        LocalRegistry::named(ctx, "test")
    }

    fn named(ctx: &TestContext, name: &str) -> LocalRegistry {
        let registry = LocalRegistry {
            dir: tempfile::tempdir().unwrap(),
        };
        ctx.run(["registry", "keygen", registry.key().to_str().unwrap()])
            .success();
        std::fs::create_dir_all(registry.index()).unwrap();
        ctx.run([
            "registry",
            "add",
            name,
            registry.index().to_str().unwrap(),
            "--trust",
            registry.key().with_extension("pub").to_str().unwrap(),
        ])
        .success();
        registry
    }

    fn index(&self) -> PathBuf {
        self.dir.path().join("index")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("publisher.key")
    }

    /// Publishes the impostor fixture as the context's environment describes it.
    fn publish_impostor(&self, ctx: &TestContext) {
        let library = ctx.built_library("launcher_fixture_impostor");
        ctx.run([
            "publish",
            library.to_str().unwrap(),
            "--index",
            self.index().to_str().unwrap(),
            "--key",
            self.key().to_str().unwrap(),
        ])
        .success();
    }
}

/// Makes the impostor fixture plugin `name`, declaring tool `tool`, for every command.
fn impostor(ctx: &mut TestContext, name: &str, tool: &str) {
    ctx.env("LAUNCHER_FIXTURE_NAME", name);
    ctx.env("LAUNCHER_FIXTURE_TOOL", tool);
}

/// Returns the plugin that provides tool `id`, as `list --json` says.
fn provider(ctx: &TestContext, id: &str) -> String {
    let list = ctx.run(["list", "--json"]).json();
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .map(|t| t["plugin"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no tool `{id}` in {list:#}"))
}

/// Returns the settings the impostor reported it received, from the file its job wrote.
fn received(ctx: &TestContext, file: &str) -> serde_json::Value {
    let bytes = std::fs::read(ctx.work_file(file)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn a_plugin_taking_a_bundled_tool_id_is_refused_and_never_gets_its_secret_unasked() {
    let mut ctx = test_context!();
    impostor(&mut ctx, "azure-thief", "azure-tts");
    let registry = LocalRegistry::new(&ctx);
    registry.publish_impostor(&ctx);
    ctx.config(
        "[tools.azure-tts]\nregion = \"westeurope\"\nkey_command = \"echo sekrit-from-command\"\n",
    );

    let refused = ctx.run(["install", "azure-thief"]);
    refused.expect_code(14);
    assert!(
        refused
            .stderr
            .contains("it declares `azure-tts`, which plugin `azure-tts` (bundled) provides")
            && refused.stderr.contains(
                "`launcher install azure-thief --replace` installs it in place of `azure-tts`"
            ),
        "{refused:#?}"
    );
    assert_eq!(provider(&ctx, "azure-tts"), "azure-tts");
    assert!(!ctx.home.path().join("plugins/azure-thief").exists());

    let replaced = ctx.run(["install", "azure-thief", "--replace"]);
    replaced.success();
    assert!(
        replaced.stderr.contains(
            "tool `azure-tts` of plugin `azure-tts` (bundled) is replaced by plugin `azure-thief`'s; the settings configured for `azure-tts` stay with plugin `azure-tts` (bundled)"
        ),
        "{replaced:#?}"
    );
    assert_eq!(provider(&ctx, "azure-tts"), "azure-thief");

    // Neither the secret from the key command nor any other setting reaches the new plugin.
    let run = ctx.run(["run", "azure-tts", "--text", "hi", "-o", "out.wav"]);
    run.expect_code(14);
    assert!(
        run.stderr.contains(
            "the settings of tool `azure-tts` were configured for plugin `azure-tts` (bundled), and `azure-tts` is now provided by plugin `azure-thief` (registry `test`)"
        ) && run.stderr.contains("launcher keys bind azure-tts"),
        "{run:#?}"
    );
    assert!(!run.stderr.contains("sekrit"), "{run:#?}");
    assert!(!ctx.work_file("out.wav").exists());
    // A secret in the environment is held back as well.
    let env = ctx.run_with_env(
        ["run", "azure-tts", "--text", "hi", "-o", "out.wav"],
        &[("AZURE_SPEECH_KEY", "env-sekrit")],
    );
    env.expect_code(14);
    assert!(!ctx.work_file("out.wav").exists());

    // With consent, the settings go to the plugin that provides the tool now.
    let bind = ctx.run(["keys", "bind", "azure-tts"]);
    bind.success();
    assert!(
        bind.stderr
            .contains("now go to plugin `azure-thief` (registry `test`); they went to plugin `azure-tts` (bundled)"),
        "{bind:#?}"
    );
    ctx.run(["run", "azure-tts", "--text", "hi", "-o", "out.wav"])
        .success();
    assert_eq!(
        received(&ctx, "out.wav"),
        serde_json::json!({"key": "sekrit-from-command", "region": "westeurope"})
    );
}

#[test]
fn a_plugin_dropped_beside_another_with_the_same_tool_id_is_named_and_gets_no_secret() {
    let mut ctx = test_context!();
    impostor(&mut ctx, "azure-thief", "azure-tts");
    ctx.add_plugin("launcher_fixture_impostor", "azure-thief");
    ctx.config("[tools.azure-tts]\nkey_command = \"echo sekrit-from-command\"\n");
    let list = ctx.run(["list"]);
    assert!(
        list.stderr.contains(
            "tool `azure-tts` is declared by two plugins: `azure-thief` (on LAUNCHER_PLUGIN_PATH) is used and `azure-tts` (bundled) is ignored"
        ),
        "{list:#?}"
    );
    // Nothing was ever bound, and two plugins claim the tool: the first use does not bind.
    let run = ctx.run(["run", "azure-tts", "--text", "hi", "-o", "out.wav"]);
    run.expect_code(14);
    assert!(
        run.stderr
            .contains("tool `azure-tts` is declared by several plugins (azure-thief, azure-tts)"),
        "{run:#?}"
    );
    assert!(!ctx.work_file("out.wav").exists());
}

#[test]
fn a_registry_copy_of_a_bundled_plugin_supersedes_it_and_keeps_its_settings() {
    let mut ctx = test_context!();
    impostor(&mut ctx, "azure-tts", "azure-tts");
    let registry = LocalRegistry::new(&ctx);
    registry.publish_impostor(&ctx);
    // Storing a key binds the tool's settings to the bundled plugin: a first use.
    ctx.run_with_stdin(["keys", "set", "azure-tts", "key"], b"stored-sekrit\n")
        .success();
    let owners = std::fs::read_to_string(ctx.home.path().join("owners.toml")).unwrap();
    assert!(owners.contains("kind = \"bundled\""), "{owners}");

    let install = ctx.run(["install", "azure-tts@^0.1"]);
    install.success();
    assert!(
        install
            .stderr
            .contains("plugin `azure-tts` now supersedes its bundled copy"),
        "{install:#?}"
    );
    assert_eq!(provider(&ctx, "azure-tts"), "azure-tts");
    ctx.run(["run", "azure-tts", "--text", "hi", "-o", "out.wav"])
        .success();
    assert_eq!(received(&ctx, "out.wav")["key"], "stored-sekrit");
}

#[test]
fn a_plugin_winning_a_task_is_announced_at_install_and_at_the_next_run() {
    let mut ctx = test_context!();
    impostor(&mut ctx, "loud", "loud-tts");
    ctx.env("LAUNCHER_FIXTURE_PRIORITY", "1000");
    let registry = LocalRegistry::new(&ctx);
    registry.publish_impostor(&ctx);
    // The last `tts` job in the history ran with the panicky fixture.
    ctx.add_plugin("launcher_fixture_panicky", "panicky");
    ctx.run([
        "run", "tts", "--tool", "panicky", "--mode", "ok", "--text", "hi", "-o", "a.wav",
    ])
    .success();

    let install = ctx.run(["install", "loud"]);
    install.success();
    assert!(
        install
            .stderr
            .contains("`launcher run tts` now picks tool `loud-tts` of plugin `loud`"),
        "{install:#?}"
    );

    let run = ctx.run(["run", "tts", "--text", "hi", "-o", "b.wav"]);
    run.success();
    assert!(
        run.stderr.contains(
            "`launcher run tts` now picks tool `loud-tts` (plugin `loud`); the last `tts` job ran with `panicky`"
        ),
        "{run:#?}"
    );
    // Told once: the next run picks what the last job used.
    let again = ctx.run(["run", "tts", "--text", "hi", "-o", "c.wav"]);
    again.success();
    assert!(!again.stderr.contains("now picks"), "{again:#?}");
}

/// Escape sequences setting a window title and a color, and a right-to-left override.
const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[31mred\u{202e}evil";
const ESCAPED: &str = "\\u{1b}]0;pwned\\u{7}\\u{1b}[31mred\\u{202e}evil";

#[track_caller]
fn assert_escaped(what: &str, text: &str) {
    assert!(
        text.contains(ESCAPED),
        "{what} does not show the escapes:\n{text}"
    );
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{202e}') && !text.contains('\u{7}'),
        "{what} printed raw control characters:\n{text:?}"
    );
}

#[test]
fn hostile_descriptions_reach_the_terminal_escaped_and_json_exact() {
    let mut ctx = test_context!();
    impostor(&mut ctx, "hostile", "hostile");
    ctx.env("LAUNCHER_FIXTURE_DESCRIPTION", HOSTILE);
    let registry = LocalRegistry::new(&ctx);
    registry.publish_impostor(&ctx);

    let search = ctx.run(["search", "hostile"]);
    search.success();
    assert_escaped("search", &search.stdout);
    let json = ctx.run(["search", "hostile", "--json"]);
    assert_eq!(json.json()[0]["description"], HOSTILE);

    ctx.run(["install", "hostile"]).success();
    let info = ctx.run(["info", "hostile"]);
    info.success();
    assert_escaped("info", &info.stdout);
    let info_json = ctx.run(["info", "hostile", "--json"]);
    assert_eq!(info_json.json()["description"], HOSTILE);
    let help = ctx.run(["run", "hostile", "--help"]);
    help.success();
    assert_escaped("run --help", &help.stdout);
    // `list` shows no descriptions, but nothing raw may reach it either.
    let list = ctx.run(["list", "--category", "audio"]);
    list.success();
    assert!(list.stdout.contains("hostile"), "{list:#?}");
    assert!(!list.stdout.contains('\u{1b}') && !list.stderr.contains('\u{1b}'));
}

#[test]
fn two_registries_offering_a_name_are_named_and_the_installed_one_is_kept() {
    let mut ctx = test_context!();
    impostor(&mut ctx, "twin", "twin");
    let first = LocalRegistry::named(&ctx, "first");
    let second = LocalRegistry::named(&ctx, "second");
    first.publish_impostor(&ctx);
    second.publish_impostor(&ctx);
    ctx.config("[tools.twin]\nkey = \"sekrit-for-first\"\n");

    let install = ctx.run(["install", "twin"]);
    install.success();
    assert!(
        install.stderr.contains(
            "`twin` is offered by registries `first`, `second`; using `first`, the first of them in the order they were added"
        ),
        "{install:#?}"
    );
    // The first run binds the settings to the copy from `first`.
    ctx.run(["run", "twin", "--text", "hi", "-o", "a.wav"])
        .success();
    assert_eq!(received(&ctx, "a.wav")["key"], "sekrit-for-first");

    // Only an explicit --registry moves the plugin to another registry...
    ctx.run(["install", "twin", "--registry", "second", "--reinstall"])
        .success();
    let again = ctx.run(["install", "twin"]);
    again.success();
    assert!(
        again
            .stderr
            .contains("using `second`, the registry it is installed from"),
        "{again:#?}"
    );
    // ...and the copy from another registry is another plugin as far as settings go.
    let run = ctx.run(["run", "twin", "--text", "hi", "-o", "b.wav"]);
    run.expect_code(14);
    assert!(
        run.stderr.contains(
            "configured for plugin `twin` (registry `first`), and `twin` is now provided by plugin `twin` (registry `second`)"
        ),
        "{run:#?}"
    );
}

#[test]
fn an_update_that_would_take_another_plugins_tool_id_is_refused() {
    let mut ctx = test_context!();
    impostor(&mut ctx, "grower", "grower");
    let registry = LocalRegistry::new(&ctx);
    registry.publish_impostor(&ctx);
    ctx.run(["install", "grower"]).success();
    // Its next version declares the bundled Azure tool's id instead.
    ctx.env("LAUNCHER_FIXTURE_TOOL", "azure-tts");
    ctx.env("LAUNCHER_FIXTURE_VERSION", "0.2.0");
    registry.publish_impostor(&ctx);
    let update = ctx.run(["update", "grower"]);
    update.expect_code(14);
    assert!(
        update.stderr.contains(
            "plugin `grower` was not installed: a tool id belongs to one plugin, and it declares `azure-tts`, which plugin `azure-tts` (bundled) provides"
        ),
        "{update:#?}"
    );
    assert_eq!(provider(&ctx, "azure-tts"), "azure-tts");
    assert_eq!(provider(&ctx, "grower"), "grower");
}

#[test]
fn a_local_library_taking_a_bundled_tool_id_is_refused_unless_it_replaces() {
    let mut ctx = test_context!();
    impostor(&mut ctx, "azure-thief", "azure-tts");
    let library = ctx.built_library("launcher_fixture_impostor");
    let path = library.to_str().unwrap();
    let refused = ctx.run(["install", "--path", path]);
    refused.expect_code(14);
    assert!(
        refused.stderr.contains(
            "plugin `azure-thief` was not installed: a tool id belongs to one plugin, and it declares `azure-tts`, which plugin `azure-tts` (bundled) provides"
        ),
        "{refused:#?}"
    );
    assert_eq!(provider(&ctx, "azure-tts"), "azure-tts");
    let replaced = ctx.run(["install", "--path", path, "--replace"]);
    replaced.success();
    assert!(
        replaced.stderr.contains(
            "tool `azure-tts` of plugin `azure-tts` (bundled) is replaced by plugin `azure-thief`'s"
        ),
        "{replaced:#?}"
    );
    assert_eq!(provider(&ctx, "azure-tts"), "azure-thief");
    // Nothing was configured for the tool, so there is nothing to hold back.
    ctx.run(["run", "azure-tts", "--text", "hi", "-o", "out.wav"])
        .success();
    assert_eq!(received(&ctx, "out.wav"), serde_json::json!({}));
}
