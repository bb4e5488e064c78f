//! `ucbench`: the benchmark harness's client, built on the agent's own `net` module so what it
//! measures is what the shipped agent does. Two jobs, each printing one JSON line:
//!
//! - `download URL CA SIZE SHA256 DEST|-`: one `net::download_to` (streaming SHA-256, verified
//!   size and digest) into a file or discarded; prints bytes, seconds and the process's peak RSS
//!   (`VmHWM`), on a current-thread runtime like a device.
//! - `checks URL CA CONCURRENCY COUNT SECS BODY.xml [DOMAIN\user PASSWORD]`: `COUNT` checks (each its own
//!   connection, NTLM with the credentials when given) with `CONCURRENCY` in flight, stopping at
//!   `SECS` seconds whichever comes first; prints successes, failures and the rate.
//!
//! Arguments are positional on purpose: the scripts in `bench/` are its only callers.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ucupdate_agent::net::{self, Client, ClientSettings, DownloadSink, TlsOptions};
use ucupdate_ntlm::Credentials;
use ucupdate_protocol::{CheckRequest, FileKind, FileName, HttpUrl, OfferedFile};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("download") if args.len() == 6 => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(download(&args[1..]))
        }
        Some("checks") if args.len() == 7 || args.len() == 9 => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(checks(&args[1..]))
        }
        _ => bail!(
            "usage: ucbench download URL CA SIZE SHA256 DEST|-\n       \
             ucbench checks URL CA CONCURRENCY COUNT SECS BODY.xml [DOMAIN\\user PASSWORD]"
        ),
    }
}

fn client(ca: &str, resumption: bool) -> Result<Client> {
    let mut tls = TlsOptions::with_ca_file(Path::new(ca))?;
    tls.resumption = resumption;
    Ok(Client::with_settings(ClientSettings {
        tls: Some(tls.build()?),
        ..ClientSettings::default()
    }))
}

async fn download(args: &[String]) -> Result<()> {
    let url: HttpUrl = args[0].parse().context("URL")?;
    let client = client(&args[1], true)?;
    let size: u64 = args[2].parse().context("SIZE")?;
    let name = url.path.rsplit('/').next().unwrap_or("image.nbt");
    let file_name = FileName::new(name)?;
    let expected = OfferedFile {
        kind: FileKind::of(&file_name),
        file_name,
        size: Some(size),
        sha256: Some(args[3].parse().context("SHA256")?),
    };
    let dest = Path::new(&args[4]);
    let sink = if args[4] == "-" {
        DownloadSink::Discard
    } else {
        DownloadSink::File(dest)
    };
    let started = Instant::now();
    let (result, stats) = net::download_to(&client, &url, &expected, sink, 0, None).await;
    let secs = started.elapsed().as_secs_f64();
    let done = result.context("download")?;
    println!(
        "{{\"bytes\":{},\"secs\":{:.4},\"mib_per_s\":{:.1},\"vm_hwm_kib\":{},\"tls_handshake_ms\":{:.2}}}",
        done.size,
        secs,
        done.size as f64 / secs / 1048576.0,
        vm_hwm_kib(),
        stats.tls_handshake.unwrap_or_default().as_secs_f64() * 1000.0,
    );
    Ok(())
}

async fn checks(args: &[String]) -> Result<()> {
    let url: HttpUrl = args[0].parse().context("URL")?;
    let resumption = std::env::var_os("UCBENCH_NO_RESUMPTION").is_none();
    let client = client(&args[1], resumption)?;
    let concurrency: u64 = args[2].parse().context("CONCURRENCY")?;
    let count: u64 = args[3].parse().context("COUNT")?;
    let limit = Duration::from_secs_f64(args[4].parse().context("SECS")?);
    let body = std::fs::read(&args[5]).context("check body")?;
    let request = Arc::new(CheckRequest::decode(&body)?);
    let auth = match args.get(6) {
        Some(user) => Some(Arc::new(Credentials::parse_user(user, &args[7]))),
        None => None,
    };
    let issued = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + limit;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, request, auth) =
            (client.clone(), url.clone(), request.clone(), auth.clone());
        let (issued, ok, failed) = (issued.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < count {
                let (result, _) =
                    net::check_with_stats(&client, &url, &request, auth.as_deref()).await;
                match result {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("check failed: {e}");
                        }
                        0
                    }
                };
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    println!(
        "{{\"ok\":{ok},\"failed\":{},\"secs\":{secs:.4},\"per_sec\":{:.1}}}",
        failed.load(Ordering::Relaxed),
        ok as f64 / secs
    );
    Ok(())
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
