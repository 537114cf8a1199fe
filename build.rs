// The binary embeds layers/, roles/ and kickstart/ (include_dir); rebuild when they change.
fn main() {
    for dir in [
        "layers",
        "roles",
        "kickstart",
        "src/cluster/default.toml",
        "src/bundle",
    ] {
        println!("cargo:rerun-if-changed={dir}");
    }
}
