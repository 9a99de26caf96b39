//! libFuzzer entry for [`batpak_fuzz::json`] (built by tools/fuzz.sh).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| batpak_fuzz::json::run(data));
