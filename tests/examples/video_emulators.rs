//! The emulators of the four video services as one process, for trying the adapters by hand
//! without keys or money: `cargo run -p launcher-testkit --example video_emulators`.
//!
//! Prints one `NAME URL` line per service (runway, kling, replicate, deepbrain), with the keys
//! they accept on the line before, then serves until stdin closes. Point an adapter at one with
//! its base-URL variable (`RUNWAY_BASE_URL`, `KLING_BASE_URL`, `REPLICATE_BASE_URL`,
//! `DEEPBRAIN_BASE_URL`). Tasks move one state per poll, so a job ends after a few polls.

use std::io::{BufRead, Write};

use launcher_testkit::emulators::deepbrain::DeepBrainEmulator;
use launcher_testkit::emulators::kling::KlingEmulator;
use launcher_testkit::emulators::replicate::{ReplicateEmulator, default_models};
use launcher_testkit::emulators::runway::RunwayEmulator;
use launcher_testkit::media::{png, tiny_mp4};

const KEY: &str = "trial-key";
const SECRET: &str = "trial-secret";

fn main() {
    let runway = RunwayEmulator::start(KEY);
    let kling = KlingEmulator::start(KEY, SECRET);
    let replicate = ReplicateEmulator::start(
        KEY,
        default_models(png(64, 64, [200, 120, 40]), tiny_mp4(2)),
    );
    let deepbrain = DeepBrainEmulator::start(KEY, tiny_mp4(2));
    let mut out = std::io::stdout().lock();
    writeln!(out, "keys {KEY} (Kling secret key {SECRET})").expect("write the keys");
    for (name, url) in [
        ("runway", runway.url()),
        ("kling", kling.url()),
        ("replicate", replicate.url()),
        ("deepbrain", deepbrain.url()),
    ] {
        writeln!(out, "{name} {url}").expect("write a URL");
    }
    out.flush().expect("flush the URLs");
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
}
