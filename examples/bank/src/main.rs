//! `cargo run -p bank-example -- [DATA_DIR] [ADDRESS]`: the bank service on
//! the SQLite files of DATA_DIR (default `bank-data`), serving on ADDRESS
//! (default 127.0.0.1:8090).

use parallax_runtime::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "bank-data".into()));
    let address = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    std::fs::create_dir_all(&dir)?;
    let stop = CancellationToken::new();
    let app = bank_example::service(&dir, stop.clone())?;
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::signal::ctrl_c().await.ok();
        })
        .await?;
    stop.cancel();
    Ok(())
}
