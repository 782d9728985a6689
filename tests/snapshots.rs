//! Snapshot tests of the IR dump and the bytecode assembly: a change in lowering shows up as a
//! readable diff in `tests/snapshots/`. Review with `cargo insta review` (or rerun with
//! `INSTA_UPDATE=always` and read `git diff`).

mod common;

use qmpc_compiler::{compile_bytes, ir, Options};
use std::path::Path;

fn snapshot(model: &Path, name: &str) {
    let bytes = std::fs::read(model).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    // A fixed file name keeps the snapshots independent of where the checkout lives.
    let c = compile_bytes(&bytes, name, &Options::default())
        .unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    insta::assert_snapshot!(format!("{name}.ir"), ir::dump(&c.ir));
    insta::assert_snapshot!(
        format!("{name}.asm"),
        qmpc_vm::bytecode::asm::disassemble(&c.program)
    );
}

#[test]
fn own_models() {
    let m = common::root().join("models");
    snapshot(&m.join("tiny_mlp/qop_s8_pt.onnx"), "tiny_mlp_qop_s8_pt");
    snapshot(&m.join("tiny_cnn/qdq_s8_pc.onnx"), "tiny_cnn_qdq_s8_pc");
    snapshot(&m.join("op_qlinearsigmoid/u8.onnx"), "op_qlinearsigmoid_u8");
}

#[test]
fn corpus_models() {
    let Some(corpus) = common::required_corpus() else {
        return;
    };
    let m = corpus.join("models");
    snapshot(&m.join("lenet/qop_s8_pt.onnx"), "lenet_qop_s8_pt");
    snapshot(&m.join("mlp_digits/qdq_u8_pt.onnx"), "mlp_digits_qdq_u8_pt");
    snapshot(
        &m.join("resnet_tiny/qdq_s8_pc.onnx"),
        "resnet_tiny_qdq_s8_pc",
    );
}
