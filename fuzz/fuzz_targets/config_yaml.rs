//! YAML written by users: `Config::parse` (`config/bento.yaml`) and the image
//! descriptions (`config/images/*.yaml`, parsed as `ImageSpec` by
//! `Config::load`). Checked: no panic, no runaway allocation (libFuzzer's
//! `-malloc_limit_mb`), and that an empty or blank file is the defaults.
#![no_main]

use bento::config::{Config, ImageSpec};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Config::parse(text, Path::new("fuzz/bento.yaml"));
    if text.trim().is_empty() {
        assert!(parsed.is_ok(), "a blank file is the defaults");
    }
    if let Err(e) = &parsed {
        let _ = e.to_string();
    }
    if let Ok(spec) = serde_yaml::from_str::<ImageSpec>(text) {
        let _ = spec.tag();
    }
});
