//! The `podtap` binary: parses the command line and runs the command. The only place `anyhow` lives.

use std::{
    io::{BufWriter, IsTerminal, Write},
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use anyhow::{bail, Context as _};
use clap::Parser as _;
use podtap::{
    app::{self, LiveOptions},
    capture::ebpf::EbpfConfig,
    cli::{Cli, Command, Output, OutputArgs},
    enrich::NoCgroups,
    export::{jsonl::JsonLines, pretty::Pretty, Discard, Sink},
    flow::FlowConfig,
};

fn sink(args: &OutputArgs) -> Box<dyn Sink> {
    let stdout = std::io::stdout();
    let output = args.output.unwrap_or(if stdout.is_terminal() { Output::Pretty } else { Output::Jsonl });
    let out = BufWriter::with_capacity(64 * 1024, stdout);
    match output {
        Output::Jsonl => Box::new(JsonLines::new(out)),
        Output::Pretty => Box::new(Pretty::new(out)),
        Output::None => Box::new(Discard),
    }
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let cgroup_root = match args.cgroup_root {
                Some(path) => path,
                None => app::find_cgroup2_mount().context("no cgroup v2 mount found (podtap check tells more)")?,
            };
            let options = LiveOptions {
                ebpf: EbpfConfig { cgroup_root, max_payload: args.max_payload, ring_buffer_bytes: args.ring_buffer_bytes },
                flow: FlowConfig { max_connections: args.max_connections, ..FlowConfig::default() },
                duration: args.duration.map(Duration::from_secs_f64),
            };
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing signal handlers")?;
            }
            let mut sink = sink(&args.output);
            let summary = app::run_live(&options, &mut NoCgroups, sink.as_mut(), &stop, &mut std::io::stderr())
                .context("podtap run")?;
            eprintln!("{}", summary.line());
        }
        Command::Replay(args) => {
            let mut sink = sink(&args.output);
            let summary = app::replay(&args.file, FlowConfig::default(), sink.as_mut()).context("podtap replay")?;
            eprintln!("{}", summary.line());
        }
        Command::Check => {
            bail!("podtap check is not wired yet");
        }
    }
    let _ = std::io::stdout().flush();
    Ok(())
}
