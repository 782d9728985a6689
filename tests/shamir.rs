//! Every model of `models/` (3, 4 and 5 parties, the whole reference batch) and, when
//! present, of `../shared/corpus` (3, 5, 7 and 10 parties, the first reference image: ten
//! parties on two cores send gigabytes for one ResNet image) under `shamir`, against
//! `clear`: byte-identical outputs, and every run's measured rounds and bytes per party
//! equal to `qmpc cost`'s.

mod common;
use common::*;
use std::path::Path;

/// The first item of an `.npy` batch, written beside `prog`.
fn first_item(input: &Path, prog: &Path) -> Result<std::path::PathBuf, String> {
    let bytes = std::fs::read(input).map_err(|e| e.to_string())?;
    let a = npy::parse(&bytes).map_err(|e| e.to_string())?;
    let dims = a.dims().to_vec();
    let count: usize = dims.iter().product();
    let header = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]).into_owned();
    let descr = header
        .split("'descr': '")
        .nth(1)
        .and_then(|d| d.split('\'').next())
        .ok_or("no descr")?
        .to_string();
    let width = elem_size(&descr);
    let data = &bytes[bytes.len() - count * width..];
    let mut one = dims.clone();
    let per = count / dims.first().copied().unwrap_or(1).max(1);
    if let Some(d) = one.first_mut() {
        *d = 1;
    }
    let out = prog.with_extension("first.npy");
    std::fs::write(&out, npy::encode(&descr, &one, &data[..per * width]))
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn elem_size(descr: &str) -> usize {
    descr
        .trim_start_matches(['<', '>', '|', '='])
        .get(1..)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

fn check(e: &Entry, parties: &[usize], first: bool) -> Result<(), String> {
    let prog = tmp(&format!("shamir-{}.qmpc", e.id));
    compile(&e.model, &prog, &[])?;
    let input = if first {
        first_item(&e.input, &prog)?
    } else {
        e.input.clone()
    };
    let c = prog.with_extension("clear.npy");
    run(&prog, "clear", None, &input, &c)?;
    for &n in parties {
        let out = prog.with_extension(format!("shamir{n}.npy"));
        run(&prog, "shamir", Some(n), &input, &out)?;
        if std::fs::read(&out).ok() != std::fs::read(&c).ok() {
            return Err(format!("shamir with {n} parties differs from clear"));
        }
    }
    Ok(())
}

#[test]
fn own_models_shamir_equals_clear() {
    check_models(&root().join("models"), "shamir", |e| {
        check(e, &[3, 4, 5], false)
    });
}

#[test]
fn shared_corpus_shamir_equals_clear_with_3_5_7_and_10_parties() {
    let Some(dir) = shared_corpus() else {
        eprintln!("skipped: ../shared/corpus is absent");
        return;
    };
    check_models(&dir, "shamir", |e| check(e, &[3, 5, 7, 10], true));
}

#[test]
fn two_or_thirteen_parties_are_refused() {
    let model = root().join("models/tiny_mlp/qop_s8_pt.onnx");
    let input = root().join("models/tiny_mlp/ref/qop_s8_pt/input.npy");
    let o = qmpc(&[
        "run",
        &s(&model),
        "--protocol",
        "shamir",
        "--parties",
        "2",
        "--input",
        &s(&input),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("3 to 12 parties"), "{}", stderr(&o));
    let o = qmpc(&[
        "cost",
        &s(&model),
        "--protocol",
        "shamir",
        "--parties",
        "13",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("3 to 12 parties"), "{}", stderr(&o));
}
