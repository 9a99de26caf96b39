//! libFuzzer entry for [`batpak_fuzz::batch`] (built by tools/fuzz.sh).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| batpak_fuzz::batch::run(data));
