//! libFuzzer entry for [`batpak_fuzz::http`] (built by tools/fuzz.sh).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| batpak_fuzz::http::run(data));
