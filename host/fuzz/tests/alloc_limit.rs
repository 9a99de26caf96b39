//! The targets' allocator turns an allocation past `MAX_ALLOCATION` into an
//! abort naming it (a finding), instead of the memory being reserved.

use std::process::Command;

#[test]
fn an_allocation_past_the_limit_aborts_naming_it() {
    if std::env::var_os("BATPAK_FUZZ_ALLOCATE").is_some() {
        // The child: links the fuzz library, so its allocator is in force.
        assert!(batpak_fuzz::MAX_ALLOCATION < 2 << 30);
        let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(2 << 30));
        println!("allocated {}", v.capacity());
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_allocation_past_the_limit_aborts_naming_it",
            "--nocapture",
        ])
        .env("BATPAK_FUZZ_ALLOCATE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child allocated 2 GiB: {err}");
    assert!(
        err.contains("an allocation of 0x0000000080000000 bytes, more than the 1 GiB limit"),
        "{err}"
    );
}
