//! Checks `include/launcher_plugin.h` against the Rust definitions in `launcher_sdk::abi`.
//!
//! The header is written by hand, so nothing but this test keeps it in step: it compiles a C
//! program that prints every size, offset and constant the header defines, runs it, and
//! compares each line with what Rust says. A C compiler (`cc`, or `$CC`) is required; it is
//! installed wherever the SDK is built and tested.

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use launcher_sdk::abi::{
    self, API_SIZE_2_0, Buffer, Bytes, HEADER_SIZE_2_0, PluginApi, PluginHeader, SINK_SIZE_2_0,
    Sink,
};

/// The C side: one `name value` line per fact.
const PROGRAM: &str = r#"
#include <stdio.h>
#include <string.h>
#include "launcher_plugin.h"

#define SIZE(t) printf("sizeof %s %zu\n", #t, sizeof(t))
#define OFFSET(t, f) printf("offsetof %s.%s %zu\n", #t, #f, offsetof(t, f))
#define VALUE(m) printf("value %s %lld\n", #m, (long long)(m))
#define TEXT(m) printf("text %s %s\n", #m, m)

int main(void) {
    size_t i;
    SIZE(LauncherPluginHeader);
    OFFSET(LauncherPluginHeader, magic);
    OFFSET(LauncherPluginHeader, abi_major);
    OFFSET(LauncherPluginHeader, abi_minor);
    OFFSET(LauncherPluginHeader, size);

    SIZE(LauncherBytes);
    OFFSET(LauncherBytes, ptr);
    OFFSET(LauncherBytes, len);

    SIZE(LauncherBuffer);
    OFFSET(LauncherBuffer, ptr);
    OFFSET(LauncherBuffer, len);

    SIZE(LauncherSink);
    OFFSET(LauncherSink, size);
    OFFSET(LauncherSink, ctx);
    OFFSET(LauncherSink, open_output);
    OFFSET(LauncherSink, write_output);
    OFFSET(LauncherSink, close_output);
    OFFSET(LauncherSink, progress);
    OFFSET(LauncherSink, log);
    OFFSET(LauncherSink, is_cancelled);
    OFFSET(LauncherSink, checkpoint);
    OFFSET(LauncherSink, confirm);

    SIZE(LauncherPluginApi);
    OFFSET(LauncherPluginApi, size);
    OFFSET(LauncherPluginApi, abi_minor);
    OFFSET(LauncherPluginApi, manifest);
    OFFSET(LauncherPluginApi, create);
    OFFSET(LauncherPluginApi, invoke);
    OFFSET(LauncherPluginApi, destroy);
    OFFSET(LauncherPluginApi, free_buffer);
    OFFSET(LauncherPluginApi, describe);

    SIZE(LauncherInitFn);

    VALUE(LAUNCHER_ABI_MAJOR);
    VALUE(LAUNCHER_ABI_MINOR);
    VALUE(LAUNCHER_HEADER_SIZE_2_0);
    VALUE(LAUNCHER_API_SIZE_2_0);
    VALUE(LAUNCHER_SINK_SIZE_2_0);
    VALUE(LAUNCHER_SINK_SIZE_2_1);
    VALUE(LAUNCHER_STATUS_OK);
    VALUE(LAUNCHER_STATUS_ERROR);
    VALUE(LAUNCHER_STATUS_PANIC);
    VALUE(LAUNCHER_SINK_OK);
    VALUE(LAUNCHER_SINK_STOP);
    VALUE(LAUNCHER_SINK_REFUSED);
    VALUE(LAUNCHER_SINK_UNSUPPORTED);
    VALUE(LAUNCHER_MAGIC_LEN);
    VALUE(sizeof(LAUNCHER_MAGIC));
    VALUE(LAUNCHER_COVERS(LAUNCHER_SINK_SIZE_2_0, LauncherSink, checkpoint));
    VALUE(LAUNCHER_COVERS(sizeof(LauncherSink), LauncherSink, checkpoint));
    VALUE(LAUNCHER_COVERS(LAUNCHER_SINK_SIZE_2_1, LauncherSink, confirm));
    VALUE(LAUNCHER_COVERS(sizeof(LauncherSink), LauncherSink, confirm));
    VALUE(LAUNCHER_COVERS(LAUNCHER_API_SIZE_2_0, LauncherPluginApi, describe));
    VALUE(LAUNCHER_COVERS(sizeof(LauncherPluginApi), LauncherPluginApi, describe));
    TEXT(LAUNCHER_HEADER_SYMBOL);
    TEXT(LAUNCHER_INIT_SYMBOL);
    printf("text LAUNCHER_MAGIC_HEX ");
    for (i = 0; i < sizeof(LAUNCHER_MAGIC); i++) {
        printf("%02x", (unsigned)(unsigned char)LAUNCHER_MAGIC[i]);
    }
    printf("\n");
    return 0;
}
"#;

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compiles and runs [`PROGRAM`], returning its lines as a map from fact to value.
fn c_facts() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c_header");
    std::fs::create_dir_all(&dir).expect("create the test's temporary directory");
    let source = dir.join("facts.c");
    let binary = dir.join(if cfg!(windows) { "facts.exe" } else { "facts" });
    std::fs::write(&source, PROGRAM).expect("write the C program");

    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    // Strict C99 with warnings as errors, so the header stays usable by any C99 compiler.
    let compiled = Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-I"])
        .arg(sdk_dir().join("include"))
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the C compiler `{}` ({e}); this test needs one: install cc, or set \
                 CC to a C compiler",
                cc.to_string_lossy()
            )
        });
    assert!(
        compiled.status.success(),
        "launcher_plugin.h does not compile as C99:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );

    let ran = Command::new(&binary).output().expect("run the C program");
    assert!(ran.status.success(), "the C program failed: {ran:?}");
    String::from_utf8(ran.stdout)
        .expect("the C program prints ASCII")
        .lines()
        .map(|line| {
            let (fact, value) = line.rsplit_once(' ').expect("a `fact value` line");
            (fact.to_string(), value.to_string())
        })
        .collect()
}

