//! Workload generators shared by kiln's benchmarks.
//!
//! The criterion benches in `benches/benches/` and the whole-build scripts in
//! `benches/*.sh` time kiln on generated trees, so every run measures the
//! same bytes. This crate only writes files; it times nothing itself.
//!
//! # Example
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let tree = kiln_bench::Tree { files: 100, dirs: 10, file_size: 64 };
//! let written = tree.write(dir.path()).unwrap();
//! assert_eq!(written, 100 * 64);
//! ```
#![deny(missing_docs)]

pub mod dockerfile;

use std::io::{self, Write};
use std::path::Path;

/// A generated directory tree: `files` files spread evenly over `dirs`
/// directories, each `file_size` bytes of deterministic content.
#[derive(Debug, Clone, Copy)]
pub struct Tree {
    /// Number of regular files.
    pub files: usize,
    /// Number of directories the files are spread over (at least 1).
    pub dirs: usize,
    /// Size of each file in bytes.
    pub file_size: usize,
}

impl Tree {
    /// Writes the tree under `root` (created if missing) and returns the
    /// number of content bytes written. The same `Tree` always writes the
    /// same paths and bytes; file `i` differs from every other file.
    pub fn write(&self, root: &Path) -> io::Result<u64> {
        let dirs = self.dirs.max(1);
        for d in 0..dirs {
            fs_err::create_dir_all(root.join(format!("d{d:05}")))?;
        }
        let mut total = 0u64;
        let mut buf = Vec::with_capacity(self.file_size);
        for i in 0..self.files {
            buf.clear();
            fill(&mut buf, i as u64, self.file_size);
            let path = root.join(format!("d{:05}/f{i:07}", i % dirs));
            let mut f = fs_err::File::create(path)?;
            f.write_all(&buf)?;
            total += buf.len() as u64;
        }
        Ok(total)
    }
}

/// Deterministic, incompressible-ish bytes (xorshift) seeded by `seed`.
pub fn fill(buf: &mut Vec<u8>, seed: u64, len: usize) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        let take = (len - buf.len()).min(8);
        buf.extend_from_slice(&bytes[..take]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_is_deterministic_and_seed_dependent() {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        fill(&mut a, 1, 100);
        fill(&mut b, 1, 100);
        fill(&mut c, 2, 100);
        assert_eq!(a.len(), 100);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn tree_writes_every_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree {
            files: 25,
            dirs: 4,
            file_size: 10,
        };
        assert_eq!(tree.write(dir.path()).unwrap(), 250);
        let count: usize = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|d| fs_err::read_dir(d.unwrap().path()).unwrap().count())
            .sum();
        assert_eq!(count, 25);
    }
}
