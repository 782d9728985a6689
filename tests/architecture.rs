//! The architecture invariants of `docs/architecture.md` that the crate graph and the
//! source tree can show: checked here so that a change that breaks one fails CI.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The crates in the normal (non-dev, non-build) dependency tree of `package`.
fn dependencies(package: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Crates that carry secret sharing, randomness, ciphers or the network layer.
const CRYPTO_OR_NETWORK: &[&str] = &[
    "qmpc-protocols",
    "qmpc-vm",
    "rand",
    "rand_core",
    "rand_chacha",
    "chacha20",
    "getrandom",
    "aes",
    "rayon",
];

/// The compiler, and the semantics and bytecode crates it builds on, link no cryptography,
/// no randomness and no network layer.
#[test]
fn compiler_links_no_cryptography_and_no_network_layer() {
    assert!(dependencies("qmpc-compiler").contains(&"qmpc-bytecode".to_string()));
    for package in ["qmpc-compiler", "qmpc-semantics", "qmpc-bytecode"] {
        let deps = dependencies(package);
        for banned in CRYPTO_OR_NETWORK {
            assert!(
                !deps.iter().any(|d| d == banned),
                "{package} depends on `{banned}`: {deps:?}"
            );
        }
    }
}

#[test]
fn vm_and_protocols_know_nothing_of_onnx() {
    for package in ["qmpc-vm", "qmpc-protocols"] {
        let deps = dependencies(package);
        assert!(
            !deps.iter().any(|d| d == "qmpc-compiler"),
            "{package} depends on the compiler: {deps:?}"
        );
    }
    // The protocols do not see bytecode either: flat slices and public metadata only.
    let deps = dependencies("qmpc-protocols");
    assert!(
        !deps.iter().any(|d| d == "qmpc-bytecode"),
        "qmpc-protocols depends on the bytecode: {deps:?}"
    );
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every Rust source file below `dirs`, as (path relative to the root, text).
fn sources(dirs: &[&str]) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in dirs {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 30, "the source tree was not found");
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(root).expect("under the root");
            let rel = rel.to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&f).expect("readable source");
            (rel, text)
        })
        .collect()
}

/// The directories of every crate's own code.
const CODE: &[&str] = &[
    "src",
    "semantics/src",
    "bytecode/src",
    "compiler/src",
    "vm/src",
    "runtime-protocols/src",
    "session/src",
    "python/src",
];

/// Only the network layer (`runtime-protocols/src/net/`) and the session library's party
/// set-up, which binds the listeners it hands to it, name sockets.
#[test]
fn only_the_network_layer_touches_sockets() {
    for (rel, text) in sources(CODE) {
        if rel.starts_with("runtime-protocols/src/net/") || rel == "session/src/party.rs" {
            continue;
        }
        for word in ["std::net", "TcpStream", "TcpListener", "UdpSocket"] {
            assert!(!text.contains(word), "{rel} names `{word}`");
        }
    }
}

/// TLS is one module's business: only `net/tls.rs` names rustls and its key generator, so
/// the links' trust decisions (pins, TLS 1.3 only) live in one place.
#[test]
fn only_the_tls_module_names_rustls() {
    for (rel, text) in sources(CODE) {
        if rel == "runtime-protocols/src/net/tls.rs" {
            continue;
        }
        for word in ["rustls", "rcgen"] {
            assert!(!text.contains(word), "{rel} names `{word}`");
        }
    }
}

/// Protocols are chosen through `qmpc_protocols::registry`: no code outside it matches on a
/// protocol's command-line name.
#[test]
fn only_the_registry_matches_on_protocol_names() {
    let names = [
        "clear", "rep3", "semi2k", "shamir", "fss", "mal-rep3", "spdz2k",
    ];
    for (rel, text) in sources(CODE) {
        if rel == "runtime-protocols/src/registry.rs" {
            continue;
        }
        for name in names {
            let quoted = format!("\"{name}\"");
            for (i, line) in text.lines().enumerate() {
                let Some(at) = line.find(&quoted) else {
                    continue;
                };
                let after = line[at + quoted.len()..].trim_start();
                let before = line[..at].trim_end();
                assert!(
                    !(after.starts_with("=>")
                        || after.starts_with('|')
                        || before.ends_with("==")
                        || before.ends_with("!=")),
                    "{rel}:{}: matches on the protocol name {quoted}: {line}",
                    i + 1
                );
            }
        }
    }
}

/// Every seed comes through `runtime-protocols/src/coins.rs` (`Coins`): no other source
/// file asks the operating system for randomness, so the view tests can fix a coalition's
/// keys and nothing escapes them.
#[test]
fn only_coins_draws_from_the_operating_system() {
    for (rel, text) in sources(CODE) {
        if rel == "runtime-protocols/src/coins.rs" {
            continue;
        }
        for word in [
            "getrandom",
            "OsRng",
            "thread_rng",
            "from_os_rng",
            "from_entropy",
        ] {
            assert!(!text.contains(word), "{rel} names `{word}`");
        }
    }
}

/// Every share and mask comes from `stream::Stream`, so the mask ledger sees every draw:
/// no other file of the protocols makes a ChaCha generator (the view tests' own coins and
/// the DCF tests' inputs aside).
#[test]
fn only_stream_makes_a_prg() {
    for (rel, text) in sources(CODE) {
        if [
            "runtime-protocols/src/stream.rs",
            "runtime-protocols/src/viewtest.rs",
        ]
        .contains(&rel.as_str())
        {
            continue;
        }
        // Test modules at the end of a file may use a plain generator for test inputs.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for word in [
            "ChaCha12Rng",
            "ChaCha20Rng",
            "ChaCha8Rng",
            "StdRng",
            "SmallRng",
        ] {
            assert!(!code.contains(word), "{rel} names `{word}`");
        }
    }
}

/// qmpc's `unsafe` blocks are calls of code compiled for CPU features, each behind the
/// feature check: the carry-less multiply of the proofs' field (a product, a dot product,
/// a combination of rows and weighted sums of products, each reduced once), and the GEMM kernel's
/// AVX2 / AVX-512 builds (and its test against the portable one) and its 16-bit pairs
/// kernel (the call, and its vector loads and stores from slices of the right length);
/// nothing else may need one.
#[test]
fn only_cpu_feature_dispatch_uses_unsafe() {
    for (rel, text) in sources(CODE) {
        if rel == "runtime-protocols/src/dzkp/gf64.rs" {
            assert_eq!(text.matches("unsafe {").count(), 4, "{rel}");
            continue;
        }
        if rel == "runtime-protocols/src/gemm.rs" {
            assert_eq!(text.matches("unsafe {").count(), 5, "{rel}");
            assert_eq!(
                text.matches("unsafe fn").count(),
                1,
                "{rel}: the kernel type"
            );
            continue;
        }
        assert!(!text.contains("unsafe "), "{rel} uses `unsafe`");
    }
}

/// The test-only features (fault injection, the view tests' recorders) are absent from
/// what `cargo build --release` links: only the tests' dev-dependency turns them on.
#[test]
fn release_builds_have_no_test_only_features() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-e",
            "normal,features",
            "--prefix",
            "none",
            "-p",
            "qmpc",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        tree.contains("qmpc-protocols"),
        "no protocols crate in:\n{tree}"
    );
    for feature in ["fault-injection", "view-tests"] {
        assert!(
            !tree.contains(&format!("feature \"{feature}\"")),
            "a release build has `{feature}`:\n{tree}"
        );
    }
}
