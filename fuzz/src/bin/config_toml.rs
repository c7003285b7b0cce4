//! The agent's TOML configuration, parsed by the agent's own code (compiled in from ../agent/src).
#![no_main]
#![allow(dead_code, unused_imports)]
use libfuzzer_sys::fuzz_target;

#[path = "../../../agent/src/config.rs"]
mod config;
#[path = "../../../agent/src/events.rs"]
mod events;
#[path = "../../../agent/src/sinks/mod.rs"]
mod sinks;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = config::parse(text, std::path::Path::new("fuzz.toml")) {
        // What is accepted prints as TOML that loads back (`check-config` promises the same configuration).
        match config::parse(&c.to_toml(), std::path::Path::new("printed.toml")) {
            Ok(again) => assert_eq!(again, c, "printed configuration loads differently:\n{}", c.to_toml()),
            Err(e) => panic!("printed configuration does not load: {e}\n{}", c.to_toml()),
        }
    }
    let _ = config::parse_duration(text);
});
