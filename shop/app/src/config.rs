//! Configuration: what the shop is (where it listens, where its data lives).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Validated settings of a shop process.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Folder of the embedded databases (`events.db`, `views.db`).
    pub data_dir: PathBuf,
}

impl Settings {
    /// The write database's file.
    pub fn events_path(&self) -> PathBuf {
        self.data_dir.join("events.db")
    }

    /// The read database's file.
    pub fn views_path(&self) -> PathBuf {
        self.data_dir.join("views.db")
    }
}
