//! Records the target triple the crate is compiled for, so the store and the index agree on it
//! exactly (`x86_64-unknown-linux-gnu`, not a guess from `std::env::consts`).

fn main() {
    let target = std::env::var("TARGET").expect("cargo sets TARGET for build scripts");
    println!("cargo:rustc-env=LAUNCHER_REGISTRY_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
