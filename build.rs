// The binary embeds layers/, roles/, kickstart/ and stages/ (include_dir); rebuild when they
// change. A secret store (`*.secrets/`, made by running ezimg inside the tree) must never be
// embedded: refuse to build with one there.
fn main() {
    for dir in [
        "layers",
        "roles",
        "kickstart",
        "stages",
        "src/cluster/default.toml",
        "src/bundle",
    ] {
        println!("cargo:rerun-if-changed={dir}");
    }
    for dir in ["layers", "roles", "kickstart", "stages"] {
        refuse_stores(std::path::Path::new(dir));
    }
    // The VM tests (tests/vm_*.rs) are `#[ignore]`d unless EZIMG_VM_TESTS=1, so `cargo test`
    // reports them as ignored rather than as passed; libtest has no runtime skip, hence a cfg.
    println!("cargo:rerun-if-env-changed=EZIMG_VM_TESTS");
    println!("cargo:rustc-check-cfg=cfg(ezimg_vm_tests)");
    if std::env::var("EZIMG_VM_TESTS").as_deref() == Ok("1") {
        println!("cargo:rustc-cfg=ezimg_vm_tests");
    }
    // The slow tier (a real package compiled under TCG, ~15 minutes): EZIMG_VM_SLOW=1 as well.
    println!("cargo:rerun-if-env-changed=EZIMG_VM_SLOW");
    println!("cargo:rustc-check-cfg=cfg(ezimg_vm_slow)");
    if std::env::var("EZIMG_VM_TESTS").as_deref() == Ok("1")
        && std::env::var("EZIMG_VM_SLOW").as_deref() == Ok("1")
    {
        println!("cargo:rustc-cfg=ezimg_vm_slow");
    }
}

fn refuse_stores(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.extension().is_some_and(|x| x == "secrets") {
                panic!(
                    "{} looks like an ezimg secret store: move it out of the tree, it would be \
                     embedded in the binary",
                    p.display()
                );
            }
            refuse_stores(&p);
        }
    }
}
