//! Mutation fuzzing of every loader, seeded with real files: the ONNX importer (every model of
//! `models/` and of `../shared/corpus`), the bytecode and weights containers, the verifier, the
//! assembler, and the interpreter on programs that still verify. A panic anywhere fails.
//!
//! `QMPC_FUZZ_CASES` sets the number of cases (default 300, a few seconds); the closing note of
//! issue 2 reports a long run: `QMPC_FUZZ_CASES=200000 cargo test --release --test fuzz`.
//! `QMPC_FUZZ_TRACE=PREFIX` leaves each input at `PREFIX.onnx` / `.qmpc` / `.train.onnx`
//! before it is loaded: what an abort (out of memory) needs to be reproduced.

mod common;

use common::*;
use proptest::prelude::*;
use qmpc_compiler::{compile_bytes, Options};
use qmpc_protocols::Clear;
use qmpc_vm::bytecode::asm::{assemble, disassemble};
use qmpc_vm::interp::{self, PartyData, Roles};
use qmpc_vm::tensor::Tensor;
use qmpc_vm::{Program, Weights};
use std::sync::{Arc, OnceLock};

struct Seed {
    onnx: Vec<u8>,
    program: Vec<u8>,
    weights: Vec<u8>,
    asm: String,
}

fn seeds() -> &'static [Seed] {
    static SEEDS: OnceLock<Vec<Seed>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut list = entries(&root().join("models"));
        if let Some(c) = shared_corpus() {
            list.extend(entries(&c));
        }
        list.iter()
            .filter_map(|e| {
                let onnx = std::fs::read(&e.model).ok()?;
                let c = compile_bytes(&onnx, "seed", &Options::default()).ok();
                Some(Seed {
                    program: c.as_ref().map(|c| c.program.to_bytes()).unwrap_or_default(),
                    weights: c.as_ref().map(|c| c.weights.to_bytes()).unwrap_or_default(),
                    asm: c
                        .as_ref()
                        .map(|c| disassemble(&c.program))
                        .unwrap_or_default(),
                    onnx,
                })
            })
            .collect()
    })
}

fn cases() -> u32 {
    std::env::var("QMPC_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn mutate(
    original: &[u8],
    flips: &[(prop::sample::Index, u8)],
    cut: &prop::sample::Index,
) -> [Vec<u8>; 2] {
    let mut b = original.to_vec();
    if !b.is_empty() {
        for (i, v) in flips {
            let i = i.index(b.len());
            b[i] ^= v | 1;
        }
    }
    let short = original[..cut.index(original.len() + 1).min(original.len())].to_vec();
    [b, short]
}

/// With `QMPC_FUZZ_TRACE=PREFIX`, each mutated input is written to `PREFIX.EXT` before it
/// is loaded, so that an input that aborts the process (out of memory) is left behind.
fn trace(bytes: &[u8], ext: &str) {
    if let Some(prefix) = std::env::var_os("QMPC_FUZZ_TRACE") {
        let mut path = std::path::PathBuf::from(prefix).into_os_string();
        path.push(format!(".{ext}"));
        let _ = std::fs::write(path, bytes);
    }
}

/// Runs a program that verifies on zero inputs under `clear`; errors are fine, panics are not.
fn run_small(p: &Program, weights: &[u8]) {
    let total: usize = p
        .registers
        .iter()
        .map(|r| r.ty.dims.iter().product::<usize>())
        .sum();
    if total > 1 << 20 {
        return;
    }
    let inputs = p
        .inputs
        .iter()
        .map(|i| Tensor::new(i.ty.dims.clone(), vec![0; i.ty.dims.iter().product()]))
        .collect();
    let data = PartyData {
        inputs: Some(inputs),
        weights: Weights::from_bytes(weights).ok().map(Arc::new),
    };
    let roles = Roles {
        model_owner: 0,
        data_owner: 0,
        output_to: 0,
    };
    let _ = interp::run(p, &mut Clear, roles, &data, 1);
}

/// Inputs the fuzzer once found to abort or exhaust memory (`tests/fuzz_cases`, each named
/// for what it did): each is now one error. `resize_huge_size.onnx`: a `Resize` to
/// 196,812,581,371,908 rows asked for a 16 GB index vector (session 20; found with
/// `QMPC_FUZZ_TRACE`, it took CI's 24 GB).
#[test]
fn found_cases_are_errors() {
    let dir = root().join("tests/fuzz_cases");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/fuzz_cases") {
        let path = entry.expect("an entry").path();
        let bytes = std::fs::read(&path).expect("a case");
        let err = compile_bytes(&bytes, "case.onnx", &Options::default())
            .err()
            .unwrap_or_else(|| panic!("{} compiles", path.display()));
        assert_eq!(err.to_string().lines().count(), 1, "{err}");
        seen += 1;
    }
    assert!(seen > 0, "no case in {}", dir.display());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn loaders_never_panic(
        seed in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let s = &seeds()[seed.index(seeds().len())];
        for b in mutate(&s.onnx, &flips, &cut) {
            trace(&b, "onnx");
            let _ = compile_bytes(&b, "fuzz.onnx", &Options::default());
        }
        for b in mutate(&s.program, &flips, &cut) {
            trace(&b, "qmpc");
            if let Ok(p) = Program::from_bytes(&b) {
                if qmpc_vm::verify::verify(&p).is_ok() {
                    let text = disassemble(&p);
                    let back = assemble(&text).ok();
                    prop_assert_eq!(back.as_ref(), Some(&p));
                    run_small(&p, &s.weights);
                }
            }
        }
        for b in mutate(&s.weights, &flips, &cut) {
            let _ = Weights::from_bytes(&b);
        }
        for b in mutate(s.asm.as_bytes(), &flips, &cut) {
            let _ = assemble(&String::from_utf8_lossy(&b));
        }
    }

    /// The training importer and compiler on mutated float exports (the PyTorch
    /// references of `models/train`).
    #[test]
    fn the_training_compiler_never_panics(
        seed in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let seeds = training_seeds();
        let onnx = &seeds[seed.index(seeds.len())];
        let opts = qmpc_compiler::train::TrainOptions {
            batch: 4,
            lr: 0.1,
            optimizer: qmpc_compiler::train::Optimizer::Sgd { momentum: 0.9 },
            loss: qmpc_compiler::train::Loss::CrossEntropy,
            rows: 8,
            test_rows: Some(5),
            trunc: qmpc_protocols::TruncMode::Exact,
            numerics: Default::default(),
            reveal_loss: true,
        };
        for b in mutate(onnx, &flips, &cut) {
            trace(&b, "train.onnx");
            let _ = qmpc_compiler::train::compile(&b, "fuzz.onnx", &opts);
        }
    }
}

/// Every float model of `models/train` (the exports and the gradient cases).
fn training_seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = root().join("models/train");
        let mut files = vec![
            dir.join("mlp_digits_init.onnx"),
            dir.join("lenet_init.onnx"),
        ];
        if let Ok(cases) = std::fs::read_dir(dir.join("grads")) {
            files.extend(cases.flatten().map(|c| c.path().join("model.onnx")));
        }
        files.sort();
        files
            .into_iter()
            .filter_map(|f| std::fs::read(f).ok())
            .collect()
    })
}

#[test]
fn seeds_cover_every_model() {
    let own = entries(&root().join("models")).len();
    assert!(
        seeds().len() >= own,
        "{} seeds for {own} models",
        seeds().len()
    );
    assert!(seeds().iter().filter(|s| !s.program.is_empty()).count() > own / 2);
}
