//! Links `ambient-mcp` with packed relative relocations (DT_RELR) on
//! glibc Linux: the position-independent binary carries ~31 000 relative
//! relocations, 750 KiB as classic RELA entries that the loader reads at
//! every start (and that stay resident), a few KiB as RELR.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bin=ambient-mcp=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
