//! The Azure TTS emulator as a process, for `bench/run`: a benchmark needs the same server for
//! `launcher` and for `curl`, so it cannot live inside either.
//!
//! Usage: `azure_emulator <key>`. Prints the base URL on one line, then reads commands on
//! stdin until it closes:
//! - `ssml <path>`: writes the body of the last synthesis request to `path`, then prints `ok`
//!   (so a benchmark can send exactly what the plugin sent);
//! - `count`: prints how many synthesis requests were answered so far.

use std::io::{BufRead, Write};

use launcher_testkit::emulators::azure::AzureEmulator;

fn main() {
    let key = std::env::args()
        .nth(1)
        .expect("usage: azure_emulator <subscription key>");
    let emulator = AzureEmulator::start(&key);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", emulator.url()).expect("write the URL");
    out.flush().expect("flush the URL");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let reply = match line.split_once(' ') {
            Some(("ssml", path)) => match emulator.synthesis_requests().last() {
                Some(req) => match std::fs::write(path, &req.body) {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("error: {e}"),
                },
                None => "error: no synthesis request yet".to_string(),
            },
            _ if line == "count" => emulator.synthesis_requests().len().to_string(),
            _ => format!("error: unknown command `{line}`"),
        };
        writeln!(out, "{reply}").expect("write a reply");
        out.flush().expect("flush a reply");
    }
}
