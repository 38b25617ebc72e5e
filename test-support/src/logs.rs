//! Captures everything `tracing` emits in this test binary (all threads, the
//! worker's included) into one buffer, at TRACE level.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static BUF: OnceLock<Buf> = OnceLock::new();

/// Installs the capturing subscriber (once per process).
pub fn install() {
    BUF.get_or_init(|| {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::set_global_default(sub).expect("no other global subscriber");
        buf
    });
}

/// Everything logged so far by any thread of this test binary.
pub fn text() -> String {
    install();
    let b = BUF
        .get()
        .unwrap()
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    String::from_utf8_lossy(&b).into_owned()
}
