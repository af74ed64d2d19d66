//! Cold start (issue 7): the time from starting a Lambda binary to its first
//! `GET /2018-06-01/runtime/invocation/next`, against a hello-world `lambda_runtime` binary.
//!
//! `cold-start <runs> <hello-world> <binary>…` (see `bench/cold-start.sh`, which builds them and
//! sets the functions' environment). This process is the Runtime API emulator: it listens on
//! 127.0.0.1, sets `AWS_LAMBDA_RUNTIME_API` for each child, records when the child's first
//! `next` request arrives, never answers it (no event, as on an idle instance), and kills the
//! child. Every round starts each binary once, in turn, and each figure is the ratio to the
//! hello-world binary's time in the same round; the table shows medians over the rounds, after
//! one warm-up round.

// The bench's output is its table.
#![allow(clippy::print_stdout)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use shuttle_bench::{median, table};

const NEXT: &str = "GET /2018-06-01/runtime/invocation/next ";
const GOAL: f64 = 2.0;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts every connection and sends the time at which one asked for the next invocation;
/// the connection is kept open (the request is never answered) until the next one is accepted.
fn emulate(listener: TcpListener, nexts: mpsc::Sender<Instant>) {
    let mut held: Option<TcpStream> = None;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut head = Vec::new();
        let mut buffer = [0_u8; 1024];
        while !head.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => head.extend_from_slice(&buffer[..read]),
            }
        }
        if head.starts_with(NEXT.as_bytes()) {
            let _ = nexts.send(Instant::now());
        }
        held = Some(stream);
    }
    drop(held);
}

/// Starts `binary` and waits for its first `next`: the time it took, or what went wrong.
fn cold_start(binary: &Path, runtime_api: &str, nexts: &Receiver<Instant>, log: &Path) -> Result<Duration, String> {
    while nexts.try_recv().is_ok() {}
    let output = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let errors = output.try_clone().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child: Child = Command::new(binary)
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let outcome = loop {
        match nexts.recv_timeout(Duration::from_millis(20)) {
            Ok(at) => break Ok(at.duration_since(started)),
            Err(RecvTimeoutError::Disconnected) => break Err("the emulator stopped".to_owned()),
            Err(RecvTimeoutError::Timeout) if started.elapsed() > TIMEOUT => break Err(format!("no request within {TIMEOUT:?}")),
            Err(RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = child.try_wait() {
                    break Err(format!("exited ({status}) before asking for an invocation"));
                }
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome.map_err(|problem| {
        let said = std::fs::read_to_string(log).unwrap_or_default();
        format!("{}: {problem}; its output:\n{said}", binary.display())
    })
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: cold-start <runs> <hello-world binary> <binary>…";
    let runs: usize = args.next().and_then(|runs| runs.parse().ok()).filter(|runs| *runs > 0).ok_or(usage)?;
    let binaries: Vec<std::path::PathBuf> = args.map(Into::into).collect();
    if binaries.len() < 2 {
        return Err(usage.to_owned());
    }
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let runtime_api = listener.local_addr().map_err(|e| e.to_string())?.to_string();
    let (sender, nexts) = mpsc::channel();
    std::thread::spawn(move || emulate(listener, sender));
    let log = std::env::temp_dir().join(format!("cold-start-{}.log", std::process::id()));

    println!("cold start: {runs} rounds (after a warm-up) of each binary, Runtime API emulator on {runtime_api}");
    let mut times = vec![Vec::new(); binaries.len()];
    for round in 0..=runs {
        for (index, binary) in binaries.iter().enumerate() {
            let time = cold_start(binary, &runtime_api, &nexts, &log)?;
            if round > 0 {
                times[index].push(time.as_secs_f64() * 1000.0);
            }
        }
    }
    let _ = std::fs::remove_file(&log);

    let baseline = &times[0];
    let mut rows = Vec::new();
    let mut all_met = true;
    for (binary, times) in binaries.iter().zip(&times) {
        let name = binary.file_name().map_or_else(|| binary.display().to_string(), |name| name.to_string_lossy().into_owned());
        let ratios: Vec<f64> = times.iter().zip(baseline).map(|(time, base)| time / base).collect();
        let ratio = median(&ratios);
        let is_baseline = std::ptr::eq(times, baseline);
        let met = ratio <= GOAL;
        all_met &= is_baseline || met;
        rows.push(vec![
            name,
            format!("{:.2}", median(times)),
            format!("{:.2}–{:.2}", times.iter().copied().fold(f64::INFINITY, f64::min), times.iter().copied().fold(0.0, f64::max)),
            if is_baseline { "1 (baseline)".to_owned() } else { format!("{ratio:.2}") },
            if is_baseline { "–".to_owned() } else { format!("≤ {GOAL}") },
            if is_baseline {
                "–"
            } else if met {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
        ]);
    }
    print!("{}", table(&["binary", "exec → first next, ms (median)", "min–max, ms", "ratio to hello world", "goal", "met"], &rows));
    println!("ratio: median of each round's time / the hello-world time of that round");
    println!("{}", if all_met { "every goal met" } else { "some goals not met" });
    Ok(())
}