/// Returns the facts as Rust sees them, in the C program's words.
fn rust_facts() -> BTreeMap<String, String> {
    let mut facts = BTreeMap::new();
    let mut put = |fact: &str, value: String| {
        facts.insert(fact.to_string(), value);
    };
    macro_rules! size {
        ($c:literal, $t:ty) => {
            put(concat!("sizeof ", $c), size_of::<$t>().to_string())
        };
    }
    macro_rules! offset {
        ($c:literal, $t:ty, $f:ident) => {
            put(
                concat!("offsetof ", $c, ".", stringify!($f)),
                offset_of!($t, $f).to_string(),
            )
        };
    }
    macro_rules! value {
        ($c:literal, $v:expr) => {
            put(concat!("value ", $c), ($v as i64).to_string())
        };
    }

    size!("LauncherPluginHeader", PluginHeader);
    offset!("LauncherPluginHeader", PluginHeader, magic);
    offset!("LauncherPluginHeader", PluginHeader, abi_major);
    offset!("LauncherPluginHeader", PluginHeader, abi_minor);
    offset!("LauncherPluginHeader", PluginHeader, size);

    size!("LauncherBytes", Bytes);
    offset!("LauncherBytes", Bytes, ptr);
    offset!("LauncherBytes", Bytes, len);

    size!("LauncherBuffer", Buffer);
    offset!("LauncherBuffer", Buffer, ptr);
    offset!("LauncherBuffer", Buffer, len);

    size!("LauncherSink", Sink);
    offset!("LauncherSink", Sink, size);
    offset!("LauncherSink", Sink, ctx);
    offset!("LauncherSink", Sink, open_output);
    offset!("LauncherSink", Sink, write_output);
    offset!("LauncherSink", Sink, close_output);
    offset!("LauncherSink", Sink, progress);
    offset!("LauncherSink", Sink, log);
    offset!("LauncherSink", Sink, is_cancelled);
    offset!("LauncherSink", Sink, checkpoint);
    offset!("LauncherSink", Sink, confirm);

    size!("LauncherPluginApi", PluginApi);
    offset!("LauncherPluginApi", PluginApi, size);
    offset!("LauncherPluginApi", PluginApi, abi_minor);
    offset!("LauncherPluginApi", PluginApi, manifest);
    offset!("LauncherPluginApi", PluginApi, create);
    offset!("LauncherPluginApi", PluginApi, invoke);
    offset!("LauncherPluginApi", PluginApi, destroy);
    offset!("LauncherPluginApi", PluginApi, free_buffer);
    offset!("LauncherPluginApi", PluginApi, describe);

    size!("LauncherInitFn", abi::InitFn);

    value!("LAUNCHER_ABI_MAJOR", abi::ABI_MAJOR);
    value!("LAUNCHER_ABI_MINOR", abi::ABI_MINOR);
    value!("LAUNCHER_HEADER_SIZE_2_0", HEADER_SIZE_2_0);
    value!("LAUNCHER_API_SIZE_2_0", API_SIZE_2_0);
    value!("LAUNCHER_SINK_SIZE_2_0", SINK_SIZE_2_0);
    value!("LAUNCHER_SINK_SIZE_2_1", abi::SINK_SIZE_2_1);
    value!("LAUNCHER_STATUS_OK", abi::STATUS_OK);
    value!("LAUNCHER_STATUS_ERROR", abi::STATUS_ERROR);
    value!("LAUNCHER_STATUS_PANIC", abi::STATUS_PANIC);
    value!("LAUNCHER_SINK_OK", abi::SINK_OK);
    value!("LAUNCHER_SINK_STOP", abi::SINK_STOP);
    value!("LAUNCHER_SINK_REFUSED", abi::SINK_REFUSED);
    value!("LAUNCHER_SINK_UNSUPPORTED", abi::SINK_UNSUPPORTED);
    value!("LAUNCHER_MAGIC_LEN", abi::MAGIC.len());
    value!("sizeof(LAUNCHER_MAGIC)", abi::MAGIC.len());
    // A 2.0 table lacks the minor-1 fields; a current one has them.
    value!(
        "LAUNCHER_COVERS(LAUNCHER_SINK_SIZE_2_0, LauncherSink, checkpoint)",
        0
    );
    value!(
        "LAUNCHER_COVERS(sizeof(LauncherSink), LauncherSink, checkpoint)",
        1
    );
    value!(
        "LAUNCHER_COVERS(LAUNCHER_SINK_SIZE_2_1, LauncherSink, confirm)",
        0
    );
    value!(
        "LAUNCHER_COVERS(sizeof(LauncherSink), LauncherSink, confirm)",
        1
    );
    value!(
        "LAUNCHER_COVERS(LAUNCHER_API_SIZE_2_0, LauncherPluginApi, describe)",
        0
    );
    value!(
        "LAUNCHER_COVERS(sizeof(LauncherPluginApi), LauncherPluginApi, describe)",
        1
    );
    let symbol = |bytes: &[u8]| {
        std::str::from_utf8(bytes.strip_suffix(b"\0").expect("NUL-terminated"))
            .expect("ASCII symbol")
            .to_string()
    };
    put("text LAUNCHER_HEADER_SYMBOL", symbol(abi::HEADER_SYMBOL));
    put("text LAUNCHER_INIT_SYMBOL", symbol(abi::INIT_SYMBOL));
    put(
        "text LAUNCHER_MAGIC_HEX",
        abi::MAGIC.iter().map(|b| format!("{b:02x}")).collect(),
    );
    facts
}

#[test]
fn the_c_header_matches_the_rust_abi() {
    let c = c_facts();
    let rust = rust_facts();
    let mismatches: Vec<String> = rust
        .iter()
        .filter(|(fact, value)| c.get(*fact) != Some(value))
        .map(|(fact, value)| {
            format!(
                "{fact}: Rust says {value}, C says {}",
                c.get(fact).map_or("nothing", String::as_str)
            )
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "launcher_plugin.h disagrees with launcher_sdk::abi:\n{}",
        mismatches.join("\n")
    );
    let unchecked: Vec<&String> = c.keys().filter(|fact| !rust.contains_key(*fact)).collect();
    assert!(unchecked.is_empty(), "facts the test forgot: {unchecked:?}");
}
