//! `cargo bench --bench protocols`: every protocol of the registry on the corpus's LeNet
//! (`lenet/qop_s8_pt`, secret weights; `QMPC_BENCH_FILTER` picks other models) at batch 1
//! and 64, each at its default party count: the median wall time (with and without the
//! connection set-up), rounds, the most bytes one party sends and the dealer's bytes.
//! Prints a Markdown table; docs/performance.md holds the last one. This is the baseline
//! a change to the protocols is held to (issue 18: no protocol's LeNet time may regress by
//! more than 10 %).
//!
//! `QMPC_BENCH_REPS` (default 3) sets how many runs the median is taken over.
//! `QMPC_BASE_BIN=path/to/old/qmpc` compares against another build: the runs of both
//! interleave, and the time columns read `base → this`.

mod common;
use common::{base_bin, batch_input, compile, models, qmpc_bin, qmpc_runs};
use qmpc_protocols::registry;

fn main() {
    let Some(reps) = common::bench_reps() else {
        return;
    };
    if std::env::var_os("QMPC_BENCH_FILTER").is_none() {
        std::env::set_var("QMPC_BENCH_FILTER", "lenet/qop_s8_pt");
    }
    let dir = std::env::temp_dir().join(format!("qmpc-bench-protocols-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!("| model | protocol | parties | batch | wall | online | rounds | MB sent (max party) | dealer MB |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for m in models() {
        let Some(program) = compile(&m, &dir) else {
            println!("| {} | - | - | - | compile failed | | | | |", m.id);
            continue;
        };
        for batch in [1usize, 64] {
            let input = dir.join(format!("{}-b{batch}.npy", m.id.replace('/', "_")));
            if batch_input(&m, batch, &input).is_none() {
                println!("| {} | - | - | {batch} | no float input | | | | |", m.id);
                continue;
            }
            for spec in registry::PROTOCOLS.iter().filter(|s| s.implemented()) {
                let n = spec.party_count(None).unwrap_or(0);
                let bins: Vec<_> = base_bin().into_iter().chain([qmpc_bin()]).collect();
                let row = match qmpc_runs(&bins, &program, spec.name, &input, reps) {
                    Ok(f) => {
                        let secs = |g: fn(&common::Figures) -> f64| {
                            let v: Vec<String> =
                                f.iter().map(|x| format!("{:.4} s", g(x))).collect();
                            v.join(" → ")
                        };
                        let last = &f[f.len() - 1];
                        format!(
                            "{} | {} | {} | {:.3} | {:.3}",
                            secs(|x| x.wall),
                            secs(|x| x.online),
                            last.rounds,
                            last.max_sent as f64 / 1e6,
                            last.dealer as f64 / 1e6
                        )
                    }
                    Err(e) => format!("failed: {e} | | | |"),
                };
                println!("| {} | {} | {n} | {batch} | {row} |", m.id, spec.name);
            }
        }
    }
}
