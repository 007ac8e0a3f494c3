//! Builds the kernel programs (`sensor-ebpf`) for `bpfel-unknown-none` through aya-build and leaves the
//! object in `OUT_DIR`, where `capture::ebpf` embeds it.
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let root_dir = std::path::Path::new(&manifest_dir)
        .join("../sensor-ebpf")
        .canonicalize()
        .context("sensor-ebpf directory")?;
    let root_dir = root_dir.to_str().context("non-UTF-8 path")?.to_owned();
    println!("cargo::rerun-if-changed=../podtap-common/src");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "podtap-ebpf",
            root_dir: &root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
}
