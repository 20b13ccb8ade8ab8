//! A plugin written in C against `sdk/include/launcher_plugin.h`, speaking only ABI 2.0: built
//! with `cc`, installed, listed and run by a host whose tables have fields minor 1 appended.

// The example is built as a shared library with a Unix C compiler's flags.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::Command;

use launcher_testkit::test_context;

/// Builds `sdk/examples/c-plugin/hello.c` into `dir` under the file name that makes it the
/// plugin `hello-c`, with warnings as errors so the example stays clean C99.
fn build_hello_c(dir: &Path) -> PathBuf {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    let library = dir.join(format!(
        "{}launcher_plugin_hello_c{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror"])
        .args(["-shared", "-fPIC", "-I"])
        .arg(sdk.join("include"))
        .arg("-o")
        .arg(&library)
        .arg(sdk.join("examples/c-plugin/hello.c"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the C compiler `{}` ({e}); this test needs one: install cc, or set \
                 CC to a C compiler",
                cc.to_string_lossy()
            )
        });
    assert!(
        out.status.success(),
        "hello.c does not build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    library
}

#[test]
fn a_plugin_written_in_c_for_abi_2_0_installs_lists_and_runs() {
    let ctx = test_context!();
    let build = tempfile::tempdir().unwrap();
    let library = build_hello_c(build.path());

    let install = ctx.run(["install", "--path", library.to_str().unwrap()]);
    install.success();
    assert!(
        install.stderr.contains("installed hello-c 0.1.0"),
        "{}",
        install.stderr
    );

    let list = ctx.run(["list"]);
    list.success();
    assert!(list.stdout.contains("hello-c"), "{}", list.stdout);
    let listed = ctx.run(["list", "--json"]).json();
    let tool = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "hello-c")
        .cloned()
        .unwrap_or_else(|| panic!("hello-c is not listed: {listed:#}"));
    assert_eq!(tool["origin"], "store");

    let run = ctx.run(["run", "hello-c", "hi"]);
    run.success();
    assert_eq!(run.stdout, "Hello from C! You said: hi\n");

    // The prompt reaches the C scanner as JSON: quotes, backslashes and non-ASCII text are
    // escaped on the way in and must come out as typed.
    let tricky = "say \"hi\" \\ to the caf\u{e9} \u{1F600}";
    let run = ctx.run(["run", "hello-c", "--prompt", tricky]);
    run.success();
    assert_eq!(run.stdout, format!("Hello from C! You said: {tricky}\n"));
}
