//! `raindrop-view`: a local viewer for what the Raindrop SDK records.
//!
//! ```text
//! raindrop-view target/raindrop-chat.jsonl          # a local-sink file, live
//! raindrop-view --listen 127.0.0.1:5898             # a local ingest endpoint
//! raindrop-view --text target/raindrop-chat.jsonl   # the tree, on stdout
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use raindrop_view::{Options, Recorded, Viewer, DEFAULT_PORT};

const USAGE: &str = "\
raindrop-view: see what the Raindrop SDK records

usage:
  raindrop-view FILE [--port N]        serve FILE (a local-sink JSON-lines file) on
                                       http://127.0.0.1:N/ (default 5898), live as it grows
  raindrop-view --listen [HOST:]PORT   also act as the SDK's endpoint: point it at
                                       RAINDROP_ENDPOINT=http://127.0.0.1:PORT/v1/ (any
                                       RAINDROP_WRITE_KEY); FILE is optional then
  raindrop-view --text FILE            print the tree of FILE and exit

options:
  --max-requests N   keep at most N requests in memory (default 20000)
  --max-bytes N      keep at most about N bytes in memory (default 268435456), counted
                     as held once parsed: several times the requests' size on the wire
  -h, --help         this text
";

struct Args {
    file: Option<PathBuf>,
    listen: Option<String>,
    port: u16,
    text: bool,
    max_requests: Option<usize>,
    max_bytes: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        file: None,
        listen: None,
        port: DEFAULT_PORT,
        text: false,
        max_requests: None,
        max_bytes: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--text" => a.text = true,
            "--listen" => a.listen = Some(value("--listen")?),
            "--port" => {
                a.port = value("--port")?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?;
            }
            "--max-requests" => {
                a.max_requests = Some(
                    value("--max-requests")?
                        .parse()
                        .map_err(|e| format!("--max-requests: {e}"))?,
                );
            }
            "--max-bytes" => {
                a.max_bytes = Some(
                    value("--max-bytes")?
                        .parse()
                        .map_err(|e| format!("--max-bytes: {e}"))?,
                );
            }
            s if s.starts_with('-') && s != "-" => return Err(format!("unknown option {s}")),
            s => {
                if a.file.is_some() {
                    return Err("only one FILE".to_owned());
                }
                a.file = Some(PathBuf::from(s));
            }
        }
    }
    if a.text && a.listen.is_some() {
        return Err("--text prints a file; it does not listen".to_owned());
    }
    if a.file.is_none() && a.listen.is_none() {
        return Err("give a FILE, or --listen".to_owned());
    }
    Ok(a)
}

/// `PORT`, `HOST:PORT` or `[V6]:PORT`; the host defaults to 127.0.0.1.
fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        let port = port
            .parse::<u16>()
            .map_err(|e| format!("--listen {s}: {e}"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    Err(format!("--listen {s}: expected PORT or IP:PORT"))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("raindrop-view: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.text {
        let file = args.file.unwrap_or_default();
        return match Recorded::read(&file) {
            Ok(rec) => {
                print!("{}", rec.report());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("raindrop-view: {}: {e}", file.display());
                ExitCode::FAILURE
            }
        };
    }
    let addr = match &args.listen {
        Some(l) => match listen_addr(l) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("raindrop-view: {e}");
                return ExitCode::from(2);
            }
        },
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), args.port),
    };
    let mut opts = Options {
        file: args.file.clone(),
        ingest: args.listen.is_some(),
        loopback_hosts_only: addr.ip().is_loopback(),
        ..Options::default()
    };
    if let Some(n) = args.max_requests {
        opts.max_requests = n.max(1);
    }
    if let Some(n) = args.max_bytes {
        opts.max_bytes = n;
    }
    if !addr.ip().is_loopback() {
        eprintln!(
            "raindrop-view: WARNING: listening on {addr}, not loopback: anyone who can reach it \
             can read what your SDK records, and send to it"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raindrop-view: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let host = if local.ip().is_unspecified() || local.ip().is_loopback() {
            match local.ip() {
                IpAddr::V6(_) => format!("[::1]:{}", local.port()),
                IpAddr::V4(_) => format!("127.0.0.1:{}", local.port()),
            }
        } else {
            local.to_string()
        };
        println!("raindrop-view: open http://{host}/");
        if let Some(f) = &args.file {
            println!("  reading {} (and what is appended to it)", f.display());
        }
        if args.listen.is_some() {
            println!(
                "  receiving: run your program with RAINDROP_ENDPOINT=http://{host}/v1/ \
                 RAINDROP_WRITE_KEY=local"
            );
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        raindrop_view::serve(listener, Viewer::new(opts)).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raindrop-view: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}
