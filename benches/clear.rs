//! `cargo bench --bench clear -- MODEL.qmpc X.npy [REPS]`: the plaintext reference's time
//! on one compiled model, the way onnxruntime's is taken (`benches/realnets/ort_time.py`):
//! the model and input loaded once, then `REPS` runs (default 20) in this process, of
//! which the first (cold: it faults in and zeroes every buffer it touches) and the median
//! of the rest (warm: the allocator reuses what the first run freed) are printed, in
//! milliseconds, as `first_ms median_ms`. `qmpc run --stats` reports a cold run.
//!
//! It allocates as `qmpc` does (mimalloc) but cannot restart itself with `qmpc`'s allocator
//! settings (`src/alloc.rs`): run it with `MIMALLOC_PURGE_DELAY=-1 MIMALLOC_ALLOW_THP=0`
//! in its environment, as `benches/realnets/run.sh` does.

use qmpc_session::io::Input;
use qmpc_session::{npy, Model, Session};
use std::path::PathBuf;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Err(e) = run() {
        eprintln!("clear bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [model, input, rest @ ..] = args.as_slice() else {
        return Err("usage: cargo bench --bench clear -- MODEL.qmpc X.npy [REPS]".into());
    };
    let reps: usize = match rest.first() {
        Some(r) => r
            .parse()
            .map_err(|_| format!("REPS `{r}` is not a count"))?,
        None => 20,
    };
    let model =
        Model::open(&PathBuf::from(model), &Default::default()).map_err(|e| e.to_string())?;
    let array = npy::read(&PathBuf::from(input)).map_err(|e| format!("{input}: {e}"))?;
    let inputs = [Input {
        array: &array,
        origin: Some(input.clone()),
    }];
    let session = Session::new("clear", None).map_err(|e| e.to_string())?;
    let mut times = Vec::new();
    for _ in 0..reps.max(2) {
        let outcome = session.run(&model, &inputs).map_err(|e| e.to_string())?;
        times.push(outcome.wall_s * 1e3);
    }
    let first = times.remove(0);
    times.sort_by(f64::total_cmp);
    println!("{first:.1} {:.1}", times[times.len() / 2]);
    Ok(())
}
