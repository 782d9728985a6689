//! The progress line of a secure `qmpc run` on a terminal: party 0's rounds and bytes so
//! far against `qmpc cost`'s prediction for it, the time taken and an estimate of the time
//! left. Nothing is drawn when stderr is not a terminal (a log gets the one summary line
//! `run` prints after the run). The same for a compilation that takes a while: its stage
//! and the ONNX nodes imported so far.

use qmpc_compiler::{ProgressHook, Stage};
use qmpc_protocols::net::Traffic;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A redrawing thread; stopped (and its line cleared) when dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    drawer: Option<JoinHandle<()>>,
}

/// What party 0 is predicted to do in the whole run.
#[derive(Clone, Copy)]
pub struct Goal {
    pub rounds: u64,
    pub bytes: u64,
}

impl Progress {
    /// Redraw every 200 ms while stderr is a terminal.
    pub fn start(traffic: Arc<Traffic>, goal: Goal) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let drawer = std::io::stderr().is_terminal().then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let (rounds, bytes) = traffic.now();
                    let line = line(goal, rounds, bytes, start.elapsed());
                    let _ = write!(std::io::stderr(), "\r\x1b[2K{line}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                let _ = write!(std::io::stderr(), "\r\x1b[2K");
            })
        });
        Progress { stop, drawer }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(d) = self.drawer.take() {
            let _ = d.join();
        }
    }
}

/// A compilation's progress line on a terminal, drawn once it has taken `DELAY` (small
/// models compile before anything would show) and cleared when the program is ready.
pub fn compile_hook(name: String) -> Option<ProgressHook> {
    const DELAY: Duration = Duration::from_millis(300);
    const EVERY: Duration = Duration::from_millis(100);
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let start = Instant::now();
    let last: Mutex<Option<Instant>> = Mutex::new(None);
    Some(ProgressHook(Arc::new(move |s: Stage| {
        let Ok(mut last) = last.lock() else { return };
        if s == Stage::Done {
            if last.is_some() {
                let _ = write!(std::io::stderr(), "\r\x1b[2K");
            }
            return;
        }
        let due = match *last {
            None => start.elapsed() >= DELAY,
            Some(t) => t.elapsed() >= EVERY || !matches!(s, Stage::Import { .. }),
        };
        if due {
            let line = compile_line(&name, s, start.elapsed());
            let _ = write!(std::io::stderr(), "\r\x1b[2K{line}");
            *last = Some(Instant::now());
        }
    })))
}

/// `compiling resnet50.onnx: [########----] 120/250 nodes  1.2 s`.
fn compile_line(name: &str, s: Stage, elapsed: Duration) -> String {
    let what = match s {
        Stage::Decoded { nodes } => format!("decoded, {nodes} nodes"),
        Stage::Import { done, nodes } => {
            const WIDTH: usize = 24;
            let filled = (done * WIDTH).checked_div(nodes).unwrap_or(0).min(WIDTH);
            let bar = format!("{}{}", "#".repeat(filled), "-".repeat(WIDTH - filled));
            format!("[{bar}] {done}/{nodes} nodes")
        }
        Stage::Passes => "passes".into(),
        Stage::Lower => "lowering and verifying".into(),
        Stage::Done => "done".into(),
    };
    format!("compiling {name}: {what}  {:.1} s", elapsed.as_secs_f64())
}

/// `[#########-----------] 45%  130/286 rounds  252.4/561.0 MB  5.5 s, about 6.7 s left`.
fn line(goal: Goal, rounds: u64, bytes: u64, elapsed: Duration) -> String {
    // Bytes track the work better than rounds (a convolution's round moves MBs, a
    // comparison's a few kB), where there are any.
    let done = if goal.bytes > 0 {
        bytes as f64 / goal.bytes as f64
    } else if goal.rounds > 0 {
        rounds as f64 / goal.rounds as f64
    } else {
        0.0
    }
    .clamp(0.0, 1.0);
    const WIDTH: usize = 24;
    let filled = (done * WIDTH as f64).round() as usize;
    let bar = format!("{}{}", "#".repeat(filled), "-".repeat(WIDTH - filled));
    let secs = elapsed.as_secs_f64();
    let left = if done > 0.02 {
        format!(", about {:.1} s left", secs * (1.0 - done) / done)
    } else {
        String::new()
    };
    format!(
        "[{bar}] {:>3.0}%  {rounds}/{} rounds  {:.1}/{:.1} MB  {secs:.1} s{left}",
        done * 100.0,
        goal.rounds,
        bytes as f64 / 1e6,
        goal.bytes as f64 / 1e6,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compile_line_shows_the_stage_and_the_nodes() {
        let l = compile_line(
            "m.onnx",
            Stage::Import {
                done: 60,
                nodes: 240,
            },
            Duration::from_millis(1500),
        );
        assert_eq!(
            l,
            "compiling m.onnx: [######------------------] 60/240 nodes  1.5 s"
        );
        let l = compile_line("m.onnx", Stage::Lower, Duration::from_secs(2));
        assert_eq!(l, "compiling m.onnx: lowering and verifying  2.0 s");
    }

    #[test]
    fn the_line_shows_the_fraction_by_bytes_and_the_time_left() {
        let goal = Goal {
            rounds: 286,
            bytes: 561_000_000,
        };
        let l = line(goal, 130, 280_500_000, Duration::from_secs(5));
        assert!(
            l.starts_with("[############------------]  50%  130/286 rounds"),
            "{l}"
        );
        assert!(
            l.contains("280.5/561.0 MB") && l.ends_with("5.0 s, about 5.0 s left"),
            "{l}"
        );
        // No estimate before 2 % of the work.
        let l = line(goal, 1, 1000, Duration::from_millis(100));
        assert!(l.ends_with("0.1 s"), "{l}");
    }
}
